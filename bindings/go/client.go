package connectplugin

/*
#include <stdlib.h>
#include "connectplugin.h"
*/
import "C"

import (
	"context"
	"runtime"
	"sync"
	"time"
)

// ClientOption configures NewClient.
type ClientOption func(*clientConfig)

type clientConfig struct {
	codec       string
	httpVersion string
	compression string
	timeout     time.Duration
	maxBytes    *uint64
	headers     []MetadataEntry
	protocol    string
	useGet      *bool
	tls         *TLSConfig
	// interceptors wrap every call (interceptor.go).
	interceptors []Interceptor
}

// WithCodec selects the codec: "proto" (default, application/proto) or "json" (application/json).
// Request and response messages are passed and returned already serialized in this codec.
func WithCodec(codec string) ClientOption { return func(c *clientConfig) { c.codec = codec } }

// WithHTTPVersion selects "1.1" or "2" (default; prior-knowledge h2c for http:// and unix://).
func WithHTTPVersion(version string) ClientOption {
	return func(c *clientConfig) { c.httpVersion = version }
}

// WithCompression selects the request compression: "identity" (default) or "gzip". Gzip responses
// are always accepted.
func WithCompression(name string) ClientOption { return func(c *clientConfig) { c.compression = name } }

// WithTimeout sets the default timeout of every call (0 = none). Sub-millisecond remainders are
// rounded up to the next millisecond. A context deadline or WithCallTimeout that ends sooner wins.
func WithTimeout(d time.Duration) ClientOption { return func(c *clientConfig) { c.timeout = d } }

// WithMaxResponseBytes sets the largest response message accepted after decompression (library
// default 4 MiB; 0 = no limit).
func WithMaxResponseBytes(n uint64) ClientOption { return func(c *clientConfig) { c.maxBytes = &n } }

// WithHeader adds a header sent with every call. Keys ending in "-bin" may carry arbitrary bytes.
func WithHeader(key, value string) ClientOption {
	return func(c *clientConfig) { c.headers = append(c.headers, MetadataEntry{Key: key, Value: []byte(value)}) }
}

// WithProtocol selects the RPC protocol: "connect" (default), "grpc" (needs HTTP/2) or "grpcweb".
// Every protocol works with every connectplugin server, and with any server of that protocol.
func WithProtocol(protocol string) ClientOption {
	return func(c *clientConfig) { c.protocol = protocol }
}

// WithHTTPGet makes Connect unary calls marked with NoSideEffects use HTTP GET (cacheable; the
// server must have the procedure marked with Server.SetNoSideEffects). Connect only; default false.
func WithHTTPGet(enable bool) ClientOption {
	return func(c *clientConfig) { c.useGet = &enable }
}

// WithTLS sets the TLS settings of https:// URLs: the CA bundle that verifies the server, a client
// certificate for mTLS, the server name. Without it https:// uses the system trust store.
// Verification failures are CodeUnavailable errors whose message names the cause (unknown CA,
// expired, name mismatch).
func WithTLS(cfg *TLSConfig) ClientOption {
	return func(c *clientConfig) { c.tls = cfg }
}

// CallOption configures one call (CallUnary, Stream and the streaming helpers).
type CallOption func(*callConfig)

type callConfig struct {
	timeout       time.Duration
	headers       []MetadataEntry
	noSideEffects bool
}

// NoSideEffects marks the called method as free of side effects (idempotency_level =
// NO_SIDE_EFFECTS): with WithHTTPGet(true), a Connect unary call then uses HTTP GET.
func NoSideEffects() CallOption { return func(c *callConfig) { c.noSideEffects = true } }

// WithCallTimeout sets this call's timeout, replacing the client's default (a context deadline that
// ends sooner still wins).
func WithCallTimeout(d time.Duration) CallOption { return func(c *callConfig) { c.timeout = d } }

// WithCallHeader adds a request header to this call only.
func WithCallHeader(key, value string) CallOption {
	return func(c *callConfig) { c.headers = append(c.headers, MetadataEntry{Key: key, Value: []byte(value)}) }
}

// Response is the successful result of a unary call, copied into Go memory.
type Response struct {
	Message []byte   // the serialized response message, in the client's codec
	Header  Metadata // response headers (protocol headers removed)
	Trailer Metadata // response trailers
}

// Client is a Connect, gRPC or gRPC-Web client (connectplugin_client). It may be used by any number
// of goroutines at once; connections are made lazily and reused.
type Client struct {
	mu      sync.RWMutex // Close takes it exclusively; calls hold it shared
	_ptr    *C.connectplugin_client
	timeout time.Duration
	useGet  bool // WithHTTPGet(true): NoSideEffects calls go out as GET (not through a stream handle)

	streams *streamRegistry // open streams, closed by Close
}

