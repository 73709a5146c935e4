package connectplugin

/*
#include <stdlib.h>
#include "connectplugin.h"
#include "shims.h"
*/
import "C"

import (
	"fmt"
	"log"
	"runtime/cgo"
	"strings"
	"unsafe"
)

// Plugin logs, both sides. A plugin's own log calls (PluginLog, a PluginLogger, the standard
// logger through PluginLogWriter, or log/slog through NewPluginSlogHandler with Go 1.21+) become
// hclog JSON lines on the process's real stderr, which the host parses; a host receives each line
// of a plugin's stderr as a LogRecord with the plugin's name (PluginClientConfig.Logger).
//
// Why not log/slog everywhere: the toolchain this project builds with (Debian's Go 1.19, with
// GOTOOLCHAIN=local) has no log/slog, so the core API is slog-shaped (level, message, key/value
// pairs) and the slog.Handler lives in plugin_log_slog.go behind the go1.21 build constraint.

// LogLevel is hclog's level.
type LogLevel int32

const (
	LogTrace LogLevel = C.CONNECTPLUGIN_LOG_TRACE
	LogDebug LogLevel = C.CONNECTPLUGIN_LOG_DEBUG
	LogInfo  LogLevel = C.CONNECTPLUGIN_LOG_INFO
	LogWarn  LogLevel = C.CONNECTPLUGIN_LOG_WARN
	LogError LogLevel = C.CONNECTPLUGIN_LOG_ERROR
)

func (l LogLevel) String() string {
	switch l {
	case LogTrace:
		return "trace"
	case LogDebug:
		return "debug"
	case LogInfo:
		return "info"
	case LogWarn:
		return "warn"
	case LogError:
		return "error"
	}
	return fmt.Sprintf("level(%d)", int32(l))
}

// LogField is one key/value of a log record.
type LogField struct {
	Key, Value string
}

// LogRecord is one log line of a plugin, as a host receives it.
type LogRecord struct {
	Level     LogLevel
	Message   string
	Timestamp string // hclog's @timestamp as written; "" when the line had none
	Fields    []LogField
}

// Field returns the value of key and whether the record has it.
func (r LogRecord) Field(key string) (string, bool) {
	for _, f := range r.Fields {
		if f.Key == key {
			return f.Value, true
		}
	}
	return "", false
}

// PluginLog writes one hclog JSON line on the plugin's real stderr (the one the host parses; while
// ServePlugin runs, os.Stderr is forwarded through plugin.GRPCStdio instead). keyvals are pairs:
// key (a string), value (formatted with fmt.Sprint); a lone last key gets the value "(MISSING)".
// Safe from any goroutine, before, while and after serving.
func PluginLog(level LogLevel, msg string, keyvals ...interface{}) error {
	n := (len(keyvals) + 1) / 2
	strs := make([]*C.char, 0, 2*n+1)
	defer func() {
		for _, s := range strs {
			C.free(unsafe.Pointer(s))
		}
	}()
	cm := C.CString(strings.ReplaceAll(msg, "\x00", ""))
	strs = append(strs, cm)
	var keys, values **C.char
	if n > 0 {
		// The pointer arrays live in C memory, as the strings they point to.
		size := C.size_t(n) * C.size_t(unsafe.Sizeof((*C.char)(nil)))
		keys = (**C.char)(C.malloc(size))
		values = (**C.char)(C.malloc(size))
		defer C.free(unsafe.Pointer(keys))
		defer C.free(unsafe.Pointer(values))
		ks := unsafe.Slice(keys, n)
		vs := unsafe.Slice(values, n)
		for i := 0; i < n; i++ {
			k := fmt.Sprint(keyvals[2*i])
			v := "(MISSING)"
			if 2*i+1 < len(keyvals) {
				v = fmt.Sprint(keyvals[2*i+1])
			}
			ks[i] = C.CString(strings.ReplaceAll(k, "\x00", ""))
			vs[i] = C.CString(strings.ReplaceAll(v, "\x00", ""))
			strs = append(strs, ks[i], vs[i])
		}
	}
	var cerr *C.connectplugin_error
	return check(C.connectplugin_plugin_log(C.int32_t(level), cm, keys, values, C.size_t(n), &cerr), &cerr)
}

