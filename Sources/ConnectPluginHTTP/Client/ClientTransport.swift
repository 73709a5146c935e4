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

extension ClientTransport {
    /// A request with a complete body and its whole response, blocking the caller: the unary case
    /// of `stream(…, endStream: true)` (on an idle HTTP/2 connection the caller's thread does the
    /// I/O itself). `maxResponseBodyBytes` 0: no limit; a larger body fails with `.tooLarge`.
    public func roundTrip(method: String, path: String, headers: HTTPHeaders, body: [UInt8], timeoutNs: UInt64?,
                          maxResponseBodyBytes limit: Int = 0) -> Result<HTTPResponse, HTTPError> {
        let call = stream(method: method, path: path, headers: headers, body: body, endStream: true, timeoutNs: timeoutNs)
        let status: Int
        let head: HTTPHeaders
        switch call.awaitHead() {
        case .failure(let e):
            return .failure(e)
        case .success(let (s, h)):
            status = s
            head = h
        }
        var collected: [UInt8] = []
        while true {
            switch call.read() {
            case .data(let d):
                if limit > 0 && collected.count + d.count > limit {
                    let e = HTTPError(.tooLarge, "response body larger than \(limit) bytes")
                    call.cancel(e)
                    return .failure(e)
                }
                if collected.isEmpty {
                    collected = d
                } else {
                    collected.append(contentsOf: d)
                }
            case .end(let trailers):
                return .success(HTTPResponse(status: status, headers: head, body: collected, trailers: trailers))
            case .failed(let e):
                return .failure(e)
            }
        }
    }
}
