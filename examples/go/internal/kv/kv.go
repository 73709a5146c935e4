// Package kv holds the messages of examples/proto/kv/v1/kv.proto (package
// connectplugin.examples.kv.v1) with hand-written codecs: binary protobuf (a small varint codec)
// and proto3 JSON. There are no dependencies beyond the standard library, so the examples build
// offline.
package kv

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Service and procedure names.
const (
	Service          = "connectplugin.examples.kv.v1.KVService"
	ProcedurePut     = "/" + Service + "/Put"
	ProcedureGet     = "/" + Service + "/Get"
	ProcedureDel     = "/" + Service + "/Delete"
	ProcedureList    = "/" + Service + "/List"    // server streaming
	ProcedurePutMany = "/" + Service + "/PutMany" // client streaming
	ProcedureWatch   = "/" + Service + "/Watch"   // bidi streaming
	CodecProto       = "proto"
	CodecJSON        = "json"
)

// Message is implemented by every message of kv.proto.
type Message interface {
	MessageName() string
	fields() []field
}

// field describes one scalar field of a message: its number, its proto3 JSON name and a pointer
// to its value (*string, *[]byte, *bool or *int64).
type field struct {
	num  uint64
	name string
	ptr  interface{}
}

type PutRequest struct {
	Key   string
	Value []byte
}
type PutResponse struct{}
type GetRequest struct{ Key string }
type GetResponse struct {
	Value []byte
	Found bool
}
type DeleteRequest struct{ Key string }
type DeleteResponse struct{ Existed bool }
type ListRequest struct{ Prefix string }
type ListResponse struct {
	Key   string
	Value []byte
}
type PutManyResponse struct{ Count int64 }
type WatchRequest struct{ Prefix string }
type WatchEvent struct {
	Key     string
	Value   []byte
	Deleted bool
}

func (*PutRequest) MessageName() string      { return "PutRequest" }
func (*PutResponse) MessageName() string     { return "PutResponse" }
func (*GetRequest) MessageName() string      { return "GetRequest" }
func (*GetResponse) MessageName() string     { return "GetResponse" }
func (*DeleteRequest) MessageName() string   { return "DeleteRequest" }
func (*DeleteResponse) MessageName() string  { return "DeleteResponse" }
func (*ListRequest) MessageName() string     { return "ListRequest" }
func (*ListResponse) MessageName() string    { return "ListResponse" }
func (*PutManyResponse) MessageName() string { return "PutManyResponse" }
func (*WatchRequest) MessageName() string    { return "WatchRequest" }
func (*WatchEvent) MessageName() string      { return "WatchEvent" }

func (m *PutRequest) fields() []field {
	return []field{{1, "key", &m.Key}, {2, "value", &m.Value}}
}
func (m *PutResponse) fields() []field { return nil }
func (m *GetRequest) fields() []field  { return []field{{1, "key", &m.Key}} }
func (m *GetResponse) fields() []field {
	return []field{{1, "value", &m.Value}, {2, "found", &m.Found}}
}
func (m *DeleteRequest) fields() []field  { return []field{{1, "key", &m.Key}} }
func (m *DeleteResponse) fields() []field { return []field{{1, "existed", &m.Existed}} }
func (m *ListRequest) fields() []field    { return []field{{1, "prefix", &m.Prefix}} }
func (m *ListResponse) fields() []field {
	return []field{{1, "key", &m.Key}, {2, "value", &m.Value}}
}
func (m *PutManyResponse) fields() []field { return []field{{1, "count", &m.Count}} }
func (m *WatchRequest) fields() []field    { return []field{{1, "prefix", &m.Prefix}} }
func (m *WatchEvent) fields() []field {
	return []field{{1, "key", &m.Key}, {2, "value", &m.Value}, {3, "deleted", &m.Deleted}}
}

