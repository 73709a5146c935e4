package connectplugin

// Interceptors: per-call hooks around every call of every shape (unary and streaming) and
// protocol, on servers (Server.AddInterceptor, Server.AddProcedureInterceptor) and clients
// (WithInterceptor). Each call costs one Start and one End callback from the library; Message is
// opt-in, since a callback from a library thread into Go costs microseconds.

/*
#include <stdlib.h>
#include "connectplugin.h"
#include "shims.h"
*/
import "C"

import (
	"errors"
	"fmt"
	"runtime"
	"runtime/cgo"
	"strings"
	"time"
)

// Interceptor is a set of per-call hooks; any of them may be nil (Start or End must be set).
//
// Start runs before the handler (servers) or before the request is sent (clients); returning an
// error rejects the call: an *Error with its code and message, any other error with
// CodeInternal. Start hooks run in the order added (a server's server-wide interceptors first,
// then the procedure's); End hooks in reverse, once the result is known, for every interceptor
// whose Start ran. End gets nil for success, else the call's *Error (code and message).
//
// Hooks run on library threads (servers: Start on the handler thread; End on the thread that
// ends the call, an I/O thread for deadlines and vanished clients, so keep End quick), possibly
// concurrently for different calls; the hooks of one call never overlap.
type Interceptor struct {
	Start func(call *InterceptorCall) error
	End   func(call *InterceptorCall, err *Error)
	// Message, when set, sees every request and response message (serialized, uncompressed;
	// copied into Go memory). One callback per message: leave it nil unless you need it.
	Message func(call *InterceptorCall, direction Direction, message []byte)
}

// Direction says which way a message observed by Interceptor.Message travels.
type Direction int32

// Direction values, identical to CONNECTPLUGIN_DIRECTION_REQUEST / _RESPONSE.
const (
	DirectionRequest  Direction = C.CONNECTPLUGIN_DIRECTION_REQUEST
	DirectionResponse Direction = C.CONNECTPLUGIN_DIRECTION_RESPONSE
)

// InterceptorCall is one call as an interceptor sees it. The same value is passed to the
// interceptor's Start, Message and End hooks of a call, so Value can carry state from Start to
// End. The Add* methods work only inside the hooks they name.
type InterceptorCall struct {
	Procedure string     // "/package.Service/Method"
	Kind      StreamKind // KindUnary, KindClientStream, KindServerStream or KindBidiStream
	Protocol  string     // "connect", "grpc" or "grpcweb"
	Codec     string     // "proto" or "json"
	IsServer  bool       // true in a server's interceptor
	Header    Metadata   // request headers (clients: including those added by start hooks so far)
	// Peer is the verified TLS client certificate (mTLS) on servers; nil otherwise.
	Peer *PeerCertificate
	// Deadline is the call's deadline; zero without one.
	Deadline time.Time
	// ResponseHeader and ResponseTrailer are set for End: the headers sent (server) or received
	// (client), and the trailers (clients: a failed call's headers and trailers are both here).
	ResponseHeader  Metadata
	ResponseTrailer Metadata
	// Value is free for the interceptor's own per-call state (e.g. a start time).
	Value interface{}

	call   *C.connectplugin_interceptor_call // valid only while a hook runs
	handle cgo.Handle
}

// AddRequestHeader adds a request header (clients, in Start).
func (c *InterceptorCall) AddRequestHeader(key, value string) error {
	err := c.add(key, value, func(call *C.connectplugin_interceptor_call, k *C.char, v *C.uint8_t, n C.size_t, e **C.connectplugin_error) C.connectplugin_status {
		return C.connectplugin_interceptor_call_add_request_header(call, k, v, n, e)
	})
	if err == nil {
		c.Header = append(c.Header, MetadataEntry{Key: strings.ToLower(key), Value: []byte(value)})
	}
	return err
}

// AddResponseHeader adds a response header (servers, in Start), sent whatever the outcome.
func (c *InterceptorCall) AddResponseHeader(key, value string) error {
	return c.add(key, value, func(call *C.connectplugin_interceptor_call, k *C.char, v *C.uint8_t, n C.size_t, e **C.connectplugin_error) C.connectplugin_status {
		return C.connectplugin_interceptor_call_add_response_header(call, k, v, n, e)
	})
}

