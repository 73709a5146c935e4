package connectplugin

// All cgo directives of the package live in this file.
//
// The library directory is not hard-coded: callers supply it, for example
//
//	CGO_LDFLAGS="-L/path/to/.build/debug -Wl,-rpath,/path/to/.build/debug" go build ./...

/*
#cgo CFLAGS: -I${SRCDIR}/../../include
#cgo LDFLAGS: -lconnectplugin
#include <stdlib.h>
#include "connectplugin.h"
#include "shims.h"
*/
import "C"

import (
	"strings"
	"time"
	"unsafe"
)

// cBytes returns a pointer/length pair for b that C may read during one call. An empty slice gives a
// pointer to a static byte rather than NULL, so that "empty" is never confused with "missing".
// b holds no Go pointers, which is what cgo requires for passing Go memory to C.
func cBytes(b []byte) (*C.uint8_t, C.size_t) {
	if len(b) == 0 {
		return C.go_empty_bytes(), 0
	}
	return (*C.uint8_t)(unsafe.Pointer(&b[0])), C.size_t(len(b))
}

// cString copies s into C memory; the caller frees it with C.free. Strings with an embedded NUL
// cannot be represented and are rejected.
func cString(what, s string) (*C.char, error) {
	if strings.IndexByte(s, 0) >= 0 {
		return nil, newLocalError(StatusInvalidArgument, CodeInvalidArgument, what+" contains a NUL byte")
	}
	return C.CString(s), nil
}

func freeCString(p *C.char) { C.free(unsafe.Pointer(p)) }

// goBytes copies n bytes at p into a new Go slice (never nil).
func goBytes(p *C.uint8_t, n C.size_t) []byte {
	if p == nil || n == 0 {
		return []byte{}
	}
	return C.GoBytes(unsafe.Pointer(p), C.int(n))
}

// takeError copies everything out of a C error into an *Error and frees the C error.
// A NULL error with a failing status gives an *Error built from the status alone.
func takeError(status C.connectplugin_status, cerr *C.connectplugin_error) *Error {
	if cerr == nil {
		st := Status(status)
		return newLocalError(st, codeForStatus(st), st.String())
	}
	defer C.connectplugin_error_free(cerr)
	e := &Error{
		Status:  Status(C.connectplugin_error_status(cerr)),
		Code:    Code(C.connectplugin_error_code(cerr)),
		Message: C.GoString(C.connectplugin_error_message(cerr)),
	}
	n := int(C.connectplugin_error_detail_count(cerr))
	for i := 0; i < n; i++ {
		var typ *C.char
		var val *C.uint8_t
		var vlen C.size_t
		if C.connectplugin_error_detail(cerr, C.size_t(i), &typ, &val, &vlen) != C.CONNECTPLUGIN_OK {
			continue
		}
		e.Details = append(e.Details, ErrorDetail{Type: C.GoString(typ), Value: goBytes(val, vlen)})
	}
	if md := copyMetadata(C.connectplugin_error_metadata(cerr)); len(md) > 0 {
		e.Metadata = md
	}
	return e
}

// check turns a status and an out_error into a Go error (nil on success). It always frees the C
// error and resets *out to NULL, so one variable can serve several calls. It takes the address so
// that `check(C.f(..., &cerr), &cerr)` reads cerr only after the call, whatever the argument
// evaluation order.
func check(status C.connectplugin_status, out **C.connectplugin_error) error {
	cerr := *out
	*out = nil
	if status == C.CONNECTPLUGIN_OK {
		if cerr != nil {
			C.connectplugin_error_free(cerr)
		}
		return nil
	}
	return takeError(status, cerr)
}

// durationToMs converts d to whole milliseconds, rounding a positive sub-millisecond remainder up
// (so that a tiny positive duration never becomes 0, which the C API reads as "no timeout").
func durationToMs(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	ms := int64(d / time.Millisecond)
	if d%time.Millisecond != 0 {
		ms++
	}
	return ms
}
