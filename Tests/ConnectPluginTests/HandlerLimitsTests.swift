// Streams cannot starve the handler pool (issue 7 item 8): idle server streams that never end are
// bounded per connection, per peer and in total; unary calls still succeed while they are open; and
// once they close, the threads they made the pool start exit again.
import ConnectPlugin
import ConnectPluginHTTP
import Glibc
import Testing

private let svc = "/test.v1.LimitService/"

/// Polls `cond` every 20 ms for up to `seconds`; true once it held.
private func eventually(_ seconds: Double, _ cond: () -> Bool) -> Bool {
    let end = monotonicNowNs() &+ UInt64(seconds * 1e9)
    while monotonicNowNs() < end {
        if cond() { return true }
        usleep(20_000)
    }
    return cond()
}

/// Watch (server stream): sends "ready", then stays open until the client goes away (like the KV
/// example's Watch with no changes). Echo: unary.
private func makeServer(_ o: Server.Options, listen: String = "127.0.0.1:0") throws -> (Server, String) {
    let server = try Server(options: o)
    try server.handle(svc + "Echo") { $0.request }
    try server.register(svc + "Watch", kind: .serverStream) { call in
        _ = try? call.receive()
        let cond = ConditionLock()
        var done = false
        call.onDone { cond.withLock { done = true; cond.broadcast() } }
        if (try? call.send(Array("ready".utf8))) == nil { return }
        let end = monotonicNowNs() &+ 120_000_000_000  // never forever, even if a test goes wrong
        cond.lock()
        while !done && !call.isDone && monotonicNowNs() < end { _ = cond.wait(untilNs: min(end, monotonicNowNs() &+ 200_000_000)) }
        cond.unlock()
    }
    try server.register(svc + "Chat", kind: .bidiStream) { call in
        while let m = try? call.receive() {
            if (try? call.send(m)) == nil { return }
        }
    }
    let addr = try server.listenTCP(listen)
    try server.start()
    return (server, "http://" + addr)
}

private func client(_ url: String, _ proto: RPCProtocol = .connect, timeoutMs: Int64 = 0, http: HTTPVersion = .http2) throws -> Client {
    var o = Client.Options()
    o.rpcProtocol = proto
    o.httpVersion = http
    o.timeoutMs = timeoutMs
    return try Client(baseURL: url, options: o)
}

/// Opens `perConnection` Watch streams on each of `connections` clients. Returns the clients, the
/// admitted streams (each received "ready") and the refusal errors.
private func openWatches(_ url: String, connections: Int, perConnection: Int, proto: RPCProtocol = .connect)
    throws -> ([Client], [ClientStream], [ConnectError]) {
    var clients: [Client] = []
    var open: [ClientStream] = []
    var refused: [ConnectError] = []
    for _ in 0..<connections {
        let c = try client(url, proto)
        clients.append(c)
        var streams: [ClientStream] = []
        for _ in 0..<perConnection {
            let s = try c.stream(svc + "Watch", kind: .serverStream, timeoutMs: 120_000)
            try s.send([1])
            s.closeSend()
            streams.append(s)
        }
        for s in streams {
            do {
                let m = try s.receive()
                #expect(m == Array("ready".utf8))
                open.append(s)
            } catch let e as ConnectError {
                refused.append(e)
            }
        }
    }
    return (clients, open, refused)
}

