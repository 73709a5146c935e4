// One client request in flight (`ClientRequest`), bound to one connection once it is sent, and where
// its response goes: the `ClientResponseSink` protocol, `CollectingSink` (the whole response, for
// `HTTPClient.execute`), and the `ClientConnection` protocol a connection implements for its requests.
// All of it is loop-thread state.

/// Receives one request's response, on the client's loop thread.
protocol ClientResponseSink: AnyObject {
    func responseHead(status: Int, headers: HTTPHeaders)
    /// Returns true when the consumer is behind (HTTP/1.1 pauses reading).
    func responseData(_ bytes: UnsafeRawBufferPointer) -> Bool
    func responseEnd(trailers: HTTPHeaders)
    func responseFailed(_ error: HTTPError)
    /// True when data is consumed as it arrives (flow-control windows open at once).
    var consumesOnArrival: Bool { get }
}

/// What a client connection does for a request bound to it (loop thread).
protocol ClientConnection: AnyObject {
    func sendBody(_ req: ClientRequest, _ bytes: [UInt8])
    func endBody(_ req: ClientRequest)
    func consumed(_ req: ClientRequest, bytes: Int)
    func abort(_ req: ClientRequest, _ error: HTTPError)
    /// Runs loop work that touches the connection or its requests (loop thread): now, or — while a
    /// caller's thread drives the connection (HTTP/2 fast path) — once it is handed back.
    func run(_ work: @escaping () -> Void)
}

extension ClientConnection {
    func run(_ work: @escaping () -> Void) { work() }
}

/// One request in flight.
final class ClientRequest {
    let method: String
    let path: String
    let headers: HTTPHeaders
    /// Body bytes known at the start; `bodyComplete` when that is the whole body (unary).
    var body: [UInt8]
    var bodyComplete: Bool
    /// Writes and the end that arrived before the request was bound to a connection.
    var pendingWrites: [[UInt8]] = []
    var pendingEnd = false
    weak var sink: ClientResponseSink?
    var sinkRetainer: ClientResponseSink?
    weak var connection: ClientConnection?
    var timer: TimerHandle?
    /// When `timer` fires (monotonic ns); nil without a timeout.
    var deadlineNs: UInt64?
    /// The timeout the deadline came from (for the error message).
    var timeoutNs: UInt64 = 0
    private(set) var isDone = false
    /// Sent on a connection that carried an earlier request (it may have been closed by the server
    /// meanwhile), and whether it was already sent again once.
    var onReusedConnection = false
    var retried = false
    /// A request whose body is complete and got no response byte can be sent again on a new
    /// connection: the server never saw it (a stale keep-alive connection, or a refused stream).
    var canRetry: Bool { bodyComplete && !retried && !isDone }
    /// Called with the bytes the connection took (the writer's back-pressure credit).
    var onSent: ((Int) -> Void)?

    init(method: String, path: String, headers: HTTPHeaders, body: [UInt8], bodyComplete: Bool, sink: ClientResponseSink) {
        self.method = method
        self.path = path
        self.headers = headers
        self.body = body
        self.bodyComplete = bodyComplete
        self.sink = sink
        sinkRetainer = sink
    }

    func head(_ status: Int, _ headers: HTTPHeaders) {
        if isDone { return }
        sink?.responseHead(status: status, headers: headers)
    }

    func data(_ bytes: UnsafeRawBufferPointer) -> Bool {
        if isDone { return false }
        return sink?.responseData(bytes) ?? false
    }

    /// Completes once (loop thread).
    func end(_ trailers: HTTPHeaders, loop: EventLoop) {
        if isDone { return }
        isDone = true
        if let t = timer { loop.cancel(t) }
        sink?.responseEnd(trailers: trailers)
        sinkRetainer = nil
    }

    func fail(_ e: HTTPError, loop: EventLoop) {
        if isDone { return }
        isDone = true
        if let t = timer { loop.cancel(t) }
        sink?.responseFailed(e)
        sinkRetainer = nil
    }
}

/// Collects a whole response for `execute`.
final class CollectingSink: ClientResponseSink {
    let limit: Int
    var status = 0
    var headers = HTTPHeaders()
    var body: [UInt8] = []
    var completion: ((Result<HTTPResponse, HTTPError>) -> Void)?
    weak var request: ClientRequest?
    let loop: EventLoop

    var consumesOnArrival: Bool { true }

    init(limit: Int, loop: EventLoop, completion: @escaping (Result<HTTPResponse, HTTPError>) -> Void) {
        self.limit = limit
        self.loop = loop
        self.completion = completion
    }

    func responseHead(status: Int, headers: HTTPHeaders) {
        self.status = status
        self.headers = headers
    }

    func responseData(_ bytes: UnsafeRawBufferPointer) -> Bool {
        if limit > 0 && body.count + bytes.count > limit {
            if let req = request {
                let e = HTTPError(.tooLarge, "response body larger than \(limit) bytes")
                req.connection?.abort(req, e)
                req.fail(e, loop: loop)
            }
            return false
        }
        body.append(contentsOf: bytes)
        return false
    }

    func responseEnd(trailers: HTTPHeaders) {
        let c = completion
        completion = nil
        c?(.success(HTTPResponse(status: status, headers: headers, body: body, trailers: trailers)))
    }

    func responseFailed(_ error: HTTPError) {
        let c = completion
        completion = nil
        c?(.failure(error))
    }
}
