// The control services a plugin serves, called over the in-process transport (the full HTTP/2 and
// protocol stack without sockets) with gRPC and Connect clients. The go-plugin host's side of these
// calls is tested against real peers once the launcher exists.
import Testing
import ConnectPluginIO
import ConnectPluginRPC
@testable import ConnectPluginRuntime

final class ShutdownLog: @unchecked Sendable {
    let lock = ConditionLock()
    var reasons: [String] = []
    func add(_ r: String) {
        lock.lock()
        reasons.append(r)
        lock.broadcast()
        lock.unlock()
    }
    var all: [String] { lock.withLock { reasons } }

    /// The reasons once there are `n` of them (or after 10 s): the handler reports a shutdown just
    /// after answering, so the caller may see the answer first.
    func wait(for n: Int) -> [String] {
        let deadline = monotonicNowNs() &+ 10_000_000_000
        lock.lock()
        defer { lock.unlock() }
        while reasons.count < n && lock.wait(untilNs: deadline) {}
        return reasons
    }
}

private func fixture(_ name: String) throws -> (RPCServer, ControlServices, ShutdownLog, String) {
    let server = try RPCServer()
    let log = ShutdownLog()
    let services = ControlServices(
        handshake: HandshakeConfig(cookieKey: "KV_PLUGIN", cookieValue: "connectplugin-kv"), appVersion: 1,
        plugins: [PluginInfo(name: "kv", version: "1.0.0", servicePath: "/kv.v1.KVService/")],
        health: PluginHealth(pluginNames: ["kv"]), stdio: StdioForwarder(limitBytes: 4096),
        onShutdown: { log.add($0) })
    try services.register(on: server)
    let url = try server.listenInProcess(name)
    try server.start()
    return (server, services, log, url)
}

private func client(_ url: String, _ proto: RPCProtocol) throws -> RPCClient {
    var o = RPCClient.Options()
    o.rpcProtocol = proto
    o.timeoutMs = 20_000
    return try RPCClient(baseURL: url, options: o)
}

@Suite("Control services") struct ControlServicesTests {
    @Test(arguments: [RPCProtocol.grpc, .connect, .grpcWeb])
    func healthCheck(proto: RPCProtocol) throws {
        let (server, services, _, url) = try fixture("ctl-health-\(proto.rawValue)")
        defer { server.stop(graceMs: 0) }
        let c = try client(url, proto)
        defer { c.close() }
        for prefix in ["/grpc.health.v1.Health/", "/connectplugin.health.v1.HealthService/"] {
            for svc in ["", "plugin", "kv"] {
                let r = try c.unary(prefix + "Check", request: HealthCheckRequest(service: svc).serialized())
                #expect(try HealthCheckResponse(serialized: r.message).status == .serving)
            }
            do {
                _ = try c.unary(prefix + "Check", request: HealthCheckRequest(service: "nope").serialized())
                Issue.record("an unknown service must fail")
            } catch let e as ConnectError {
                #expect(e.code == .notFound)
                #expect(e.message.contains("\"kv\""))
            }
        }
        services.health.set(.degraded, reason: "cache cold")
        let d = try c.unary("/grpc.health.v1.Health/Check", request: HealthCheckRequest(service: "plugin").serialized())
        #expect(try HealthCheckResponse(serialized: d.message).status == .serving)
        let g = try c.unary("/connectplugin.v1.PluginControl/GetHealth", request: [])
        #expect(try GetHealthResponse(serialized: g.message) == GetHealthResponse(state: .degraded, reason: "cache cold"))
        services.health.set(.unhealthy, reason: "db down")
        let u = try c.unary("/grpc.health.v1.Health/Check", request: HealthCheckRequest(service: "plugin").serialized())
        #expect(try HealthCheckResponse(serialized: u.message).status == .notServing)
    }

    @Test func watchPushesChanges() throws {
        let (server, services, _, url) = try fixture("ctl-watch")
        defer { server.stop(graceMs: 0) }
        let c = try client(url, .grpc)
        defer { c.close() }
        let s = try c.stream("/grpc.health.v1.Health/Watch", kind: .serverStream)
        try s.send(HealthCheckRequest(service: "kv").serialized())
        s.closeSend()
        #expect(try HealthCheckResponse(serialized: try s.receive() ?? []).status == .serving)
        services.health.set(.unhealthy, reason: "x")
        #expect(try HealthCheckResponse(serialized: try s.receive() ?? []).status == .notServing)
        services.health.set(.degraded)
        #expect(try HealthCheckResponse(serialized: try s.receive() ?? []).status == .serving)
        services.health.shutdown()
        #expect(try HealthCheckResponse(serialized: try s.receive() ?? []).status == .notServing)
        s.cancel()
        let unknown = try c.stream("/connectplugin.health.v1.HealthService/Watch", kind: .serverStream)
        try unknown.send(HealthCheckRequest(service: "other").serialized())
        unknown.closeSend()
        #expect(try HealthCheckResponse(serialized: try unknown.receive() ?? []).status == .serviceUnknown)
        unknown.cancel()
    }

