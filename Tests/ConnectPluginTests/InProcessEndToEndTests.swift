// RPC over the in-process transport: a server that listens under a name and a client of
// "inproc://NAME" talk through an in-memory pipe with the full HTTP/2 (or HTTP/1.1) and protocol
// stack, no socket. Unary and every streaming shape for Connect, gRPC and gRPC-Web; errors; deadlines;
// a custom ClientTransport; URL and name checks.
import ConnectPlugin
import ConnectPluginHTTP
import Glibc
import Testing

private let svc = "/test.v1.InProcService/"

private let counter = Lock()
nonisolated(unsafe) private var lastID = 0

/// A unique name per server (tests run in parallel, and other test runs share nothing with us).
private func uniqueName() -> String {
    let n = counter.withLock { lastID += 1; return lastID }
    return "rpc-test-\(getpid())-\(n)"
}

private func makeServer() throws -> (Server, String) {
    let server = try Server()
    try server.handle(svc + "Echo") { $0.request }
    try server.handle(svc + "Fail") { _ in throw ConnectError(.permissionDenied, "not you") }
    try server.register(svc + "Count", kind: .serverStream) { call in
        guard let req = try? call.receive() else { return }
        let n = req.first.map(Int.init) ?? 0
        for i in 0..<n { try? call.send([UInt8(truncatingIfNeeded: i)] + req) }
        try? call.addResponseTrailer("x-count", Array(String(n).utf8))
    }
    try server.register(svc + "Sum", kind: .clientStream) { call in
        var total = 0
        while let m = try? call.receive() { total += m.count }
        try? call.send(Array("\(total)".utf8))
    }
    try server.register(svc + "Chat", kind: .bidiStream) { call in
        while let m = try? call.receive() {
            if (try? call.send(m)) == nil { return }
        }
    }
    try server.handle(svc + "Slow") { _ in
        usleep(300_000)
        return []
    }
    let name = uniqueName()
    #expect(try server.listenInProcess(name) == "inproc://" + name)
    try server.start()
    return (server, "inproc://" + name)
}

private struct Combo: CustomStringConvertible, Sendable {
    var proto: RPCProtocol
    var http: HTTPVersion
    var description: String { "\(proto.rawValue)-\(http == .http2 ? "h2" : "h1")" }
}

private let combos: [Combo] = RPCProtocol.allCases.flatMap { p in
    [HTTPVersion.http2, .http1_1].filter { !(p == .grpc && $0 == .http1_1) }.map { Combo(proto: p, http: $0) }
}

private func client(_ url: String, _ c: Combo, timeoutMs: Int64 = 0) throws -> Client {
    var o = Client.Options()
    o.rpcProtocol = c.proto
    o.httpVersion = c.http
    o.timeoutMs = timeoutMs
    return try Client(baseURL: url, options: o)
}

@Suite("In-process transport")
struct InProcessEndToEndTests {
    @Test(arguments: combos)
    fileprivate func everyShapeRoundTrips(combo: Combo) throws {
        let (server, url) = try makeServer()
        defer { server.stop(graceMs: 0) }
        #expect(server.addresses.contains(url))
        let c = try client(url, combo)
        defer { c.close() }

        let big = [UInt8](repeating: 7, count: 300_000)
        #expect(try c.unary(svc + "Echo", request: big).message == big)
        #expect(try c.unary(svc + "Echo", request: []).message == [])

        let s = try c.stream(svc + "Count", kind: .serverStream)
        try s.send([3, 1])
        s.closeSend()
        var got: [[UInt8]] = []
        while let m = try s.receive() { got.append(m) }
        #expect(got == [[0, 3, 1], [1, 3, 1], [2, 3, 1]])
        #expect(s.responseTrailers.firstString("x-count") == "3")

        let cs = try c.stream(svc + "Sum", kind: .clientStream)
        for i in 0..<10 { try cs.send([UInt8](repeating: 1, count: i * 1000)) }
        #expect(try cs.closeAndReceive() == Array("45000".utf8))

        let b = try c.stream(svc + "Chat", kind: .bidiStream)
        for i in 0..<5 { try b.send([UInt8(i)]) }
        b.closeSend()
        var echoed: [[UInt8]] = []
        while let m = try b.receive() { echoed.append(m) }
        #expect(echoed == (0..<5).map { [UInt8($0)] })

        do {
            _ = try c.unary(svc + "Fail", request: [])
            Issue.record("Fail succeeded")
        } catch let e as ConnectError {
            #expect(e.code == .permissionDenied)
            #expect(e.message == "not you")
        }
    }

    @Test(arguments: RPCProtocol.allCases)
    func fullDuplexBidiOverHTTP2(proto: RPCProtocol) throws {
        let (server, url) = try makeServer()
        defer { server.stop(graceMs: 0) }
        let c = try client(url, Combo(proto: proto, http: .http2))
        defer { c.close() }
        let b = try c.stream(svc + "Chat", kind: .bidiStream)
        for i in 0..<50 {
            let msg = [UInt8](repeating: UInt8(i), count: i * 100 + 1)
            try b.send(msg)
            #expect(try b.receive() == msg)
        }
        b.closeSend()
        #expect(try b.receive() == nil)
    }

