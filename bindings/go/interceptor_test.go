package connectplugin

import (
	"context"
	"errors"
	"io"
	"strings"
	"sync"
	"testing"
)

const icptSvc = "/test.v1.Interceptors/"

// eventLog collects hook events from library threads.
type eventLog struct {
	mu sync.Mutex
	ev []string
}

func (l *eventLog) add(s string) {
	l.mu.Lock()
	l.ev = append(l.ev, s)
	l.mu.Unlock()
}

func (l *eventLog) take() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := strings.Join(l.ev, ",")
	l.ev = nil
	return s
}

// newInterceptedServer serves Echo (unary), Missing (fails NOT_FOUND) and Count (server stream of
// req[0] messages) after setup added interceptors; it returns the base URL and a handler counter.
func newInterceptedServer(t *testing.T, setup func(s *Server)) (string, *eventLog) {
	t.Helper()
	s, err := NewServer()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	handlers := &eventLog{}
	if err := s.HandleUnary(icptSvc+"Echo", func(ctx context.Context, req *Request) ([]byte, error) {
		handlers.add("echo")
		return append(req.Message, []byte(req.Header.Get("x-from-client"))...), nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := s.HandleUnary(icptSvc+"Missing", func(ctx context.Context, req *Request) ([]byte, error) {
		handlers.add("missing")
		return nil, NewError(CodeNotFound, "no such key")
	}); err != nil {
		t.Fatal(err)
	}
	if err := s.RegisterStream(icptSvc+"Count", KindServerStream, func(st *ServerStream) error {
		handlers.add("count")
		m, err := st.Receive()
		if err != nil {
			return err
		}
		for i := 0; i < int(m[0]); i++ {
			if err := st.Send([]byte{byte(i)}); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	setup(s)
	addr, err := s.ListenTCP("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	return "http://" + addr, handlers
}

func countStream(ctx context.Context, c *Client, opts ...CallOption) (int, *ClientStream, error) {
	s, err := c.CallServerStream(ctx, icptSvc+"Count", []byte{3}, opts...)
	if err != nil {
		return 0, nil, err
	}
	n := 0
	for {
		_, err := s.Receive()
		if err == io.EOF {
			return n, s, nil
		}
		if err != nil {
			s.Close()
			return n, nil, err
		}
		n++
	}
}

var authInterceptor = Interceptor{Start: func(call *InterceptorCall) error {
	if call.Header.Get("authorization") != "Bearer secret" {
		return NewError(CodeUnauthenticated, "missing or wrong token")
	}
	return nil
}}

func TestInterceptorAuthRejects(t *testing.T) {
	url, handlers := newInterceptedServer(t, func(s *Server) {
		if err := s.AddInterceptor(authInterceptor); err != nil {
			t.Fatal(err)
		}
	})
	for _, proto := range []string{"connect", "grpc", "grpcweb"} {
		t.Run(proto, func(t *testing.T) {
			c := newTestClient(t, url, WithProtocol(proto))
			ctx := context.Background()
			_, err := c.CallUnary(ctx, icptSvc+"Echo", []byte("a"))
			wantCode(t, err, CodeUnauthenticated)
			_, _, err = countStream(ctx, c)
			wantCode(t, err, CodeUnauthenticated)
			// A cancelable context runs the unary call on a stream handle: intercepted too.
			cctx, cancel := context.WithCancel(ctx)
			_, err = c.CallUnary(cctx, icptSvc+"Echo", []byte("a"))
			cancel()
			wantCode(t, err, CodeUnauthenticated)
			if got := handlers.take(); got != "" {
				t.Fatalf("rejected calls reached handlers: %s", got)
			}
			if _, err := c.CallUnary(ctx, icptSvc+"Echo", []byte("a"), WithCallHeader("authorization", "Bearer secret")); err != nil {
				t.Fatal(err)
			}
			// A client interceptor supplies the token.
			tc := newTestClient(t, url, WithProtocol(proto), WithInterceptor(Interceptor{Start: func(call *InterceptorCall) error {
				return call.AddRequestHeader("authorization", "Bearer secret")
			}}))
			if n, s, err := countStream(ctx, tc); err != nil || n != 3 {
				t.Fatalf("count with token: %d, %v", n, err)
			} else {
				s.Close()
			}
			if got := handlers.take(); got != "echo,count" {
				t.Fatalf("handlers = %s", got)
			}
		})
	}
}

func TestInterceptorHeadersAndTrailers(t *testing.T) {
	url, _ := newInterceptedServer(t, func(s *Server) {
		err := s.AddInterceptor(Interceptor{
			Start: func(call *InterceptorCall) error {
				if err := call.AddResponseHeader("x-icpt-header", "h-"+call.Protocol); err != nil {
					return err
				}
				return call.AddResponseTrailer("x-icpt-start", "s")
			},
			End: func(call *InterceptorCall, err *Error) {
				code := CodeOK
				if err != nil {
					code = err.Code
				}
				_ = call.AddResponseTrailer("x-icpt-end", code.String())
			},
		})
		if err != nil {
			t.Fatal(err)
		}
	})
	for _, proto := range []string{"connect", "grpc", "grpcweb"} {
		t.Run(proto, func(t *testing.T) {
			seen := &eventLog{}
			c := newTestClient(t, url, WithProtocol(proto), WithInterceptor(Interceptor{
				Start: func(call *InterceptorCall) error { return call.AddRequestHeader("x-from-client", "-abc") },
				End: func(call *InterceptorCall, err *Error) {
					seen.add(call.ResponseHeader.Get("x-icpt-header") + "/" + call.ResponseTrailer.Get("x-icpt-end"))
				},
			}))
			resp, err := c.CallUnary(context.Background(), icptSvc+"Echo", []byte("m"))
			if err != nil {
				t.Fatal(err)
			}
			wantBytes(t, "message", resp.Message, []byte("m-abc"))
			if got := resp.Header.Get("x-icpt-header"); got != "h-"+proto {
				t.Fatalf("x-icpt-header = %q (%v)", got, resp.Header)
			}
			if resp.Trailer.Get("x-icpt-start") != "s" || resp.Trailer.Get("x-icpt-end") != "ok" {
				t.Fatalf("trailers %v", resp.Trailer)
			}
			n, s, err := countStream(context.Background(), c)
			if err != nil || n != 3 {
				t.Fatalf("count: %d %v", n, err)
			}
			if s.Header().Get("x-icpt-header") != "h-"+proto || s.Trailer().Get("x-icpt-end") != "ok" {
				t.Fatalf("stream headers %v trailers %v", s.Header(), s.Trailer())
			}
			s.Close()
			if got := seen.take(); got != "h-"+proto+"/ok,h-"+proto+"/ok" {
				t.Fatalf("client end hooks saw %s", got)
			}
		})
	}
}

func named(name string, log *eventLog) Interceptor {
	return Interceptor{
		Start: func(call *InterceptorCall) error {
			log.add("start " + name)
			return nil
		},
		End: func(call *InterceptorCall, err *Error) {
			code := CodeOK
			if err != nil {
				code = err.Code
			}
			log.add("end " + name + " " + code.String())
		},
	}
}

func TestInterceptorChainOrderAndPerProcedure(t *testing.T) {
	log := &eventLog{}
	url, _ := newInterceptedServer(t, func(s *Server) {
		for _, err := range []error{
			s.AddInterceptor(named("a", log)),
			s.AddProcedureInterceptor(icptSvc+"Missing", named("p", log)),
			s.AddInterceptor(named("b", log)),
		} {
			if err != nil {
				t.Fatal(err)
			}
		}
	})
	for _, proto := range []string{"connect", "grpc"} {
		c := newTestClient(t, url, WithProtocol(proto), WithInterceptor(named("c1", log)), WithInterceptor(named("c2", log)))
		if _, err := c.CallUnary(context.Background(), icptSvc+"Echo", []byte("x")); err != nil {
			t.Fatal(err)
		}
		want := "start c1,start c2,start a,start b,end b ok,end a ok,end c2 ok,end c1 ok"
		if got := log.take(); got != want {
			t.Fatalf("%s Echo: %s\nwant %s", proto, got, want)
		}
		_, err := c.CallUnary(context.Background(), icptSvc+"Missing", nil)
		wantCode(t, err, CodeNotFound)
		want = "start c1,start c2,start a,start b,start p,end p not_found,end b not_found,end a not_found,end c2 not_found,end c1 not_found"
		if got := log.take(); got != want {
			t.Fatalf("%s Missing: %s\nwant %s", proto, got, want)
		}
	}
}

func TestInterceptorCallInfoAndValue(t *testing.T) {
	log := &eventLog{}
	url, _ := newInterceptedServer(t, func(s *Server) {
		err := s.AddInterceptor(Interceptor{
			Start: func(call *InterceptorCall) error {
				call.Value = call.Procedure
				log.add(call.Procedure + " " + call.Kind.String() + " " + call.Protocol + " " + call.Codec)
				if !call.IsServer || call.Deadline.IsZero() || call.Peer != nil {
					log.add("bad info")
				}
				return nil
			},
			End: func(call *InterceptorCall, err *Error) {
				msg := "ok"
				if err != nil {
					msg = err.Code.String() + ":" + err.Message
				}
				log.add("end " + call.Value.(string) + " " + msg)
			},
		})
		if err != nil {
			t.Fatal(err)
		}
	})
	c := newTestClient(t, url, WithProtocol("grpcweb"), WithTimeout(60e9))
	_, err := c.CallUnary(context.Background(), icptSvc+"Missing", nil)
	wantCode(t, err, CodeNotFound)
	if n, s, err := countStream(context.Background(), c); err != nil || n != 3 {
		t.Fatalf("count: %d %v", n, err)
	} else {
		s.Close()
	}
	want := icptSvc + "Missing " + KindUnary.String() + " grpcweb proto,end " + icptSvc + "Missing not_found:no such key," +
		icptSvc + "Count " + KindServerStream.String() + " grpcweb proto,end " + icptSvc + "Count ok"
	if got := log.take(); got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
}

func TestInterceptorClientRejectsAndObservesMessages(t *testing.T) {
	url, handlers := newInterceptedServer(t, func(s *Server) {})
	ends := &eventLog{}
	c := newTestClient(t, url, WithInterceptor(Interceptor{
		Start: func(call *InterceptorCall) error { return errors.New("not today") },
		End:   func(call *InterceptorCall, err *Error) { ends.add(err.Code.String() + ":" + err.Message) },
	}))
	_, err := c.CallUnary(context.Background(), icptSvc+"Echo", []byte("x"))
	wantCode(t, err, CodeInternal)
	if got := ends.take(); got != "internal:not today" {
		t.Fatalf("end saw %s", got)
	}
	if got := handlers.take(); got != "" {
		t.Fatalf("handlers ran: %s", got)
	}
	msgs := &eventLog{}
	oc := newTestClient(t, url, WithInterceptor(Interceptor{Message: func(call *InterceptorCall, d Direction, m []byte) {
		dir := "req"
		if d == DirectionResponse {
			dir = "resp"
		}
		msgs.add(dir + ":" + string(m))
	}}))
	if _, err := oc.CallUnary(context.Background(), icptSvc+"Echo", []byte("hi")); err != nil {
		t.Fatal(err)
	}
	if got := msgs.take(); got != "req:hi,resp:hi" {
		t.Fatalf("messages %s", got)
	}
}

func TestInterceptorAddRules(t *testing.T) {
	s, err := NewServer()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.AddInterceptor(Interceptor{}); err == nil {
		t.Fatal("an empty interceptor was accepted")
	}
	if err := s.AddProcedureInterceptor("bad", named("x", &eventLog{})); err == nil {
		t.Fatal("a malformed procedure was accepted")
	}
	if _, err := s.ListenTCP("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	e := asError(t, s.AddInterceptor(named("x", &eventLog{})))
	if e.Status != StatusState {
		t.Fatalf("after start: %v", e)
	}
}

// An interceptor that authorizes by the mTLS client certificate.
func TestInterceptorSeesTLSPeer(t *testing.T) {
	pki := newTestPKI(t)
	seen := &eventLog{}
	s, err := NewServer()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.HandleUnary(icptSvc+"Echo", func(ctx context.Context, req *Request) ([]byte, error) { return req.Message, nil }); err != nil {
		t.Fatal(err)
	}
	if err := s.AddInterceptor(Interceptor{Start: func(call *InterceptorCall) error {
		if call.Peer == nil {
			seen.add("no peer")
			return NewError(CodePermissionDenied, "a client certificate is required")
		}
		seen.add(call.Peer.Subject)
		if !strings.Contains(call.Peer.Subject, pki.ClientSubjectCN) {
			return NewError(CodePermissionDenied, "unknown client")
		}
		return nil
	}}); err != nil {
		t.Fatal(err)
	}
	addr, err := s.ListenTLS("127.0.0.1:0", &TLSConfig{CertPEM: pki.ServerCertPEM, KeyPEM: pki.ServerKeyPEM, CAPEM: pki.CAPEM})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	url := "https://" + addr
	// With a client certificate: allowed.
	c := newTestClient(t, url, WithTLS(&TLSConfig{CAFile: pki.CAFile, CertFile: pki.ClientCert, KeyFile: pki.ClientKey}))
	if _, err := c.CallUnary(context.Background(), icptSvc+"Echo", []byte("x")); err != nil {
		t.Fatal(err)
	}
	// Without one (the listener does not require it): the interceptor rejects.
	anon := newTestClient(t, url, WithTLS(&TLSConfig{CAFile: pki.CAFile}))
	_, err = anon.CallUnary(context.Background(), icptSvc+"Echo", []byte("x"))
	wantCode(t, err, CodePermissionDenied)
	if got := seen.take(); got != "CN="+pki.ClientSubjectCN+",no peer" {
		t.Fatalf("interceptor saw %s", got)
	}
}
