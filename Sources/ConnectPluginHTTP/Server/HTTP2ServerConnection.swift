// HTTP/2 (h2c prior knowledge, or TLS with ALPN h2) server side of one connection. Each stream is
// handed to the server's handler as soon as its request head arrives; the body streams in with
// flow-control back-pressure and the response streams out through nghttp2's deferred data provider.

final class HTTP2ServerConnection: ConnectionDelegate, ServerConnectionProtocol, H2SessionDelegate, HTTPServerStreamTransport {
    let socket: any ByteStreamConnection
    let server: HTTPServer
    var loop: EventLoop { socket.loop }
    private var session: H2Session?
    private let peer: HTTPPeerInfo?

    private final class Stream {
        var headers = HTTPHeaders()
        var trailers = HTTPHeaders()
        var method = ""
        var path = ""
        var authority: String?
        var headerBytes = 0
        var stream: HTTPServerStream?
        var responseDone = false
        /// The client sent END_STREAM.
        var requestEnded = false
        /// An early complete response held until the (small, declared) request body has arrived.
        var deferred: HTTPResponse?
        var deferTimer: TimerHandle?
    }
    /// An early response (one given before the request body ended) waits up to this long for a body
    /// of at most `earlyResponseMaxBody` declared bytes to finish: like nginx's discarding of an
    /// unread body. RFC 9113 allows answering at once, but HTTP/2 clients that write headers and body
    /// separately (curl 7.x) then hang or fail when the response overtakes their upload.
    static let earlyResponseWaitNs: UInt64 = 1_000_000_000
    static let earlyResponseMaxBody = 64 << 10
    private var streams: [Int32: Stream] = [:]
    private var closing = false
    private let inFlightLock = Lock()
    private var inFlightCount = 0
    private var idleTimer: TimerHandle?

    private let connection: HTTPConnectionInfo?

    init?(socket: any ByteStreamConnection, server: HTTPServer, peer: HTTPPeerInfo? = nil, connection: HTTPConnectionInfo? = nil) {
        self.connection = connection
        self.socket = socket
        self.server = server
        self.peer = peer
        guard let s = H2Session(isServer: true, socket: socket, delegate: self) else { return nil }
        session = s
        armIdleTimer()
    }

    var hasInFlight: Bool { inFlightLock.withLock { inFlightCount > 0 } }
    private func setInFlight(_ delta: Int) { inFlightLock.withLock { inFlightCount += delta } }

    private func armIdleTimer() {
        if let t = idleTimer { loop.cancel(t) }
        idleTimer = loop.schedule(afterNs: server.config.idleTimeoutNs) { [weak self] in
            guard let self else { return }
            if self.streams.isEmpty {
                self.session?.goAway()
                self.flushOrClose()
                self.socket.closeAfterFlush()
            } else {
                self.armIdleTimer()
            }
        }
    }

    func connectionReceived(_ bytes: UnsafeRawBufferPointer) {
        guard let session else { return }
        armIdleTimer()
        if !session.receive(bytes) {
            socket.closeAfterFlush()
            return
        }
        flushOrClose()
    }

    private var flushScheduled = false

    /// Flushes once at the end of this loop iteration: the responses that handler threads hand to
    /// the loop in one iteration go out in one write (and one mem_send pass), not one each.
    private func scheduleFlush() {
        if !loop.inEventLoop {
            flushOrClose()
            return
        }
        // Inside receive (an inline handler answered): connectionReceived flushes when it returns.
        if flushScheduled || session?.isReceiving == true { return }
        flushScheduled = true
        loop.executeAtEndOfIteration { [weak self] in
            guard let self else { return }
            self.flushScheduled = false
            self.flushOrClose()
        }
    }

    private func flushOrClose() {
        guard let session, !session.isBusy else { return }
        if !session.flush() {
            socket.closeAfterFlush()
        } else if closing && streams.isEmpty {
            socket.closeAfterFlush()
        }
    }

    // MARK: H2SessionDelegate

    func h2BeginHeaders(stream: Int32) {
        if streams[stream] == nil {
            if closing {
                session?.resetStream(stream, errorCode: 7)  // REFUSED_STREAM
                return
            }
            streams[stream] = Stream()
        }
    }

