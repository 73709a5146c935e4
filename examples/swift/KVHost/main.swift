// kv-host-swift: a plugin host in Swift. It launches a KV plugin (a connectplugin plugin in any
// language, or an unmodified HashiCorp go-plugin gRPC plugin), dispenses "kv" as the `KV` protocol,
// runs the scripted Put/Get/Delete sequence and then the streaming methods (PutMany, List, Watch),
// prints the results and stops the plugin.
//
//   kv-host-swift [--repeat N] [--logs] [--automtls] --plugin PATH [ARGS...]
//   kv-host-swift [--repeat N] --url URL       a plugin serving in remote mode (kv-plugin --listen);
//                                              kill only disconnects
//   kv-host-swift [--repeat N] --in-process    the KV service of examples/swift/KVService served as
//                                              a plugin inside this process (inproc://), no sockets
//
// --logs prints each log record of the plugin (its stderr, parsed as hclog) on stdout:
// "log NAME LEVEL MESSAGE key=value ..." (PluginClientConfig.logger; without it they go to stderr).
//
// --automtls: go-plugin's AutoMTLS (the plugin must serve TLS with the certificates exchanged).
//
// KV handshake: cookie KV_PLUGIN=connectplugin-kv, app protocol version 1, plugin name "kv".
// Exit 0 when every step gave the expected answer and the plugin exited with status 0.
import ConnectPlugin
import Glibc
import KVServiceSwift

/// What dispense("kv") gives this host (go-plugin's pattern: a client-side factory wraps the
/// dispensed connection in the plugin's interface).
protocol KV {
    func put(_ key: String, _ value: [UInt8]) throws
    func get(_ key: String) throws -> (found: Bool, value: [UInt8])
    func delete(_ key: String) throws -> Bool
    /// Every item whose key starts with `prefix`, in key order (server streaming).
    func list(_ prefix: String) throws -> [KVItem]
    /// Puts every item, in order; the number put (client streaming).
    func putMany(_ items: [KVItem]) throws -> Int64
    /// Opens a watch (bidi streaming): send prefixes, receive events.
    func watch() throws -> KVWatch
}

struct KVItem {
    var key: String
    var value: [UInt8]
}

/// A WatchEvent: a put (key, value) or a deletion of key.
struct KVEvent {
    var key = ""
    var value: [UInt8] = []
    var deleted = false
}

/// An open Watch call. Every receive is bounded by the call's deadline.
protocol KVWatch {
    /// Sends WatchRequest{prefix}: the stored items under it are replayed, then changes follow.
    func send(prefix: String) throws
    /// The next event; nil when the call ended OK; throws the call's error.
    func receive() throws -> KVEvent?
    /// Half-closes: the plugin ends the call once it has sent what is pending.
    func closeSend()
    /// Cancels the call unless it already ended.
    func close()
}

/// Calls of the typed client: each one (a stream too, until it ends) must finish within this.
let callTimeoutMs: Int64 = 20_000

struct KVClient: KV {
    let client: Client
    static let service = "/connectplugin.examples.kv.v1.KVService/"

    /// A request: a string in field 1 (key or prefix) and, for PutRequest, bytes in field 2.
    fileprivate static func keyMessage(_ key: String, value: [UInt8]? = nil) -> [UInt8] {
        var w = ProtoWriter()
        w.stringField(1, key)
        if let value { w.bytesField(2, value) }
        return w.bytes
    }

    func put(_ key: String, _ value: [UInt8]) throws {
        _ = try client.unary(KVClient.service + "Put", request: KVClient.keyMessage(key, value: value), timeoutMs: callTimeoutMs)
    }

    func get(_ key: String) throws -> (found: Bool, value: [UInt8]) {
        let m = try client.unary(KVClient.service + "Get", request: KVClient.keyMessage(key), timeoutMs: callTimeoutMs).message
        var r = ProtoReader(m)
        var found = false
        var value: [UInt8] = []
        while let (field, wire) = try r.next() {
            if field == 1 && wire == 2 {
                value = try r.lengthDelimited()
            } else if field == 2 && wire == 0 {
                found = try r.varint() != 0
            } else {
                try r.skip(wireType: wire)
            }
        }
        return (found, value)
    }

    func delete(_ key: String) throws -> Bool {
        let m = try client.unary(KVClient.service + "Delete", request: KVClient.keyMessage(key), timeoutMs: callTimeoutMs).message
        var r = ProtoReader(m)
        var existed = false
        while let (field, wire) = try r.next() {
            if field == 1 && wire == 0 { existed = try r.varint() != 0 } else { try r.skip(wireType: wire) }
        }
        return existed
    }

