// HTTP/1.1 server side of one connection: keep-alive, Content-Length and chunked bodies, pipelined
// requests answered in order (one in flight at a time), 100-continue, limits.

final class HTTP1ServerConnection: ConnectionDelegate, ServerConnectionProtocol {
    let socket: SocketConnection
    let server: HTTPServer
    var loop: EventLoop { socket.loop }
    private var parser: HTTP1Parser
    private enum Item {
        case request(HTTPRequest, keepAlive: Bool)
        case parseError(HTTP1ParseError)
    }
    private var queue: [Item] = []
    // The request being received.
    private var head: HTTP1RequestHead?
    private var body: [UInt8] = []
    private var tooLarge = false
    private var discardingRest = false
    private var current: HTTPServerExchange?
    private var closing = false
    private var idleTimer: TimerHandle?
    private let inFlightLock = Lock()
    private var inFlightCount = 0

    init(socket: SocketConnection, server: HTTPServer) {
        self.socket = socket
        self.server = server
        parser = HTTP1Parser(kind: .request, maxHeaderBytes: server.config.maxHeaderBytes)
        armIdleTimer()
    }

    var hasInFlight: Bool { inFlightLock.withLock { inFlightCount > 0 } }

    private func setInFlight(_ delta: Int) { inFlightLock.withLock { inFlightCount += delta } }

    private func armIdleTimer() {
        if let t = idleTimer { loop.cancel(t) }
        idleTimer = loop.schedule(afterNs: server.config.idleTimeoutNs) { [weak self] in
            guard let self else { return }
            if self.current == nil && self.queue.isEmpty {
                self.socket.closeNow(HTTPError(.timeout, "idle timeout"))
            } else {
                self.armIdleTimer()
            }
        }
    }

    func connectionReceived(_ bytes: UnsafeRawBufferPointer) {
        if discardingRest || closing { return }
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
            if discardingRest { break }
            handle(ev)
        }
        dispatchNext()
    }

    private func fail(_ e: HTTP1ParseError) {
        discardingRest = true
        socket.setReadPaused(true)
        queue.append(.parseError(e))
        dispatchNext()
    }

    private func handle(_ ev: HTTP1ParseEvent) {
        switch ev {
        case .requestHead(let h):
            head = h
            body = []
            tooLarge = false
            let limit = server.config.maxBodyBytes
            if let cl = h.headers.first("content-length"), let n = Int(cl), limit > 0, n > limit {
                tooLarge = true
                completeTooLarge()
                return
            }
            if let expect = h.headers.first("expect"), asciiLowercased(expect) == "100-continue" {
                socket.write(Array("HTTP/1.1 100 Continue\r\n\r\n".utf8))
            }
        case .body(let chunk):
            if tooLarge { return }
            let limit = server.config.maxBodyBytes
            if limit > 0 && body.count + chunk.count > limit {
                tooLarge = true
                completeTooLarge()
                return
            }
            body.append(contentsOf: chunk)
        case .end:
            guard let h = head else { return }
            head = nil
            let req = HTTPRequest(method: h.method, target: h.target, authority: h.headers.first("host"),
                                  headers: h.headers, body: body, bodyTooLarge: false, version: .http1_1)
            body = []
            queue.append(.request(req, keepAlive: h.keepAlive))
        case .responseHead:
            break
        }
    }

    /// A body over the limit: answer now without reading the rest, then close the connection.
    private func completeTooLarge() {
        guard let h = head else { return }
        head = nil
        let req = HTTPRequest(method: h.method, target: h.target, authority: h.headers.first("host"),
                              headers: h.headers, body: body, bodyTooLarge: true, version: .http1_1)
        body = []
        discardingRest = true
        queue.append(.request(req, keepAlive: false))
    }

    private func dispatchNext() {
        if current != nil || socket.isClosed || queue.isEmpty { return }
        let item = queue.removeFirst()
        switch item {
        case .parseError(let e):
            var headers = HTTPHeaders()
            headers.add("content-type", "text/plain; charset=utf-8")
            headers.add("connection", "close")
            let msg = Array((e.message + "\n").utf8)
            headers.add("content-length", String(msg.count))
            var out: [UInt8] = []
            HTTP1Serializer.responseHead(status: e.status, headers: headers, into: &out)
            out.append(contentsOf: msg)
            socket.write(out)
            socket.lingerClose()
            queue.removeAll()
        case .request(let req, let keepAlive):
            setInFlight(1)
            let loop = self.loop
            let ex = HTTPServerExchange(request: req, loop: loop) { [weak self] response in
                self?.send(response, keepAlive: keepAlive && !(self?.closing ?? true))
            }
            current = ex
            server.handler.handle(ex)
        }
    }

    private func send(_ response: HTTPResponse, keepAlive: Bool) {
        guard current != nil else { return }
        current = nil
        setInFlight(-1)
        if socket.isClosed { return }
        var headers = response.headers
        headers.remove("content-length")
        headers.remove("transfer-encoding")
        headers.remove("connection")
        let chunked = !response.trailers.isEmpty
        if chunked {
            headers.add("transfer-encoding", "chunked")
            var names: [String] = []
            for (n, _) in response.trailers where !names.contains(n) { names.append(n) }
            headers.add("trailer", names.joined(separator: ", "))
        } else {
            headers.add("content-length", String(response.body.count))
        }
        if !keepAlive { headers.add("connection", "close") }
        var out: [UInt8] = []
        out.reserveCapacity(256 + response.body.count)
        HTTP1Serializer.responseHead(status: response.status, headers: headers, into: &out)
        if chunked {
            response.body.withUnsafeBytes { HTTP1Serializer.chunk($0, into: &out) }
            HTTP1Serializer.lastChunk(trailers: response.trailers, into: &out)
        } else {
            out.append(contentsOf: response.body)
        }
        socket.write(out)
        if !keepAlive {
            closing = true
            if discardingRest {
                // The request (or what follows it) was not read to the end: let the peer finish
                // sending before closing, so that it reads this response instead of a reset.
                socket.lingerClose()
            } else {
                socket.closeAfterFlush()
            }
            return
        }
        dispatchNext()
        if closing && current == nil && queue.isEmpty { socket.closeAfterFlush() }
    }

    func connectionClosed(_ error: HTTPError?) {
        if let t = idleTimer { loop.cancel(t) }
        if let ex = current {
            current = nil
            setInFlight(-1)
            ex.cancel()
        }
        queue.removeAll()
        server.unregister(self)
    }

    func connectionDrained() {}

    func beginGracefulClose() {
        closing = true
        if current == nil {
            queue.removeAll()
            socket.closeAfterFlush()
        }
    }

    func forceClose() {
        socket.closeNow(HTTPError(.closed, "server stopped"))
    }
}