    func h2Header(stream id: Int32, name: String, value: String) {
        guard let st = streams[id] else { return }
        st.headerBytes += name.utf8.count + value.utf8.count + 32
        if st.headerBytes > server.config.maxHeaderBytes {
            reset(id, st, code: 11)  // ENHANCE_YOUR_CALM
            return
        }
        if st.stream != nil {
            // A trailer block.
            if !name.hasPrefix(":") { st.trailers.add(name, value) }
            return
        }
        switch name {
        case ":method": st.method = value
        case ":path": st.path = value
        case ":authority": st.authority = value
        case ":scheme": break
        default:
            if !name.hasPrefix(":") { st.headers.add(name, value) }
        }
    }

    func h2HeadersComplete(stream id: Int32, endStream: Bool) {
        guard let st = streams[id] else { return }
        if st.stream == nil {
            if st.method.isEmpty || st.path.isEmpty {
                reset(id, st, code: 1)  // PROTOCOL_ERROR
                return
            }
            let req = HTTPRequest(method: st.method, target: st.path, authority: st.authority, headers: st.headers,
                                  version: .http2, peer: peer, connection: connection)
            st.headers = HTTPHeaders()
            let s = HTTPServerStream(request: req, loop: loop, transport: self, tag: id)
            st.stream = s
            setInFlight(1)
            st.requestEnded = endStream
            if endStream { s.deliverEnd(HTTPHeaders()) }
            server.handler.handle(s)
        } else if endStream {
            requestEnded(id, st)
        }
    }

    func h2Data(stream id: Int32, bytes: UnsafeRawBufferPointer) {
        guard let st = streams[id], let s = st.stream else { return }
        _ = s.deliver(bytes)
        if st.responseDone || s.consumesOnArrival { session?.consume(stream: id, bytes.count) }
    }

    func h2EndStream(stream id: Int32) {
        guard let st = streams[id] else { return }
        requestEnded(id, st)
    }

    private func requestEnded(_ id: Int32, _ st: Stream) {
        st.requestEnded = true
        st.stream?.deliverEnd(st.trailers)
        sendDeferred(id, st)
    }

    /// Submits a held early response (inside an nghttp2 callback too: flushed after it returns).
    private func sendDeferred(_ id: Int32, _ st: Stream) {
        guard let response = st.deferred, let session else { return }
        st.deferred = nil
        if let t = st.deferTimer { loop.cancel(t) }
        st.deferTimer = nil
        if !session.submitResponse(stream: id, status: response.status, headers: response.headers, body: response.body, trailers: response.trailers) {
            session.resetStream(id, errorCode: 2)  // INTERNAL_ERROR
        }
    }

    private func reset(_ id: Int32, _ st: Stream, code: UInt32) {
        session?.resetStream(id, errorCode: code)
        if let s = st.stream, !st.responseDone {
            st.responseDone = true
            setInFlight(-1)
            s.cancel(HTTPError(.protocolError, "stream reset (HTTP/2 error code \(code))"))
        }
        streams[id] = nil
    }

    func h2StreamClosed(stream id: Int32, errorCode: UInt32) {
        guard let st = streams.removeValue(forKey: id) else { return }
        if let t = st.deferTimer { loop.cancel(t) }
        if let s = st.stream {
            if !st.responseDone {
                st.responseDone = true
                setInFlight(-1)
            }
            let kind: HTTPError.Kind = errorCode == 8 ? .canceled : .io
            s.cancel(HTTPError(kind, errorCode == 0 ? "stream closed" : "the client reset the stream (HTTP/2 error code \(errorCode))"))
        }
        // Closing when the last stream is gone happens in flushOrClose, after nghttp2 returns.
    }

    func h2GoAway(lastStreamID: Int32, errorCode: UInt32) {}

    // MARK: HTTPServerStreamTransport

    private func live(_ s: HTTPServerStream) -> Stream? {
        guard let st = streams[s.tag], st.stream === s, session != nil else { return nil }
        return st
    }

