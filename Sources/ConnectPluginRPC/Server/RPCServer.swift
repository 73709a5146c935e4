// The RPC server: listeners from the HTTP layer, the Connect unary protocol, a router from procedure
// to handler, and a pool of handler threads so that a slow handler never stalls I/O.
import ConnectPluginHTTP

public typealias UnaryHandler = (UnaryCall) -> Void

public final class RPCServer: HTTPServerHandler, @unchecked Sendable {
    public struct Options: Sendable {
        /// Largest request message after decompression; 0 = no limit.
        public var maxMessageBytes: Int = 4 << 20
        public var handlerThreads: Int = 8
        public init() {}
    }

    public let options: Options
    private let lock = Lock()
    private var routes: [String: UnaryHandler] = [:]
    private var started = false
    private var stopped = false
    private let httpServer: HTTPServer
    private let pool: ThreadPool

    public init(options: Options = Options()) throws {
        self.options = options
        let relay = Weak()
        do {
            pool = try ThreadPool(threads: options.handlerThreads, name: "connectplugin-handler")
            let group = try EventLoopGroup.shared()
            var cfg = HTTPServerConfig()
            // Compressed bodies may be slightly larger than the message; the decompressed size is
            // checked again after inflating.
            cfg.maxBodyBytes = options.maxMessageBytes == 0 ? 0 : options.maxMessageBytes &+ 1024
            httpServer = HTTPServer(config: cfg, group: group, handler: relay)
        } catch let e as HTTPError {
            throw ConnectError.local(.resource, e.message)
        }
        relay.target = self
    }

    public var addresses: [String] { httpServer.addresses }

    /// Registers a unary handler for "/package.Service/Method".
    public func register(_ procedure: String, _ handler: @escaping UnaryHandler) throws {
        try RPCServer.validateProcedure(procedure)
        try lock.withLock {
            if started { throw ConnectError.local(.state, "handlers must be registered before the server starts") }
            if stopped { throw ConnectError.local(.closed, "the server was stopped") }
            if routes[procedure] != nil { throw ConnectError.local(.invalidArgument, "a handler for \(procedure) is already registered") }
            routes[procedure] = handler
        }
    }

    static func validateProcedure(_ p: String) throws {
        let parts = p.split(separator: "/", omittingEmptySubsequences: false)
        if parts.count != 3 || !parts[0].isEmpty || parts[1].isEmpty || parts[2].isEmpty {
            throw ConnectError.local(.invalidArgument, "procedure \"\(p)\" must look like /package.Service/Method")
        }
        for b in p.utf8 where b <= 0x20 || b >= 0x7F || b == UInt8(ascii: "?") || b == UInt8(ascii: "#") {
            throw ConnectError.local(.invalidArgument, "procedure \"\(p)\" has a character not allowed in a path")
        }
    }

    /// Listens on "host:port" (":port" for all interfaces, "[::1]:0"). Returns the bound address.
    public func listenTCP(_ hostPort: String) throws -> String {
        guard let (host, port) = RPCServer.splitHostPort(hostPort) else {
            throw ConnectError.local(.invalidArgument, "address \"\(hostPort)\" must look like host:port (e.g. 127.0.0.1:0)")
        }
        do { return try httpServer.listenTCP(host: host, port: port) } catch let e as HTTPError { throw RPCServer.map(e) }
    }

    public func listenUnix(_ path: String) throws -> String {
        if path.isEmpty { throw ConnectError.local(.invalidArgument, "unix socket path must not be empty") }
        if path.utf8.count >= 108 { throw ConnectError.local(.invalidArgument, "unix socket path is longer than 107 bytes") }
        do { return try httpServer.listenUnix(path: path) } catch let e as HTTPError { throw RPCServer.map(e) }
    }

    static func splitHostPort(_ s: String) -> (String, Int)? {
        var host: Substring
        var portStr: Substring
        if s.hasPrefix("[") {
            guard let close = s.firstIndex(of: "]") else { return nil }
            host = s[s.index(after: s.startIndex)..<close]
            let rest = s[s.index(after: close)...]
            guard rest.hasPrefix(":") else { return nil }
            portStr = rest.dropFirst()
        } else {
            guard let colon = s.lastIndex(of: ":") else { return nil }
            host = s[..<colon]
            portStr = s[s.index(after: colon)...]
            if host.contains(":") { return nil }
        }
        guard !portStr.isEmpty, portStr.count <= 5, portStr.allSatisfy({ $0.isASCII && $0.isNumber }), let port = Int(portStr), port <= 65535 else { return nil }
        return (String(host), port)
    }

    static func map(_ e: HTTPError) -> ConnectError {
        switch e.kind {
        case .closed: return ConnectError.local(.closed, e.message)
        case .resource: return ConnectError.local(.resource, e.message)
        case .invalidArgument: return ConnectError.local(.invalidArgument, e.message)
        default: return ConnectError.local(.io, e.message)
        }
    }

    public func start() throws {
        try lock.withLock {
            if stopped { throw ConnectError.local(.closed, "the server was stopped") }
            started = true
        }
        do { try httpServer.start() } catch let e as HTTPError { throw RPCServer.map(e) }
    }

