// The RPC server: listeners from the HTTP layer (TCP, Unix, TLS, in-process) on an event-loop group
// (`Options.eventLoopGroup`, by default the shared one), a router from procedure to unary or
// streaming handler for Connect, gRPC and gRPC-Web, interceptors, stream admission, and a pool of
// handler threads so that a slow handler never stalls I/O.
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
        let parts = p.split(separator: "/", omittingEmptySubsequences: false)
        if parts.count != 3 || !parts[0].isEmpty || parts[1].isEmpty || parts[2].isEmpty {
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

    public func listenUnix(_ path: String) throws -> String {
        if path.isEmpty { throw ConnectError.local(.invalidArgument, "unix socket path must not be empty") }
        if path.utf8.count >= 108 { throw ConnectError.local(.invalidArgument, "unix socket path is longer than 107 bytes") }
        do { return try httpServer.listenUnix(path: path) } catch let e as HTTPError { throw RPCServer.map(e) }
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
            // gRPC clients read a trailers-only UNIMPLEMENTED; Connect clients an HTTP 404 (GEN-2).
            let err = ConnectError(.unimplemented, "unknown procedure \(procedure)")
            if let (p, codec) = detected, p == .grpc || p == .grpcWeb {
                let core = makeCore(stream, p, codec, .identity, .identity, isGET: false)
                core.finish(message: nil, error: err)
            } else {
                var h = HTTPHeaders()
                h.add("content-type", "application/json")
                stream.respond(HTTPResponse(status: 404, headers: h, body: ConnectErrorJSON.encode(err)))
            }
            return
        }
        if isGET && !(route.kind == .unary && route.noSideEffects) || req.method != "POST" && !isGET {
            var h = HTTPHeaders()
            h.add("allow", route.kind == .unary && route.noSideEffects ? "GET, POST" : "POST")
            stream.respond(HTTPResponse(status: 405, headers: h))
            return
        }
        guard let (wire, codec) = detected,
              route.kind == .unary ? wire != .connectStream : wire != .connectUnary else {
            var h = HTTPHeaders()
            if isGET {
                h.add("content-type", "application/json")
                let err = ConnectError(.unimplemented, "GET request needs encoding=proto or encoding=json")
                stream.respond(HTTPResponse(status: 415, headers: h, body: ConnectErrorJSON.encode(err)))
                return
            }
            h.add("accept-post", route.kind == .unary
                  ? "application/json, application/proto, application/grpc, application/grpc+json, application/grpc-web, application/grpc-web+json"
                  : "application/connect+json, application/connect+proto, application/grpc, application/grpc+json, application/grpc-web, application/grpc-web+json")
            stream.respond(HTTPResponse(status: 415, headers: h))
            return
        }
        // Encodings, per protocol.
        let reqEncName: String?
        let acceptName: String?
        switch wire {
        case .connectUnary:
            reqEncName = isGET ? query["compression"] : req.headers.first("content-encoding")
            acceptName = req.headers.first("accept-encoding")
        case .connectStream:
            reqEncName = req.headers.first("connect-content-encoding")
            acceptName = req.headers.first("connect-accept-encoding")
        case .grpc, .grpcWeb:
            reqEncName = req.headers.first("grpc-encoding")
            acceptName = req.headers.first("grpc-accept-encoding")
        }
        let reqEnc = MessageEncoding(name: reqEncName)
        // Streams mirror the request's compression (as grpc-go does): a client that sends identity
        // gets identity, and no CPU goes into compressing for a peer that did not ask. Connect
        // unary compresses large responses when the client accepts gzip.
        var respEnc = reqEnc ?? .identity
        if wire == .connectUnary {
            respEnc = ConnectProtocol.encodingList(acceptName).contains("gzip") ? .gzip : .identity
        }
        let core = makeCore(stream, wire, codec, reqEnc ?? .identity, respEnc, isGET: isGET)
        guard reqEnc != nil else {
            core.finish(message: nil, error: ConnectError(.unimplemented, "compression \"\(reqEncName ?? "")\" is not supported; supported: \(MessageEncoding.acceptHeaderValue)"))
            return
        }
        // Protocol version and timeout.
        var timeoutNs: UInt64?
        switch wire {
        case .connectUnary, .connectStream:
            let version = isGET ? query["connect"] : req.headers.first("connect-protocol-version")
            if let v = version, v != (isGET ? "v1" : ConnectProtocol.protocolVersion) {
                core.finish(message: nil, error: ConnectError(.invalidArgument, "connect protocol version must be \(isGET ? "v1" : "1"), got \"\(v)\""))
                return
            }
            if let t = req.headers.first("connect-timeout-ms") {
                guard let ms = ConnectProtocol.parseTimeoutMs(t) else {
                    core.finish(message: nil, error: ConnectError(.invalidArgument, "connect-timeout-ms must be 1 to 10 digits, got \"\(t)\""))
                    return
                }
                let ns = UInt64(ms).multipliedReportingOverflow(by: 1_000_000)
                timeoutNs = ns.overflow ? UInt64.max : ns.partialValue
            }
        case .grpc, .grpcWeb:
            do {
                timeoutNs = try GRPCTimeout.decode(req.headers.first("grpc-timeout"))
            } catch let e as ConnectError {
                core.finish(message: nil, error: e)
                return
            } catch {
                core.finish(message: nil, error: ConnectError(.invalidArgument, "invalid grpc-timeout"))
                return
            }
        }
        var deadlineNs: UInt64?
        if let t = timeoutNs {
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
            let call = StreamCall(procedure: procedure, kind: route.kind, core: core, requestHeaders: md, deadlineNs: deadlineNs, peer: peer)
            dispatch(core) { route.stream?(call) }
            return
        }
        // Unary and server streaming: exactly one request message, collected on the loop.
        if isGET {
            let message: [UInt8]
            do {
                message = try ConnectGET.message(query: query, encoding: reqEnc ?? .identity, maxBytes: limit)
            } catch let e as ConnectError {
                core.finish(message: nil, error: e)
                return
            } catch {
                core.finish(message: nil, error: ConnectError(.invalidArgument, "invalid GET request"))
                return
            }
            runUnary(route, core, procedure, message, md, deadlineNs, peer)
            return
        }
        let bodyLimit = limit == 0 ? 0 : limit &+ 1024
        // Envelopes: a length prefix over the limit is refused before its payload arrives (CMP-6).
        let checkPrefix: ((ArraySlice<UInt8>) -> Bool)? = wire == .connectUnary || limit == 0 ? nil : { head in
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
                message = try RPCServer.singleMessage(body, wire: wire, encoding: reqEnc ?? .identity, limit: limit)
            } catch let e as ConnectError {
                core.finish(message: nil, error: e)
                return
            } catch {
                core.finish(message: nil, error: ConnectError(.internal, "cannot read the request"))
                return
            }
            if route.kind == .unary {
                self.runUnary(route, core, procedure, message, md, deadlineNs, peer)
            } else {
                let call = StreamCall(procedure: procedure, kind: route.kind, core: core, requestHeaders: md, deadlineNs: deadlineNs, peer: peer)
                call.firstMessage = message
                self.dispatch(core) { route.stream?(call) }
            }
        }
    }

    private func makeCore(_ stream: HTTPServerStream, _ wire: WireProtocol, _ codec: String, _ reqEnc: MessageEncoding,
                          _ respEnc: MessageEncoding, isGET: Bool) -> ServerCallCore {
        let proto: RPCProtocol
        switch wire {
        case .connectUnary, .connectStream: proto = .connect
        case .grpc: proto = .grpc
        case .grpcWeb: proto = .grpcWeb
        }
        var ct = wire.contentType(codec: codec)
        if wire == .grpc || wire == .grpcWeb, let reqCT = stream.request.headers.first("content-type") {
            ct = asciiLowercased(reqCT)  // echo the request's (G-5)
        }
        return ServerCallCore(stream: stream, proto: proto, enveloped: wire != .connectUnary, codec: codec, responseContentType: ct,
                              requestEncoding: reqEnc, responseEncoding: respEnc, maxMessageBytes: options.maxMessageBytes, isGET: isGET)
    }

    /// The one message of a unary or server-streaming request body.
    static func singleMessage(_ body: [UInt8], wire: WireProtocol, encoding: MessageEncoding, limit: Int) throws -> [UInt8] {
        if wire == .connectUnary {
            if encoding == .identity || body.isEmpty {
                if limit > 0 && body.count > limit { throw ConnectError(.resourceExhausted, "request message larger than \(limit) bytes") }
                return body
            }
            do {
                return try Gzip.decompress(body, maxBytes: limit)
            } catch let e as ConnectError {
                if e.code == .resourceExhausted { throw ConnectError(.resourceExhausted, "request message larger than \(limit) bytes after decompression") }
                throw ConnectError(.invalidArgument, e.message)
            }
        }
        var reader = EnvelopeReader(maxMessageBytes: limit)
        reader.push(body)
        var messages: [[UInt8]] = []
        while let env = try reader.next() {
            if messages.count >= 1 { throw ConnectError(.unimplemented, "the method takes exactly one request message; got more") }
            messages.append(try EnvelopeCodec.decodeMessage(env, encoding: encoding, maxBytes: limit, decompressFailureCode: .invalidArgument))
        }
        try reader.finish()
        guard let m = messages.first else { throw ConnectError(.unimplemented, "the method takes exactly one request message; got none") }
        return m
    }

    private func runUnary(_ route: Route, _ core: ServerCallCore, _ procedure: String, _ message: [UInt8], _ md: Metadata,
                          _ deadlineNs: UInt64?, _ peer: HTTPPeerInfo?) {
        let call = UnaryCall(procedure: procedure, core: core, request: message, requestHeaders: md, deadlineNs: deadlineNs, peer: peer)
        if route.inline {
            // On the loop thread: the answer's frames are queued here and flushed when the
            // connection finishes processing the bytes it read (same iteration, no eventfd wake).
            if call.isDone { return }
            route.unary?(call)
            core.closeDone()
            call.failIfUnanswered(ConnectError(.internal, "the handler returned without a response"))
            return
        }
        let submitted = pool.submit {
            if call.isDone { return }
            route.unary?(call)
            core.closeDone()
            call.failIfUnanswered(ConnectError(.internal, "the handler returned without a response"))
        }
        if !submitted {
            call.failIfUnanswered(ConnectError(.unavailable, "the server is shutting down"))
        }
    }

    /// Runs a streaming handler on the pool; returning without finishing finishes with OK. A stream
    /// over the per-connection, per-peer or total limit fails at once with RESOURCE_EXHAUSTED and
    /// never takes a thread (StreamAdmission.swift explains the design).
    private func dispatch(_ core: ServerCallCore, _ body: @escaping () -> Void) {
        let ticket: StreamAdmission.Ticket
        switch admission.acquire(core.stream.request.connection) {
        case .success(let t): ticket = t
        case .failure(let e):
            core.finish(message: nil, error: e, byRuntime: true)
            return
        }
        let admission = self.admission
        let submitted = pool.submit {
            defer { admission.release(ticket) }
            if core.stream.isDone { return }
            body()
            core.closeDone()
            core.finish(message: nil, error: nil, byRuntime: true)
        }
        if !submitted {
            admission.release(ticket)
            core.finish(message: nil, error: ConnectError(.unavailable, "the server is shutting down"), byRuntime: true)
        }
    }
}

