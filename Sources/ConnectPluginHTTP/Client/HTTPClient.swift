// The client transport: one endpoint, HTTP/1.1 (a pool of keep-alive connections, one request each
// at a time) or HTTP/2 (one multiplexed prior-knowledge h2c connection, replaced when it dies).
// All of a client's connection state lives on one event loop; callers block on their own threads.
import CConnectPluginPosix

public enum HTTPEndpoint: Sendable, Equatable {
    case tcp(host: String, port: Int)
    case unix(path: String)

    var authority: String {
        switch self {
        case .tcp(let h, let p): return h.contains(":") ? "[\(h)]:\(p)" : "\(h):\(p)"
        case .unix: return "localhost"
        }
    }

    var description: String {
        switch self {
        case .tcp: return authority
        case .unix(let p): return "unix:" + p
        }
    }
}

public struct HTTPClientConfig: Sendable {
    public var version: HTTPVersion = .http2
    /// Largest response body accepted (0 = no limit).
    public var maxResponseBodyBytes: Int = 0
    public var maxIdleHTTP1Connections = 16
    public init() {}
}

/// One request in flight.
final class ClientRequest {
    let method: String
    let path: String
    let headers: HTTPHeaders
    let body: [UInt8]
    private var completion: ((Result<HTTPResponse, HTTPError>) -> Void)?
    var timer: TimerHandle?
    var onAbort: ((HTTPError) -> Void)?

    init(method: String, path: String, headers: HTTPHeaders, body: [UInt8], completion: @escaping (Result<HTTPResponse, HTTPError>) -> Void) {
        self.method = method
        self.path = path
        self.headers = headers
        self.body = body
        self.completion = completion
    }

    var isDone: Bool { completion == nil }

    /// Completes once (loop thread).
    func complete(_ r: Result<HTTPResponse, HTTPError>, loop: EventLoop) {
        guard let c = completion else { return }
        completion = nil
        onAbort = nil
        if let t = timer { loop.cancel(t) }
        c(r)
    }
}

public final class HTTPClient: @unchecked Sendable {
    public let endpoint: HTTPEndpoint
    public let config: HTTPClientConfig
    let loop: EventLoop
    // Loop-thread state.
    private var h2: H2ClientConnection?
    private var idleH1: [H1ClientConnection] = []
    private var activeH1: [ObjectIdentifier: H1ClientConnection] = [:]
    private var closed = false

    public init(endpoint: HTTPEndpoint, config: HTTPClientConfig, group: EventLoopGroup) {
        self.endpoint = endpoint
        self.config = config
        self.loop = group.next()
    }

