package connectplugin

/*
#include <stdlib.h>
#include "connectplugin.h"
#include "shims.h"
*/
import "C"

import (
	"context"
	"math"
	"runtime"
	"sync"
	"time"
)

// UnaryHandler serves one unary procedure. ctx carries the call's deadline (the client's
// timeout), if any, and is canceled when the client cancels the call or goes away (HTTP/2
// RST_STREAM, HTTP/1.1 connection close) or the server stops. Returning an *Error fails the call with its code, message and
// details; returning any other error fails it with CodeInternal and the error's text
// (context.Canceled / context.DeadlineExceeded give CodeCanceled / CodeDeadlineExceeded).
// A panic is recovered and fails the call with CodeInternal "panic: ...".
//
// Handlers run on the library's handler threads, possibly concurrently.
type UnaryHandler func(ctx context.Context, req *Request) ([]byte, error)

// Request is the request of one unary call, copied into Go memory.
type Request struct {
	Procedure string   // "/package.Service/Method"
	Codec     string   // "proto" or "json": the codec of the request and of the response
	Message   []byte   // the serialized request message
	Header    Metadata // request headers (protocol headers removed)

	protocol string
	peer     *PeerCertificate

	mu       sync.Mutex
	finished bool
	call     *C.connectplugin_call // valid only while the handler runs
	headers  Metadata
	trailers Metadata
}

// Protocol returns the call's wire protocol: "connect", "grpc" or "grpcweb".
func (r *Request) Protocol() string { return r.protocol }

// Peer returns the verified TLS client certificate of the caller (mTLS), or nil when the
// connection has none (plaintext, or TLS without a client certificate).
func (r *Request) Peer() *PeerCertificate { return r.peer }

// AddResponseHeader adds a response header, sent with the response or the error. Safe from any
// goroutine while the handler runs. Keys ending in "-bin" may carry arbitrary bytes.
func (r *Request) AddResponseHeader(key, value string) error {
	return r.addMetadata(&r.headers, key, value)
}

// AddResponseTrailer adds a response trailer (Connect unary sends them as "trailer-" headers).
func (r *Request) AddResponseTrailer(key, value string) error {
	return r.addMetadata(&r.trailers, key, value)
}

func (r *Request) addMetadata(dst *Metadata, key, value string) error {
	// Validate (and lowercase) with the library's own rules now, so the error reaches the handler.
	l, err := NewMetadataList()
	if err != nil {
		return err
	}
	defer l.Close()
	if err := l.Add(key, []byte(value)); err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.finished {
		return newLocalError(StatusState, CodeFailedPrecondition, "the handler has returned")
	}
	*dst = append(*dst, l.Entries()...)
	return nil
}

// IsDone reports whether the call can no longer be answered (deadline passed, client gone, server
// stopping). It must be called on the handler's own goroutine (the library requires the handler's
// thread); after the handler has returned it reports true.
func (r *Request) IsDone() bool {
	r.mu.Lock()
	call, finished := r.call, r.finished
	r.mu.Unlock()
	if finished || call == nil {
		return true
	}
	return C.connectplugin_call_is_done(call) != 0
}

// finish marks the request as answered and returns the collected headers and trailers.
func (r *Request) finish() (Metadata, Metadata) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.finished = true
	r.call = nil
	return r.headers, r.trailers
}

// ServerOption configures NewServer.
type ServerOption func(*serverConfig)

type serverConfig struct {
	maxMessageBytes *uint64
	handlerThreads  *int
	streamLimits    *[3]int
	idleThreadTime  *time.Duration
}

// WithMaxMessageBytes sets the largest request message accepted after decompression (library
// default 4 MiB; 0 = no limit). A larger message is answered with RESOURCE_EXHAUSTED.
func WithMaxMessageBytes(n uint64) ServerOption {
	return func(c *serverConfig) { c.maxMessageBytes = &n }
}

