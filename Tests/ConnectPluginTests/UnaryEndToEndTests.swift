// End-to-end tests of the Swift API: a real server on loopback and a real client, over HTTP/1.1 and
// h2c, TCP and Unix sockets, both codecs; and a server and client on an event-loop group of their own.
import ConnectPlugin
import ConnectPluginHTTP
import Glibc
import Testing

private let echo = "/test.v1.EchoService/Echo"

private func makeServer(_ configure: (Server) throws -> Void = { _ in }, options: Server.Options = Server.Options()) throws -> (Server, String) {
    let server = try Server(options: options)
    try server.handle(echo) { call in call.request }
    try configure(server)
    let addr = try server.listenTCP("127.0.0.1:0")
    try server.start()
    return (server, "http://" + addr)
}

private func client(_ url: String, _ version: HTTPVersion, codec: String = "proto", compression: String = "identity", timeoutMs: Int64 = 0) throws -> Client {
    var o = Client.Options()
    o.httpVersion = version
    o.codec = codec
    o.compression = compression
    o.timeoutMs = timeoutMs
    return try Client(baseURL: url, options: o)
}

@Suite("Unary end to end", .serialized)
struct UnaryEndToEndTests {
    @Test(arguments: [HTTPVersion.http1_1, .http2])
    func echoRoundTrip(version: HTTPVersion) throws {
        let (server, url) = try makeServer()
        defer { server.stop(graceMs: 0) }
        let c = try client(url, version)
        defer { c.close() }
        for size in [0, 1, 64, 70_000, 1 << 20] {
            let msg = (0..<size).map { UInt8(truncatingIfNeeded: $0 &* 31) }
            let r = try c.unary(echo, request: msg)
            #expect(r.message == msg)
        }
    }

    @Test(arguments: [HTTPVersion.http1_1, .http2])
    func gzipBothWays(version: HTTPVersion) throws {
        let (server, url) = try makeServer()
        defer { server.stop(graceMs: 0) }
        let c = try client(url, version, compression: "gzip")
        defer { c.close() }
        let msg = [UInt8](repeating: 7, count: 100_000)
        #expect(try c.unary(echo, request: msg).message == msg)
    }

    @Test func unixSocket() throws {
        let server = try Server()
        defer { server.stop(graceMs: 0) }
        try server.handle(echo) { $0.request }
        let path = "/tmp/cp-swift-test-\(getpid()).sock"
        let addr = try server.listenUnix(path)
        #expect(addr == "unix:" + path)
        try server.start()
        for v in [HTTPVersion.http1_1, .http2] {
            let c = try client("unix://" + path, v)
            #expect(try c.unary(echo, request: [1, 2, 3]).message == [1, 2, 3])
            c.close()
        }
    }

    @Test(arguments: [HTTPVersion.http1_1, .http2])
    func errorsCarryCodeMessageDetailsAndMetadata(version: HTTPVersion) throws {
        let (server, url) = try makeServer { s in
            try s.register("/test.v1.EchoService/Fail") { call in
                try? call.addResponseHeader("x-header", Array("h".utf8))
                try? call.addResponseTrailer("x-trailer-bin", [0, 1, 2, 255])
                try? call.addErrorDetail(ErrorDetail(type: "google.rpc.ErrorInfo", value: [8, 1]))
                try? call.fail(.failedPrecondition, "not ready: ünïcode")
            }
        }
        defer { server.stop(graceMs: 0) }
        let c = try client(url, version)
        defer { c.close() }
        do {
            _ = try c.unary("/test.v1.EchoService/Fail", request: [])
            Issue.record("expected an error")
        } catch let e as ConnectError {
            #expect(e.kind == .rpc)
            #expect(e.code == .failedPrecondition)
            #expect(e.message == "not ready: ünïcode")
            #expect(e.details == [ErrorDetail(type: "google.rpc.ErrorInfo", value: [8, 1])])
            #expect(e.metadata.first("x-header") == Array("h".utf8))
            #expect(e.metadata.first("x-trailer-bin") == [0, 1, 2, 255])
        }
    }

    @Test(arguments: [HTTPVersion.http1_1, .http2])
    func headersAndTrailersRoundTrip(version: HTTPVersion) throws {
        let (server, url) = try makeServer { s in
            try s.register("/test.v1.EchoService/Meta") { call in
                let v = call.requestHeaders.first("x-in") ?? []
                let b = call.requestHeaders.first("x-in-bin") ?? []
                try? call.addResponseHeader("x-out", v)
                try? call.addResponseTrailer("x-out-bin", b)
                try? call.respond([])
            }
        }
        defer { server.stop(graceMs: 0) }
        let c = try client(url, version)
        defer { c.close() }
        var md = Metadata()
        try md.add("X-In", "value 1")
        try md.add("x-in-bin", [0, 0xFF, 0x10])
        let r = try c.unary("/test.v1.EchoService/Meta", request: [], headers: md)
        #expect(r.headers.firstString("x-out") == "value 1")
        #expect(r.trailers.first("x-out-bin") == [0, 0xFF, 0x10])
    }

