// The client transport for one endpoint: HTTP/1.1 (a pool of keep-alive connections, one request
// each at a time) or HTTP/2 (one multiplexed connection, replaced when it dies). All of a client's
// connection state lives on one event loop; callers block on their own threads. The connections are
// in H2ClientConnection.swift and H1ClientConnection.swift, requests in ClientRequest.swift.
import CConnectPluginPosix

public final class HTTPClient: @unchecked Sendable {
    public let endpoint: HTTPEndpoint
    public let config: HTTPClientConfig
    let loop: EventLoop
    let tlsContext: TLSContext?
    // Loop-thread state.
    private var h2: H2ClientConnection?
    private var idleH1: [H1ClientConnection] = []
    private var activeH1: [ObjectIdentifier: H1ClientConnection] = [:]
    private var closed = false
    /// The HTTP/2 connection a blocking unary caller may drive itself (written on the loop; read
    /// by callers in `stream`).
    private let fastLock = Lock()
    private var fastH2: H2ClientConnection?
    /// Calls that took the fast path (tests).
    private var fastStarts = 0
    var fastPathCalls: Int { fastLock.withLock { fastStarts } }

    public init(endpoint: HTTPEndpoint, config: HTTPClientConfig, group: EventLoopGroup) throws {
        self.endpoint = endpoint
        self.config = config
        self.loop = group.next()
        tlsContext = try config.tls.map { try TLSContext(config: $0, isServer: false) }
    }

    var scheme: String { tlsContext == nil ? "http" : "https" }

    /// Sends a request with a complete body. `completion` runs on the client's loop thread, exactly
    /// once. `timeoutNs` (nil = none) fails the request with `.timeout` and aborts it on the wire.
    public func execute(method: String, path: String, headers: HTTPHeaders, body: [UInt8], timeoutNs: UInt64?,
                        completion: @escaping (Result<HTTPResponse, HTTPError>) -> Void) {
        let sink = CollectingSink(limit: config.maxResponseBodyBytes, loop: loop, completion: completion)
        let req = ClientRequest(method: method, path: path, headers: headers, body: body, bodyComplete: true, sink: sink)
        sink.request = req
        loop.execute { [self] in start(req, timeoutNs: timeoutNs) }
    }

    /// Starts a streaming request: write the body with `write`/`closeSend` and read the response
    /// with `awaitHead`/`read`, on the caller's thread.
    public func stream(method: String, path: String, headers: HTTPHeaders, timeoutNs: UInt64?) -> HTTPClientCall {
        stream(method: method, path: path, headers: headers, body: [], endStream: false, timeoutNs: timeoutNs)
    }

    /// Starts a streaming request whose first body bytes are known: `body` goes out with the request
    /// head and, when `endStream`, the body is complete (the unary case: the request may then be sent
    /// again on a fresh connection if the server never saw it). Read the response with
    /// `awaitHead`/`read`; with `endStream` false, go on with `write`/`closeSend`.
    public func stream(method: String, path: String, headers: HTTPHeaders, body: [UInt8], endStream: Bool,
                       timeoutNs: UInt64?) -> HTTPClientCall {
        let call = HTTPClientCall(loop: loop, sendClosed: endStream)
        let req = ClientRequest(method: method, path: path, headers: headers, body: body, bodyComplete: endStream, sink: call)
        req.onSent = { [weak call] n in call?.sent(n) }
        call.request = req
        if endStream && tlsContext == nil && config.version == .http2, let c = fastLock.withLock({ fastH2 }), c.tryAcquire() {
            // The fast path: this thread drives the idle connection (H2ClientConnection+CallerDriven.swift).
            if let t = timeoutNs {
                let (sum, overflow) = monotonicNowNs().addingReportingOverflow(t)
                req.deadlineNs = overflow ? UInt64.max : sum
                req.timeoutNs = t
            }
            call.fast = c
            fastLock.withLock { fastStarts += 1 }
            c.submit(req)
            c.writeOut()
            return call
        }
        loop.execute { [self] in start(req, timeoutNs: timeoutNs) }
        return call
    }

    private func start(_ req: ClientRequest, timeoutNs: UInt64?) {
        if closed {
            req.fail(HTTPError(.closed, "the client was closed"), loop: loop)
            return
        }
        if req.isDone { return }
        if let t = timeoutNs {
            let (sum, overflow) = monotonicNowNs().addingReportingOverflow(t)
            req.timeoutNs = t
            armTimer(req, deadlineNs: overflow ? UInt64.max : sum)
        }
        switch config.version {
        case .http2: startH2(req)
        case .http1_1: startH1(req)
        }
    }

    /// Arms the request's deadline timer (loop thread): at `deadlineNs` the request fails with
    /// `.timeout` and is aborted on the wire.
    func armTimer(_ req: ClientRequest, deadlineNs d: UInt64) {
        req.deadlineNs = d
        let now = monotonicNowNs()
        let t = req.timeoutNs
        req.timer = loop.schedule(afterNs: d > now ? d - now : 0) { [weak req, loop] in
            guard let req, !req.isDone else { return }
            let err = HTTPError(.timeout, "deadline exceeded after \(t / 1_000_000) ms")
            if let c = req.connection {
                c.run {
                    c.abort(req, err)
                    req.fail(err, loop: loop)
                }
            } else {
                req.fail(err, loop: loop)
            }
        }
    }

