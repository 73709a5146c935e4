// Command slowserver is a grpc-go peer of the interop tests (test_conformance_regressions.py): a
// gRPC server whose every method holds the call past any short deadline, so that the client's
// deadline is what ends the call.
//
// It builds in GOPATH mode against Debian's grpc-go (see ../build.sh). There is no generated code:
// grpc.UnknownServiceHandler serves every method as a stream of raw bytes (a codec registered as
// "proto" that does not decode).
//
//	slowserver --listen 127.0.0.1:0 [--hold 3s]
//
// Every call reads its first request message; a method whose name ends in "AfterHeaders" then sends
// the response headers (x-slow: 1); the handler then sleeps for --hold without looking at its
// context (a handler that sleeps past the deadline) and ends OK with no message. Prints
// "listening on ADDR"; SIGTERM stops it at once (exit 0), without waiting for held calls.
package main

import (
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/metadata"
)

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

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "host:port")
	hold := flag.Duration("hold", 3*time.Second, "how long every call is held")
	flag.Parse()
	encoding.RegisterCodec(rawCodec{}) // replaces grpc-go's own "proto" codec in this process

	handler := func(srv interface{}, stream grpc.ServerStream) error {
		var req []byte
		if err := stream.RecvMsg(&req); err != nil {
			return err
		}
		method, _ := grpc.MethodFromServerStream(stream)
		if strings.HasSuffix(method, "AfterHeaders") {
			if err := stream.SendHeader(metadata.Pairs("x-slow", "1")); err != nil {
				return err
			}
		}
		time.Sleep(*hold)
		return nil
	}
	lis, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintf(os.Stderr, "error: cannot listen on %s: %v\n", *listen, err)
		os.Exit(1)
	}
	server := grpc.NewServer(grpc.UnknownServiceHandler(handler))
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-sigs
		server.Stop()
	}()
	fmt.Printf("listening on %s\n", lis.Addr().String())
	if err := server.Serve(lis); err != nil && err != grpc.ErrServerStopped {
		fmt.Fprintf(os.Stderr, "error: %v\n", err)
		os.Exit(1)
	}
}
