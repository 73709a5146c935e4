// Transport-level request and response values shared by HTTP/1.1 and HTTP/2.

public enum HTTPVersion: Sendable, Equatable {
    case http1_1
    case http2
}

/// A request as the server received it (the whole body, up to the configured limit).
public struct HTTPRequest: Sendable {
    public var method: String
    /// The request target: path and query.
    public var target: String
    public var authority: String?
    public var headers: HTTPHeaders
    public var body: [UInt8]
    /// True when the body exceeded the server's limit; `body` then holds only a prefix.
    public var bodyTooLarge: Bool
    public var version: HTTPVersion

    public init(method: String, target: String, authority: String? = nil, headers: HTTPHeaders, body: [UInt8] = [],
                bodyTooLarge: Bool = false, version: HTTPVersion) {
        self.method = method
        self.target = target
        self.authority = authority
        self.headers = headers
        self.body = body
        self.bodyTooLarge = bodyTooLarge
        self.version = version
    }

    /// The path without the query.
    public var path: Substring {
        if let q = target.firstIndex(of: "?") { return target[..<q] }
        return target[...]
    }
}

/// A complete response.
public struct HTTPResponse: Sendable {
    public var status: Int
    public var headers: HTTPHeaders
    public var body: [UInt8]
    public var trailers: HTTPHeaders

    public init(status: Int, headers: HTTPHeaders = HTTPHeaders(), body: [UInt8] = [], trailers: HTTPHeaders = HTTPHeaders()) {
        self.status = status
        self.headers = headers
        self.body = body
        self.trailers = trailers
    }
}

/// One request/response exchange on the server. `respond` may be called from any thread, once.
public final class HTTPServerExchange: @unchecked Sendable {
    public let request: HTTPRequest
    public let loop: EventLoop
    private let lock = Lock()
    private var finished = false
    private var canceled = false
    private var cancelHandler: (() -> Void)?
    private let sink: (HTTPResponse) -> Void

    init(request: HTTPRequest, loop: EventLoop, sink: @escaping (HTTPResponse) -> Void) {
        self.request = request
        self.loop = loop
        self.sink = sink
    }

    /// Sends the response. Returns false if a response was already sent or the peer is gone.
    @discardableResult
    public func respond(_ response: HTTPResponse) -> Bool {
        lock.lock()
        if finished || canceled {
            lock.unlock()
            return false
        }
        finished = true
        cancelHandler = nil
        lock.unlock()
        loop.executeOrRun { [sink] in sink(response) }
        return true
    }

    /// True once responded or canceled.
    public var isDone: Bool { lock.withLock { finished || canceled } }

    /// Called (on the loop) if the peer goes away before the response; immediately if it already has.
    public func onCancel(_ handler: @escaping () -> Void) {
        lock.lock()
        if canceled {
            lock.unlock()
            loop.executeOrRun(handler)
            return
        }
        cancelHandler = handler
        lock.unlock()
    }

    /// Transport side: the stream or connection went away.
    func cancel() {
        lock.lock()
        if finished || canceled {
            lock.unlock()
            return
        }
        canceled = true
        let h = cancelHandler
        cancelHandler = nil
        lock.unlock()
        h?()
    }
}

/// Receives complete requests, on the connection's loop thread. Must not block.
public protocol HTTPServerHandler: AnyObject {
    func handle(_ exchange: HTTPServerExchange)
}

/// Limits of the HTTP server.
public struct HTTPServerConfig: Sendable {
    /// Largest request body buffered; a larger one is delivered with `bodyTooLarge` (0 = no limit).
    public var maxBodyBytes: Int = 4 << 20
    public var maxHeaderBytes: Int = 64 << 10
    /// A connection with nothing in flight and no bytes for this long is closed.
    public var idleTimeoutNs: UInt64 = 120_000_000_000
    public init() {}
}
