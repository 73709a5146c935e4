// Command kvclient is a grpc-go peer of the interop tests: it runs the streaming KV scenario of
// examples/proto/README.md (the same steps and output lines as Tests/interop/kvscenario.py) over
// gRPC on HTTP/2, h2c or TLS.
//
// It builds in GOPATH mode against Debian's grpc-go (golang-google-grpc-dev, /usr/share/gocode),
// so it has no generated code: a raw-bytes codec registered as "proto" carries hand-encoded KV
// messages (protowire), unary calls go through conn.Invoke and streams through conn.NewStream.
//
//	kvclient --url http://127.0.0.1:8080 [--tls-ca CA] [--cert CERT --key KEY]
//	         [--compression identity|gzip] [--protocol grpc] [--codec proto] [--http 2]
//
// An https:// URL (or any --tls-ca) means TLS. Exit 0 when every step printed its expected line,
// 1 otherwise, 2 for a usage error (grpc-go speaks only gRPC over HTTP/2 with the proto codec here).
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/ioutil"
	"net/url"
	"os"
	"sort"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/encoding"
	_ "google.golang.org/grpc/encoding/gzip" // registers the "gzip" compressor
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
)

const (
	service        = "/connectplugin.examples.kv.v1.KVService/"
	errorKey       = "__error__"
	slowKey        = "__slow__"
	errorInfoType  = "google.rpc.ErrorInfo"
	clientDeadline = 200 * time.Millisecond
)

// ---------------------------------------------------------------------------------------------
// Raw codec: messages are already-encoded protobuf bytes.
// ---------------------------------------------------------------------------------------------

type rawCodec struct{}

func (rawCodec) Name() string { return "proto" }

func (rawCodec) Marshal(v interface{}) ([]byte, error) {
	b, ok := v.(*[]byte)
	if !ok {
		return nil, fmt.Errorf("rawCodec: cannot marshal %T", v)
	}
	return *b, nil
}

func (rawCodec) Unmarshal(data []byte, v interface{}) error {
	b, ok := v.(*[]byte)
	if !ok {
		return fmt.Errorf("rawCodec: cannot unmarshal into %T", v)
	}
	*b = append((*b)[:0], data...)
	return nil
}

// ---------------------------------------------------------------------------------------------
// Hand-encoded KV messages.
// ---------------------------------------------------------------------------------------------

func appendString(b []byte, num protowire.Number, s string) []byte {
	if s == "" {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendString(b, s)
}

func appendBytes(b []byte, num protowire.Number, v []byte) []byte {
	if len(v) == 0 {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendBytes(b, v)
}

// fields decodes one message into field number -> last value (bytes for LEN, uint64 for VARINT).
type fields struct {
	bytes  map[protowire.Number][]byte
	varint map[protowire.Number]uint64
	// repeated LEN fields, in order (for map entries)
	all map[protowire.Number][][]byte
}

func parse(b []byte) (fields, error) {
	f := fields{map[protowire.Number][]byte{}, map[protowire.Number]uint64{}, map[protowire.Number][][]byte{}}
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return f, protowire.ParseError(n)
		}
		b = b[n:]
		switch typ {
		case protowire.BytesType:
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return f, protowire.ParseError(n)
			}
			f.bytes[num] = v
			f.all[num] = append(f.all[num], v)
			b = b[n:]
		case protowire.VarintType:
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return f, protowire.ParseError(n)
			}
			f.varint[num] = v
			b = b[n:]
		default:
			n := protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return f, protowire.ParseError(n)
			}
			b = b[n:]
		}
	}
	return f, nil
}

func putRequest(key string, value []byte) []byte {
	return appendBytes(appendString(nil, 1, key), 2, value)
}

func keyRequest(key string) []byte { return appendString(nil, 1, key) } // Get/Delete/List/Watch requests

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

// ---------------------------------------------------------------------------------------------
// Errors as the scenario prints them.
// ---------------------------------------------------------------------------------------------

type rpcFailure struct {
	code     string
	message  string
	details  []detail
	received []event
}

type detail struct {
	typeName string
	value    []byte
}

