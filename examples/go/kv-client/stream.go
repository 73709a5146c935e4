package main

// The streaming scenario of examples/proto/README.md: the same steps and the same 18 output lines as
// Tests/interop/kvscenario.py (expected_lines) and Tests/interop/grpcgo/kvclient.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	connectplugin "github.com/connectplugin/connectplugin/bindings/go"
	"github.com/connectplugin/connectplugin/examples/go/internal/kv"
)

// slowDeadline is the deadline of Get{__slow__} (the server holds it for 1 s).
const slowDeadline = 200 * time.Millisecond

// rpcFailure is an RPC error as the scenario prints it, with the stream messages received before it.
type rpcFailure struct {
	code     string
	message  string
	details  []connectplugin.ErrorDetail
	received []event
}

func (f *rpcFailure) Error() string { return f.code + ": " + f.message }

type event struct {
	key     string
	value   []byte
	deleted bool
}

func (e event) String() string {
	if e.deleted {
		return e.key + "=<deleted>"
	}
	return e.key + "=" + string(e.value)
}

func join(evs []event) string {
	var b strings.Builder
	for _, e := range evs {
		b.WriteByte(' ')
		b.WriteString(e.String())
	}
	return b.String()
}

// failure converts any error of a call into an *rpcFailure.
func failure(err error) *rpcFailure {
	var f *rpcFailure
	if errors.As(err, &f) {
		return f
	}
	var ce *connectplugin.Error
	if errors.As(err, &ce) {
		return &rpcFailure{code: ce.Code.String(), message: ce.Message, details: ce.Details}
	}
	return &rpcFailure{code: "unknown", message: err.Error()}
}

func withReceived(err error, got []event) *rpcFailure {
	f := failure(err)
	f.received = append(append([]event{}, got...), f.received...)
	return f
}

func formatError(f *rpcFailure, withMessage bool) string {
	s := "error=" + f.code
	if withMessage {
		s += " message=" + f.message
	}
	for _, d := range f.details {
		typ := d.Type[strings.LastIndex(d.Type, "/")+1:]
		s += " detail=" + typ
		if typ != kv.ErrorInfoType {
			continue
		}
		info, err := kv.UnmarshalErrorInfo(d.Value)
		if err != nil {
			s += " <undecodable>"
			continue
		}
		s += " reason=" + info.Reason + " domain=" + info.Domain
		keys := make([]string, 0, len(info.Metadata))
		for k := range info.Metadata {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			s += " " + k + "=" + info.Metadata[k]
		}
	}
	return s
}

// kvClient makes the scenario's calls with the binding.
type kvClient struct {
	c     *connectplugin.Client
	codec string
}

func (k *kvClient) decodeErr(m kv.Message, err error) error {
	return &rpcFailure{code: "internal", message: fmt.Sprintf("cannot decode %s: %v", m.MessageName(), err)}
}

func (k *kvClient) unary(proc string, timeout time.Duration, in, out kv.Message) error {
	req, err := kv.Marshal(k.codec, in)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	if timeout > 0 {
		cancel()
		ctx, cancel = context.WithTimeout(context.Background(), timeout)
	}
	defer cancel()
	resp, err := k.c.CallUnary(ctx, proc, req)
	if err != nil {
		return failure(err)
	}
	if err := kv.Unmarshal(k.codec, resp.Message, out); err != nil {
		return k.decodeErr(out, err)
	}
	return nil
}

func (k *kvClient) put(key string, value []byte) error {
	return k.unary(kv.ProcedurePut, 0, &kv.PutRequest{Key: key, Value: value}, &kv.PutResponse{})
}

func (k *kvClient) get(key string, timeout time.Duration) (bool, []byte, error) {
	var out kv.GetResponse
	err := k.unary(kv.ProcedureGet, timeout, &kv.GetRequest{Key: key}, &out)
	return out.Found, out.Value, err
}

func (k *kvClient) delete(key string) (bool, error) {
	var out kv.DeleteResponse
	err := k.unary(kv.ProcedureDel, 0, &kv.DeleteRequest{Key: key}, &out)
	return out.Existed, err
}

func (k *kvClient) list(prefix string) ([]event, error) {
	req, err := kv.Marshal(k.codec, &kv.ListRequest{Prefix: prefix})
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	s, err := k.c.CallServerStream(ctx, kv.ProcedureList, req)
	if err != nil {
		return nil, failure(err)
	}
	defer s.Close()
	var got []event
	for {
		data, err := s.Receive()
		if err == io.EOF {
			return got, nil
		}
		if err != nil {
			return got, withReceived(err, got)
		}
		var m kv.ListResponse
		if err := kv.Unmarshal(k.codec, data, &m); err != nil {
			return got, k.decodeErr(&m, err)
		}
		got = append(got, event{key: m.Key, value: m.Value})
	}
}

