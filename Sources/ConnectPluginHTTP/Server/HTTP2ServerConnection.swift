// HTTP/2 (h2c prior knowledge) server side of one connection: streams become exchanges once their
// request is complete (or as soon as the body passes the limit); responses go out through nghttp2.

final class HTTP2ServerConnection: ConnectionDelegate, ServerConnectionProtocol, H2SessionDelegate {
    let socket: SocketConnection
    let server: HTTPServer
    var loop: EventLoop { socket.loop }
    private var session: H2Session?

    private final class Stream {
        var headers = HTTPHeaders()
        var method = ""
        var path = ""
        var authority: String?
        var body: [UInt8] = []
        var tooLarge = false
        var headerBytes = 0
        var exchange: HTTPServerExchange?
    }
    private var streams: [Int32: Stream] = [:]
    private var closing = false
    private let inFlightLock = Lock()
    private var inFlightCount = 0
    private var idleTimer: TimerHandle?

    init?(socket: SocketConnection, server: HTTPServer) {
        self.socket = socket
        self.server = server
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

    private func flushOrClose() {
        guard let session else { return }
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
        guard let st = streams[id], st.exchange == nil else { return }
        st.headerBytes += name.utf8.count + value.utf8.count + 32
        if st.headerBytes > server.config.maxHeaderBytes {
            session?.resetStream(id, errorCode: 11)  // ENHANCE_YOUR_CALM
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

    func h2HeadersComplete(stream: Int32, endStream: Bool) {
        if endStream { dispatch(stream) }
    }

    func h2Data(stream id: Int32, bytes: UnsafeRawBufferPointer) {
        guard let st = streams[id], st.exchange == nil else { return }
        let limit = server.config.maxBodyBytes
        if limit > 0 && st.body.count + bytes.count > limit {
            st.tooLarge = true
            dispatch(id)
            return
        }
        st.body.append(contentsOf: bytes)
    }

    func h2EndStream(stream: Int32) { dispatch(stream) }

    private func dispatch(_ id: Int32) {
        guard let st = streams[id], st.exchange == nil else { return }
        if st.method.isEmpty || st.path.isEmpty {
            session?.resetStream(id, errorCode: 1)  // PROTOCOL_ERROR
            return
        }
        let req = HTTPRequest(method: st.method, target: st.path, authority: st.authority, headers: st.headers,
                              body: st.body, bodyTooLarge: st.tooLarge, version: .http2)
        st.body = []
        setInFlight(1)
        let ex = HTTPServerExchange(request: req, loop: loop) { [weak self] response in
            self?.send(response, stream: id)
        }
        st.exchange = ex
        server.handler.handle(ex)
    }

    private func send(_ response: HTTPResponse, stream id: Int32) {
        guard let st = streams[id], st.exchange != nil, let session else { return }
        setInFlight(-1)
        st.exchange = nil
        streams[id] = nil
        if !session.submitResponse(stream: id, status: response.status, headers: response.headers, body: response.body, trailers: response.trailers) {
            session.resetStream(id, errorCode: 2)  // INTERNAL_ERROR
        }
        flushOrClose()
    }

    func h2StreamClosed(stream id: Int32, errorCode: UInt32) {
        guard let st = streams.removeValue(forKey: id) else { return }
        if let ex = st.exchange {
            setInFlight(-1)
            ex.cancel()
        }
        if closing && streams.isEmpty { socket.closeAfterFlush() }
    }

    func h2GoAway(lastStreamID: Int32, errorCode: UInt32) {}

    // MARK: ConnectionDelegate

    func connectionClosed(_ error: HTTPError?) {
        if let t = idleTimer { loop.cancel(t) }
        let all = streams
        streams.removeAll()
        for (_, st) in all {
            if let ex = st.exchange {
                setInFlight(-1)
                ex.cancel()
            }
        }
        session?.destroy()
        session = nil
        server.unregister(self)
    }

    func connectionDrained() {}

    func beginGracefulClose() {
        closing = true
        session?.goAway()
        flushOrClose()
    }

    func forceClose() {
        socket.closeNow(HTTPError(.closed, "server stopped"))
    }
}
