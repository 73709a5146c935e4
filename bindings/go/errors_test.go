package connectplugin

import (
	"context"
	"errors"
	"fmt"
	"testing"
)

func TestCodeNames(t *testing.T) {
	want := []string{"ok", "canceled", "unknown", "invalid_argument", "deadline_exceeded", "not_found",
		"already_exists", "permission_denied", "resource_exhausted", "failed_precondition", "aborted",
		"out_of_range", "unimplemented", "internal", "unavailable", "data_loss", "unauthenticated"}
	codes := []Code{CodeOK, CodeCanceled, CodeUnknown, CodeInvalidArgument, CodeDeadlineExceeded, CodeNotFound,
		CodeAlreadyExists, CodePermissionDenied, CodeResourceExhausted, CodeFailedPrecondition, CodeAborted,
		CodeOutOfRange, CodeUnimplemented, CodeInternal, CodeUnavailable, CodeDataLoss, CodeUnauthenticated}
	for i, c := range codes {
		if int(c) != i {
			t.Fatalf("code %v has number %d, want %d", c, int(c), i)
		}
		if c.String() != want[i] {
			t.Fatalf("Code(%d).String() = %q, want %q", i, c.String(), want[i])
		}
	}
	if Code(99).String() != "unknown" || Code(-1).String() != "unknown" {
		t.Fatal("out-of-range codes must be named unknown")
	}
}

func TestStatusStrings(t *testing.T) {
	if StatusOK.String() != "ok" {
		t.Fatalf("StatusOK = %q", StatusOK.String())
	}
	if StatusInvalidArgument.String() != "invalid argument" {
		t.Fatalf("StatusInvalidArgument = %q", StatusInvalidArgument.String())
	}
	seen := map[string]bool{}
	for _, s := range []Status{StatusOK, StatusInvalidArgument, StatusResource, StatusClosed, StatusIO, StatusState, StatusRPC, StatusUnsupported} {
		if s.String() == "" || seen[s.String()] {
			t.Fatalf("status %d has empty or duplicate description %q", int(s), s.String())
		}
		seen[s.String()] = true
	}
	if Status(-100).String() == "" {
		t.Fatal("unknown status must still have a description")
	}
}

func TestErrorValue(t *testing.T) {
	e := NewError(CodePermissionDenied, "go away", ErrorDetail{Type: "x.Y", Value: []byte{1}})
	if e.Error() != "permission_denied: go away" {
		t.Fatalf("Error() = %q", e.Error())
	}
	if e.Status != StatusRPC || len(e.Details) != 1 {
		t.Fatalf("%+v", e)
	}
	wrapped := fmt.Errorf("wrapped: %w", e)
	if CodeOf(wrapped) != CodePermissionDenied {
		t.Fatalf("CodeOf(wrapped) = %v", CodeOf(wrapped))
	}
	if CodeOf(nil) != CodeOK || CodeOf(errors.New("x")) != CodeUnknown ||
		CodeOf(context.Canceled) != CodeCanceled || CodeOf(context.DeadlineExceeded) != CodeDeadlineExceeded {
		t.Fatal("CodeOf mapping")
	}
	if (&Error{Code: CodeInternal}).Error() != "internal" {
		t.Fatal("message-less error rendering")
	}
}

func TestVersion(t *testing.T) {
	if Version() != HeaderVersion {
		t.Fatalf("library version %q, header %q", Version(), HeaderVersion)
	}
	if ABIVersion() != HeaderABIVersion {
		t.Fatalf("library ABI %d, header %d", ABIVersion(), HeaderABIVersion)
	}
	if VersionNum() != 0x000200 {
		t.Fatalf("VersionNum = %#x", VersionNum())
	}
	if err := checkABI(); err != nil {
		t.Fatal(err)
	}
}