@Suite("Handler limits", .serialized)
struct HandlerLimitsTests {
    @Test(arguments: [RPCProtocol.connect, .grpc])
    func streamsAreBoundedPerConnectionPerPeerAndInTotal(proto: RPCProtocol) throws {
        var o = Server.Options()
        o.handlerThreads = 2
        o.maxHandlerThreads = 64
        o.maxStreamsPerConnection = 6
        o.maxStreamsPerPeer = 20
        o.maxStreams = 40
        o.idleThreadTimeoutMs = 300
        let (server, url) = try makeServer(o)
        defer { server.stop(graceMs: 0) }

        // One connection: 6 admitted, the rest refused at once with RESOURCE_EXHAUSTED.
        let (c1, s1, r1) = try openWatches(url, connections: 1, perConnection: 10, proto: proto)
        #expect(s1.count == 6)
        #expect(r1.count == 4)
        #expect(r1.allSatisfy { $0.code == .resourceExhausted && $0.message.contains("maxStreamsPerConnection") })

        // More connections from the same host: 20 in all from this peer, whatever the connection count.
        let (c2, s2, r2) = try openWatches(url, connections: 4, perConnection: 6, proto: proto)
        #expect(s1.count + s2.count == 20)
        #expect(r2.count == 24 - 14)
        #expect(r2.allSatisfy { $0.code == .resourceExhausted && $0.message.contains("maxStreamsPerPeer") })
        #expect(server.runningStreamCount == 20)

        // Unary calls from this very peer still succeed, on new and on stream-holding connections.
        let u = try client(url, proto, timeoutMs: 20_000)
        for i in 0..<20 { #expect(try u.unary(svc + "Echo", request: [UInt8(i)]).message == [UInt8(i)]) }
        #expect(try c1[0].unary(svc + "Echo", request: [9], timeoutMs: 20_000).message == [9])
        u.close()

        // Closing the streams gives their admissions back, and the extra threads exit.
        #expect(server.handlerThreadCount > 2)
        for s in s1 + s2 { s.cancel() }
        for c in c1 + c2 { c.close() }
        #expect(eventually(30) { server.runningStreamCount == 0 }, "stream handlers did not return after the clients left")
        #expect(eventually(30) { server.handlerThreadCount == 2 }, "idle handler threads did not exit")

        // And the limits are per moment, not per lifetime: the peer may open streams again.
        let (c3, s3, r3) = try openWatches(url, connections: 1, perConnection: 6, proto: proto)
        #expect(s3.count == 6)
        #expect(r3.isEmpty)
        for s in s3 { s.cancel() }
        for c in c3 { c.close() }
    }

    @Test func bidiStreamsAreBoundedAndRefusedOnesFailCleanly() throws {
        var o = Server.Options()
        o.maxStreamsPerConnection = 3
        let (server, url) = try makeServer(o)
        defer { server.stop(graceMs: 0) }
        let c = try client(url)
        defer { c.close() }
        var streams: [ClientStream] = []
        for i in 0..<6 {
            let s = try c.stream(svc + "Chat", kind: .bidiStream, timeoutMs: 60_000)
            try? s.send([UInt8(i)])  // a refused stream may already be over
            streams.append(s)
        }
        var echoed = 0
        var refused = 0
        for (i, s) in streams.enumerated() {
            do {
                #expect(try s.receive() == [UInt8(i)])
                echoed += 1
            } catch let e as ConnectError {
                #expect(e.code == .resourceExhausted)
                refused += 1
            }
        }
        #expect(echoed == 3)
        #expect(refused == 3)
        // The connection is fine: the admitted streams go on, and unary calls work on it.
        for (i, s) in streams.prefix(3).enumerated() {
            try s.send([UInt8(i + 100)])
            #expect(try s.receive() == [UInt8(i + 100)])
            s.closeSend()
            #expect(try s.receive() == nil)
        }
        #expect(try c.unary(svc + "Echo", request: [7], timeoutMs: 20_000).message == [7])
        #expect(eventually(30) { server.runningStreamCount == 0 })
    }

    @Test func theTotalBoundLeavesThreadsForUnaryCalls() throws {
        // 4 threads at most and a total bound above it: streams get 3, unary calls the last one.
        var o = Server.Options()
        o.handlerThreads = 1
        o.maxHandlerThreads = 4
        o.maxStreams = 100
        let (server, url) = try makeServer(o)
        defer { server.stop(graceMs: 0) }
        let (clients, open, refused) = try openWatches(url, connections: 2, perConnection: 3)
        defer { for c in clients { c.close() } }
        #expect(open.count == 3)
        #expect(refused.count == 3)
        #expect(refused.allSatisfy { $0.code == .resourceExhausted && $0.message.contains("maximum of 3 streams") })
        let u = try client(url, timeoutMs: 20_000)
        defer { u.close() }
        for i in 0..<10 { #expect(try u.unary(svc + "Echo", request: [UInt8(i)]).message == [UInt8(i)]) }
        #expect(server.handlerThreadCount <= 4)
        for s in open { s.cancel() }
        #expect(eventually(30) { server.runningStreamCount == 0 })
    }

    @Test(arguments: ["127.0.0.1:0", "[::1]:0"])
    func http1ConnectionsCountAgainstTheirPeer(listen: String) throws {
        // HTTP/1.1 carries one call per connection, so a client opens a connection per stream: the
        // per-peer bound is what holds (IPv6 loopback is one peer too).
        var o = Server.Options()
        o.maxStreamsPerPeer = 5
        let (server, url) = try makeServer(o, listen: listen)
        defer { server.stop(graceMs: 0) }
        let c = try client(url, http: .http1_1)
        defer { c.close() }
        var open: [ClientStream] = []
        var refused = 0
        for _ in 0..<8 {
            let s = try c.stream(svc + "Watch", kind: .serverStream, timeoutMs: 60_000)
            try s.send([1])
            s.closeSend()
            do {
                #expect(try s.receive() == Array("ready".utf8))
                open.append(s)
            } catch let e as ConnectError {
                #expect(e.code == .resourceExhausted && e.message.contains("maxStreamsPerPeer"))
                refused += 1
            }
        }
        #expect(open.count == 5)
        #expect(refused == 3)
        #expect(try c.unary(svc + "Echo", request: [1], timeoutMs: 20_000).message == [1])
        for s in open { s.cancel() }
        #expect(eventually(30) { server.runningStreamCount == 0 })
    }

    @Test func aFinishedCallAndItsRequestAreReleased() throws {
        // The pool used to keep each finished task (its call, its request bytes) until 1024 more
        // tasks ran: 500 calls with 1 MiB requests held 516 MB. Now nothing holds a call once its
        // handler returned and the response went out.
        final class Box: @unchecked Sendable {
            let lock = Lock()
            var calls: [() -> UnaryCall?] = []
        }
        let box = Box()
        let server = try Server(options: Server.Options())
        defer { server.stop(graceMs: 0) }
        try server.register(svc + "Size") { call in
            box.lock.withLock { box.calls.append { [weak call] in call } }
            try? call.respond(Array(String(call.request.count).utf8))
        }
        let url = "http://" + (try server.listenTCP("127.0.0.1:0"))
        try server.start()
        let c = try client(url, timeoutMs: 30_000)
        defer { c.close() }
        let big = [UInt8](repeating: 3, count: 1 << 20)
        for _ in 0..<20 { #expect(try c.unary(svc + "Size", request: big).message == Array("1048576".utf8)) }
        #expect(box.lock.withLock { box.calls.count } == 20)
        #expect(eventually(30) { box.lock.withLock { box.calls.allSatisfy { $0() == nil } } },
                "finished calls (each with its 1 MiB request) are still held")
    }

    /// The scenario with the default options: 5 connections × 256 idle Watch streams used to
    /// hold all 1024 handler threads, and every unary call timed out until they closed.
    @Test func fiveConnectionsOfIdleStreamsDoNotStarveUnaryCalls() throws {
        var o = Server.Options()
        o.idleThreadTimeoutMs = 500
        let (server, url) = try makeServer(o)
        defer { server.stop(graceMs: 0) }
        let (clients, open, refused) = try openWatches(url, connections: 5, perConnection: 256)
        // Per connection 128, per peer 512: 512 admitted, the rest refused rather than waiting.
        #expect(open.count == 512)
        #expect(refused.count == 5 * 256 - 512)
        #expect(refused.allSatisfy { $0.code == .resourceExhausted })
        // Unary calls succeed, each within a generous 5 s.
        let u = try client(url, timeoutMs: 5000)
        for i in 0..<50 { #expect(try u.unary(svc + "Echo", request: [UInt8(i)]).message == [UInt8(i)]) }
        let g = try client(url, .grpc, timeoutMs: 5000)
        for i in 0..<50 { #expect(try g.unary(svc + "Echo", request: [UInt8(i)]).message == [UInt8(i)]) }
        u.close()
        g.close()
        #expect(server.handlerThreadCount > 512)
        for s in open { s.cancel() }
        for c in clients { c.close() }
        #expect(eventually(60) { server.runningStreamCount == 0 })
        #expect(eventually(60) { server.handlerThreadCount == o.handlerThreads }, "the pool did not shrink back to its core threads")
    }
}
