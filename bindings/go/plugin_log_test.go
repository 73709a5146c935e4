package connectplugin

import (
	"bytes"
	"log"
	"strings"
	"sync"
	"testing"
	"time"
)

// A host's Logger gets the plugin's own log lines (kv-plugin-swift logs each Put at debug with two
// fields, as an hclog JSON line on its stderr) and the runtime's records, with the plugin's name.
func TestPluginClientLoggerReceivesPluginLogs(t *testing.T) {
	var mu sync.Mutex
	var got []LogRecord
	names := map[string]bool{}
	cfg := kvConfig(kvPluginPath(t))
	cfg.Logger = func(plugin string, r LogRecord) {
		mu.Lock()
		defer mu.Unlock()
		names[plugin] = true
		got = append(got, r)
	}
	p := startAndPut(t, cfg)
	// The line is on the plugin's stderr before its answer; the host's reader delivers it soon after.
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		mu.Lock()
		n := 0
		for _, r := range got {
			if r.Message == "put" {
				n++
			}
		}
		mu.Unlock()
		if n > 0 {
			break
		}
	}
	p.Kill()
	mu.Lock()
	defer mu.Unlock()
	if len(names) != 1 || !names["kv-plugin-swift"] {
		t.Fatalf("plugin names %v", names)
	}
	var put, started *LogRecord
	for i := range got {
		switch got[i].Message {
		case "put":
			put = &got[i]
		case "plugin started":
			started = &got[i]
		}
	}
	if put == nil || put.Level != LogDebug || len(put.Timestamp) != len("2026-12-04T03:14:03.000000Z") {
		t.Fatalf("no debug put record with a timestamp in %+v", got)
	}
	if k, _ := put.Field("key"); k != "k" {
		t.Fatalf("put key %q", k)
	}
	if b, _ := put.Field("bytes"); b != "2" {
		t.Fatalf("put bytes %q", b)
	}
	if started == nil {
		t.Fatalf("no runtime record in %+v", got)
	}
}

// The default Logger is the standard logger: "[LEVEL] NAME: message key=value".
func TestStdPluginLoggerFormat(t *testing.T) {
	var buf bytes.Buffer
	flags, out := log.Flags(), log.Writer()
	log.SetFlags(0)
	log.SetOutput(&buf)
	defer func() {
		log.SetFlags(flags)
		log.SetOutput(out)
	}()
	StdPluginLogger("kv-plugin", LogRecord{Level: LogWarn, Message: "disk low", Fields: []LogField{{"free", "12"}}})
	if s := strings.TrimSpace(buf.String()); s != "[WARN] kv-plugin: disk low free=12" {
		t.Fatalf("got %q", s)
	}
}

func TestPluginLogRejectsBadLevels(t *testing.T) {
	if err := PluginLog(LogLevel(9), "x"); err == nil {
		t.Fatal("level 9 accepted")
	}
}
