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
private func makeServer(_ o: Server.Options) throws -> (Server, String) {
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
    let addr = try server.listenTCP("127.0.0.1:0")
    try server.start()
    return (server, "http://" + addr)
}

private func client(_ url: String, _ proto: RPCProtocol = .connect, timeoutMs: Int64 = 0) throws -> Client {
    var o = Client.Options()
    o.rpcProtocol = proto
    o.httpVersion = .http2
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