func (e *rpcFailure) Error() string { return e.code + ": " + e.message }

var codeNames = map[codes.Code]string{
	codes.OK: "ok", codes.Canceled: "canceled", codes.Unknown: "unknown",
	codes.InvalidArgument: "invalid_argument", codes.DeadlineExceeded: "deadline_exceeded",
	codes.NotFound: "not_found", codes.AlreadyExists: "already_exists",
	codes.PermissionDenied: "permission_denied", codes.ResourceExhausted: "resource_exhausted",
	codes.FailedPrecondition: "failed_precondition", codes.Aborted: "aborted",
	codes.OutOfRange: "out_of_range", codes.Unimplemented: "unimplemented", codes.Internal: "internal",
	codes.Unavailable: "unavailable", codes.DataLoss: "data_loss", codes.Unauthenticated: "unauthenticated",
}

func failure(err error) *rpcFailure {
	var f *rpcFailure
	if errors.As(err, &f) {
		return f
	}
	st, ok := status.FromError(err)
	if !ok {
		return &rpcFailure{code: "unknown", message: err.Error()}
	}
	name, ok := codeNames[st.Code()]
	if !ok {
		name = fmt.Sprintf("code_%d", st.Code())
	}
	f = &rpcFailure{code: name, message: st.Message()}
	for _, a := range st.Proto().GetDetails() {
		t := a.GetTypeUrl()
		f.details = append(f.details, detail{t[strings.LastIndex(t, "/")+1:], a.GetValue()})
	}
	return f
}

func formatError(f *rpcFailure, withMessage bool) string {
	s := "error=" + f.code
	if withMessage {
		s += " message=" + f.message
	}
	for _, d := range f.details {
		s += " detail=" + d.typeName
		if d.typeName != errorInfoType {
			continue
		}
		// google.rpc.ErrorInfo {reason=1, domain=2, metadata=3 map<string,string>}
		fs, err := parse(d.value)
		if err != nil {
			s += " <undecodable>"
			continue
		}
		s += " reason=" + string(fs.bytes[1]) + " domain=" + string(fs.bytes[2])
		meta := map[string]string{}
		for _, entry := range fs.all[3] {
			e, err := parse(entry)
			if err == nil {
				meta[string(e.bytes[1])] = string(e.bytes[2])
			}
		}
		keys := make([]string, 0, len(meta))
		for k := range meta {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			s += " " + k + "=" + meta[k]
		}
	}
	return s
}

// ---------------------------------------------------------------------------------------------
// The KV calls.
// ---------------------------------------------------------------------------------------------

type kv struct {
	conn *grpc.ClientConn
	opts []grpc.CallOption
}

func (c *kv) unary(ctx context.Context, method string, req []byte) (fields, error) {
	var resp []byte
	if err := c.conn.Invoke(ctx, service+method, &req, &resp, c.opts...); err != nil {
		return fields{}, failure(err)
	}
	return parse(resp)
}

func (c *kv) put(key string, value []byte) error {
	_, err := c.unary(context.Background(), "Put", putRequest(key, value))
	return err
}

func (c *kv) get(key string, timeout time.Duration) (bool, []byte, error) {
	ctx := context.Background()
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	f, err := c.unary(ctx, "Get", keyRequest(key))
	if err != nil {
		return false, nil, err
	}
	return f.varint[2] != 0, f.bytes[1], nil
}

func (c *kv) delete(key string) (bool, error) {
	f, err := c.unary(context.Background(), "Delete", keyRequest(key))
	if err != nil {
		return false, err
	}
	return f.varint[1] != 0, nil
}

func (c *kv) list(prefix string) ([]event, error) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s, err := c.conn.NewStream(ctx, &grpc.StreamDesc{StreamName: "List", ServerStreams: true}, service+"List", c.opts...)
	if err != nil {
		return nil, failure(err)
	}
	req := keyRequest(prefix)
	if err := s.SendMsg(&req); err != nil && err != io.EOF {
		return nil, failure(err)
	}
	if err := s.CloseSend(); err != nil {
		return nil, failure(err)
	}
	var got []event
	for {
		var resp []byte
		if err := s.RecvMsg(&resp); err != nil {
			if err == io.EOF {
				return got, nil
			}
			f := failure(err)
			f.received = got
			return got, f
		}
		fs, err := parse(resp)
		if err != nil {
			return got, err
		}
		got = append(got, event{key: string(fs.bytes[1]), value: fs.bytes[2]})
	}
}

