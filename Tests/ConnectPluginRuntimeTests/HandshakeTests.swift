// The plugin runtime's pure parts: the handshake line (go-plugin's format and HEAD host parsing),
// version negotiation (go-plugin's protocolVersion()), the magic cookie, the launch environment and
// hclog stderr lines.
import Testing
@testable import ConnectPluginRuntime
import Glibc

@Suite("Handshake line") struct HandshakeLineTests {
    @Test func formatsAsGoPluginPrints() {
        let l = HandshakeLine(appVersion: 1, network: .unix, address: "/tmp/plugin123")
        #expect(l.formatted == "1|1|unix|/tmp/plugin123|grpc|")
        var m = l
        m.multiplexSupported = false
        #expect(m.formatted == "1|1|unix|/tmp/plugin123|grpc||false")
        let cert = String(repeating: "A", count: 60)
        let t = HandshakeLine(appVersion: 5, network: .tcp, address: "127.0.0.1:10001", serverCert: cert)
        #expect(t.formatted == "1|5|tcp|127.0.0.1:10001|grpc|" + cert)
    }

    @Test func parsesWhatItFormats() throws {
        let cert = String(repeating: "B", count: 51)
        for l in [HandshakeLine(appVersion: 1, network: .unix, address: "/tmp/p"),
                  HandshakeLine(appVersion: 7, network: .tcp, address: "127.0.0.1:1", serverCert: cert, multiplexSupported: true)] {
            #expect(try HandshakeLine.parse(l.formatted + "\n").get() == l)
        }
    }

    @Test func parsesThePythonExampleWithFiveFields() throws {
        let l = try HandshakeLine.parse("  1|1|tcp|127.0.0.1:1234|grpc\r\n").get()
        #expect(l.network == .tcp && l.address == "127.0.0.1:1234" && l.serverCert == "" && l.multiplexSupported == nil)
    }

    @Test func ignoresAShortField6LikeGoPlugin() throws {
        #expect(try HandshakeLine.parse("1|1|unix|/tmp/p|grpc|junk").get().serverCert == "")
    }

    @Test func rejectsWithErrorsThatSayWhatToDo() {
        func err(_ s: String) -> HandshakeError? {
            if case .failure(let e) = HandshakeLine.parse(s) { return e }
            return nil
        }
        #expect(err("listening on :8080") == .unrecognized(line: "listening on :8080"))
        #expect(err("hello\u{1}|x")?.description.contains("hello\\x01|x") == true)
        #expect(err("2|1|unix|/p|grpc|") == .incompatibleCore(plugin: "2"))
        #expect(err("1|1|pipe|/p|grpc|") == .unknownNetwork("pipe"))
        #expect(err("1|1|unix|/p") == .unsupportedProtocol("netrpc"))
        #expect(err("1|1|unix|/p")?.description.contains("GRPCServer") == true)
        #expect(err("1|x|unix|/p|grpc|") == .unrecognized(line: "1|x|unix|/p|grpc|"))
        #expect(err("1|1|unix||grpc|") != nil)
        let long = String(repeating: "z", count: 500)
        #expect(err(long)?.description.contains("…") == true)
        #expect(err(long)!.description.count < 400)
    }
}

@Suite("Version negotiation") struct VersionNegotiationTests {
    @Test func highestCommonVersion() {
        #expect(VersionNegotiation.negotiate(hostVersions: [5, 6, 2], pluginVersions: [2, 6, 7]) == 6)
        #expect(VersionNegotiation.negotiate(hostVersions: [1], pluginVersions: [1]) == 1)
    }

    @Test func lowestOwnWhenNoneIsCommon() {
        #expect(VersionNegotiation.negotiate(hostVersions: [9], pluginVersions: [3, 2, 4]) == 2)
        #expect(VersionNegotiation.negotiate(hostVersions: [], pluginVersions: [3, 4]) == 3)
        #expect(VersionNegotiation.negotiate(hostVersions: [1], pluginVersions: []) == nil)
    }

    @Test func parsesTheEnvironmentLikeAtoi() {
        let (v, bad) = VersionNegotiation.parseHostVersions("5,+6,x, 7,,99999999999999999999,-1")
        #expect(v == [5, 6, -1])
        #expect(bad == ["x", " 7", "", "99999999999999999999"])
        #expect(VersionNegotiation.parseHostVersions(nil).versions.isEmpty)
        #expect(VersionNegotiation.hostValue([6, 5, 6]) == "5,6")
    }
}

@Suite("Magic cookie") struct MagicCookieTests {
    let h = HandshakeConfig(cookieKey: "KV_PLUGIN", cookieValue: "connectplugin-kv")

    @Test func checks() {
        #expect(h.check(environment: ["KV_PLUGIN": "connectplugin-kv"]) == .ok)
        #expect(h.check(environment: [:]) == .missing)
        #expect(h.check(environment: ["KV_PLUGIN": "other"]) == .mismatch(found: "other"))
        #expect(HandshakeConfig(cookieKey: "", cookieValue: "v").check(environment: ["": "v"]) == .misconfigured)
        #expect(h.explain(.ok) == nil)
        #expect(h.explain(.missing)?.hasPrefix("This binary is a plugin.") == true)
        #expect(h.explain(.mismatch(found: "x"))?.contains("KV_PLUGIN") == true)
    }
}