// AddResponseTrailer adds a response trailer (servers, in Start or End).
func (c *InterceptorCall) AddResponseTrailer(key, value string) error {
	return c.add(key, value, func(call *C.connectplugin_interceptor_call, k *C.char, v *C.uint8_t, n C.size_t, e **C.connectplugin_error) C.connectplugin_status {
		return C.connectplugin_interceptor_call_add_response_trailer(call, k, v, n, e)
	})
}

type addFunc func(*C.connectplugin_interceptor_call, *C.char, *C.uint8_t, C.size_t, **C.connectplugin_error) C.connectplugin_status

func (c *InterceptorCall) add(key, value string, f addFunc) error {
	if c.call == nil {
		return newLocalError(StatusState, CodeFailedPrecondition, "the interceptor hook has returned")
	}
	k, err := cString("key", key)
	if err != nil {
		return err
	}
	defer freeCString(k)
	b := []byte(value)
	v, n := cBytes(b)
	var cerr *C.connectplugin_error
	status := f(c.call, k, v, n, &cerr)
	runtime.KeepAlive(b)
	return check(status, &cerr)
}

// newCInterceptor makes the library's interceptor for ic; the caller adds it and frees its reference.
func newCInterceptor(ic Interceptor) (*C.connectplugin_interceptor, error) {
	if ic.Start == nil && ic.End == nil && ic.Message == nil {
		return nil, newLocalError(StatusInvalidArgument, CodeInvalidArgument, "an interceptor needs Start, End or Message")
	}
	entry := &interceptorEntry{ic: ic}
	_, ud := newUserData(entry) // deleted by goFreeHandle, which the library calls exactly once
	var out *C.connectplugin_interceptor
	var cerr *C.connectplugin_error
	// Both hooks are always registered: Start makes the per-call Go value that End picks up.
	status := C.connectplugin_interceptor_new(C.connectplugin_interceptor_start_func(C.go_interceptor_start_trampoline),
		C.connectplugin_interceptor_end_func(C.go_interceptor_end_trampoline), C.go_handle_to_user_data(ud),
		C.connectplugin_free_func(C.go_free_trampoline), &out, &cerr)
	if err := check(status, &cerr); err != nil {
		return nil, err
	}
	if ic.Message != nil {
		status = C.connectplugin_interceptor_set_message_func(out,
			C.connectplugin_interceptor_message_func(C.go_interceptor_message_trampoline), &cerr)
		if err := check(status, &cerr); err != nil {
			C.connectplugin_interceptor_free(out)
			return nil, err
		}
	}
	return out, nil
}

type interceptorEntry struct{ ic Interceptor }

// AddInterceptor adds ic around every call of the server. Allowed before Start only.
func (s *Server) AddInterceptor(ic Interceptor) error { return s.addInterceptor(nil, ic) }

// AddProcedureInterceptor adds ic around the calls of one procedure ("/package.Service/Method"),
// after the server-wide interceptors. Allowed before Start only.
func (s *Server) AddProcedureInterceptor(procedure string, ic Interceptor) error {
	return s.addInterceptor(&procedure, ic)
}

