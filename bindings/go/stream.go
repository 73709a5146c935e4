package connectplugin

// Streaming handlers on the server. The library calls the handler once per call (never per
// message); the handler's goroutine then pulls request messages and pushes responses with blocking
// C calls, so no foreign-thread callback happens per message.

/*
#include <stdlib.h>
#include "connectplugin.h"
#include "shims.h"
*/
import "C"

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"runtime/cgo"
	"strings"
	"sync"
	"time"
	"unsafe"
)

// StreamKind is the shape of a method (connectplugin_method_kind).
type StreamKind int32

// StreamKind values, identical to the CONNECTPLUGIN_UNARY / _CLIENT_STREAM / _SERVER_STREAM /
// _BIDI_STREAM macros.
const (
	KindUnary        StreamKind = C.CONNECTPLUGIN_UNARY
	KindClientStream StreamKind = C.CONNECTPLUGIN_CLIENT_STREAM
	KindServerStream StreamKind = C.CONNECTPLUGIN_SERVER_STREAM
	KindBidiStream   StreamKind = C.CONNECTPLUGIN_BIDI_STREAM
)

// String returns "unary", "client_stream", "server_stream" or "bidi_stream".
func (k StreamKind) String() string {
	switch k {
	case KindUnary:
		return "unary"
	case KindClientStream:
		return "client_stream"
	case KindServerStream:
		return "server_stream"
	case KindBidiStream:
		return "bidi_stream"
	}
	return "StreamKind(" + itoa(int(k)) + ")"
}

// StreamHandler serves one streaming call. Pull request messages with ServerStream.Receive (io.EOF
// once the client finished sending) and write responses with ServerStream.Send.
//
// Returning nil ends the call with OK. Returning an *Error (see NewError) fails it with its code,
// message and details (its Metadata is sent as response headers if they are not out yet, else as
// trailers); any other error fails it with CodeInternal and the error's text (context.Canceled /
// context.DeadlineExceeded give CodeCanceled / CodeDeadlineExceeded). A panic is recovered and
// fails the call with CodeInternal "panic: ...".
//
// Handlers run on the library's handler threads, possibly concurrently with other calls; one
// handler call occupies one handler thread until it returns (see WithHandlerThreads).
type StreamHandler func(stream *ServerStream) error

type streamEntry struct {
	procedure string
	kind      StreamKind
	fn        StreamHandler
}

// RegisterStream registers a streaming handler for procedure ("/package.Service/Method"). kind is
// KindClientStream, KindServerStream or KindBidiStream. Every protocol is served (Connect, gRPC and
// gRPC-Web, HTTP/1.1 and HTTP/2; bidi over HTTP/1.1 is half-duplex: the client sends everything
// first). Allowed before Start only.
func (s *Server) RegisterStream(procedure string, kind StreamKind, h StreamHandler) error {
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
	_, ud := newUserData(&streamEntry{procedure: procedure, kind: kind, fn: h})
	// The handle is deleted by goFreeHandle, which the library calls exactly once (even on failure).
	var cerr *C.connectplugin_error
	status := C.connectplugin_server_register_stream(s._ptr, cproc, C.connectplugin_method_kind(kind),
		C.connectplugin_stream_handler(C.go_stream_trampoline), C.go_handle_to_user_data(ud),
		C.connectplugin_free_func(C.go_free_trampoline), &cerr)
	runtime.KeepAlive(s)
	return check(status, &cerr)
}

// ServerStream is one streaming call as its handler sees it. It is valid until the handler
// returns; afterwards every method returns an *Error with StatusClosed.
//
// Goroutines: call it from the handler's goroutine. For full-duplex bidi one other goroutine may
// Receive while the handler's goroutine Sends (or the reverse): receivers are serialized with each
// other, senders with each other, and the library's stream is internally synchronized. When the
// handler returns, the call is ended first (so a Receive or Send blocked in another goroutine
// returns with an error), then the handler waits for such calls to come back before the stream is
// released.
type ServerStream struct {
	procedure string
	codec     string
	protocol  string
	kind      StreamKind
	header    Metadata
	peer      *PeerCertificate
	deadline  time.Time // zero without a deadline
	ctx       context.Context
	cancel    context.CancelFunc

	recvMu sync.Mutex // one Receive at a time (the received bytes are borrowed until the next one)
	sendMu sync.Mutex // one Send at a time (message order)

	mu          sync.Mutex
	cond        *sync.Cond
	ptr         *C.connectplugin_stream // valid only while the handler runs
	closing     bool                    // the handler returned: no new C calls
	inflight    int                     // C calls in progress
	headersSent bool                    // a Send or SendHeaders succeeded
}

