package connectplugin

import (
	"context"
	"net"
	"testing"
)

func TestClientOptionsErrors(t *testing.T) {
	cases := []struct {
		name   string
		opts   []ClientOption
		status Status
	}{
		{"codec", []ClientOption{WithCodec("xml")}, StatusUnsupported},
		{"compression", []ClientOption{WithCompression("br")}, StatusUnsupported},
		{"http", []ClientOption{WithHTTPVersion("3")}, StatusInvalidArgument},
		{"header", []ClientOption{WithHeader("bad key", "v")}, StatusInvalidArgument},
	}
	for _, tc := range cases {
		_, err := NewClient("http://127.0.0.1:1", tc.opts...)
		if err == nil {
			t.Fatalf("%s: accepted", tc.name)
		}
		if e := asError(t, err); e.Status != tc.status {
			t.Fatalf("%s: status %v, want %v (%v)", tc.name, e.Status, tc.status, err)
		}
	}
	if _, err := NewClient("ftp://example.com"); err == nil {
		t.Fatal("ftp:// URL accepted")
	}
}

func TestClientUnreachableIsUnavailable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there now
	c := newTestClient(t, "http://"+addr)
	_, err = c.CallUnary(context.Background(), procEcho, []byte("x"))
	if e := wantCode(t, err, CodeUnavailable); e.Status != StatusRPC {
		t.Fatalf("status %v", e.Status)
	}
}

func TestClientCloseTwice(t *testing.T) {
	ts := newTestServer(t)
	c, err := NewClient(ts.tcpURL)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.CallUnary(context.Background(), procEcho, []byte("x")); err != nil {
		t.Fatal(err)
	}
	c.Close()
	c.Close()
	_, err = c.CallUnary(context.Background(), procEcho, []byte("x"))
	if err == nil {
		t.Fatal("call after Close succeeded")
	}
	if e := asError(t, err); e.Status != StatusClosed {
		t.Fatalf("status %v, want %v", e.Status, StatusClosed)
	}
}

func TestInvalidCallHeader(t *testing.T) {
	ts := newTestServer(t)
	c := newTestClient(t, ts.tcpURL)
	_, err := c.CallUnary(context.Background(), procEcho, []byte("x"), WithCallHeader("bad key", "v"))
	if err == nil {
		t.Fatal("bad header accepted")
	}
	if e := asError(t, err); e.Status != StatusInvalidArgument {
		t.Fatalf("status %v", e.Status)
	}
}

func TestMaxResponseBytes(t *testing.T) {
	ts := newTestServer(t)
	c := newTestClient(t, ts.tcpURL, WithMaxResponseBytes(16))
	if _, err := c.CallUnary(context.Background(), procEcho, make([]byte, 8)); err != nil {
		t.Fatal(err)
	}
	// The server accepts the 1000-byte request but the client refuses the 1000-byte response.
	_, err := c.CallUnary(context.Background(), procEcho, make([]byte, 1000))
	wantCode(t, err, CodeResourceExhausted)
}
