package connectplugin

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestLoopbackMatrix(t *testing.T) {
	ts := newTestServer(t)
	for _, transport := range []string{"tcp", "unix"} {
		for _, codec := range []string{"proto", "json"} {
			for _, httpv := range []string{"1.1", "2"} {
				for _, comp := range []string{"identity", "gzip"} {
					for _, cc := range callContexts {
						name := transport + "/" + codec + "/http" + httpv + "/" + comp + "/" + cc.name
						t.Run(name, func(t *testing.T) {
							ctx, cancel := cc.make()
							defer cancel()
							url := ts.tcpURL
							if transport == "unix" {
								url = ts.unixURL
							}
							c := newTestClient(t, url, WithCodec(codec), WithHTTPVersion(httpv), WithCompression(comp),
								WithHeader("x-req", "from-client"))
							msg := []byte("\x0a\x05hello")
							if codec == "json" {
								msg = []byte(`{"text":"hello"}`)
							}
							if comp == "gzip" {
								// Large and compressible, so gzip is really exercised.
								if codec == "json" {
									msg = []byte(`{"text":"` + strings.Repeat("abcdefgh", 4096) + `"}`)
								} else {
									msg = append([]byte("\x0a\x80\x80\x02"), []byte(strings.Repeat("abcdefgh", 4096))...)
								}
							}
							for i := 0; i < 3; i++ { // several calls reuse the connection
								resp, err := c.CallUnary(ctx, procEcho, msg,
									WithCallHeader("x-data-bin", string(binValue)))
								if err != nil {
									t.Fatalf("CallUnary: %v", err)
								}
								wantBytes(t, "message", resp.Message, msg)
								if got := resp.Header.Get("x-codec"); got != codec {
									t.Fatalf("x-codec header = %q, want %q (headers %v)", got, codec, resp.Header)
								}
								if got := resp.Header.Get("x-req-echo"); got != "from-client" {
									t.Fatalf("x-req-echo = %q (headers %v)", got, resp.Header)
								}
								if v, _ := resp.Header.Lookup("x-data-bin"); string(v) != string(binValue) {
									t.Fatalf("x-data-bin = %q, want %q", v, binValue)
								}
								if got := resp.Trailer.Get("x-trailer"); got != "t1" {
									t.Fatalf("trailer x-trailer = %q (trailers %v, headers %v)", got, resp.Trailer, resp.Header)
								}
							}
						})
					}
				}
			}
		}
	}
}

func TestErrorDetailsRoundTrip(t *testing.T) {
	ts := newTestServer(t)
	for _, url := range []string{ts.tcpURL, ts.unixURL} {
		for _, codec := range []string{"proto", "json"} {
			for _, httpv := range []string{"1.1", "2"} {
				for _, cc := range callContexts {
					c := newTestClient(t, url, WithCodec(codec), WithHTTPVersion(httpv))
					ctx, cancel := cc.make()
					_, err := c.CallUnary(ctx, procFail, []byte{})
					cancel()
					e := wantCode(t, err, CodeNotFound)
					if e.Status != StatusRPC {
						t.Fatalf("status %v, want %v", e.Status, StatusRPC)
					}
					if e.Message != "no such thing" {
						t.Fatalf("message %q", e.Message)
					}
					if got := err.Error(); got != "not_found: no such thing" {
						t.Fatalf("Error() = %q", got)
					}
					if len(e.Details) != 2 {
						t.Fatalf("details %+v, want 2", e.Details)
					}
					want := detailInfo()
					if e.Details[0].Type != want.Type || string(e.Details[0].Value) != string(want.Value) {
						t.Fatalf("detail 0 = %+v, want %+v", e.Details[0], want)
					}
					if e.Details[1].Type != "test.v1.Empty" || len(e.Details[1].Value) != 0 {
						t.Fatalf("detail 1 = %+v", e.Details[1])
					}
					md := Metadata(e.Metadata)
					if md.Get("x-err") != "yes" || md.Get("x-before-fail") != "1" {
						t.Fatalf("error metadata %v lacks x-err / x-before-fail", e.Metadata)
					}
					if CodeOf(err) != CodeNotFound {
						t.Fatalf("CodeOf = %v", CodeOf(err))
					}
				}
			}
		}
	}
}