// WithHandlerThreads sets the number of threads that run handlers (library default 8, range 1–1024).
func WithHandlerThreads(n int) ServerOption {
	return func(c *serverConfig) { c.handlerThreads = &n }
}

// WithStreamLimits bounds the streaming handlers running at once (each holds a handler thread for
// its stream's life): per connection (library default 128), per peer over all its connections
// (default 512; a peer is a remote address, a global IPv6 one by its /64) and in total (default 768, capped so
// that unary calls always find a thread). A stream beyond a bound fails at once with
// RESOURCE_EXHAUSTED. Each 1 to 1048576, or 0 to keep that bound's default.
func WithStreamLimits(perConnection, perPeer, total int) ServerOption {
	return func(c *serverConfig) { c.streamLimits = &[3]int{perConnection, perPeer, total} }
}

// WithIdleThreadTimeout sets how long a handler thread started beyond the handler threads waits for
// work before it exits (library default 10 s; 1 ms to 24 h).
func WithIdleThreadTimeout(d time.Duration) ServerOption {
	return func(c *serverConfig) { c.idleThreadTime = &d }
}

// Server is a Connect server (connectplugin_server). Create it with NewServer, add listeners and
// handlers, Start it, and finally Stop and Close it. Its methods may be called from any goroutine,
// but Stop and Close must not be called from inside a handler.
type Server struct {
	mu       sync.RWMutex // Close takes it exclusively; every other C call holds it shared
	_ptr     *C.connectplugin_server
	listenMu sync.Mutex
	addrs    []string
}

// NewServer creates a stopped server.
func NewServer(opts ...ServerOption) (*Server, error) {
	if err := checkABI(); err != nil {
		return nil, err
	}
	var cfg serverConfig
	for _, o := range opts {
		o(&cfg)
	}
	copts := C.connectplugin_server_options_new()
	if copts == nil {
		return nil, newLocalError(StatusResource, CodeResourceExhausted, "connectplugin_server_options_new: out of memory")
	}
	defer C.connectplugin_server_options_free(copts)
	var cerr *C.connectplugin_error
	if cfg.maxMessageBytes != nil {
		status := C.connectplugin_server_options_set_max_message_bytes(copts, C.uint64_t(*cfg.maxMessageBytes), &cerr)
		if err := check(status, &cerr); err != nil {
			return nil, err
		}
	}
	if cfg.handlerThreads != nil {
		n := *cfg.handlerThreads
		if n < 0 || int64(n) > math.MaxUint32 {
			return nil, newLocalError(StatusInvalidArgument, CodeInvalidArgument, "handler threads out of range: "+itoa(n))
		}
		status := C.connectplugin_server_options_set_handler_threads(copts, C.uint32_t(n), &cerr)
		if err := check(status, &cerr); err != nil {
			return nil, err
		}
	}
	if cfg.streamLimits != nil {
		var v [3]C.uint32_t
		for i, n := range cfg.streamLimits {
			if n < 0 || int64(n) > math.MaxUint32 {
				return nil, newLocalError(StatusInvalidArgument, CodeInvalidArgument, "stream limit out of range: "+itoa(n))
			}
			v[i] = C.uint32_t(n)
		}
		status := C.connectplugin_server_options_set_stream_limits(copts, v[0], v[1], v[2], &cerr)
		if err := check(status, &cerr); err != nil {
			return nil, err
		}
	}
	if cfg.idleThreadTime != nil {
		ms := cfg.idleThreadTime.Milliseconds()
		if ms < 0 || ms > math.MaxUint32 {
			return nil, newLocalError(StatusInvalidArgument, CodeInvalidArgument, "idle thread timeout out of range: "+cfg.idleThreadTime.String())
		}
		status := C.connectplugin_server_options_set_idle_thread_timeout_ms(copts, C.uint32_t(ms), &cerr)
		if err := check(status, &cerr); err != nil {
			return nil, err
		}
	}
	var p *C.connectplugin_server
	status := C.connectplugin_server_new(copts, &p, &cerr)
	if err := check(status, &cerr); err != nil {
		return nil, err
	}
	s := &Server{_ptr: p}
	runtime.SetFinalizer(s, (*Server).Close)
	return s, nil
}

