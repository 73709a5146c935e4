// The RPC server: listeners from the HTTP layer (TCP, Unix, TLS, in-process) on an event-loop group
// (`Options.eventLoopGroup`, by default the shared one), a router from procedure to unary or
// streaming handler, interceptors, stream admission, and a pool of handler threads so that a slow
// handler never stalls I/O. Every request takes one call path (`handle` → `serve` → `run`), whatever
// its shape and protocol: a unary call is the one-message case of the streaming call, and what
// differs between Connect, gRPC and gRPC-Web is the protocol adapter's (Protocol/ProtocolHandler.swift).
import ConnectPluginHTTP

public typealias UnaryHandler = (UnaryCall) -> Void
public typealias StreamHandler = (StreamCall) -> Void

/// How a procedure is served.
struct Route {
    let kind: MethodKind
    let unary: UnaryHandler?
    let stream: StreamHandler?
    /// Connect GET is allowed (the method has no side effects).
    let noSideEffects: Bool
    /// The unary handler never blocks: it runs on the I/O loop thread that read the request, and
    /// its answer goes out in the same loop iteration (no hand-off to the pool, no wake-up).
    var inline: Bool = false
}

public final class RPCServer: HTTPServerHandler, @unchecked Sendable {
    public struct Options: Sendable {
        /// Largest request message after decompression; 0 = no limit.
        public var maxMessageBytes: Int = 4 << 20
        /// Handler threads kept ready, even when idle (1…`maxHandlerThreads`).
        public var handlerThreads: Int = 8
        /// Most handler threads: more than `handlerThreads` are started while every one is busy, and
        /// those exit again after `idleThreadTimeoutMs` without work.
        public var maxHandlerThreads: Int = 1024
        public var idleThreadTimeoutMs: Int64 = 10_000
        /// Streaming handlers (each holds a thread for its stream's life) allowed at once on one
        /// connection, from one peer (remote address, a global IPv6 one by its /64, over all its connections; a Unix
        /// socket connection is its own peer), and in total. A stream beyond a limit fails at once
        /// with RESOURCE_EXHAUSTED. `maxStreams` is capped at `maxHandlerThreads` − 1: the threads
        /// above it are kept for unary calls, which never wait behind streams (StreamAdmission.swift).
        /// Raise `maxStreamsPerPeer` when many clients reach the server through one proxy or host.
        public var maxStreamsPerConnection: Int = 128
        public var maxStreamsPerPeer: Int = 512
        public var maxStreams: Int = 768
        /// The event loops that run the listeners and connections (nil = `EventLoopGroup.shared()`,
        /// the process-wide loops, one per core).
        public var eventLoopGroup: EventLoopGroup? = nil
        public init() {}
    }

    public let options: Options
    private let lock = Lock()
    private var routes: [String: Route] = [:]
    private var started = false
    private var stopped = false
    /// Interceptors (Interceptor/ServerInterceptors.swift): wrapped into the routes at start.
    private var serverInterceptors: [any Interceptor] = []
    private var procedureInterceptors: [String: [any Interceptor]] = [:]
    private var interceptorsApplied = false
    private let httpServer: HTTPServer
    private let pool: ThreadPool
    private let admission: StreamAdmission

    public init(options: Options = Options()) throws {
        self.options = options
        let relay = Weak()
        do {
            let maxThreads = max(2, options.handlerThreads, options.maxHandlerThreads)
            let idleMs = UInt64(clamping: max(1, options.idleThreadTimeoutMs)).multipliedReportingOverflow(by: 1_000_000)
            pool = try ThreadPool(threads: min(options.handlerThreads, maxThreads), maxThreads: maxThreads,
                                  idleTimeoutNs: idleMs.overflow ? UInt64.max / 2 : idleMs.partialValue, name: "cp-handler")
            admission = StreamAdmission(perConnection: options.maxStreamsPerConnection, perPeer: options.maxStreamsPerPeer,
                                        total: min(options.maxStreams, maxThreads - 1))
            let group = try options.eventLoopGroup ?? EventLoopGroup.shared()
            let cfg = HTTPServerConfig()
            httpServer = HTTPServer(config: cfg, group: group, handler: relay)
        } catch let e as HTTPError {
            throw ConnectError.local(.resource, e.message)
        }
        relay.target = self
    }

    public var addresses: [String] { httpServer.addresses }

    /// Handler threads alive now: idle ones above `handlerThreads` exit after `idleThreadTimeoutMs`.
    public var handlerThreadCount: Int { pool.threadCount }

    /// Streaming handlers admitted and not yet returned.
    public var runningStreamCount: Int { admission.runningCount }