    private func setFastH2(_ c: H2ClientConnection?) {
        fastLock.withLock { fastH2 = c }
    }

    /// Closes all connections; requests in flight fail with `.closed`. Blocks until done (not on the
    /// loop); a call a caller's thread is driving itself fails as soon as that thread hands its
    /// connection back, which it does at once.
    public func close() {
        let p = Promise<Bool>()
        loop.execute { [self] in
            closed = true
            setFastH2(nil)
            if let c = h2 {
                c.gated { c.socket.closeNow(HTTPError(.closed, "the client was closed")) }
            }
            h2 = nil
            for c in idleH1 { c.socket.closeNow(nil) }
            idleH1.removeAll()
            for c in Array(activeH1.values) { c.socket.closeNow(HTTPError(.closed, "the client was closed")) }
            activeH1.removeAll()
            p.fulfill(true)
        }
        if loop.inEventLoop { return }
        _ = p.wait()
    }

    // MARK: connections

    func openSocket() -> Result<(any ByteStreamConnection, Bool), HTTPError> {
        let fd: Int32
        let inProgress: Bool
        do {
            switch endpoint {
            case .tcp(let host, let port): (fd, inProgress) = try Socket.connectTCP(host: host, port: port)
            case .unix(let path): (fd, inProgress) = try Socket.connectUnix(path: path)
            case .inProcess(let name): return InProcessListeners.connect(name: name, loop: loop).map { ($0, false) }
            }
        } catch let e as HTTPError {
            return .failure(e)
        } catch {
            return .failure(HTTPError(.io, "connect to \(endpoint.description) failed"))
        }
        let socket = SocketConnection(fd: fd, loop: loop)
        if let ctx = tlsContext {
            var host: String? = nil
            if case .tcp(let h, _) = endpoint { host = h }
            do {
                let engine = try TLSEngine(context: ctx, isServer: false, serverName: config.tls?.serverName ?? host,
                                           alpn: config.version == .http2 ? ["h2"] : ["http/1.1"])
                socket.enableTLS(engine)
            } catch let e as HTTPError {
                _ = cp_close(fd)
                return .failure(e)
            } catch {
                _ = cp_close(fd)
                return .failure(HTTPError(.io, "TLS setup failed"))
            }
        }
        return .success((socket, inProgress))
    }

    private func startH2(_ req: ClientRequest) {
        if let c = h2 {
            // Through the connection's gate: a caller's thread may be driving it.
            c.gated { [self] in
                if c.isUsable {
                    c.submit(req)
                    return
                }
                if h2 === c {
                    h2 = nil
                    setFastH2(nil)
                }
                startH2(req)
            }
            return
        }
        switch openSocket() {
        case .failure(let e):
            req.fail(e, loop: loop)
        case .success(let (socket, inProgress)):
            let conn = H2ClientConnection(socket: socket, client: self)
            h2 = conn
            if !closed { setFastH2(conn) }
            conn.gated {
                conn.submit(req)
                socket.start(delegate: conn, connecting: inProgress) { [weak conn] err in conn?.connected(err) }
            }
        }
    }

    func h2Finished(_ c: H2ClientConnection) {
        if h2 === c {
            h2 = nil
            setFastH2(nil)
        }
    }

    /// Sends a request again on a new connection (loop thread); see `ClientRequest.canRetry`.
    func retry(_ req: ClientRequest) {
        req.retried = true
        req.connection = nil
        if closed {
            req.fail(HTTPError(.closed, "the client was closed"), loop: loop)
            return
        }
        switch config.version {
        case .http2: startH2(req)
        case .http1_1: startH1(req)
        }
    }

    private func startH1(_ req: ClientRequest) {
        // A streamed request cannot be sent again, so it never takes a pooled connection: a server
        // may close an idle keep-alive connection just as we reuse it. (A complete body can be
        // resent: see ClientRequest.canRetry.)
        while !req.retried && req.bodyComplete, let c = idleH1.popLast() {
            if !c.socket.isClosed {
                activeH1[ObjectIdentifier(c)] = c
                req.onReusedConnection = true
                c.send(req)
                return
            }
        }
        switch openSocket() {
        case .failure(let e):
            req.fail(e, loop: loop)
        case .success(let (socket, inProgress)):
            let conn = H1ClientConnection(socket: socket, client: self)
            activeH1[ObjectIdentifier(conn)] = conn
            conn.send(req)
            socket.start(delegate: conn, connecting: inProgress) { [weak conn] err in conn?.connected(err) }
        }
    }

    func h1Idle(_ c: H1ClientConnection) {
        activeH1[ObjectIdentifier(c)] = nil
        if closed || idleH1.count >= config.maxIdleHTTP1Connections {
            c.socket.closeNow(nil)
        } else {
            idleH1.append(c)
        }
    }

    func h1Closed(_ c: H1ClientConnection) {
        idleH1.removeAll { $0 === c }
        activeH1[ObjectIdentifier(c)] = nil
    }
}