func (k *kvClient) putMany(items [][2]string) (int64, error) {
	reqs := make([][]byte, 0, len(items))
	for _, it := range items {
		b, err := kv.Marshal(k.codec, &kv.PutRequest{Key: it[0], Value: []byte(it[1])})
		if err != nil {
			return 0, err
		}
		reqs = append(reqs, b)
	}
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	resp, err := k.c.CallClientStream(ctx, kv.ProcedurePutMany, reqs)
	if err != nil {
		return 0, failure(err)
	}
	var out kv.PutManyResponse
	if err := kv.Unmarshal(k.codec, resp.Message, &out); err != nil {
		return 0, k.decodeErr(&out, err)
	}
	return out.Count, nil
}

// watchCall is one Watch stream.
type watchCall struct {
	k      *kvClient
	s      *connectplugin.ClientStream
	cancel context.CancelFunc
	got    []event
}

func (k *kvClient) watch() (*watchCall, error) {
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	s, err := k.c.Stream(ctx, kv.ProcedureWatch, connectplugin.KindBidiStream)
	if err != nil {
		cancel()
		return nil, failure(err)
	}
	return &watchCall{k: k, s: s, cancel: cancel}, nil
}

func (w *watchCall) close() {
	w.s.Close()
	w.cancel()
}

func (w *watchCall) send(prefix string) error {
	b, err := kv.Marshal(w.k.codec, &kv.WatchRequest{Prefix: prefix})
	if err != nil {
		return err
	}
	if err := w.s.Send(b); err != nil && err != io.EOF { // io.EOF: recv reports the status
		return failure(err)
	}
	return nil
}

func (w *watchCall) closeSend() error {
	if err := w.s.CloseSend(); err != nil {
		return failure(err)
	}
	return nil
}

// recv returns the next event, or nil at the end of a successful stream.
func (w *watchCall) recv() (*event, error) {
	data, err := w.s.Receive()
	if err == io.EOF {
		return nil, nil
	}
	if err != nil {
		return nil, failure(err)
	}
	var m kv.WatchEvent
	if err := kv.Unmarshal(w.k.codec, data, &m); err != nil {
		return nil, w.k.decodeErr(&m, err)
	}
	ev := event{key: m.Key, value: m.Value, deleted: m.Deleted}
	w.got = append(w.got, ev)
	return &ev, nil
}

// watchHalfDuplex sends every prefix, half-closes, then reads to the end.
func (k *kvClient) watchHalfDuplex(prefixes []string) ([]event, error) {
	w, err := k.watch()
	if err != nil {
		return nil, err
	}
	defer w.close()
	for _, p := range prefixes {
		if err := w.send(p); err != nil {
			return w.got, withReceived(err, w.got)
		}
	}
	if err := w.closeSend(); err != nil {
		return w.got, withReceived(err, w.got)
	}
	for {
		ev, err := w.recv()
		if err != nil {
			return w.got, withReceived(err, w.got)
		}
		if ev == nil {
			return w.got, nil
		}
	}
}

// watchLive: watch s/a, read the 2 replays, Put s/a3 (another call) and read its event, Delete s/a3
// and read its event, half-close; the stream then ends OK with no more events.
func (k *kvClient) watchLive() ([]event, error) {
	w, err := k.watch()
	if err != nil {
		return nil, err
	}
	defer w.close()
	recvOne := func() error {
		ev, err := w.recv()
		if err != nil {
			return err
		}
		if ev == nil {
			return &rpcFailure{code: "internal", message: fmt.Sprintf("watch stream ended early after %d events", len(w.got))}
		}
		return nil
	}
	steps := []func() error{
		func() error { return w.send("s/a") },
		recvOne, recvOne,
		func() error { return k.put("s/a3", []byte("w")) },
		recvOne,
		func() error { _, err := k.delete("s/a3"); return err },
		recvOne,
		w.closeSend,
		func() error {
			n := len(w.got)
			ev, err := w.recv()
			if err != nil {
				return err
			}
			if ev != nil {
				w.got = w.got[:n]
				return &rpcFailure{code: "internal", message: "unexpected event after half-close: " + ev.String()}
			}
			return nil
		},
	}
	for _, step := range steps {
		if err := step(); err != nil {
			return w.got, withReceived(err, w.got)
		}
	}
	return w.got, nil
}

const reservedError = "error=failed_precondition message=key is reserved detail=google.rpc.ErrorInfo " +
	"reason=RESERVED_KEY domain=kv.examples.connectplugin key=__error__"

// expectedLines is Tests/interop/kvscenario.py expected_lines(http).
func expectedLines(http string) []string {
	live := "watch-live s/a events=4 s/a1=x s/a2=y s/a3=w s/a3=<deleted>"
	if http != "2" {
		live = "watch-live skipped (full-duplex bidi needs HTTP/2)"
	}
	return []string{
		"put greeting ok",
		"get greeting found=true value=hello",
		"delete greeting existed=true",
		"get greeting found=false",
		"get <empty> error=invalid_argument message=key must not be empty",
		"get __error__ " + reservedError,
		"get __slow__ error=deadline_exceeded",
		"putmany count=3",
		"putmany <none> count=0",
		"putmany <empty> error=invalid_argument message=key must not be empty",
		"list s/a count=2 s/a1=x s/a2=y",
		"list s/none count=0",
		"list __error__ " + reservedError,
		"watch s/a,s/b events=3 s/a1=x s/a2=y s/b1=z",
		"watch s/a,__error__ events=2 s/a1=x s/a2=y " + reservedError,
		live,
		"cleanup deleted=3",
		"list s/ count=0",
	}
}

