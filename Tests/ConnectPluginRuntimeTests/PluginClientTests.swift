// The host side launching real plugin processes: kv-plugin-swift (built by `swift build`) for the
// good path, and small shell scripts for the faults a launcher must explain (no handshake, junk
// before it, exiting at once, ignoring Shutdown, not found, not executable, version mismatch).
import Testing
import ConnectPluginIO
import ConnectPluginRPC
@testable import ConnectPluginRuntime
import Glibc

private let repo: String = {
    var parts = #filePath.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
    parts.removeLast(3)  // Tests/ConnectPluginRuntimeTests/PluginClientTests.swift
    return parts.joined(separator: "/")
}()
/// kv-plugin-swift from the same build as this test bundle (debug, or a sanitizer build dir).
private let kvPlugin: String = {
    var buf = [CChar](repeating: 0, count: 4096)
    let n = readlink("/proc/self/exe", &buf, buf.count - 1)
    if n > 0 {
        let exe = String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
        if let slash = exe.lastIndex(of: "/") {
            let candidate = String(exe[..<slash]) + "/kv-plugin-swift"
            if access(candidate, X_OK) == 0 { return candidate }
        }
    }
    return repo + "/.build/debug/kv-plugin-swift"
}()
private let handshake = HandshakeConfig(cookieKey: "KV_PLUGIN", cookieValue: "connectplugin-kv")

final class LogSink: @unchecked Sendable {
    let lock = Lock()
    var records: [(String, LogRecord)] = []
    func add(_ p: String, _ r: LogRecord) { lock.withLock { records.append((p, r)) } }
    var messages: [String] { lock.withLock { records.map { $0.1.message } } }
}

private func config(_ path: String, _ args: [String] = [], versions: [Int: [String]] = [1: ["kv"]],
                    _ log: LogSink = LogSink()) -> PluginClientConfig {
    var c = PluginClientConfig(handshake: handshake, versionedPlugins: versions, command: PluginCommand(path: path, arguments: args))
    c.logger = { log.add($0, $1) }
    c.startTimeoutMs = 30_000
    c.killGraceMs = 2000
    return c
}

private func startError(_ c: PluginClientConfig) -> ConnectError? {
    let p = PluginClient(config: c)
    do {
        try p.start()
        p.kill()
        return nil
    } catch let e as ConnectError {
        return e
    } catch {
        return nil
    }
}

private func putRequest(_ key: String, _ value: [UInt8]) -> [UInt8] {
    var w = ProtoWriter()
    w.stringField(1, key)
    w.bytesField(2, value)
    return w.bytes
}

@Suite("Plugin host", .serialized) struct PluginClientTests {
    @Test func launchesDispensesCallsAndKillsARealPlugin() throws {
        let log = LogSink()
        let p = PluginClient(config: config(kvPlugin, [], log))
        let line = try p.start()
        #expect(line.appVersion == 1 && line.network == .unix && p.negotiatedVersion == 1)
        let kv = try p.dispense("kv")
        _ = try kv.unary("/connectplugin.examples.kv.v1.KVService/Put", request: putRequest("a", [7]), timeoutMs: 20_000)
        var get = ProtoWriter()
        get.stringField(1, "a")
        let r = try kv.unary("/connectplugin.examples.kv.v1.KVService/Get", request: get.bytes, timeoutMs: 20_000)
        #expect(r.message == [0x0A, 0x01, 0x07, 0x10, 0x01])  // value=[7], found=true
        try p.ping()
        #expect(throws: ConnectError.self) { _ = try p.dispense("other") }
        let t0 = monotonicNowNs()
        p.kill()
        #expect(p.exitStatus == .exited(0))
        #expect(monotonicNowNs() - t0 < 1_900_000_000)  // it stopped on Shutdown, before any signal
        // Its hclog lines came through the logger with its name.
        #expect(log.lock.withLock { log.records.contains { $0.0 == "kv-plugin-swift" && $0.1.message == "plugin started" } })
    }

