// Command kv-host-go is a plugin host: it launches a KV plugin (a connectplugin plugin in any
// language, or an unmodified HashiCorp go-plugin gRPC plugin), dispenses "kv" as a Go interface,
// runs the scripted Put/Get/Delete sequence and then the streaming methods (PutMany, List, a
// live Watch), prints the results and stops the plugin.
//
//	kv-host-go [--repeat N] [--logs] [--automtls] --plugin PATH [ARGS...]
//	kv-host-go [--repeat N] --url URL    a plugin in remote mode (kv-plugin --listen); Kill only
//	                                     disconnects and it prints "stopped: disconnected"
//	kv-host-go [--repeat N] --in-process the host's own KV service (internal/kvservice) served as a
//	                                     plugin in this process (inproc://), no sockets
//
// --logs prints each log record of the plugin (its stderr, parsed as hclog) on stdout:
// "log NAME LEVEL MESSAGE key=value ..." (without it they go to the standard logger).
//
// --automtls: go-plugin's AutoMTLS (the plugin must serve TLS with the certificates exchanged).
//
// KV handshake: cookie KV_PLUGIN=connectplugin-kv, app protocol version 1, plugin name "kv".
// Exit 0 when every step gave the expected answer and the plugin exited cleanly.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"sync"
	"time"

	connectplugin "github.com/connectplugin/connectplugin/bindings/go"
	"github.com/connectplugin/connectplugin/examples/go/internal/kv"
	"github.com/connectplugin/connectplugin/examples/go/internal/kvservice"
)

// KV is what dispense("kv") gives this host: go-plugin's pattern of a client-side factory that
// wraps the dispensed connection in the plugin's Go interface.
type KV interface {
	Put(ctx context.Context, key string, value []byte) error
	Get(ctx context.Context, key string) (value []byte, found bool, err error)
	Delete(ctx context.Context, key string) (existed bool, err error)
	// List returns every stored item whose key starts with prefix, in key order (server stream).
	List(ctx context.Context, prefix string) ([]Item, error)
	// PutMany stores items in order and returns how many were stored (client stream).
	PutMany(ctx context.Context, items []Item) (int64, error)
	// Watch opens a Watch call (bidi stream); ctx bounds the whole call. Close it when done.
	Watch(ctx context.Context) (WatchStream, error)
}

// Item is one key and its value.
type Item struct {
	Key   string
	Value []byte
}

// Event is one Watch event: a stored value, or a deleted key (Value empty).
type Event struct {
	Key     string
	Value   []byte
	Deleted bool
}

// String is the event as the script prints it: KEY=VALUE, or deleted:KEY.
func (e Event) String() string {
	if e.Deleted {
		return "deleted:" + e.Key
	}
	return e.Key + "=" + string(e.Value)
}

// WatchStream is an open Watch call.
type WatchStream interface {
	// Send adds a watched prefix: the plugin replays its keys, then sends their changes.
	Send(prefix string) error
	// Recv returns the next event, or io.EOF when the call ended OK.
	Recv() (Event, error)
	// CloseSend half-closes: the plugin sends the events already queued and ends the call.
	CloseSend() error
	// Close ends the call (canceling it if still running).
	Close()
}

type kvClient struct{ c *connectplugin.Client }

func (k kvClient) call(ctx context.Context, proc string, req, resp kv.Message) error {
	b, err := kv.Marshal(kv.CodecProto, req)
	if err != nil {
		return err
	}
	r, err := k.c.CallUnary(ctx, proc, b)
	if err != nil {
		return err
	}
	return kv.Unmarshal(kv.CodecProto, r.Message, resp)
}

func (k kvClient) Put(ctx context.Context, key string, value []byte) error {
	return k.call(ctx, kv.ProcedurePut, &kv.PutRequest{Key: key, Value: value}, &kv.PutResponse{})
}

func (k kvClient) Get(ctx context.Context, key string) ([]byte, bool, error) {
	var r kv.GetResponse
	err := k.call(ctx, kv.ProcedureGet, &kv.GetRequest{Key: key}, &r)
	return r.Value, r.Found, err
}

func (k kvClient) Delete(ctx context.Context, key string) (bool, error) {
	var r kv.DeleteResponse
	err := k.call(ctx, kv.ProcedureDel, &kv.DeleteRequest{Key: key}, &r)
	return r.Existed, err
}

func (k kvClient) List(ctx context.Context, prefix string) ([]Item, error) {
	req, err := kv.Marshal(kv.CodecProto, &kv.ListRequest{Prefix: prefix})
	if err != nil {
		return nil, err
	}
	s, err := k.c.CallServerStream(ctx, kv.ProcedureList, req)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	var items []Item
	for {
		data, err := s.Receive()
		if err == io.EOF {
			return items, nil
		}
		if err != nil {
			return items, err
		}
		var m kv.ListResponse
		if err := kv.Unmarshal(kv.CodecProto, data, &m); err != nil {
			return items, err
		}
		items = append(items, Item{Key: m.Key, Value: m.Value})
	}
}

