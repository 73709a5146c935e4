// The client side of one HTTP/2 connection: requests become nghttp2 streams on an H2Session over a
// byte-stream connection (socket, TLS or in-memory pipe); response events go to each request's sink.
// Loop-thread state, except while a blocking unary caller drives the connection on its own thread:
// see H2ClientConnection+CallerDriven.swift.
import CConnectPluginPosix

final class H2ClientConnection: ConnectionDelegate, H2SessionDelegate, ClientConnection {
    let socket: any ByteStreamConnection
    /// Weak: a connection may outlive its client (a call still finishing when the host frees it).
    weak var owner: HTTPClient?
    let loop: EventLoop
    let endpoint: HTTPEndpoint
    let scheme: String
    var session: H2Session?
    var connecting = true
    var pending: [ClientRequest] = []
    var goingAway = false
    var dead = false

    private final class Stream {
        let req: ClientRequest
        var status = 0
        var headers = HTTPHeaders()
        var trailers = HTTPHeaders()
        var headComplete = false
        init(req: ClientRequest) { self.req = req }
    }
    private var streams: [Int32: Stream] = [:]
    var ids: [ObjectIdentifier: Int32] = [:]
    var streamCount: Int { streams.count }

    // Who drives the connection (H2ClientConnection+CallerDriven.swift). Under `ownLock`:
    let ownLock = Lock()
    /// A caller's thread owns the connection: the loop keeps out (its work is queued).
    var callerOwned = false
    /// The loop is inside the connection's code (nested entries count).
    var loopDepth = 0
    /// Set by whoever leaves the connection: established, usable, nothing in flight or queued.
    var idleForCaller = false
    /// Loop work that came while a caller owned the connection; runs once it is handed back.
    var queuedWhileOwned: [() -> Void] = []
    /// Wakes the owning caller's poll(2) when loop work is queued (created on first use).
    var wakeFD: Int32 = -1
    var wakeSignaled = false
    // The owning caller's state (touched only by the thread that owns the connection):
    /// True while a caller's thread drives the connection; work that belongs to the loop (closing
    /// the socket, the client's bookkeeping) is kept in `afterRelease` then.
    var callerDriving = false
    var afterRelease: [() -> Void] = []
    var lentSocket: SocketConnection?
    var callerFD: Int32 = -1
    var callerOut: [UInt8] = []
    var callerOutOffset = 0
    var callerReadBuffer: [UInt8] = []
    var callerError: HTTPError?

    init(socket: any ByteStreamConnection, client: HTTPClient) {
        self.socket = socket
        owner = client
        loop = client.loop
        endpoint = client.endpoint
        scheme = client.scheme
        (socket as? SocketConnection)?.eventGate = self
    }

    deinit {
        if wakeFD >= 0 { _ = cp_close(wakeFD) }
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
        if !session.flush() { onLoopSide { [self] in socket.closeAfterFlush() } }
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
        onLoopSide { [self] in owner?.h2Finished(self) }
    }

    func connectionReceived(_ bytes: UnsafeRawBufferPointer) {
        guard let session else { return }
        if !session.receive(bytes) {
            fail(all: HTTPError(.protocolError, "HTTP/2 protocol error from \(endpoint.description)"))
            onLoopSide { [self] in socket.closeAfterFlush() }
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
        onLoopSide { [self] in owner?.h2Finished(self) }
        for (id, st) in streams where id > lastStreamID {
            streams[id] = nil
            ids[ObjectIdentifier(st.req)] = nil
            if st.req.canRetry, owner != nil {
                let req = st.req
                onLoopSide { [self] in
                    // Not processed: safe to send on a new connection.
                    if let owner { owner.retry(req) } else { req.fail(HTTPError(.closed, "the client was closed"), loop: loop) }
                }
            } else {
                st.req.fail(HTTPError(.refused, "\(endpoint.description) is going away; the request was not processed"), loop: loop)
            }
        }
    }
}
