package connectplugin

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"testing"
)

// A server that listens in-process and a client of "inproc://NAME": the same RPC stack over an
// in-memory pipe, no socket.
func TestInProcessRoundTrip(t *testing.T) {
	ts := newTestServer(t)
	name := fmt.Sprintf("go-test-%d-%s", os.Getpid(), t.Name())
	addr, err := ts.ListenInProcess(name)
	if err != nil {
		t.Fatalf("ListenInProcess: %v", err)
	}
	if addr != "inproc://"+name {
		t.Fatalf("ListenInProcess returned %q", addr)
	}
	c, err := NewClient(addr)
	if err != nil {
		t.Fatalf("NewClient: %v", err)
	}
	defer c.Close()
	msg := bytes.Repeat([]byte("abc"), 100000)
	resp, err := c.CallUnary(context.Background(), procEcho, msg)
	if err != nil {
		t.Fatalf("CallUnary over inproc: %v", err)
	}
	if !bytes.Equal(resp.Message, msg) {
		t.Fatalf("echo over inproc returned %d bytes, want %d", len(resp.Message), len(msg))
	}
	other, err := NewServer()
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if _, err := other.ListenInProcess(name); err == nil {
		t.Fatal("a second server took the same in-process name")
	}
	if _, err := other.ListenInProcess("no/slash"); err == nil {
		t.Fatal("a malformed in-process name was accepted")
	}
}
