package connectplugin

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

const (
	procEcho     = "/test.v1.TestService/Echo"
	procFail     = "/test.v1.TestService/Fail"
	procSlow     = "/test.v1.TestService/Slow"
	procPanic    = "/test.v1.TestService/Panic"
	procPlain    = "/test.v1.TestService/Plain"
	procDeadline = "/test.v1.TestService/Deadline"
	procBadMeta  = "/test.v1.TestService/BadMeta"
)

var binValue = []byte{0x00, 0xff, 0x10, '\n', 0x80}

// callContexts are the two ways CallUnary runs: a context that can never be canceled
// (connectplugin_client_call_unary) and a cancelable one (a stream handle of kind UNARY).
var callContexts = []struct {
	name string
	make func() (context.Context, context.CancelFunc)
}{
	{"background", func() (context.Context, context.CancelFunc) { return context.Background(), func() {} }},
	{"cancelable", func() (context.Context, context.CancelFunc) { return context.WithCancel(context.Background()) }},
}

// testServer is a started server listening on TCP and on a Unix socket.
type testServer struct {
	*Server
	tcpURL   string
	unixURL  string
	calls    int64 // number of handler invocations
	slowSeen chan time.Duration
	slowEnd  chan error // what the Slow handler's ctx said when it gave up early
}

func detailInfo() ErrorDetail {
	// A hand-encoded google.rpc.ErrorInfo{reason:"WHY", domain:"example.com"}.
	return ErrorDetail{Type: "google.rpc.ErrorInfo", Value: []byte("\x0a\x03WHY\x12\x0bexample.com")}
}

