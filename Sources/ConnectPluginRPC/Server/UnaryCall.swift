// One unary call as a handler sees it: the request, metadata, deadline, and the ways to answer.
import ConnectPluginHTTP

/// A unary call in progress on the server. Handlers answer with `respond` or `fail`, once.
public final class UnaryCall: @unchecked Sendable {
    public let procedure: String
    /// "proto" or "json".
    public let codec: String
    public let request: [UInt8]
    public let requestHeaders: Metadata
    /// Monotonic deadline in nanoseconds, if the client set a timeout.
    public let deadlineNs: UInt64?
    let exchange: HTTPServerExchange
    let acceptEncodings: [String]
    private let lock = Lock()
    private var responseHeaders = Metadata()
    private var responseTrailers = Metadata()
    private var errorDetails: [ErrorDetail] = []
    private var answered = false
    /// The runtime answered on its own (deadline, shutdown, handler returned without answering).
    private var answeredByRuntime = false

    init(procedure: String, codec: String, request: [UInt8], requestHeaders: Metadata, deadlineNs: UInt64?,
         exchange: HTTPServerExchange, acceptEncodings: [String]) {
        self.procedure = procedure
        self.codec = codec
        self.request = request
        self.requestHeaders = requestHeaders
        self.deadlineNs = deadlineNs
        self.exchange = exchange
        self.acceptEncodings = acceptEncodings
    }

    /// Milliseconds until the deadline (0 once passed), or -1 without a deadline.
    public var timeoutRemainingMs: Int64 {
        guard let d = deadlineNs else { return -1 }
        let now = monotonicNowNs()
        if now >= d { return 0 }
        return Int64((d - now) / 1_000_000)
    }

    /// True once the call can no longer be answered (answered, deadline passed, client gone).
    public var isDone: Bool { lock.withLock { answered } || exchange.isDone }

    /// True once a response or an error was sent (by the handler or by the runtime).
    var wasAnswered: Bool { lock.withLock { answered } }

    public func addResponseHeader(_ key: String, _ value: [UInt8]) throws {
        try lock.withLock {
            try checkOpen()
            try responseHeaders.add(key, value)
        }
    }

    public func addResponseTrailer(_ key: String, _ value: [UInt8]) throws {
        try lock.withLock {
            try checkOpen()
            try responseTrailers.add(key, value)
        }
    }

    public func addErrorDetail(_ detail: ErrorDetail) throws {
        try lock.withLock {
            try checkOpen()
            if detail.type.isEmpty { throw ConnectError.local(.invalidArgument, "error detail type must not be empty") }
            errorDetails.append(detail)
        }
    }

    private func checkOpen() throws {
        if answeredByRuntime || (!answered && exchange.isDone) {
            throw ConnectError.local(.closed, "the call is over (deadline passed, client gone or server stopping)")
        }
        if answered { throw ConnectError.local(.state, "the call was already answered") }
    }

    /// Sends the response message (serialized in `codec`).
    public func respond(_ message: [UInt8]) throws {
        let (headers, trailers) = try takeForAnswer()
        var h = HTTPHeaders()
        h.add("content-type", ConnectProtocol.contentType(codec: codec))
        h.add("accept-encoding", "gzip")
        var body = message
        if message.count >= ConnectProtocol.compressMinBytes && acceptEncodings.contains("gzip"),
           let z = try? Gzip.compress(message) {
            body = z
            h.add("content-encoding", "gzip")
        }
        headers.write(to: &h)
        trailers.write(to: &h, prefix: "trailer-")
        if !exchange.respond(HTTPResponse(status: 200, headers: h, body: body)) {
            throw ConnectError.local(.closed, "the call is over (deadline passed or client gone)")
        }
    }

    /// Fails the call with `code` and `message` (plus details added before).
    public func fail(_ code: Code, _ message: String) throws {
        let (headers, trailers) = try takeForAnswer()
        let details = lock.withLock { errorDetails }
        let err = ConnectError(code == .ok ? .unknown : code, message, details: details)
        if !ConnectServerResponses.sendError(err, on: exchange, headers: headers, trailers: trailers) {
            throw ConnectError.local(.closed, "the call is over (deadline passed or client gone)")
        }
    }

    private func takeForAnswer() throws -> (Metadata, Metadata) {
        try lock.withLock {
            try checkOpen()
            answered = true
            return (responseHeaders, responseTrailers)
        }
    }

    /// Runtime side: answer with an error unless the handler already answered.
    func failIfUnanswered(_ err: ConnectError) {
        let take: (Metadata, Metadata)? = lock.withLock {
            if answered { return nil }
            answered = true
            answeredByRuntime = true
            return (responseHeaders, responseTrailers)
        }
        guard let (h, t) = take else { return }
        _ = ConnectServerResponses.sendError(err, on: exchange, headers: h, trailers: t)
    }
}

enum ConnectServerResponses {
    /// Sends a Connect unary error (JSON body, status from the code). Returns false if the exchange is done.
    @discardableResult
    static func sendError(_ err: ConnectError, on exchange: HTTPServerExchange, headers: Metadata = Metadata(),
                          trailers: Metadata = Metadata(), extraHeaders: [(String, String)] = [], status: Int? = nil) -> Bool {
        var h = HTTPHeaders()
        h.add("content-type", "application/json")
        for (n, v) in extraHeaders { h.add(n, v) }
        headers.write(to: &h)
        trailers.write(to: &h, prefix: "trailer-")
        return exchange.respond(HTTPResponse(status: status ?? err.code.httpStatus, headers: h, body: ConnectErrorJSON.encode(err)))
    }

    /// A plain HTTP error without an RPC body (415, 405).
    @discardableResult
    static func sendHTTP(_ status: Int, on exchange: HTTPServerExchange, headers: [(String, String)]) -> Bool {
        var h = HTTPHeaders()
        for (n, v) in headers { h.add(n, v) }
        return exchange.respond(HTTPResponse(status: status, headers: h))
    }
}