    @Test func shutdownCallsAreAnsweredThenReported() throws {
        let (server, _, log, url) = try fixture("ctl-shutdown")
        defer { server.stop(graceMs: 0) }
        let c = try client(url, .grpc)
        defer { c.close() }
        #expect(try c.unary("/plugin.GRPCController/Shutdown", request: []).message == [])
        var req = ShutdownRequest()
        req.gracePeriodSeconds = 5
        req.reason = "plugin removed"
        let r = try c.unary("/connectplugin.v1.PluginControl/Shutdown", request: req.serialized())
        #expect(try ShutdownResponse(serialized: r.message).acknowledged)
        // Each handler reports after answering, so the two reports may come in either order.
        #expect(log.wait(for: 2).sorted() == ["the host called connectplugin.v1.PluginControl/Shutdown (plugin removed)",
                                              "the host called plugin.GRPCController/Shutdown"])
    }

    @Test func connectPluginHandshake() throws {
        let (server, _, _, url) = try fixture("ctl-handshake")
        defer { server.stop(graceMs: 0) }
        let c = try client(url, .connect)
        defer { c.close() }
        var req = HandshakeRequest()
        req.coreProtocolVersion = 1
        req.appProtocolVersion = 1
        req.magicCookieKey = "KV_PLUGIN"
        req.magicCookieValue = "connectplugin-kv"
        req.requestedPlugins = ["kv", "missing"]
        let resp = try HandshakeResponse(serialized: try c.unary("/connectplugin.v1.HandshakeService/Handshake", request: req.serialized()).message)
        #expect(resp.appProtocolVersion == 1 && resp.plugins.map(\.name) == ["kv"])
        func code(_ mutate: (inout HandshakeRequest) -> Void) -> Code? {
            var r = req
            mutate(&r)
            do {
                _ = try c.unary("/connectplugin.v1.HandshakeService/Handshake", request: r.serialized())
                return .ok
            } catch let e as ConnectError { return e.code } catch { return nil }
        }
        #expect(code { $0.magicCookieValue = "x" } == .invalidArgument)
        #expect(code { $0.coreProtocolVersion = 2 } == .invalidArgument)
        #expect(code { $0.appProtocolVersion = 3 } == .failedPrecondition)
        // Garbage bytes are a clear invalid_argument, not a crash.
        do {
            _ = try c.unary("/connectplugin.v1.HandshakeService/Handshake", request: [0x0A, 0x7F])
            Issue.record("garbage must fail")
        } catch let e as ConnectError {
            #expect(e.code == .invalidArgument && e.message.contains("cannot decode"))
        }
    }

    @Test func stdioIsForwardedInChunksAndBounded() throws {
        let (server, services, _, url) = try fixture("ctl-stdio")
        defer { server.stop(graceMs: 0) }
        services.stdio.push(.stdout, Array(repeating: 0x61, count: 1500))
        services.stdio.push(.stderr, Array("err\n".utf8))
        let c = try client(url, .grpc)
        defer { c.close() }
        let s = try c.stream("/plugin.GRPCStdio/StreamStdio", kind: .serverStream)
        try s.send([])
        s.closeSend()
        let a = try StdioData(serialized: try s.receive() ?? [])
        let b = try StdioData(serialized: try s.receive() ?? [])
        let e = try StdioData(serialized: try s.receive() ?? [])
        #expect(a.channel == .stdout && a.data.count == 1024 && b.data.count == 476)
        #expect(e == StdioData(channel: .stderr, data: Array("err\n".utf8)))
        services.stdio.push(.stdout, [1])
        #expect(try StdioData(serialized: try s.receive() ?? []).data == [1])
        services.stdio.close()
        #expect(try s.receive() == nil)
        // Nobody reading: the oldest bytes go, memory stays at the limit (4 KiB here).
        let f = StdioForwarder(limitBytes: 4096)
        for _ in 0..<100 { f.push(.stdout, Array(repeating: 1, count: 1000)) }
        #expect(f.droppedBytes == 96_000)  // four 1000-byte chunks fit under 4096
        #expect(f.next(untilNs: 0).0?.data.count == 1000)
    }

    @Test func brokerStreamIsAcceptedAndEnds() throws {
        let (server, _, _, url) = try fixture("ctl-broker")
        defer { server.stop(graceMs: 0) }
        let c = try client(url, .grpc)
        defer { c.close() }
        let s = try c.stream("/plugin.GRPCBroker/StartStream", kind: .bidiStream)
        var ci = ConnInfo()
        ci.serviceID = 1
        try s.send(ci.serialized())
        s.closeSend()
        #expect(try s.receive() == nil)
    }
}