func errStreamOver() *Error {
	return newLocalError(StatusClosed, CodeFailedPrecondition, "the stream handler has returned")
}

// acquire registers one C call in progress and returns the stream pointer.
func (s *ServerStream) acquire() (*C.connectplugin_stream, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing || s.ptr == nil {
		return nil, errStreamOver()
	}
	s.inflight++
	return s.ptr, nil
}

func (s *ServerStream) release() {
	s.mu.Lock()
	s.inflight--
	if s.inflight == 0 {
		s.cond.Broadcast()
	}
	s.mu.Unlock()
}

// Procedure returns "/package.Service/Method".
func (s *ServerStream) Procedure() string { return s.procedure }

// Codec returns "proto" or "json": the codec of every request and response message.
func (s *ServerStream) Codec() string { return s.codec }

// Protocol returns the wire protocol: "connect", "grpc" or "grpcweb".
func (s *ServerStream) Protocol() string { return s.protocol }

// Kind returns the method's kind (KindClientStream, KindServerStream or KindBidiStream).
func (s *ServerStream) Kind() StreamKind { return s.kind }

// RequestHeaders returns the request headers (custom metadata; protocol headers removed).
func (s *ServerStream) RequestHeaders() Metadata { return s.header }

// Peer returns the verified TLS client certificate of the caller (mTLS), or nil without one.
func (s *ServerStream) Peer() *PeerCertificate { return s.peer }

// Deadline returns the call's deadline (from the client's timeout) and whether it has one.
func (s *ServerStream) Deadline() (time.Time, bool) { return s.deadline, !s.deadline.IsZero() }

// Context returns a context that carries the call's deadline. It is canceled when the call ends
// before the handler finished it (the client canceled or went away, the deadline passed, the
// server is stopping), when Receive or Send fails because the call broke, and when the handler
// returns.
func (s *ServerStream) Context() context.Context { return s.ctx }

// TimeoutRemaining returns the time left until the deadline (0 once it passed), or -1 when the
// client set no deadline. After the handler returned it reports 0.
func (s *ServerStream) TimeoutRemaining() time.Duration {
	p, err := s.acquire()
	if err != nil {
		return 0
	}
	defer s.release()
	ms := int64(C.connectplugin_stream_timeout_remaining_ms(p))
	if ms < 0 {
		return -1
	}
	return time.Duration(ms) * time.Millisecond
}

// IsDone reports whether the call is over (finished, deadline passed, client gone, server
// stopping). After the handler returned it reports true.
func (s *ServerStream) IsDone() bool {
	p, err := s.acquire()
	if err != nil {
		return true
	}
	defer s.release()
	return C.connectplugin_stream_is_done(p) != 0
}

// Receive blocks until the next request message and returns a copy of it. It returns io.EOF when
// the client finished sending (a server-streaming method receives exactly one message), and an
// *Error when the request stream failed: CodeCanceled when the client went away,
// CodeDeadlineExceeded, CodeResourceExhausted for an oversized message, CodeInvalidArgument or
// CodeInternal for a malformed one.
func (s *ServerStream) Receive() ([]byte, error) {
	s.recvMu.Lock()
	defer s.recvMu.Unlock()
	p, err := s.acquire()
	if err != nil {
		return nil, err
	}
	defer s.release()
	var data *C.uint8_t
	var n C.size_t
	var cerr *C.connectplugin_error
	status := C.connectplugin_stream_receive(p, &data, &n, &cerr)
	if status == C.CONNECTPLUGIN_EOF {
		if cerr != nil {
			C.connectplugin_error_free(cerr)
		}
		return nil, io.EOF
	}
	if err := check(status, &cerr); err != nil {
		s.cancel()
		return nil, err
	}
	return goBytes(data, n), nil // copied before the next receive can reuse the buffer
}

