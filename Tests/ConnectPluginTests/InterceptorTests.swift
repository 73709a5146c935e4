// Interceptors end to end: our server and our client on loopback, every protocol, unary (POST and
// Connect GET) and streaming; rejection, headers and trailers both ways, ordering, per-procedure
// chains, the result seen by end hooks, and opt-in message observation.
import ConnectPlugin
import ConnectPluginHTTP
import Glibc
import Testing

private let svc = "/test.v1.Interceptors/"

/// A thread-safe log of hook events.
private final class Log: @unchecked Sendable {
    private let lock = Lock()
    private var events: [String] = []
    func add(_ s: String) { lock.withLock { events.append(s) } }
    var all: [String] { lock.withLock { events } }
    func clear() { lock.withLock { events = [] } }
}

/// Rejects calls without "authorization: Bearer secret".
private struct Auth: Interceptor {
    let log: Log
    func start(_ call: InterceptorCall) throws {
        if call.requestHeaders.firstString("authorization") != "Bearer secret" {
            log.add("reject \(call.procedure)")
            throw ConnectError(.unauthenticated, "missing or wrong token")
        }
    }
}

/// Logs start and end under a name.
private struct Named: Interceptor {
    let name: String
    let log: Log
    func start(_ call: InterceptorCall) throws { log.add("start \(name)") }
    func end(_ call: InterceptorCall, result: CallResult) { log.add("end \(name) \(result.code.name)") }
}

private func makeServer(_ setup: (Server) throws -> Void) throws -> (Server, String, Log) {
    let server = try Server()
    let handlerLog = Log()
    try server.handle(svc + "Echo") { call in
        handlerLog.add("handler")
        return call.request + Array((call.requestHeaders.firstString("x-from-client") ?? "").utf8)
    }
    try server.setNoSideEffects(svc + "Echo")
    try server.handle(svc + "Missing") { _ in throw ConnectError(.notFound, "no such key") }
    try server.handleStream(svc + "Count", kind: .serverStream) { call in
        handlerLog.add("handler")
        let n = Int(try call.receive()?.first ?? 0)
        for i in 0..<n { try call.send([UInt8(i)]) }
    }
    try server.handleStream(svc + "Chat", kind: .bidiStream) { call in
        handlerLog.add("handler")
        while let m = try call.receive() { try call.send(m) }
    }
    try server.handleStream(svc + "Sum", kind: .clientStream) { call in
        handlerLog.add("handler")
        var total = 0
        while let m = try call.receive() { total += m.count }
        try call.send([UInt8(truncatingIfNeeded: total)])
    }
    try setup(server)
    let addr = try server.listenTCP("127.0.0.1:0")
    try server.start()
    return (server, "http://" + addr, handlerLog)
}

private func client(_ url: String, _ p: RPCProtocol, get: Bool = false, _ setup: (inout Client.Options) -> Void = { _ in }) throws -> Client {
    var o = Client.Options()
    o.rpcProtocol = p
    o.useHTTPGet = get
    setup(&o)
    return try Client(baseURL: url, options: o)
}

private func token() -> Metadata {
    var md = Metadata()
    try? md.add("authorization", "Bearer secret")
    return md
}

private func expectCode(_ code: Code, _ body: () throws -> Void) {
    do {
        try body()
        Issue.record("expected \(code.name), the call succeeded")
    } catch let e as ConnectError {
        #expect(e.code == code, "\(e)")
    } catch {
        Issue.record("unexpected error \(error)")
    }
}

@Suite struct InterceptorTests {
    @Test(arguments: RPCProtocol.allCases)
    func authRejectsWithoutTokenUnaryAndStreaming(_ p: RPCProtocol) throws {
        let rejections = Log()
        let (server, url, handlers) = try makeServer { try $0.addInterceptor(Auth(log: rejections)) }
        defer { server.stop(graceMs: 1000) }
        let c = try client(url, p)
        defer { c.close() }

        expectCode(.unauthenticated) { _ = try c.unary(svc + "Echo", request: [1]) }
        expectCode(.unauthenticated) {
            let s = try c.stream(svc + "Count", kind: .serverStream)
            try s.send([3])
            s.closeSend()
            _ = try s.receiveAll()
        }
        expectCode(.unauthenticated) {
            let s = try c.stream(svc + "Chat", kind: .bidiStream)
            try? s.send([1])
            s.closeSend()
            _ = try s.receiveAll()
        }
        expectCode(.unauthenticated) {
            let s = try c.stream(svc + "Sum", kind: .clientStream)
            try? s.send([1, 2])
            _ = try s.closeAndReceive()
        }
        #expect(handlers.all.isEmpty, "a rejected call reached its handler: \(handlers.all)")
        #expect(rejections.all.count == 4)

        // With the token every shape goes through.
        #expect(try c.unary(svc + "Echo", request: [1], headers: token()).message == [1])
        let s = try c.stream(svc + "Count", kind: .serverStream, headers: token())
        try s.send([3])
        s.closeSend()
        #expect(try s.receiveAll() == [[0], [1], [2]])
        let chat = try c.stream(svc + "Chat", kind: .bidiStream, headers: token())
        try chat.send([7])
        #expect(try chat.receive() == [7])
        chat.closeSend()
        #expect(try chat.receive() == nil)
        #expect(handlers.all.count == 3)
    }