// ListenTCP binds and listens on "host:port" (port 0 picks a free port) and returns the bound
// address, e.g. "127.0.0.1:43127". Allowed before and after Start.
func (s *Server) ListenTCP(addr string) (string, error) {
	return s.listen("tcp", addr, nil)
}

// ListenTLS binds and listens on "host:port" like ListenTCP, speaking TLS only: HTTP/2 or
// HTTP/1.1 chosen by ALPN, all three protocols. cfg needs a certificate and key; with a CA and
// RequireClientCert it demands client certificates (mTLS). A bad certificate or key is an
// *Error with StatusInvalidArgument and the reason. It returns the bound address.
func (s *Server) ListenTLS(addr string, cfg *TLSConfig) (string, error) {
	opts, err := newTLSOptions(cfg)
	if err != nil {
		return "", err
	}
	defer C.connectplugin_tls_options_free(opts)
	return s.listen("tls", addr, opts)
}

// ListenUnix binds and listens on a Unix domain socket at path (an existing socket file is
// replaced; the file is removed when the server stops) and returns "unix:PATH".
func (s *Server) ListenUnix(path string) (string, error) {
	return s.listen("unix", path, nil)
}

// ListenInProcess listens under name inside this process: clients of the URL "inproc://NAME"
// reach the server over an in-memory pipe, with no socket. name is 1-255 letters, digits and
// -._~; one server per name at a time, freed when the server stops. It returns "inproc://NAME".
func (s *Server) ListenInProcess(name string) (string, error) {
	return s.listen("inproc", name, nil)
}

func (s *Server) listen(kind, addr string, tls *C.connectplugin_tls_options) (string, error) {
	caddr, err := cString("address", addr)
	if err != nil {
		return "", err
	}
	defer freeCString(caddr)
	s.listenMu.Lock()
	defer s.listenMu.Unlock()
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s._ptr == nil {
		return "", errClosed("server")
	}
	var cerr *C.connectplugin_error
	var status C.connectplugin_status
	switch kind {
	case "unix":
		status = C.connectplugin_server_listen_unix(s._ptr, caddr, &cerr)
	case "inproc":
		status = C.connectplugin_server_listen_inprocess(s._ptr, caddr, &cerr)
	case "tls":
		status = C.connectplugin_server_listen_tls(s._ptr, caddr, tls, &cerr)
	default:
		status = C.connectplugin_server_listen_tcp(s._ptr, caddr, &cerr)
	}
	if err := check(status, &cerr); err != nil {
		runtime.KeepAlive(s)
		return "", err
	}
	n := C.connectplugin_server_address_count(s._ptr)
	bound := ""
	if n > 0 {
		if a := C.connectplugin_server_address(s._ptr, n-1); a != nil {
			bound = C.GoString(a)
		}
	}
	runtime.KeepAlive(s)
	s.addrs = append(s.addrs, bound)
	return bound, nil
}

// Addresses returns the bound address of every listener, in the order they were added.
func (s *Server) Addresses() []string {
	s.listenMu.Lock()
	defer s.listenMu.Unlock()
	return append([]string(nil), s.addrs...)
}

// HandleUnary registers h for procedure ("/package.Service/Method"). Allowed before Start only.
func (s *Server) HandleUnary(procedure string, h UnaryHandler) error {
	return s.handleUnary(procedure, h, false)
}