// PluginLogger is a plugin's logger: hclog JSON lines on the real stderr with fixed fields first.
// The zero value logs everything with no fields.
type PluginLogger struct {
	// Level is the lowest level written (the zero value, LogTrace, writes all; go-plugin's default).
	Level LogLevel
	// With are key/value pairs put on every line (e.g. "component", "cache").
	With []interface{}
}

func (l *PluginLogger) log(level LogLevel, msg string, keyvals []interface{}) {
	if l != nil && level < l.Level {
		return
	}
	if l != nil && len(l.With) > 0 {
		keyvals = append(append([]interface{}{}, l.With...), keyvals...)
	}
	_ = PluginLog(level, msg, keyvals...)
}

func (l *PluginLogger) Trace(msg string, keyvals ...interface{}) { l.log(LogTrace, msg, keyvals) }
func (l *PluginLogger) Debug(msg string, keyvals ...interface{}) { l.log(LogDebug, msg, keyvals) }
func (l *PluginLogger) Info(msg string, keyvals ...interface{})  { l.log(LogInfo, msg, keyvals) }
func (l *PluginLogger) Warn(msg string, keyvals ...interface{})  { l.log(LogWarn, msg, keyvals) }
func (l *PluginLogger) Error(msg string, keyvals ...interface{}) { l.log(LogError, msg, keyvals) }

type pluginLogWriter LogLevel

func (w pluginLogWriter) Write(p []byte) (int, error) {
	for _, line := range strings.Split(strings.TrimRight(string(p), "\n"), "\n") {
		if err := PluginLog(LogLevel(w), line); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

// PluginLogWriter is an io.Writer whose every line becomes an hclog line at level, for the
// standard logger: log.SetOutput(connectplugin.PluginLogWriter(connectplugin.LogInfo)) with
// log.SetFlags(0) (the line has its own timestamp).
func PluginLogWriter(level LogLevel) interface{ Write([]byte) (int, error) } {
	return pluginLogWriter(level)
}

// Host side.

// StdPluginLogger is the default PluginClientConfig.Logger: the standard logger, one line each:
// "[LEVEL] NAME: message key=value ...".
func StdPluginLogger(plugin string, r LogRecord) {
	var b strings.Builder
	b.WriteString("[" + strings.ToUpper(r.Level.String()) + "] " + plugin + ": " + r.Message)
	for _, f := range r.Fields {
		b.WriteString(" " + f.Key + "=" + f.Value)
	}
	log.Print(b.String())
}

type logEntry struct {
	fn func(plugin string, r LogRecord)
}

func setHostLogger(config *C.connectplugin_plugin_client_config, fn func(string, LogRecord)) error {
	if fn == nil {
		fn = StdPluginLogger
	}
	_, ud := newUserData(&logEntry{fn: fn}) // deleted by goFreeHandle once the library is done with it
	var cerr *C.connectplugin_error
	return check(C.connectplugin_plugin_client_config_set_logger(config, C.connectplugin_log_func(C.go_log_trampoline),
		C.go_handle_to_user_data(ud), C.connectplugin_free_func(C.go_free_trampoline), &cerr), &cerr)
}

//export goLogRecord
func goLogRecord(plugin *C.char, level C.int32_t, message, timestamp *C.char, keys, values **C.char, count C.size_t, h C.uintptr_t) {
	defer func() { _ = recover() }() // a panic must never unwind into C
	e, ok := cgo.Handle(h).Value().(*logEntry)
	if !ok || e == nil || e.fn == nil {
		return
	}
	r := LogRecord{Level: LogLevel(level), Message: C.GoString(message), Timestamp: C.GoString(timestamp)}
	if count > 0 && keys != nil && values != nil {
		ks := unsafe.Slice(keys, int(count))
		vs := unsafe.Slice(values, int(count))
		r.Fields = make([]LogField, int(count))
		for i := range r.Fields {
			r.Fields[i] = LogField{C.GoString(ks[i]), C.GoString(vs[i])}
		}
	}
	e.fn(C.GoString(plugin), r)
}
