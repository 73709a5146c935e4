// Listeners and accepted connections: each connection detects HTTP/2 (prior-knowledge preface) or
// HTTP/1.1 from its first bytes and hands itself to the matching protocol handler.
import CConnectPluginPosix
import Glibc

/// A listening socket on one loop; accepted connections are spread over the group.
final class Listener: EventHandler {
    let fd: Int32
    let loop: EventLoop
    let address: String
    let unixPath: String?
    let tls: TLSContext?
    private var token: UInt64 = 0
    private weak var server: HTTPServer?
    private(set) var closed = false

    init(fd: Int32, loop: EventLoop, address: String, unixPath: String?, tls: TLSContext?, server: HTTPServer) {
        self.fd = fd
        self.loop = loop
        self.address = address
        self.unixPath = unixPath
        self.tls = tls
        self.server = server
    }

    /// Loop thread.
    func startAccepting() {
        if closed || token != 0 { return }
        if let t = loop.register(fd: fd, interest: CP_EV_READ, handler: self) { token = t }
    }

    func handleEvents(_ events: UInt32) {
        for _ in 0..<64 {
            let c = Socket.accept(fd)
            if c < 0 {
                let e = -c
                if e == EAGAIN || e == EWOULDBLOCK || e == EINTR || e == ECONNABORTED { return }
                // EMFILE and friends: stop this round; the next readiness event retries.
                return
            }
            guard let server else {
                _ = cp_close(c)
                return
            }
            server.adopt(fd: c, isUnix: unixPath != nil, tls: tls)
        }
    }

    /// Loop thread.
    func close() {
        if closed { return }
        closed = true
        if token != 0 { loop.unregister(fd: fd, token: token) }
        _ = cp_close(fd)
        if let p = unixPath { _ = unlink(p) }
    }
}

/// Something the server tracks to stop it: a live connection.
protocol ServerConnectionProtocol: AnyObject {
    /// Loop thread: stop taking new requests; close once idle.
    func beginGracefulClose()
    /// Loop thread: close now, canceling what is in flight.
    func forceClose()
    var hasInFlight: Bool { get }
    var loop: EventLoop { get }
}

/// An HTTP/1.1 + h2c server over TCP and Unix sockets.
public final class HTTPServer: @unchecked Sendable {
    public let config: HTTPServerConfig
    let group: EventLoopGroup
    let handler: HTTPServerHandler
    private let lock = Lock()
    private var listeners: [Listener] = []
    private var connections: [ObjectIdentifier: ServerConnectionProtocol] = [:]
    private var accepting = false
    private var stopped = false
    /// Names this server listens under in this process (`listenInProcess`).
    private var inProcessNames: [String] = []
    /// Every address (sockets and in-process), in the order they were added.
    private var addressList: [String] = []
    /// In-process connections made before `start`, served once it runs (as a socket's backlog).
    private var inProcessBacklog: [any ByteStreamConnection] = []

    public init(config: HTTPServerConfig, group: EventLoopGroup, handler: HTTPServerHandler) {
        self.config = config
        self.group = group
        self.handler = handler
    }

    /// The bound addresses, in the order the listeners were added ("inproc://NAME" for in-process ones).
    public var addresses: [String] { lock.withLock { addressList } }

    /// Binds a TCP listener on "host:port". Returns the bound address. With `tls`, connections
    /// speak TLS and pick HTTP/2 or HTTP/1.1 by ALPN.
    public func listenTCP(host: String, port: Int, tls: TLSConfig? = nil) throws -> String {
        let ctx = try tls.map { try TLSContext(config: $0, isServer: true) }
        let (fd, bound) = try Socket.listenTCP(host: host, port: port)
        return try addListener(fd: fd, address: bound, unixPath: nil, tls: ctx)
    }

    /// Binds a Unix socket listener at `path`; with `tls`, connections speak TLS (as on TCP).
    public func listenUnix(path: String, tls: TLSConfig? = nil) throws -> String {
        let ctx = try tls.map { try TLSContext(config: $0, isServer: true) }
        let fd = try Socket.listenUnix(path: path)
        return try addListener(fd: fd, address: "unix:" + path, unixPath: path, tls: ctx)
    }

