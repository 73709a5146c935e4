// The client transport: one endpoint, HTTP/1.1 (a pool of keep-alive connections, one request each
// at a time) or HTTP/2 (one multiplexed connection, replaced when it dies). All of a client's
// connection state lives on one event loop; callers block on their own threads.
//
// A request is a `ClientRequest` bound to one connection. Its response events go to a sink: the
// unary path collects a whole `HTTPResponse`; `HTTPClientCall` streams both ways with blocking,
// back-pressured reads and writes on the caller's thread.
import CConnectPluginPosix

public enum HTTPEndpoint: Sendable, Equatable {
    case tcp(host: String, port: Int)
    case unix(path: String)
    /// A server in this process that listens under this name (`HTTPServer.listenInProcess`),
    /// reached over an in-memory pipe.
    case inProcess(name: String)

    var authority: String {
        switch self {
        case .tcp(let h, let p): return h.contains(":") ? "[\(h)]:\(p)" : "\(h):\(p)"
        case .unix: return "localhost"
        case .inProcess(let name): return name
        }
    }

    var description: String {
        switch self {
        case .tcp: return authority
        case .unix(let p): return "unix:" + p
        case .inProcess(let name): return "inproc://" + name
        }
    }
}

public struct HTTPClientConfig: Sendable {
    public var version: HTTPVersion = .http2
    /// Largest whole response body accepted by `execute` (0 = no limit).
    public var maxResponseBodyBytes: Int = 0
    public var maxIdleHTTP1Connections = 16
    /// TLS (https): nil for plaintext.
    public var tls: TLSConfig? = nil
    public init() {}
}

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

/// A streaming request/response on the client, used from the caller's thread: `write` and `read`
/// block (never call them on a loop thread); `write` waits while `highWater` bytes are unsent.
public final class HTTPClientCall: ClientResponseSink, @unchecked Sendable {
    public static let highWater = 256 << 10
    let loop: EventLoop
    var request: ClientRequest?
    private let cond = ConditionLock()
    private var status = 0
    private var headers: HTTPHeaders?
    private var inQueue: [[UInt8]] = []
    private var inHead = 0
    private var inQueued = 0
    private var inCredit = 0
    private var trailers: HTTPHeaders?
    private var error: HTTPError?
    private var outstanding = 0
    private var sendClosed = false

    init(loop: EventLoop, sendClosed: Bool = false) {
        self.loop = loop
        self.sendClosed = sendClosed
    }

    var consumesOnArrival: Bool { false }

    // Sink (loop thread).
    func responseHead(status: Int, headers: HTTPHeaders) {
        cond.withLock {
            self.status = status
            self.headers = headers
            cond.broadcast()
        }
    }

    func responseData(_ bytes: UnsafeRawBufferPointer) -> Bool {
        cond.lock()
        defer { cond.unlock() }
        inQueue.append(Array(bytes))
        inQueued += bytes.count
        cond.broadcast()
        return inQueued > HTTPClientCall.highWater
    }

    func responseEnd(trailers: HTTPHeaders) {
        cond.withLock {
            self.trailers = trailers
            if headers == nil { headers = HTTPHeaders() }
            cond.broadcast()
        }
    }

    func responseFailed(_ error: HTTPError) {
        cond.withLock {
            if self.error == nil { self.error = error }
            cond.broadcast()
        }
    }

    func sent(_ n: Int) {
        cond.withLock {
            outstanding -= n
            if outstanding < 0 { outstanding = 0 }
            cond.broadcast()
        }
    }