func (c *kv) putMany(items [][2]string) (int64, error) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s, err := c.conn.NewStream(ctx, &grpc.StreamDesc{StreamName: "PutMany", ClientStreams: true}, service+"PutMany", c.opts...)
	if err != nil {
		return 0, failure(err)
	}
	for _, it := range items {
		req := putRequest(it[0], []byte(it[1]))
		if err := s.SendMsg(&req); err != nil {
			if err == io.EOF { // the server already ended the call; RecvMsg has its status
				break
			}
			return 0, failure(err)
		}
	}
	if err := s.CloseSend(); err != nil {
		return 0, failure(err)
	}
	var resp []byte
	if err := s.RecvMsg(&resp); err != nil {
		return 0, failure(err)
	}
	f, err := parse(resp)
	if err != nil {
		return 0, err
	}
	return int64(f.varint[1]), nil
}

type watchCall struct {
	s      grpc.ClientStream
	cancel context.CancelFunc
}

func (c *kv) watch() (*watchCall, error) {
	ctx, cancel := context.WithCancel(context.Background())
	s, err := c.conn.NewStream(ctx, &grpc.StreamDesc{StreamName: "Watch", ServerStreams: true, ClientStreams: true},
		service+"Watch", c.opts...)
	if err != nil {
		cancel()
		return nil, failure(err)
	}
	return &watchCall{s, cancel}, nil
}

func (w *watchCall) send(prefix string) error {
	req := keyRequest(prefix)
	if err := w.s.SendMsg(&req); err != nil && err != io.EOF {
		return failure(err)
	}
	return nil
}

// recv returns nil, nil at the end of a successful stream.
func (w *watchCall) recv() (*event, error) {
	var resp []byte
	if err := w.s.RecvMsg(&resp); err != nil {
		if err == io.EOF {
			return nil, nil
		}
		return nil, failure(err)
	}
	f, err := parse(resp)
	if err != nil {
		return nil, err
	}
	return &event{key: string(f.bytes[1]), value: f.bytes[2], deleted: f.varint[3] != 0}, nil
}

func watchHalfDuplex(c *kv, prefixes []string) ([]event, error) {
	w, err := c.watch()
	if err != nil {
		return nil, err
	}
	defer w.cancel()
	var got []event
	fail := func(err error) ([]event, error) {
		f := failure(err)
		f.received = append(got, f.received...)
		return got, f
	}
	for _, p := range prefixes {
		if err := w.send(p); err != nil {
			return fail(err)
		}
	}
	if err := w.s.CloseSend(); err != nil {
		return fail(err)
	}
	for {
		ev, err := w.recv()
		if err != nil {
			return fail(err)
		}
		if ev == nil {
			return got, nil
		}
		got = append(got, *ev)
	}
}

func watchLive(c *kv) ([]event, error) {
	w, err := c.watch()
	if err != nil {
		return nil, err
	}
	defer w.cancel()
	var got []event
	fail := func(err error) ([]event, error) {
		f := failure(err)
		f.received = append(got, f.received...)
		return got, f
	}
	recvOne := func() error {
		ev, err := w.recv()
		if err != nil {
			return err
		}
		if ev == nil {
			return &rpcFailure{code: "internal", message: fmt.Sprintf("watch stream ended early after %d events", len(got))}
		}
		got = append(got, *ev)
		return nil
	}
	steps := []func() error{
		func() error { return w.send("s/a") },
		recvOne, recvOne,
		func() error { return c.put("s/a3", []byte("w")) },
		recvOne,
		func() error { _, err := c.delete("s/a3"); return err },
		recvOne,
		func() error { return w.s.CloseSend() },
		func() error {
			ev, err := w.recv()
			if err != nil {
				return err
			}
			if ev != nil {
				return &rpcFailure{code: "internal", message: "unexpected event after half-close: " + ev.String()}
			}
			return nil
		},
	}
	for _, step := range steps {
		if err := step(); err != nil {
			return fail(err)
		}
	}
	return got, nil
}