    @Test func concurrentCallersShareTheConnection() throws {
        let (server, url) = try makeServer()
        defer { server.stop(graceMs: 0) }
        let c = try client(url, Combo(proto: .grpc, http: .http2))
        defer { c.close() }
        let failures = Lock()
        nonisolated(unsafe) var failed = 0
        var threads: [pthread_t] = []
        final class Job { let body: () -> Void; init(_ b: @escaping () -> Void) { body = b } }
        for t in 0..<8 {
            let job = Job {
                for i in 0..<25 {
                    let msg = [UInt8(t), UInt8(i)]
                    if (try? c.unary(svc + "Echo", request: msg).message) != msg { failures.withLock { failed += 1 } }
                }
            }
            var th = pthread_t()
            let arg = Unmanaged.passRetained(job).toOpaque()
            let rc = pthread_create(&th, nil, { p in
                guard let p else { return nil }
                Unmanaged<Job>.fromOpaque(p).takeRetainedValue().body()
                return nil
            }, arg)
            #expect(rc == 0)
            if rc == 0 { threads.append(th) } else { Unmanaged<Job>.fromOpaque(arg).release() }
        }
        for th in threads { pthread_join(th, nil) }
        #expect(failures.withLock { failed } == 0)
    }

    @Test(arguments: RPCProtocol.allCases)
    func deadlinesApply(proto: RPCProtocol) throws {
        let (server, url) = try makeServer()
        defer { server.stop(graceMs: 0) }
        let c = try client(url, Combo(proto: proto, http: .http2), timeoutMs: 50)
        defer { c.close() }
        do {
            _ = try c.unary(svc + "Slow", request: [])
            Issue.record("Slow finished within its deadline")
        } catch let e as ConnectError {
            #expect(e.code == .deadlineExceeded)
        }
    }

    @Test func aStoppedOrUnknownServerIsUnavailable() throws {
        let (server, url) = try makeServer()
        server.stop(graceMs: 0)
        let c = try client(url, Combo(proto: .connect, http: .http2))
        defer { c.close() }
        do {
            _ = try c.unary(svc + "Echo", request: [1])
            Issue.record("a call to a stopped in-process server succeeded")
        } catch let e as ConnectError {
            #expect(e.code == .unavailable)
            #expect(e.message.contains("inproc://"))
        }
    }

    @Test func urlsAndNamesAreChecked() throws {
        for bad in ["inproc://", "inproc://a b", "inproc://x%41"] {
            #expect(throws: ConnectError.self) { _ = try Client(baseURL: bad) }
        }
        let server = try Server()
        defer { server.stop(graceMs: 0) }
        #expect(throws: ConnectError.self) { _ = try server.listenInProcess("") }
        #expect(throws: ConnectError.self) { _ = try server.listenInProcess("no/slash") }
        let name = uniqueName()
        _ = try server.listenInProcess(name)
        let other = try Server()
        defer { other.stop(graceMs: 0) }
        do {
            _ = try other.listenInProcess(name)
            Issue.record("two servers took one in-process name")
        } catch let e as ConnectError {
            #expect(e.message.contains("already used"))
        }
    }

    @Test func aTrailingSlashIsIgnored() throws {
        let (server, url) = try makeServer()
        defer { server.stop(graceMs: 0) }
        let c = try Client(baseURL: url + "/")
        defer { c.close() }
        #expect(try c.unary(svc + "Echo", request: [9]).message == [9])
    }

    /// The transport seam: a client over a transport that wraps another one sees every exchange.
    @Test func aWrappingTransportSeesEveryCall() throws {
        final class Counting: ClientTransport, @unchecked Sendable {
            let inner: any ClientTransport
            let lock = Lock()
            var paths: [String] = []
            init(_ inner: any ClientTransport) { self.inner = inner }
            func execute(method: String, path: String, headers: HTTPHeaders, body: [UInt8], timeoutNs: UInt64?,
                         completion: @escaping (Result<HTTPResponse, HTTPError>) -> Void) {
                lock.withLock { paths.append(path) }
                inner.execute(method: method, path: path, headers: headers, body: body, timeoutNs: timeoutNs, completion: completion)
            }
            func stream(method: String, path: String, headers: HTTPHeaders, timeoutNs: UInt64?) -> HTTPClientCall {
                lock.withLock { paths.append(path) }
                return inner.stream(method: method, path: path, headers: headers, timeoutNs: timeoutNs)
            }
            func stream(method: String, path: String, headers: HTTPHeaders, body: [UInt8], endStream: Bool,
                        timeoutNs: UInt64?) -> HTTPClientCall {
                lock.withLock { paths.append(path) }
                return inner.stream(method: method, path: path, headers: headers, body: body, endStream: endStream,
                                    timeoutNs: timeoutNs)
            }
            func close() { inner.close() }
        }
        let (server, url) = try makeServer()
        defer { server.stop(graceMs: 0) }
        let name = String(url.dropFirst("inproc://".count))
        let http = try HTTPClient(endpoint: .inProcess(name: name), config: HTTPClientConfig(), group: try EventLoopGroup.shared())
        let counting = Counting(http)
        let c = try Client(transport: counting, baseURL: url)
        defer { c.close() }
        #expect(try c.unary(svc + "Echo", request: [1, 2]).message == [1, 2])
        let s = try c.stream(svc + "Count", kind: .serverStream)
        try s.send([1])
        s.closeSend()
        #expect(try s.receive() == [0, 1])
        #expect(try s.receive() == nil)
        #expect(counting.lock.withLock { counting.paths } == [svc + "Echo", svc + "Count"])
        #expect(throws: ConnectError.self) { _ = try Client(transport: counting, baseURL: url, pathPrefix: "api/") }
    }
}
