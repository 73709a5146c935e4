package connectplugin

import (
	"context"
	"errors"
	"io"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Every shape (unary, client, server and bidi streaming) x protocol x HTTP version x codec, through
// our server and our client.
func TestStreamShapesMatrix(t *testing.T) {
	ss := newStreamServer(t, nil)
	for _, c := range combos() {
		c := c
		t.Run(c.String(), func(t *testing.T) {
			cli := c.client(t, ss.url)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()

			// Unary.
			resp, err := cli.CallUnary(ctx, procSUnary, []byte("42"))
			if err != nil {
				t.Fatalf("unary: %v", err)
			}
			wantBytes(t, "unary", resp.Message, []byte("42"))
			if got := resp.Header.Get("x-protocol"); got != c.protocol {
				t.Fatalf("unary handler saw protocol %q", got)
			}
			if got := resp.Header.Get("x-peer"); got != "none" {
				t.Fatalf("unary handler saw peer %q on plaintext", got)
			}
			// Unary through a stream handle.
			us, err := cli.Stream(ctx, procSUnary, KindUnary)
			if err != nil {
				t.Fatalf("unary stream: %v", err)
			}
			if err := us.Send([]byte("7")); err != nil {
				t.Fatalf("unary stream send: %v", err)
			}
			if err := us.CloseSend(); err != nil {
				t.Fatal(err)
			}
			got, err := receiveAll(us)
			us.Close()
			if err != nil || strings.Join(got, ",") != "7" {
				t.Fatalf("unary stream: %v %v", got, err)
			}

			// Client streaming, with the helper and by hand; zero messages too.
			for _, nums := range [][]string{{"1", "2", "3", "4"}, {}} {
				var reqs [][]byte
				want := 0
				for _, n := range nums {
					reqs = append(reqs, []byte(n))
					want += atoi(t, []byte(n))
				}
				resp, err := cli.CallClientStream(ctx, procSum, reqs)
				if err != nil {
					t.Fatalf("client stream %v: %v", nums, err)
				}
				wantBytes(t, "sum", resp.Message, []byte(strconv.Itoa(want)))
				wantHeaders(t, resp.Header, c, KindClientStream, procSum)
				if got := resp.Trailer.Get("x-trailer"); got != "sum-done" {
					t.Fatalf("client stream trailer %q (trailers %v)", got, resp.Trailer)
				}
			}

			// Server streaming.
			s, err := cli.CallServerStream(ctx, procCount, []byte("5"))
			if err != nil {
				t.Fatalf("server stream: %v", err)
			}
			got, err = receiveAll(s)
			if err != nil {
				t.Fatalf("server stream: %v", err)
			}
			if strings.Join(got, ",") != seq(5) {
				t.Fatalf("server stream got %v", got)
			}
			wantHeaders(t, s.Header(), c, KindServerStream, procCount)
			if tr := s.Trailer().Get("x-trailer"); tr != "count-5" {
				t.Fatalf("server stream trailer %q (%v)", tr, s.Trailer())
			}
			if _, err := s.Receive(); err != io.EOF {
				t.Fatalf("Receive after the end = %v, want io.EOF again", err)
			}
			s.Close()
			s.Close() // idempotent
			if _, err := s.Receive(); err == nil || asError(t, err).Status != StatusClosed {
				t.Fatalf("Receive after Close = %v, want StatusClosed", err)
			}

			// Bidi: full duplex ping-pong on HTTP/2, half duplex on HTTP/1.1.
			b, err := cli.Stream(ctx, procBidiEcho, KindBidiStream)
			if err != nil {
				t.Fatalf("bidi: %v", err)
			}
			defer b.Close()
			if c.http == "2" {
				for i := 0; i < 5; i++ {
					if err := b.Send([]byte(strconv.Itoa(i))); err != nil {
						t.Fatalf("bidi send %d: %v", i, err)
					}
					m, err := b.Receive()
					if err != nil || string(m) != strconv.Itoa(i) {
						t.Fatalf("bidi receive %d: %q %v", i, m, err)
					}
				}
				if err := b.CloseSend(); err != nil {
					t.Fatal(err)
				}
				got, err = receiveAll(b)
				if err != nil || len(got) != 0 {
					t.Fatalf("bidi end: %v %v", got, err)
				}
			} else {
				for i := 0; i < 5; i++ {
					if err := b.Send([]byte(strconv.Itoa(i))); err != nil {
						t.Fatalf("bidi send %d: %v", i, err)
					}
				}
				if err := b.CloseSend(); err != nil {
					t.Fatal(err)
				}
				got, err = receiveAll(b)
				if err != nil || strings.Join(got, ",") != seq(5) {
					t.Fatalf("half-duplex bidi: %v %v", got, err)
				}
			}
			wantHeaders(t, b.Header(), c, KindBidiStream, procBidiEcho)
			if tr := b.Trailer().Get("x-trailer"); tr != "echoed-5" {
				t.Fatalf("bidi trailer %q (%v)", tr, b.Trailer())
			}
			if err := b.Send([]byte("1")); err == nil {
				t.Fatal("Send after CloseSend succeeded")
			}
		})
	}
}

func TestGRPCNeedsHTTP2(t *testing.T) {
	_, err := NewClient("http://127.0.0.1:1", WithProtocol("grpc"), WithHTTPVersion("1.1"))
	if err == nil {
		t.Fatal("gRPC over HTTP/1.1 accepted")
	}
	if e := asError(t, err); !strings.Contains(e.Message, "HTTP/2") {
		t.Fatalf("error %v does not say gRPC needs HTTP/2", err)
	}
	if _, err := NewClient("http://127.0.0.1:1", WithProtocol("soap")); err == nil {
		t.Fatal("unknown protocol accepted")
	} else if e := asError(t, err); e.Status != StatusUnsupported {
		t.Fatalf("unknown protocol: status %v (%v)", e.Status, err)
	}
}

// Errors after messages and before any message, with details, headers and trailers.
func TestStreamErrorsWithDetailsAndTrailers(t *testing.T) {
	ss := newStreamServer(t, nil)
	for _, c := range combos() {
		c := c
		t.Run(c.String(), func(t *testing.T) {
			cli := c.client(t, ss.url)
			for _, n := range []int{2, 0} {
				s, err := cli.CallServerStream(context.Background(), procFailAfter, []byte(strconv.Itoa(n)))
				if err != nil {
					t.Fatal(err)
				}
				got, err := receiveAll(s)
				s.Close()
				if strings.Join(got, ",") != seq(n) {
					t.Fatalf("n=%d: messages before the error: %v", n, got)
				}
				e := wantCode(t, err, CodeNotFound)
				if e.Status != StatusRPC || e.Message != "nothing after "+strconv.Itoa(n) {
					t.Fatalf("n=%d: %+v", n, e)
				}
				if len(e.Details) != 2 {
					t.Fatalf("n=%d: details %+v, want 2", n, e.Details)
				}
				types := map[string][]byte{}
				for _, d := range e.Details {
					types[d.Type] = d.Value
				}
				if string(types["google.rpc.ErrorInfo"]) != string(detailInfo().Value) || string(types["test.v1.Extra"]) != "\x01\x02" {
					t.Fatalf("n=%d: details %+v", n, e.Details)
				}
				md := Metadata(e.Metadata)
				if md.Get("x-fail-trailer") != "t" || md.Get("x-before-fail") != "1" || md.Get("x-err") != "yes" {
					t.Fatalf("n=%d: error metadata %v lacks x-fail-trailer / x-before-fail / x-err", n, md)
				}
			}

			// Client streaming: the handler fails on the second message; Send may see io.EOF.
			s, err := cli.Stream(context.Background(), procSumStrict, KindClientStream)
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range []string{"1", "-1", "2"} {
				if err := s.Send([]byte(m)); err != nil && err != io.EOF {
					t.Fatalf("send %s: %v", m, err)
				}
			}
			_ = s.CloseSend()
			_, err = s.Receive()
			e := wantCode(t, err, CodeInvalidArgument)
			if e.Message != "negative number -1" {
				t.Fatalf("message %q", e.Message)
			}
			_, err2 := s.Receive()
			if CodeOf(err2) != CodeInvalidArgument {
				t.Fatalf("second Receive after the error = %v, want the same error", err2)
			}
			s.Close()
			_, err = cli.CallClientStream(context.Background(), procSumStrict, [][]byte{[]byte("-5")})
			wantCode(t, err, CodeInvalidArgument)

			// Panics and plain errors.
			ps, err := cli.Stream(context.Background(), procPanicS, KindBidiStream)
			if err != nil {
				t.Fatal(err)
			}
			_ = ps.CloseSend()
			_, err = ps.Receive()
			ps.Close()
			if e := wantCode(t, err, CodeInternal); !strings.Contains(e.Message, "panic: stream boom") {
				t.Fatalf("panic message %q", e.Message)
			}
			_, err = cli.CallClientStream(context.Background(), procPlainS, nil)
			if e := wantCode(t, err, CodeInternal); e.Message != "plain stream failure" {
				t.Fatalf("plain error message %q", e.Message)
			}
		})
	}
}

// A ctx deadline becomes the call's timeout: the client's blocked Receive returns
// DEADLINE_EXCEEDED, and the server handler's blocked Receive fails too.
func TestStreamContextDeadline(t *testing.T) {
	ss := newStreamServer(t, nil)
	for _, c := range combos() {
		if c.codec != "proto" {
			continue
		}
		c := c
		t.Run(c.String(), func(t *testing.T) {
			cli := c.client(t, ss.url)
			ctx, cancel := context.WithTimeout(context.Background(), 400*time.Millisecond)
			defer cancel()
			s, err := cli.Stream(ctx, procBlock, KindBidiStream)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if err := s.Send([]byte("1")); err != nil {
				t.Fatal(err)
			}
			if m, err := s.Receive(); err != nil || string(m) != "1" {
				t.Fatalf("first echo: %q %v", m, err)
			}
			start := time.Now()
			_, err = s.Receive() // the handler waits for the next message: blocks until the deadline
			elapsed := time.Since(start)
			wantCode(t, err, CodeDeadlineExceeded)
			if elapsed > 3*time.Second {
				t.Fatalf("deadline of 400 ms took %v", elapsed)
			}
			serr := waitErr(t, ss.recvErrs, "server handler Receive")
			if code := CodeOf(serr); code != CodeCanceled && code != CodeDeadlineExceeded {
				t.Fatalf("server Receive failed with %v, want canceled or deadline_exceeded", serr)
			}
		})
	}
}

// Canceling ctx cancels the call: the client's blocked Receive returns CANCELED and the server
// handler's blocked Receive fails.
func TestStreamContextCancel(t *testing.T) {
	for _, c := range combos() {
		if c.codec != "proto" {
			continue
		}
		c := c
		t.Run(c.String(), func(t *testing.T) {
			ss := newStreamServer(t, nil) // one per subtest: a failure closes it
			cli := c.client(t, ss.url)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			s, err := cli.Stream(ctx, procBlock, KindBidiStream)
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Send([]byte("1")); err != nil {
				t.Fatal(err)
			}
			if m, err := s.Receive(); err != nil || string(m) != "1" {
				t.Fatalf("first echo: %q %v", m, err)
			}
			done := make(chan error, 1)
			go func() {
				_, err := s.Receive() // blocks: the handler waits for the next message
				done <- err
			}()
			time.Sleep(100 * time.Millisecond)
			cancel()
			select {
			case err := <-done:
				wantCode(t, err, CodeCanceled)
			case <-time.After(5 * time.Second):
				// Unblock everything (the server going away ends the client's receive) before failing.
				ss.Close()
				<-done
				s.Close()
				t.Fatal("Receive still blocked 5 s after ctx was canceled " +
					"(connectplugin_client_stream_cancel did not return while a receive was blocked)")
			}
			serr := waitErr(t, ss.recvErrs, "server handler Receive")
			if code := CodeOf(serr); code != CodeCanceled {
				t.Fatalf("server Receive failed with %v, want canceled", serr)
			}
			s.Close()
		})
	}
}

func TestServerStream10000Messages(t *testing.T) {
	ss := newStreamServer(t, nil)
	for _, c := range []combo{{"connect", "2", "proto"}, {"grpc", "2", "proto"}, {"grpcweb", "1.1", "proto"}} {
		c := c
		t.Run(c.String(), func(t *testing.T) {
			cli := c.client(t, ss.url)
			start := time.Now()
			s, err := cli.CallServerStream(context.Background(), procCount, []byte("10000"))
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			n := 0
			for {
				m, err := s.Receive()
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatalf("after %d messages: %v", n, err)
				}
				if string(m) != strconv.Itoa(n) {
					t.Fatalf("message %d = %q", n, m)
				}
				n++
			}
			if n != 10000 || s.Trailer().Get("x-trailer") != "count-10000" {
				t.Fatalf("got %d messages, trailer %v", n, s.Trailer())
			}
			t.Logf("%s: 10000 messages in %v", c, time.Since(start))
		})
	}
}

