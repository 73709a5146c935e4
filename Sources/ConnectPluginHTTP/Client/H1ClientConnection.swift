// The client side of one HTTP/1.1 connection: one request at a time (keep-alive, pooled by
// HTTPClient), fixed-length or chunked request bodies, back-pressure by pausing reads.

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
