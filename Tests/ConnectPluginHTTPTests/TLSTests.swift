// TLS over real loopback sockets: SocketConnection + TLSEngine on event loops, certificates made at
// test time with the openssl CLI, and smoke tests against independent peers (openssl s_client,
// openssl s_server, curl).
import CConnectPluginPosix
import Glibc
import Testing
@testable import ConnectPluginHTTP

// MARK: - Processes and files

private struct ProcessResult {
    var status: Int32
    var output: String
}

private func readFile(_ path: String) -> [UInt8]? {
    let fd = open(path, O_RDONLY)
    if fd < 0 { return nil }
    defer { close(fd) }
    var out: [UInt8] = []
    var buf = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if n < 0 { return nil }
        if n == 0 { return out }
        out.append(contentsOf: buf[0..<n])
    }
}

private func writeFile(_ path: String, _ text: String) throws {
    let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
    if fd < 0 { throw HTTPError(.io, "cannot create \(path)") }
    defer { close(fd) }
    let bytes = Array(text.utf8)
    let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
    if n != bytes.count { throw HTTPError(.io, "cannot write \(path)") }
}

/// Starts `args` (searched in PATH) with stdout+stderr to `outputPath` and stdin from `stdinPath`.
private func spawn(_ args: [String], outputPath: String, stdinPath: String = "/dev/null") throws -> pid_t {
    var fa = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&fa)
    defer { posix_spawn_file_actions_destroy(&fa) }
    posix_spawn_file_actions_addopen(&fa, 0, stdinPath, O_RDONLY, 0)
    posix_spawn_file_actions_addopen(&fa, 1, outputPath, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
    posix_spawn_file_actions_adddup2(&fa, 1, 2)
    var argv: [UnsafeMutablePointer<CChar>?] = args.map { strdup($0) }
    argv.append(nil)
    defer { for p in argv { free(p) } }
    var pid: pid_t = 0
    let rc = posix_spawnp(&pid, args[0], &fa, nil, argv, environ)
    if rc != 0 { throw HTTPError(.io, "cannot run \(args[0]): \(String(cString: strerror(rc)))") }
    return pid
}

/// Waits for `pid` for up to `timeoutSeconds` (then kills it). Returns the exit status (-1 if killed).
private func waitExit(_ pid: pid_t, timeoutSeconds: Double) -> Int32 {
    let deadline = cp_now_ns() + UInt64(timeoutSeconds * 1e9)
    var status: Int32 = 0
    while true {
        let r = waitpid(pid, &status, WNOHANG)
        if r == pid {
            // WIFEXITED / WEXITSTATUS by hand (they are macros).
            if status & 0x7f == 0 { return (status >> 8) & 0xff }
            return -1
        }
        if r < 0 { return -1 }
        if cp_now_ns() > deadline {
            kill(pid, SIGKILL)
            _ = waitpid(pid, &status, 0)
            return -1
        }
        usleep(5000)
    }
}

private func run(_ args: [String], in dir: String, stdinPath: String = "/dev/null", timeoutSeconds: Double = 30) throws -> ProcessResult {
    let out = dir + "/last-command.out"
    let pid = try spawn(args, outputPath: out, stdinPath: stdinPath)
    let status = waitExit(pid, timeoutSeconds: timeoutSeconds)
    let text = readFile(out).map { String(decoding: $0, as: UTF8.self) } ?? ""
    return ProcessResult(status: status, output: text)
}

// MARK: - Certificates (made once per test process)

/// The temporary certificate folder (flat), removed when the test process exits.
nonisolated(unsafe) private var certsDirToRemove: UnsafeMutablePointer<CChar>?

private func removeCertsDir() {
    guard let p = certsDirToRemove, let d = opendir(p) else { return }
    let dir = String(cString: p)
    while let e = readdir(d) {
        let name = withUnsafeBytes(of: e.pointee.d_name) { raw in
            String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
        }
        if name != "." && name != ".." { unlink(dir + "/" + name) }
    }
    closedir(d)
    rmdir(p)
}

private final class Certs: @unchecked Sendable {
    let dir: String
    var ca: String { dir + "/ca.pem" }
    var serverCert: String { dir + "/server.pem" }
    var serverKey: String { dir + "/server.key" }
    var expiredCert: String { dir + "/expired.pem" }
    var expiredKey: String { dir + "/expired.key" }
    var rogueCA: String { dir + "/rogue-ca.pem" }
    var rogueCert: String { dir + "/rogue.pem" }
    var rogueKey: String { dir + "/rogue.key" }
    var clientCert: String { dir + "/client.pem" }
    var clientKey: String { dir + "/client.key" }
    var rogueClientCert: String { dir + "/rogue-client.pem" }
    var rogueClientKey: String { dir + "/rogue-client.key" }
    var otherKey: String { dir + "/other.key" }

    private init(dir: String) { self.dir = dir }

    static func get() throws -> Certs { try shared.get() }

    private static let shared: Result<Certs, HTTPError> = {
        do { return .success(try make()) } catch let e as HTTPError { return .failure(e) } catch {
            return .failure(HTTPError(.io, "\(error)"))
        }
    }()