func TestUnknownProcedureIsUnimplemented(t *testing.T) {
	ts := newTestServer(t)
	for _, httpv := range []string{"1.1", "2"} {
		for _, cc := range callContexts {
			c := newTestClient(t, ts.tcpURL, WithHTTPVersion(httpv))
			ctx, cancel := cc.make()
			_, err := c.CallUnary(ctx, "/test.v1.TestService/Nope", []byte("x"))
			cancel()
			if e := wantCode(t, err, CodeUnimplemented); e.Status != StatusRPC {
				t.Fatalf("%s: status %v", cc.name, e.Status)
			}
		}
	}
}

// Canceling ctx while CallUnary waits cancels the call: CallUnary returns CodeCanceled at once and
// the server's handler sees its context canceled.
func TestCallUnaryContextCancel(t *testing.T) {
	ts := newTestServer(t)
	for _, httpv := range []string{"1.1", "2"} {
		for _, protocol := range []string{"connect", "grpc", "grpcweb"} {
			if protocol == "grpc" && httpv == "1.1" {
				continue
			}
			c := newTestClient(t, ts.tcpURL, WithHTTPVersion(httpv), WithProtocol(protocol))
			ctx, cancel := context.WithCancel(context.Background())
			time.AfterFunc(200*time.Millisecond, cancel)
			start := time.Now()
			_, err := c.CallUnary(ctx, procSlow, []byte("10s"))
			elapsed := time.Since(start)
			wantCode(t, err, CodeCanceled)
			if elapsed > 3*time.Second {
				t.Fatalf("%s/http%s: CallUnary returned %v after ctx was canceled at 200ms", protocol, httpv, elapsed)
			}
			select {
			case herr := <-ts.slowEnd:
				if herr != context.Canceled {
					t.Fatalf("%s/http%s: handler ctx ended with %v, want context.Canceled", protocol, httpv, herr)
				}
			case <-time.After(5 * time.Second):
				t.Fatalf("%s/http%s: the server handler never saw the cancellation", protocol, httpv)
			}
		}
	}
}

func TestHandlerPanicIsInternal(t *testing.T) {
	ts := newTestServer(t)
	c := newTestClient(t, ts.tcpURL)
	for i := 0; i < 3; i++ { // the server survives and keeps serving
		_, err := c.CallUnary(context.Background(), procPanic, []byte("x"))
		e := wantCode(t, err, CodeInternal)
		if !strings.Contains(e.Message, "panic: boom") {
			t.Fatalf("message %q lacks %q", e.Message, "panic: boom")
		}
	}
	if _, err := c.CallUnary(context.Background(), procEcho, []byte("after")); err != nil {
		t.Fatalf("echo after panics: %v", err)
	}
}

func TestPlainErrorIsInternal(t *testing.T) {
	ts := newTestServer(t)
	c := newTestClient(t, ts.tcpURL)
	_, err := c.CallUnary(context.Background(), procPlain, []byte("x"))
	e := wantCode(t, err, CodeInternal)
	if e.Message != "plain failure" {
		t.Fatalf("message %q", e.Message)
	}
}

func TestResponseMetadataValidation(t *testing.T) {
	ts := newTestServer(t)
	c := newTestClient(t, ts.tcpURL)
	resp, err := c.CallUnary(context.Background(), procBadMeta, []byte("x"))
	if err != nil {
		t.Fatal(err)
	}
	wantBytes(t, "message", resp.Message, []byte("ok"))
}

func TestContextDeadlineAgainstSlowHandler(t *testing.T) {
	ts := newTestServer(t)
	for _, httpv := range []string{"1.1", "2"} {
		c := newTestClient(t, ts.tcpURL, WithHTTPVersion(httpv))
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		start := time.Now()
		_, err := c.CallUnary(ctx, procSlow, []byte("5s"))
		cancel()
		elapsed := time.Since(start)
		wantCode(t, err, CodeDeadlineExceeded)
		if elapsed > 3*time.Second {
			t.Fatalf("deadline of 300ms took %v", elapsed)
		}
		select {
		case rem := <-ts.slowSeen:
			if rem <= 0 || rem > 300*time.Millisecond {
				t.Fatalf("handler ctx deadline remaining %v, want in (0, 300ms]", rem)
			}
		case <-time.After(2 * time.Second):
			t.Fatal("slow handler was never called")
		}
		// The handler's context ends with DeadlineExceeded (not Canceled by the done notice).
		select {
		case herr := <-ts.slowEnd:
			if herr != context.DeadlineExceeded {
				t.Fatalf("http%s: handler ctx ended with %v, want context.DeadlineExceeded", httpv, herr)
			}
		case <-time.After(3 * time.Second):
			t.Fatal("the slow handler's context never ended")
		}
	}
}

