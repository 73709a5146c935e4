// kv-server-go serves connectplugin.examples.kv.v1.KVService (examples/README.md and
// examples/proto/README.md): Put, Get, Delete, List (server streaming), PutMany (client streaming)
// and Watch (bidi), over Connect, gRPC and gRPC-Web, HTTP/1.1 and HTTP/2, plaintext or TLS.
//
//	kv-server-go --listen 127.0.0.1:0
//	kv-server-go --listen unix:/tmp/kv.sock
//	kv-server-go --listen 127.0.0.1:0 --tls-cert server.crt --tls-key server.key [--tls-client-ca ca.crt]
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	connectplugin "github.com/connectplugin/connectplugin/bindings/go"
	"github.com/connectplugin/connectplugin/examples/go/internal/kvservice"
)

func main() {
	defaultListen := "127.0.0.1:0"
	if pluginBuild {
		defaultListen = "" // kv-plugin-go: no --listen means launched by a plugin host
	}
	listen := flag.String("listen", defaultListen, "host:port (port 0 picks one) or unix:PATH")
	tlsCert := flag.String("tls-cert", "", "serve TLS with this certificate chain (PEM); needs --tls-key")
	tlsKey := flag.String("tls-key", "", "the private key of --tls-cert (PEM)")
	clientCA := flag.String("tls-client-ca", "", "require client certificates signed by this CA (mTLS)")
	flag.Parse()
	usage := func(msg string) {
		fmt.Fprintln(os.Stderr, "error:", msg)
		fmt.Fprintln(os.Stderr, "usage: kv-server-go --listen ADDR [--tls-cert CERT --tls-key KEY [--tls-client-ca CA]]")
		os.Exit(2)
	}
	if flag.NArg() > 0 {
		usage(fmt.Sprintf("unexpected arguments: %v", flag.Args()))
	}
	if (*tlsCert == "") != (*tlsKey == "") {
		usage("--tls-cert and --tls-key go together")
	}
	if *clientCA != "" && *tlsCert == "" {
		usage("--tls-client-ca needs --tls-cert and --tls-key")
	}
	var tls *connectplugin.TLSConfig
	if *tlsCert != "" {
		if strings.HasPrefix(*listen, "unix:") {
			usage("TLS is for TCP listeners only")
		}
		tls = &connectplugin.TLSConfig{CertFile: *tlsCert, KeyFile: *tlsKey}
		if *clientCA != "" {
			tls.CAFile = *clientCA
			tls.RequireClientCert = true
		}
	}
	os.Exit(run(*listen, tls))
}

func run(listen string, tls *connectplugin.TLSConfig) int {
	fail := func(what string, err error) int {
		fmt.Fprintf(os.Stderr, "error: %s: %v\n", what, err)
		return 1
	}
	// kv-plugin-go: always the plugin runtime; with --listen, in its remote mode ("listening on ADDR",
	// hosts connect with --url and handshake through connectplugin.v1.HandshakeService).
	pluginMode := pluginBuild
	if pluginMode && tls != nil {
		return fail("serve", fmt.Errorf("kv-plugin-go's remote mode has no TLS yet"))
	}
	// Subscribe before announcing the address, so an early signal is never missed. (A plugin's
	// serve turns SIGTERM and SIGINT into a graceful stop itself.)
	sigs := make(chan os.Signal, 1)
	if !pluginMode {
		signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	}

	srv, err := connectplugin.NewServer()
	if err != nil {
		return fail("new server", err)
	}
	defer srv.Close()

	var log *connectplugin.PluginLogger
	if pluginMode {
		log = &connectplugin.PluginLogger{} // Put logs at debug, as hclog lines the host parses
	}
	if err := kvservice.RegisterLogged(srv, log); err != nil {
		return fail("register", err)
	}

	if pluginMode {
		// Blocks until the host calls Shutdown, SIGTERM/SIGINT, or the host is gone.
		return srv.ServePlugin(connectplugin.PluginConfig{
			CookieKey: "KV_PLUGIN", CookieValue: "connectplugin-kv",
			Plugins: map[int][]connectplugin.PluginInfo{
				1: {{Name: "kv", Version: connectplugin.Version(), ServicePath: "/connectplugin.examples.kv.v1.KVService/"}},
			},
			Listen: listen,
		})
	}
	var bound string
	switch {
	case strings.HasPrefix(listen, "unix:"):
		bound, err = srv.ListenUnix(strings.TrimPrefix(listen, "unix:"))
	case tls != nil:
		bound, err = srv.ListenTLS(listen, tls)
	default:
		bound, err = srv.ListenTCP(listen)
	}
	if err != nil {
		return fail("listen on "+listen, err)
	}
	if err := srv.Start(); err != nil {
		return fail("start", err)
	}
	fmt.Printf("listening on %s\n", bound) // os.Stdout is unbuffered: the line is flushed
	_ = os.Stdout.Sync()

	<-sigs
	signal.Stop(sigs)
	if err := srv.Stop(5 * time.Second); err != nil {
		return fail("stop", err)
	}
	srv.Close()
	return 0
}
