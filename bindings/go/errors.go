package connectplugin

/*
#include "connectplugin.h"
*/
import "C"

import (
	"context"
	"errors"
	"strconv"
)

// Status is what went wrong locally; every fallible C function returns one (connectplugin_status).
type Status int32

// Status values, identical to the CONNECTPLUGIN_OK / CONNECTPLUGIN_ERR_* macros.
const (
	StatusOK              Status = C.CONNECTPLUGIN_OK
	StatusInvalidArgument Status = C.CONNECTPLUGIN_ERR_INVALID_ARGUMENT
	StatusResource        Status = C.CONNECTPLUGIN_ERR_RESOURCE
	StatusClosed          Status = C.CONNECTPLUGIN_ERR_CLOSED
	StatusIO              Status = C.CONNECTPLUGIN_ERR_IO
	StatusState           Status = C.CONNECTPLUGIN_ERR_STATE
	StatusRPC             Status = C.CONNECTPLUGIN_ERR_RPC
	StatusUnsupported     Status = C.CONNECTPLUGIN_ERR_UNSUPPORTED
)

// String returns the library's English description ("ok", "invalid argument", …).
func (s Status) String() string {
	return C.GoString(C.connectplugin_status_string(C.connectplugin_status(s)))
}

// Code is a Connect / gRPC status code (wire-stable numbers).
type Code int32

// Code values, identical to the CONNECTPLUGIN_CODE_* macros.
const (
	CodeOK                 Code = C.CONNECTPLUGIN_CODE_OK
	CodeCanceled           Code = C.CONNECTPLUGIN_CODE_CANCELED
	CodeUnknown            Code = C.CONNECTPLUGIN_CODE_UNKNOWN
	CodeInvalidArgument    Code = C.CONNECTPLUGIN_CODE_INVALID_ARGUMENT
	CodeDeadlineExceeded   Code = C.CONNECTPLUGIN_CODE_DEADLINE_EXCEEDED
	CodeNotFound           Code = C.CONNECTPLUGIN_CODE_NOT_FOUND
	CodeAlreadyExists      Code = C.CONNECTPLUGIN_CODE_ALREADY_EXISTS
	CodePermissionDenied   Code = C.CONNECTPLUGIN_CODE_PERMISSION_DENIED
	CodeResourceExhausted  Code = C.CONNECTPLUGIN_CODE_RESOURCE_EXHAUSTED
	CodeFailedPrecondition Code = C.CONNECTPLUGIN_CODE_FAILED_PRECONDITION
	CodeAborted            Code = C.CONNECTPLUGIN_CODE_ABORTED
	CodeOutOfRange         Code = C.CONNECTPLUGIN_CODE_OUT_OF_RANGE
	CodeUnimplemented      Code = C.CONNECTPLUGIN_CODE_UNIMPLEMENTED
	CodeInternal           Code = C.CONNECTPLUGIN_CODE_INTERNAL
	CodeUnavailable        Code = C.CONNECTPLUGIN_CODE_UNAVAILABLE
	CodeDataLoss           Code = C.CONNECTPLUGIN_CODE_DATA_LOSS
	CodeUnauthenticated    Code = C.CONNECTPLUGIN_CODE_UNAUTHENTICATED
)

// String returns the Connect wire name: "ok", "canceled", …, "unauthenticated" ("unknown" for
// codes outside 0..16).
func (c Code) String() string {
	return C.GoString(C.connectplugin_code_name(C.connectplugin_code(c)))
}

// ErrorDetail is one error detail (a google.protobuf.Any): the fully qualified message type name
// (e.g. "google.rpc.ErrorInfo", without the type URL prefix) and the serialized message.
type ErrorDetail struct {
	Type  string
	Value []byte
}

// Error is every error returned by this package. It is a plain Go value: the C error object is
// copied and freed as soon as it is received.
//
// Status says what went wrong locally; StatusRPC means the RPC itself finished with a non-OK Code.
// Details and Metadata (the response headers and trailers of the failed call) are only set for RPC
// errors.
type Error struct {
	Status   Status
	Code     Code
	Message  string
	Details  []ErrorDetail
	Metadata []MetadataEntry
}

// Error renders "code_name: message".
func (e *Error) Error() string {
	if e.Message == "" {
		return e.Code.String()
	}
	return e.Code.String() + ": " + e.Message
}

// NewError builds an error for a handler to return: the call fails with code, message and details.
// Metadata set on the returned Error is sent as response headers.
func NewError(code Code, message string, details ...ErrorDetail) *Error {
	return &Error{Status: StatusRPC, Code: code, Message: message, Details: details}
}

// CodeOf returns the Code of err: CodeOK for nil, the Code of an *Error (found with errors.As),
// CodeCanceled / CodeDeadlineExceeded for the context errors, CodeUnknown otherwise.
func CodeOf(err error) Code {
	if err == nil {
		return CodeOK
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return codeForGoError(err)
}

func newLocalError(status Status, code Code, message string) *Error {
	return &Error{Status: status, Code: code, Message: message}
}

func errClosed(what string) *Error {
	return newLocalError(StatusClosed, CodeFailedPrecondition, what+" is closed")
}

// codeForStatus gives the closest Code for a local failure without a C error object.
func codeForStatus(s Status) Code {
	switch s {
	case StatusOK:
		return CodeOK
	case StatusInvalidArgument:
		return CodeInvalidArgument
	case StatusResource:
		return CodeResourceExhausted
	case StatusClosed, StatusState:
		return CodeFailedPrecondition
	case StatusIO:
		return CodeUnavailable
	case StatusUnsupported:
		return CodeUnimplemented
	default:
		return CodeUnknown
	}
}

func codeForGoError(err error) Code {
	switch {
	case errors.Is(err, context.Canceled):
		return CodeCanceled
	case errors.Is(err, context.DeadlineExceeded):
		return CodeDeadlineExceeded
	}
	return CodeUnknown
}

func itoa(i int) string { return strconv.Itoa(i) }
