package connectplugin

import (
	"bytes"
	"context"
	"testing"
)

// A handler registered with HandleUnaryInline answers over every protocol, errors included.
func TestHandleUnaryInline(t *testing.T) {
	srv, err := NewServer()
	if err != nil {
		t.Fatalf("NewServer: %v", err)
	}
	t.Cleanup(srv.Close)
	addr, err := srv.ListenTCP("127.0.0.1:0")
	if err != nil {
		t.Fatalf("ListenTCP: %v", err)
	}
	if err := srv.HandleUnaryInline("/test.v1.Inline/Echo", func(ctx context.Context, req *Request) ([]byte, error) {
		if len(req.Message) == 0 {
			return nil, NewError(CodeNotFound, "empty")
		}
		return append([]byte("inline:"), req.Message...), nil
	}); err != nil {
		t.Fatalf("HandleUnaryInline: %v", err)
	}
	if err := srv.HandleUnaryInline("/test.v1.Inline/Echo", nil); err == nil {
		t.Fatal("a nil handler was accepted")
	}
	if err := srv.Start(); err != nil {
		t.Fatalf("Start: %v", err)
	}
	for _, p := range []string{"connect", "grpc", "grpcweb"} {
		c := newTestClient(t, "http://"+addr, WithProtocol(p))
		resp, err := c.CallUnary(context.Background(), "/test.v1.Inline/Echo", []byte("x"))
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		if !bytes.Equal(resp.Message, []byte("inline:x")) {
			t.Fatalf("%s: got %q", p, resp.Message)
		}
		_, err = c.CallUnary(context.Background(), "/test.v1.Inline/Echo", nil)
		wantCode(t, err, CodeNotFound)
	}
}