    /// Writes request body bytes. Returns nil (also when the server already ended its response: the
    /// bytes are dropped, and `read` reports the outcome), or the transport error that ended the call.
    public func write(_ bytes: [UInt8]) -> HTTPError? {
        if bytes.isEmpty { return nil }
        cond.lock()
        while error == nil && trailers == nil && outstanding > HTTPClientCall.highWater { cond.wait() }
        if let e = error {
            cond.unlock()
            return e
        }
        if trailers != nil {
            // The server answered already (e.g. an early error): the bytes are dropped and the
            // reader learns the outcome from the response.
            cond.unlock()
            return nil
        }
        if sendClosed {
            cond.unlock()
            return HTTPError(.invalidArgument, "the request body is already closed")
        }
        outstanding += bytes.count
        cond.unlock()
        loop.execute { [self] in
            guard let req = request else { return }
            if let c = req.connection {
                c.sendBody(req, bytes)
            } else {
                req.pendingWrites.append(bytes)
            }
        }
        return nil
    }

    /// Ends the request body (half-close).
    public func closeSend() {
        let first: Bool = cond.withLock {
            let f = !sendClosed
            sendClosed = true
            return f
        }
        if !first { return }
        loop.execute { [self] in
            guard let req = request else { return }
            if let c = req.connection {
                c.endBody(req)
            } else {
                req.pendingEnd = true
            }
        }
    }

    /// Cancels the call: HTTP/2 RST_STREAM(CANCEL), HTTP/1.1 connection close.
    public func cancel(_ err: HTTPError = HTTPError(.canceled, "the call was canceled")) {
        cond.withLock {
            if error == nil { error = err }
            cond.broadcast()
        }
        loop.execute { [self] in
            guard let req = request else { return }
            req.connection?.abort(req, err)
            req.fail(err, loop: loop)
        }
    }

    /// Blocks until the response head arrives. Returns (status, headers) or the error.
    public func awaitHead(untilNs deadline: UInt64? = nil) -> Result<(Int, HTTPHeaders), HTTPError> {
        cond.lock()
        defer { cond.unlock() }
        while headers == nil && error == nil {
            cond.wait()
        }
        if let h = headers { return .success((status, h)) }
        return .failure(error ?? HTTPError(.io, "no response"))
    }

    /// Blocks until the next response body piece, the end (with trailers), or a failure.
    public func read() -> HTTPBodyEvent {
        cond.lock()
        while true {
            if inHead < inQueue.count {
                let chunk = inQueue[inHead]
                inQueue[inHead] = []
                inHead += 1
                if inHead == inQueue.count {
                    inQueue.removeAll(keepingCapacity: true)
                    inHead = 0
                }
                inQueued -= chunk.count
                inCredit += chunk.count
                var credit = 0
                if inCredit >= 32 << 10 || inQueued == 0 {
                    credit = inCredit
                    inCredit = 0
                }
                cond.unlock()
                if credit > 0 {
                    loop.execute { [self] in
                        guard let req = request, !req.isDone else { return }
                        req.connection?.consumed(req, bytes: credit)
                    }
                }
                return .data(chunk)
            }
            if let e = error {
                cond.unlock()
                return .failed(e)
            }
            if let t = trailers {
                cond.unlock()
                return .end(t)
            }
            cond.wait()
        }
    }