    private static func make() throws -> Certs {
        var template = Array("/tmp/cp-tls-test-XXXXXX".utf8CString)
        let made = template.withUnsafeMutableBufferPointer { buf -> Bool in
            guard let base = buf.baseAddress else { return false }
            return mkdtemp(base) != nil
        }
        guard made else {
            throw HTTPError(.io, "mkdtemp failed")
        }
        let dir = String(cString: template.map { $0 })
        certsDirToRemove = strdup(dir)
        atexit { removeCertsDir() }
        let c = Certs(dir: dir)
        let v = try run(["openssl", "version"], in: dir)
        if v.status != 0 || !v.output.hasPrefix("OpenSSL") {
            throw HTTPError(.io, "the openssl command-line tool is required for the TLS tests (apt-get install openssl): \(v.output)")
        }
        func sh(_ args: [String]) throws {
            let r = try run(args, in: dir)
            if r.status != 0 { throw HTTPError(.io, "\(args.joined(separator: " ")) failed: \(r.output)") }
        }
        func caConfig(_ name: String, _ cn: String) throws {
            try writeFile(dir + "/\(name).cnf", """
                [req]
                distinguished_name = dn
                prompt = no
                [dn]
                CN = \(cn)
                [v3_ca]
                basicConstraints = critical,CA:TRUE
                keyUsage = critical,keyCertSign,cRLSign
                subjectKeyIdentifier = hash

                """)
        }
        func makeCA(_ name: String, _ cn: String) throws {
            try caConfig(name, cn)
            try sh(["openssl", "req", "-x509", "-new", "-config", dir + "/\(name).cnf", "-extensions", "v3_ca",
                    "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", dir + "/\(name).key", "-out", dir + "/\(name).pem", "-days", "30"])
        }
        var serial = 10
        func makeLeaf(_ name: String, subject: String, san: String, eku: String, ca: String, days: Int) throws {
            serial += 1
            try writeFile(dir + "/\(name).ext", """
                basicConstraints=CA:FALSE
                keyUsage=critical,digitalSignature
                extendedKeyUsage=\(eku)
                subjectAltName=\(san)
                authorityKeyIdentifier=keyid

                """)
            try sh(["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", dir + "/\(name).key", "-out", dir + "/\(name).csr", "-subj", subject])
            try sh(["openssl", "x509", "-req", "-in", dir + "/\(name).csr", "-CA", dir + "/\(ca).pem",
                    "-CAkey", dir + "/\(ca).key", "-set_serial", String(serial), "-days", String(days),
                    "-extfile", dir + "/\(name).ext", "-out", dir + "/\(name).pem"])
        }
        try makeCA("ca", "connectplugin Test CA")
        try makeCA("rogue-ca", "Rogue CA")
        try makeLeaf("server", subject: "/CN=localhost", san: "DNS:localhost,IP:127.0.0.1", eku: "serverAuth", ca: "ca", days: 30)
        try makeLeaf("expired", subject: "/CN=localhost", san: "DNS:localhost,IP:127.0.0.1", eku: "serverAuth", ca: "ca", days: -1)
        try makeLeaf("rogue", subject: "/CN=localhost", san: "DNS:localhost,IP:127.0.0.1", eku: "serverAuth", ca: "rogue-ca", days: 30)
        try makeLeaf("client", subject: "/O=Acme/CN=test-client",
                     san: "DNS:client.example,URI:spiffe://example.org/client,IP:10.0.0.7", eku: "clientAuth", ca: "ca", days: 30)
        try makeLeaf("rogue-client", subject: "/CN=rogue-client", san: "DNS:rogue.example", eku: "clientAuth", ca: "rogue-ca", days: 30)
        try sh(["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", c.otherKey])
        return c
    }

    func serverConfig(alpn: [String] = ["h2", "http/1.1"], cert: String? = nil, key: String? = nil,
                      requireClientCert: Bool = false, clientCAs: Bool = false) -> TLSConfig {
        TLSConfig.server(certificateChain: .file(cert ?? serverCert), privateKey: .file(key ?? serverKey),
                         clientCAs: (clientCAs || requireClientCert) ? .file(ca) : nil,
                         requireClientCert: requireClientCert, alpnProtocols: alpn)
    }

    func clientConfig(alpn: [String] = ["h2", "http/1.1"], serverName: String? = nil, withClientCert: Bool = false) -> TLSConfig {
        TLSConfig.client(trustedCAs: .file(ca), certificateChain: withClientCert ? .file(clientCert) : nil,
                         privateKey: withClientCert ? .file(clientKey) : nil, serverName: serverName, alpnProtocols: alpn)
    }
}

// MARK: - Waiting

/// State shared between loop threads (writers) and the test thread (waiting reader).
private class Observed: @unchecked Sendable {
    let cond = ConditionLock()

    func update(_ body: () -> Void) {
        cond.lock()
        body()
        cond.broadcast()
        cond.unlock()
    }

    /// Waits until `predicate` holds (checked under the lock) or `seconds` pass.
    @discardableResult
    func wait(seconds: Double = 10, _ predicate: () -> Bool) -> Bool {
        let deadline = cp_now_ns() + UInt64(seconds * 1e9)
        cond.lock()
        defer { cond.unlock() }
        while !predicate() {
            if !cond.wait(untilNs: deadline) && !predicate() { return false }
        }
        return true
    }

    func read<T>(_ body: () -> T) -> T { cond.withLock(body) }
}

private let sharedGroup: Result<EventLoopGroup, HTTPError> = {
    do { return .success(try EventLoopGroup(count: 2)) } catch let e as HTTPError { return .failure(e) } catch {
        return .failure(HTTPError(.resource, "\(error)"))
    }
}()

private func testLoop(_ i: Int) throws -> EventLoop { try sharedGroup.get().loops[i % 2] }

/// Runs `body` on `loop` and waits for it.
private func onLoop<T>(_ loop: EventLoop, _ body: @escaping () -> T) -> T? {
    let p = Promise<T>()
    loop.execute { p.fulfill(body()) }
    return p.wait()
}

// MARK: - Server

private enum ServerMode {
    case echo
    /// Echoes, and closes (after flushing) once a newline arrived.
    case echoLineThenClose
    /// Answers one HTTP/1.1 request with "ok" and closes.
    case http11
    /// Sends `count` pattern bytes with back-pressure (at most `highWater` pending), then closes.
    case bulk(count: Int, highWater: Int)
}

private func pattern(_ i: Int) -> UInt8 { UInt8(truncatingIfNeeded: (i &* 7) ^ (i >> 13)) }

/// What the server saw on one connection.
private final class ServerConn: Observed, @unchecked Sendable {
    var handshakeDone = false
    var alpn: String?
    var identity: TLSPeerIdentity?
    var sni: String?
    var version: String?
    var closed = false
    var closeError: HTTPError?
    var received = 0
    var maxPending = 0
}