    /// Sends a request. `completion` runs on the client's loop thread, exactly once.
    /// `timeoutNs` (nil = none) fails the request with `.timeout` and aborts it on the wire.
    public func execute(method: String, path: String, headers: HTTPHeaders, body: [UInt8], timeoutNs: UInt64?,
                        completion: @escaping (Result<HTTPResponse, HTTPError>) -> Void) {
        let req = ClientRequest(method: method, path: path, headers: headers, body: body, completion: completion)
        loop.execute { [self] in
            if closed {
                req.complete(.failure(HTTPError(.closed, "the client was closed")), loop: loop)
                return
            }
            if let t = timeoutNs {
                req.timer = loop.schedule(afterNs: t) { [weak req, loop] in
                    guard let req, !req.isDone else { return }
                    let err = HTTPError(.timeout, "deadline exceeded after \(t / 1_000_000) ms")
                    req.onAbort?(err)
                    req.complete(.failure(err), loop: loop)
                }
            }
            switch config.version {
            case .http2: startH2(req)
            case .http1_1: startH1(req)
            }
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

    func openSocket() -> Result<(fd: Int32, inProgress: Bool), HTTPError> {
        var inProgress: Int32 = 0
        let fd: Int32
        switch endpoint {
        case .tcp(let host, let port): fd = cp_connect_tcp(host, Int32(port), &inProgress)
        case .unix(let path): fd = cp_connect_unix(path, &inProgress)
        }
        if fd < 0 { return .failure(HTTPError.errno("connect to \(endpoint.description)", Int(fd))) }
        return .success((fd, inProgress != 0))
    }

    private func startH2(_ req: ClientRequest) {
        if let c = h2, c.isUsable {
            c.submit(req)
            return
        }
        switch openSocket() {
        case .failure(let e):
            req.complete(.failure(e), loop: loop)
        case .success(let (fd, inProgress)):
            let socket = SocketConnection(fd: fd, loop: loop)
            let conn = H2ClientConnection(socket: socket, client: self)
            h2 = conn
            conn.submit(req)
            socket.start(delegate: conn, connecting: inProgress) { [weak conn] err in conn?.connected(err) }
        }
    }

    func h2Finished(_ c: H2ClientConnection) {
        if h2 === c { h2 = nil }
    }

    private func startH1(_ req: ClientRequest) {
        while let c = idleH1.popLast() {
            if !c.socket.isClosed {
                c.send(req)
                return
            }
        }
        switch openSocket() {
        case .failure(let e):
            req.complete(.failure(e), loop: loop)
        case .success(let (fd, inProgress)):
            let socket = SocketConnection(fd: fd, loop: loop)
            let conn = H1ClientConnection(socket: socket, client: self)
            activeH1[ObjectIdentifier(conn)] = conn
            conn.send(req)
            socket.start(delegate: conn, connecting: inProgress) { [weak conn] err in conn?.connected(err) }
        }
    }

    func h1Idle(_ c: H1ClientConnection) {
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

final class H2ClientConnection: ConnectionDelegate, H2SessionDelegate {
    let socket: SocketConnection
    /// Weak: a connection may outlive its client (a call still finishing when the host frees it).
    weak var owner: HTTPClient?
    let loop: EventLoop
    let endpoint: HTTPEndpoint
    let config: HTTPClientConfig
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
        var body: [UInt8] = []
        init(req: ClientRequest) { self.req = req }
    }
    private var streams: [Int32: Stream] = [:]

    init(socket: SocketConnection, client: HTTPClient) {
        self.socket = socket
        owner = client
        loop = client.loop
        endpoint = client.endpoint
        config = client.config
    }

    var isUsable: Bool { !dead && !goingAway && !socket.isClosed }

    func connected(_ err: HTTPError?) {
        connecting = false
        if let err {
            fail(all: HTTPError(.io, err.message))
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
            req.onAbort = { [weak self, weak req] _ in self?.pending.removeAll { $0 === req } }
            return
        }
        guard let session, isUsable else {
            req.complete(.failure(HTTPError(.io, "connection to \(endpoint.description) is closed")), loop: loop)
            return
        }
        var h: [(String, String)] = [(":method", req.method), (":scheme", "http"), (":authority", endpoint.authority), (":path", req.path)]
        for (n, v) in req.headers { h.append((n, v)) }
        guard let id = session.submitRequest(headers: h, body: req.body) else {
            req.complete(.failure(HTTPError(.io, "cannot start an HTTP/2 stream")), loop: loop)
            return
        }
        streams[id] = Stream(req: req)
        req.onAbort = { [weak self] _ in
            guard let self else { return }
            self.streams[id] = nil
            self.session?.resetStream(id, errorCode: 8)  // CANCEL
            self.flush()
        }
        flush()
    }

    private func flush() {
        guard let session else { return }
        if !session.flush() { socket.closeAfterFlush() }
    }

    private func fail(all err: HTTPError) {
        dead = true
        let p = pending
        pending = []
        for r in p { r.complete(.failure(err), loop: loop) }
        let s = streams
        streams.removeAll()
        for (_, st) in s { st.req.complete(.failure(err), loop: loop) }
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
        fail(all: HTTPError(.io, msg))
        session?.destroy()
        session = nil
    }

    func connectionDrained() {}

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
        }
        if endStream { finish(id) }
    }

    func h2Data(stream id: Int32, bytes: UnsafeRawBufferPointer) {
        guard let st = streams[id] else { return }
        let limit = config.maxResponseBodyBytes
        if limit > 0 && st.body.count + bytes.count > limit {
            streams[id] = nil
            session?.resetStream(id, errorCode: 8)
            st.req.complete(.failure(HTTPError(.tooLarge, "response body larger than \(limit) bytes")), loop: loop)
            return
        }
        st.body.append(contentsOf: bytes)
    }

    func h2EndStream(stream id: Int32) { finish(id) }

    private func finish(_ id: Int32) {
        guard let st = streams.removeValue(forKey: id) else { return }
        st.req.complete(.success(HTTPResponse(status: st.status, headers: st.headers, body: st.body, trailers: st.trailers)), loop: loop)
    }

    func h2StreamClosed(stream id: Int32, errorCode: UInt32) {
        guard let st = streams.removeValue(forKey: id) else { return }
        let kind: HTTPError.Kind = errorCode == 8 ? .canceled : .io
        let what = errorCode == 7 ? "refused the stream" : "reset the stream (HTTP/2 error code \(errorCode))"
        st.req.complete(.failure(HTTPError(kind, "\(endpoint.description) \(what)")), loop: loop)
    }

    func h2GoAway(lastStreamID: Int32, errorCode: UInt32) {
        goingAway = true
        owner?.h2Finished(self)
        for (id, st) in streams where id > lastStreamID {
            streams[id] = nil
            st.req.complete(.failure(HTTPError(.io, "\(endpoint.description) is going away; the request was not processed")), loop: loop)
        }
    }
}

// MARK: - HTTP/1.1

final class H1ClientConnection: ConnectionDelegate {
    let socket: SocketConnection
    /// Weak: a connection may outlive its client (a call still finishing when the host frees it).
    weak var owner: HTTPClient?
    let loop: EventLoop
    let endpoint: HTTPEndpoint
    let config: HTTPClientConfig
    private var parser = HTTP1Parser(kind: .response)
    private var current: ClientRequest?
    private var connecting = true
    private var head: HTTP1ResponseHead?
    private var body: [UInt8] = []

