package connectplugin

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The Go host side launching a real plugin: kv-plugin-swift from the same `swift build`.
func kvPluginPath(t *testing.T) string {
	p, err := filepath.Abs(filepath.Join("..", "..", ".build", "debug", "kv-plugin-swift"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("MISSING %s (built by swift build): %v", p, err)
	}
	return p
}

func kvConfig(path string) PluginClientConfig {
	return PluginClientConfig{
		CookieKey: "KV_PLUGIN", CookieValue: "connectplugin-kv",
		Plugins: map[int][]string{1: {"kv"}},
		Command: PluginCommand{Path: path},
	}
}

// startAndPut launches the KV plugin with cfg and makes one Put (key "k", 2 bytes), which the
// plugin logs at debug; the caller kills the plugin.
func startAndPut(t *testing.T, cfg PluginClientConfig) *PluginClient {
	t.Helper()
	p, err := StartPlugin(cfg)
	if err != nil {
		t.Fatal(err)
	}
	kv, err := p.Dispense("kv")
	if err != nil {
		p.Kill()
		t.Fatal(err)
	}
	defer kv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := kv.CallUnary(ctx, "/connectplugin.examples.kv.v1.KVService/Put", []byte{0x0A, 0x01, 'k', 0x12, 0x02, 1, 2}); err != nil {
		p.Kill()
		t.Fatal(err)
	}
	return p
}

func TestPluginClientLaunchesDispensesAndKills(t *testing.T) {
	p, err := StartPlugin(kvConfig(kvPluginPath(t)))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Kill()
	if v := p.NegotiatedVersion(); v != 1 {
		t.Fatalf("negotiated version %d", v)
	}
	if p.Pid() <= 0 {
		t.Fatalf("pid %d", p.Pid())
	}
	kv, err := p.Dispense("kv")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	put := append([]byte{0x0A, 0x01, 'k', 0x12, 0x01}, 9)
	if _, err := kv.CallUnary(ctx, "/connectplugin.examples.kv.v1.KVService/Put", put); err != nil {
		t.Fatal(err)
	}
	r, err := kv.CallUnary(ctx, "/connectplugin.examples.kv.v1.KVService/Get", []byte{0x0A, 0x01, 'k'})
	if err != nil {
		t.Fatal(err)
	}
	if string(r.Message) != string([]byte{0x0A, 0x01, 9, 0x10, 0x01}) {
		t.Fatalf("Get = %x", r.Message)
	}
	kv.Close() // does not close the plugin's connection
	if err := p.Ping(0); err != nil {
		t.Fatalf("ping after closing a dispensed client: %v", err)
	}
	if _, err := p.Dispense("nope"); err == nil || !strings.Contains(err.Error(), "not in this host's plugin set") {
		t.Fatalf("dispense of an unknown plugin: %v", err)
	}
	p.Kill()
	if st, sig, ok := p.Exited(); !ok || sig || st != 0 {
		t.Fatalf("exit status %d signaled=%v known=%v", st, sig, ok)
	}
}

func TestPluginClientErrorsSayWhatToDo(t *testing.T) {
	cfg := kvConfig("/nonexistent/plugin")
	if _, err := StartPlugin(cfg); err == nil || !strings.Contains(err.Error(), "not found") {
		t.Fatalf("missing binary: %v", err)
	}
	cfg = kvConfig(kvPluginPath(t))
	cfg.CookieValue = "another-app"
	_, err := StartPlugin(cfg)
	var e *Error
	if err == nil || !errors.As(err, &e) || e.Code != CodeUnavailable || !strings.Contains(e.Message, "expects another plugin") {
		t.Fatalf("cookie mismatch: %v", err)
	}
}

// AutoMTLS: the host's certificate goes to the plugin, which serves TLS; calls go over it.
func TestPluginClientAutoMTLS(t *testing.T) {
	cfg := kvConfig(kvPluginPath(t))
	cfg.AutoMTLS = true
	p, err := StartPlugin(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Kill()
	kv, err := p.Dispense("kv")
	if err != nil {
		t.Fatal(err)
	}
	defer kv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	put := append([]byte{0x0A, 0x01, 'k', 0x12, 0x01}, 9)
	if _, err := kv.CallUnary(ctx, "/connectplugin.examples.kv.v1.KVService/Put", put); err != nil {
		t.Fatal(err)
	}
	if err := p.Ping(0); err != nil {
		t.Fatal(err)
	}
}