private final class ServerDelegate: ConnectionDelegate {
    let socket: SocketConnection
    let record: ServerConn
    let mode: ServerMode
    private var buffer: [UInt8] = []
    private var sent = 0
    private var finished = false

    init(socket: SocketConnection, record: ServerConn, mode: ServerMode) {
        self.socket = socket
        self.record = record
        self.mode = mode
    }

    func handshakeDone() {
        if case .bulk = mode { pump() }
    }

    private func pump() {
        guard case .bulk(let count, let highWater) = mode, !finished else { return }
        let chunk = 64 * 1024
        // write() may call connectionDrained (and so pump) before it returns: advance `sent` first.
        while sent < count && socket.pendingWriteBytes < highWater && !socket.isClosed {
            let n = min(chunk, count - sent)
            let bytes = (sent..<(sent + n)).map(pattern)
            sent += n
            socket.write(bytes)
            let p = socket.pendingWriteBytes
            record.update { record.maxPending = max(record.maxPending, p) }
        }
        if sent == count && !finished {
            finished = true
            socket.closeAfterFlush()
        }
    }

    func connectionReceived(_ bytes: UnsafeRawBufferPointer) {
        record.update { record.received += bytes.count }
        switch mode {
        case .echo:
            socket.write(bytes)
        case .echoLineThenClose:
            socket.write(bytes)
            if bytes.contains(UInt8(ascii: "\n")) { socket.closeAfterFlush() }
        case .http11:
            buffer.append(contentsOf: bytes)
            if String(decoding: buffer, as: UTF8.self).contains("\r\n\r\n") && !finished {
                finished = true
                socket.write(Array("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok".utf8))
                socket.closeAfterFlush()
            }
        case .bulk:
            break
        }
    }

    func connectionClosed(_ error: HTTPError?) {
        record.update {
            record.closed = true
            record.closeError = error
        }
    }

    func connectionDrained() { pump() }
}

/// A TLS listener on loop 0.
private final class TestServer: EventHandler, @unchecked Sendable {
    let loop: EventLoop
    let fd: Int32
    let port: Int32
    let context: TLSContext
    let mode: ServerMode
    let engineALPN: [String]?
    private var token: UInt64 = 0
    private let log = Observed()
    private var conns: [ServerConn] = []

    init(_ config: TLSConfig, mode: ServerMode = .echo, engineALPN: [String]? = nil) throws {
        context = try TLSContext(config: config, isServer: true)
        self.mode = mode
        self.engineALPN = engineALPN
        loop = try testLoop(0)
        var bound = [CChar](repeating: 0, count: 128)
        let fd = cp_listen_tcp("127.0.0.1", 0, 128, &bound, bound.count)
        if fd < 0 { throw HTTPError.errno("listen", Int(fd)) }
        self.fd = fd
        let addr = String(cString: bound)
        guard let colon = addr.lastIndex(of: ":"), let p = Int32(addr[addr.index(after: colon)...]) else {
            throw HTTPError(.io, "bad bound address \(addr)")
        }
        port = p
        let ok = onLoop(loop) { [self] () -> Bool in
            guard let t = loop.register(fd: fd, interest: CP_EV_READ, handler: self) else { return false }
            token = t
            return true
        }
        if ok != true { throw HTTPError(.io, "cannot register the listener") }
    }

    func handleEvents(_ events: UInt32) {
        while true {
            let c = cp_accept(fd)
            if c < 0 { return }
            if case .bulk = mode {
                // Small kernel buffers so that the slow reader's back-pressure reaches us quickly.
                var size: Int32 = 64 * 1024
                setsockopt(c, SOL_SOCKET, SO_SNDBUF, &size, socklen_t(MemoryLayout<Int32>.size))
            }
            let socket = SocketConnection(fd: c, loop: loop)
            let record = ServerConn()
            log.update { conns.append(record) }
            do {
                socket.enableTLS(try TLSEngine(context: context, isServer: true, alpn: engineALPN))
            } catch {
                _ = cp_close(c)
                continue
            }
            let delegate = ServerDelegate(socket: socket, record: record, mode: mode)
            socket.onTLSHandshake = { [weak socket, weak delegate] alpn in
                guard let socket else { return }
                record.update {
                    record.handshakeDone = true
                    record.alpn = alpn
                    record.identity = socket.peerIdentity
                    record.sni = socket.tlsRequestedServerName
                    record.version = socket.tlsVersion
                }
                delegate?.handshakeDone()
            }
            socket.start(delegate: delegate)
        }
    }

    /// The `i`th accepted connection, waiting for it to be accepted.
    func connection(_ i: Int, seconds: Double = 10) -> ServerConn? {
        guard log.wait(seconds: seconds, { conns.count > i }) else { return nil }
        return log.read { conns[i] }
    }

    var acceptedCount: Int { log.read { conns.count } }

    func stop() {
        _ = onLoop(loop) { [self] in
            if token != 0 { loop.unregister(fd: fd, token: token) }
            _ = cp_close(fd)
        }
    }
}

// MARK: - Client

private final class TestClient: Observed, ConnectionDelegate, @unchecked Sendable {
    let socket: SocketConnection
    var connectResult: HTTPError?? = nil
    var alpnAtConnect: String?
    var identityAtConnect: TLSPeerIdentity?
    var received: [UInt8] = []
    var closed = false
    var closeError: HTTPError?
    /// Slow reader: pause for `pauseNs` after every `pauseEvery` bytes.
    var pauseEvery = 0
    var pauseNs: UInt64 = 0
    private var nextPause = 0
    var maxBufferedInput = 0
    var pauses = 0

    private init(socket: SocketConnection) { self.socket = socket }