    /// Listens under `name` in this process: clients of `HTTPEndpoint.inProcess(name:)` (URL
    /// `inproc://NAME`) reach this server over an in-memory pipe, with no socket. Returns
    /// "inproc://NAME". A name is used by one server at a time.
    public func listenInProcess(name: String) throws -> String {
        let stoppedNow = lock.withLock { stopped }
        if stoppedNow { throw HTTPError(.closed, "the server was stopped") }
        try InProcessListeners.register(name: name, server: self)
        lock.lock()
        if stopped {
            lock.unlock()
            InProcessListeners.unregister(name: name, server: self)
            throw HTTPError(.closed, "the server was stopped")
        }
        inProcessNames.append(name)
        addressList.append("inproc://" + name)
        lock.unlock()
        return "inproc://" + name
    }

    /// Serves a connected byte stream (an in-memory pipe end) as an accepted connection: protocol
    /// detection, then HTTP/1.1 or HTTP/2. False when the server was stopped (the stream is closed).
    @discardableResult
    public func adopt(stream: any ByteStreamConnection) -> Bool {
        lock.lock()
        if stopped {
            lock.unlock()
            stream.loop.execute { stream.closeNow(HTTPError(.closed, "the server was stopped")) }
            return false
        }
        if !accepting {
            inProcessBacklog.append(stream)
            lock.unlock()
            return true
        }
        nextConnectionID &+= 1
        // An in-process connection has no remote host: like a Unix socket, it is its own peer.
        let connection = HTTPConnectionInfo(id: nextConnectionID, remoteHost: nil)
        lock.unlock()
        stream.loop.execute { [self] in
            let detector = ProtocolDetector(socket: stream, server: self, connection: connection)
            stream.start(delegate: detector)
        }
        return true
    }

    private func addListener(fd: Int32, address: String, unixPath: String?, tls: TLSContext?) throws -> String {
        lock.lock()
        if stopped {
            lock.unlock()
            _ = cp_close(fd)
            throw HTTPError(.closed, "the server was stopped")
        }
        let l = Listener(fd: fd, loop: group.next(), address: address, unixPath: unixPath, tls: tls, server: self)
        listeners.append(l)
        addressList.append(address)
        let start = accepting
        lock.unlock()
        if start { l.loop.execute { l.startAccepting() } }
        return address
    }

    public func start() throws {
        lock.lock()
        if stopped {
            lock.unlock()
            throw HTTPError(.closed, "the server was stopped")
        }
        accepting = true
        let ls = listeners
        let backlog = inProcessBacklog
        inProcessBacklog = []
        lock.unlock()
        for l in ls { l.loop.execute { l.startAccepting() } }
        for stream in backlog { adopt(stream: stream) }
    }

    func adopt(fd: Int32, isUnix: Bool, tls: TLSContext?) {
        if !isUnix { Socket.setNoDelay(fd) }
        let connection = HTTPConnectionInfo(id: lock.withLock { nextConnectionID &+= 1; return nextConnectionID },
                                            remoteHost: isUnix ? nil : HTTPServer.remoteHost(fd))
        let loop = group.next()
        loop.execute { [self] in
            let socket = SocketConnection(fd: fd, loop: loop)
            let detector = ProtocolDetector(socket: socket, server: self, connection: connection)
            if let ctx = tls {
                guard let engine = try? TLSEngine(context: ctx, isServer: true) else {
                    _ = cp_close(fd)
                    return
                }
                socket.enableTLS(engine)
                socket.onTLSHandshake = { [weak detector] alpn in detector?.alpnChosen(alpn) }
            }
            socket.start(delegate: detector)
        }
    }

    private var nextConnectionID: UInt64 = 0

    /// The peer's host for grouping its connections (see cp_peer_host); nil when unknown.
    static func remoteHost(_ fd: Int32) -> String? {
        var buf = [CChar](repeating: 0, count: 64)
        guard cp_peer_host(fd, &buf, buf.count) == 1 else { return nil }
        return String(cString: buf)
    }

    func register(_ c: ServerConnectionProtocol) -> Bool {
        lock.withLock {
            if stopped { return false }
            connections[ObjectIdentifier(c)] = c
            return true
        }
    }

    func unregister(_ c: ServerConnectionProtocol) {
        lock.withLock { _ = connections.removeValue(forKey: ObjectIdentifier(c)) }
    }

