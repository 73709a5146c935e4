package connectplugin

// Streaming calls on the client. The calling goroutine sends and receives with blocking C calls;
// a goroutine per stream with a cancellable context watches ctx.Done() and cancels the call.

/*
#include <stdlib.h>
#include "connectplugin.h"
*/
import "C"

import (
	"context"
	"io"
	"runtime"
	"sync"
)

// streamRegistry holds a client's open streams, so that Client.Close can close them first. It is
// separate from Client so that streams do not reference the Client (whose finalizer would then sit
// in a reference cycle and never run).
type streamRegistry struct {
	mu   sync.Mutex
	open map[*clientStreamCore]struct{}
}

func (r *streamRegistry) add(s *clientStreamCore) {
	r.mu.Lock()
	r.open[s] = struct{}{}
	r.mu.Unlock()
}

func (r *streamRegistry) remove(s *clientStreamCore) {
	r.mu.Lock()
	delete(r.open, s)
	r.mu.Unlock()
}

func (r *streamRegistry) all() []*clientStreamCore {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]*clientStreamCore, 0, len(r.open))
	for s := range r.open {
		out = append(out, s)
	}
	return out
}

// ClientStream is one streaming call (connectplugin_client_stream), opened with Client.Stream.
//
// One goroutine may Send (and CloseSend) while another Receives; Header, Trailer and Close may be
// called from any goroutine. Close it when done: it frees the native stream and cancels the call if
// it is still running (also done by a finalizer, and by Client.Close).
type ClientStream struct {
	core *clientStreamCore
}

type clientStreamCore struct {
	procedure string
	kind      StreamKind
	ctx       context.Context
	reg       *streamRegistry

	sendMu sync.Mutex
	recvMu sync.Mutex // one Receive at a time (the received bytes are borrowed until the next one)

	mu         sync.Mutex
	cond       *sync.Cond
	ptr        *C.connectplugin_client_stream
	closed     bool
	inflight   int
	header     Metadata
	headerSet  bool
	trailer    Metadata
	trailerSet bool

	stop     chan struct{}
	stopOnce sync.Once
}

