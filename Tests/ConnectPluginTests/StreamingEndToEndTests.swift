// End-to-end tests of streaming and of the three protocols: our server and our client on loopback,
// every shape × protocol × HTTP version × codec × compression, plus errors, deadlines, cancellation
// and back-pressure. (Interop with other implementations is in Tests/interop.)
import ConnectPlugin
import ConnectPluginHTTP
import Glibc
import Testing

private let svc = "/test.v1.StreamService/"

/// A server with: Echo (unary), Count (server stream: n messages of the request's size),
/// Sum (client stream: total bytes), Chat (bidi echo), Fail (bidi: fails after the first message).
private func makeServer(maxMessageBytes: Int = 4 << 20) throws -> (Server, String) {
    var o = Server.Options()
    o.maxMessageBytes = maxMessageBytes
    let server = try Server(options: o)
    try server.handle(svc + "Echo") { $0.request }
    try server.setNoSideEffects(svc + "Echo")
    try server.register(svc + "Count", kind: .serverStream) { call in
        guard let req = try? call.receive() else { return }
        let n = req.first.map(Int.init) ?? 0
        for i in 0..<n { try? call.send([UInt8(truncatingIfNeeded: i)] + req) }
        try? call.addResponseTrailer("x-count", Array(String(n).utf8))
    }
    try server.register(svc + "Sum", kind: .clientStream) { call in
        var total = 0
        var count = 0
        do {
            while let m = try call.receive() {
                total += m.count
                count += 1
            }
        } catch let e as ConnectError {
            try? call.fail(e.code, e.message)
            return
        } catch {
            return
        }
        try? call.send(Array("\(count):\(total)".utf8))
    }
    try server.register(svc + "Chat", kind: .bidiStream) { call in
        while let m = try? call.receive() {
            if (try? call.send(m)) == nil { return }
        }
    }
    try server.register(svc + "Fail", kind: .bidiStream) { call in
        _ = try? call.receive()
        try? call.addErrorDetail(ErrorDetail(type: "google.rpc.ErrorInfo", value: [0x0a, 0x03, 0x61, 0x62, 0x63]))
        try? call.addResponseTrailer("x-why", Array("because".utf8))
        try? call.fail(.failedPrecondition, "no more ☺\n")
    }
    let addr = try server.listenTCP("127.0.0.1:0")
    try server.start()
    return (server, "http://" + addr)
}

private struct Combo: CustomStringConvertible, Sendable {
    var proto: RPCProtocol
    var http: HTTPVersion
    var codec: String
    var compression: String
    var description: String { "\(proto.rawValue)-\(http == .http2 ? "h2" : "h1")-\(codec)-\(compression)" }
}

private let combos: [Combo] = {
    var out: [Combo] = []
    for p in RPCProtocol.allCases {
        for h in [HTTPVersion.http1_1, .http2] where !(p == .grpc && h == .http1_1) {
            for c in ["proto", "json"] {
                for z in ["identity", "gzip"] { out.append(Combo(proto: p, http: h, codec: c, compression: z)) }
            }
        }
    }
    return out
}()

private func client(_ url: String, _ c: Combo, timeoutMs: Int64 = 0) throws -> Client {
    var o = Client.Options()
    o.rpcProtocol = c.proto
    o.httpVersion = c.http
    o.codec = c.codec
    o.compression = c.compression
    o.timeoutMs = timeoutMs
    return try Client(baseURL: url, options: o)
}

@Suite("Streaming end to end", .serialized)
struct StreamingEndToEndTests {
    @Test(arguments: combos)
    fileprivate func allShapes(combo: Combo) throws {
        let (server, url) = try makeServer()
        defer { server.stop(graceMs: 0) }
        let c = try client(url, combo)
        defer { c.close() }

        // Unary (with a message big enough to be compressed).
        let big = [UInt8](repeating: 5, count: 5000)
        #expect(try c.unary(svc + "Echo", request: big).message == big)

        // Server streaming.
        let s = try c.stream(svc + "Count", kind: .serverStream)
        try s.send([3, 9, 9])
        s.closeSend()
        var got: [[UInt8]] = []
        while let m = try s.receive() { got.append(m) }
        #expect(got == [[0, 3, 9, 9], [1, 3, 9, 9], [2, 3, 9, 9]])
        #expect(s.responseTrailers.firstString("x-count") == "3")

        // Client streaming.
        let cs = try c.stream(svc + "Sum", kind: .clientStream)
        for i in 0..<20 { try cs.send([UInt8](repeating: 1, count: i * 100)) }
        #expect(try cs.closeAndReceive() == Array("20:19000".utf8))

        // Bidi: half-duplex works on every version (send all, then read).
        let b = try c.stream(svc + "Chat", kind: .bidiStream)
        for i in 0..<5 { try b.send([UInt8(i)]) }
        b.closeSend()
        var echoed: [[UInt8]] = []
        while let m = try b.receive() { echoed.append(m) }
        #expect(echoed == (0..<5).map { [UInt8($0)] })

        // Errors with details and trailers.
        let f = try c.stream(svc + "Fail", kind: .bidiStream)
        try f.send([1])
        f.closeSend()
        do {
            _ = try f.receive()
            Issue.record("Fail succeeded")
        } catch let e as ConnectError {
            #expect(e.code == .failedPrecondition)
            #expect(e.message == "no more ☺\n")
            #expect(e.details == [ErrorDetail(type: "google.rpc.ErrorInfo", value: [0x0a, 0x03, 0x61, 0x62, 0x63])])
            #expect(e.metadata.firstString("x-why") == "because")
        }
    }