@Suite("Launch environment") struct PluginEnvironmentTests {
    @Test func hostThenGoPluginThenOverridesWin() {
        var e = PluginEnvironment(handshake: HandshakeConfig(cookieKey: "KV_PLUGIN", cookieValue: "v"), versions: [2, 1])
        e.clientCertPEM = "-----BEGIN CERTIFICATE-----\nX\n-----END CERTIFICATE-----\n"
        let env = e.build(host: PluginEnvironment.pairs(["PATH=/bin", "PLUGIN_MIN_PORT=1", "junk", "A=b=c"]),
                          overrides: [("PATH", "/usr/bin"), ("EXTRA", "1")])
        #expect(env == [
            "PATH=/usr/bin", "PLUGIN_MIN_PORT=10000", "A=b=c", "KV_PLUGIN=v", "PLUGIN_MAX_PORT=25000",
            "PLUGIN_PROTOCOL_VERSIONS=1,2",
            "PLUGIN_CLIENT_CERT=-----BEGIN CERTIFICATE-----\nX\n-----END CERTIFICATE-----\n", "EXTRA=1",
        ])
        #expect(!e.build(host: nil).contains { $0.hasPrefix("PATH=") })
        e.multiplex = true
        e.socketDir = "/run/p"
        #expect(e.build(host: nil).suffix(2) == ["PLUGIN_MULTIPLEX_GRPC=true", "PLUGIN_UNIX_SOCKET_DIR=/run/p"])
    }
}

@Suite("hclog lines") struct HCLogTests {
    @Test func parsesJSONLines() {
        var p = HCLogParser()
        let r = p.parse(#"{"@level":"warn","@message":"disk low","@timestamp":"2026-12-03T16:00:00.000000Z","free":12,"path":"/x"}"#)
        #expect(r == LogRecord(level: .warn, message: "disk low", timestamp: "2026-12-03T16:00:00.000000Z",
                               fields: [("free", "12"), ("path", "/x")]))
    }

    @Test func roundTripsWhatThePluginWrites() {
        let r = LogRecord(level: .error, message: "a \"quoted\"\nline", timestamp: "t", fields: [("k", "v")])
        var p = HCLogParser()
        #expect(p.parse(r.jsonLine()) == r)
    }

    @Test func plainLinesByPrefixElseDebugAndPanicSwitchesToError() {
        var p = HCLogParser()
        #expect(p.parse("[INFO] hello") == LogRecord(level: .info, message: "hello"))
        #expect(p.parse("[ERROR]  bad") == LogRecord(level: .error, message: "bad"))
        #expect(p.parse("just text").level == .debug)
        #expect(p.parse("{not json").level == .debug)
        #expect(p.parse("panic: boom").level == .error)
        #expect(p.parse("goroutine 1 [running]:").level == .error)
        #expect(p.parse("[DEBUG] tagged still tagged").level == .debug)
    }
}

@Suite("hclog timestamp") struct HCLogTimestampTests {
    @Test func hasGosLayout() {
        let t = Array(hclogTimestamp().utf8)
        // 2026-12-03T16:00:00.000000Z
        #expect(t.count == 27)
        for (i, c) in [(4, "-"), (7, "-"), (10, "T"), (13, ":"), (16, ":"), (19, "."), (26, "Z")] {
            #expect(t[i] == UInt8(ascii: Unicode.Scalar(c)!))
        }
    }
}

@Suite("plugin's own logs") struct PluginLogTests {
    /// PluginLog writes whole hclog lines (one write each) with a timestamp to the descriptor serve
    /// keeps; lines from several threads never interleave. (Other suites may log meanwhile: only
    /// this test's lines are counted.)
    @Test func writesWholeHCLogLinesFromManyThreads() throws {
        var fds: [Int32] = [-1, -1]
        #expect(pipe(&fds) == 0)
        PluginLog.setDescriptor(fds[1])
        let big = String(repeating: "x", count: 1000)
        let threads = 4, lines = 10
        DispatchlessJoin.run(threads) { t in
            for i in 0..<lines { PluginLog.log(.warn, "plugin-log-test", [("thread", String(t)), ("i", String(i)), ("big", big)]) }
        }
        PluginLog.setDescriptor(-1)
        close(fds[1])
        var data: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = read(fds[0], &buf, buf.count)
            if n <= 0 { break }
            data += buf[0..<n]
        }
        close(fds[0])
        var parser = HCLogParser()
        let records = String(decoding: data, as: UTF8.self).split(separator: "\n").map { parser.parse(String($0)) }
            .filter { $0.message == "plugin-log-test" }
        #expect(records.count == threads * lines)
        for r in records {
            #expect(r.level == .warn)
            #expect(r.timestamp.utf8.count == 27)
            #expect(r.fields.count == 3 && r.fields[2].1 == big)
        }
    }
}

/// Runs body(0..<n) on n threads and waits for them (no Foundation, no Dispatch).
enum DispatchlessJoin {
    final class Box { let body: (Int) -> Void; let i: Int; init(_ b: @escaping (Int) -> Void, _ i: Int) { body = b; self.i = i } }
    static func run(_ n: Int, _ body: @escaping (Int) -> Void) {
        var ids: [pthread_t] = []
        for i in 0..<n {
            var t = pthread_t()
            let box = Unmanaged.passRetained(Box(body, i)).toOpaque()
            let rc = pthread_create(&t, nil, { p in
                guard let p else { return nil }
                let b = Unmanaged<Box>.fromOpaque(p).takeRetainedValue()
                b.body(b.i)
                return nil
            }, box)
            if rc == 0 { ids.append(t) }
        }
        for t in ids { pthread_join(t, nil) }
    }
}
