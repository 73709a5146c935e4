// Command grpcgo-bench-server is the grpc-go peer of bench/h2load_bench.sh: Debian's grpc-go
// (golang-google-grpc-dev, built in GOPATH mode, see bench/grpcgo/build.sh) serving
// /bench.v1.BenchService/Unary, answering a 64-byte request with a 64-byte response, like
// bench_server cp. It has no generated code: a raw-bytes codec registered as "proto" carries the
// messages, as in Tests/interop/grpcgo/kvclient, so neither side pays for protobuf decoding.
//
//	grpcgo-bench-server --tcp HOST:PORT    prints "tcp ADDR" and "ready"; runs until SIGTERM/SIGINT
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"syscall"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/status"
)

type rawCodec struct{}

func (rawCodec) Marshal(v interface{}) ([]byte, error) {
	if b, ok := v.(*[]byte); ok {
		return *b, nil
	}
	return nil, fmt.Errorf("rawCodec: cannot marshal %T", v)
}

func (rawCodec) Unmarshal(data []byte, v interface{}) error {
	if b, ok := v.(*[]byte); ok {
		*b = append((*b)[:0], data...)
		return nil
	}
	return fmt.Errorf("rawCodec: cannot unmarshal into %T", v)
}

func (rawCodec) Name() string { return "proto" }

var response = func() []byte {
	b := make([]byte, 64)
	b[0], b[1] = 0x0a, 62
	for i := 2; i < len(b); i++ {
		b[i] = 'r'
	}
	return b
}()

type benchService interface{}

func unaryHandler(srv interface{}, ctx context.Context, dec func(interface{}) error, _ grpc.UnaryServerInterceptor) (interface{}, error) {
	var req []byte
	if err := dec(&req); err != nil {
		return nil, err
	}
	if len(req) != 64 {
		return nil, status.Error(codes.InvalidArgument, "want 64 bytes")
	}
	out := response
	return &out, nil
}

var serviceDesc = grpc.ServiceDesc{
	ServiceName: "bench.v1.BenchService",
	HandlerType: (*benchService)(nil),
	Methods:     []grpc.MethodDesc{{MethodName: "Unary", Handler: unaryHandler}},
	Streams:     []grpc.StreamDesc{},
}

func main() {
	addr := flag.String("tcp", "127.0.0.1:0", "listen address")
	flag.Parse()
	encoding.RegisterCodec(rawCodec{})
	lis, err := net.Listen("tcp", *addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "grpcgo-bench-server:", err)
		os.Exit(1)
	}
	s := grpc.NewServer()
	s.RegisterService(&serviceDesc, struct{}{})
	fmt.Printf("tcp %s\nready\n", lis.Addr().String())
	go func() {
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
		<-sig
		s.Stop()
	}()
	if err := s.Serve(lis); err != nil && err != grpc.ErrServerStopped {
		fmt.Fprintln(os.Stderr, "grpcgo-bench-server:", err)
		os.Exit(1)
	}
}