    @Test(arguments: combos)
    fileprivate func unaryThroughAStreamHandle(combo: Combo) throws {
        // What hosts use for cancellable unary calls: open_stream with the unary kind.
        let (server, url) = try makeServer()
        defer { server.stop(graceMs: 0) }
        let c = try client(url, combo)
        defer { c.close() }
        for msg in [[UInt8](), [1, 2, 3], [UInt8](repeating: 4, count: 100_000)] {
            let s = try c.stream(svc + "Echo", kind: .unary)
            try s.send(msg)
            #expect(try s.closeAndReceive() == msg)
        }
        let s = try c.stream(svc + "Nope", kind: .unary)
        try s.send([1])
        do {
            _ = try s.closeAndReceive()
            Issue.record("unknown procedure succeeded")
        } catch let e as ConnectError {
            #expect(e.code == .unimplemented)
        }
    }

    @Test(arguments: RPCProtocol.allCases)
    func fullDuplexBidiOverHTTP2(proto: RPCProtocol) throws {
        let (server, url) = try makeServer()
        defer { server.stop(graceMs: 0) }
        let c = try client(url, Combo(proto: proto, http: .http2, codec: "proto", compression: "identity"))
        defer { c.close() }
        let b = try c.stream(svc + "Chat", kind: .bidiStream)
        for i in 0..<50 {
            let msg = [UInt8](repeating: UInt8(i), count: i * 10 + 1)
            try b.send(msg)
            #expect(try b.receive() == msg)
        }
        b.closeSend()
        #expect(try b.receive() == nil)
    }

    @Test(arguments: RPCProtocol.allCases)
    func unknownProcedureIsUnimplemented(proto: RPCProtocol) throws {
        let (server, url) = try makeServer()
        defer { server.stop(graceMs: 0) }
        let c = try client(url, Combo(proto: proto, http: .http2, codec: "proto", compression: "identity"))
        defer { c.close() }
        #expect(throws: ConnectError.self) { _ = try c.unary(svc + "Nope", request: []) }
        do {
            _ = try c.unary(svc + "Nope", request: [])
        } catch let e as ConnectError {
            #expect(e.code == .unimplemented)
        }
        let s = try c.stream(svc + "Nope", kind: .bidiStream)
        s.closeSend()
        do {
            _ = try s.receive()
            Issue.record("unknown stream succeeded")
        } catch let e as ConnectError {
            #expect(e.code == .unimplemented)
        }
    }

    @Test(arguments: RPCProtocol.allCases)
    func clientDeadlineEvenWhenTheServerIgnoresIt(proto: RPCProtocol) throws {
        let (server, url) = try makeServer()
        defer { server.stop(graceMs: 0) }
        let c = try client(url, Combo(proto: proto, http: .http2, codec: "proto", compression: "identity"), timeoutMs: 200)
        defer { c.close() }
        let b = try c.stream(svc + "Chat", kind: .bidiStream)
        let t0 = monotonicNowNs()
        do {
            _ = try b.receive()  // the server waits for a message that never comes
            Issue.record("receive returned")
        } catch let e as ConnectError {
            #expect(e.code == .deadlineExceeded)
        }
        #expect(monotonicNowNs() - t0 < 3_000_000_000)
    }

    @Test func cancelReachesTheServerHandler() throws {
        let server = try Server()
        defer { server.stop(graceMs: 0) }
        let sawCancel = Promise<ConnectError>()
        try server.register(svc + "Wait", kind: .bidiStream) { call in
            do {
                while try call.receive() != nil {}
            } catch let e as ConnectError {
                sawCancel.fulfill(e)
            } catch {}
        }
        let addr = try server.listenTCP("127.0.0.1:0")
        try server.start()
        for version in [HTTPVersion.http2, .http1_1] {
            let c = try client("http://" + addr, Combo(proto: .connect, http: version, codec: "proto", compression: "identity"))
            let s = try c.stream(svc + "Wait", kind: .bidiStream)
            try s.send([1])
            usleep(100_000)
            s.cancel()
            do {
                _ = try s.receive()
                Issue.record("receive after cancel returned")
            } catch let e as ConnectError {
                #expect(e.code == .canceled)
            }
            c.close()
            if version == .http2 { break }
        }
        let e = sawCancel.wait()
        #expect(e?.code == .canceled)
    }

