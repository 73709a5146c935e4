package kv

import (
	"bytes"
	"testing"
)

func TestProtoRoundTripAndBytes(t *testing.T) {
	in := &PutRequest{Key: "greeting", Value: []byte("hello")}
	b, err := Marshal(CodecProto, in)
	if err != nil {
		t.Fatal(err)
	}
	want := []byte("\x0a\x08greeting\x12\x05hello")
	if !bytes.Equal(b, want) {
		t.Fatalf("proto = %q, want %q", b, want)
	}
	var out PutRequest
	if err := Unmarshal(CodecProto, b, &out); err != nil || out.Key != in.Key || string(out.Value) != "hello" {
		t.Fatalf("round trip: %+v %v", out, err)
	}
	b, _ = Marshal(CodecProto, &GetResponse{Value: []byte("v"), Found: true})
	if !bytes.Equal(b, []byte("\x0a\x01v\x10\x01")) {
		t.Fatalf("GetResponse = %q", b)
	}
	if b, _ := Marshal(CodecProto, &GetResponse{}); len(b) != 0 {
		t.Fatalf("empty GetResponse = %q", b)
	}
	// Unknown fields of every wire type are skipped.
	var g GetRequest
	in2 := []byte("\x18\x96\x01\x21\x01\x02\x03\x04\x05\x06\x07\x08\x2d\x01\x02\x03\x04\x32\x01z\x0a\x01k")
	if err := Unmarshal(CodecProto, in2, &g); err != nil || g.Key != "k" {
		t.Fatalf("unknown fields: %+v %v", g, err)
	}
}

func TestProtoErrors(t *testing.T) {
	for _, bad := range [][]byte{
		[]byte("\x0a\x05ab"),       // length past the end
		[]byte("\x0a"),             // missing length
		[]byte("\x08\x01"),         // key with varint wire type
		[]byte("\x0a\x02\xff\xfe"), // invalid UTF-8
		[]byte("\x0b"),             // group wire type
		[]byte("\x00\x01"),         // field number 0
		[]byte("\x80"),             // truncated tag
	} {
		var g GetRequest
		if err := Unmarshal(CodecProto, bad, &g); err == nil {
			t.Errorf("%q decoded without error", bad)
		}
	}
}

func TestJSON(t *testing.T) {
	b, _ := Marshal(CodecJSON, &PutRequest{Key: "k", Value: []byte("hello")})
	if string(b) != `{"key":"k","value":"aGVsbG8="}` {
		t.Fatalf("json = %s", b)
	}
	for _, m := range []Message{&PutResponse{}, &GetResponse{}, &DeleteResponse{}} {
		if b, _ := Marshal(CodecJSON, m); string(b) != "{}" {
			t.Fatalf("%s = %s", m.MessageName(), b)
		}
	}
	b, _ = Marshal(CodecJSON, &GetResponse{Value: []byte{0xff}, Found: true})
	if string(b) != `{"value":"/w==","found":true}` {
		t.Fatalf("json = %s", b)
	}
	for _, in := range []string{`{"key":"k","value":"aGVsbG8="}`, `{"key":"k","value":"aGVsbG8"}`, ` {"value":"aGVsbG8=","key":"k","extra":[1]} `} {
		var p PutRequest
		if err := Unmarshal(CodecJSON, []byte(in), &p); err != nil || p.Key != "k" || string(p.Value) != "hello" {
			t.Fatalf("%s: %+v %v", in, p, err)
		}
	}
	var u GetResponse
	if err := Unmarshal(CodecJSON, []byte(`{"value":"-_8"}`), &u); err != nil || !bytes.Equal(u.Value, []byte{0xfb, 0xff}) {
		t.Fatalf("url-safe base64: %v %v", u.Value, err)
	}
	var d DeleteResponse
	if err := Unmarshal(CodecJSON, []byte(`{}`), &d); err != nil || d.Existed {
		t.Fatal("empty object")
	}
	if err := Unmarshal(CodecJSON, []byte(`{"existed":null}`), &d); err != nil || d.Existed {
		t.Fatal("null field")
	}
	for _, bad := range []string{`[]`, `null`, `{"key":1}`, `{"key":"a"} x`, `{"value":"!!"}`, `{`} {
		var p PutRequest
		if err := Unmarshal(CodecJSON, []byte(bad), &p); err == nil {
			t.Errorf("%s decoded without error", bad)
		}
	}
	var e DeleteResponse
	if err := Unmarshal(CodecJSON, []byte(`{"existed":"yes"}`), &e); err == nil {
		t.Error("string for bool accepted")
	}
}
