package connectplugin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Procedures of the streaming test server. Messages are decimal numbers, which are valid both as
// opaque proto bytes and as JSON, so every codec can be exercised with the same handlers.
const (
	procSUnary    = "/test.v1.StreamService/Unary"    // unary: echo
	procSum       = "/test.v1.StreamService/Sum"      // client stream: the sum of the numbers
	procCount     = "/test.v1.StreamService/Count"    // server stream: N -> 0..N-1
	procBidiEcho  = "/test.v1.StreamService/BidiEcho" // bidi: echo each message
	procFailAfter = "/test.v1.StreamService/FailAfter"
	procSumStrict = "/test.v1.StreamService/SumStrict" // client stream: fails on a negative number
	procBlock     = "/test.v1.StreamService/Block"     // bidi: echo; reports its Receive error
	procDuplex    = "/test.v1.StreamService/Duplex"    // bidi: sends first, receives in another goroutine
	procLeak      = "/test.v1.StreamService/Leak"      // server stream: hands its stream out and returns
	procAbandon   = "/test.v1.StreamService/Abandon"   // bidi: returns while another goroutine is in Receive
	procPanicS    = "/test.v1.StreamService/Panic"
	procPlainS    = "/test.v1.StreamService/Plain"
)

var protocols = []string{"connect", "grpc", "grpcweb"}

type streamServer struct {
	*Server
	addr     string
	url      string
	recvErrs chan error // procBlock: the error its Receive returned
	blocked  chan struct{}
	leaked   chan *ServerStream
	abandon  chan error // procAbandon: what the abandoned Receive returned
}

// describe adds response headers that tell the client what the handler saw.
func describe(s *ServerStream) error {
	peer := "none"
	if p := s.Peer(); p != nil {
		peer = p.Subject
	}
	timeout := "none"
	if d, ok := s.Deadline(); ok {
		if time.Until(d) <= 0 || s.TimeoutRemaining() < 0 {
			return fmt.Errorf("deadline %v, remaining %v", d, s.TimeoutRemaining())
		}
		timeout = "set"
	}
	for _, kv := range [][2]string{{"x-protocol", s.Protocol()}, {"x-codec", s.Codec()}, {"x-kind", s.Kind().String()},
		{"x-procedure", s.Procedure()}, {"x-req-echo", s.RequestHeaders().Get("x-req")}, {"x-peer", peer},
		{"x-timeout", timeout}} {
		if err := s.AddResponseHeader(kv[0], kv[1]); err != nil {
			return err
		}
	}
	return nil
}

func atoi(t testing.TB, b []byte) int {
	n, err := strconv.Atoi(string(b))
	if err != nil {
		if t != nil {
			t.Fatalf("not a number: %q", b)
		}
		return -1
	}
	return n
}

