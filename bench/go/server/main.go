// The Go bench handler: /bench.v1.BenchService/Unary through the Go binding, answering a 64-byte
// request with a 64-byte response, like bench_server cp (bench_server.c):
//
//	server --tcp HOST:PORT    prints "tcp ADDR" and "ready"; runs until SIGTERM/SIGINT
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	connectplugin "github.com/connectplugin/connectplugin/bindings/go"
)

func main() {
	tcp := flag.String("tcp", "127.0.0.1:0", "listen address")
	flag.Parse()
	resp := make([]byte, 64)
	resp[0], resp[1] = 0x0a, 62
	for i := 2; i < len(resp); i++ {
		resp[i] = 'r'
	}
	srv, err := connectplugin.NewServer()
	if err != nil {
		fmt.Fprintln(os.Stderr, "go server:", err)
		os.Exit(1)
	}
	err = srv.HandleUnary("/bench.v1.BenchService/Unary", func(ctx context.Context, req *connectplugin.Request) ([]byte, error) {
		if len(req.Message) != 64 {
			return nil, connectplugin.NewError(connectplugin.CodeInvalidArgument, "want 64 bytes")
		}
		return resp, nil
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "go server:", err)
		os.Exit(1)
	}
	addr, err := srv.ListenTCP(*tcp)
	if err == nil {
		err = srv.Start()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "go server:", err)
		os.Exit(1)
	}
	fmt.Printf("tcp %s\nready\n", addr)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
	_ = srv.Stop(time.Second)
	srv.Close()
}