type stop struct{}

// runStreamScenario runs every step, printing each line as soon as it is known; it reports whether
// every line was exactly the expected one. An unexpected RPC error prints
// "error: STEP: CODE: MESSAGE" on stderr and stops the scenario.
func runStreamScenario(c *connectplugin.Client, codec, http string) (ok bool) {
	k := &kvClient{c: c, codec: codec}
	ok = true
	expected := expectedLines(http)
	printed := 0
	emit := func(line string) {
		if printed >= len(expected) || expected[printed] != line {
			ok = false
		}
		printed++
		fmt.Println(line) // os.Stdout is unbuffered: every line is flushed at once
	}
	check := func(step string, err error) {
		if err != nil {
			ok = false
			fmt.Fprintf(os.Stderr, "error: %s: %v\n", step, err)
			panic(stop{})
		}
	}
	expectFailure := func(step string, withMessage bool, fn func() (string, error)) {
		r, err := fn()
		if err == nil {
			emit(step + " unexpectedly succeeded: " + r)
			return
		}
		f := failure(err)
		prefix := ""
		if len(f.received) > 0 {
			prefix = fmt.Sprintf("events=%d ", len(f.received))
			for _, e := range f.received {
				prefix += e.String() + " "
			}
		}
		emit(step + " " + prefix + formatError(f, withMessage))
	}
	defer func() {
		if r := recover(); r != nil {
			if _, isStop := r.(stop); !isStop {
				panic(r)
			}
			ok = false
		}
		if printed != len(expected) {
			ok = false
		}
	}()

	// 1-5: the unary script.
	check("unary", k.put("greeting", []byte("hello")))
	emit("put greeting ok")
	found, value, err := k.get("greeting", 0)
	check("unary", err)
	emit(fmt.Sprintf("get greeting found=%t value=%s", found, value))
	existed, err := k.delete("greeting")
	check("unary", err)
	emit(fmt.Sprintf("delete greeting existed=%t", existed))
	found, _, err = k.get("greeting", 0)
	check("unary", err)
	emit(fmt.Sprintf("get greeting found=%t", found))
	getFn := func(key string, timeout time.Duration) func() (string, error) {
		return func() (string, error) {
			f, v, err := k.get(key, timeout)
			return fmt.Sprintf("found=%t value=%s", f, v), err
		}
	}
	expectFailure("get <empty>", true, getFn("", 0))
	// 6-7: error details and the deadline.
	expectFailure("get __error__", true, getFn(kv.ErrorKey, 0))
	expectFailure("get __slow__", false, getFn(kv.SlowKey, slowDeadline))

	// 8-10: client streaming.
	n, err := k.putMany([][2]string{{"s/a1", "x"}, {"s/a2", "y"}, {"s/b1", "z"}})
	check("putmany", err)
	emit(fmt.Sprintf("putmany count=%d", n))
	n, err = k.putMany(nil)
	check("putmany", err)
	emit(fmt.Sprintf("putmany <none> count=%d", n))
	expectFailure("putmany <empty>", true, func() (string, error) {
		n, err := k.putMany([][2]string{{"", "x"}})
		return fmt.Sprintf("count=%d", n), err
	})

	// 11-13: server streaming.
	for _, prefix := range []string{"s/a", "s/none"} {
		items, err := k.list(prefix)
		check("list", err)
		emit(fmt.Sprintf("list %s count=%d%s", prefix, len(items), join(items)))
	}
	expectFailure("list __error__", true, func() (string, error) {
		items, err := k.list(kv.ErrorKey)
		return join(items), err
	})

	// 14-15: bidi, half duplex.
	evs, err := k.watchHalfDuplex([]string{"s/a", "s/b"})
	check("watch", err)
	emit(fmt.Sprintf("watch s/a,s/b events=%d%s", len(evs), join(evs)))
	expectFailure("watch s/a,__error__", true, func() (string, error) {
		evs, err := k.watchHalfDuplex([]string{"s/a", kv.ErrorKey})
		return join(evs), err
	})

	// 16: bidi, full duplex (HTTP/2 only).
	if http == "2" {
		evs, err := k.watchLive()
		check("watch-live", err)
		emit(fmt.Sprintf("watch-live s/a events=%d%s", len(evs), join(evs)))
	} else {
		emit("watch-live skipped (full-duplex bidi needs HTTP/2)")
	}

	// 17-18: cleanup, so that the scenario can run again on the same server.
	deleted := 0
	for _, key := range []string{"s/a1", "s/a2", "s/b1"} {
		existed, err := k.delete(key)
		check("cleanup", err)
		if existed {
			deleted++
		}
	}
	emit(fmt.Sprintf("cleanup deleted=%d", deleted))
	items, err := k.list("s/")
	check("cleanup", err)
	emit(fmt.Sprintf("list s/ count=%d", len(items)))
	return ok
}