// Marshal serializes m in codec ("proto" or "json").
func Marshal(codec string, m Message) ([]byte, error) {
	switch codec {
	case CodecProto:
		return marshalProto(m), nil
	case CodecJSON:
		return marshalJSON(m), nil
	}
	return nil, fmt.Errorf("unknown codec %q", codec)
}

// Unmarshal parses data in codec into m (which is reset first).
func Unmarshal(codec string, data []byte, m Message) error {
	for _, f := range m.fields() {
		reset(f)
	}
	switch codec {
	case CodecProto:
		return unmarshalProto(data, m)
	case CodecJSON:
		return unmarshalJSON(data, m)
	}
	return fmt.Errorf("unknown codec %q", codec)
}

func reset(f field) {
	switch p := f.ptr.(type) {
	case *string:
		*p = ""
	case *[]byte:
		*p = nil
	case *bool:
		*p = false
	case *int64:
		*p = 0
	}
}

// ---- binary protobuf ----

const (
	wireVarint  = 0
	wireFixed64 = 1
	wireBytes   = 2
	wireFixed32 = 5
)

func marshalProto(m Message) []byte {
	var b []byte
	for _, f := range m.fields() { // proto3: default values are not written
		switch p := f.ptr.(type) {
		case *string:
			if *p != "" {
				b = binary.AppendUvarint(b, f.num<<3|wireBytes)
				b = binary.AppendUvarint(b, uint64(len(*p)))
				b = append(b, *p...)
			}
		case *[]byte:
			if len(*p) > 0 {
				b = binary.AppendUvarint(b, f.num<<3|wireBytes)
				b = binary.AppendUvarint(b, uint64(len(*p)))
				b = append(b, *p...)
			}
		case *bool:
			if *p {
				b = binary.AppendUvarint(b, f.num<<3|wireVarint)
				b = append(b, 1)
			}
		case *int64:
			if *p != 0 { // int64: two's complement as a 64-bit varint
				b = binary.AppendUvarint(b, f.num<<3|wireVarint)
				b = binary.AppendUvarint(b, uint64(*p))
			}
		}
	}
	if b == nil {
		b = []byte{}
	}
	return b
}

func uvarint(b []byte) (uint64, int, error) {
	v, n := binary.Uvarint(b)
	if n == 0 {
		return 0, 0, errors.New("truncated varint")
	}
	if n < 0 {
		return 0, 0, errors.New("varint overflows 64 bits")
	}
	return v, n, nil
}

