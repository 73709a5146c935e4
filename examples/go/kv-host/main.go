// Command kv-host-go is a plugin host: it launches a KV plugin (a connectplugin plugin in any
// language, or an unmodified HashiCorp go-plugin gRPC plugin), dispenses "kv" as a Go interface,
// runs the scripted Put/Get/Delete sequence, prints the results and stops the plugin.
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
	"fmt"
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
	out = append(out, fmt.Sprintf("get greeting found=%v", found))
	return out, err
}

var expected = []string{"put greeting ok", "get greeting found=true value=hello", "delete greeting existed=true",
	"get greeting found=false"}

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
