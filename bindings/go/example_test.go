package connectplugin_test

import (
	"context"
	"fmt"
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