    func list(_ prefix: String) throws -> [KVItem] {
        let s = try client.openServerStream(KVClient.service + "List", request: KVClient.keyMessage(prefix), timeoutMs: callTimeoutMs)
        var items: [KVItem] = []
        try s.forEachResponse { m in
            var item = KVItem(key: "", value: [])
            var r = ProtoReader(m)
            while let (field, wire) = try r.next() {
                switch (field, wire) {
                case (1, 2): item.key = try r.string()
                case (2, 2): item.value = try r.lengthDelimited()
                default: try r.skip(wireType: wire)
                }
            }
            items.append(item)
        }
        return items
    }

    func putMany(_ items: [KVItem]) throws -> Int64 {
        let m = try client.clientStream(KVClient.service + "PutMany", messages: items.map { KVClient.keyMessage($0.key, value: $0.value) },
                                        timeoutMs: callTimeoutMs)
        var r = ProtoReader(m)
        var count: Int64 = 0
        while let (field, wire) = try r.next() {
            if field == 1 && wire == 0 { count = Int64(bitPattern: try r.varint()) } else { try r.skip(wireType: wire) }
        }
        return count
    }

    func watch() throws -> KVWatch {
        KVWatchStream(stream: try client.stream(KVClient.service + "Watch", kind: .bidiStream, timeoutMs: callTimeoutMs))
    }
}

struct KVWatchStream: KVWatch {
    let stream: ClientStream

    func send(prefix: String) throws { try stream.send(KVClient.keyMessage(prefix)) }

    func receive() throws -> KVEvent? {
        guard let m = try stream.receive() else { return nil }
        var e = KVEvent()
        var r = ProtoReader(m)
        while let (field, wire) = try r.next() {
            switch (field, wire) {
            case (1, 2): e.key = try r.string()
            case (2, 2): e.value = try r.lengthDelimited()
            case (3, 0): e.deleted = try r.varint() != 0
            default: try r.skip(wireType: wire)
            }
        }
        return e
    }

    func closeSend() { stream.closeSend() }

    func close() { stream.cancelIfRunning() }
}

func usage(_ message: String) -> Never {
    fputs("kv-host-swift: \(message)\nusage: kv-host-swift [--repeat N] [--logs] [--automtls] (--plugin PATH [ARGS...] | --url URL | --in-process)\n", stderr)
    exit(2)
}

var repeatCount = 1
var printLogs = false
var plugin: [String] = []
var autoMTLS = false
var url: String?
var inProcess = false
var args = Array(CommandLine.arguments.dropFirst())
while !args.isEmpty {
    let a = args.removeFirst()
    if a == "--repeat", let n = args.first.flatMap({ Int($0) }), n > 0 {
        repeatCount = n
        args.removeFirst()
    } else if a == "--logs" {
        printLogs = true
    } else if a == "--automtls" {
        autoMTLS = true
    } else if a == "--url", let u = args.first {
        url = u
        args.removeFirst()
    } else if a == "--in-process" {
        inProcess = true
    } else if a == "--plugin" {
        plugin = args
        args = []
    } else {
        usage("unknown argument \(a)")
    }
}
// In process: this host's own KV service (examples/swift/KVService) served as the plugin, over
// the in-process transport, and reached through the same typed interface as a launched plugin.
var inProcessPlugin: PluginServer?
if inProcess {
    let store = Store()
    var pc = PluginServeConfig(
        handshake: HandshakeConfig(cookieKey: "KV_PLUGIN", cookieValue: "connectplugin-kv"),
        versionedPlugins: [1: ["kv": PluginRegistration(version: connectPluginVersion, servicePath: kvServicePath) { server in
            try registerKVService(on: server, store: store)
        }]])
    pc.serverOptions.handlerThreads = 64
    do {
        let s = try PluginServer(config: pc)
        url = try s.startInProcess(name: "kv-host-swift-\(getpid())")
        inProcessPlugin = s
    } catch {
        fputs("error: cannot serve the KV plugin in process: \(error)\n", stderr)
        exit(1)
    }
}
if url == nil && plugin.isEmpty { usage("--plugin PATH, --url URL or --in-process is required") }
let path = url ?? plugin.first ?? ""

