// HTTP/1.1 server side of one connection: keep-alive, Content-Length and chunked bodies streamed
// both ways, pipelined requests answered in order (one in flight at a time), 100-continue, limits.
//
// A request is handed to the handler as soon as its head arrives; its body streams into the
// HTTPServerStream (reading pauses while the handler is behind). The response may start before the
// request body ended (half-duplex or full-duplex on one connection). Requests that arrive while one
// is in flight wait (parsed events are kept in order, and reading pauses).

final class HTTP1ServerConnection: ConnectionDelegate, ServerConnectionProtocol, HTTPServerStreamTransport {
    let socket: any ByteStreamConnection
    let server: HTTPServer
    var loop: EventLoop { socket.loop }
    private let peer: HTTPPeerInfo?
    private var parser: HTTP1Parser
    /// Events of requests after the current one.
    private var backlog: [HTTP1ParseEvent] = []
    private var current: HTTPServerStream?
    private var currentKeepAlive = true
    private var currentHTTP10 = false
    private var inputDone = false
    /// The handler gave up on the request body (too large): close after the response.
    private var inputAbandoned = false
    private var responded = false
    private var responseStarted = false
    private var chunkedResponse = false
    private var pausedForReader = false
    private var uncredited = 0
    private var closing = false
    private var failed = false
    private var idleTimer: TimerHandle?
    private let inFlightLock = Lock()
    private var inFlightCount = 0

    private let connection: HTTPConnectionInfo?

    init(socket: any ByteStreamConnection, server: HTTPServer, peer: HTTPPeerInfo? = nil, connection: HTTPConnectionInfo? = nil) {
        self.connection = connection
        self.socket = socket
        self.server = server
        self.peer = peer
        parser = HTTP1Parser(kind: .request, maxHeaderBytes: server.config.maxHeaderBytes)
        armIdleTimer()
    }

    var hasInFlight: Bool { inFlightLock.withLock { inFlightCount > 0 } }

    private func setInFlight(_ delta: Int) { inFlightLock.withLock { inFlightCount += delta } }

    private func armIdleTimer() {
        if let t = idleTimer { loop.cancel(t) }
        idleTimer = loop.schedule(afterNs: server.config.idleTimeoutNs) { [weak self] in
            guard let self else { return }
            if self.current == nil && self.backlog.isEmpty {
                self.socket.closeNow(HTTPError(.timeout, "idle timeout"))
            } else {
                self.armIdleTimer()
            }
        }
    }

    func connectionReceived(_ bytes: UnsafeRawBufferPointer) {
        if failed || closing && current == nil { return }
        armIdleTimer()
        let events: [HTTP1ParseEvent]
        do {
            events = try parser.feed(bytes)
        } catch let e as HTTP1ParseError {
            fail(e)
            return
        } catch {
            fail(HTTP1ParseError(status: 400, message: "bad request"))
            return
        }
        for ev in events {
            if failed || socket.isClosed { return }
            process(ev)
        }
    }

    private func process(_ ev: HTTP1ParseEvent) {
        if !backlog.isEmpty || (current != nil && inputDone) {
            backlog.append(ev)
            socket.setReadPaused(true)
            return
        }
        switch ev {
        case .requestHead(let h):
            if closing { return }
            start(h)
        case .body(let chunk):
            guard let s = current, !inputDone else { return }
            if responded || inputAbandoned { return }
            let behind = chunk.withUnsafeBytes { s.deliver($0) }
            if behind && !pausedForReader {
                pausedForReader = true
                socket.setReadPaused(true)
            }
        case .end(let trailers):
            guard let s = current, !inputDone else { return }
            inputDone = true
            if responded {
                advance()
            } else if !inputAbandoned {
                s.deliverEnd(trailers)
            }
        case .responseHead:
            break
        }
    }

    private func start(_ h: HTTP1RequestHead) {
        if let expect = h.headers.first("expect"), asciiLowercased(expect) == "100-continue" {
            socket.write(Array("HTTP/1.1 100 Continue\r\n\r\n".utf8))
        }
        let req = HTTPRequest(method: h.method, target: h.target, authority: h.headers.first("host"), headers: h.headers,
                              version: .http1_1, peer: peer, connection: connection)
        let s = HTTPServerStream(request: req, loop: loop, transport: self)
        current = s
        currentKeepAlive = h.keepAlive
        currentHTTP10 = h.versionMinor == 0
        inputDone = false
        inputAbandoned = false
        responded = false
        responseStarted = false
        chunkedResponse = false
        uncredited = 0
        setInFlight(1)
        server.handler.handle(s)
    }

    /// The current exchange is over in both directions: go on with the next request, or close.
    private func advance() {
        current = nil
        if !currentKeepAlive || closing {
            closing = true
            socket.closeAfterFlush()
            return
        }
        if pausedForReader {
            pausedForReader = false
        }
        let events = backlog
        backlog = []
        for ev in events {
            if failed || socket.isClosed { return }
            process(ev)
        }
        if backlog.isEmpty && !pausedForReader { socket.setReadPaused(false) }
    }

    private func fail(_ e: HTTP1ParseError) {
        failed = true
        socket.setReadPaused(true)
        if let s = current, !responded {
            responded = true
            setInFlight(-1)
            s.cancel(HTTPError(.protocolError, "malformed request: \(e.message)"))
        }
        if !responseStarted {
            var headers = HTTPHeaders()
            headers.add("content-type", "text/plain; charset=utf-8")
            headers.add("connection", "close")
            let msg = Array((e.message + "\n").utf8)
            headers.add("content-length", String(msg.count))
            var out: [UInt8] = []
            HTTP1Serializer.responseHead(status: e.status, headers: headers, into: &out)
            out.append(contentsOf: msg)
            socket.write(out)
        }
        current = nil
        backlog.removeAll()
        socket.lingerClose()
    }

