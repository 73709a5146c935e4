// Package connectplugin is the Go binding of libconnectplugin, a Connect RPC runtime written in
// Swift and exported as a C ABI (include/connectplugin.h). It wraps every function of that header.
//
// # Building
//
// The package is cgo. It finds the header through ${SRCDIR}/../../include and links
// -lconnectplugin; the caller supplies the library directory, and normally an rpath for it:
//
//	export CGO_LDFLAGS="-L/path/to/.build/debug -Wl,-rpath,/path/to/.build/debug"
//	go build ./...   // or go test ./...
//
// (Alternatively set LD_LIBRARY_PATH at run time instead of the rpath.)
//
// # Server
//
//	srv, _ := connectplugin.NewServer()
//	defer srv.Close()
//	addr, _ := srv.ListenTCP("127.0.0.1:0")
//	srv.HandleUnary("/pkg.Service/Echo", func(ctx context.Context, req *connectplugin.Request) ([]byte, error) {
//		return req.Message, nil
//	})
//	srv.Start()
//	...
//	srv.Stop(5 * time.Second)
//
// Handlers receive and return messages already serialized in the call's codec (req.Codec is
// "proto" or "json"). Returning an *Error (see NewError) fails the call with its code and details;
// any other error fails it with CodeInternal; panics are recovered as CodeInternal "panic: ...".
// The ctx of a handler carries the call's deadline.
//
// # Client
//
//	cli, _ := connectplugin.NewClient("http://"+addr, connectplugin.WithCodec("proto"))
//	defer cli.Close()
//	resp, err := cli.CallUnary(ctx, "/pkg.Service/Echo", payload)
//
// The ctx deadline becomes the call timeout. A ctx canceled before the call gives CodeCanceled;
// cancellation during a blocking call is not propagated yet, because the C API has no way to cancel a
// unary call: bound calls with a deadline.
//
// # Errors
//
// Every error returned is an *Error carrying the local Status, the Connect Code, the message, the
// error details and the metadata of a failed RPC. The C error object is copied and freed at once.
//
// # Lifetimes
//
// Server, Client and MetadataList own native objects. Close them explicitly (Close is idempotent);
// finalizers are a safety net only. Go values handed to the library travel as runtime/cgo.Handle
// integers and are released by the library's user_data finalizer.
package connectplugin