// NewClient creates a client for baseURL: "http://host:port[/prefix]", "https://host:port[/prefix]"
// (see WithTLS) or "unix:///path/to/socket". No connection is made until the first call.
func NewClient(baseURL string, opts ...ClientOption) (*Client, error) {
	if err := checkABI(); err != nil {
		return nil, err
	}
	var cfg clientConfig
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.timeout < 0 {
		return nil, newLocalError(StatusInvalidArgument, CodeInvalidArgument, "timeout must not be negative")
	}
	curl, err := cString("url", baseURL)
	if err != nil {
		return nil, err
	}
	defer freeCString(curl)

	copts := C.connectplugin_client_options_new()
	if copts == nil {
		return nil, newLocalError(StatusResource, CodeResourceExhausted, "connectplugin_client_options_new: out of memory")
	}
	defer C.connectplugin_client_options_free(copts)
	var cerr *C.connectplugin_error
	if cfg.codec != "" {
		s, err := cString("codec", cfg.codec)
		if err != nil {
			return nil, err
		}
		status := C.connectplugin_client_options_set_codec(copts, s, &cerr)
		freeCString(s)
		if err := check(status, &cerr); err != nil {
			return nil, err
		}
	}
	if cfg.httpVersion != "" {
		var v C.int32_t
		switch cfg.httpVersion {
		case "1.1", "1", "http/1.1", "HTTP/1.1":
			v = C.CONNECTPLUGIN_HTTP_1_1
		case "2", "h2", "h2c", "http/2", "HTTP/2":
			v = C.CONNECTPLUGIN_HTTP_2
		default:
			return nil, newLocalError(StatusInvalidArgument, CodeInvalidArgument,
				"unknown HTTP version "+cfg.httpVersion+` (want "1.1" or "2")`)
		}
		if err := check(C.connectplugin_client_options_set_http_version(copts, v, &cerr), &cerr); err != nil {
			return nil, err
		}
	}
	if cfg.compression != "" {
		s, err := cString("compression", cfg.compression)
		if err != nil {
			return nil, err
		}
		status := C.connectplugin_client_options_set_compression(copts, s, &cerr)
		freeCString(s)
		if err := check(status, &cerr); err != nil {
			return nil, err
		}
	}
	if cfg.timeout > 0 {
		status := C.connectplugin_client_options_set_timeout_ms(copts, C.int64_t(durationToMs(cfg.timeout)), &cerr)
		if err := check(status, &cerr); err != nil {
			return nil, err
		}
	}
	if cfg.maxBytes != nil {
		status := C.connectplugin_client_options_set_max_message_bytes(copts, C.uint64_t(*cfg.maxBytes), &cerr)
		if err := check(status, &cerr); err != nil {
			return nil, err
		}
	}
	for _, h := range cfg.headers {
		k, err := cString("header key", h.Key)
		if err != nil {
			return nil, err
		}
		v, n := cBytes(h.Value)
		status := C.connectplugin_client_options_add_header(copts, k, v, n, &cerr)
		freeCString(k)
		runtime.KeepAlive(h.Value)
		if err := check(status, &cerr); err != nil {
			return nil, err
		}
	}

	if cfg.protocol != "" {
		s, err := cString("protocol", cfg.protocol)
		if err != nil {
			return nil, err
		}
		status := C.connectplugin_client_options_set_protocol(copts, s, &cerr)
		freeCString(s)
		if err := check(status, &cerr); err != nil {
			return nil, err
		}
	}
	if err := addClientInterceptors(copts, cfg.interceptors); err != nil {
		return nil, err
	}
	if cfg.useGet != nil {
		v := C.int32_t(0)
		if *cfg.useGet {
			v = 1
		}
		if err := check(C.connectplugin_client_options_set_use_get(copts, v, &cerr), &cerr); err != nil {
			return nil, err
		}
	}
	if cfg.tls != nil {
		topts, err := newTLSOptions(cfg.tls)
		if err != nil {
			return nil, err
		}
		status := C.connectplugin_client_options_set_tls(copts, topts, &cerr)
		C.connectplugin_tls_options_free(topts)
		if err := check(status, &cerr); err != nil {
			return nil, err
		}
	}

	var p *C.connectplugin_client
	if err := check(C.connectplugin_client_new(curl, copts, &p, &cerr), &cerr); err != nil {
		return nil, err
	}
	c := &Client{_ptr: p, timeout: cfg.timeout, useGet: cfg.useGet != nil && *cfg.useGet, streams: &streamRegistry{open: map[*clientStreamCore]struct{}{}}}
	runtime.SetFinalizer(c, (*Client).Close)
	return c, nil
}

