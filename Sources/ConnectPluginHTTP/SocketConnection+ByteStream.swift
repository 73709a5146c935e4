// A socket connection (plain or TLS) is a byte stream: the HTTP/1.1 and HTTP/2 connections run on
// `ByteStreamConnection`, so the same code serves sockets and in-memory pipes.
extension SocketConnection: ByteStreamConnection {}