func unmarshalProto(b []byte, m Message) error {
	fields := m.fields()
	for len(b) > 0 {
		tag, n, err := uvarint(b)
		if err != nil {
			return err
		}
		b = b[n:]
		num, wt := tag>>3, tag&7
		if num == 0 || num > 1<<29-1 {
			return fmt.Errorf("invalid field number %d", num)
		}
		var varint uint64
		var payload []byte
		switch wt {
		case wireVarint:
			if varint, n, err = uvarint(b); err != nil {
				return err
			}
			b = b[n:]
		case wireFixed64, wireFixed32:
			size := 8
			if wt == wireFixed32 {
				size = 4
			}
			if len(b) < size {
				return fmt.Errorf("truncated fixed%d field %d", size*8, num)
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
			payload, b = b[:l], b[l:]
		default:
			return fmt.Errorf("field %d: unsupported wire type %d", num, wt)
		}
		for _, f := range fields {
			if f.num != num {
				continue // unknown fields are skipped
			}
			switch p := f.ptr.(type) {
			case *string:
				if wt != wireBytes {
					return fmt.Errorf("field %s: wire type %d, want %d", f.name, wt, wireBytes)
				}
				if !utf8.Valid(payload) {
					return fmt.Errorf("field %s: invalid UTF-8", f.name)
				}
				*p = string(payload)
			case *[]byte:
				if wt != wireBytes {
					return fmt.Errorf("field %s: wire type %d, want %d", f.name, wt, wireBytes)
				}
				*p = append([]byte(nil), payload...)
			case *bool:
				if wt != wireVarint {
					return fmt.Errorf("field %s: wire type %d, want %d", f.name, wt, wireVarint)
				}
				*p = varint != 0
			case *int64:
				if wt != wireVarint {
					return fmt.Errorf("field %s: wire type %d, want %d", f.name, wt, wireVarint)
				}
				*p = int64(varint)
			}
		}
	}
	return nil
}

// ---- proto3 JSON ----

func marshalJSON(m Message) []byte {
	var b bytes.Buffer
	b.WriteByte('{')
	first := true
	write := func(name string, value []byte) {
		if !first {
			b.WriteByte(',')
		}
		first = false
		k, _ := json.Marshal(name)
		b.Write(k)
		b.WriteByte(':')
		b.Write(value)
	}
	for _, f := range m.fields() { // default values are omitted
		switch p := f.ptr.(type) {
		case *string:
			if *p != "" {
				v, _ := json.Marshal(*p)
				write(f.name, v)
			}
		case *[]byte:
			if len(*p) > 0 {
				write(f.name, []byte(`"`+base64.StdEncoding.EncodeToString(*p)+`"`))
			}
		case *bool:
			if *p {
				write(f.name, []byte("true"))
			}
		case *int64:
			if *p != 0 { // proto3 JSON writes 64-bit integers as strings
				write(f.name, []byte(`"`+strconv.FormatInt(*p, 10)+`"`))
			}
		}
	}
	b.WriteByte('}')
	return b.Bytes()
}

func unmarshalJSON(data []byte, m Message) error {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil // an empty body reads as {}
	}
	var obj map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&obj); err != nil {
		return fmt.Errorf("not a JSON object: %v", err)
	}
	if obj == nil {
		return errors.New("not a JSON object: null")
	}
	if dec.More() {
		return errors.New("trailing data after the JSON object")
	}
	for _, f := range m.fields() {
		raw, ok := obj[f.name]
		if !ok {
			continue // missing fields read as defaults; unknown fields are ignored
		}
		if string(bytes.TrimSpace(raw)) == "null" {
			continue
		}
		switch p := f.ptr.(type) {
		case *string:
			if err := json.Unmarshal(raw, p); err != nil {
				return fmt.Errorf("field %s: want a string", f.name)
			}
		case *[]byte:
			var s string
			if err := json.Unmarshal(raw, &s); err != nil {
				return fmt.Errorf("field %s: want a base64 string", f.name)
			}
			v, err := decodeBase64(s)
			if err != nil {
				return fmt.Errorf("field %s: invalid base64", f.name)
			}
			*p = v
		case *bool:
			if err := json.Unmarshal(raw, p); err != nil {
				return fmt.Errorf("field %s: want true or false", f.name)
			}
		case *int64:
			v, err := parseJSONInt64(raw)
			if err != nil {
				return fmt.Errorf("field %s: %v", f.name, err)
			}
			*p = v
		}
	}
	return nil
}

// parseJSONInt64 accepts a JSON number or a string holding a decimal integer (proto3 JSON).
func parseJSONInt64(raw json.RawMessage) (int64, error) {
	text := strings.TrimSpace(string(raw))
	if strings.HasPrefix(text, `"`) {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return 0, errors.New("want an integer")
		}
		text = s
	}
	if v, err := strconv.ParseInt(text, 10, 64); err == nil {
		return v, nil
	}
	// An integral number in exponent or fraction form (1e3, 3.0).
	f, err := strconv.ParseFloat(text, 64)
	if err != nil || f != float64(int64(f)) {
		return 0, errors.New("want an integer")
	}
	return int64(f), nil
}

// decodeBase64 accepts standard and URL-safe base64, padded or not (as proto3 JSON requires).
func decodeBase64(s string) ([]byte, error) {
	enc := base64.StdEncoding
	if strings.ContainsAny(s, "-_") {
		enc = base64.URLEncoding
	}
	if len(s)%4 != 0 {
		enc = enc.WithPadding(base64.NoPadding)
	}
	return enc.DecodeString(s)
}