    @Test func killStopsGracefullyAfterTheDispensedClientWasClosed() throws {
        // Closing what dispense gave must not cost the plugin its graceful stop: Shutdown goes on
        // the host's own control connection.
        let p = PluginClient(config: config(kvPlugin))
        try p.start()
        try p.dispense("kv").close()
        let t0 = monotonicNowNs()
        p.kill()
        #expect(p.exitStatus == .exited(0))
        #expect(monotonicNowNs() - t0 < 1_900_000_000)  // on Shutdown, not after the 2 s grace and SIGTERM
    }

    @Test func toleratesABoundedNumberOfJunkLines() throws {
        let log = LogSink()
        let p = PluginClient(config: config("/bin/sh", ["-c", "echo junk one; echo junk two; exec \"$0\"", kvPlugin], log))
        _ = try p.start()
        try p.ping()
        p.kill()
        #expect(log.lock.withLock { log.records.filter { $0.1.message.hasPrefix("skipping a line") }.count } == 2)
        var c = config("/bin/sh", ["-c", "for i in 1 2 3 4; do echo junk $i; done; exec \"$0\"", kvPlugin])
        c.maxJunkLines = 3
        let e = startError(c)
        #expect(e?.message.contains("junk 4") == true)
        #expect(e?.message.contains("a plugin must print its handshake line first") == true)
    }

    @Test func explainsAPluginThatExitsAtOnce() {
        let e = startError(config("/bin/sh", ["-c", "echo first >&2; echo 'panic: boom' >&2; exit 3"]))
        #expect(e?.code == .unavailable)
        #expect(e?.message.contains("exited with status 3 before its handshake") == true)
        #expect(e?.message.contains("panic: boom") == true)
    }

    @Test func timesOutWithoutAHandshake() {
        var c = config("/bin/sh", ["-c", "sleep 30"])
        c.startTimeoutMs = 300
        let t0 = monotonicNowNs()
        let e = startError(c)
        #expect(e?.code == .deadlineExceeded)
        #expect(e?.message.contains("no handshake line within 300 ms") == true)
        #expect(monotonicNowNs() - t0 < 10_000_000_000)  // and the sleeper was killed, not waited for
    }

    @Test func reportsACookieMismatchFromThePlugin() {
        var c = config(kvPlugin)
        c.handshake = HandshakeConfig(cookieKey: "KV_PLUGIN", cookieValue: "another-app")
        let e = startError(c)
        #expect(e?.message.contains("exited with status 1") == true)
        #expect(e?.message.contains("expects another plugin") == true)
    }

    @Test func reportsNoCommonVersionWithBothSides() {
        let e = startError(config(kvPlugin, versions: [2: ["kv"], 3: ["kv"]]))
        #expect(e?.message.contains("the plugin chose version 1, this host supports [2, 3]") == true)
    }

    @Test func binaryProblemsSayWhatToDo() throws {
        #expect(startError(config("/nonexistent/plugin"))?.message.contains("not found") == true)
        #expect(startError(config("/tmp"))?.message.contains("is a directory") == true)
        let path = "/tmp/cp-not-executable-\(getpid())"
        let fd = open(path, O_CREAT | O_WRONLY, 0o644)
        close(fd)
        defer { unlink(path) }
        #expect(startError(config(path))?.message.contains("not executable; chmod +x it") == true)
        let garbage = "/tmp/cp-garbage-\(getpid())"
        let g = open(garbage, O_CREAT | O_WRONLY, 0o755)
        _ = write(g, "\u{7F}ELF\u{2}\u{1}\u{1}garbage", 16)
        close(g)
        defer { unlink(garbage) }
        let e = startError(config(garbage))
        #expect(e != nil)
        #expect(e?.message.contains(garbage) == true)
    }

    @Test func killEscalatesForAPluginThatIgnoresShutdownAndSIGTERM() throws {
        var c = config("/bin/sh", ["-c", "trap '' TERM; echo '1|1|unix|/nonexistent/sock|grpc|'; while :; do sleep 1; done"])
        c.killGraceMs = 300
        let p = PluginClient(config: c)
        _ = try p.start()
        p.kill()
        #expect(p.exitStatus == .signaled(SIGKILL))
    }
}
