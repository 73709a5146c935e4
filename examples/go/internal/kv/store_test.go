package kv

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
)

func events(evs []Event) string {
	var s []string
	for _, e := range evs {
		if e.Deleted {
			s = append(s, e.Key+"=<deleted>")
		} else {
			s = append(s, e.Key+"="+string(e.Value))
		}
	}
	return strings.Join(s, " ")
}

func TestStoreListAndDelete(t *testing.T) {
	s := NewStore()
	for _, kv := range [][2]string{{"s/b1", "z"}, {"s/a2", "y"}, {"s/a1", "x"}, {"t", "1"}} {
		s.Put(kv[0], []byte(kv[1]))
	}
	if got := events(s.List("s/a")); got != "s/a1=x s/a2=y" {
		t.Fatalf("List(s/a) = %s", got)
	}
	if got := events(s.List("")); got != "s/a1=x s/a2=y s/b1=z t=1" {
		t.Fatalf("List() = %s", got)
	}
	if len(s.List("s/none")) != 0 {
		t.Fatal("List(s/none) not empty")
	}
	if !s.Delete("t") || s.Delete("t") {
		t.Fatal("Delete")
	}
	if v, ok := s.Get("s/a1"); !ok || string(v) != "x" {
		t.Fatal("Get")
	}
}

func drain(t *testing.T, w *Watcher, n int) []Event {
	t.Helper()
	var out []Event
	for i := 0; i < n; i++ {
		ev, ok, err := w.Next()
		if !ok {
			t.Fatalf("watcher ended after %d events: %v", i, err)
		}
		out = append(out, ev)
	}
	return out
}

func TestWatcherReplayLiveAndEnd(t *testing.T) {
	s := NewStore()
	s.Put("s/a1", []byte("x"))
	s.Put("s/a2", []byte("y"))
	s.Put("s/b1", []byte("z"))
	w := s.Watch()
	defer w.Close()
	w.AddPrefix("s/a")
	w.AddPrefix("s/") // overlapping replay: s/a1 and s/a2 again
	if got := events(drain(t, w, 5)); got != "s/a1=x s/a2=y s/a1=x s/a2=y s/b1=z" {
		t.Fatalf("replays = %s", got)
	}
	s.Put("s/a3", []byte("w")) // matches both prefixes: one event
	s.Delete("s/a3")
	s.Delete("s/missing") // nothing
	s.Put("other", []byte("o"))
	if got := events(drain(t, w, 2)); got != "s/a3=w s/a3=<deleted>" {
		t.Fatalf("live = %s", got)
	}
	boom := errors.New("boom")
	s.Put("s/a4", []byte("v"))
	w.End(boom)
	s.Put("s/a5", []byte("late")) // after the end: ignored
	if got := events(drain(t, w, 1)); got != "s/a4=v" {
		t.Fatalf("queued before the end = %s", got)
	}
	if _, ok, err := w.Next(); ok || err != boom {
		t.Fatalf("end = %v %v", ok, err)
	}
}

func TestWatcherConcurrentWriters(t *testing.T) {
	s := NewStore()
	w := s.Watch()
	defer w.Close()
	w.AddPrefix("k")
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 100; i++ {
				s.Put(fmt.Sprintf("k%d-%d", g, i), []byte("v"))
			}
		}(g)
	}
	wg.Wait()
	if got := len(drain(t, w, 400)); got != 400 {
		t.Fatalf("%d events", got)
	}
}

func TestErrorInfo(t *testing.T) {
	b := ReservedKeyInfo().Marshal()
	want := []byte("\x0a\x0cRESERVED_KEY\x12\x19kv.examples.connectplugin\x1a\x10\x0a\x03key\x12\x09__error__")
	if !bytes.Equal(b, want) {
		t.Fatalf("ErrorInfo = %q, want %q", b, want)
	}
	e, err := UnmarshalErrorInfo(b)
	if err != nil || e.Reason != ErrorInfoReason || e.Domain != ErrorInfoDomain || e.Metadata["key"] != ErrorKey {
		t.Fatalf("%+v %v", e, err)
	}
	if _, err := UnmarshalErrorInfo([]byte("\x0a\x05ab")); err == nil {
		t.Fatal("truncated ErrorInfo decoded")
	}
}

func TestStreamingMessages(t *testing.T) {
	for _, codec := range []string{CodecProto, CodecJSON} {
		for _, n := range []int64{0, 3, -2, 1 << 40} {
			b, _ := Marshal(codec, &PutManyResponse{Count: n})
			var out PutManyResponse
			if err := Unmarshal(codec, b, &out); err != nil || out.Count != n {
				t.Fatalf("%s count %d: %q -> %d %v", codec, n, b, out.Count, err)
			}
		}
		ev := &WatchEvent{Key: "k", Value: []byte("v"), Deleted: true}
		b, _ := Marshal(codec, ev)
		var out WatchEvent
		if err := Unmarshal(codec, b, &out); err != nil || out.Key != "k" || string(out.Value) != "v" || !out.Deleted {
			t.Fatalf("%s WatchEvent: %q %+v %v", codec, b, out, err)
		}
	}
	if b, _ := Marshal(CodecJSON, &PutManyResponse{Count: 3}); string(b) != `{"count":"3"}` {
		t.Fatalf("json count = %s", b)
	}
	if b, _ := Marshal(CodecJSON, &PutManyResponse{}); string(b) != `{}` {
		t.Fatalf("json zero count = %s", b)
	}
	if b, _ := Marshal(CodecProto, &PutManyResponse{Count: 3}); string(b) != "\x08\x03" {
		t.Fatalf("proto count = %q", b)
	}
	for in, want := range map[string]int64{`{"count":3}`: 3, `{"count":"7"}`: 7, `{"count":1e2}`: 100} {
		var out PutManyResponse
		if err := Unmarshal(CodecJSON, []byte(in), &out); err != nil || out.Count != want {
			t.Fatalf("%s: %d %v", in, out.Count, err)
		}
	}
	for _, bad := range []string{`{"count":1.5}`, `{"count":"x"}`, `{"count":true}`} {
		var out PutManyResponse
		if err := Unmarshal(CodecJSON, []byte(bad), &out); err == nil {
			t.Fatalf("%s decoded", bad)
		}
	}
}
