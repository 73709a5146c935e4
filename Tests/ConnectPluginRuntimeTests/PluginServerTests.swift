// `serve` run inside the test process (no fd redirection; the environment and the handshake fd are
// injected): the cookie check, negotiation, the listener, the handshake line, the services over the
// printed address, and shutdown by RPC. The same plugin run as a real subprocess by real hosts is
// tested by the interop suite.
import Testing
import CConnectPluginPosix
import ConnectPluginIO
import ConnectPluginRPC
@testable import ConnectPluginRuntime
import Glibc

private let handshake = HandshakeConfig(cookieKey: "KV_PLUGIN", cookieValue: "connectplugin-kv")

private func echoSet(_ tag: UInt8) -> [String: PluginRegistration] {
    ["kv": PluginRegistration(version: "1.0.0", servicePath: "/test.Echo/") { server in
        try server.register("/test.Echo/Echo") { call in try? call.respond([tag] + call.request) }
    }]
}

private func config(_ env: [String: String], fd: Int32) -> PluginServeConfig {
    var c = PluginServeConfig(handshake: handshake, versionedPlugins: [1: echoSet(1), 2: echoSet(2)])
    c.environment = env
    c.redirectStdio = false
    c.handshakeFD = fd
    c.watchParent = false
    c.handleSignals = false
    c.gracePeriodMs = 1000
    c.logger = { _ in }
    return c
}

private func readLine(_ fd: Int32) -> String {
    var out: [UInt8] = []
    var b: UInt8 = 0
    while cp_read(fd, &b, 1) == 1 && b != 0x0A { out.append(b) }
    return String(decoding: out, as: UTF8.self)
}

@Suite("Plugin serve") struct PluginServerTests {
    @Test(arguments: [PluginNetwork.unix, .tcp])
    func servesAndShutsDownByRPC(network: PluginNetwork) throws {
        var fds: [Int32] = [-1, -1]
        #expect(cp_pipe(&fds) == 0)
        defer { _ = cp_close(fds[0]); _ = cp_close(fds[1]) }
        var c = config(["KV_PLUGIN": "connectplugin-kv", "PLUGIN_PROTOCOL_VERSIONS": "1,2,3", "TMPDIR": "/tmp"], fd: fds[1])
        c.network = network
        let s = try PluginServer(config: c)
        let printed = try s.start()
        let line = try HandshakeLine.parse(readLine(fds[0])).get()
        #expect(line == printed)
        #expect(line.appVersion == 2 && line.network == network)
        if network == .unix {
            var st = stat()
            #expect(stat(line.address, &st) == 0)
            #expect(st.st_mode & 0o777 == 0o600)
        } else {
            #expect(line.address.hasPrefix("127.0.0.1:"))
        }
        let url = network == .unix ? "unix://" + line.address : "http://" + line.address
        var o = RPCClient.Options()
        o.rpcProtocol = .grpc
        o.timeoutMs = 20_000
        let client = try RPCClient(baseURL: url, options: o)
        defer { client.close() }
        #expect(try client.unary("/test.Echo/Echo", request: [9]).message == [2, 9])
        let h = try client.unary("/grpc.health.v1.Health/Check", request: HealthCheckRequest(service: "plugin").serialized())
        #expect(try HealthCheckResponse(serialized: h.message).status == .serving)
        let done = Promise<String>()
        startThread(name: "test-wait") { _ = done.fulfill(s.wait()) }
        _ = try client.unary("/plugin.GRPCController/Shutdown", request: [])
        #expect(done.wait() == "the host called plugin.GRPCController/Shutdown")
        if network == .unix {
            var st = stat()
            #expect(stat(line.address, &st) != 0)  // the socket file is gone
        }
    }

    @Test func lowestOwnVersionWhenNoneIsCommonAndMuxFieldWhenAsked() throws {
        var fds: [Int32] = [-1, -1]
        #expect(cp_pipe(&fds) == 0)
        defer { _ = cp_close(fds[0]); _ = cp_close(fds[1]) }
        let s = try PluginServer(config: config(["KV_PLUGIN": "connectplugin-kv", "PLUGIN_PROTOCOL_VERSIONS": "7",
                                                 "PLUGIN_MULTIPLEX_GRPC": "true"], fd: fds[1]))
        defer { s.stop() }
        let line = try s.start()
        #expect(line.appVersion == 1)
        #expect(readLine(fds[0]).hasSuffix("|grpc||false"))
    }

    @Test func refusesToStartWithErrorsThatSayWhatToDo() throws {
        func failure(_ env: [String: String], _ network: PluginNetwork = .unix) -> PluginServeError? {
            var c = config(env, fd: -1)
            c.network = network
            guard let s = try? PluginServer(config: c) else { return nil }
            defer { s.stop() }
            do {
                _ = try s.start()
                return nil
            } catch let e as PluginServeError { return e } catch { return nil }
        }
        let cookie = ["KV_PLUGIN": "connectplugin-kv"]
        let none = failure([:])
        #expect(none?.exitStatus == 2)
        #expect(none?.description.hasPrefix("This binary is a plugin.") == true)
        #expect(failure(["KV_PLUGIN": "x"])?.description.contains("KV_PLUGIN") == true)
        let longDir = "/tmp/" + String(repeating: "d", count: 110)
        #expect(failure(cookie.merging(["PLUGIN_UNIX_SOCKET_DIR": longDir]) { $1 })?.description.contains("set PLUGIN_UNIX_SOCKET_DIR to a shorter directory") == true)
        #expect(failure(cookie.merging(["PLUGIN_UNIX_SOCKET_GROUP": "no-such-group-xyz"]) { $1 })?.description.contains("no-such-group-xyz") == true)
        #expect(failure(cookie.merging(["PLUGIN_MIN_PORT": "20", "PLUGIN_MAX_PORT": "10"]) { $1 }, .tcp)?.description.contains("PLUGIN_MAX_PORT") == true)
        #expect(failure(cookie.merging(["PLUGIN_CLIENT_CERT": "-----BEGIN"]) { $1 })?.description.contains("AutoMTLS") == true)
    }

    @Test func aLongTMPDIRFallsBackToTmp() throws {
        let c = config(["KV_PLUGIN": "connectplugin-kv", "TMPDIR": "/" + String(repeating: "t", count: 120)], fd: -1)
        let s = try PluginServer(config: c)
        #expect(try s.socketPathChoice().hasPrefix("/tmp/plugin"))
    }
}