    private func responseFinished(_ st: Stream, _ s: HTTPServerStream) {
        if st.responseDone { return }
        st.responseDone = true
        setInFlight(-1)
        // The request body is no longer needed: stop holding its window closed.
        let queued = s.inboundQueuedBytes
        if queued > 0 { session?.consume(stream: s.tag, queued) }
    }

    func streamRespond(_ s: HTTPServerStream, _ response: HTTPResponse) {
        guard let st = live(s), let session else { return }
        responseFinished(st, s)
        if !st.requestEnded, st.deferred == nil, let cl = s.request.headers.first("content-length"),
           let n = Int(cl), n >= 0, n <= HTTP2ServerConnection.earlyResponseMaxBody {
            // Read (and discard) the rest of a small body first; see earlyResponseWaitNs.
            st.deferred = response
            let id = s.tag
            st.deferTimer = loop.schedule(afterNs: HTTP2ServerConnection.earlyResponseWaitNs) { [weak self, weak st] in
                guard let self, let st, self.streams[id] === st else { return }
                st.deferTimer = nil
                self.sendDeferred(id, st)
                self.flushOrClose()
            }
            return
        }
        if !session.submitResponse(stream: s.tag, status: response.status, headers: response.headers, body: response.body, trailers: response.trailers) {
            session.resetStream(s.tag, errorCode: 2)  // INTERNAL_ERROR
        }
        scheduleFlush()
    }

    func streamSendHead(_ s: HTTPServerStream, status: Int, headers: HTTPHeaders, endStream: Bool) {
        guard let st = live(s), let session else { return }
        if endStream { responseFinished(st, s) }
        let ok = session.submitResponseHead(stream: s.tag, status: status, headers: headers, endStream: endStream) { [weak s] n in
            s?.consumedOutbound(n)
        }
        if !ok { session.resetStream(s.tag, errorCode: 2) }
        scheduleFlush()
    }

    func streamWrite(_ s: HTTPServerStream, _ bytes: [UInt8]) {
        guard live(s) != nil, let session else {
            s.consumedOutbound(bytes.count)
            return
        }
        session.send(stream: s.tag, bytes)
        scheduleFlush()
    }

    func streamFinish(_ s: HTTPServerStream, trailers: HTTPHeaders) {
        guard let st = live(s), let session else { return }
        responseFinished(st, s)
        session.end(stream: s.tag, trailers: trailers.entries.map { ($0.name, $0.value) })
        scheduleFlush()
    }

    func streamReset(_ s: HTTPServerStream) {
        guard let st = live(s), let session else { return }
        responseFinished(st, s)
        session.resetStream(s.tag, errorCode: 8)  // CANCEL
        scheduleFlush()
    }

    func streamConsumed(_ s: HTTPServerStream, bytes: Int) {
        guard let st = live(s), !st.responseDone else { return }
        session?.consume(stream: s.tag, bytes)
        scheduleFlush()
    }

    func streamAbandonInput(_ s: HTTPServerStream) {
        guard live(s) != nil else { return }
        // Keep reading (and discarding) so the connection's other streams are not stalled.
        let queued = s.inboundQueuedBytes
        if queued > 0 { session?.consume(stream: s.tag, queued) }
    }

    // MARK: ConnectionDelegate

    func connectionClosed(_ error: HTTPError?) {
        if let t = idleTimer { loop.cancel(t) }
        let all = streams
        streams.removeAll()
        for (_, st) in all {
            if let t = st.deferTimer { loop.cancel(t) }
            if let s = st.stream {
                if !st.responseDone {
                    st.responseDone = true
                    setInFlight(-1)
                }
                s.cancel(HTTPError(.io, "the connection closed"))
            }
        }
        session?.destroy()
        session = nil
        server.unregister(self)
    }

    func connectionDrained() {
        // mem_send stopped at the socket high-water mark: continue.
        if session != nil { flushOrClose() }
    }

    func beginGracefulClose() {
        closing = true
        session?.goAway()
        flushOrClose()
    }

    func forceClose() {
        socket.closeNow(HTTPError(.closed, "server stopped"))
    }
}