func newStreamServer(t *testing.T, listen func(*Server) (string, error), opts ...ServerOption) *streamServer {
	t.Helper()
	srv, err := NewServer(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	ss := &streamServer{Server: srv, recvErrs: make(chan error, 16), blocked: make(chan struct{}, 16),
		leaked: make(chan *ServerStream, 1), abandon: make(chan error, 4)}
	if listen == nil {
		listen = func(s *Server) (string, error) { return s.ListenTCP("127.0.0.1:0") }
	}
	if ss.addr, err = listen(srv); err != nil {
		t.Fatalf("listen: %v", err)
	}
	ss.url = "http://" + ss.addr

	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(srv.HandleUnary(procSUnary, func(ctx context.Context, r *Request) ([]byte, error) {
		peer := "none"
		if p := r.Peer(); p != nil {
			peer = p.Subject
		}
		if err := r.AddResponseHeader("x-protocol", r.Protocol()); err != nil {
			return nil, err
		}
		if err := r.AddResponseHeader("x-peer", peer); err != nil {
			return nil, err
		}
		return r.Message, nil
	}))
	must(srv.RegisterStream(procSum, KindClientStream, func(s *ServerStream) error {
		if err := describe(s); err != nil {
			return err
		}
		sum := 0
		for {
			m, err := s.Receive()
			if err == io.EOF {
				break
			}
			if err != nil {
				return err
			}
			sum += atoi(nil, m)
		}
		if err := s.AddResponseTrailer("x-trailer", "sum-done"); err != nil {
			return err
		}
		return s.Send([]byte(strconv.Itoa(sum)))
	}))
	must(srv.RegisterStream(procCount, KindServerStream, func(s *ServerStream) error {
		if err := describe(s); err != nil {
			return err
		}
		m, err := s.Receive()
		if err != nil {
			return err
		}
		if _, err := s.Receive(); err != io.EOF {
			return fmt.Errorf("second Receive of a server stream: %v, want io.EOF", err)
		}
		n := atoi(nil, m)
		for i := 0; i < n; i++ {
			if err := s.Send([]byte(strconv.Itoa(i))); err != nil {
				return err
			}
		}
		return s.AddResponseTrailer("x-trailer", "count-"+strconv.Itoa(n))
	}))
	must(srv.RegisterStream(procBidiEcho, KindBidiStream, func(s *ServerStream) error {
		if err := describe(s); err != nil {
			return err
		}
		n := 0
		for {
			m, err := s.Receive()
			if err == io.EOF {
				return s.AddResponseTrailer("x-trailer", "echoed-"+strconv.Itoa(n))
			}
			if err != nil {
				return err
			}
			n++
			if err := s.Send(m); err != nil {
				return err
			}
		}
	}))
	must(srv.RegisterStream(procFailAfter, KindServerStream, func(s *ServerStream) error {
		m, err := s.Receive()
		if err != nil {
			return err
		}
		if err := s.AddResponseHeader("x-before-fail", "1"); err != nil {
			return err
		}
		n := atoi(nil, m)
		for i := 0; i < n; i++ {
			if err := s.Send([]byte(strconv.Itoa(i))); err != nil {
				return err
			}
		}
		if err := s.AddResponseTrailer("x-fail-trailer", "t"); err != nil {
			return err
		}
		if err := s.AddErrorDetail(ErrorDetail{Type: "test.v1.Extra", Value: []byte{1, 2}}); err != nil {
			return err
		}
		e := NewError(CodeNotFound, "nothing after "+strconv.Itoa(n), detailInfo())
		e.Metadata = []MetadataEntry{{Key: "x-err", Value: []byte("yes")}}
		return e
	}))
	must(srv.RegisterStream(procSumStrict, KindClientStream, func(s *ServerStream) error {
		sum := 0
		for {
			m, err := s.Receive()
			if err == io.EOF {
				return s.Send([]byte(strconv.Itoa(sum)))
			}
			if err != nil {
				return err
			}
			n := atoi(nil, m)
			if n < 0 {
				return NewError(CodeInvalidArgument, "negative number "+string(m))
			}
			sum += n
		}
	}))
	must(srv.RegisterStream(procBlock, KindBidiStream, func(s *ServerStream) error {
		for {
			m, err := s.Receive()
			if err == io.EOF {
				return nil
			}
			if err != nil {
				ss.recvErrs <- err
				return err
			}
			if err := s.Send(m); err != nil {
				ss.recvErrs <- err
				return err
			}
			select {
			case ss.blocked <- struct{}{}:
			default:
			}
		}
	}))
	must(srv.RegisterStream(procDuplex, KindBidiStream, func(s *ServerStream) error {
		// Full duplex: a second goroutine receives while this one sends.
		in := make(chan []byte)
		done := make(chan error, 1)
		go func() {
			defer close(in)
			for {
				m, err := s.Receive()
				if err != nil {
					if err != io.EOF {
						done <- err
					}
					return
				}
				in <- m
			}
		}()
		if err := s.Send([]byte("0")); err != nil { // before anything was received
			return err
		}
		for m := range in {
			if err := s.Send([]byte(strconv.Itoa(atoi(nil, m) * 2))); err != nil {
				return err
			}
		}
		select {
		case err := <-done:
			return err
		default:
			return nil
		}
	}))
	must(srv.RegisterStream(procLeak, KindServerStream, func(s *ServerStream) error {
		ss.leaked <- s
		return nil
	}))
	must(srv.RegisterStream(procAbandon, KindBidiStream, func(s *ServerStream) error {
		started := make(chan struct{})
		go func() {
			close(started)
			_, err := s.Receive() // the client sends nothing: blocks until the call ends
			ss.abandon <- err
		}()
		<-started
		time.Sleep(50 * time.Millisecond) // let the goroutine block in Receive
		return NewError(CodeAborted, "gave up")
	}))
	must(srv.RegisterStream(procPanicS, KindBidiStream, func(s *ServerStream) error {
		panic("stream boom")
	}))
	must(srv.RegisterStream(procPlainS, KindClientStream, func(s *ServerStream) error {
		return errors.New("plain stream failure")
	}))
	must(srv.SetNoSideEffects(procSUnary))
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	return ss
}

// combos is every protocol x HTTP version x codec that a connectplugin client and server share
// (gRPC needs HTTP/2).
type combo struct{ protocol, http, codec string }

func (c combo) String() string { return c.protocol + "/h" + c.http + "/" + c.codec }

func combos() []combo {
	var out []combo
	for _, p := range protocols {
		for _, h := range []string{"1.1", "2"} {
			if p == "grpc" && h == "1.1" {
				continue
			}
			for _, codec := range []string{"proto", "json"} {
				out = append(out, combo{p, h, codec})
			}
		}
	}
	return out
}

func (c combo) client(t *testing.T, url string, extra ...ClientOption) *Client {
	t.Helper()
	opts := append([]ClientOption{WithProtocol(c.protocol), WithHTTPVersion(c.http), WithCodec(c.codec),
		WithHeader("x-req", "r-"+c.protocol)}, extra...)
	return newTestClient(t, url, opts...)
}

// wantHeaders checks the x-* response headers set by describe().
func wantHeaders(t *testing.T, h Metadata, c combo, kind StreamKind, proc string) {
	t.Helper()
	want := map[string]string{"x-protocol": c.protocol, "x-codec": c.codec, "x-kind": kind.String(),
		"x-procedure": proc, "x-req-echo": "r-" + c.protocol}
	for k, v := range want {
		if got := h.Get(k); got != v {
			t.Fatalf("response header %s = %q, want %q (headers %v)", k, got, v, h)
		}
	}
}

// receiveAll reads until the end of the stream.
func receiveAll(s *ClientStream) ([]string, error) {
	var got []string
	for {
		m, err := s.Receive()
		if err != nil {
			if err == io.EOF {
				return got, nil
			}
			return got, err
		}
		got = append(got, string(m))
	}
}

func seq(n int) string {
	var b strings.Builder
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.Itoa(i))
	}
	return b.String()
}

// waitErr waits for one error from ch.
func waitErr(t *testing.T, ch chan error, what string) error {
	t.Helper()
	select {
	case err := <-ch:
		return err
	case <-time.After(5 * time.Second):
		t.Fatalf("%s: no error within 5 s", what)
		return nil
	}
}