// HandleUnaryInline registers a non-blocking h for procedure: it runs on the library's I/O thread
// that read the request, not on a handler thread, and its answer goes out in the same loop
// iteration (no thread hand-off). h must not block (no I/O, no sleeping, no client calls, no
// long-held locks): a blocking handler stalls every connection on that loop. Interceptors wrap
// it and run inline too. Allowed before Start only.
func (s *Server) HandleUnaryInline(procedure string, h UnaryHandler) error {
	return s.handleUnary(procedure, h, true)
}

func (s *Server) handleUnary(procedure string, h UnaryHandler, inline bool) error {
	if h == nil {
		return newLocalError(StatusInvalidArgument, CodeInvalidArgument, "handler is nil")
	}
	cproc, err := cString("procedure", procedure)
	if err != nil {
		return err
	}
	defer freeCString(cproc)
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s._ptr == nil {
		return errClosed("server")
	}
	handle, ud := newUserData(&unaryEntry{procedure: procedure, fn: h})
	_ = handle // deleted by goFreeHandle, which the library calls exactly once (even on failure)
	var cerr *C.connectplugin_error
	var status C.connectplugin_status
	if inline {
		status = C.connectplugin_server_register_unary_inline(s._ptr, cproc,
			C.connectplugin_unary_handler(C.go_unary_trampoline), C.go_handle_to_user_data(ud),
			C.connectplugin_free_func(C.go_free_trampoline), &cerr)
	} else {
		status = C.connectplugin_server_register_unary(s._ptr, cproc,
			C.connectplugin_unary_handler(C.go_unary_trampoline), C.go_handle_to_user_data(ud),
			C.connectplugin_free_func(C.go_free_trampoline), &cerr)
	}
	runtime.KeepAlive(s)
	return check(status, &cerr)
}

// SetNoSideEffects marks the registered unary procedure as free of side effects
// (idempotency_level = NO_SIDE_EFFECTS): it then also accepts Connect GET requests, which HTTP
// caches can serve. Register the procedure first; allowed before Start only.
func (s *Server) SetNoSideEffects(procedure string) error {
	cproc, err := cString("procedure", procedure)
	if err != nil {
		return err
	}
	defer freeCString(cproc)
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s._ptr == nil {
		return errClosed("server")
	}
	var cerr *C.connectplugin_error
	status := C.connectplugin_server_set_no_side_effects(s._ptr, cproc, &cerr)
	runtime.KeepAlive(s)
	return check(status, &cerr)
}

// HandlerThreadCount returns the handler threads alive now: the handler thread count when idle,
// more while handlers are busy, back down after the idle thread timeout. 0 once closed.
func (s *Server) HandlerThreadCount() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s._ptr == nil {
		return 0
	}
	n := C.connectplugin_server_handler_thread_count(s._ptr)
	runtime.KeepAlive(s)
	return int(n)
}

// Start starts accepting connections on every listener (and on those added later).
func (s *Server) Start() error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s._ptr == nil {
		return errClosed("server")
	}
	var cerr *C.connectplugin_error
	status := C.connectplugin_server_start(s._ptr, &cerr)
	runtime.KeepAlive(s)
	return check(status, &cerr)
}

// Stop stops gracefully: no new connections, calls in flight get up to grace to finish, then the
// rest are canceled and all connections closed. It blocks until done. Stopping again, stopping a
// server never started, or stopping a closed server returns nil.
func (s *Server) Stop(grace time.Duration) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s._ptr == nil {
		return nil
	}
	var cerr *C.connectplugin_error
	status := C.connectplugin_server_stop(s._ptr, C.int64_t(durationToMs(grace)), &cerr)
	runtime.KeepAlive(s)
	return check(status, &cerr)
}

// Close stops the server without grace if it runs, waits for running handlers to return, releases
// every handler and frees the server. It is idempotent and also run by a finalizer, but call it
// explicitly: the Go GC does not see the server's native memory, sockets and threads.
func (s *Server) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s._ptr == nil {
		return
	}
	runtime.SetFinalizer(s, nil)
	C.connectplugin_server_free(s._ptr)
	s._ptr = nil
}
