package connectplugin

import (
	"context"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Reattach, URL and in-process hosting from Go, against kv-plugin-swift and an in-process server.

func TestPluginReattachDispensesAndKills(t *testing.T) {
	first, err := StartPlugin(kvConfig(kvPluginPath(t)))
	if err != nil {
		t.Fatal(err)
	}
	defer first.Kill()
	info := first.ReattachInfo()
	pid := first.Pid()
	if !strings.Contains(info, `"Protocol":"grpc"`) || !strings.Contains(info, `"ProtocolVersion":1`) {
		t.Fatalf("reattach info %s", info)
	}
	cfg := kvConfig("")
	cfg.Command = PluginCommand{}
	cfg.Reattach = info
	second, err := StartPlugin(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if second.Pid() != pid || second.NegotiatedVersion() != 1 {
		t.Fatalf("reattached pid %d version %d, want pid %d", second.Pid(), second.NegotiatedVersion(), pid)
	}
	kv, err := second.Dispense("kv")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := kv.CallUnary(ctx, "/connectplugin.examples.kv.v1.KVService/Put", []byte{0x0A, 0x01, 'k', 0x12, 0x01, 7}); err != nil {
		t.Fatal(err)
	}
	kv.Close()
	second.Kill()
	if err := syscall.Kill(pid, 0); err == nil {
		// The first host is its parent: the process may linger as a zombie until it is reaped.
		stat, _ := os.ReadFile("/proc/" + itoa(pid) + "/stat")
		if s := string(stat); s != "" && !strings.Contains(s, ") Z ") {
			t.Fatalf("plugin %d still runs after the reattached host killed it: %s", pid, s)
		}
	}
	if st, _, ok := second.Exited(); !ok || st != -1 {
		t.Fatalf("reattached exit status %d known=%v, want -1 (unknown)", st, ok)
	}
	first.Kill()
	if st, sig, ok := first.Exited(); !ok || sig || st != 0 {
		t.Fatalf("the first host saw status %d signaled=%v known=%v, want exited 0", st, sig, ok)
	}
	bad := kvConfig("")
	bad.Reattach = `{"Protocol":"netrpc"}`
	if _, err := StartPlugin(bad); err == nil || !strings.Contains(err.Error(), "grpc only") {
		t.Fatalf("bad reattach: %v", err)
	}
	bad.Reattach = info
	if _, err := StartPlugin(bad); err == nil || !strings.Contains(err.Error(), "is gone") {
		t.Fatalf("reattach to a dead plugin: %v", err)
	}
}

func TestPluginInProcessByURL(t *testing.T) {
	s, err := NewServer()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.HandleUnary("/t.v1.T/Echo", func(_ context.Context, r *Request) ([]byte, error) { return r.Message, nil }); err != nil {
		t.Fatal(err)
	}
	url, err := s.ServePluginInProcess(PluginConfig{CookieKey: "K", CookieValue: "v",
		Plugins: map[int][]PluginInfo{3: {{Name: "t"}}}}, "go-test-inproc")
	if err != nil {
		t.Fatal(err)
	}
	p, err := StartPlugin(PluginClientConfig{CookieKey: "K", CookieValue: "v", Plugins: map[int][]string{2: {"t"}, 3: {"t"}}, URL: url})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Kill()
	if p.NegotiatedVersion() != 3 || p.Pid() != 0 || p.ReattachInfo() != "" {
		t.Fatalf("version %d pid %d reattach %q", p.NegotiatedVersion(), p.Pid(), p.ReattachInfo())
	}
	c, err := p.Dispense("t")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r, err := c.CallUnary(context.Background(), "/t.v1.T/Echo", []byte("hi"))
	if err != nil || string(r.Message) != "hi" {
		t.Fatalf("echo: %v %q", err, r)
	}
	if err := p.Ping(0); err != nil {
		t.Fatal(err)
	}
	info, err := p.Info(0)
	if err != nil || info.ID != "t" || info.Metadata["app_protocol_version"] != "3" ||
		info.Metadata["runtime"] != "connectplugin "+Version() {
		t.Fatalf("info: %+v %v", info, err)
	}
	_, err = StartPlugin(PluginClientConfig{CookieKey: "K", CookieValue: "v", Plugins: map[int][]string{1: {"t"}}, URL: url})
	if err == nil || !strings.Contains(err.Error(), "the plugin serves version 3, this host supports [1]") {
		t.Fatalf("no common version: %v", err)
	}
}
