// A call's deadline timer goes when the call ends (issue 7 item 8.4). It used to stay scheduled until
// the deadline: with a client timeout days ahead (Connect-Timeout-Ms up to 10 digits), every finished
// call left its timer (and, once cancelled, its heap entry) on the loop for that long.
import Testing
@testable import ConnectPluginIO
import ConnectPluginHTTP
import ConnectPluginRPC

/// Timers due more than an hour from now over all loops of `group` (no other test sets such a
/// deadline), counted on each loop's thread.
private func farTimers(_ group: EventLoopGroup) -> (live: Int, heap: Int) {
    var live = 0, heap = 0
    for loop in group.loops {
        let p = Promise<(live: Int, heap: Int)>()
        loop.execute { p.fulfill(loop.timerCounts(dueAfterNs: 3_600_000_000_000)) }
        if let c = p.wait() {
            live += c.live
            heap += c.heap
        }
    }
    return (live, heap)
}

private func post(_ client: HTTPClient, _ path: String, _ body: [UInt8], timeoutMs: String) -> Result<HTTPResponse, HTTPError> {
    let headers = HTTPHeaders([("content-type", "application/proto"), ("connect-protocol-version", "1"),
                               ("connect-timeout-ms", timeoutMs)])
    let p = Promise<Result<HTTPResponse, HTTPError>>()
    client.execute(method: "POST", path: path, headers: headers, body: body, timeoutNs: nil) { p.fulfill($0) }
    return p.wait() ?? .failure(HTTPError(.io, "no result"))
}

@Suite struct DeadlineTimerTests {
    @Test func finishedCallsCancelTheirDeadlineTimers() throws {
        let server = try RPCServer()
        try server.register("/test.v1.Timers/Echo") { call in try? call.respond(call.request) }
        try server.register("/test.v1.Timers/Fail") { call in try? call.fail(.notFound, "not here") }
        let addr = try server.listenTCP("127.0.0.1:0")
        try server.start()
        defer { server.stop(graceMs: 1000) }
        let port = try #require(addr.split(separator: ":").last.flatMap { Int($0) })
        let group = try EventLoopGroup.shared()
        let before = farTimers(group)
        let callsPerVersion = 1000
        // The clients stay connected until the counts are taken: on a live connection its idle
        // timer (due much earlier) heads the heap, so cancelled entries behind it stay until removed.
        var clients: [HTTPClient] = []
        defer { for c in clients { c.close() } }
        for version in [HTTPVersion.http1_1, .http2] {
            var cfg = HTTPClientConfig()
            cfg.version = version
            let client = try HTTPClient(endpoint: .tcp(host: "127.0.0.1", port: port), config: cfg, group: group)
            clients.append(client)
            var failures = 0
            for i in 0..<callsPerVersion {
                let fail = i % 2 == 1
                // 9999999999 ms: about 115 days.
                let r = post(client, fail ? "/test.v1.Timers/Fail" : "/test.v1.Timers/Echo", [1, 2, 3], timeoutMs: "9999999999")
                switch r {
                case .success(let resp) where resp.status == (fail ? 404 : 200) && (fail || resp.body == [1, 2, 3]):
                    break
                default:
                    failures += 1
                    if failures <= 3 { Issue.record("call \(i) over \(version): \(r)") }
                }
            }
            #expect(failures == 0)
        }
        let after = farTimers(group)
        // Before the fix every call left its timer: +2000 live.
        #expect(after.live - before.live <= 0, "finished calls left \(after.live - before.live) deadline timers scheduled")
        // Cancelled timers leave the heap too (the heap may keep a few dozen until it is compacted).
        #expect(after.heap - before.heap < 500, "finished calls left \(after.heap - before.heap) heap entries")
    }
}