// Full duplex inside a handler: the server sends before receiving anything, and receives in another
// goroutine while sending.
func TestServerFullDuplexHandler(t *testing.T) {
	ss := newStreamServer(t, nil)
	for _, p := range protocols {
		t.Run(p, func(t *testing.T) {
			cli := combo{p, "2", "proto"}.client(t, ss.url)
			s, err := cli.Stream(context.Background(), procDuplex, KindBidiStream)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if m, err := s.Receive(); err != nil || string(m) != "0" {
				t.Fatalf("unsolicited first message: %q %v", m, err)
			}
			for i := 1; i <= 20; i++ {
				if err := s.Send([]byte(strconv.Itoa(i))); err != nil {
					t.Fatal(err)
				}
				if m, err := s.Receive(); err != nil || string(m) != strconv.Itoa(2*i) {
					t.Fatalf("reply %d: %q %v", i, m, err)
				}
			}
			if err := s.CloseSend(); err != nil {
				t.Fatal(err)
			}
			if got, err := receiveAll(s); err != nil || len(got) != 0 {
				t.Fatalf("end: %v %v", got, err)
			}
		})
	}
}

// Concurrent client streams on one client, with the send and receive sides in different goroutines.
func TestConcurrentClientStreams(t *testing.T) {
	ss := newStreamServer(t, nil)
	for _, c := range []combo{{"connect", "2", "proto"}, {"grpc", "2", "json"}, {"grpcweb", "2", "proto"}} {
		cli := c.client(t, ss.url)
		var wg sync.WaitGroup
		errs := make(chan error, 16)
		for g := 0; g < 6; g++ {
			wg.Add(1)
			go func(g int) {
				defer wg.Done()
				s, err := cli.Stream(context.Background(), procBidiEcho, KindBidiStream)
				if err != nil {
					errs <- err
					return
				}
				defer s.Close()
				const n = 200
				sendErr := make(chan error, 1)
				go func() {
					for i := 0; i < n; i++ {
						if err := s.Send([]byte(strconv.Itoa(g*1000 + i))); err != nil {
							sendErr <- err
							return
						}
					}
					sendErr <- s.CloseSend()
				}()
				got, err := receiveAll(s)
				if err != nil {
					errs <- err
					return
				}
				if err := <-sendErr; err != nil {
					errs <- err
					return
				}
				if len(got) != n || got[n-1] != strconv.Itoa(g*1000+n-1) {
					errs <- errors.New("bad echo: " + strings.Join(got[:3], ","))
				}
			}(g)
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatalf("%s: %v", c, err)
		}
	}
}