func newTestServer(t *testing.T, opts ...ServerOption) *testServer {
	t.Helper()
	srv, err := NewServer(opts...)
	if err != nil {
		t.Fatalf("NewServer: %v", err)
	}
	ts := &testServer{Server: srv, slowSeen: make(chan time.Duration, 16), slowEnd: make(chan error, 16)}
	t.Cleanup(srv.Close)

	tcp, err := srv.ListenTCP("127.0.0.1:0")
	if err != nil {
		t.Fatalf("ListenTCP: %v", err)
	}
	if !strings.HasPrefix(tcp, "127.0.0.1:") || strings.HasSuffix(tcp, ":0") {
		t.Fatalf("ListenTCP returned %q", tcp)
	}
	dir, err := os.MkdirTemp("", "cpgo")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "s.sock")
	ux, err := srv.ListenUnix(sock)
	if err != nil {
		t.Fatalf("ListenUnix: %v", err)
	}
	if ux != "unix:"+sock {
		t.Fatalf("ListenUnix returned %q, want %q", ux, "unix:"+sock)
	}
	if got := srv.Addresses(); len(got) != 2 || got[0] != tcp || got[1] != ux {
		t.Fatalf("Addresses() = %v", got)
	}
	ts.tcpURL = "http://" + tcp
	ts.unixURL = "unix://" + sock

	must := func(proc string, h UnaryHandler) {
		t.Helper()
		if err := srv.HandleUnary(proc, h); err != nil {
			t.Fatalf("HandleUnary(%s): %v", proc, err)
		}
	}
	must(procEcho, func(ctx context.Context, req *Request) ([]byte, error) {
		atomic.AddInt64(&ts.calls, 1)
		if req.Procedure != procEcho {
			return nil, fmt.Errorf("procedure %q", req.Procedure)
		}
		if err := req.AddResponseHeader("x-codec", req.Codec); err != nil {
			return nil, err
		}
		if v, ok := req.Header.Lookup("x-req"); ok {
			if err := req.AddResponseHeader("x-req-echo", string(v)); err != nil {
				return nil, err
			}
		}
		if v, ok := req.Header.Lookup("x-data-bin"); ok {
			if err := req.AddResponseHeader("x-data-bin", string(v)); err != nil {
				return nil, err
			}
		}
		if err := req.AddResponseTrailer("x-trailer", "t1"); err != nil {
			return nil, err
		}
		return req.Message, nil
	})
	must(procFail, func(ctx context.Context, req *Request) ([]byte, error) {
		atomic.AddInt64(&ts.calls, 1)
		if err := req.AddResponseHeader("x-before-fail", "1"); err != nil {
			return nil, err
		}
		e := NewError(CodeNotFound, "no such thing", detailInfo(), ErrorDetail{Type: "test.v1.Empty", Value: []byte{}})
		e.Metadata = []MetadataEntry{{Key: "x-err", Value: []byte("yes")}}
		return nil, e
	})
	must(procSlow, func(ctx context.Context, req *Request) ([]byte, error) {
		atomic.AddInt64(&ts.calls, 1)
		var remaining time.Duration = -1
		if dl, ok := ctx.Deadline(); ok {
			remaining = time.Until(dl)
		}
		select {
		case ts.slowSeen <- remaining:
		default:
		}
		d, _ := time.ParseDuration(string(req.Message))
		if d == 0 {
			d = 5 * time.Second
		}
		select {
		case <-time.After(d):
			return []byte("slow done"), nil
		case <-ctx.Done():
			select {
			case ts.slowEnd <- ctx.Err():
			default:
			}
			return nil, ctx.Err()
		}
	})
	must(procPanic, func(ctx context.Context, req *Request) ([]byte, error) {
		atomic.AddInt64(&ts.calls, 1)
		panic("boom")
	})
	must(procPlain, func(ctx context.Context, req *Request) ([]byte, error) {
		atomic.AddInt64(&ts.calls, 1)
		return nil, errors.New("plain failure")
	})
	must(procDeadline, func(ctx context.Context, req *Request) ([]byte, error) {
		atomic.AddInt64(&ts.calls, 1)
		dl, ok := ctx.Deadline()
		if !ok {
			return []byte("none"), nil
		}
		return []byte(fmt.Sprint(time.Until(dl).Milliseconds())), nil
	})
	must(procBadMeta, func(ctx context.Context, req *Request) ([]byte, error) {
		atomic.AddInt64(&ts.calls, 1)
		err := req.AddResponseHeader("bad key", "v")
		var e *Error
		if !errors.As(err, &e) || e.Status != StatusInvalidArgument {
			return nil, fmt.Errorf("AddResponseHeader(bad key) = %v", err)
		}
		if err := req.AddResponseHeader("x-ascii", "caf\xc3\xa9"); err == nil {
			return nil, errors.New("non-ASCII value accepted")
		}
		if req.IsDone() {
			return nil, errors.New("IsDone() true during the handler")
		}
		return []byte("ok"), nil
	})
	if err := srv.Start(); err != nil {
		t.Fatalf("Start: %v", err)
	}
	if err := srv.HandleUnary("/test.v1.TestService/Late", func(context.Context, *Request) ([]byte, error) { return nil, nil }); err == nil {
		t.Fatal("HandleUnary after Start succeeded")
	} else if e := asError(t, err); e.Status != StatusState {
		t.Fatalf("HandleUnary after Start: status %v, want %v (%v)", e.Status, StatusState, err)
	}
	return ts
}

func newTestClient(t *testing.T, url string, opts ...ClientOption) *Client {
	t.Helper()
	c, err := NewClient(url, opts...)
	if err != nil {
		t.Fatalf("NewClient(%s): %v", url, err)
	}
	t.Cleanup(c.Close)
	return c
}

func asError(t *testing.T, err error) *Error {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("error %T %v is not an *Error", err, err)
	}
	return e
}

func wantCode(t *testing.T, err error, code Code) *Error {
	t.Helper()
	if err == nil {
		t.Fatalf("got success, want %v", code)
	}
	e := asError(t, err)
	if e.Code != code {
		t.Fatalf("got %v (status %v), want code %v", err, e.Status, code)
	}
	return e
}

func wantBytes(t *testing.T, what string, got, want []byte) {
	t.Helper()
	if !bytes.Equal(got, want) {
		t.Fatalf("%s = %q, want %q", what, got, want)
	}
}