// ---------------------------------------------------------------------------------------------
// The scenario (Tests/interop/kvscenario.py; keep the two identical).
// ---------------------------------------------------------------------------------------------

type stop struct{}

const reservedError = "error=failed_precondition message=key is reserved detail=google.rpc.ErrorInfo " +
	"reason=RESERVED_KEY domain=kv.examples.connectplugin key=__error__"

// expectedLines is kvscenario.expected_lines(http).
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

func runScenario(c *kv, http string) (ok bool) {
	ok = true
	expected := expectedLines(http)
	printed := 0
	emit := func(line string) {
		if printed >= len(expected) || expected[printed] != line {
			ok = false
		}
		printed++
		fmt.Println(line)
	}
	unexpected := func(step string, err error) {
		ok = false
		fmt.Fprintf(os.Stderr, "error: %s: %v\n", step, err)
		panic(stop{})
	}
	expectFailure := func(step string, withMessage bool, fn func() (string, error)) {
		r, err := fn()
		if err == nil {
			ok = false
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
	check := func(step string, err error) {
		if err != nil {
			unexpected(step, err)
		}
	}
	join := func(evs []event) string {
		s := ""
		for _, e := range evs {
			s += " " + e.String()
		}
		return s
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

	check("unary", c.put("greeting", []byte("hello")))
	emit("put greeting ok")
	found, value, err := c.get("greeting", 0)
	check("unary", err)
	emit(fmt.Sprintf("get greeting found=%t value=%s", found, value))
	existed, err := c.delete("greeting")
	check("unary", err)
	emit(fmt.Sprintf("delete greeting existed=%t", existed))
	found, _, err = c.get("greeting", 0)
	check("unary", err)
	emit(fmt.Sprintf("get greeting found=%t", found))
	getFn := func(key string, timeout time.Duration) func() (string, error) {
		return func() (string, error) {
			f, v, err := c.get(key, timeout)
			return fmt.Sprintf("found=%t value=%s", f, v), err
		}
	}
	expectFailure("get <empty>", true, getFn("", 0))
	expectFailure("get __error__", true, getFn(errorKey, 0))
	expectFailure("get __slow__", false, getFn(slowKey, clientDeadline))

	n, err := c.putMany([][2]string{{"s/a1", "x"}, {"s/a2", "y"}, {"s/b1", "z"}})
	check("putmany", err)
	emit(fmt.Sprintf("putmany count=%d", n))
	n, err = c.putMany(nil)
	check("putmany", err)
	emit(fmt.Sprintf("putmany <none> count=%d", n))
	expectFailure("putmany <empty>", true, func() (string, error) {
		n, err := c.putMany([][2]string{{"", "x"}})
		return fmt.Sprintf("count=%d", n), err
	})

	for _, prefix := range []string{"s/a", "s/none"} {
		items, err := c.list(prefix)
		check("list", err)
		emit(fmt.Sprintf("list %s count=%d%s", prefix, len(items), join(items)))
	}
	expectFailure("list __error__", true, func() (string, error) {
		items, err := c.list(errorKey)
		return join(items), err
	})

	evs, err := watchHalfDuplex(c, []string{"s/a", "s/b"})
	check("watch", err)
	emit(fmt.Sprintf("watch s/a,s/b events=%d%s", len(evs), join(evs)))
	expectFailure("watch s/a,__error__", true, func() (string, error) {
		evs, err := watchHalfDuplex(c, []string{"s/a", errorKey})
		return join(evs), err
	})

	if http == "2" {
		evs, err := watchLive(c)
		check("watch-live", err)
		emit(fmt.Sprintf("watch-live s/a events=%d%s", len(evs), join(evs)))
	} else {
		emit("watch-live skipped (full-duplex bidi needs HTTP/2)")
	}

	deleted := 0
	for _, k := range []string{"s/a1", "s/a2", "s/b1"} {
		existed, err := c.delete(k)
		check("cleanup", err)
		if existed {
			deleted++
		}
	}
	emit(fmt.Sprintf("cleanup deleted=%d", deleted))
	items, err := c.list("s/")
	check("cleanup", err)
	emit(fmt.Sprintf("list s/ count=%d", len(items)))
	return ok
}

func main() {
	rawURL := flag.String("url", "", "server URL: http://host:port (h2c) or https://host:port (TLS)")
	tlsCA := flag.String("tls-ca", "", "verify the server with this CA (PEM); implies TLS")
	flag.StringVar(tlsCA, "ca", "", "alias of --tls-ca")
	cert := flag.String("cert", "", "client certificate for mTLS (PEM)")
	key := flag.String("key", "", "client private key for mTLS (PEM)")
	compression := flag.String("compression", "identity", "request compression: identity|gzip")
	protocol := flag.String("protocol", "grpc", "only grpc")
	codec := flag.String("codec", "proto", "only proto")
	httpVersion := flag.String("http", "2", "only 2")
	scenario := flag.String("scenario", "stream", "only stream")
	flag.Parse()

	var gaps []string
	if *protocol != "grpc" {
		gaps = append(gaps, "--protocol "+*protocol)
	}
	if *codec != "proto" {
		gaps = append(gaps, "--codec "+*codec)
	}
	if *httpVersion != "2" {
		gaps = append(gaps, "--http "+*httpVersion)
	}
	if *scenario != "stream" {
		gaps = append(gaps, "--scenario "+*scenario)
	}
	if *compression != "identity" && *compression != "gzip" {
		gaps = append(gaps, "--compression "+*compression)
	}
	if len(gaps) > 0 {
		fmt.Fprintf(os.Stderr, "error: this grpc-go client does not support %s (gRPC over HTTP/2, proto, streaming scenario)\n",
			strings.Join(gaps, ", "))
		os.Exit(2)
	}
	if (*cert == "") != (*key == "") {
		fmt.Fprintln(os.Stderr, "error: --cert and --key go together")
		os.Exit(2)
	}
	u, err := url.Parse(*rawURL)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		fmt.Fprintf(os.Stderr, "error: --url must be http://host:port or https://host:port, got %q\n", *rawURL)
		os.Exit(2)
	}

	encoding.RegisterCodec(rawCodec{}) // replaces grpc-go's own "proto" codec in this process
	// No WithBlock: a refused handshake (e.g. mTLS without a certificate) fails the first call at
	// once instead of being retried until a dial deadline.
	var dialOpts []grpc.DialOption
	if u.Scheme == "https" || *tlsCA != "" {
		cfg := &tls.Config{MinVersion: tls.VersionTLS12}
		if *tlsCA != "" {
			pem, err := ioutil.ReadFile(*tlsCA)
			if err != nil {
				fmt.Fprintln(os.Stderr, "error:", err)
				os.Exit(2)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				fmt.Fprintf(os.Stderr, "error: no certificate in %s\n", *tlsCA)
				os.Exit(2)
			}
			cfg.RootCAs = pool
		}
		if *cert != "" {
			pair, err := tls.LoadX509KeyPair(*cert, *key)
			if err != nil {
				fmt.Fprintln(os.Stderr, "error:", err)
				os.Exit(2)
			}
			cfg.Certificates = []tls.Certificate{pair}
		}
		dialOpts = append(dialOpts, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	} else {
		dialOpts = append(dialOpts, grpc.WithInsecure())
	}
	conn, err := grpc.Dial(u.Host, dialOpts...)
	if err != nil {
		fmt.Fprintf(os.Stderr, "error: cannot connect to %s: %v\n", u.Host, err)
		os.Exit(1)
	}
	defer conn.Close()
	c := &kv{conn: conn}
	if *compression == "gzip" {
		c.opts = append(c.opts, grpc.UseCompressor("gzip"))
	}
	if !runScenario(c, *httpVersion) {
		conn.Close()
		os.Exit(1)
	}
}
