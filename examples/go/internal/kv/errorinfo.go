package kv

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sort"
	"unicode/utf8"
)

// The test hooks and errors of examples/proto/README.md.
const (
	ErrorKey         = "__error__" // reserved: fails with failed_precondition and an ErrorInfo detail
	SlowKey          = "__slow__"  // Get holds the call for 1 s
	EmptyKeyMessage  = "key must not be empty"
	ReservedMessage  = "key is reserved"
	ErrorInfoType    = "google.rpc.ErrorInfo"
	ErrorInfoReason  = "RESERVED_KEY"
	ErrorInfoDomain  = "kv.examples.connectplugin"
	ErrorInfoMetaKey = "key"
)

// ErrorInfo is google.rpc.ErrorInfo {string reason = 1; string domain = 2;
// map<string, string> metadata = 3;}, hand-encoded so that no googleapis package is needed.
type ErrorInfo struct {
	Reason   string
	Domain   string
	Metadata map[string]string
}

// ReservedKeyInfo is the detail of the reserved-key error.
func ReservedKeyInfo() ErrorInfo {
	return ErrorInfo{Reason: ErrorInfoReason, Domain: ErrorInfoDomain, Metadata: map[string]string{ErrorInfoMetaKey: ErrorKey}}
}

func appendLen(b []byte, num uint64, v []byte) []byte {
	b = binary.AppendUvarint(b, num<<3|wireBytes)
	b = binary.AppendUvarint(b, uint64(len(v)))
	return append(b, v...)
}

// Marshal serializes the ErrorInfo (metadata entries in key order, so the bytes are stable).
func (e ErrorInfo) Marshal() []byte {
	var b []byte
	if e.Reason != "" {
		b = appendLen(b, 1, []byte(e.Reason))
	}
	if e.Domain != "" {
		b = appendLen(b, 2, []byte(e.Domain))
	}
	keys := make([]string, 0, len(e.Metadata))
	for k := range e.Metadata {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		var entry []byte // a map entry is a message {key = 1; value = 2}
		entry = appendLen(entry, 1, []byte(k))
		entry = appendLen(entry, 2, []byte(e.Metadata[k]))
		b = appendLen(b, 3, entry)
	}
	if b == nil {
		b = []byte{}
	}
	return b
}

// lenFields walks a message and calls fn for each length-delimited field; other wire types are
// skipped.
func lenFields(b []byte, fn func(num uint64, v []byte) error) error {
	for len(b) > 0 {
		tag, n, err := uvarint(b)
		if err != nil {
			return err
		}
		b = b[n:]
		num, wt := tag>>3, tag&7
		switch wt {
		case wireVarint:
			_, n, err := uvarint(b)
			if err != nil {
				return err
			}
			b = b[n:]
		case wireFixed64, wireFixed32:
			size := 8
			if wt == wireFixed32 {
				size = 4
			}
			if len(b) < size {
				return errors.New("truncated fixed field")
			}
			b = b[size:]
		case wireBytes:
			l, n, err := uvarint(b)
			if err != nil {
				return err
			}
			b = b[n:]
			if l > uint64(len(b)) {
				return fmt.Errorf("field %d: length %d exceeds the %d remaining bytes", num, l, len(b))
			}
			if err := fn(num, b[:l]); err != nil {
				return err
			}
			b = b[l:]
		default:
			return fmt.Errorf("field %d: unsupported wire type %d", num, wt)
		}
	}
	return nil
}

func utf8String(v []byte) (string, error) {
	if !utf8.Valid(v) {
		return "", errors.New("invalid UTF-8")
	}
	return string(v), nil
}

// UnmarshalErrorInfo parses a serialized google.rpc.ErrorInfo.
func UnmarshalErrorInfo(b []byte) (ErrorInfo, error) {
	e := ErrorInfo{Metadata: map[string]string{}}
	err := lenFields(b, func(num uint64, v []byte) error {
		var err error
		switch num {
		case 1:
			e.Reason, err = utf8String(v)
		case 2:
			e.Domain, err = utf8String(v)
		case 3:
			var k, val string
			err = lenFields(v, func(n2 uint64, v2 []byte) error {
				var err error
				switch n2 {
				case 1:
					k, err = utf8String(v2)
				case 2:
					val, err = utf8String(v2)
				}
				return err
			})
			e.Metadata[k] = val
		}
		return err
	})
	return e, err
}