func (k kvClient) PutMany(ctx context.Context, items []Item) (int64, error) {
	reqs := make([][]byte, 0, len(items))
	for _, it := range items {
		b, err := kv.Marshal(kv.CodecProto, &kv.PutRequest{Key: it.Key, Value: it.Value})
		if err != nil {
			return 0, err
		}
		reqs = append(reqs, b)
	}
	r, err := k.c.CallClientStream(ctx, kv.ProcedurePutMany, reqs)
	if err != nil {
		return 0, err
	}
	var m kv.PutManyResponse
	err = kv.Unmarshal(kv.CodecProto, r.Message, &m)
	return m.Count, err
}

func (k kvClient) Watch(ctx context.Context) (WatchStream, error) {
	s, err := k.c.Stream(ctx, kv.ProcedureWatch, connectplugin.KindBidiStream)
	if err != nil {
		return nil, err
	}
	return watchStream{s}, nil
}

type watchStream struct{ s *connectplugin.ClientStream }

func (w watchStream) Send(prefix string) error {
	b, err := kv.Marshal(kv.CodecProto, &kv.WatchRequest{Prefix: prefix})
	if err != nil {
		return err
	}
	if err := w.s.Send(b); err != nil && err != io.EOF { // io.EOF: Recv reports the status
		return err
	}
	return nil
}

func (w watchStream) Recv() (Event, error) {
	data, err := w.s.Receive()
	if err != nil {
		return Event{}, err // io.EOF included
	}
	var m kv.WatchEvent
	if err := kv.Unmarshal(kv.CodecProto, data, &m); err != nil {
		return Event{}, err
	}
	return Event{Key: m.Key, Value: m.Value, Deleted: m.Deleted}, nil
}

func (w watchStream) CloseSend() error { return w.s.CloseSend() }
func (w watchStream) Close()           { w.s.Close() }

// Dispense is the client-side factory of the "kv" plugin.
func Dispense(p *connectplugin.PluginClient) (KV, error) {
	c, err := p.Dispense("kv")
	if err != nil {
		return nil, err
	}
	return kvClient{c}, nil
}

func script(ctx context.Context, k KV) ([]string, error) {
	var out []string
	if err := k.Put(ctx, "greeting", []byte("hello")); err != nil {
		return out, err
	}
	out = append(out, "put greeting ok")
	v, found, err := k.Get(ctx, "greeting")
	if err != nil {
		return out, err
	}
	out = append(out, fmt.Sprintf("get greeting found=%v value=%s", found, v))
	existed, err := k.Delete(ctx, "greeting")
	if err != nil {
		return out, err
	}
	out = append(out, fmt.Sprintf("delete greeting existed=%v", existed))
	_, found, err = k.Get(ctx, "greeting")
	if err != nil {
		return out, err
	}
	out = append(out, fmt.Sprintf("get greeting found=%v", found))

	n, err := k.PutMany(ctx, []Item{{"s/a", []byte("1")}, {"s/b", []byte("2")}})
	if err != nil {
		return out, fmt.Errorf("putmany: %w", err)
	}
	out = append(out, fmt.Sprintf("putmany count=%d", n))
	items, err := k.List(ctx, "s/")
	if err != nil {
		return out, fmt.Errorf("list: %w", err)
	}
	line := "list s/"
	for _, it := range items {
		line += " " + it.Key + "=" + string(it.Value)
	}
	out = append(out, line)
	line, err = watch(ctx, k)
	if err != nil {
		return out, fmt.Errorf("watch: %w", err)
	}
	out = append(out, line)
	for _, key := range []string{"s/b", "s/c"} {
		if _, err := k.Delete(ctx, key); err != nil {
			return out, fmt.Errorf("cleanup: %w", err)
		}
	}
	return out, nil
}

// watch watches "s/", reads the 2 replays, makes a Put and a Delete with unary calls reading the
// event of each, half-closes and checks that the call then ends OK with no further event. Every
// Recv is bounded by ctx's deadline (the binding turns it into the call's timeout).
func watch(ctx context.Context, k KV) (string, error) {
	w, err := k.Watch(ctx)
	if err != nil {
		return "", err
	}
	defer w.Close()
	line := "watch s/"
	recv := func(n int) error {
		for i := 0; i < n; i++ {
			ev, err := w.Recv()
			if err == io.EOF {
				return errors.New("the stream ended early: " + line)
			}
			if err != nil {
				return err
			}
			line += " " + ev.String()
		}
		return nil
	}
	if err := w.Send("s/"); err != nil {
		return line, err
	}
	if err := recv(2); err != nil {
		return line, err
	}
	if err := k.Put(ctx, "s/c", []byte("3")); err != nil {
		return line, err
	}
	if err := recv(1); err != nil {
		return line, err
	}
	if _, err := k.Delete(ctx, "s/a"); err != nil {
		return line, err
	}
	if err := recv(1); err != nil {
		return line, err
	}
	if err := w.CloseSend(); err != nil {
		return line, err
	}
	ev, err := w.Recv()
	if err == nil {
		return line, errors.New("unexpected event after half-close: " + ev.String())
	}
	if err != io.EOF {
		return line, err
	}
	return line, nil
}