    // MARK: HTTPServerStreamTransport

    private func isCurrent(_ s: HTTPServerStream) -> Bool { current === s && !responded && !socket.isClosed }

    private func cleanHeaders(_ h: HTTPHeaders) -> HTTPHeaders {
        var headers = h
        headers.remove("content-length")
        headers.remove("transfer-encoding")
        headers.remove("connection")
        return headers
    }

    /// Keep the connection only if the request will have been read to its end.
    private var keepAliveAfterResponse: Bool { currentKeepAlive && !closing && !inputAbandoned }

    func streamRespond(_ s: HTTPServerStream, _ response: HTTPResponse) {
        guard isCurrent(s) else { return }
        var headers = cleanHeaders(response.headers)
        let chunked = !response.trailers.isEmpty && !currentHTTP10
        if chunked {
            headers.add("transfer-encoding", "chunked")
            var names: [String] = []
            for (n, _) in response.trailers where !names.contains(n) { names.append(n) }
            headers.add("trailer", names.joined(separator: ", "))
        } else {
            headers.add("content-length", String(response.body.count))
        }
        if !keepAliveAfterResponse { headers.add("connection", "close") }
        var out: [UInt8] = []
        out.reserveCapacity(256 + response.body.count)
        HTTP1Serializer.responseHead(status: response.status, headers: headers, into: &out)
        if chunked {
            response.body.withUnsafeBytes { HTTP1Serializer.chunk($0, into: &out) }
            HTTP1Serializer.lastChunk(trailers: response.trailers, into: &out)
        } else {
            out.append(contentsOf: response.body)
        }
        responseStarted = true
        socket.write(out)
        responseDone()
    }

    func streamSendHead(_ s: HTTPServerStream, status: Int, headers h: HTTPHeaders, endStream: Bool) {
        guard isCurrent(s) else { return }
        var headers = cleanHeaders(h)
        if endStream {
            headers.add("content-length", "0")
        } else if currentHTTP10 {
            currentKeepAlive = false  // the body ends when the connection closes
        } else {
            headers.add("transfer-encoding", "chunked")
            chunkedResponse = true
        }
        if !keepAliveAfterResponse || (endStream && !inputDone && !currentKeepAlive) { headers.add("connection", "close") }
        var out: [UInt8] = []
        HTTP1Serializer.responseHead(status: status, headers: headers, into: &out)
        responseStarted = true
        socket.write(out)
        if endStream { responseDone() }
    }

    func streamWrite(_ s: HTTPServerStream, _ bytes: [UInt8]) {
        guard isCurrent(s) else {
            s.consumedOutbound(bytes.count)
            return
        }
        if chunkedResponse {
            var out: [UInt8] = []
            out.reserveCapacity(bytes.count + 16)
            bytes.withUnsafeBytes { HTTP1Serializer.chunk($0, into: &out) }
            socket.write(out)
        } else {
            socket.write(bytes)
        }
        if socket.pendingWriteBytes == 0 {
            s.consumedOutbound(bytes.count)
        } else {
            uncredited += bytes.count
        }
    }

    func streamFinish(_ s: HTTPServerStream, trailers: HTTPHeaders) {
        guard isCurrent(s) else { return }
        if chunkedResponse {
            var out: [UInt8] = []
            HTTP1Serializer.lastChunk(trailers: trailers, into: &out)
            socket.write(out)
        }
        responseDone()
    }

    func streamReset(_ s: HTTPServerStream) {
        guard isCurrent(s) else { return }
        socket.closeNow(HTTPError(.canceled, "the handler reset the stream"))
    }

    func streamConsumed(_ s: HTTPServerStream, bytes: Int) {
        guard current === s, pausedForReader else { return }
        if s.inboundQueuedBytes <= HTTPServerStream.highWater / 2 {
            pausedForReader = false
            if backlog.isEmpty { socket.setReadPaused(false) }
        }
    }

    func streamAbandonInput(_ s: HTTPServerStream) {
        guard current === s else { return }
        inputAbandoned = true
    }

    private func responseDone() {
        guard let s = current else { return }
        responded = true
        setInFlight(-1)
        if uncredited > 0 {
            s.consumedOutbound(uncredited)
            uncredited = 0
        }
        if !currentKeepAlive && !chunkedResponse && currentHTTP10 {
            // HTTP/1.0 close-delimited body.
        }
        if inputAbandoned || (!keepAliveAfterResponse && !inputDone) {
            // The request was not read to its end: let the peer finish sending before closing, so
            // that it reads this response instead of a reset.
            closing = true
            current = nil
            socket.lingerClose()
            return
        }
        if inputDone {
            advance()
        } else if pausedForReader {
            // Keep reading (and dropping) the rest of the request body.
            pausedForReader = false
            if backlog.isEmpty { socket.setReadPaused(false) }
        }
    }

    func connectionClosed(_ error: HTTPError?) {
        if let t = idleTimer { loop.cancel(t) }
        if let s = current {
            current = nil
            if !responded {
                responded = true
                setInFlight(-1)
            }
            s.cancel(error ?? HTTPError(.io, "the client closed the connection"))
        }
        backlog.removeAll()
        server.unregister(self)
    }

    func connectionDrained() {
        if uncredited > 0, let s = current {
            let n = uncredited
            uncredited = 0
            s.consumedOutbound(n)
        }
    }

    func beginGracefulClose() {
        closing = true
        if current == nil {
            backlog.removeAll()
            socket.closeAfterFlush()
        }
    }

    func forceClose() {
        socket.closeNow(HTTPError(.closed, "server stopped"))
    }
}