func TestHandlerSeesDeadline(t *testing.T) {
	ts := newTestServer(t)
	c := newTestClient(t, ts.tcpURL)
	resp, err := c.CallUnary(context.Background(), procDeadline, nil)
	if err != nil {
		t.Fatal(err)
	}
	wantBytes(t, "no deadline", resp.Message, []byte("none"))

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err = c.CallUnary(ctx, procDeadline, nil)
	if err != nil {
		t.Fatal(err)
	}
	var ms int64
	for _, ch := range resp.Message {
		if ch < '0' || ch > '9' {
			t.Fatalf("remaining = %q", resp.Message)
		}
		ms = ms*10 + int64(ch-'0')
	}
	if ms < 8000 || ms > 10000 {
		t.Fatalf("handler saw %d ms remaining, want about 10000", ms)
	}
}

func TestClientDefaultAndCallTimeout(t *testing.T) {
	ts := newTestServer(t)
	c := newTestClient(t, ts.tcpURL, WithTimeout(200*time.Millisecond))
	_, err := c.CallUnary(context.Background(), procSlow, []byte("5s"))
	wantCode(t, err, CodeDeadlineExceeded)
	// A longer per-call timeout replaces the client default.
	resp, err := c.CallUnary(context.Background(), procSlow, []byte("400ms"), WithCallTimeout(5*time.Second))
	if err != nil {
		t.Fatalf("per-call timeout did not override the default: %v", err)
	}
	wantBytes(t, "message", resp.Message, []byte("slow done"))
	// A sub-millisecond call timeout is rounded up, not turned into "no timeout".
	_, err = c.CallUnary(context.Background(), procSlow, []byte("5s"), WithCallTimeout(time.Microsecond))
	wantCode(t, err, CodeDeadlineExceeded)
}

func TestExpiredOrCanceledContextDoesNotCall(t *testing.T) {
	ts := newTestServer(t)
	c := newTestClient(t, ts.tcpURL)
	before := atomic.LoadInt64(&ts.calls)

	ctx, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel()
	_, err := c.CallUnary(ctx, procEcho, []byte("x"))
	wantCode(t, err, CodeDeadlineExceeded)

	ctx2, cancel2 := context.WithCancel(context.Background())
	cancel2()
	_, err = c.CallUnary(ctx2, procEcho, []byte("x"))
	wantCode(t, err, CodeCanceled)

	if got := atomic.LoadInt64(&ts.calls); got != before {
		t.Fatalf("handler ran %d times for calls that should not have been made", got-before)
	}
}

