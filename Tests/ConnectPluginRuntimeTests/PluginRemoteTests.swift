// Remote mode, hosts by URL and in process, and reattach information, inside the test process:
// a PluginServer in remote mode (TCP, and in process) reached by a PluginClient by URL, the
// Handshake RPC's version negotiation and errors, and PluginReattach's text. The example plugins in
// every language are tested the same way by Tests/interop/test_plugin_remote.py.
import Testing
import CConnectPluginPosix
import ConnectPluginIO
import ConnectPluginRPC
@testable import ConnectPluginRuntime
import Glibc

private let handshake = HandshakeConfig(cookieKey: "KV_PLUGIN", cookieValue: "connectplugin-kv")

private func remoteConfig(listen: String, env: [String: String] = [:], fd: Int32) -> PluginServeConfig {
    let echo: (UInt8) -> [String: PluginRegistration] = { tag in
        ["kv": PluginRegistration(version: "1.0.0", servicePath: "/test.Echo/") { server in
            try server.register("/test.Echo/Echo") { call in try? call.respond([tag] + call.request) }
        }]
    }
    var c = PluginServeConfig(handshake: handshake, versionedPlugins: [1: echo(1), 2: echo(2)])
    c.environment = env
    c.listenAddress = listen
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

private func host(_ versions: [Int: [String]], url: String, cookie: String = "connectplugin-kv") -> PluginClient {
    PluginClient(config: PluginClientConfig(handshake: HandshakeConfig(cookieKey: "KV_PLUGIN", cookieValue: cookie),
                                            versionedPlugins: versions, url: url))
}

@Suite("Plugin remote mode") struct PluginRemoteTests {
    @Test func remoteModeServesTheHighestSetAndPrintsListeningOn() throws {
        var fds: [Int32] = [-1, -1]
        #expect(cp_pipe(&fds) == 0)
        defer { _ = cp_close(fds[0]); _ = cp_close(fds[1]) }
        // No cookie in the environment: remote mode does not need one.
        let s = try PluginServer(config: remoteConfig(listen: "127.0.0.1:0", fd: fds[1]))
        let line = try s.start()
        defer { s.stop() }
        let printed = readLine(fds[0])
        #expect(printed == "listening on \(line.address)")
        #expect(line.appVersion == 2)
        let url = "http://" + line.address
        let p = host([1: ["kv"], 2: ["kv"]], url: url)
        let hs = try p.start()
        #expect(hs.appVersion == 2 && p.negotiatedVersion == 2 && p.pid == nil && p.reattachInfo == nil)
        let c = try p.dispense("kv")
        #expect(try c.unary("/test.Echo/Echo", request: [7]).message == [2, 7])
        try p.ping()
        let info = try p.info()
        #expect(info.selfID == "kv" && info.selfVersion == "1.0.0")
        #expect(info.metadata.contains { $0.0 == "app_protocol_version" && $0.1 == "2" })
        #expect(info.metadata.contains { $0.0 == "runtime" && $0.1.hasPrefix("connectplugin ") })
        p.kill()  // disconnects only
        let again = host([2: ["kv"]], url: url)
        try again.start()
        try again.ping()
        try again.shutdownRemote(reason: "test")
        again.kill()
        #expect(s.wait() == "the host called connectplugin.v1.PluginControl/Shutdown (test)")
    }

    @Test func handshakeErrorsListBothSides() throws {
        let s = try PluginServer(config: remoteConfig(listen: "inproc:remote-errors", env: ["PLUGIN_PROTOCOL_VERSIONS": "1"], fd: -1))
        let url = try s.startInProcess(name: "remote-errors")
        defer { s.stop() }
        #expect(url == "inproc://remote-errors")
        let ok = host([1: ["kv"]], url: url)
        #expect(try ok.start().appVersion == 1)  // PLUGIN_PROTOCOL_VERSIONS chose the set
        ok.kill()
        func failure(_ p: PluginClient) -> String {
            do {
                try p.start()
                return "started"
            } catch let e as ConnectError { return e.message } catch { return "\(error)" }
        }
        #expect(failure(host([2: ["kv"], 3: ["kv"]], url: url)).contains("the plugin serves version 1, this host supports [2, 3]"))
        #expect(failure(host([1: ["kv"]], url: url, cookie: "wrong")).contains("magic cookie mismatch"))
        #expect(failure(host([1: ["kv", "db"]], url: url)).contains("does not serve [\"db\"]"))
        #expect(failure(host([1: ["kv"]], url: "inproc://nobody-here")).contains("cannot reach plugin"))
    }

    @Test func reattachTextRoundTripsAndErrorsSayWhy() throws {
        var r = PluginReattach(appVersion: 3, network: .unix, address: "/tmp/plugin1", pid: 42)
        #expect(r.text == #"{"Protocol":"grpc","ProtocolVersion":3,"Addr":{"Network":"unix","String":"/tmp/plugin1"},"Pid":42,"Test":false}"#)
        #expect(try PluginReattach.parse(r.text) == r)
        r.test = true
        #expect(try PluginReattach.parse(r.text).test)
        for (text, why) in [("{", "is not JSON"), (#"{"Protocol":"netrpc"}"#, "grpc only"),
                            (#"{"ProtocolVersion":1}"#, "has no Addr"), (#"{"ProtocolVersion":0}"#, "positive ProtocolVersion"),
                            (#"{"ProtocolVersion":1,"Addr":{"Network":"udp","String":"x"}}"#, "network \"udp\"")] {
            #expect(throws: ConnectError.self) { try PluginReattach.parse(text) }
            do { _ = try PluginReattach.parse(text) } catch let e as ConnectError { #expect(e.message.contains(why), "\(e.message)") }
        }
    }
}