// Send sends one response message (the response headers go first, with the first message). It
// blocks while the client is behind. It returns an *Error with StatusClosed when the call is over
// (client gone, deadline passed) and StatusState after the call ended.
func (s *ServerStream) Send(msg []byte) error {
	s.sendMu.Lock()
	defer s.sendMu.Unlock()
	p, err := s.acquire()
	if err != nil {
		return err
	}
	defer s.release()
	v, n := cBytes(msg)
	var cerr *C.connectplugin_error
	status := C.connectplugin_stream_send(p, v, n, &cerr)
	runtime.KeepAlive(msg)
	if err := check(status, &cerr); err != nil {
		s.cancel()
		return err
	}
	s.markHeadersSent()
	return nil
}

func (s *ServerStream) markHeadersSent() {
	s.mu.Lock()
	s.headersSent = true
	s.mu.Unlock()
}

// SendHeaders sends the response headers now, before any message.
func (s *ServerStream) SendHeaders() error {
	s.sendMu.Lock()
	defer s.sendMu.Unlock()
	p, err := s.acquire()
	if err != nil {
		return err
	}
	defer s.release()
	var cerr *C.connectplugin_error
	if err := check(C.connectplugin_stream_send_headers(p, &cerr), &cerr); err != nil {
		return err
	}
	s.markHeadersSent()
	return nil
}

// AddResponseHeader adds a response header; only before the headers are sent (with the first
// message, SendHeaders, or the end of the call): afterwards it returns an *Error with StatusState.
// Keys ending in "-bin" may carry arbitrary bytes.
func (s *ServerStream) AddResponseHeader(key, value string) error {
	return s.addMetadata(key, value, false)
}

// AddResponseTrailer adds a response trailer, sent when the call ends.
func (s *ServerStream) AddResponseTrailer(key, value string) error {
	return s.addMetadata(key, value, true)
}

func (s *ServerStream) addMetadata(key, value string, trailer bool) error {
	ckey, err := cString("metadata key", key)
	if err != nil {
		return err
	}
	defer freeCString(ckey)
	p, err := s.acquire()
	if err != nil {
		return err
	}
	defer s.release()
	if !trailer {
		// The library accepts headers after they went out and drops them; report it instead.
		s.mu.Lock()
		sent := s.headersSent
		s.mu.Unlock()
		if sent {
			return newLocalError(StatusState, CodeFailedPrecondition, "the response headers were already sent")
		}
	}
	return streamAddMetadata(p, ckey, []byte(value), trailer)
}

func streamAddMetadata(p *C.connectplugin_stream, ckey *C.char, value []byte, trailer bool) error {
	v, n := cBytes(value)
	var cerr *C.connectplugin_error
	var status C.connectplugin_status
	if trailer {
		status = C.connectplugin_stream_add_response_trailer(p, ckey, v, n, &cerr)
	} else {
		status = C.connectplugin_stream_add_response_header(p, ckey, v, n, &cerr)
	}
	runtime.KeepAlive(value)
	return check(status, &cerr)
}

// AddErrorDetail adds an error detail to send if the call fails (the handler returns an error).
// Details of a returned *Error are added too.
func (s *ServerStream) AddErrorDetail(d ErrorDetail) error {
	ctype, err := cString("error detail type", d.Type)
	if err != nil {
		return err
	}
	defer freeCString(ctype)
	p, err := s.acquire()
	if err != nil {
		return err
	}
	defer s.release()
	return streamAddDetail(p, ctype, d.Value)
}

func streamAddDetail(p *C.connectplugin_stream, ctype *C.char, value []byte) error {
	v, n := cBytes(value)
	var cerr *C.connectplugin_error
	status := C.connectplugin_stream_add_error_detail(p, ctype, v, n, &cerr)
	runtime.KeepAlive(value)
	return check(status, &cerr)
}