// Stream opens a streaming call of procedure ("/package.Service/Method"). kind is
// KindClientStream, KindServerStream or KindBidiStream (KindUnary works too: send one message,
// CloseSend, Receive one).
//
// The ctx deadline (shortened by WithCallTimeout or the client default, whichever ends sooner)
// becomes the call's timeout, which covers the whole call: Receive then returns
// CodeDeadlineExceeded. Canceling ctx cancels the call (HTTP/2 RST_STREAM, HTTP/1.1 connection
// close): a blocked Send or Receive returns CodeCanceled (CodeDeadlineExceeded when ctx's deadline
// passed).
//
// Depending on the protocol, opening may not contact the server yet: connection failures can show
// up as the first Send or Receive error (CodeUnavailable).
func (c *Client) Stream(ctx context.Context, procedure string, kind StreamKind, opts ...CallOption) (*ClientStream, error) {
	if ctx == nil {
		ctx = context.Background()
	}
	var cfg callConfig
	for _, o := range opts {
		o(&cfg)
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

	c.mu.RLock()
	defer c.mu.RUnlock()
	if c._ptr == nil {
		return nil, errClosed("client")
	}
	var p *C.connectplugin_client_stream
	var cerr *C.connectplugin_error
	status := C.connectplugin_client_open_stream(c._ptr, cproc, C.connectplugin_method_kind(kind), copts, &p, &cerr)
	runtime.KeepAlive(c)
	if err := check(status, &cerr); err != nil {
		if p != nil {
			C.connectplugin_client_stream_free(p)
		}
		return nil, err
	}
	core := &clientStreamCore{procedure: procedure, kind: kind, ctx: ctx, reg: c.streams, ptr: p,
		stop: make(chan struct{})}
	core.cond = sync.NewCond(&core.mu)
	c.streams.add(core)
	if ctx.Done() != nil {
		go core.watch()
	}
	s := &ClientStream{core: core}
	runtime.SetFinalizer(s, (*ClientStream).Close)
	return s, nil
}

// CallServerStream opens a server-streaming call, sends req and half-closes. Read the responses
// with Receive until io.EOF, then Close the stream.
func (c *Client) CallServerStream(ctx context.Context, procedure string, req []byte, opts ...CallOption) (*ClientStream, error) {
	s, err := c.Stream(ctx, procedure, KindServerStream, opts...)
	if err != nil {
		return nil, err
	}
	if err := s.Send(req); err != nil && err != io.EOF { // io.EOF: Receive reports the status
		s.Close()
		return nil, err
	}
	if err := s.CloseSend(); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// CallClientStream runs a client-streaming call: it sends every message of reqs, half-closes and
// returns the single response with its headers and trailers. Zero messages are allowed.
func (c *Client) CallClientStream(ctx context.Context, procedure string, reqs [][]byte, opts ...CallOption) (*Response, error) {
	return c.callOnStream(ctx, procedure, KindClientStream, reqs, opts...)
}

// callOnStream sends reqs on a stream of the given kind, half-closes and returns its one response.
func (c *Client) callOnStream(ctx context.Context, procedure string, kind StreamKind, reqs [][]byte, opts ...CallOption) (*Response, error) {
	s, err := c.Stream(ctx, procedure, kind, opts...)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	for _, r := range reqs {
		if err := s.Send(r); err != nil {
			if err == io.EOF { // the call already ended: Receive has its status
				break
			}
			return nil, err
		}
	}
	if err := s.CloseSend(); err != nil {
		return nil, err
	}
	msg, err := s.Receive()
	if err == io.EOF {
		return nil, newLocalError(StatusRPC, CodeInternal, "the server sent no response message")
	}
	if err != nil {
		return nil, err
	}
	if _, err := s.Receive(); err != io.EOF {
		if err == nil {
			return nil, newLocalError(StatusRPC, CodeInternal, "the server sent more than one response message")
		}
		return nil, err
	}
	return &Response{Message: msg, Header: s.Header(), Trailer: s.Trailer()}, nil
}

// Procedure returns the called procedure.
func (s *ClientStream) Procedure() string { return s.core.procedure }

// Kind returns the kind the stream was opened with.
func (s *ClientStream) Kind() StreamKind { return s.core.kind }

// Send sends one request message (copied). It blocks while the transport is behind
// (back-pressure). It returns io.EOF when the call has already ended: Receive then returns its
// status. Sending after CloseSend, or a second message to a method that takes one, is an *Error
// with StatusState.
func (s *ClientStream) Send(msg []byte) error {
	c := s.core
	c.sendMu.Lock()
	defer c.sendMu.Unlock()
	p, err := c.acquire()
	if err != nil {
		return err
	}
	defer c.release()
	v, n := cBytes(msg)
	var cerr *C.connectplugin_error
	status := C.connectplugin_client_stream_send(p, v, n, &cerr)
	runtime.KeepAlive(msg)
	if status == C.CONNECTPLUGIN_ERR_RPC {
		if cerr != nil {
			C.connectplugin_error_free(cerr)
		}
		return io.EOF
	}
	return check(status, &cerr)
}

// CloseSend half-closes the call: no more request messages. It is idempotent.
func (s *ClientStream) CloseSend() error {
	c := s.core
	c.sendMu.Lock()
	defer c.sendMu.Unlock()
	p, err := c.acquire()
	if err != nil {
		return err
	}
	defer c.release()
	var cerr *C.connectplugin_error
	status := C.connectplugin_client_stream_close_send(p, &cerr)
	if status == C.CONNECTPLUGIN_ERR_RPC { // the call already ended: Receive has its status
		if cerr != nil {
			C.connectplugin_error_free(cerr)
		}
		return nil
	}
	return check(status, &cerr)
}

// Receive blocks until the next response message and returns a copy of it. It returns io.EOF when
// the call ended with OK (Trailer is then complete), or an *Error with the call's status (code,
// message, details, and the response headers and trailers in Metadata); later calls return the same.
func (s *ClientStream) Receive() ([]byte, error) {
	c := s.core
	c.recvMu.Lock()
	defer c.recvMu.Unlock()
	p, err := c.acquire()
	if err != nil {
		return nil, err
	}
	defer c.release()
	var data *C.uint8_t
	var n C.size_t
	var cerr *C.connectplugin_error
	status := C.connectplugin_client_stream_receive(p, &data, &n, &cerr)
	if status == C.CONNECTPLUGIN_OK {
		msg := goBytes(data, n) // copied before the next receive can reuse the buffer
		c.captureHeader(p)
		return msg, nil
	}
	c.captureHeader(p)
	c.captureTrailer(p)
	c.stopWatching()
	if status == C.CONNECTPLUGIN_EOF {
		if cerr != nil {
			C.connectplugin_error_free(cerr)
		}
		return nil, io.EOF
	}
	return nil, c.contextCode(check(status, &cerr))
}

// Header returns the response headers, once the first Receive returned (nil before).
func (s *ClientStream) Header() Metadata {
	c := s.core
	c.mu.Lock()
	if c.headerSet || c.closed {
		h := c.header
		c.mu.Unlock()
		return h
	}
	c.mu.Unlock()
	p, err := c.acquire()
	if err != nil {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.header
	}
	defer c.release()
	return copyMetadata(C.connectplugin_client_stream_headers(p))
}

// Trailer returns the response trailers, once Receive returned io.EOF (nil before). The trailers
// of a failed call are in the Metadata of the returned *Error.
func (s *ClientStream) Trailer() Metadata {
	c := s.core
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.trailer
}

// Close frees the stream, canceling the call if it is still running; Send and Receive blocked in
// other goroutines return first (CodeCanceled). It is idempotent; afterwards Send and Receive
// return an *Error with StatusClosed, and Header and Trailer what was received.
func (s *ClientStream) Close() {
	runtime.SetFinalizer(s, nil)
	s.core.close()
}

func (c *clientStreamCore) acquire() (*C.connectplugin_client_stream, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed || c.ptr == nil {
		return nil, errClosed("stream")
	}
	c.inflight++
	return c.ptr, nil
}

func (c *clientStreamCore) release() {
	c.mu.Lock()
	c.inflight--
	if c.inflight == 0 {
		c.cond.Broadcast()
	}
	c.mu.Unlock()
}

// captureHeader keeps a copy of the response headers once they arrived. p is held by the caller.
func (c *clientStreamCore) captureHeader(p *C.connectplugin_client_stream) {
	c.mu.Lock()
	set := c.headerSet
	c.mu.Unlock()
	if set {
		return
	}
	h := copyMetadata(C.connectplugin_client_stream_headers(p))
	c.mu.Lock()
	if !c.headerSet {
		c.header, c.headerSet = h, true
	}
	c.mu.Unlock()
}

// captureTrailer keeps a copy of the trailers (complete once receive returned EOF or an error).
func (c *clientStreamCore) captureTrailer(p *C.connectplugin_client_stream) {
	t := copyMetadata(C.connectplugin_client_stream_trailers(p))
	c.mu.Lock()
	c.trailer, c.trailerSet = t, true
	c.mu.Unlock()
}

// contextCode reports CodeDeadlineExceeded for a call canceled because ctx's deadline passed.
func (c *clientStreamCore) contextCode(err error) error {
	e, ok := err.(*Error)
	if !ok || e.Code != CodeCanceled {
		return err
	}
	if c.ctx.Err() == context.DeadlineExceeded {
		e.Code = CodeDeadlineExceeded
	}
	return e
}

func (c *clientStreamCore) stopWatching() {
	c.stopOnce.Do(func() { close(c.stop) })
}

// watch cancels the call when ctx is done; it ends with the stream.
func (c *clientStreamCore) watch() {
	select {
	case <-c.ctx.Done():
		p, err := c.acquire()
		if err != nil {
			return
		}
		C.connectplugin_client_stream_cancel(p)
		c.release()
	case <-c.stop:
	}
}

func (c *clientStreamCore) close() {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	p := c.ptr
	busy := c.inflight > 0
	c.mu.Unlock()
	c.stopWatching()
	if busy {
		C.connectplugin_client_stream_cancel(p) // unblocks Send/Receive in other goroutines
	}
	c.mu.Lock()
	for c.inflight > 0 {
		c.cond.Wait()
	}
	if !c.headerSet {
		c.header, c.headerSet = copyMetadata(C.connectplugin_client_stream_headers(p)), true
	}
	c.ptr = nil
	c.mu.Unlock()
	C.connectplugin_client_stream_free(p)
	c.reg.remove(c)
}
