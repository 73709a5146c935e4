// kv-client-go runs the KV example scripts against a server: the five-line unary script of
// examples/README.md (--scenario unary, the default) or the streaming scenario of
// examples/proto/README.md (--scenario stream), over Connect, gRPC or gRPC-Web.
//
//	kv-client-go --url http://127.0.0.1:8080 [--codec proto|json] [--http 1.1|2]
//	kv-client-go --url unix:///tmp/kv.sock
//	kv-client-go --url https://127.0.0.1:8443 --scenario stream --protocol grpc --compression gzip \
//	    --tls-ca ca.crt [--cert client.crt --key client.key]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
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
	url := flag.String("url", "", "http://host:port, https://host:port or unix:///path/to.sock")
	scenario := flag.String("scenario", "unary", "unary (the five-line script) or stream (examples/proto/README.md)")
	protocol := flag.String("protocol", "connect", "connect, grpc or grpcweb")
	codec := flag.String("codec", "proto", "proto or json")
	httpVersion := flag.String("http", "2", "1.1 or 2")
	compression := flag.String("compression", "identity", "request compression: identity or gzip")
	var tlsCA string
	flag.StringVar(&tlsCA, "tls-ca", "", "verify the server with this CA (PEM); implies TLS")
	flag.StringVar(&tlsCA, "ca", "", "alias of --tls-ca")
	cert := flag.String("cert", "", "client certificate (PEM) for mTLS; needs --key")
	key := flag.String("key", "", "private key (PEM) of --cert")
	flag.Parse()
	usage := func(msg string) {
		if msg != "" {
			fmt.Fprintln(os.Stderr, "error:", msg)
		}
		fmt.Fprintln(os.Stderr, "usage: kv-client-go --url URL [--scenario unary|stream] [--protocol connect|grpc|grpcweb]"+
			" [--codec proto|json] [--http 1.1|2] [--compression identity|gzip] [--tls-ca CA [--cert CERT --key KEY]]")
		os.Exit(2)
	}
	if *url == "" || flag.NArg() > 0 {
		usage("")
	}
	if *scenario != "unary" && *scenario != "stream" {
		usage(fmt.Sprintf("unknown scenario %q (want unary or stream)", *scenario))
	}
	if *protocol != "connect" && *protocol != "grpc" && *protocol != "grpcweb" {
		usage(fmt.Sprintf("unknown protocol %q (want connect, grpc or grpcweb)", *protocol))
	}
	if *codec != kv.CodecProto && *codec != kv.CodecJSON {
		usage(fmt.Sprintf("unknown codec %q (want proto or json)", *codec))
	}
	if *httpVersion != "1.1" && *httpVersion != "2" {
		usage(fmt.Sprintf("unknown HTTP version %q (want 1.1 or 2)", *httpVersion))
	}
	if *protocol == "grpc" && *httpVersion != "2" {
		usage("gRPC needs HTTP/2 (--http 2)")
	}
	if *compression != "identity" && *compression != "gzip" {
		usage(fmt.Sprintf("unknown compression %q (want identity or gzip)", *compression))
	}
	if (*cert == "") != (*key == "") {
		usage("--cert and --key go together")
	}
	target := *url
	opts := []connectplugin.ClientOption{connectplugin.WithCodec(*codec), connectplugin.WithHTTPVersion(*httpVersion)}
	if *protocol != "connect" {
		opts = append(opts, connectplugin.WithProtocol(*protocol))
	}
	if *compression != "identity" {
		opts = append(opts, connectplugin.WithCompression(*compression))
	}
	if tlsCA != "" || *cert != "" || strings.HasPrefix(target, "https://") {
		if strings.HasPrefix(target, "unix:") {
			usage("TLS needs an http(s):// URL")
		}
		if strings.HasPrefix(target, "http://") {
			target = "https://" + strings.TrimPrefix(target, "http://") // --tls-ca means TLS
		}
		opts = append(opts, connectplugin.WithTLS(&connectplugin.TLSConfig{CAFile: tlsCA, CertFile: *cert, KeyFile: *key}))
	}
	client, err := connectplugin.NewClient(target, opts...)
	if err != nil {
		var ce *connectplugin.Error
		if errors.As(err, &ce) && (ce.Status == connectplugin.StatusInvalidArgument || ce.Status == connectplugin.StatusUnsupported) {
			usage(err.Error())
		}
		unexpected(err)
	}
	defer client.Close()
	if *scenario == "stream" {
		ok := runStreamScenario(client, *codec, *httpVersion)
		client.Close()
		if !ok {
			os.Exit(1)
		}
		return
	}
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
