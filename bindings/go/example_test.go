package connectplugin_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strconv"
	"time"

	connectplugin "github.com/connectplugin/connectplugin/bindings/go"
)

// A server and a client in one process: the handler echoes non-empty messages.
func Example() {
	srv, err := connectplugin.NewServer()
	if err != nil {
		panic(err)
	}
	defer srv.Close()
	addr, err := srv.ListenTCP("127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	err = srv.HandleUnary("/example.v1.EchoService/Echo", func(ctx context.Context, req *connectplugin.Request) ([]byte, error) {
		if string(req.Message) == "{}" {
			return nil, connectplugin.NewError(connectplugin.CodeInvalidArgument, "empty message")
		}
		return req.Message, nil
	})
	if err != nil {
		panic(err)
	}
	if err := srv.Start(); err != nil {
		panic(err)
	}

	cli, err := connectplugin.NewClient("http://"+addr, connectplugin.WithCodec("json"))
	if err != nil {
		panic(err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := cli.CallUnary(ctx, "/example.v1.EchoService/Echo", []byte(`{"text":"hi"}`))
	fmt.Println(string(resp.Message), err)
	_, err = cli.CallUnary(ctx, "/example.v1.EchoService/Echo", []byte("{}"))
	fmt.Println(err)
	if err := srv.Stop(time.Second); err != nil {
		panic(err)
	}
	// Output:
	// {"text":"hi"} <nil>
	// invalid_argument: empty message
}

// A client-streaming and a server-streaming method, called with the helpers, and a bidi method
// called through a ClientStream.
func ExampleServer_RegisterStream() {
	srv, err := connectplugin.NewServer()
	if err != nil {
		panic(err)
	}
	defer srv.Close()
	addr, err := srv.ListenTCP("127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	// Client streaming: concatenates the request messages.
	must(srv.RegisterStream("/example.v1.S/Concat", connectplugin.KindClientStream, func(s *connectplugin.ServerStream) error {
		var all []byte
		for {
			msg, err := s.Receive()
			if err == io.EOF {
				return s.Send(all)
			}
			if err != nil {
				return err
			}
			all = append(all, msg...)
		}
	}))
	// Server streaming: one response per byte of the request, then a trailer.
	must(srv.RegisterStream("/example.v1.S/Split", connectplugin.KindServerStream, func(s *connectplugin.ServerStream) error {
		msg, err := s.Receive()
		if err != nil {
			return err
		}
		for _, b := range msg {
			if err := s.Send([]byte{b}); err != nil {
				return err
			}
		}
		return s.AddResponseTrailer("x-count", strconv.Itoa(len(msg)))
	}))
	// Bidi: upper-cases each message; an empty one fails the call.
	must(srv.RegisterStream("/example.v1.S/Upper", connectplugin.KindBidiStream, func(s *connectplugin.ServerStream) error {
		for {
			msg, err := s.Receive()
			if err == io.EOF {
				return nil
			}
			if err != nil {
				return err
			}
			if len(msg) == 0 {
				return connectplugin.NewError(connectplugin.CodeInvalidArgument, "empty message")
			}
			if err := s.Send(bytes.ToUpper(msg)); err != nil {
				return err
			}
		}
	}))
	must(srv.Start())

	cli, err := connectplugin.NewClient("http://"+addr, connectplugin.WithProtocol("grpc"))
	if err != nil {
		panic(err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	resp, err := cli.CallClientStream(ctx, "/example.v1.S/Concat", [][]byte{[]byte("ab"), []byte("cd")})
	fmt.Println(string(resp.Message), err)

	parts, err := cli.CallServerStream(ctx, "/example.v1.S/Split", []byte("xyz"))
	if err != nil {
		panic(err)
	}
	for {
		msg, err := parts.Receive()
		if err != nil {
			fmt.Println(err, parts.Trailer().Get("x-count"))
			break
		}
		fmt.Print(string(msg), " ")
	}
	parts.Close()

	st, err := cli.Stream(ctx, "/example.v1.S/Upper", connectplugin.KindBidiStream)
	if err != nil {
		panic(err)
	}
	defer st.Close()
	for _, word := range []string{"hello", "world", ""} {
		if err := st.Send([]byte(word)); err != nil {
			break // io.EOF: the call ended, Receive tells how
		}
		msg, err := st.Receive()
		if err != nil {
			fmt.Println(err)
			break
		}
		fmt.Println(string(msg))
	}
	// Output:
	// abcd <nil>
	// x y z EOF 3
	// HELLO
	// WORLD
	// invalid_argument: empty message
}

func must(err error) {
	if err != nil {
		panic(err)
	}
}
