// The client's one call path: every call of every shape and protocol goes through the transport's
// `stream` — unary calls (Connect POST and GET, gRPC, gRPC-Web, and a unary method opened as a
// stream handle) with the whole request body and endStream, streams without — and never through
// `execute`. Also the unary stream handle's deferred start: a receive waiting for the send on
// another thread, cancel before the send, and the deadline of a call whose message never came.
import ConnectPlugin
import ConnectPluginHTTP
import Glibc
import Testing

private let svc = "/test.v1.CallPath/"

/// Forwards to an `HTTPClient` and records how each exchange was started.
private final class RecordingTransport: ClientTransport, @unchecked Sendable {
    let inner: HTTPClient
    private let lock = Lock()
    private var events: [String] = []

    init(_ inner: HTTPClient) { self.inner = inner }

    var all: [String] { lock.withLock { events } }
    func clear() { lock.withLock { events = [] } }
    private func add(_ s: String) { lock.withLock { events.append(s) } }

    func execute(method: String, path: String, headers: HTTPHeaders, body: [UInt8], timeoutNs: UInt64?,
                 completion: @escaping (Result<HTTPResponse, HTTPError>) -> Void) {
        add("execute \(method)")
        inner.execute(method: method, path: path, headers: headers, body: body, timeoutNs: timeoutNs, completion: completion)
    }

    func stream(method: String, path: String, headers: HTTPHeaders, timeoutNs: UInt64?) -> HTTPClientCall {
        add("stream \(method)")
        return inner.stream(method: method, path: path, headers: headers, timeoutNs: timeoutNs)
    }

    func stream(method: String, path: String, headers: HTTPHeaders, body: [UInt8], endStream: Bool,
                timeoutNs: UInt64?) -> HTTPClientCall {
        add("stream \(method) endStream=\(endStream)")
        return inner.stream(method: method, path: path, headers: headers, body: body, endStream: endStream, timeoutNs: timeoutNs)
    }

    func close() { inner.close() }
}

private func makeServer() throws -> (Server, Int) {
    let server = try Server()
    try server.handle(svc + "Echo") { call in call.request }
    try server.setNoSideEffects(svc + "Echo")
    try server.handleStream(svc + "Count", kind: .serverStream) { call in
        let n = Int(try call.receive()?.first ?? 0)
        for i in 0..<n { try call.send([UInt8(i)]) }
    }
    try server.handleStream(svc + "Sum", kind: .clientStream) { call in
        var total = 0
        while let m = try call.receive() { total += m.count }
        try call.send([UInt8(truncatingIfNeeded: total)])
    }
    try server.handleStream(svc + "Chat", kind: .bidiStream) { call in
        while let m = try call.receive() { try call.send(m) }
    }
    let addr = try server.listenTCP("127.0.0.1:0")
    try server.start()
    guard let colon = addr.lastIndex(of: ":"), let port = Int(addr[addr.index(after: colon)...]) else {
        throw ConnectError.local(.invalidArgument, "unexpected address \(addr)")
    }
    return (server, port)
}

private func recordingClient(port: Int, _ p: RPCProtocol, _ v: HTTPVersion, get: Bool = false) throws -> (Client, RecordingTransport) {
    var cfg = HTTPClientConfig()
    cfg.version = v
    let http = try HTTPClient(endpoint: .tcp(host: "127.0.0.1", port: port), config: cfg, group: try EventLoopGroup.shared())
    let t = RecordingTransport(http)
    var o = Client.Options()
    o.rpcProtocol = p
    o.httpVersion = v
    o.useHTTPGet = get
    return (try Client(transport: t, baseURL: "http://127.0.0.1:\(port)", options: o), t)
}

private let combos: [(RPCProtocol, HTTPVersion)] = [
    (.connect, .http2), (.connect, .http1_1), (.grpc, .http2), (.grpcWeb, .http2), (.grpcWeb, .http1_1),
]