//export goStreamHandler
func goStreamHandler(stream *C.connectplugin_stream, h C.uintptr_t) {
	// Last line of defence: nothing may unwind into C.
	defer func() {
		if r := recover(); r != nil {
			failStream(stream, CodeInternal, fmt.Sprintf("panic: %v", r), nil, nil, false)
		}
	}()
	entry, ok := cgo.Handle(h).Value().(*streamEntry)
	if !ok || entry == nil || entry.fn == nil {
		failStream(stream, CodeInternal, "connectplugin: handler not found", nil, nil, false)
		return
	}
	start := time.Now()
	ss := &ServerStream{
		procedure: C.GoString(C.connectplugin_stream_procedure(stream)),
		codec:     C.GoString(C.connectplugin_stream_codec(stream)),
		protocol:  C.GoString(C.connectplugin_stream_protocol(stream)),
		kind:      StreamKind(C.connectplugin_stream_kind(stream)),
		header:    copyMetadata(C.connectplugin_stream_request_headers(stream)),
		peer:      peerFromMetadata(C.connectplugin_stream_peer(stream)),
		ptr:       stream,
	}
	ss.cond = sync.NewCond(&ss.mu)
	if ms := int64(C.connectplugin_stream_timeout_remaining_ms(stream)); ms >= 0 {
		ss.deadline = start.Add(time.Duration(ms) * time.Millisecond)
		ss.ctx, ss.cancel = context.WithDeadline(context.Background(), ss.deadline)
	} else {
		ss.ctx, ss.cancel = context.WithCancel(context.Background())
	}

	done := watchDone(noticeCancel(ss.cancel, ss.deadline), func(ud unsafe.Pointer, cerr **C.connectplugin_error) C.connectplugin_status {
		return C.connectplugin_stream_on_done(stream, C.connectplugin_done_func(C.go_done_trampoline), ud, nil, cerr)
	})
	err := runStreamHandler(entry.fn, ss)
	unwatchDone(done)

	// No new C calls from other goroutines; end the call so that blocked ones return; wait for them.
	ss.mu.Lock()
	ss.closing = true
	ss.mu.Unlock()
	if err != nil {
		var ce *Error
		if errors.As(err, &ce) {
			// Error metadata: response headers if they are not out yet, else trailers.
			ss.mu.Lock()
			asTrailers := ss.headersSent
			ss.mu.Unlock()
			failStream(stream, ce.Code, ce.Message, ce.Details, ce.Metadata, asTrailers)
		} else {
			code := codeForGoError(err)
			if code == CodeUnknown {
				code = CodeInternal
			}
			failStream(stream, code, err.Error(), nil, nil, false)
		}
	} else {
		// ERR_CLOSED (client gone, deadline passed) cannot be reported to anyone.
		var cerr *C.connectplugin_error
		_ = check(C.connectplugin_stream_finish(stream, &cerr), &cerr)
	}
	ss.mu.Lock()
	for ss.inflight > 0 {
		ss.cond.Wait()
	}
	ss.ptr = nil
	ss.mu.Unlock()
	ss.cancel()
}

// runStreamHandler calls fn and turns a panic into an *Error with CodeInternal "panic: ...".
func runStreamHandler(fn StreamHandler, s *ServerStream) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = NewError(CodeInternal, fmt.Sprintf("panic: %v", r))
		}
	}()
	return fn(s)
}

// failStream ends the call with an error. md goes out as response headers, or as trailers when
// asTrailers (the headers were already sent).
func failStream(p *C.connectplugin_stream, code Code, message string, details []ErrorDetail, md []MetadataEntry, asTrailers bool) {
	for _, e := range md {
		if strings.IndexByte(e.Key, 0) >= 0 {
			continue
		}
		key := C.CString(e.Key)
		_ = streamAddMetadata(p, key, e.Value, asTrailers)
		freeCString(key)
	}
	for _, d := range details {
		if strings.IndexByte(d.Type, 0) >= 0 {
			continue
		}
		typ := C.CString(d.Type)
		_ = streamAddDetail(p, typ, d.Value)
		freeCString(typ)
	}
	msg := C.CString(strings.ReplaceAll(message, "\x00", ""))
	defer freeCString(msg)
	var cerr *C.connectplugin_error
	_ = check(C.connectplugin_stream_fail(p, C.connectplugin_code(code), msg, &cerr), &cerr)
}