/// Connect unary GET (protocol digest §4): the query carries the message.
enum ConnectGET {
    /// Splits "a=1&b=2" with form decoding (+ is a space, %XX escapes); the first value of a key wins.
    static func parseQuery(_ q: Substring) -> [String: String] {
        var out: [String: String] = [:]
        for part in q.split(separator: "&", omittingEmptySubsequences: true) {
            let kv = part.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard let k = kv.first else { continue }
            let key = formDecode(k)
            let value = kv.count > 1 ? formDecode(kv[1]) : ""
            if out[key] == nil { out[key] = value }
        }
        return out
    }

    static func formDecodeBytes(_ s: Substring) -> [UInt8] {
        var out: [UInt8] = []
        let u = Array(s.utf8)
        var i = 0
        while i < u.count {
            let b = u[i]
            if b == UInt8(ascii: "+") {
                out.append(0x20)
                i += 1
            } else if b == UInt8(ascii: "%"), i + 2 < u.count, let h = hex(u[i + 1]), let l = hex(u[i + 2]) {
                out.append(h << 4 | l)
                i += 3
            } else {
                out.append(b)
                i += 1
            }
        }
        return out
    }

    static func formDecode(_ s: Substring) -> String { String(decoding: formDecodeBytes(s), as: UTF8.self) }