    /// Stops accepting; lets in-flight requests finish for up to `graceNs`, then closes everything.
    /// Blocks the calling thread (never call it from a loop thread).
    public func stop(graceNs: UInt64) {
        lock.lock()
        stopped = true
        accepting = false
        let ls = listeners
        let names = inProcessNames
        let backlog = inProcessBacklog
        inProcessBacklog = []
        lock.unlock()
        for name in names { InProcessListeners.unregister(name: name, server: self) }
        for stream in backlog { stream.loop.execute { stream.closeNow(HTTPError(.closed, "the server was stopped")) } }
        for l in ls {
            let p = Promise<Bool>()
            l.loop.execute {
                l.close()
                p.fulfill(true)
            }
            _ = p.wait()
        }
        let conns = lock.withLock { Array(connections.values) }
        for c in conns { runOnLoop(of: c) { c.beginGracefulClose() } }
        let deadline = monotonicNowNs() &+ graceNs
        while monotonicNowNs() < deadline {
            let busy = lock.withLock { connections.values.contains { c in c.hasInFlight } }
            if !busy { break }
            usleep(2000)
        }
        let rest = lock.withLock { Array(connections.values) }
        for c in rest { runOnLoop(of: c) { c.forceClose() } }
        lock.withLock { connections.removeAll() }
    }

    private func runOnLoop(of c: ServerConnectionProtocol, _ body: @escaping () -> Void) {
        let p = Promise<Bool>()
        c.loop.execute {
            body()
            p.fulfill(true)
        }
        _ = p.wait()
    }
}

/// Reads the first bytes of a connection and picks HTTP/2 (preface) or HTTP/1.1.
final class ProtocolDetector: ConnectionDelegate {
    static let preface: [UInt8] = Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8)
    let socket: any ByteStreamConnection
    let server: HTTPServer
    private var buffered: [UInt8] = []
    private var idleTimer: TimerHandle?

    let connection: HTTPConnectionInfo

    init(socket: any ByteStreamConnection, server: HTTPServer, connection: HTTPConnectionInfo) {
        self.socket = socket
        self.server = server
        self.connection = connection
        idleTimer = socket.loop.schedule(afterNs: server.config.idleTimeoutNs) { [weak socket] in
            socket?.closeNow(HTTPError(.timeout, "no request within the idle timeout"))
        }
    }

    /// TLS: the handshake finished. ALPN decides the protocol; without ALPN the preface does.
    func alpnChosen(_ alpn: String?) {
        guard let alpn else { return }
        if alpn == "h2" {
            adoptProtocol(h2: true, initial: [])
        } else if alpn == "http/1.1" {
            adoptProtocol(h2: false, initial: [])
        }
    }

    private var peerInfo: HTTPPeerInfo? {
        guard let id = (socket as? SocketConnection)?.peerIdentity, id.verified else { return nil }
        return HTTPPeerInfo(subject: id.subject, dnsNames: id.dnsNames, uris: id.uris, ips: id.ipAddresses)
    }

    private var adopted = false

    private func adoptProtocol(h2: Bool, initial: [UInt8]) {
        if adopted { return }
        adopted = true
        if let t = idleTimer { socket.loop.cancel(t) }
        let handler: ServerConnectionProtocol & ConnectionDelegate
        if h2 {
            guard let c = HTTP2ServerConnection(socket: socket, server: server, peer: peerInfo, connection: connection) else {
                socket.closeNow(HTTPError(.resource, "cannot create an HTTP/2 session"))
                return
            }
            handler = c
        } else {
            handler = HTTP1ServerConnection(socket: socket, server: server, peer: peerInfo, connection: connection)
        }
        if !server.register(handler) {
            socket.closeNow(nil)
            return
        }
        socket.replaceDelegate(handler)
        if !initial.isEmpty { initial.withUnsafeBytes { handler.connectionReceived($0) } }
    }

    func connectionReceived(_ bytes: UnsafeRawBufferPointer) {
        buffered.append(contentsOf: bytes)
        let n = min(buffered.count, ProtocolDetector.preface.count)
        let isH2Prefix = buffered[0..<n].elementsEqual(ProtocolDetector.preface[0..<n])
        if isH2Prefix && buffered.count < ProtocolDetector.preface.count { return }
        let data = buffered
        buffered = []
        adoptProtocol(h2: isH2Prefix, initial: data)
    }

    func connectionClosed(_ error: HTTPError?) {
        if let t = idleTimer { socket.loop.cancel(t) }
    }

    func connectionDrained() {}
}