    @Test(arguments: [HTTPVersion.http2, .http1_1])
    func cancelFromAnotherThreadUnblocksReceive(version: HTTPVersion) throws {
        let (server, url) = try makeServer()
        defer { server.stop(graceMs: 0) }
        let c = try client(url, Combo(proto: .connect, http: version, codec: "proto", compression: "identity"))
        defer { c.close() }
        let s = try c.stream(svc + "Chat", kind: .bidiStream)
        try s.send([1])
        #expect(try s.receive() == [1])
        let canceled = Promise<Bool>()
        var t = pthread_t()
        let box = Unmanaged.passRetained(s as AnyObject).toOpaque()
        pthread_create(&t, nil, { arg in
            usleep(200_000)
            guard let arg else { return nil }
            let st = Unmanaged<AnyObject>.fromOpaque(arg).takeRetainedValue() as? ClientStream
            st?.cancel()
            return nil
        }, box)
        do {
            _ = try s.receive()  // blocked until the other thread cancels
            Issue.record("receive returned")
        } catch let e as ConnectError {
            #expect(e.code == .canceled)
            canceled.fulfill(true)
        }
        pthread_join(t, nil)
        #expect(canceled.isFulfilled)
    }

    @Test func moreOpenStreamsThanHandlerThreads() throws {
        // Each open stream holds a handler thread; the pool (8 kept ready) grows instead of
        // leaving the 9th call waiting behind 8 idle-but-open streams.
        let (server, url) = try makeServer()
        defer { server.stop(graceMs: 0) }
        let c = try client(url, Combo(proto: .grpc, http: .http2, codec: "proto", compression: "identity"))
        defer { c.close() }
        var open: [ClientStream] = []
        for i in 0..<24 {
            let s = try c.stream(svc + "Chat", kind: .bidiStream, timeoutMs: 10_000)
            try s.send([UInt8(i)])
            #expect(try s.receive() == [UInt8(i)])
            open.append(s)
        }
        for s in open {
            s.closeSend()
            #expect(try s.receive() == nil)
        }
    }

    @Test func slowReaderBoundsMemory() throws {
        // 64 MiB offered by the handler; the client reads slowly at first. The handler's sends must
        // block (back-pressure) instead of queueing everything.
        let server = try Server()
        defer { server.stop(graceMs: 0) }
        let lock = Lock()
        var sent = 0
        try server.register(svc + "Flood", kind: .serverStream) { call in
            _ = try? call.receive()
            // Incompressible, so the wire carries all of it (responses are gzipped when they shrink).
            var x: UInt64 = 0x9E3779B97F4A7C15
            let chunk = (0..<(64 << 10)).map { _ -> UInt8 in
                x ^= x << 13
                x ^= x >> 7
                x ^= x << 17
                return UInt8(truncatingIfNeeded: x)
            }
            for _ in 0..<1024 {
                if (try? call.send(chunk)) == nil { return }
                lock.withLock { sent += 1 }
            }
        }
        let addr = try server.listenTCP("127.0.0.1:0")
        try server.start()
        let c = try client("http://" + addr, Combo(proto: .grpc, http: .http2, codec: "proto", compression: "identity"))
        defer { c.close() }
        let s = try c.stream(svc + "Flood", kind: .serverStream)
        try s.send([])
        s.closeSend()
        usleep(800_000)
        let early = lock.withLock { sent }
        // Windows and buffers allow a few MiB in flight, never the whole 64 MiB; and something moved.
        #expect(early > 0 && early < 200, "the handler sent \(early) × 64 KiB before the client read anything")
        var n = 0
        while let m = try s.receive() {
            n += 1
            #expect(m.count == 64 << 10)
        }
        #expect(n == 1024)
    }

    @Test func connectGETForSideEffectFreeMethods() throws {
        let (server, url) = try makeServer()
        defer { server.stop(graceMs: 0) }
        for codec in ["proto", "json"] {
            var o = Client.Options()
            o.useHTTPGet = true
            o.codec = codec
            o.httpVersion = .http1_1
            let c = try Client(baseURL: url, options: o)
            defer { c.close() }
            let msg: [UInt8] = codec == "json" ? Array("{\"a\": \"b c\"}".utf8) : [0, 1, 2, 0xff]
            #expect(try c.unary(svc + "Echo", request: msg, noSideEffects: true).message == msg)
        }
    }

    @Test func oversizedStreamMessageIsResourceExhausted() throws {
        let (server, url) = try makeServer(maxMessageBytes: 1000)
        defer { server.stop(graceMs: 0) }
        for proto in RPCProtocol.allCases {
            let c = try client(url, Combo(proto: proto, http: .http2, codec: "proto", compression: "identity"))
            defer { c.close() }
            let s = try c.stream(svc + "Sum", kind: .clientStream)
            try s.send([UInt8](repeating: 1, count: 10))
            try s.send([UInt8](repeating: 1, count: 2000))
            s.closeSend()
            do {
                _ = try s.receive()
                Issue.record("oversized message accepted (\(proto))")
            } catch let e as ConnectError {
                #expect(e.code == .resourceExhausted, "\(proto): \(e)")
            }
        }
    }
}