    var queuedBytes: Int { cond.withLock { inQueued } }
}

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
            req.deadlineNs = overflow ? UInt64.max : sum
            req.timer = loop.schedule(afterNs: t) { [weak req, loop] in
                guard let req, !req.isDone else { return }
                let err = HTTPError(.timeout, "deadline exceeded after \(t / 1_000_000) ms")
                req.connection?.abort(req, err)
                req.fail(err, loop: loop)
            }
        }
        switch config.version {
        case .http2: startH2(req)
        case .http1_1: startH1(req)
        }
    }

    /// Closes all connections; requests in flight fail with `.closed`. Blocks until done (not on the loop).
    public func close() {
        let p = Promise<Bool>()
        loop.execute { [self] in
            closed = true
            h2?.socket.closeNow(HTTPError(.closed, "the client was closed"))
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
        if let c = h2, c.isUsable {
            c.submit(req)
            return
        }
        switch openSocket() {
        case .failure(let e):
            req.fail(e, loop: loop)
        case .success(let (socket, inProgress)):
            let conn = H2ClientConnection(socket: socket, client: self)
            h2 = conn
            conn.submit(req)
            socket.start(delegate: conn, connecting: inProgress) { [weak conn] err in conn?.connected(err) }
        }
    }

    func h2Finished(_ c: H2ClientConnection) {
        if h2 === c { h2 = nil }
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

// MARK: - HTTP/2

final class H2ClientConnection: ConnectionDelegate, H2SessionDelegate, ClientConnection {
    let socket: any ByteStreamConnection
    /// Weak: a connection may outlive its client (a call still finishing when the host frees it).
    weak var owner: HTTPClient?
    let loop: EventLoop
    let endpoint: HTTPEndpoint
    let scheme: String
    private var session: H2Session?
    private var connecting = true
    private var pending: [ClientRequest] = []
    private var goingAway = false
    private var dead = false

    private final class Stream {
        let req: ClientRequest
        var status = 0
        var headers = HTTPHeaders()
        var trailers = HTTPHeaders()
        var headComplete = false
        init(req: ClientRequest) { self.req = req }
    }
    private var streams: [Int32: Stream] = [:]
    private var ids: [ObjectIdentifier: Int32] = [:]

    init(socket: any ByteStreamConnection, client: HTTPClient) {
        self.socket = socket
        owner = client
        loop = client.loop
        endpoint = client.endpoint
        scheme = client.scheme
    }

    var isUsable: Bool { !dead && !goingAway && !socket.isClosed }

    func connected(_ err: HTTPError?) {
        connecting = false
        if let err {
            fail(all: HTTPError(.io, err.message))
            return
        }
        if socket.isTLS && socket.negotiatedALPN != "h2" {
            fail(all: HTTPError(.protocolError, "\(endpoint.description) did not negotiate HTTP/2 (ALPN h2) over TLS; use HTTP/1.1"))
            socket.closeNow(nil)
            return
        }
        guard let s = H2Session(isServer: false, socket: socket, delegate: self) else {
            fail(all: HTTPError(.resource, "cannot create an HTTP/2 session"))
            socket.closeNow(nil)
            return
        }
        session = s
        let p = pending
        pending = []
        for r in p { submit(r) }
        flush()
    }

    func submit(_ req: ClientRequest) {
        if req.isDone { return }
        if connecting {
            pending.append(req)
            req.connection = self
            return
        }
        guard let session, isUsable else {
            req.fail(HTTPError(.io, "connection to \(endpoint.description) is closed"), loop: loop)
            return
        }
        var h: [(String, String)] = [(":method", req.method), (":scheme", scheme), (":authority", endpoint.authority), (":path", req.path)]
        for (n, v) in req.headers { h.append((n, v)) }
        let endNow = req.bodyComplete && req.body.isEmpty
        guard let id = session.submitRequest(headers: h, endStream: endNow, onConsumed: { [weak req] n in req?.onSent?(n) }) else {
            req.fail(HTTPError(.io, "cannot start an HTTP/2 stream"), loop: loop)
            return
        }
        streams[id] = Stream(req: req)
        ids[ObjectIdentifier(req)] = id
        req.connection = self
        if !endNow {
            if !req.body.isEmpty {
                session.send(stream: id, req.body)
                if !req.bodyComplete { req.body = [] }  // a complete body is kept for a retry
            }
            for w in req.pendingWrites { session.send(stream: id, w) }
            req.pendingWrites = []
            if req.bodyComplete || req.pendingEnd { session.end(stream: id, trailers: []) }
        }
        flush()
    }

    // MARK: ClientConnection

    func sendBody(_ req: ClientRequest, _ bytes: [UInt8]) {
        if connecting {
            req.pendingWrites.append(bytes)
            return
        }
        guard let id = ids[ObjectIdentifier(req)], let session else {
            req.onSent?(bytes.count)
            return
        }
        session.send(stream: id, bytes)
        flush()
    }

    func endBody(_ req: ClientRequest) {
        if connecting {
            req.pendingEnd = true
            return
        }
        guard let id = ids[ObjectIdentifier(req)], let session else { return }
        session.end(stream: id, trailers: [])
        flush()
    }

    func consumed(_ req: ClientRequest, bytes: Int) {
        guard let id = ids[ObjectIdentifier(req)], let session else { return }
        session.consume(stream: id, bytes)
        flush()
    }

    func abort(_ req: ClientRequest, _ error: HTTPError) {
        pending.removeAll { $0 === req }
        guard let id = ids.removeValue(forKey: ObjectIdentifier(req)) else { return }
        streams[id] = nil
        session?.resetStream(id, errorCode: 8)  // CANCEL
        flush()
    }

    private func flush() {
        guard let session, !session.isBusy else { return }
        if !session.flush() { socket.closeAfterFlush() }
    }

    private func fail(all err: HTTPError) {
        dead = true
        let p = pending
        pending = []
        for r in p { r.fail(err, loop: loop) }
        let s = streams
        streams.removeAll()
        ids.removeAll()
        for (_, st) in s { st.req.fail(err, loop: loop) }
        owner?.h2Finished(self)
    }

    func connectionReceived(_ bytes: UnsafeRawBufferPointer) {
        guard let session else { return }
        if !session.receive(bytes) {
            fail(all: HTTPError(.protocolError, "HTTP/2 protocol error from \(endpoint.description)"))
            socket.closeAfterFlush()
            return
        }
        flush()
    }

    func connectionClosed(_ error: HTTPError?) {
        let msg = error.map { "connection to \(endpoint.description) failed: \($0.message)" }
            ?? "connection to \(endpoint.description) closed"
        fail(all: HTTPError(error?.kind == .tls ? .tls : .io, msg))
        session?.destroy()
        session = nil
    }

    func connectionDrained() {
        if session != nil { flush() }
    }

    func h2BeginHeaders(stream: Int32) {}

    func h2Header(stream id: Int32, name: String, value: String) {
        guard let st = streams[id] else { return }
        if !st.headComplete {
            if name == ":status" {
                st.status = Int(value) ?? 0
            } else if !name.hasPrefix(":") {
                st.headers.add(name, value)
            }
        } else if !name.hasPrefix(":") {
            st.trailers.add(name, value)
        }
    }

    func h2HeadersComplete(stream id: Int32, endStream: Bool) {
        guard let st = streams[id] else { return }
        if !st.headComplete {
            if st.status >= 100 && st.status < 200 {
                st.status = 0
                st.headers = HTTPHeaders()
                return
            }
            st.headComplete = true
            st.req.head(st.status, st.headers)
        }
        if endStream { finish(id) }
    }

    func h2Data(stream id: Int32, bytes: UnsafeRawBufferPointer) {
        guard let st = streams[id] else { return }
        _ = st.req.data(bytes)
        if st.req.sink?.consumesOnArrival ?? true { session?.consume(stream: id, bytes.count) }
    }

    func h2EndStream(stream id: Int32) { finish(id) }

    private func finish(_ id: Int32) {
        guard let st = streams.removeValue(forKey: id) else { return }
        ids[ObjectIdentifier(st.req)] = nil
        if let session, session.outgoing[id] != nil {
            // G-13: the response ended before our request body did; stop sending it.
            session.resetStream(id, errorCode: 0)
            flush()
        }
        st.req.end(st.trailers, loop: loop)
    }

    func h2StreamClosed(stream id: Int32, errorCode: UInt32) {
        guard let st = streams.removeValue(forKey: id) else { return }
        ids[ObjectIdentifier(st.req)] = nil
        var err = HTTPError.fromH2Reset(errorCode, endpoint.description)
        // A CANCEL once our deadline has passed is the deadline (T-3), as grpc-go's client decides
        // (`!deadline.After(time.Now())`): grpc-go servers reset with CANCEL at their copy of the
        // deadline. That copy starts when the server reads the request headers (grpc-timeout carries
        // our whole timeout, and our timer starts before the request is written), so such a reset
        // arrives at or after our deadline: no margin is needed, and a reset before it stays
        // canceled. It may still come before our timer runs (the loop wakes up to 1 ms late and
        // handles socket events before timers).
        if errorCode == 8, let d = st.req.deadlineNs, monotonicNowNs() >= d {
            err = HTTPError(.timeout, "deadline exceeded (\(endpoint.description) reset the stream with CANCEL at its copy of the deadline)")
        }
        st.req.fail(err, loop: loop)
    }

    func h2GoAway(lastStreamID: Int32, errorCode: UInt32) {
        goingAway = true
        owner?.h2Finished(self)
        for (id, st) in streams where id > lastStreamID {
            streams[id] = nil
            ids[ObjectIdentifier(st.req)] = nil
            if st.req.canRetry, let owner {
                owner.retry(st.req)  // not processed: safe to send on a new connection
            } else {
                st.req.fail(HTTPError(.refused, "\(endpoint.description) is going away; the request was not processed"), loop: loop)
            }
        }
    }
}

// MARK: - HTTP/1.1

final class H1ClientConnection: ConnectionDelegate, ClientConnection {
    let socket: any ByteStreamConnection
    /// Weak: a connection may outlive its client (a call still finishing when the host frees it).
    weak var owner: HTTPClient?
    let loop: EventLoop
    let endpoint: HTTPEndpoint
    private var parser = HTTP1Parser(kind: .response)
    private var current: ClientRequest?
    private var connecting = true
    private var headWritten = false
    private var chunked = false
    private var bodyEnded = false
    private var responseEnded = false
    private var keepAlive = true
    private var uncredited = 0
    private var pausedForReader = false
    private var responseStarted = false

    init(socket: any ByteStreamConnection, client: HTTPClient) {
        self.socket = socket
        owner = client
        loop = client.loop
        endpoint = client.endpoint
    }

    func connected(_ err: HTTPError?) {
        connecting = false
        if let err, let req = current {
            current = nil
            req.fail(HTTPError(err.kind == .tls ? .tls : .io, err.message), loop: loop)
            return
        }
        if let req = current { writeHead(req) }
    }

    func send(_ req: ClientRequest) {
        current = req
        req.connection = self
        headWritten = false
        bodyEnded = false
        responseEnded = false
        responseStarted = false
        keepAlive = true
        uncredited = 0
        parser = HTTP1Parser(kind: .response)
        if req.method == "HEAD" { parser.expectHeadResponse() }
        if !connecting { writeHead(req) }
    }

    private func writeHead(_ req: ClientRequest) {
        var headers = HTTPHeaders()
        headers.add("host", endpoint.authority)
        for (n, v) in req.headers where n != "host" && n != "content-length" && n != "transfer-encoding" { headers.add(n, v) }
        chunked = !req.bodyComplete
        if chunked {
            headers.add("transfer-encoding", "chunked")
        } else if req.method != "GET" && req.method != "HEAD" || !req.body.isEmpty {
            headers.add("content-length", String(req.body.count))
        }
        var out: [UInt8] = []
        out.reserveCapacity(256 + req.body.count)
        HTTP1Serializer.requestHead(method: req.method, target: req.path, headers: headers, into: &out)
        headWritten = true
        if chunked {
            socket.write(out)
            for w in req.pendingWrites { sendBody(req, w) }
            req.pendingWrites = []
            if req.pendingEnd { endBody(req) }
        } else {
            out.append(contentsOf: req.body)
            bodyEnded = true
            socket.write(out)
        }
    }

    // MARK: ClientConnection

    func sendBody(_ req: ClientRequest, _ bytes: [UInt8]) {
        guard current === req, headWritten, !bodyEnded, chunked else {
            if current === req && !headWritten {
                req.pendingWrites.append(bytes)
            } else {
                req.onSent?(bytes.count)
            }
            return
        }
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count + 16)
        bytes.withUnsafeBytes { HTTP1Serializer.chunk($0, into: &out) }
        socket.write(out)
        if socket.pendingWriteBytes == 0 {
            req.onSent?(bytes.count)
        } else {
            uncredited += bytes.count
        }
    }

    func endBody(_ req: ClientRequest) {
        guard current === req else { return }
        if !headWritten {
            req.pendingEnd = true
            return
        }
        if bodyEnded || !chunked { return }
        bodyEnded = true
        var out: [UInt8] = []
        HTTP1Serializer.lastChunk(trailers: HTTPHeaders(), into: &out)
        socket.write(out)
        maybeDone()
    }

    func consumed(_ req: ClientRequest, bytes: Int) {
        guard current === req, pausedForReader else { return }
        if let call = req.sink as? HTTPClientCall, call.queuedBytes > HTTPClientCall.highWater / 2 { return }
        pausedForReader = false
        socket.setReadPaused(false)
    }

    func abort(_ req: ClientRequest, _ error: HTTPError) {
        guard current === req else { return }
        current = nil
        socket.closeNow(error)
    }

    func connectionReceived(_ bytes: UnsafeRawBufferPointer) {
        guard current != nil else {
            // Bytes with no request outstanding: the peer is confused; drop the connection.
            socket.closeNow(HTTPError(.protocolError, "unexpected data from \(endpoint.description)"))
            return
        }
        do {
            let events = try parser.feed(bytes)
            for ev in events { handle(ev) }
        } catch {
            let msg = (error as? HTTP1ParseError)?.message ?? "malformed response"
            fail(HTTPError(.protocolError, "malformed HTTP/1.1 response from \(endpoint.description): \(msg)"))
            socket.closeNow(nil)
        }
    }

    private func handle(_ ev: HTTP1ParseEvent) {
        guard let req = current else { return }
        switch ev {
        case .responseHead(let h):
            responseStarted = true
            if h.status >= 100 && h.status < 200 { return }
            keepAlive = h.keepAlive
            req.head(h.status, h.headers)
        case .body(let b):
            let behind = b.withUnsafeBytes { req.data($0) }
            if behind && !pausedForReader {
                pausedForReader = true
                socket.setReadPaused(true)
            }
        case .end(let trailers):
            responseEnded = true
            req.end(trailers, loop: loop)
            if !bodyEnded {
                // The server answered before the request body ended: this connection cannot be reused.
                keepAlive = false
                if let call = req.sink as? HTTPClientCall { _ = call }
            }
            maybeDone()
        case .requestHead:
            break
        }
    }

    private func maybeDone() {
        guard let req = current, responseEnded else { return }
        if !bodyEnded && chunked {
            current = nil
            socket.closeNow(nil)
            return
        }
        current = nil
        req.onSent?(uncredited)
        uncredited = 0
        if pausedForReader {
            pausedForReader = false
            socket.setReadPaused(false)
        }
        if keepAlive && !socket.isClosed, let owner {
            owner.h1Idle(self)
        } else {
            socket.closeNow(nil)
        }
    }

    private func fail(_ e: HTTPError) {
        guard let req = current else { return }
        current = nil
        req.fail(e, loop: loop)
    }

    func connectionClosed(_ error: HTTPError?) {
        if let req = current, req.onReusedConnection, !responseStarted, req.canRetry, let owner {
            // The server closed this keep-alive connection as we reused it: it never saw the request.
            current = nil
            owner.h1Closed(self)
            owner.retry(req)
            return
        }
        if current != nil {
            if let events = try? parser.finish() {
                for ev in events { handle(ev) }
            }
            let msg = error.map { "connection to \(endpoint.description) failed: \($0.message)" }
                ?? "connection to \(endpoint.description) closed before the response was complete"
            fail(HTTPError(error?.kind == .tls ? .tls : .io, msg))
        }
        owner?.h1Closed(self)
    }

    func connectionDrained() {
        if uncredited > 0, let req = current {
            let n = uncredited
            uncredited = 0
            req.onSent?(n)
        }
    }
}
