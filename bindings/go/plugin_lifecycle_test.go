package connectplugin

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Lifecycle from Go against a real plugin (kv-plugin-swift): SecureConfig, Done/WaitExit, the plugin
// crashing under a dispensed client, CleanupPlugins.
func TestPluginLifecycle(t *testing.T) {
	path := kvPluginPath(t)
	bin, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(bin)
	actual := hex.EncodeToString(sum[:])

	cfg := kvConfig(path)
	cfg.SHA256 = strings.Repeat("0", 64)
	_, err = StartPlugin(cfg)
	var ce *Error
	if !errors.As(err, &ce) || ce.Code != CodePermissionDenied || !strings.Contains(ce.Message, actual) ||
		!strings.Contains(ce.Message, cfg.SHA256) {
		t.Fatalf("wrong checksum: %v", err)
	}

	cfg.SHA256 = actual
	p, err := StartPlugin(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Kill()
	if _, _, ok := p.WaitExit(50 * time.Millisecond); ok {
		t.Fatal("the plugin ended at once")
	}
	select {
	case <-p.Done():
		t.Fatal("Done closed while the plugin runs")
	default:
	}
	// The plugin dies unexpectedly: Done closes, Exited tells the signal, calls fail unavailable.
	kv, err := p.Dispense("kv")
	if err != nil {
		t.Fatal(err)
	}
	defer kv.Close()
	if err := syscall.Kill(p.Pid(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("Done did not close after the plugin was killed")
	}
	if st, sig, ok := p.Exited(); !ok || !sig || st != int(syscall.SIGKILL) {
		t.Fatalf("exit %d signaled=%v known=%v", st, sig, ok)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, err = kv.CallUnary(ctx, "/connectplugin.examples.kv.v1.KVService/Get", []byte{0x0A, 0x01, 'k'})
	if !errors.As(err, &ce) || ce.Code != CodeUnavailable || !strings.Contains(ce.Message, "kv-plugin-swift") ||
		!strings.Contains(ce.Message, "signal 9") {
		t.Fatalf("call to a dead plugin: %v", err)
	}

	// Managed mode: CleanupPlugins stops what is still running.
	q, err := StartPlugin(kvConfig(path))
	if err != nil {
		t.Fatal(err)
	}
	defer q.Kill()
	CleanupPlugins()
	if st, sig, ok := q.WaitExit(0); !ok || sig || st != 0 {
		t.Fatalf("after CleanupPlugins: %d signaled=%v known=%v", st, sig, ok)
	}
}