    /// Stops accepting, waits up to `graceMs` for calls in flight, then closes everything and joins
    /// the handler threads. Idempotent.
    public func stop(graceMs: Int64) {
        let first: Bool = lock.withLock {
            let f = !stopped
            stopped = true
            return f
        }
        guard first else { return }
        let grace = UInt64(max(0, graceMs)).multipliedReportingOverflow(by: 1_000_000)
        httpServer.stop(graceNs: grace.overflow ? UInt64.max : grace.partialValue)
        pool.shutdown()
        lock.withLock { routes.removeAll() }
    }

    // MARK: HTTPServerHandler (loop thread)

    public func handle(_ exchange: HTTPServerExchange) {
        let req = exchange.request
        let procedure = String(req.path)
        let handler: UnaryHandler? = lock.withLock { routes[procedure] }
        guard let handler else {
            // HTTP 404, which every Connect client reads as unimplemented (protocol digest GEN-2).
            ConnectServerResponses.sendError(ConnectError(.unimplemented, "unknown procedure \(procedure)"), on: exchange, status: 404)
            return
        }
        if req.method != "POST" {
            ConnectServerResponses.sendHTTP(405, on: exchange, headers: [("allow", "POST")])
            return
        }
        let contentType = req.headers.first("content-type")
        guard let codec = ConnectProtocol.unaryCodec(contentType: contentType) else {
            ConnectServerResponses.sendHTTP(415, on: exchange, headers: [("accept-post", "application/json, application/proto")])
            return
        }
        if let v = req.headers.first("connect-protocol-version"), v != ConnectProtocol.protocolVersion {
            ConnectServerResponses.sendError(ConnectError(.invalidArgument, "connect-protocol-version must be \"1\", got \"\(v)\""), on: exchange)
            return
        }
        var deadlineNs: UInt64?
        if let t = req.headers.first("connect-timeout-ms") {
            guard let ms = ConnectProtocol.parseTimeoutMs(t) else {
                ConnectServerResponses.sendError(ConnectError(.invalidArgument, "connect-timeout-ms must be 1 to 10 digits, got \"\(t)\""), on: exchange)
                return
            }
            let ns = UInt64(ms).multipliedReportingOverflow(by: 1_000_000)
            let sum = monotonicNowNs().addingReportingOverflow(ns.partialValue)
            deadlineNs = (ns.overflow || sum.overflow) ? UInt64.max : sum.partialValue
        }
        let encoding = asciiLowercased(req.headers.first("content-encoding") ?? "identity")
        if encoding != "identity" && encoding != "gzip" {
            ConnectServerResponses.sendError(
                ConnectError(.unimplemented, "content-encoding \"\(encoding)\" is not supported; supported: gzip, identity"),
                on: exchange, extraHeaders: [("accept-encoding", "gzip")])
            return
        }
        let limit = options.maxMessageBytes
        if req.bodyTooLarge || (limit > 0 && encoding == "identity" && req.body.count > limit) {
            ConnectServerResponses.sendError(ConnectError(.resourceExhausted, "request message larger than \(limit) bytes"), on: exchange)
            return
        }
        var message = req.body
        if encoding == "gzip" && !message.isEmpty {
            do {
                message = try Gzip.decompress(message, maxBytes: limit)
            } catch let e as ConnectError {
                let err = e.code == .resourceExhausted ? ConnectError(.resourceExhausted, "request message larger than \(limit) bytes after decompression") : ConnectError(.invalidArgument, e.message)
                ConnectServerResponses.sendError(err, on: exchange)
                return
            } catch {
                ConnectServerResponses.sendError(ConnectError(.invalidArgument, "invalid gzip request body"), on: exchange)
                return
            }
        }
        let (md, _) = Metadata.from(req.headers)
        let call = UnaryCall(procedure: procedure, codec: codec, request: message, requestHeaders: md, deadlineNs: deadlineNs,
                             exchange: exchange, acceptEncodings: ConnectProtocol.encodingList(req.headers.first("accept-encoding")))
        if let d = deadlineNs {
            let now = monotonicNowNs()
            let delay = d > now ? d - now : 0
            let timer = exchange.loop.schedule(afterNs: delay) { [weak call] in
                call?.failIfUnanswered(ConnectError(.deadlineExceeded, "the deadline passed before the handler answered"))
            }
            exchange.onCancel { [loop = exchange.loop] in loop.cancel(timer) }
        }
        let submitted = pool.submit {
            if call.isDone { return }
            handler(call)
            call.failIfUnanswered(ConnectError(.internal, "the handler returned without a response"))
        }
        if !submitted {
            call.failIfUnanswered(ConnectError(.unavailable, "the server is shutting down"))
        }
    }
}

/// Breaks the server ↔ HTTP server reference cycle.
final class Weak: HTTPServerHandler {
    weak var target: RPCServer?
    func handle(_ exchange: HTTPServerExchange) {
        if let t = target {
            t.handle(exchange)
        } else {
            _ = exchange.respond(HTTPResponse(status: 503))
        }
    }
}