    /// Registers a unary handler for "/package.Service/Method". With `noSideEffects` the method
    /// also accepts Connect GET requests.
    ///
    /// With `inline` the handler runs on the I/O loop thread that read the request, not on the
    /// handler pool: no thread hand-off, and its answer is written in the same loop iteration. It
    /// must not block (no I/O, no locks held for long, no blocking RPC calls): a blocking inline
    /// handler stalls every connection on that loop. Interceptors wrap it and run inline with it.
    /// For quick in-memory work (a map lookup); everything else belongs on the pool (the default).
    public func register(_ procedure: String, noSideEffects: Bool = false, inline: Bool = false, _ handler: @escaping UnaryHandler) throws {
        try add(procedure, Route(kind: .unary, unary: handler, stream: nil, noSideEffects: noSideEffects, inline: inline))
    }

    /// Registers a streaming handler (client, server or bidi streaming) for "/package.Service/Method".
    public func register(_ procedure: String, kind: MethodKind, _ handler: @escaping StreamHandler) throws {
        if kind == .unary {
            throw ConnectError.local(.invalidArgument, "use a unary handler for unary methods")
        }
        try add(procedure, Route(kind: kind, unary: nil, stream: handler, noSideEffects: false))
    }

    /// Marks a registered unary method as free of side effects: it also accepts Connect GET.
    public func setNoSideEffects(_ procedure: String) throws {
        try lock.withLock {
            if started { throw ConnectError.local(.state, "methods must be configured before the server starts") }
            guard let r = routes[procedure] else { throw ConnectError.local(.invalidArgument, "no handler is registered for \(procedure)") }
            guard r.kind == .unary else { throw ConnectError.local(.invalidArgument, "\(procedure) is a streaming method; only unary methods can use GET") }
            routes[procedure] = Route(kind: r.kind, unary: r.unary, stream: r.stream, noSideEffects: true, inline: r.inline)
        }
    }

    /// Adds an interceptor for every call of the server (`procedure` nil) or of one procedure.
    /// Start hooks run in the order added, the server-wide ones first; end hooks in reverse.
    /// Only before the server starts.
    public func addInterceptor(_ interceptor: any Interceptor, procedure: String? = nil) throws {
        if let p = procedure { try RPCServer.validateProcedure(p) }
        try lock.withLock {
            if started { throw ConnectError.local(.state, "interceptors must be added before the server starts") }
            if stopped { throw ConnectError.local(.closed, "the server was stopped") }
            if let p = procedure {
                procedureInterceptors[p, default: []].append(interceptor)
            } else {
                serverInterceptors.append(interceptor)
            }
        }
    }

    private func add(_ procedure: String, _ route: Route) throws {
        try RPCServer.validateProcedure(procedure)
        try lock.withLock {
            if started { throw ConnectError.local(.state, "handlers must be registered before the server starts") }
            if stopped { throw ConnectError.local(.closed, "the server was stopped") }
            if routes[procedure] != nil { throw ConnectError.local(.invalidArgument, "a handler for \(procedure) is already registered") }
            routes[procedure] = route
        }
    }

    static func validateProcedure(_ p: String) throws {
        // "/" + service + "/" + method, both non-empty: one pass over the bytes (this runs for every
        // client call; splitting the String cost ~10k instructions).
        var slashes = 0
        var lastSlash = -1
        var shape = true
        for (i, b) in p.utf8.enumerated() where b == UInt8(ascii: "/") {
            if (slashes == 0 && i != 0) || (slashes == 1 && i == 1) { shape = false }
            slashes += 1
            lastSlash = i
        }
        if !shape || slashes != 2 || lastSlash == p.utf8.count - 1 {
            throw ConnectError.local(.invalidArgument, "procedure \"\(p)\" must look like /package.Service/Method")
        }
        for b in p.utf8 where b <= 0x20 || b >= 0x7F || b == UInt8(ascii: "?") || b == UInt8(ascii: "#") {
            throw ConnectError.local(.invalidArgument, "procedure \"\(p)\" has a character not allowed in a path")
        }
    }

    /// Listens on "host:port" (":port" for all interfaces, "[::1]:0"). Returns the bound address.
    /// With `tls`, the listener speaks TLS (HTTP/2 or HTTP/1.1 by ALPN; mTLS when the config asks
    /// for client certificates).
    public func listenTCP(_ hostPort: String, tls: TLSConfig? = nil) throws -> String {
        guard let (host, port) = RPCServer.splitHostPort(hostPort) else {
            throw ConnectError.local(.invalidArgument, "address \"\(hostPort)\" must look like host:port (e.g. 127.0.0.1:0)")
        }
        do { return try httpServer.listenTCP(host: host, port: port, tls: tls) } catch let e as HTTPError { throw RPCServer.map(e) }
    }