    /// Connects to 127.0.0.1:`port` over TLS; `host` is the name the caller "dialed" (verified unless
    /// the config's serverName overrides it).
    static func connect(port: Int32, config: TLSConfig, host: String? = "localhost", receiveBuffer: Int = 0,
                        configure: (TestClient) -> Void = { _ in }) throws -> TestClient {
        let ctx = try TLSContext(config: config, isServer: false)
        let engine = try TLSEngine(context: ctx, serverName: host)
        return try connect(port: port, engine: engine, receiveBuffer: receiveBuffer, configure: configure)
    }

    static func connect(port: Int32, engine: TLSEngine?, receiveBuffer: Int = 0,
                        configure: (TestClient) -> Void = { _ in }) throws -> TestClient {
        var inProgress: Int32 = 0
        let fd = cp_connect_tcp("127.0.0.1", port, &inProgress)
        if fd < 0 { throw HTTPError.errno("connect", Int(fd)) }
        let loop = try testLoop(1)
        if receiveBuffer > 0 {
            var size = Int32(receiveBuffer)
            setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size))
        }
        let socket = SocketConnection(fd: fd, loop: loop)
        if let engine { socket.enableTLS(engine) }
        let client = TestClient(socket: socket)
        configure(client)
        loop.execute {
            socket.start(delegate: client, connecting: inProgress != 0) { [weak client] err in
                guard let client else { return }
                let alpn = socket.negotiatedALPN
                let identity = socket.peerIdentity
                client.update {
                    client.connectResult = .some(err)
                    client.alpnAtConnect = alpn
                    client.identityAtConnect = identity
                }
            }
        }
        return client
    }

    /// The connect (with TLS: handshake) result; fails the test on timeout.
    func waitConnected(seconds: Double = 60) -> HTTPError?? {
        guard wait(seconds: seconds, { connectResult != nil }) else { return nil }
        return read { connectResult }
    }

    func send(_ bytes: [UInt8]) { socket.loop.execute { [socket] in socket.write(bytes) } }
    func send(_ s: String) { send(Array(s.utf8)) }

    func waitReceived(count: Int, seconds: Double = 60) -> Bool { wait(seconds: seconds) { received.count >= count || closed } && read { received.count >= count } }
    func waitClosed(seconds: Double = 60) -> Bool { wait(seconds: seconds) { closed } }
    var receivedText: String { read { String(decoding: received, as: UTF8.self) } }

    func close() { socket.loop.execute { [socket] in socket.closeNow(nil) } }

    func connectionReceived(_ bytes: UnsafeRawBufferPointer) {
        let buffered = socket.tlsEngine?.bufferedInputBytes ?? 0
        update {
            received.append(contentsOf: bytes)
            maxBufferedInput = max(maxBufferedInput, buffered)
        }
        if pauseEvery > 0 {
            let total = read { received.count }
            if total >= nextPause {
                nextPause = total + pauseEvery
                update { pauses += 1 }
                socket.setReadPaused(true)
                socket.loop.schedule(afterNs: pauseNs) { [socket] in socket.setReadPaused(false) }
            }
        }
    }

    func connectionClosed(_ error: HTTPError?) {
        update {
            closed = true
            closeError = error
        }
    }

    func connectionDrained() {}
}

private func message(_ r: HTTPError??) -> String {
    switch r {
    case .none: return "<timeout>"
    case .some(.none): return "<connected>"
    case .some(.some(let e)): return e.message
    }
}

// MARK: - Tests

@Suite("TLS", .serialized)
struct TLSTests {
    @Test func handshakeAndEchoWithALPNh2() throws {
        let certs = try Certs.get()
        let server = try TestServer(certs.serverConfig())
        defer { server.stop() }
        let client = try TestClient.connect(port: server.port, config: certs.clientConfig())
        defer { client.close() }
        // Written before the handshake completes: queued and sent after it.
        client.send("hello before handshake|")
        let r = client.waitConnected()
        #expect(message(r) == "<connected>")
        #expect(client.read { client.alpnAtConnect } == "h2")
        client.send("and after")
        let expected = "hello before handshake|and after"
        #expect(client.waitReceived(count: expected.utf8.count))
        #expect(client.receivedText == expected)
        let id = try #require(client.read { client.identityAtConnect })
        #expect(id.subject == "CN=localhost")
        #expect(id.dnsNames == ["localhost"])
        #expect(id.ipAddresses == ["127.0.0.1"])
        #expect(id.verified)
        let sc = try #require(server.connection(0))
        #expect(sc.wait { sc.handshakeDone })
        #expect(sc.read { sc.alpn } == "h2")
        #expect(sc.read { sc.sni } == "localhost")
        #expect(sc.read { sc.version } == "TLSv1.3")
        #expect(sc.read { sc.identity } == nil)
        // A 1 MiB round trip (many records, both directions).
        let big = (0..<(1 << 20)).map(pattern)
        client.send(big)
        #expect(client.waitReceived(count: expected.utf8.count + big.count, seconds: 120))
        #expect(client.read { Array(client.received[expected.utf8.count...]) } == big)
    }

    @Test func alpnSelection() throws {
        let certs = try Certs.get()
        // The server's preference decides among what the client offered.
        let cases: [(server: [String], client: [String], expected: String?)] = [
            (["h2", "http/1.1"], ["http/1.1"], "http/1.1"),
            (["h2", "http/1.1"], ["http/1.1", "h2"], "h2"),
            (["http/1.1"], ["h2", "http/1.1"], "http/1.1"),
            (["h2", "http/1.1"], ["spdy/3"], nil),  // no overlap: no ALPN, the handshake still succeeds
            (["h2"], [], nil),                       // client offers nothing
        ]
        for c in cases {
            let server = try TestServer(certs.serverConfig(alpn: c.server))
            defer { server.stop() }
            let client = try TestClient.connect(port: server.port, config: certs.clientConfig(alpn: c.client))
            defer { client.close() }
            #expect(message(client.waitConnected()) == "<connected>", "\(c)")
            #expect(client.read { client.alpnAtConnect } == c.expected, "\(c)")
            let sc = try #require(server.connection(0))
            #expect(sc.wait { sc.handshakeDone })
            #expect(sc.read { sc.alpn } == c.expected, "\(c)")
            client.send("x")
            #expect(client.waitReceived(count: 1))
        }
    }