    init(socket: SocketConnection, client: HTTPClient) {
        self.socket = socket
        owner = client
        loop = client.loop
        endpoint = client.endpoint
        config = client.config
    }

    func connected(_ err: HTTPError?) {
        connecting = false
        if let err, let req = current {
            current = nil
            req.complete(.failure(HTTPError(.io, err.message)), loop: loop)
            return
        }
        if let req = current { write(req) }
    }

    func send(_ req: ClientRequest) {
        current = req
        head = nil
        body = []
        parser = HTTP1Parser(kind: .response)
        if req.method == "HEAD" { parser.expectHeadResponse() }
        req.onAbort = { [weak self] err in
            guard let self else { return }
            self.current = nil
            self.socket.closeNow(err)
        }
        if !connecting { write(req) }
    }

    private func write(_ req: ClientRequest) {
        var headers = HTTPHeaders()
        headers.add("host", endpoint.authority)
        for (n, v) in req.headers where n != "host" && n != "content-length" && n != "transfer-encoding" { headers.add(n, v) }
        if req.method != "GET" && req.method != "HEAD" || !req.body.isEmpty { headers.add("content-length", String(req.body.count)) }
        var out: [UInt8] = []
        out.reserveCapacity(256 + req.body.count)
        HTTP1Serializer.requestHead(method: req.method, target: req.path, headers: headers, into: &out)
        out.append(contentsOf: req.body)
        socket.write(out)
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
            head = h
        case .body(let b):
            let limit = config.maxResponseBodyBytes
            if limit > 0 && body.count + b.count > limit {
                fail(HTTPError(.tooLarge, "response body larger than \(limit) bytes"))
                socket.closeNow(nil)
                return
            }
            body.append(contentsOf: b)
        case .end(let trailers):
            guard let h = head else { return }
            current = nil
            let resp = HTTPResponse(status: h.status, headers: h.headers, body: body, trailers: trailers)
            body = []
            head = nil
            req.complete(.success(resp), loop: loop)
            if h.keepAlive && !socket.isClosed, let owner {
                owner.h1Idle(self)
            } else {
                socket.closeNow(nil)
            }
        case .requestHead:
            break
        }
    }

    private func fail(_ e: HTTPError) {
        guard let req = current else { return }
        current = nil
        req.complete(.failure(e), loop: loop)
    }

    func connectionClosed(_ error: HTTPError?) {
        if current != nil {
            if let events = try? parser.finish() {
                for ev in events { handle(ev) }
            }
            let msg = error.map { "connection to \(endpoint.description) failed: \($0.message)" }
                ?? "connection to \(endpoint.description) closed before the response was complete"
            fail(HTTPError(.io, msg))
        }
        owner?.h1Closed(self)
    }

    func connectionDrained() {}
}