func TestServerStreamUnusableAfterHandlerReturns(t *testing.T) {
	ss := newStreamServer(t, nil)
	cli := newTestClient(t, ss.url)
	s, err := cli.CallServerStream(context.Background(), procLeak, []byte("1"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got, err := receiveAll(s); err != nil || len(got) != 0 {
		t.Fatalf("%v %v", got, err)
	}
	leaked := <-ss.leaked
	if err := leaked.Send([]byte("1")); err == nil || asError(t, err).Status != StatusClosed {
		t.Fatalf("Send after the handler returned = %v, want StatusClosed", err)
	}
	if _, err := leaked.Receive(); err == nil || asError(t, err).Status != StatusClosed {
		t.Fatalf("Receive after the handler returned = %v", err)
	}
	if err := leaked.AddResponseHeader("x-a", "b"); err == nil {
		t.Fatal("AddResponseHeader after the handler returned succeeded")
	}
	if !leaked.IsDone() || leaked.TimeoutRemaining() != 0 {
		t.Fatal("IsDone/TimeoutRemaining after the handler returned")
	}
	if leaked.Context().Err() == nil {
		t.Fatal("the stream's context is not canceled after the handler returned")
	}
	if leaked.Procedure() != procLeak || leaked.Kind() != KindServerStream {
		t.Fatalf("accessors: %s %v", leaked.Procedure(), leaked.Kind())
	}
}

// A handler that returns while another goroutine is blocked in Receive: the call ends with the
// handler's error, and the blocked Receive returns (the binding waits for it before releasing the
// stream).
func TestHandlerReturnsWhileReceiveBlocked(t *testing.T) {
	ss := newStreamServer(t, nil)
	for _, c := range []combo{{"connect", "2", "proto"}, {"grpc", "2", "proto"}, {"grpcweb", "1.1", "proto"}} {
		cli := c.client(t, ss.url)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		s, err := cli.Stream(ctx, procAbandon, KindBidiStream)
		if err != nil {
			t.Fatal(err)
		}
		_, err = s.Receive()
		if e := wantCode(t, err, CodeAborted); e.Message != "gave up" {
			t.Fatalf("%s: %v", c, err)
		}
		s.Close()
		cancel()
		if err := waitErr(t, ss.abandon, c.String()+": abandoned Receive"); err == nil {
			t.Fatalf("%s: abandoned Receive returned a message", c)
		}
	}
}

func TestRegisterStreamErrors(t *testing.T) {
	srv, err := NewServer()
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	h := func(*ServerStream) error { return nil }
	if err := srv.RegisterStream(procSum, KindUnary, h); err == nil {
		t.Fatal("RegisterStream with KindUnary accepted")
	} else if e := asError(t, err); e.Status != StatusInvalidArgument {
		t.Fatalf("KindUnary: %v", err)
	}
	if err := srv.RegisterStream(procSum, StreamKind(9), h); err == nil {
		t.Fatal("unknown kind accepted")
	}
	if err := srv.RegisterStream(procSum, KindClientStream, nil); err == nil {
		t.Fatal("nil handler accepted")
	}
	if err := srv.RegisterStream("no-slash", KindClientStream, h); err == nil {
		t.Fatal("malformed procedure accepted")
	}
	if err := srv.RegisterStream(procSum, KindClientStream, h); err != nil {
		t.Fatal(err)
	}
	if err := srv.RegisterStream(procSum, KindBidiStream, h); err == nil {
		t.Fatal("duplicate procedure accepted")
	}
	if err := srv.SetNoSideEffects("/not.Registered/Method"); err == nil {
		t.Fatal("SetNoSideEffects of an unknown procedure accepted")
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	if err := srv.RegisterStream(procCount, KindServerStream, h); err == nil || asError(t, err).Status != StatusState {
		t.Fatalf("RegisterStream after Start = %v, want StatusState", err)
	}
	if KindBidiStream.String() != "bidi_stream" || StreamKind(7).String() != "StreamKind(7)" {
		t.Fatal("StreamKind.String")
	}
}

// Client.Close closes the streams still open; their later use reports StatusClosed.
func TestClientCloseClosesStreams(t *testing.T) {
	ss := newStreamServer(t, nil)
	cli, err := NewClient(ss.url)
	if err != nil {
		t.Fatal(err)
	}
	s, err := cli.Stream(context.Background(), procBidiEcho, KindBidiStream)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Send([]byte("1")); err != nil {
		t.Fatal(err)
	}
	if m, err := s.Receive(); err != nil || string(m) != "1" {
		t.Fatalf("%q %v", m, err)
	}
	cli.Close()
	if err := s.Send([]byte("2")); err == nil || asError(t, err).Status != StatusClosed {
		t.Fatalf("Send after Client.Close = %v, want StatusClosed", err)
	}
	if s.Header().Get("x-kind") != "bidi_stream" {
		t.Fatalf("Header after close: %v", s.Header())
	}
	s.Close()
	if _, err := cli.Stream(context.Background(), procBidiEcho, KindBidiStream); err == nil {
		t.Fatal("Stream on a closed client succeeded")
	}
}

func TestStreamExpiredContextDoesNotCall(t *testing.T) {
	ss := newStreamServer(t, nil)
	cli := newTestClient(t, ss.url)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := cli.Stream(ctx, procBidiEcho, KindBidiStream); CodeOf(err) != CodeCanceled {
		t.Fatalf("canceled ctx: %v", err)
	}
	ctx2, cancel2 := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel2()
	if _, err := cli.Stream(ctx2, procBidiEcho, KindBidiStream); CodeOf(err) != CodeDeadlineExceeded {
		t.Fatalf("expired ctx: %v", err)
	}
	// A per-call timeout bounds the whole stream, and the handler sees a deadline.
	s, err := cli.CallServerStream(context.Background(), procCount, []byte("1"), WithCallTimeout(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := receiveAll(s); err != nil {
		t.Fatal(err)
	}
	if s.Header().Get("x-timeout") != "set" {
		t.Fatalf("handler did not see the deadline: %v", s.Header())
	}
}

// A handler that waits on its context (not in Receive or Send) learns that the client canceled:
// the library's on_done notice cancels ServerStream.Context().
func TestStreamHandlerContextCanceledByClient(t *testing.T) {
	srv, err := NewServer()
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	addr, err := srv.ListenTCP("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ended := make(chan error, 4)
	const proc = "/test.v1.StreamService/WaitCtx"
	if err := srv.RegisterStream(proc, KindServerStream, func(s *ServerStream) error {
		if _, err := s.Receive(); err != nil {
			return err
		}
		if err := s.Send([]byte("ready")); err != nil {
			return err
		}
		select {
		case <-s.Context().Done():
			ended <- s.Context().Err()
		case <-time.After(10 * time.Second):
			ended <- errors.New("the handler's context was not canceled within 10 s")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ protocol, httpv string }{
		{"connect", "2"}, {"grpc", "2"}, {"grpcweb", "2"}, {"connect", "1.1"}, {"grpcweb", "1.1"},
	} {
		c := newTestClient(t, "http://"+addr, WithProtocol(tc.protocol), WithHTTPVersion(tc.httpv))
		ctx, cancel := context.WithCancel(context.Background())
		s, err := c.CallServerStream(ctx, proc, []byte("x"))
		if err != nil {
			t.Fatal(err)
		}
		if m, err := s.Receive(); err != nil || string(m) != "ready" {
			t.Fatalf("%s/http%s: first message %q %v", tc.protocol, tc.httpv, m, err)
		}
		cancel()
		select {
		case err := <-ended:
			if err != context.Canceled {
				t.Fatalf("%s/http%s: handler context ended with %v, want context.Canceled", tc.protocol, tc.httpv, err)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%s/http%s: the handler did not see the client's cancellation within 5 s", tc.protocol, tc.httpv)
		}
		s.Close()
	}
}