// CallUnary calls procedure ("/package.Service/Method") with req, serialized in the client's codec,
// and blocks the calling goroutine until the response arrives.
//
// The ctx deadline becomes the call's timeout: if it has already passed, CallUnary returns
// CodeDeadlineExceeded without calling. A ctx canceled before the call returns CodeCanceled.
// Canceling ctx while the call is in flight cancels it (HTTP/2 RST_STREAM, HTTP/1.1 connection
// close; the server's handler sees its context canceled) and CallUnary returns CodeCanceled: such
// calls run on a stream handle (connectplugin_client_open_stream with CONNECTPLUGIN_UNARY). Calls
// that go out as Connect GET (WithHTTPGet and NoSideEffects) and calls with a context that can
// never be canceled use connectplugin_client_call_unary; the deadline still bounds them.
//
// A failed RPC returns an *Error with Status StatusRPC and the Connect code, message, details and
// metadata; CodeUnavailable when the server cannot be reached.
func (c *Client) CallUnary(ctx context.Context, procedure string, req []byte, opts ...CallOption) (*Response, error) {
	if ctx == nil {
		ctx = context.Background()
	}
	var cfg callConfig
	for _, o := range opts {
		o(&cfg)
	}
	if ctx.Done() != nil && !(cfg.noSideEffects && c.useGet) {
		if err := ctx.Err(); err != nil {
			return nil, contextError(err)
		}
		return c.callOnStream(ctx, procedure, KindUnary, [][]byte{req}, opts...)
	}
	copts, err := c.callOptions(ctx, &cfg)
	if err != nil {
		return nil, err
	}
	defer C.connectplugin_call_options_free(copts) // NULL is a no-op
	cproc, err := cString("procedure", procedure)
	if err != nil {
		return nil, err
	}
	defer freeCString(cproc)

	var cerr *C.connectplugin_error
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c._ptr == nil {
		return nil, errClosed("client")
	}
	data, n := cBytes(req)
	var resp *C.connectplugin_response
	status := C.connectplugin_client_call_unary(c._ptr, cproc, data, n, copts, &resp, &cerr)
	runtime.KeepAlive(req)
	runtime.KeepAlive(c)
	if err := check(status, &cerr); err != nil {
		if resp != nil {
			C.connectplugin_response_free(resp)
		}
		return nil, err
	}
	if resp == nil {
		return nil, newLocalError(StatusRPC, CodeInternal, "connectplugin_client_call_unary returned no response")
	}
	defer C.connectplugin_response_free(resp)
	var mlen C.size_t
	m := C.connectplugin_response_message(resp, &mlen)
	return &Response{
		Message: goBytes(m, mlen),
		Header:  copyMetadata(C.connectplugin_response_headers(resp)),
		Trailer: copyMetadata(C.connectplugin_response_trailers(resp)),
	}, nil
}

// callOptions checks ctx and cfg and builds the C call options: the effective timeout is the
// per-call option (or the client default), shortened by the ctx deadline. It returns NULL when no
// option is needed; the caller frees the result with C.connectplugin_call_options_free.
func (c *Client) callOptions(ctx context.Context, cfg *callConfig) (*C.connectplugin_call_options, error) {
	if cfg.timeout < 0 {
		return nil, newLocalError(StatusInvalidArgument, CodeInvalidArgument, "call timeout must not be negative")
	}
	if err := ctx.Err(); err != nil {
		return nil, contextError(err)
	}
	timeout := c.timeout
	if cfg.timeout > 0 {
		timeout = cfg.timeout
	}
	setTimeout := cfg.timeout > 0
	if dl, ok := ctx.Deadline(); ok {
		remaining := time.Until(dl)
		if remaining <= 0 {
			return nil, newLocalError(StatusRPC, CodeDeadlineExceeded, "context deadline exceeded")
		}
		if timeout <= 0 || remaining < timeout {
			timeout = remaining
			setTimeout = true
		}
	}
	if !setTimeout && len(cfg.headers) == 0 && !cfg.noSideEffects {
		return nil, nil
	}
	copts := C.connectplugin_call_options_new()
	if copts == nil {
		return nil, newLocalError(StatusResource, CodeResourceExhausted, "connectplugin_call_options_new: out of memory")
	}
	ok := false
	defer func() {
		if !ok {
			C.connectplugin_call_options_free(copts)
		}
	}()
	var cerr *C.connectplugin_error
	if setTimeout {
		status := C.connectplugin_call_options_set_timeout_ms(copts, C.int64_t(durationToMs(timeout)), &cerr)
		if err := check(status, &cerr); err != nil {
			return nil, err
		}
	}
	for _, h := range cfg.headers {
		k, err := cString("header key", h.Key)
		if err != nil {
			return nil, err
		}
		v, n := cBytes(h.Value)
		status := C.connectplugin_call_options_add_header(copts, k, v, n, &cerr)
		freeCString(k)
		runtime.KeepAlive(h.Value)
		if err := check(status, &cerr); err != nil {
			return nil, err
		}
	}
	if cfg.noSideEffects {
		if err := check(C.connectplugin_call_options_set_no_side_effects(copts, 1, &cerr), &cerr); err != nil {
			return nil, err
		}
	}
	ok = true
	return copts, nil
}

// Close closes the client's connections and frees it, after waiting for unary calls in progress.
// Streams still open are canceled and closed first (their blocked Send/Receive return). It is
// idempotent and also run by a finalizer; later calls return an error with StatusClosed.
func (c *Client) Close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c._ptr == nil {
		return
	}
	runtime.SetFinalizer(c, nil)
	for _, s := range c.streams.all() {
		s.close()
	}
	C.connectplugin_client_free(c._ptr)
	c._ptr = nil
}

func contextError(err error) *Error {
	if err == context.DeadlineExceeded {
		return newLocalError(StatusRPC, CodeDeadlineExceeded, err.Error())
	}
	return newLocalError(StatusRPC, CodeCanceled, err.Error())
}