    @Test func authOverConnectGET() throws {
        let (server, url, handlers) = try makeServer { try $0.addInterceptor(Auth(log: Log())) }
        defer { server.stop(graceMs: 1000) }
        let c = try client(url, .connect, get: true)
        defer { c.close() }
        expectCode(.unauthenticated) { _ = try c.unary(svc + "Echo", request: [1], noSideEffects: true) }
        #expect(handlers.all.isEmpty)
        #expect(try c.unary(svc + "Echo", request: [5], headers: token(), noSideEffects: true).message == [5])
    }

    @Test(arguments: RPCProtocol.allCases)
    func serverInterceptorAddsHeaderAndTrailers(_ p: RPCProtocol) throws {
        let (server, url, _) = try makeServer { s in
            try s.intercept(start: { call in
                try call.addResponseHeader("x-icpt-header", Array("h-\(call.rpcProtocol.rawValue)".utf8))
                try call.addResponseTrailer("x-icpt-start", Array("s".utf8))
            }, end: { call, result in
                try? call.addResponseTrailer("x-icpt-end", Array(result.code.name.utf8))
                // Headers can no longer be added once the handler ran.
                #expect(throws: ConnectError.self) { try call.addResponseHeader("x-late", [0x61]) }
            })
        }
        defer { server.stop(graceMs: 1000) }
        let c = try client(url, p)
        defer { c.close() }
        let r = try c.unary(svc + "Echo", request: [1])
        #expect(r.headers.firstString("x-icpt-header") == "h-\(p.rawValue)")
        #expect(r.trailers.firstString("x-icpt-start") == "s")
        #expect(r.trailers.firstString("x-icpt-end") == "ok")

        let s = try c.stream(svc + "Count", kind: .serverStream)
        try s.send([2])
        s.closeSend()
        #expect(try s.receiveAll().count == 2)
        #expect(s.responseHeaders.firstString("x-icpt-header") == "h-\(p.rawValue)")
        #expect(s.responseTrailers.firstString("x-icpt-start") == "s")
        #expect(s.responseTrailers.firstString("x-icpt-end") == "ok")

        // An error response carries them too (in the error's metadata).
        do {
            _ = try c.unary(svc + "Missing", request: [])
            Issue.record("Missing succeeded")
        } catch let e as ConnectError {
            #expect(e.code == .notFound)
            #expect(e.metadata.firstString("x-icpt-end") == "not_found")
            #expect(e.metadata.firstString("x-icpt-header") == "h-\(p.rawValue)")
        }
    }

    @Test(arguments: RPCProtocol.allCases)
    func clientInterceptorAddsRequestHeader(_ p: RPCProtocol) throws {
        let seen = Log()
        let (server, url, _) = try makeServer { s in
            try s.intercept(start: { call in seen.add(call.requestHeaders.firstString("x-from-client") ?? "-") })
        }
        defer { server.stop(graceMs: 1000) }
        let c = try client(url, p) { o in
            o.intercept(start: { call in
                try call.addRequestHeader("x-from-client", Array("abc".utf8))
                #expect(call.requestHeaders.firstString("x-from-client") == "abc")
                #expect(call.side == .client && call.kind == .unary || call.kind == .bidiStream)
            })
        }
        defer { c.close() }
        #expect(try c.unary(svc + "Echo", request: [0x2d]).message == Array("-abc".utf8))
        let chat = try c.stream(svc + "Chat", kind: .bidiStream)
        try chat.send([1])
        chat.closeSend()
        #expect(try chat.receiveAll() == [[1]])
        #expect(seen.all == ["abc", "abc"])
    }

    @Test func clientInterceptorRejectsBeforeSending() throws {
        let (server, url, handlers) = try makeServer { _ in }
        defer { server.stop(graceMs: 1000) }
        let ends = Log()
        let c = try client(url, .grpc) { o in
            o.intercept(start: { _ in throw ConnectError(.permissionDenied, "not from this client") },
                        end: { _, r in ends.add(r.code.name) })
        }
        defer { c.close() }
        expectCode(.permissionDenied) { _ = try c.unary(svc + "Echo", request: [1]) }
        expectCode(.permissionDenied) { _ = try c.stream(svc + "Chat", kind: .bidiStream) }
        #expect(handlers.all.isEmpty)
        #expect(ends.all == ["permission_denied", "permission_denied"])
    }

