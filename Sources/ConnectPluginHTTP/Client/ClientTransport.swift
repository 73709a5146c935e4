// The client transport seam: what an RPC client sends its HTTP exchanges through. `HTTPClient` (one
// endpoint: a TCP or Unix socket, TLS, or a server in this process over an in-memory pipe) is one
// implementation; a balancer, a retry policy or a circuit breaker can be another that wraps
// transports (channel → load balancer → subchannel, as in grpc-swift 2).

/// Sends HTTP exchanges for an RPC client. Every method is thread-safe.
public protocol ClientTransport: AnyObject, Sendable {
    /// Sends a request with a complete body. `completion` runs exactly once (on a loop thread; it
    /// must not block). `timeoutNs` (nil = none) fails the request with `.timeout`.
    func execute(method: String, path: String, headers: HTTPHeaders, body: [UInt8], timeoutNs: UInt64?,
                 completion: @escaping (Result<HTTPResponse, HTTPError>) -> Void)
    /// Starts a request streamed both ways; the caller writes and reads on its own thread.
    func stream(method: String, path: String, headers: HTTPHeaders, timeoutNs: UInt64?) -> HTTPClientCall
    /// Starts a request whose first body bytes are known up front; with `endStream` the body is
    /// complete (a unary call: one HEADERS+DATA write, and the transport may resend it on a fresh
    /// connection if the server never saw it). Every RPC call goes through this or `stream`.
    func stream(method: String, path: String, headers: HTTPHeaders, body: [UInt8], endStream: Bool,
                timeoutNs: UInt64?) -> HTTPClientCall
    /// Closes the transport's connections; exchanges in progress fail with `.closed`/`.canceled`.
    func close()
}

extension HTTPClient: ClientTransport {}