var expected = []string{"put greeting ok", "get greeting found=true value=hello", "delete greeting existed=true",
	"get greeting found=false", "putmany count=2", "list s/ s/a=1 s/b=2", "watch s/ s/a=1 s/b=2 s/c=3 deleted:s/a"}

func usage(msg string) {
	fmt.Fprintln(os.Stderr, "error:", msg)
	fmt.Fprintln(os.Stderr, "usage: kv-host-go [--repeat N] [--logs] [--automtls] (--plugin PATH [ARGS...] | --url URL | --in-process)")
	os.Exit(2)
}

func main() {
	args := os.Args[1:]
	repeat := 1
	var logger func(string, connectplugin.LogRecord)
	var plugin []string
	autoMTLS := false
	url := ""
	for len(args) > 0 {
		switch args[0] {
		case "--repeat":
			if len(args) < 2 {
				usage("--repeat needs a number")
			}
			n, err := strconv.Atoi(args[1])
			if err != nil || n < 1 {
				usage("--repeat needs a positive number")
			}
			repeat, args = n, args[2:]
		case "--logs":
			var mu sync.Mutex
			logger = func(name string, r connectplugin.LogRecord) {
				line := "log " + name + " " + r.Level.String() + " " + r.Message
				for _, f := range r.Fields {
					line += " " + f.Key + "=" + f.Value
				}
				mu.Lock()
				fmt.Println(line)
				mu.Unlock()
			}
			args = args[1:]
		case "--automtls":
			autoMTLS, args = true, args[1:]
		case "--url":
			if len(args) < 2 {
				usage("--url needs a URL")
			}
			url, args = args[1], args[2:]
		case "--in-process":
			srv, err := connectplugin.NewServer()
			if err == nil {
				err = kvservice.Register(srv)
			}
			if err == nil {
				url, err = srv.ServePluginInProcess(connectplugin.PluginConfig{
					CookieKey: "KV_PLUGIN", CookieValue: "connectplugin-kv",
					Plugins: map[int][]connectplugin.PluginInfo{
						1: {{Name: "kv", Version: connectplugin.Version(), ServicePath: "/connectplugin.examples.kv.v1.KVService/"}},
					},
				}, fmt.Sprintf("kv-host-go-%d", os.Getpid()))
			}
			if err != nil {
				fmt.Fprintln(os.Stderr, "error: serve the KV plugin in process:", err)
				os.Exit(1)
			}
			defer srv.Close()
			args = args[1:]
		case "--plugin":
			plugin, args = args[1:], nil
		default:
			usage("unknown argument " + args[0])
		}
	}
	if len(plugin) == 0 && url == "" {
		usage("--plugin PATH or --url URL is required")
	}
	cfg := connectplugin.PluginClientConfig{
		CookieKey: "KV_PLUGIN", CookieValue: "connectplugin-kv",
		Plugins:  map[int][]string{1: {"kv"}},
		URL:      url,
		Logger:   logger,
		AutoMTLS: autoMTLS,
	}
	target := url
	if url == "" {
		cfg.Command = connectplugin.PluginCommand{Path: plugin[0], Args: plugin[1:]}
		target = plugin[0]
	}
	p, err := connectplugin.StartPlugin(cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
	defer p.Kill()
	fmt.Printf("started %s pid=%d version=%d\n", target, p.Pid(), p.NegotiatedVersion())
	k, err := Dispense(p)
	if err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	ok := true
	var lines []string
	for i := 0; i < repeat; i++ {
		lines, err = script(ctx, k)
		if err != nil {
			fmt.Fprintln(os.Stderr, "error:", err)
			ok = false
			break
		}
		ok = ok && fmt.Sprint(lines) == fmt.Sprint(expected)
	}
	for _, l := range lines {
		fmt.Println(l)
	}
	if err := p.Ping(0); err != nil {
		fmt.Fprintln(os.Stderr, "error: ping:", err)
		ok = false
	} else {
		fmt.Println("ping ok")
	}
	p.Kill()
	if url != "" {
		fmt.Println("stopped: disconnected")
		if !ok {
			os.Exit(1)
		}
		return
	}
	st, sig, ended := p.Exited()
	if sig {
		fmt.Printf("stopped: signaled %d\n", st)
	} else {
		fmt.Printf("stopped: exited %d\n", st)
	}
	if !ok || !ended || sig || st != 0 {
		os.Exit(1)
	}
}
