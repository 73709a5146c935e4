// Package connectplugin is the Go binding of libconnectplugin, an RPC runtime for Connect, gRPC and
// gRPC-Web over HTTP/1.1, h2c and TLS, written in Swift and exported as a C ABI
// (include/connectplugin.h). It wraps every function of that header.
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
// The ctx of a handler carries the call's deadline; Request.Protocol and Request.Peer tell the
// protocol ("connect", "grpc", "grpcweb") and the verified mTLS client certificate.
//
// Streaming methods get one handler call per RPC; the handler pulls request messages and pushes
// responses with blocking calls (no callback per message):
//
//	srv.RegisterStream("/pkg.Service/Sum", connectplugin.KindClientStream, func(s *connectplugin.ServerStream) error {
//		n := 0
//		for {
//			msg, err := s.Receive()
//			if err == io.EOF {
//				return s.Send(encode(n)) // returning nil ends the call with OK
//			}
//			if err != nil {
//				return err
//			}
//			n += decode(msg)
//		}
//	})
//
// ListenTLS serves TLS (ALPN h2 and http/1.1) with a TLSConfig; with a CA and RequireClientCert it
// demands client certificates (mTLS).
//
// # Client
//
//	cli, _ := connectplugin.NewClient("http://"+addr, connectplugin.WithCodec("proto"))
//	defer cli.Close()
//	resp, err := cli.CallUnary(ctx, "/pkg.Service/Echo", payload)
//
// The ctx deadline becomes the call timeout. A ctx canceled before the call gives CodeCanceled;
// cancellation during a blocking unary call is not propagated, because the C API has no way to cancel
// connectplugin_client_call_unary: bound such calls with a deadline.
//
// Streams:
//
//	st, _ := cli.Stream(ctx, "/pkg.Service/Chat", connectplugin.KindBidiStream)
//	defer st.Close()
//	st.Send(msg)
//	st.CloseSend()
//	for {
//		msg, err := st.Receive() // io.EOF at a successful end; then st.Trailer()
//		...
//	}
//
// Canceling ctx cancels a stream (a blocked Receive returns CodeCanceled, or CodeDeadlineExceeded
// after the ctx deadline). CallServerStream and CallClientStream cover the two one-sided shapes.
// WithProtocol selects "connect" (default), "grpc" or "grpcweb"; WithTLS configures https:// URLs;
// WithHTTPGet with the per-call NoSideEffects option makes Connect unary calls use GET.
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