    static func hex(_ c: UInt8) -> UInt8? {
        switch c {
        case 0x30...0x39: return c - 0x30
        case 0x41...0x46: return c - 0x41 + 10
        case 0x61...0x66: return c - 0x61 + 10
        default: return nil
        }
    }

    static func message(query: [String: String], encoding: MessageEncoding, maxBytes: Int) throws -> [UInt8] {
        guard let raw = query["message"] else { throw ConnectError(.invalidArgument, "GET request has no message parameter") }
        var bytes: [UInt8]
        if query["base64"] == "1" {
            var s = raw.replacingDashUnderscore()
            while s.hasSuffix("=") { s.removeLast() }
            guard let d = Base64.decode(s) else { throw ConnectError(.invalidArgument, "message parameter is not valid base64") }
            bytes = d
        } else {
            bytes = Array(raw.utf8)
        }
        if encoding == .gzip && !bytes.isEmpty {
            do {
                bytes = try Gzip.decompress(bytes, maxBytes: maxBytes)
            } catch let e as ConnectError {
                if e.code == .resourceExhausted { throw ConnectError(.resourceExhausted, "request message larger than \(maxBytes) bytes after decompression") }
                throw ConnectError(.invalidArgument, e.message)
            }
        }
        if maxBytes > 0 && bytes.count > maxBytes { throw ConnectError(.resourceExhausted, "request message larger than \(maxBytes) bytes") }
        return bytes
    }
}

extension String {
    /// URL-safe base64 → standard alphabet.
    func replacingDashUnderscore() -> String {
        String(decoding: utf8.map { $0 == UInt8(ascii: "-") ? UInt8(ascii: "+") : ($0 == UInt8(ascii: "_") ? UInt8(ascii: "/") : $0) }, as: UTF8.self)
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

