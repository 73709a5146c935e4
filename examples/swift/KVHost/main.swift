// kv-host-swift: a plugin host in Swift. It launches a KV plugin (a connectplugin plugin in any
// language, or an unmodified HashiCorp go-plugin gRPC plugin), dispenses "kv" as the `KV` protocol,
// runs the scripted Put/Get/Delete sequence, prints the results and stops the plugin.
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
}

struct KVClient: KV {
    let client: Client
    static let service = "/connectplugin.examples.kv.v1.KVService/"

    private func keyMessage(_ key: String, value: [UInt8]? = nil) -> [UInt8] {
        var w = ProtoWriter()
        w.stringField(1, key)
        if let value { w.bytesField(2, value) }
        return w.bytes
    }

    func put(_ key: String, _ value: [UInt8]) throws {
        _ = try client.unary(KVClient.service + "Put", request: keyMessage(key, value: value), timeoutMs: 20_000)
    }

    func get(_ key: String) throws -> (found: Bool, value: [UInt8]) {
        let m = try client.unary(KVClient.service + "Get", request: keyMessage(key), timeoutMs: 20_000).message
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
        let m = try client.unary(KVClient.service + "Delete", request: keyMessage(key), timeoutMs: 20_000).message
        var r = ProtoReader(m)
        var existed = false
        while let (field, wire) = try r.next() {
            if field == 1 && wire == 0 { existed = try r.varint() != 0 } else { try r.skip(wireType: wire) }
        }
        return existed
    }
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
        fputs("kv-host-swift: cannot serve the KV plugin in process: \(error)\n", stderr)
        exit(1)
    }
}
if url == nil && plugin.isEmpty { usage("--plugin PATH, --url URL or --in-process is required") }
let path = url ?? plugin.first ?? ""

let expected = ["put greeting ok", "get greeting found=true value=hello", "delete greeting existed=true",
                "get greeting found=false"]

func script(_ kv: KV) throws -> [String] {
    var out: [String] = []
    try kv.put("greeting", Array("hello".utf8))
    out.append("put greeting ok")
    let (found, value) = try kv.get("greeting")
    out.append("get greeting found=\(found) value=\(String(decoding: value, as: UTF8.self))")
    out.append("delete greeting existed=\(try kv.delete("greeting"))")
    out.append("get greeting found=\(try kv.get("greeting").found)")
    return out
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
    fputs("kv-host-swift: \(error)\n", stderr)
    host.kill()
    exit(1)
}