    /// Listens on a Unix socket at `path`; with `tls`, as `listenTCP`.
    public func listenUnix(_ path: String, tls: TLSConfig? = nil) throws -> String {
        if path.isEmpty { throw ConnectError.local(.invalidArgument, "unix socket path must not be empty") }
        if path.utf8.count >= 108 { throw ConnectError.local(.invalidArgument, "unix socket path is longer than 107 bytes") }
        do { return try httpServer.listenUnix(path: path, tls: tls) } catch let e as HTTPError { throw RPCServer.map(e) }
    }

    /// Listens under `name` in this process: clients with the URL "inproc://NAME" reach this server
    /// over an in-memory pipe with the full HTTP/2 and protocol stack, and no socket. Names are 1–255
    /// letters, digits and -._~, one server per name at a time (freed by `stop`). Returns "inproc://NAME".
    public func listenInProcess(_ name: String) throws -> String {
        do { return try httpServer.listenInProcess(name: name) } catch let e as HTTPError { throw RPCServer.map(e) }
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
        case .tls: return ConnectError.local(.invalidArgument, e.message)
        default: return ConnectError.local(.io, e.message)
        }
    }

    public func start() throws {
        try lock.withLock {
            if stopped { throw ConnectError.local(.closed, "the server was stopped") }
            started = true
            if !interceptorsApplied {
                interceptorsApplied = true
                routes = ServerInterceptors.apply(routes, server: serverInterceptors, perProcedure: procedureInterceptors)
            }
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
        lock.withLock {
            routes.removeAll()
            serverInterceptors = []
            procedureInterceptors = [:]
        }
    }

    // MARK: HTTPServerHandler (loop thread)

    /// The one call path, for every shape and protocol: route, detect the protocol, let its adapter
    /// read the request headers, arm the deadline, read the request (one message for unary and
    /// server streaming, before the handler runs; a stream of them otherwise), run the handler.
    public func handle(_ stream: HTTPServerStream) {
        let req = stream.request
        let procedure = String(req.path)
        let route: Route? = lock.withLock { routes[procedure] }
        let isGET = req.method == "GET"
        var query: [String: String] = [:]
        if isGET, let q = req.query { query = ConnectGET.parseQuery(q) }
        let detected = WireProtocol.detect(contentType: req.headers.first("content-type"), method: req.method,
                                           getEncoding: isGET ? query["encoding"] : nil)
        guard let route else {
            let err = ConnectError(.unimplemented, "unknown procedure \(procedure)")
            if let (wire, codec) = detected {
                wire.serverHandler.unknownProcedure(stream, codec: codec, error: err)
            } else {
                ConnectHandler.notFound(stream, err)
            }
            return
        }
        if isGET && !(route.kind == .unary && route.noSideEffects) || req.method != "POST" && !isGET {
            var h = HTTPHeaders()
            h.add("allow", route.kind == .unary && route.noSideEffects ? "GET, POST" : "POST")
            stream.respond(HTTPResponse(status: 405, headers: h))
            return
        }
        guard let (wire, codec) = detected, wire.serverHandler.serves(route.kind) else {
            if isGET {
                ConnectHandler.unsupportedGET(stream)
                return
            }
            var h = HTTPHeaders()
            h.add("accept-post", ServerProtocols.acceptPost(for: route.kind))
            stream.respond(HTTPResponse(status: 415, headers: h))
            return
        }
        let adapter = wire.serverHandler
        let (params, problem) = adapter.negotiate(req, codec: codec, query: query)
        let core = ServerCallCore(stream: stream, handler: adapter, params: params, maxMessageBytes: options.maxMessageBytes)
        if let problem {
            core.finish(message: nil, error: problem)
            return
        }
        var deadlineNs: UInt64?
        if let t = params.timeoutNs {
            let sum = monotonicNowNs().addingReportingOverflow(t)
            deadlineNs = sum.overflow ? UInt64.max : sum.partialValue
            let timer = stream.loop.schedule(afterNs: t) { [weak core] in
                guard let core else { return }
                core.finish(message: nil, error: ConnectError(.deadlineExceeded, "the deadline passed before the call finished"), byRuntime: true)
                core.stream.failReads(HTTPError(.timeout, "deadline exceeded"))
                core.fireDone()
            }
            // However the call ends (answered, reset, peer gone), the timer goes with it: otherwise
            // it would stay scheduled until the deadline, which the client may set days ahead.
            stream.onEnd { [loop = stream.loop] in loop.cancel(timer) }
        }
        let (md, _) = Metadata.from(req.headers)
        let limit = options.maxMessageBytes
        let peer = req.peer

        if route.kind.clientStreams {
            stream.startReading()
            serve(StreamCall(procedure: procedure, kind: route.kind, core: core, requestHeaders: md, deadlineNs: deadlineNs, peer: peer), route)
            return
        }
        // Unary and server streaming: exactly one request message, read on the loop before the
        // handler runs: from the URL (Connect GET) or from the body.
        do {
            if let message = try adapter.messageInURL(query, params, maxBytes: limit) {
                start(route, core, procedure, message, md, deadlineNs, peer)
                return
            }
        } catch let e as ConnectError {
            core.finish(message: nil, error: e)
            return
        } catch {
            core.finish(message: nil, error: ConnectError(.invalidArgument, "invalid request"))
            return
        }
        let bodyLimit = limit == 0 ? 0 : limit &+ 1024
        // Envelopes: a length prefix over the limit is refused before its payload arrives (CMP-6).
        let checkPrefix: ((ArraySlice<UInt8>) -> Bool)? = !params.enveloped || limit == 0 ? nil : { head in
            var n: UInt64 = 0
            for b in head.dropFirst() { n = n << 8 | UInt64(b) }
            return n <= UInt64(limit)
        }
        stream.collectBody(limit: bodyLimit, headCheckBytes: 5, headCheck: checkPrefix) { [weak self] body, tooLarge in
            guard let self else { return }
            if tooLarge {
                core.finish(message: nil, error: ConnectError(.resourceExhausted, "request message larger than \(limit) bytes"))
                return
            }
            let message: [UInt8]
            do {
                message = try adapter.singleMessage(body, params, maxBytes: limit)
            } catch let e as ConnectError {
                core.finish(message: nil, error: e)
                return
            } catch {
                core.finish(message: nil, error: ConnectError(.internal, "cannot read the request"))
                return
            }
            self.start(route, core, procedure, message, md, deadlineNs, peer)
        }
    }

    /// A call whose one request message was read: unary, or server streaming.
    private func start(_ route: Route, _ core: ServerCallCore, _ procedure: String, _ message: [UInt8], _ md: Metadata,
                       _ deadlineNs: UInt64?, _ peer: HTTPPeerInfo?) {
        if route.kind == .unary {
            serve(UnaryCall(procedure: procedure, core: core, request: message, requestHeaders: md, deadlineNs: deadlineNs, peer: peer), route)
        } else {
            let call = StreamCall(procedure: procedure, kind: route.kind, core: core, requestHeaders: md, deadlineNs: deadlineNs, peer: peer)
            call.firstMessage = message
            serve(call, route)
        }
    }

    /// Runs the handler of any shape: on the pool, or (an inline unary route) right here on the
    /// loop thread, where the answer's frames are queued and flushed when the connection finishes
    /// processing the bytes it read (same iteration, no eventfd wake). A shape that holds a thread
    /// for a stream's life is admitted first: one over the per-connection, per-peer or total limit
    /// fails at once with RESOURCE_EXHAUSTED and never takes a thread (StreamAdmission.swift);
    /// unary calls are not counted.
    private func serve<Call: ServerCallShape>(_ call: Call, _ route: Route) {
        if route.inline && !Call.holdsThread {
            RPCServer.run(call, route)
            return
        }
        var ticket: StreamAdmission.Ticket?
        if Call.holdsThread {
            switch admission.acquire(call.core.stream.request.connection) {
            case .success(let t): ticket = t
            case .failure(let e):
                call.core.finish(message: nil, error: e, byRuntime: true)
                return
            }
        }
        let admission = self.admission
        let held = ticket
        let submitted = pool.submit {
            defer { if let held { admission.release(held) } }
            RPCServer.run(call, route)
        }
        if !submitted {
            if let held { admission.release(held) }
            call.core.finish(message: nil, error: ConnectError(.unavailable, "the server is shutting down"), byRuntime: true)
        }
    }

    /// The handler's run: skipped when the call is already over; its return ends the call if it
    /// did not (unary: an error, it owes an answer; streams: OK).
    private static func run<Call: ServerCallShape>(_ call: Call, _ route: Route) {
        let core = call.core
        if core.isOver { return }
        call.invoke(route)
        core.closeDone()
        core.finish(message: nil, error: Call.whenUnanswered, byRuntime: true)
    }
}

/// Breaks the server ↔ HTTP server reference cycle.
final class Weak: HTTPServerHandler {
    weak var target: RPCServer?
    func handle(_ stream: HTTPServerStream) {
        if let t = target {
            t.handle(stream)
        } else {
            _ = stream.respond(HTTPResponse(status: 503))
        }
    }
}

