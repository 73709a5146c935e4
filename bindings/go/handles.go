package connectplugin

// Callbacks from the library into Go. Go values travel to C as runtime/cgo.Handle integers in
// user_data (cast to void* in C by go_handle_to_user_data, never a Go pointer); the library calls
// the user_data finalizer exactly once, which deletes the handle.

/*
#include <stdint.h>
#include "connectplugin.h"
#include "shims.h"
*/
import "C"

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"runtime/cgo"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"
)

// Done notices (connectplugin_call_on_done / connectplugin_stream_on_done): the library tells a
// handler, once, that its call can no longer be answered (client canceled or gone, deadline,
// server stopping), and the handler's context is canceled. The user_data is an id in doneFuncs,
// not a cgo.Handle, so a notice that races with the handler's return finds nothing and does
// nothing.
var (
	doneFuncs sync.Map // uint64 -> context.CancelFunc
	doneNext  uint64
)

// watchDone registers cancel to run when the library reports the call over; register makes the C
// call with the user_data. It returns the id for unwatchDone.
func watchDone(cancel context.CancelFunc, register func(ud unsafe.Pointer, cerr **C.connectplugin_error) C.connectplugin_status) uint64 {
	id := atomic.AddUint64(&doneNext, 1)
	doneFuncs.Store(id, cancel)
	var cerr *C.connectplugin_error
	if err := check(register(C.go_handle_to_user_data(C.uintptr_t(id)), &cerr), &cerr); err != nil {
		doneFuncs.Delete(id) // no notice; the deadline and Receive/Send errors still apply
	}
	return id
}

func unwatchDone(id uint64) { doneFuncs.Delete(id) }

// noticeCancel is what a done notice runs: cancel, unless the deadline has passed, so that the
// context reports context.DeadlineExceeded (its own timer) rather than context.Canceled.
func noticeCancel(cancel context.CancelFunc, deadline time.Time) context.CancelFunc {
	return func() {
		if !deadline.IsZero() && !time.Now().Before(deadline) {
			return
		}
		cancel()
	}
}

//export goCallDone
func goCallDone(id C.uintptr_t) {
	defer func() { _ = recover() }() // a panic must never unwind into C
	if f, ok := doneFuncs.LoadAndDelete(uint64(id)); ok {
		f.(context.CancelFunc)()
	}
}

// unaryEntry is the Go value behind the user_data of a registered unary handler.
type unaryEntry struct {
	procedure string
	fn        UnaryHandler
}

// newUserData wraps v in a cgo.Handle and returns it as the void* user_data for C.
func newUserData(v interface{}) (cgo.Handle, C.uintptr_t) {
	h := cgo.NewHandle(v)
	return h, C.uintptr_t(h)
}

//export goFreeHandle
func goFreeHandle(h C.uintptr_t) {
	defer func() { _ = recover() }() // a panic must never unwind into C
	if h != 0 {
		cgo.Handle(h).Delete()
	}
}

//export goUnaryHandler
func goUnaryHandler(call *C.connectplugin_call, h C.uintptr_t) {
	// Last line of defence: nothing may unwind into C.
	defer func() {
		if r := recover(); r != nil {
			failCall(call, CodeInternal, fmt.Sprintf("panic: %v", r), nil)
		}
	}()
	entry, ok := cgo.Handle(h).Value().(*unaryEntry)
	if !ok || entry == nil || entry.fn == nil {
		failCall(call, CodeInternal, "connectplugin: handler not found", nil)
		return
	}

	start := time.Now()
	req := &Request{
		Procedure: C.GoString(C.connectplugin_call_procedure(call)),
		Codec:     C.GoString(C.connectplugin_call_codec(call)),
		Header:    copyMetadata(C.connectplugin_call_request_headers(call)),
		protocol:  C.GoString(C.connectplugin_call_protocol(call)),
		peer:      peerFromMetadata(C.connectplugin_call_peer(call)),
		call:      call,
	}
	var n C.size_t
	p := C.connectplugin_call_request(call, &n)
	req.Message = goBytes(p, n)

	ctx, cancel := context.WithCancel(context.Background())
	var deadline time.Time
	if ms := int64(C.connectplugin_call_timeout_remaining_ms(call)); ms >= 0 {
		var cancelDeadline context.CancelFunc
		deadline = start.Add(time.Duration(ms) * time.Millisecond)
		ctx, cancelDeadline = context.WithDeadline(ctx, deadline)
		defer cancelDeadline()
	}
	done := watchDone(noticeCancel(cancel, deadline), func(ud unsafe.Pointer, cerr **C.connectplugin_error) C.connectplugin_status {
		return C.connectplugin_call_on_done(call, C.connectplugin_done_func(C.go_done_trampoline), ud, nil, cerr)
	})

	resp, err := runHandler(entry.fn, ctx, req)
	unwatchDone(done)
	cancel()
	headers, trailers := req.finish()

	for _, e := range headers {
		addCallMetadata(call, e, false)
	}
	for _, e := range trailers {
		addCallMetadata(call, e, true)
	}

	if err != nil {
		var ce *Error
		if errors.As(err, &ce) {
			for _, e := range ce.Metadata {
				addCallMetadata(call, e, false)
			}
			failCall(call, ce.Code, ce.Message, ce.Details)
			return
		}
		code := codeForGoError(err)
		if code == CodeUnknown {
			code = CodeInternal
		}
		failCall(call, code, err.Error(), nil)
		return
	}
	v, vn := cBytes(resp)
	// ERR_CLOSED (deadline passed, client gone) and ERR_STATE cannot be reported to anyone.
	var cerr *C.connectplugin_error
	_ = check(C.connectplugin_call_respond(call, v, vn, &cerr), &cerr)
	runtime.KeepAlive(resp)
}

// runHandler calls fn and turns a panic into an *Error with CodeInternal "panic: ...".
func runHandler(fn UnaryHandler, ctx context.Context, req *Request) (resp []byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			resp = nil
			err = NewError(CodeInternal, fmt.Sprintf("panic: %v", r))
		}
	}()
	return fn(ctx, req)
}

func addCallMetadata(call *C.connectplugin_call, e MetadataEntry, trailer bool) {
	if strings.IndexByte(e.Key, 0) >= 0 {
		return
	}
	key := C.CString(e.Key)
	defer freeCString(key)
	v, n := cBytes(e.Value)
	var cerr *C.connectplugin_error
	var status C.connectplugin_status
	if trailer {
		status = C.connectplugin_call_add_response_trailer(call, key, v, n, &cerr)
	} else {
		status = C.connectplugin_call_add_response_header(call, key, v, n, &cerr)
	}
	_ = check(status, &cerr)
	runtime.KeepAlive(e.Value)
}

func failCall(call *C.connectplugin_call, code Code, message string, details []ErrorDetail) {
	for _, d := range details {
		if strings.IndexByte(d.Type, 0) >= 0 {
			continue
		}
		typ := C.CString(d.Type)
		v, n := cBytes(d.Value)
		var cerr *C.connectplugin_error
		_ = check(C.connectplugin_call_add_error_detail(call, typ, v, n, &cerr), &cerr)
		freeCString(typ)
		runtime.KeepAlive(d.Value)
	}
	msg := C.CString(strings.ReplaceAll(message, "\x00", ""))
	defer freeCString(msg)
	var cerr *C.connectplugin_error
	_ = check(C.connectplugin_call_fail(call, C.connectplugin_code(code), msg, &cerr), &cerr)
}