let expected = ["put greeting ok", "get greeting found=true value=hello", "delete greeting existed=true",
                "get greeting found=false", "putmany count=2", "list s/ s/a=1 s/b=2",
                "watch s/ s/a=1 s/b=2 s/c=3 deleted:s/a"]

/// A failure of the script (a step that did not go as it must).
struct ScriptError: Error, CustomStringConvertible {
    var description: String
}

func text(_ b: [UInt8]) -> String { String(decoding: b, as: UTF8.self) }

func script(_ kv: KV) throws -> [String] {
    var out: [String] = []
    try kv.put("greeting", Array("hello".utf8))
    out.append("put greeting ok")
    let (found, value) = try kv.get("greeting")
    out.append("get greeting found=\(found) value=\(text(value))")
    out.append("delete greeting existed=\(try kv.delete("greeting"))")
    out.append("get greeting found=\(try kv.get("greeting").found)")

    let count = try step("putmany") {
        try kv.putMany([KVItem(key: "s/a", value: Array("1".utf8)), KVItem(key: "s/b", value: Array("2".utf8))])
    }
    out.append("putmany count=\(count)")
    let items = try step("list") { try kv.list("s/") }
    out.append("list s/" + items.map { " \($0.key)=\(text($0.value))" }.joined())
    let events = try step("watch") { try watchScript(kv) }
    out.append("watch s/" + events.map { $0.deleted ? " deleted:\($0.key)" : " \($0.key)=\(text($0.value))" }.joined())
    // So that the next repetition starts empty.
    try step("cleanup") {
        _ = try kv.delete("s/b")
        _ = try kv.delete("s/c")
    }
    return out
}

/// Runs a step of the script; its error is reported as `STEP: ERROR`.
func step<T>(_ name: String, _ body: () throws -> T) throws -> T {
    do { return try body() } catch { throw ScriptError(description: "\(name): \(error)") }
}

/// Watch s/: the 2 replayed events; Put s/c (another call) and its event; Delete s/a and its
/// event; half-close; the stream must then end OK without another event.
func watchScript(_ kv: KV) throws -> [KVEvent] {
    let w = try kv.watch()
    defer { w.close() }
    var events: [KVEvent] = []
    func receive(_ n: Int) throws {
        for _ in 0..<n {
            guard let e = try w.receive() else {
                throw ScriptError(description: "the stream ended after \(events.count) events")
            }
            events.append(e)
        }
    }
    try w.send(prefix: "s/")
    try receive(2)
    try kv.put("s/c", Array("3".utf8))
    try receive(1)
    _ = try kv.delete("s/a")
    try receive(1)
    w.closeSend()
    if let extra = try w.receive() {
        throw ScriptError(description: "an event after the half-close: \(extra.key)")
    }
    return events
}

let command = PluginCommand(path: path, arguments: Array(plugin.dropFirst()))
let kvHandshake = HandshakeConfig(cookieKey: "KV_PLUGIN", cookieValue: "connectplugin-kv")
var hostConfig = url.map { PluginClientConfig(handshake: kvHandshake, versionedPlugins: [1: ["kv"]], url: $0) }
    ?? PluginClientConfig(handshake: kvHandshake, versionedPlugins: [1: ["kv"]], command: command)
if printLogs {
    hostConfig.logger = { name, r in
        var line = "log \(name) \(r.level.name) \(r.message)"
        for (k, v) in r.fields { line += " \(k)=\(v)" }
        print(line)
    }
}
hostConfig.autoMTLS = autoMTLS
let host = PluginClient(config: hostConfig)
do {
    try host.start()
    print("started \(path) pid=\(host.pid ?? 0) version=\(host.negotiatedVersion ?? 0)")
    let kv: KV = KVClient(client: try host.dispense("kv"))
    var ok = true
    var lines: [String] = []
    for _ in 0..<repeatCount {
        lines = try script(kv)
        ok = ok && lines == expected
    }
    lines.forEach { print($0) }
    try host.ping()
    print("ping ok")
    host.kill()
    if url != nil {
        inProcessPlugin?.stop("the host is done")
        print("stopped: disconnected")
        exit(ok ? 0 : 1)
    }
    switch host.exitStatus {
    case .exited(let c)?:
        print("stopped: exited \(c)")
        exit(ok && c == 0 ? 0 : 1)
    case let other:
        print("stopped: \(other.map { "\($0)" } ?? "unknown")")
        exit(1)
    }
} catch {
    fputs("error: \(error)\n", stderr)
    host.kill()
    exit(1)
}