@Suite("Client call path")
struct ClientCallPathTests {
    @Test(arguments: 0..<combos.count)
    func everyShapeGoesThroughStream(_ i: Int) throws {
        let (p, v) = combos[i]
        let (server, port) = try makeServer()
        defer { server.stop(graceMs: 1000) }
        let (c, t) = try recordingClient(port: port, p, v)
        defer { c.close() }

        #expect(try c.unary(svc + "Echo", request: [7, 8]).message == [7, 8])
        #expect(t.all == ["stream POST endStream=true"])
        t.clear()

        let u = try c.stream(svc + "Echo", kind: .unary)
        try u.send([9])
        #expect(try u.closeAndReceive() == [9])
        #expect(t.all == ["stream POST endStream=true"])
        t.clear()

        #expect(try c.serverStream(svc + "Count", request: [3]) == [[0], [1], [2]])
        #expect(try c.clientStream(svc + "Sum", messages: [[1, 2], [3]]) == [3])
        #expect(try c.bidiStream(svc + "Chat", messages: [[4], [5]]) == [[4], [5]])
        #expect(t.all.count == 3)
        #expect(t.all.allSatisfy { $0 == "stream POST endStream=false" || $0 == "stream POST" })
        #expect(!t.all.contains { $0.hasPrefix("execute") })
    }

    @Test(arguments: [HTTPVersion.http2, .http1_1])
    func connectGetGoesThroughStreamWithAnEmptyBody(_ v: HTTPVersion) throws {
        let (server, port) = try makeServer()
        defer { server.stop(graceMs: 1000) }
        let (c, t) = try recordingClient(port: port, .connect, v, get: true)
        defer { c.close() }
        #expect(try c.unary(svc + "Echo", request: [1, 2, 3], noSideEffects: true).message == [1, 2, 3])
        #expect(t.all == ["stream GET endStream=true"])
        t.clear()
        #expect(try c.unary(svc + "Echo", request: [4]).message == [4])
        #expect(t.all == ["stream POST endStream=true"])
    }

    @Test(arguments: RPCProtocol.allCases)
    func unaryHandleReceiveWaitsForTheSendOnAnotherThread(_ p: RPCProtocol) throws {
        let (server, port) = try makeServer()
        defer { server.stop(graceMs: 1000) }
        var o = Client.Options()
        o.rpcProtocol = p
        let c = try Client(baseURL: "http://127.0.0.1:\(port)", options: o)
        defer { c.close() }
        let s = try c.stream(svc + "Echo", kind: .unary, timeoutMs: 20_000)
        let got = Promise<Result<[UInt8]?, ConnectError>>()
        let box = Unmanaged.passRetained(Receiver(s, got)).toOpaque()
        var thread = pthread_t()
        #expect(pthread_create(&thread, nil, { arg in
            guard let arg else { return nil }
            let r = Unmanaged<Receiver>.fromOpaque(arg).takeRetainedValue()
            do { r.result.fulfill(.success(try r.stream.receive())) } catch let e as ConnectError {
                r.result.fulfill(.failure(e))
            } catch { r.result.fulfill(.failure(ConnectError(.internal, "\(error)"))) }
            return nil
        }, box) == 0)
        usleep(100_000)
        try s.send([42])
        s.closeSend()
        pthread_join(thread, nil)
        guard case .success(let m)? = got.wait() else {
            Issue.record("the waiting receive failed: \(String(describing: got.wait()))")
            return
        }
        #expect(m == [42])
        #expect(try s.receive() == nil)
    }

    @Test(arguments: RPCProtocol.allCases)
    func unaryHandleCanceledBeforeTheSendReportsCanceled(_ p: RPCProtocol) throws {
        let (server, port) = try makeServer()
        defer { server.stop(graceMs: 1000) }
        var o = Client.Options()
        o.rpcProtocol = p
        let c = try Client(baseURL: "http://127.0.0.1:\(port)", options: o)
        defer { c.close() }
        let s = try c.stream(svc + "Echo", kind: .unary)
        s.cancel()
        #expect { try s.send([1]) } throws: { ($0 as? ConnectError)?.code == .canceled }
        #expect { try s.receive() } throws: { ($0 as? ConnectError)?.code == .canceled }
    }

    @Test(arguments: RPCProtocol.allCases)
    func unaryHandleWithoutItsMessageEndsAtTheDeadline(_ p: RPCProtocol) throws {
        let (server, port) = try makeServer()
        defer { server.stop(graceMs: 1000) }
        var o = Client.Options()
        o.rpcProtocol = p
        let c = try Client(baseURL: "http://127.0.0.1:\(port)", options: o)
        defer { c.close() }
        let s = try c.stream(svc + "Echo", kind: .unary, timeoutMs: 200)
        #expect { try s.receive() } throws: { ($0 as? ConnectError)?.code == .deadlineExceeded }
    }
}

private final class Receiver: @unchecked Sendable {
    let stream: ClientStream
    let result: Promise<Result<[UInt8]?, ConnectError>>
    init(_ s: ClientStream, _ r: Promise<Result<[UInt8]?, ConnectError>>) {
        stream = s
        result = r
    }
}
