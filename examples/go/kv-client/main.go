// kv-client-go runs the KV example script against a server (see examples/README.md).
//
//	kv-client-go --url http://127.0.0.1:8080 [--codec proto|json] [--http 1.1|2]
//	kv-client-go --url unix:///tmp/kv.sock
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"time"

	connectplugin "github.com/connectplugin/connectplugin/bindings/go"
	"github.com/connectplugin/connectplugin/examples/go/internal/kv"
)

const callTimeout = 10 * time.Second

type runner struct {
	client *connectplugin.Client
	codec  string
	ok     bool // every step so far had the expected outcome
}

// call performs one RPC; a non-RPC failure (encoding, decoding) is reported as an *Error too.
func (r *runner) call(proc string, in, out kv.Message) error {
	req, err := kv.Marshal(r.codec, in)
	if err != nil {
		return connectplugin.NewError(connectplugin.CodeInternal, err.Error())
	}
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	resp, err := r.client.CallUnary(ctx, proc, req)
	if err != nil {
		return err
	}
	if err := kv.Unmarshal(r.codec, resp.Message, out); err != nil {
		return connectplugin.NewError(connectplugin.CodeInternal, fmt.Sprintf("cannot decode %s: %v", out.MessageName(), err))
	}
	return nil
}

// unexpected reports an unexpected error on stderr and exits 1.
func unexpected(err error) {
	fmt.Fprintf(os.Stderr, "error: %v\n", err)
	os.Exit(1)
}

func (r *runner) expect(cond bool) {
	if !cond {
		r.ok = false
	}
}

func showKey(k string) string {
	if k == "" {
		return "<empty>"
	}
	return k
}

func (r *runner) get(key string, wantFound bool, wantValue string) {
	var out kv.GetResponse
	if err := r.call(kv.ProcedureGet, &kv.GetRequest{Key: key}, &out); err != nil {
		unexpected(err)
	}
	if out.Found {
		fmt.Printf("get %s found=true value=%s\n", showKey(key), out.Value)
	} else {
		fmt.Printf("get %s found=false\n", showKey(key))
	}
	r.expect(out.Found == wantFound && string(out.Value) == wantValue)
}

func main() {
	url := flag.String("url", "", "http://host:port or unix:///path/to.sock")
	codec := flag.String("codec", "proto", "proto or json")
	httpVersion := flag.String("http", "2", "1.1 or 2")
	flag.Parse()
	if *url == "" || flag.NArg() > 0 {
		fmt.Fprintln(os.Stderr, "usage: kv-client-go --url URL [--codec proto|json] [--http 1.1|2]")
		os.Exit(2)
	}
	if *codec != kv.CodecProto && *codec != kv.CodecJSON {
		fmt.Fprintf(os.Stderr, "unknown codec %q (want proto or json)\n", *codec)
		os.Exit(2)
	}
	if *httpVersion != "1.1" && *httpVersion != "2" {
		fmt.Fprintf(os.Stderr, "unknown HTTP version %q (want 1.1 or 2)\n", *httpVersion)
		os.Exit(2)
	}
	client, err := connectplugin.NewClient(*url, connectplugin.WithCodec(*codec), connectplugin.WithHTTPVersion(*httpVersion))
	if err != nil {
		unexpected(err)
	}
	defer client.Close()
	r := &runner{client: client, codec: *codec, ok: true}

	// 1. Put
	if err := r.call(kv.ProcedurePut, &kv.PutRequest{Key: "greeting", Value: []byte("hello")}, &kv.PutResponse{}); err != nil {
		unexpected(err)
	}
	fmt.Println("put greeting ok")

	// 2. Get
	r.get("greeting", true, "hello")

	// 3. Delete
	var del kv.DeleteResponse
	if err := r.call(kv.ProcedureDel, &kv.DeleteRequest{Key: "greeting"}, &del); err != nil {
		unexpected(err)
	}
	fmt.Printf("delete greeting existed=%t\n", del.Existed)
	r.expect(del.Existed)

	// 4. Get again
	r.get("greeting", false, "")

	// 5. Get with an empty key: expected to fail with invalid_argument.
	var out kv.GetResponse
	err = r.call(kv.ProcedureGet, &kv.GetRequest{Key: ""}, &out)
	var ce *connectplugin.Error
	switch {
	case err == nil:
		fmt.Printf("get <empty> found=%t\n", out.Found)
		fmt.Fprintln(os.Stderr, "error: get with an empty key succeeded")
		r.ok = false
	case errors.As(err, &ce):
		fmt.Printf("get <empty> error=%s message=%s\n", ce.Code, ce.Message)
		if ce.Code != connectplugin.CodeInvalidArgument || ce.Message != "key must not be empty" {
			fmt.Fprintf(os.Stderr, "error: %v\n", err)
			r.ok = false
		}
	default:
		unexpected(err)
	}

	client.Close()
	if !r.ok {
		os.Exit(1)
	}
}