    @Test(arguments: [RPCProtocol.connect, .grpc])
    func chainOrderAndPerProcedure(_ p: RPCProtocol) throws {
        let log = Log()
        let (server, url, _) = try makeServer { s in
            try s.addInterceptor(Named(name: "a", log: log))
            try s.addInterceptor(Named(name: "p", log: log), procedure: svc + "Missing")
            try s.addInterceptor(Named(name: "b", log: log))
        }
        defer { server.stop(graceMs: 1000) }
        let c = try client(url, p) { o in
            o.interceptors.append(Named(name: "c1", log: log))
            o.interceptors.append(Named(name: "c2", log: log))
        }
        defer { c.close() }
        _ = try c.unary(svc + "Echo", request: [1])
        #expect(log.all == ["start c1", "start c2", "start a", "start b", "end b ok", "end a ok", "end c2 ok", "end c1 ok"])
        log.clear()
        expectCode(.notFound) { _ = try c.unary(svc + "Missing", request: []) }
        // Server-wide first (in the order added), then the procedure's; ends in reverse.
        #expect(log.all == ["start c1", "start c2", "start a", "start b", "start p",
                            "end p not_found", "end b not_found", "end a not_found", "end c2 not_found", "end c1 not_found"])
        log.clear()
        let s = try c.stream(svc + "Chat", kind: .bidiStream)
        try s.send([1])
        s.closeSend()
        _ = try s.receiveAll()
        #expect(log.all == ["start c1", "start c2", "start a", "start b", "end b ok", "end a ok", "end c2 ok", "end c1 ok"])
    }

    @Test func rejectionStopsTheChainAndEndsSeeTheCode() throws {
        let log = Log()
        let (server, url, _) = try makeServer { s in
            try s.addInterceptor(Named(name: "a", log: log))
            try s.intercept(start: { _ in
                log.add("start deny")
                throw ConnectError(.unauthenticated, "no")
            }, end: { _, r in log.add("end deny \(r.code.name) \(r.message)") })
            try s.addInterceptor(Named(name: "never", log: log))
        }
        defer { server.stop(graceMs: 1000) }
        let c = try client(url, .grpcWeb)
        defer { c.close() }
        expectCode(.unauthenticated) { _ = try c.unary(svc + "Echo", request: [1]) }
        #expect(log.all == ["start a", "start deny", "end deny unauthenticated no", "end a unauthenticated"])
    }

    @Test(arguments: RPCProtocol.allCases)
    func endHookSeesFinalCodeAndCallInfo(_ p: RPCProtocol) throws {
        let log = Log()
        let (server, url, _) = try makeServer { s in
            try s.intercept(start: { call in
                log.add("start \(call.procedure) \(call.kind) \(call.rpcProtocol.rawValue) \(call.codec) deadline=\(call.timeoutRemainingMs > 0)")
                call.setValue(7, forKey: "seven")
            }, end: { call, r in
                log.add("end \(r.code.name) \(r.message) \((call.value(forKey: "seven") as? Int) ?? 0)")
            })
        }
        defer { server.stop(graceMs: 1000) }
        let c = try client(url, p) { $0.timeoutMs = 60_000 }
        defer { c.close() }
        expectCode(.notFound) { _ = try c.unary(svc + "Missing", request: []) }
        #expect(log.all == ["start \(svc)Missing unary \(p.rawValue) proto deadline=true", "end not_found no such key 7"])
        log.clear()
        let s = try c.stream(svc + "Sum", kind: .clientStream)
        try s.send([1, 2, 3])
        #expect(try s.closeAndReceive() == [3])
        #expect(log.all == ["start \(svc)Sum clientStream \(p.rawValue) proto deadline=true", "end ok  7"])
    }

    @Test func clientEndSeesCancelAndStreamResult() throws {
        let (server, url, _) = try makeServer { _ in }
        defer { server.stop(graceMs: 1000) }
        let log = Log()
        let c = try client(url, .grpc) { o in
            o.intercept(end: { _, r in log.add(r.code.name) })
        }
        defer { c.close() }
        let s = try c.stream(svc + "Chat", kind: .bidiStream)
        try s.send([1])
        #expect(try s.receive() == [1])
        s.cancel()
        #expect(log.all == ["canceled"])
        s.cancel()
        #expect(log.all == ["canceled"], "end hooks run once")
        expectCode(.unimplemented) { _ = try c.unary(svc + "Nope", request: []) }
        #expect(log.all == ["canceled", "unimplemented"])
    }

    /// A call the client abandons at its deadline ends for the interceptors there and then, while
    /// the handler still runs: deadline_exceeded (the server's timer) or canceled (the client's
    /// RST_STREAM can arrive first; the server's copy of the deadline is a little later).
    @Test func serverEndRunsWhenTheClientGivesUp() throws {
        let log = Log()
        let handlerSawEnd = Log()
        let (server, url, _) = try makeServer { s in
            try s.handle(svc + "Slow") { call in
                // Until the end hook ran (at most 10 s).
                for _ in 0..<1000 where log.all.isEmpty { usleep(10_000) }
                handlerSawEnd.add(log.all.isEmpty ? "no" : "yes")
                return call.request
            }
            try s.intercept(procedure: svc + "Slow", end: { _, r in log.add(r.code.name) })
        }
        defer { server.stop(graceMs: 1000) }
        let c = try client(url, .grpc) { $0.timeoutMs = 200 }
        defer { c.close() }
        expectCode(.deadlineExceeded) { _ = try c.unary(svc + "Slow", request: [1]) }
        for _ in 0..<1000 where handlerSawEnd.all.isEmpty { usleep(10_000) }
        #expect(handlerSawEnd.all == ["yes"])
        #expect(log.all == ["deadline_exceeded"] || log.all == ["canceled"], "\(log.all)")
    }

    @Test func messageObservationIsOptIn() throws {
        let serverMessages = Log()
        let clientMessages = Log()
        let (server, url, _) = try makeServer { s in
            try s.addInterceptor(Named(name: "quiet", log: Log()))
            try s.addInterceptor(ClosureInterceptor(message: { _, d, b in serverMessages.add("\(d) \(b)") }))
        }
        defer { server.stop(graceMs: 1000) }
        let c = try client(url, .connect) { o in
            o.interceptors.append(ClosureInterceptor(message: { _, d, b in clientMessages.add("\(d) \(b)") }))
        }
        defer { c.close() }
        _ = try c.unary(svc + "Echo", request: [9])
        #expect(serverMessages.all == ["request [9]", "response [9]"])
        #expect(clientMessages.all == ["request [9]", "response [9]"])
        serverMessages.clear()
        clientMessages.clear()
        let s = try c.stream(svc + "Chat", kind: .bidiStream)
        try s.send([1])
        #expect(try s.receive() == [1])
        try s.send([2])
        #expect(try s.receive() == [2])
        s.closeSend()
        #expect(try s.receive() == nil)
        #expect(serverMessages.all == ["request [1]", "response [1]", "request [2]", "response [2]"])
        #expect(clientMessages.all == ["request [1]", "response [1]", "request [2]", "response [2]"])
    }

    /// One thread sends while another receives on a client bidi stream: the message hooks of that
    /// one call still run one at a time, as the header promises.
    @Test func messageHooksOfOneCallNeverOverlap() throws {
        let (server, url, _) = try makeServer { _ in }
        defer { server.stop(graceMs: 1000) }
        let gate = Lock()
        nonisolated(unsafe) var inside = 0
        nonisolated(unsafe) var overlaps = 0
        nonisolated(unsafe) var seen = 0
        let c = try client(url, .connect) { o in
            o.interceptors.append(ClosureInterceptor(message: { _, _, _ in
                gate.withLock {
                    inside += 1
                    seen += 1
                    if inside > 1 { overlaps += 1 }
                }
                usleep(500)  // widen the window in which a second hook would overlap
                gate.withLock { inside -= 1 }
            }))
        }
        defer { c.close() }
        let n = 200
        let s = try c.stream(svc + "Chat", kind: .bidiStream)
        let pool = try ThreadPool(threads: 1)
        defer { pool.shutdown() }
        let sent = Promise<Bool>()
        pool.submit {
            var ok = true
            for i in 0..<n where ok { ok = (try? s.send([UInt8(truncatingIfNeeded: i)])) != nil }
            s.closeSend()
            sent.fulfill(ok)
        }
        var got = 0
        while let _ = try s.receive() { got += 1 }
        #expect(sent.wait() == true)
        #expect(got == n)
        #expect(gate.withLock { seen } == 2 * n)
        #expect(gate.withLock { overlaps } == 0, "message hooks of one call ran concurrently")
    }

    @Test func addingRules() throws {
        let server = try Server()
        defer { server.stop(graceMs: 0) }
        #expect(throws: ConnectError.self) { try server.addInterceptor(Named(name: "x", log: Log()), procedure: "bad") }
        try server.handle(svc + "Echo") { $0.request }
        _ = try server.listenTCP("127.0.0.1:0")
        try server.start()
        do {
            try server.addInterceptor(Named(name: "x", log: Log()))
            Issue.record("added after start")
        } catch let e as ConnectError {
            #expect(e.kind == .state)
        }
    }
}