    @Test(arguments: [HTTPVersion.http1_1, .http2])
    func unknownProcedureIsUnimplemented(version: HTTPVersion) throws {
        let (server, url) = try makeServer()
        defer { server.stop(graceMs: 0) }
        let c = try client(url, version)
        defer { c.close() }
        #expect(throws: ConnectError.self) { try c.unary("/test.v1.EchoService/Missing", request: []) }
        do { _ = try c.unary("/test.v1.EchoService/Missing", request: []) } catch let e as ConnectError { #expect(e.code == .unimplemented) }
    }

    @Test(arguments: [HTTPVersion.http1_1, .http2])
    func deadlineExceededWhileHandlerSleeps(version: HTTPVersion) throws {
        let (server, url) = try makeServer { s in
            try s.register("/test.v1.EchoService/Slow") { call in
                #expect(call.timeoutRemainingMs > 0 && call.timeoutRemainingMs <= 200)
                usleep(600_000)
                #expect(call.isDone)
                #expect(throws: ConnectError.self) { try call.respond([1]) }
            }
        }
        defer { server.stop(graceMs: 0) }
        let c = try client(url, version, timeoutMs: 200)
        defer { c.close() }
        let start = monotonicNowNs()
        do {
            _ = try c.unary("/test.v1.EchoService/Slow", request: [])
            Issue.record("expected deadline_exceeded")
        } catch let e as ConnectError {
            #expect(e.code == .deadlineExceeded)
        }
        #expect(monotonicNowNs() - start < 550_000_000)
        // The connection is still good for the next call.
        #expect(try c.unary(echo, request: [9], timeoutMs: 0).message == [9])
    }

    @Test(arguments: [HTTPVersion.http1_1, .http2])
    func oversizedRequestIsResourceExhausted(version: HTTPVersion) throws {
        var o = Server.Options()
        o.maxMessageBytes = 1000
        let (server, url) = try makeServer(options: o)
        defer { server.stop(graceMs: 0) }
        let c = try client(url, version)
        defer { c.close() }
        #expect(try c.unary(echo, request: [UInt8](repeating: 1, count: 1000)).message.count == 1000)
        do {
            _ = try c.unary(echo, request: [UInt8](repeating: 1, count: 1001))
            Issue.record("expected resource_exhausted")
        } catch let e as ConnectError {
            #expect(e.code == .resourceExhausted)
        }
        // A gzip bomb: small on the wire, too large once inflated.
        let g = try client(url, version, compression: "gzip")
        defer { g.close() }
        do {
            _ = try g.unary(echo, request: [UInt8](repeating: 0, count: 5_000_000))
            Issue.record("expected resource_exhausted")
        } catch let e as ConnectError {
            #expect(e.code == .resourceExhausted)
        }
    }

    @Test func handlerWithoutResponseIsInternal() throws {
        let (server, url) = try makeServer { s in try s.register("/test.v1.EchoService/Nothing") { _ in } }
        defer { server.stop(graceMs: 0) }
        let c = try client(url, .http2)
        defer { c.close() }
        do { _ = try c.unary("/test.v1.EchoService/Nothing", request: []) } catch let e as ConnectError { #expect(e.code == .internal) }
    }

    @Test func unreachableServerIsUnavailable() throws {
        for v in [HTTPVersion.http1_1, .http2] {
            let c = try client("http://127.0.0.1:1", v)
            do {
                _ = try c.unary(echo, request: [])
                Issue.record("expected unavailable")
            } catch let e as ConnectError {
                #expect(e.code == .unavailable)
            }
            c.close()
        }
    }

    @Test func slowHandlerDoesNotStallOthers() throws {
        let (server, url) = try makeServer { s in try s.register("/test.v1.EchoService/Slow") { call in usleep(1_000_000); try? call.respond([]) } }
        defer { server.stop(graceMs: 0) }
        var tid = pthread_t()
        let box = Unmanaged.passRetained(url as AnyObject).toOpaque()
        pthread_create(&tid, nil, { p in
            guard let p else { return nil }
            let u = Unmanaged<AnyObject>.fromOpaque(p).takeRetainedValue() as? String ?? ""
            if let c = try? Client(baseURL: u) { _ = try? c.unary("/test.v1.EchoService/Slow", request: []); c.close() }
            return nil
        }, box)
        usleep(100_000)
        let c = try client(url, .http2)
        let start = monotonicNowNs()
        for _ in 0..<20 { _ = try c.unary(echo, request: [1]) }
        #expect(monotonicNowNs() - start < 800_000_000)
        c.close()
        pthread_join(tid, nil)
    }

    @Test func concurrentCallsFromManyThreads() throws {
        let (server, url) = try makeServer()
        defer { server.stop(graceMs: 0) }
        for v in [HTTPVersion.http1_1, .http2] {
            let c = try client(url, v)
            final class Ctx { let c: Client; var failures = 0; let lock = Lock(); init(_ c: Client) { self.c = c } }
            let ctx = Ctx(c)
            var threads: [pthread_t] = []
            for _ in 0..<8 {
                var t = pthread_t()
                pthread_create(&t, nil, { p in
                    guard let p else { return nil }
                    let ctx = Unmanaged<Ctx>.fromOpaque(p).takeUnretainedValue()
                    for i in 0..<200 {
                        let msg = [UInt8(truncatingIfNeeded: i)]
                        if (try? ctx.c.unary(echo, request: msg).message) != msg { ctx.lock.withLock { ctx.failures += 1 } }
                    }
                    return nil
                }, Unmanaged.passUnretained(ctx).toOpaque())
                threads.append(t)
            }
            for t in threads { pthread_join(t, nil) }
            #expect(ctx.failures == 0)
            c.close()
        }
    }

    @Test func invalidArgumentsAreErrorsNotTraps() throws {
        #expect(throws: ConnectError.self) { try Client(baseURL: "ftp://x") }
        #expect(throws: ConnectError.self) { try Client(baseURL: "http://:80") }
        #expect(throws: ConnectError.self) { try Client(baseURL: "http://h:99999") }
        #expect(throws: ConnectError.self) { try Client(baseURL: "unix://relative") }
        let s = try Server()
        #expect(throws: ConnectError.self) { try s.listenTCP("nonsense") }
        #expect(throws: ConnectError.self) { try s.listenTCP("127.0.0.1:70000") }
        #expect(throws: ConnectError.self) { try s.register("NoSlash", { _ in }) }
        #expect(throws: ConnectError.self) { try s.register("/a/b/c", { _ in }) }
        try s.register("/a.B/C", { _ in })
        #expect(throws: ConnectError.self) { try s.register("/a.B/C", { _ in }) }
        try s.start()
        #expect(throws: ConnectError.self) { try s.register("/a.B/D", { _ in }) }
        s.stop(graceMs: 0)
        s.stop(graceMs: 0)
    }

    @Test(arguments: [HTTPVersion.http1_1, .http2])
    func closingAClientDuringACallFailsTheCallInsteadOfCrashing(version: HTTPVersion) throws {
        let (server, url) = try makeServer { s in try s.register("/test.v1.EchoService/Slow") { call in usleep(300_000); try? call.respond([1]) } }
        defer { server.stop(graceMs: 0) }
        final class Ctx { var c: Client?; var code: Code?; init(_ c: Client) { self.c = c } }
        let ctx = Ctx(try client(url, version))
        var t = pthread_t()
        pthread_create(&t, nil, { p in
            guard let p else { return nil }
            let ctx = Unmanaged<Ctx>.fromOpaque(p).takeUnretainedValue()
            do { _ = try ctx.c?.unary("/test.v1.EchoService/Slow", request: []) } catch let e as ConnectError { ctx.code = e.code } catch {}
            return nil
        }, Unmanaged.passUnretained(ctx).toOpaque())
        usleep(100_000)
        ctx.c?.close()
        pthread_join(t, nil)
        ctx.c = nil
        #expect(ctx.code == .canceled || ctx.code == .unavailable)
        usleep(400_000)  // the server answers after the client is gone: nothing may crash
    }
}

/// The fds registered on `loop` now (read on its thread).
private func registered(_ loop: EventLoop) -> Int {
    let p = Promise<Int>()
    loop.execute { p.fulfill(loop.registeredCount) }
    return p.wait() ?? -1
}

@Suite("Own event-loop group")
struct OwnEventLoopGroupTests {
    /// A server and a client on a group of their own (Options.eventLoopGroup): the call works, and
    /// the listener and both ends of the connection are registered on that group's one loop.
    @Test(arguments: [HTTPVersion.http1_1, .http2])
    func serverAndClientOnOwnGroup(version: HTTPVersion) throws {
        let group = try EventLoopGroup(count: 1)
        let loop = group.loops[0]
        #expect(registered(loop) == 0)
        var so = Server.Options()
        so.eventLoopGroup = group
        let (server, url) = try makeServer(options: so)
        defer { server.stop(graceMs: 0) }
        #expect(registered(loop) == 1) // the listener
        var co = Client.Options()
        co.httpVersion = version
        co.eventLoopGroup = group
        let c = try Client(baseURL: url, options: co)
        defer { c.close() }
        #expect(try c.unary(echo, request: [7, 8, 9]).message == [7, 8, 9])
        // Listener, the server's connection and the client's (kept open for the next call).
        #expect(registered(loop) == 3)
        #expect(try c.unary(echo, request: [1]).message == [1])
        #expect(registered(loop) == 3)
    }
}