func (s *Server) addInterceptor(procedure *string, ic Interceptor) error {
	var cproc *C.char
	if procedure != nil {
		p, err := cString("procedure", *procedure)
		if err != nil {
			return err
		}
		defer freeCString(p)
		cproc = p
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s._ptr == nil {
		return errClosed("server")
	}
	ci, err := newCInterceptor(ic)
	if err != nil {
		return err
	}
	defer C.connectplugin_interceptor_free(ci)
	var cerr *C.connectplugin_error
	status := C.connectplugin_server_add_interceptor(s._ptr, cproc, ci, &cerr)
	runtime.KeepAlive(s)
	return check(status, &cerr)
}

// WithInterceptor adds ic around every call (unary and streaming) of the client, after the
// interceptors added before it.
func WithInterceptor(ic Interceptor) ClientOption {
	return func(c *clientConfig) { c.interceptors = append(c.interceptors, ic) }
}

func addClientInterceptors(copts *C.connectplugin_client_options, list []Interceptor) error {
	for _, ic := range list {
		ci, err := newCInterceptor(ic)
		if err != nil {
			return err
		}
		var cerr *C.connectplugin_error
		status := C.connectplugin_client_options_add_interceptor(copts, ci, &cerr)
		C.connectplugin_interceptor_free(ci)
		if err := check(status, &cerr); err != nil {
			return err
		}
	}
	return nil
}

func interceptorOf(h C.uintptr_t) *interceptorEntry {
	e, _ := cgo.Handle(h).Value().(*interceptorEntry)
	return e
}

// callOf returns the per-call Go value kept in the call's state slot (set by Start).
func callOf(call *C.connectplugin_interceptor_call) *InterceptorCall {
	p := C.connectplugin_interceptor_call_state(call)
	if p == nil {
		return nil
	}
	c, _ := cgo.Handle(uintptr(p)).Value().(*InterceptorCall)
	return c
}

//export goInterceptorStart
func goInterceptorStart(call *C.connectplugin_interceptor_call, h C.uintptr_t) (rc C.int32_t) {
	defer func() {
		if r := recover(); r != nil {
			rejectCall(call, CodeInternal, fmt.Sprintf("interceptor panic: %v", r))
			rc = 0
		}
	}()
	e := interceptorOf(h)
	if e == nil {
		return 1
	}
	c := &InterceptorCall{
		Procedure: C.GoString(C.connectplugin_interceptor_call_procedure(call)),
		Kind:      StreamKind(C.connectplugin_interceptor_call_kind(call)),
		Protocol:  C.GoString(C.connectplugin_interceptor_call_protocol(call)),
		Codec:     C.GoString(C.connectplugin_interceptor_call_codec(call)),
		IsServer:  C.connectplugin_interceptor_call_is_server(call) == 1,
		Header:    copyMetadata(C.connectplugin_interceptor_call_request_headers(call)),
		Peer:      peerFromMetadata(C.connectplugin_interceptor_call_peer(call)),
		call:      call,
	}
	if ms := int64(C.connectplugin_interceptor_call_timeout_remaining_ms(call)); ms >= 0 {
		c.Deadline = time.Now().Add(time.Duration(ms) * time.Millisecond)
	}
	c.handle = cgo.NewHandle(c) // deleted by End, which runs for every call whose Start ran
	C.connectplugin_interceptor_call_set_state(call, C.go_handle_to_user_data(C.uintptr_t(c.handle)))
	defer func() { c.call = nil }()
	if e.ic.Start == nil {
		return 0
	}
	if err := e.ic.Start(c); err != nil {
		var ce *Error
		if errors.As(err, &ce) {
			rejectCall(call, ce.Code, ce.Message)
		} else {
			code := codeForGoError(err)
			if code == CodeUnknown {
				code = CodeInternal
			}
			rejectCall(call, code, err.Error())
		}
	}
	return 0
}

func rejectCall(call *C.connectplugin_interceptor_call, code Code, message string) {
	m := C.CString(strings.ReplaceAll(message, "\x00", ""))
	defer freeCString(m)
	var cerr *C.connectplugin_error
	_ = check(C.connectplugin_interceptor_call_reject(call, C.connectplugin_code(code), m, &cerr), &cerr)
}

//export goInterceptorEnd
func goInterceptorEnd(call *C.connectplugin_interceptor_call, code C.connectplugin_code, message *C.char, h C.uintptr_t) {
	defer func() { _ = recover() }() // a panic must never unwind into C
	c := callOf(call)
	if c == nil {
		return
	}
	defer c.handle.Delete()
	e := interceptorOf(h)
	if e == nil || e.ic.End == nil {
		return
	}
	c.ResponseHeader = copyMetadata(C.connectplugin_interceptor_call_response_headers(call))
	c.ResponseTrailer = copyMetadata(C.connectplugin_interceptor_call_response_trailers(call))
	c.call = call
	defer func() { c.call = nil }()
	var err *Error
	if code != C.CONNECTPLUGIN_CODE_OK {
		err = NewError(Code(code), C.GoString(message))
	}
	e.ic.End(c, err)
}

//export goInterceptorMessage
func goInterceptorMessage(call *C.connectplugin_interceptor_call, direction C.int32_t, data *C.uint8_t, n C.size_t, h C.uintptr_t) {
	defer func() { _ = recover() }() // a panic must never unwind into C
	e := interceptorOf(h)
	c := callOf(call)
	if e == nil || e.ic.Message == nil || c == nil {
		return
	}
	e.ic.Message(c, Direction(direction), goBytes(data, n))
}