    @Test func perConnectionALPN() throws {
        let certs = try Certs.get()
        // The server connection's own list replaces the context's.
        let server = try TestServer(certs.serverConfig(), engineALPN: ["http/1.1"])
        defer { server.stop() }
        let c1 = try TestClient.connect(port: server.port, config: certs.clientConfig())
        defer { c1.close() }
        #expect(message(c1.waitConnected()) == "<connected>")
        #expect(c1.read { c1.alpnAtConnect } == "http/1.1")
        // The client connection's own list replaces its context's.
        let h2Server = try TestServer(certs.serverConfig())
        defer { h2Server.stop() }
        let ctx = try TLSContext(config: certs.clientConfig(), isServer: false)
        let c2 = try TestClient.connect(port: h2Server.port,
                                        engine: try TLSEngine(context: ctx, isServer: false, serverName: "localhost", alpn: ["http/1.1"]))
        defer { c2.close() }
        #expect(message(c2.waitConnected()) == "<connected>")
        #expect(c2.read { c2.alpnAtConnect } == "http/1.1")
        // An empty list offers nothing.
        let c3 = try TestClient.connect(port: h2Server.port,
                                        engine: try TLSEngine(context: ctx, isServer: false, serverName: "localhost", alpn: []))
        defer { c3.close() }
        #expect(message(c3.waitConnected()) == "<connected>")
        #expect(c3.read { c3.alpnAtConnect } == nil)
        // The role must match the context.
        #expect(throws: HTTPError.self) { try TLSEngine(context: ctx, isServer: true) }
    }

    @Test func sniAndHostnameVerification() throws {
        let certs = try Certs.get()
        let server = try TestServer(certs.serverConfig())
        defer { server.stop() }
        // Dialing 127.0.0.1 with a serverName override: SNI and verification use "localhost".
        let byName = try TestClient.connect(port: server.port, config: certs.clientConfig(serverName: "localhost"), host: "127.0.0.1")
        defer { byName.close() }
        #expect(message(byName.waitConnected()) == "<connected>")
        let s0 = try #require(server.connection(0))
        #expect(s0.wait { s0.handshakeDone })
        #expect(s0.read { s0.sni } == "localhost")
        // An IP literal is verified against the IP SANs and not sent as SNI.
        let byIP = try TestClient.connect(port: server.port, config: certs.clientConfig(), host: "127.0.0.1")
        defer { byIP.close() }
        #expect(message(byIP.waitConnected()) == "<connected>")
        let s1 = try #require(server.connection(1))
        #expect(s1.wait { s1.handshakeDone })
        #expect(s1.read { s1.sni } == nil)
        // A verifying client needs a name.
        let ctx = try TLSContext(config: certs.clientConfig(), isServer: false)
        #expect(throws: HTTPError.self) { try TLSEngine(context: ctx, serverName: nil) }
    }

    @Test func hostnameMismatchIsExplained() throws {
        let certs = try Certs.get()
        let server = try TestServer(certs.serverConfig())
        defer { server.stop() }
        let client = try TestClient.connect(port: server.port, config: certs.clientConfig(), host: "example.com")
        let r = message(client.waitConnected())
        #expect(r.contains("hostname mismatch: certificate is for localhost, 127.0.0.1, not example.com"), "\(r)")
        #expect(client.waitClosed())
        #expect(client.read { client.closeError?.message } == r)
        // The server learns why from the client's alert.
        let sc = try #require(server.connection(0))
        #expect(sc.wait { sc.closed })
        let serverErr = sc.read { sc.closeError?.message } ?? ""
        #expect(serverErr == "TLS handshake failed: the peer rejected our certificate (alert: bad certificate)", "\(serverErr)")
        // Wrong IP.
        let ipClient = try TestClient.connect(port: server.port, config: certs.clientConfig(serverName: "127.0.0.2"))
        let r2 = message(ipClient.waitConnected())
        #expect(r2.contains("IP address mismatch: certificate is for localhost, 127.0.0.1, not 127.0.0.2"), "\(r2)")
    }