func TestConcurrentGoroutines(t *testing.T) {
	ts := newTestServer(t)
	for _, url := range []string{ts.tcpURL, ts.unixURL} {
		c := newTestClient(t, url)
		var wg sync.WaitGroup
		errs := make(chan error, 8)
		for g := 0; g < 8; g++ {
			wg.Add(1)
			go func(g int) {
				defer wg.Done()
				for i := 0; i < 50; i++ {
					msg := []byte(strings.Repeat(string(rune('a'+g)), i+1))
					resp, err := c.CallUnary(context.Background(), procEcho, msg)
					if err != nil {
						errs <- err
						return
					}
					if string(resp.Message) != string(msg) {
						errs <- errors.New("mismatched echo: " + string(resp.Message))
						return
					}
				}
			}(g)
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
	}
}

func TestGracefulStopLetsInFlightFinish(t *testing.T) {
	ts := newTestServer(t)
	c := newTestClient(t, ts.tcpURL)
	done := make(chan error, 1)
	go func() {
		resp, err := c.CallUnary(context.Background(), procSlow, []byte("400ms"))
		if err == nil && string(resp.Message) != "slow done" {
			err = errors.New("bad message " + string(resp.Message))
		}
		done <- err
	}()
	select {
	case <-ts.slowSeen:
	case <-time.After(3 * time.Second):
		t.Fatal("slow handler never started")
	}
	if err := ts.Stop(5 * time.Second); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if err := <-done; err != nil {
		t.Fatalf("in-flight call during graceful stop: %v", err)
	}
	if err := ts.Stop(time.Second); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
	// A stopped server cannot be reached.
	c2 := newTestClient(t, ts.tcpURL)
	_, err := c2.CallUnary(context.Background(), procEcho, []byte("x"))
	wantCode(t, err, CodeUnavailable)
}

func TestServerOptions(t *testing.T) {
	if _, err := NewServer(WithHandlerThreads(0)); err == nil {
		t.Fatal("WithHandlerThreads(0) accepted")
	} else if e := asError(t, err); e.Status != StatusInvalidArgument {
		t.Fatalf("WithHandlerThreads(0): %v (status %v)", err, e.Status)
	}
	if _, err := NewServer(WithHandlerThreads(5000)); err == nil {
		t.Fatal("WithHandlerThreads(5000) accepted")
	}

	ts := newTestServer(t, WithMaxMessageBytes(64), WithHandlerThreads(2))
	c := newTestClient(t, ts.tcpURL)
	if _, err := c.CallUnary(context.Background(), procEcho, make([]byte, 32)); err != nil {
		t.Fatalf("small message: %v", err)
	}
	_, err := c.CallUnary(context.Background(), procEcho, make([]byte, 1000))
	wantCode(t, err, CodeResourceExhausted)
}

func TestStreamLimitAndIdleThreadOptions(t *testing.T) {
	if _, err := NewServer(WithStreamLimits(1<<20+1, 0, 0)); err == nil {
		t.Fatal("WithStreamLimits(2^20+1, 0, 0) accepted")
	} else if e := asError(t, err); e.Status != StatusInvalidArgument {
		t.Fatalf("WithStreamLimits(2^20+1): %v (status %v)", err, e.Status)
	}
	if _, err := NewServer(WithStreamLimits(-1, 0, 0)); err == nil {
		t.Fatal("WithStreamLimits(-1, 0, 0) accepted")
	}
	if _, err := NewServer(WithIdleThreadTimeout(0)); err == nil {
		t.Fatal("WithIdleThreadTimeout(0) accepted")
	}
	srv, err := NewServer(WithHandlerThreads(3), WithStreamLimits(4, 8, 16), WithIdleThreadTimeout(200*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	if n := srv.HandlerThreadCount(); n != 3 {
		t.Fatalf("HandlerThreadCount() = %d, want the 3 handler threads", n)
	}
	srv.Close()
	if n := srv.HandlerThreadCount(); n != 0 {
		t.Fatalf("HandlerThreadCount() after Close = %d, want 0", n)
	}
}

// Idle streams are bounded per connection and per peer, unary calls still succeed while they are
// open, and the handler threads they made the server start exit once idle (issue 7 item 8).
func TestIdleHandlerThreadsRetire(t *testing.T) {
	srv, err := NewServer(WithHandlerThreads(2), WithStreamLimits(4, 10, 0), WithIdleThreadTimeout(200*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	const watch, echo = "/test.v1.Limits/Watch", "/test.v1.Limits/Echo"
	if err := srv.RegisterStream(watch, KindServerStream, func(s *ServerStream) error {
		if _, err := s.Receive(); err != nil {
			return err
		}
		if err := s.Send([]byte("ready")); err != nil {
			return err
		}
		<-s.Context().Done() // until the client goes away
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := srv.HandleUnary(echo, func(ctx context.Context, r *Request) ([]byte, error) { return r.Message, nil }); err != nil {
		t.Fatal(err)
	}
	addr, err := srv.ListenTCP("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	url := "http://" + addr
	if n := srv.HandlerThreadCount(); n != 2 {
		t.Fatalf("HandlerThreadCount() = %d before any call, want 2", n)
	}
	// 3 connections x 6 streams: 4 per connection, 10 from this peer in all.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var open []*ClientStream
	var clients []*Client
	refused := 0
	for i := 0; i < 3; i++ {
		c, err := NewClient(url, WithHTTPVersion("2"))
		if err != nil {
			t.Fatal(err)
		}
		clients = append(clients, c)
		var streams []*ClientStream
		for j := 0; j < 6; j++ {
			s, err := c.CallServerStream(ctx, watch, []byte("w"))
			if err != nil {
				t.Fatal(err)
			}
			streams = append(streams, s)
		}
		for _, s := range streams {
			msg, err := s.Receive()
			if err != nil {
				wantCode(t, err, CodeResourceExhausted)
				refused++
				s.Close()
				continue
			}
			if string(msg) != "ready" {
				t.Fatalf("Watch sent %q, want ready", msg)
			}
			open = append(open, s)
		}
	}
	if len(open) != 10 || refused != 8 {
		t.Fatalf("%d streams admitted and %d refused, want 10 and 8", len(open), refused)
	}
	if n := srv.HandlerThreadCount(); n < 10 {
		t.Fatalf("HandlerThreadCount() = %d with 10 streams open", n)
	}
	u := newTestClient(t, url, WithTimeout(20*time.Second))
	for i := 0; i < 10; i++ {
		r, err := u.CallUnary(context.Background(), echo, []byte{byte(i)})
		if err != nil || len(r.Message) != 1 || r.Message[0] != byte(i) {
			t.Fatalf("unary call %d while the streams are open: %v", i, err)
		}
	}
	for _, s := range open {
		s.Close()
	}
	for _, c := range clients {
		c.Close()
	}
	deadline := time.Now().Add(30 * time.Second)
	for srv.HandlerThreadCount() != 2 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := srv.HandlerThreadCount(); n != 2 {
		t.Fatalf("HandlerThreadCount() = %d 30 s after the streams closed, want 2", n)
	}
}

func TestServerCloseTwiceAndUseAfterClose(t *testing.T) {
	srv, err := NewServer()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := srv.ListenTCP("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	if err := srv.HandleUnary(procEcho, func(ctx context.Context, r *Request) ([]byte, error) { return r.Message, nil }); err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	srv.Close()
	srv.Close()
	if err := srv.Start(); err == nil {
		t.Fatal("Start after Close succeeded")
	} else if e := asError(t, err); e.Status != StatusClosed {
		t.Fatalf("Start after Close: status %v", e.Status)
	}
	if _, err := srv.ListenTCP("127.0.0.1:0"); err == nil {
		t.Fatal("ListenTCP after Close succeeded")
	}
	if err := srv.HandleUnary(procFail, func(context.Context, *Request) ([]byte, error) { return nil, nil }); err == nil {
		t.Fatal("HandleUnary after Close succeeded")
	}
	if err := srv.Stop(time.Second); err != nil {
		t.Fatalf("Stop after Close: %v", err)
	}
}

func TestListenErrors(t *testing.T) {
	srv, err := NewServer()
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	addr, err := srv.ListenTCP("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := srv.ListenTCP(addr); err == nil {
		t.Fatal("listening twice on the same port succeeded")
	} else if e := asError(t, err); e.Status != StatusIO {
		t.Fatalf("address in use: status %v (%v)", e.Status, err)
	}
	if _, err := srv.ListenTCP("not an address"); err == nil {
		t.Fatal("malformed address accepted")
	} else if e := asError(t, err); e.Status != StatusInvalidArgument {
		t.Fatalf("malformed address: status %v (%v)", e.Status, err)
	}
	if err := srv.HandleUnary("no-slash", func(context.Context, *Request) ([]byte, error) { return nil, nil }); err == nil {
		t.Fatal("malformed procedure accepted")
	}
	h := func(context.Context, *Request) ([]byte, error) { return nil, nil }
	if err := srv.HandleUnary(procEcho, h); err != nil {
		t.Fatal(err)
	}
	if err := srv.HandleUnary(procEcho, h); err == nil {
		t.Fatal("duplicate procedure accepted")
	} else if e := asError(t, err); e.Status != StatusInvalidArgument {
		t.Fatalf("duplicate: status %v", e.Status)
	}
}