    @Test func expiredCertificateIsExplained() throws {
        let certs = try Certs.get()
        let server = try TestServer(certs.serverConfig(cert: certs.expiredCert, key: certs.expiredKey))
        defer { server.stop() }
        let client = try TestClient.connect(port: server.port, config: certs.clientConfig())
        let r = message(client.waitConnected())
        #expect(r == "TLS handshake failed: cannot verify the server certificate: certificate has expired", "\(r)")
        let sc = try #require(server.connection(0))
        #expect(sc.wait { sc.closed })
        let serverErr = sc.read { sc.closeError?.message } ?? ""
        #expect(serverErr == "TLS handshake failed: the peer rejected our certificate as expired (alert: certificate expired)",
                "\(serverErr)")
    }

    @Test func unknownCAIsExplained() throws {
        let certs = try Certs.get()
        let server = try TestServer(certs.serverConfig(cert: certs.rogueCert, key: certs.rogueKey))
        defer { server.stop() }
        let client = try TestClient.connect(port: server.port, config: certs.clientConfig())
        let r = message(client.waitConnected())
        #expect(r == "TLS handshake failed: cannot verify the server certificate: unable to get local issuer certificate (unknown CA)", "\(r)")
        let sc = try #require(server.connection(0))
        #expect(sc.wait { sc.closed })
        let serverErr = sc.read { sc.closeError?.message } ?? ""
        #expect(serverErr == "TLS handshake failed: the peer does not trust our certificate (alert: unknown CA)", "\(serverErr)")
        // insecureSkipVerify (tests only) accepts it, and the identity says it was not verified.
        var insecure = certs.clientConfig()
        insecure.insecureSkipVerify = true
        let c2 = try TestClient.connect(port: server.port, config: insecure, host: nil)
        defer { c2.close() }
        #expect(message(c2.waitConnected()) == "<connected>")
        let id = try #require(c2.read { c2.identityAtConnect })
        #expect(id.verified == false)
        #expect(id.dnsNames == ["localhost"])
    }

    @Test func mutualTLSIdentityOnTheServer() throws {
        let certs = try Certs.get()
        let server = try TestServer(certs.serverConfig(requireClientCert: true))
        defer { server.stop() }
        let client = try TestClient.connect(port: server.port, config: certs.clientConfig(withClientCert: true))
        defer { client.close() }
        #expect(message(client.waitConnected()) == "<connected>")
        client.send("ping")
        #expect(client.waitReceived(count: 4))
        let sc = try #require(server.connection(0))
        #expect(sc.wait { sc.handshakeDone })
        let id = try #require(sc.read { sc.identity })
        #expect(id.subject == "CN=test-client,O=Acme")
        #expect(id.commonName == "test-client")
        #expect(id.dnsNames == ["client.example"])
        #expect(id.uris == ["spiffe://example.org/client"])
        #expect(id.ipAddresses == ["10.0.0.7"])
        #expect(id.verified)
    }

    @Test func serverRequiringClientCertRejectsClientWithout() throws {
        let certs = try Certs.get()
        let server = try TestServer(certs.serverConfig(requireClientCert: true))
        defer { server.stop() }
        let client = try TestClient.connect(port: server.port, config: certs.clientConfig())
        // TLS 1.3: the client's side of the handshake completes; the server's verdict arrives next.
        _ = client.waitConnected()
        client.send("ping")
        #expect(client.waitClosed())
        let clientErr = client.read { client.closeError?.message } ?? ""
        #expect(clientErr.hasSuffix("the server requires a client certificate (alert: certificate required)"), "\(clientErr)")
        #expect(client.read { client.received.isEmpty })
        let sc = try #require(server.connection(0))
        #expect(sc.wait { sc.closed })
        #expect(sc.read { sc.handshakeDone } == false)
        #expect(sc.read { sc.received } == 0)
        let serverErr = sc.read { sc.closeError?.message } ?? ""
        #expect(serverErr == "TLS handshake failed: the client did not present a certificate (this server requires one)", "\(serverErr)")
        // A client certificate from an unknown CA is rejected with the reason.
        var rogue = certs.clientConfig()
        rogue.certificateChain = .file(certs.rogueClientCert)
        rogue.privateKey = .file(certs.rogueClientKey)
        let c2 = try TestClient.connect(port: server.port, config: rogue)
        _ = c2.waitConnected()
        c2.send("ping")
        #expect(c2.waitClosed())
        let s2 = try #require(server.connection(1))
        #expect(s2.wait { s2.closed })
        let e2 = s2.read { s2.closeError?.message } ?? ""
        #expect(e2 == "TLS handshake failed: cannot verify the client certificate: unable to get local issuer certificate (unknown CA)", "\(e2)")
    }

    @Test func plaintextHTTPToTLSServerCostsOnlyThatConnection() throws {
        let certs = try Certs.get()
        let server = try TestServer(certs.serverConfig())
        defer { server.stop() }
        let plain = try TestClient.connect(port: server.port, engine: nil)
        #expect(message(plain.waitConnected()) == "<connected>")
        plain.send("GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        #expect(plain.waitClosed())
        #expect(plain.receivedText.hasPrefix("HTTP/1.0 400 Bad Request\r\n"), "\(plain.receivedText)")
        #expect(plain.receivedText.contains("Client sent an HTTP request to an HTTPS server."))
        let sc = try #require(server.connection(0))
        #expect(sc.wait { sc.closed })
        let err = sc.read { sc.closeError?.message } ?? ""
        #expect(err.hasPrefix("TLS handshake failed: not a TLS handshake: the client sent plaintext HTTP (\"GET / HTTP/1.1.."), "\(err)")
        // The server still serves TLS.
        let good = try TestClient.connect(port: server.port, config: certs.clientConfig())
        defer { good.close() }
        #expect(message(good.waitConnected()) == "<connected>")
        good.send("still here")
        #expect(good.waitReceived(count: 10))
        #expect(good.receivedText == "still here")
    }

    @Test func garbageToTLSServerCostsOnlyThatConnection() throws {
        let certs = try Certs.get()
        let server = try TestServer(certs.serverConfig())
        defer { server.stop() }
        // Not TLS at all.
        let g1 = try TestClient.connect(port: server.port, engine: nil)
        g1.send([0x00, 0xff, 0x13, 0x37] + [UInt8](repeating: 0xab, count: 200))
        #expect(g1.waitClosed())
        let s0 = try #require(server.connection(0))
        #expect(s0.wait { s0.closed })
        let e0 = s0.read { s0.closeError?.message } ?? ""
        #expect(e0 == "TLS handshake failed: not a TLS handshake: unexpected first bytes 00 ff 13 37 ab ab ab ab (expected a TLS ClientHello)", "\(e0)")
        // A TLS record header followed by junk: OpenSSL's parser rejects it.
        let g2 = try TestClient.connect(port: server.port, engine: nil)
        g2.send([0x16, 0x03, 0x01, 0x00, 0x40] + (0..<64).map { UInt8(truncatingIfNeeded: $0 &* 37) })
        #expect(g2.waitClosed())
        let s1 = try #require(server.connection(1))
        #expect(s1.wait { s1.closed })
        let e1 = s1.read { s1.closeError?.message } ?? ""
        #expect(e1 == "TLS handshake failed: invalid TLS handshake (unexpected message)", "\(e1)")
        // A huge record length.
        let g3 = try TestClient.connect(port: server.port, engine: nil)
        g3.send([0x16, 0x03, 0x03, 0xff, 0xff] + [UInt8](repeating: 1, count: 1000))
        #expect(g3.waitClosed())
        let s2 = try #require(server.connection(2))
        #expect(s2.wait { s2.closed })
        #expect(s2.read { s2.closeError?.message } == "TLS handshake failed: not a TLS handshake (packet length too long)")
        // A client that connects and leaves during the handshake.
        let g4 = try TestClient.connect(port: server.port, engine: nil)
        #expect(message(g4.waitConnected()) == "<connected>")
        g4.close()
        let s3 = try #require(server.connection(3))
        #expect(s3.wait { s3.closed })
        #expect(s3.read { s3.closeError?.message } == "TLS handshake failed: the peer closed the connection during the handshake")
        // A TLS client dialing a plaintext server gets a clear error too (here: the server's garbage).
        let good = try TestClient.connect(port: server.port, config: certs.clientConfig())
        defer { good.close() }
        #expect(message(good.waitConnected()) == "<connected>")
        good.send("ok")
        #expect(good.waitReceived(count: 2))
    }

    @Test func tlsClientToPlaintextServerIsExplained() throws {
        let certs = try Certs.get()
        // A plain listener that answers anything with an HTTP response.
        var bound = [CChar](repeating: 0, count: 128)
        let lfd = cp_listen_tcp("127.0.0.1", 0, 16, &bound, bound.count)
        #expect(lfd >= 0)
        defer { _ = cp_close(lfd) }
        let addr = String(cString: bound)
        let port = try #require(addr.split(separator: ":").last.flatMap { Int32($0) })
        let client = try TestClient.connect(port: port, config: certs.clientConfig())
        // Accept (blocking-ish poll) and answer in plaintext.
        var afd: Int32 = -1
        for _ in 0..<1000 {
            afd = cp_accept(lfd)
            if afd >= 0 { break }
            usleep(2000)
        }
        #expect(afd >= 0)
        let reply = Array("HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n".utf8)
        _ = reply.withUnsafeBytes { cp_write(afd, $0.baseAddress, $0.count) }
        let r = message(client.waitConnected())
        #expect(r.hasPrefix("TLS handshake failed: not a TLS handshake: the server replied with plaintext HTTP"), "\(r)")
        _ = cp_close(afd)
    }

    @Test func largeTransferWithSlowReaderStaysBounded() throws {
        let certs = try Certs.get()
        let total = 8 << 20
        let highWater = 256 * 1024
        let server = try TestServer(certs.serverConfig(), mode: .bulk(count: total, highWater: highWater))
        defer { server.stop() }
        let client = try TestClient.connect(port: server.port, config: certs.clientConfig(), receiveBuffer: 64 * 1024) { c in
            c.pauseEvery = 256 * 1024
            c.pauseNs = 3_000_000
        }
        defer { client.close() }
        #expect(message(client.waitConnected()) == "<connected>")
        // Generous: a sanitizer build on a loaded machine moves this much data slowly.
        #expect(client.waitClosed(seconds: 240))
        // All data arrived, in order, and the stream ended with close_notify (no error).
        #expect(client.read { client.received.count } == total)
        #expect(client.read { client.closeError } == nil)
        let ok = client.read { () -> Bool in
            // A short transfer fails the expectations above; it must not crash the run here.
            guard client.received.count == total else { return false }
            for i in 0..<total where client.received[i] != pattern(i) { return false }
            return true
        }
        #expect(ok)
        #expect(client.read { client.pauses } >= 16)
        // The reader never held more undecrypted input than one socket read.
        #expect(client.read { client.maxBufferedInput } <= 64 * 1024)
        // The writer saw back-pressure: pending bytes stayed near its high-water mark.
        let sc = try #require(server.connection(0))
        #expect(sc.wait { sc.closed })
        #expect(sc.read { sc.closeError } == nil)
        let maxPending = sc.read { sc.maxPending }
        #expect(maxPending >= highWater)
        #expect(maxPending <= highWater + 64 * 1024 + 4096)
    }

    @Test func pemFromMemory() throws {
        let certs = try Certs.get()
        let chain = try #require(readFile(certs.serverCert))
        let key = try #require(readFile(certs.serverKey))
        let ca = try #require(readFile(certs.ca))
        let server = try TestServer(.server(certificateChain: .pem(chain), privateKey: .pem(key)))
        defer { server.stop() }
        let client = try TestClient.connect(port: server.port, config: .client(trustedCAs: .pem(ca)))
        defer { client.close() }
        #expect(message(client.waitConnected()) == "<connected>")
        client.send("memory")
        #expect(client.waitReceived(count: 6))
        // mTLS with the client certificate from memory too.
        let clientChain = try #require(readFile(certs.clientCert))
        let clientKey = try #require(readFile(certs.clientKey))
        let mtls = try TestServer(.server(certificateChain: .pem(chain), privateKey: .pem(key), clientCAs: .pem(ca),
                                          requireClientCert: true))
        defer { mtls.stop() }
        let c2 = try TestClient.connect(port: mtls.port, config: .client(trustedCAs: .pem(ca), certificateChain: .pem(clientChain),
                                                                          privateKey: .pem(clientKey)))
        defer { c2.close() }
        #expect(message(c2.waitConnected()) == "<connected>")
        c2.send("x")
        #expect(c2.waitReceived(count: 1))
        let sc = try #require(mtls.connection(0))
        #expect(sc.read { sc.identity?.commonName } == "test-client")
    }

    @Test func configurationErrorsNameTheFileAndReason() throws {
        let certs = try Certs.get()
        func error(_ config: TLSConfig, server: Bool = true) -> String {
            do {
                _ = try TLSContext(config: config, isServer: server)
                return "<no error>"
            } catch let e as HTTPError {
                return e.message
            } catch {
                return "\(error)"
            }
        }
        #expect(error(.server(certificateChain: .file("/nonexistent/x.pem"), privateKey: .file(certs.serverKey)))
            == "cannot load certificate /nonexistent/x.pem: No such file or directory")
        #expect(error(.server(certificateChain: .file(certs.serverCert), privateKey: .file("/nonexistent/k.pem")))
            == "cannot load private key /nonexistent/k.pem: No such file or directory")
        #expect(error(.server(certificateChain: .file(certs.serverCert), privateKey: .file(certs.otherKey)))
            == "cannot load private key \(certs.otherKey): private key does not match certificate \(certs.serverCert)")
        #expect(error(.server(certificateChain: .pem("not a certificate"), privateKey: .file(certs.serverKey)))
            == "cannot load certificate from PEM data: no certificate found (expected PEM \"-----BEGIN CERTIFICATE-----\")")
        let badPEM = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
        #expect(error(.server(certificateChain: .pem(badPEM), privateKey: .file(certs.serverKey))).hasPrefix("cannot load certificate from PEM data: "))
        #expect(error(.server(certificateChain: .file(certs.serverCert), privateKey: .file(certs.serverCert)))
            .hasPrefix("cannot load private key \(certs.serverCert): no private key found"))
        #expect(error(.client(trustedCAs: .file(certs.dir)), server: false) == "cannot load CA certificates \(certs.dir): is a directory", "")
        #expect(error(.client(trustedCAs: .file(certs.serverKey)), server: false)
            == "cannot load CA certificates \(certs.serverKey): no certificate found (expected PEM \"-----BEGIN CERTIFICATE-----\")")
        #expect(error(TLSConfig(), server: true) == "a TLS server needs a certificate chain and a private key")
        #expect(error(TLSConfig(certificateChain: .file(certs.serverCert), privateKey: .file(certs.serverKey), requireClientCert: true))
            == "requireClientCert needs trustedCAs to verify client certificates against")
        #expect(error(.client(alpnProtocols: ["h2", ""]), server: false) == "invalid ALPN protocol name \"\" (must be 1 to 255 bytes)")
        // An encrypted key is refused without prompting on the terminal.
        let encrypted = certs.dir + "/encrypted.key"
        let r = try run(["openssl", "pkey", "-in", certs.serverKey, "-aes256", "-passout", "pass:secret", "-out", encrypted], in: certs.dir)
        #expect(r.status == 0, "\(r.output)")
        #expect(error(.server(certificateChain: .file(certs.serverCert), privateKey: .file(encrypted)))
            == "cannot load private key \(encrypted): the private key is encrypted (password-protected keys are not supported)")
        // The system trust store loads.
        #expect(error(.client(), server: false) == "<no error>")
    }

    // MARK: Independent peers

    @Test func opensslClientAgainstOurServer() throws {
        let certs = try Certs.get()
        let server = try TestServer(certs.serverConfig(requireClientCert: true), mode: .echoLineThenClose)
        defer { server.stop() }
        let input = certs.dir + "/sclient.in"
        try writeFile(input, "ping from openssl\n")
        let r = try run(["openssl", "s_client", "-connect", "127.0.0.1:\(server.port)", "-servername", "localhost",
                         "-verify_hostname", "localhost", "-CAfile", certs.ca, "-verify_return_error", "-alpn", "h2",
                         "-cert", certs.clientCert, "-key", certs.clientKey, "-ign_eof"],
                        in: certs.dir, stdinPath: input, timeoutSeconds: 20)
        #expect(r.status == 0, "\(r.output)")
        #expect(r.output.contains("ALPN protocol: h2"), "\(r.output)")
        #expect(r.output.contains("Verify return code: 0 (ok)"), "\(r.output)")
        #expect(r.output.contains("ping from openssl"), "\(r.output)")
        let sc = try #require(server.connection(0))
        #expect(sc.wait { sc.closed })
        #expect(sc.read { sc.alpn } == "h2")
        #expect(sc.read { sc.sni } == "localhost")
        #expect(sc.read { sc.identity?.commonName } == "test-client")
        #expect(sc.read { sc.closeError } == nil)
    }

    @Test func curlAgainstOurServer() throws {
        let certs = try Certs.get()
        let server = try TestServer(certs.serverConfig(), mode: .http11)
        defer { server.stop() }
        let r = try run(["curl", "-sS", "--http1.1", "--cacert", certs.ca, "--resolve", "localhost:\(server.port):127.0.0.1",
                         "https://localhost:\(server.port)/"], in: certs.dir, timeoutSeconds: 20)
        #expect(r.status == 0, "\(r.output)")
        #expect(r.output == "ok", "\(r.output)")
        let sc = try #require(server.connection(0))
        #expect(sc.wait { sc.closed })
        #expect(sc.read { sc.alpn } == "http/1.1")
    }

    @Test func ourClientAgainstOpensslServer() throws {
        let certs = try Certs.get()
        // A free port: bind, read it back, release it for s_server.
        var bound = [CChar](repeating: 0, count: 128)
        let probe = cp_listen_tcp("127.0.0.1", 0, 1, &bound, bound.count)
        #expect(probe >= 0)
        _ = cp_close(probe)
        let port = try #require(String(cString: bound).split(separator: ":").last.flatMap { Int32($0) })
        let pid = try spawn(["openssl", "s_server", "-accept", "127.0.0.1:\(port)", "-cert", certs.serverCert,
                             "-key", certs.serverKey, "-alpn", "h2", "-www", "-naccept", "1"],
                            outputPath: certs.dir + "/s_server.out")
        defer {
            kill(pid, SIGTERM)
            _ = waitExit(pid, timeoutSeconds: 5)
        }
        var client: TestClient?
        for _ in 0..<200 {
            let c = try TestClient.connect(port: port, config: certs.clientConfig())
            if case .some(.none) = c.waitConnected() {
                client = c
                break
            }
            usleep(25_000)
        }
        let c = try #require(client, "openssl s_server did not come up")
        #expect(c.read { c.alpnAtConnect } == "h2")
        #expect(c.read { c.identityAtConnect?.verified } == true)
        c.send("GET / HTTP/1.0\r\n\r\n")
        #expect(c.waitClosed(seconds: 60))
        #expect(c.receivedText.hasPrefix("HTTP/1.0 200 ok"), "\(c.receivedText.prefix(200))")
        #expect(c.receivedText.contains("TLSv1.3"))
    }
}
