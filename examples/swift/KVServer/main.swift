// kv-server-swift: the example key-value store served with the connectplugin Swift API.
// Usage: kv-server-swift --listen ADDR   (ADDR is host:port or unix:PATH)
import ConnectPlugin
import Glibc

let service = "/connectplugin.examples.kv.v1.KVService/"

final class Store: @unchecked Sendable {
    private var mutex = pthread_mutex_t()
    private var values: [String: [UInt8]] = [:]
    init() { pthread_mutex_init(&mutex, nil) }
    func with<T>(_ body: (inout [String: [UInt8]]) -> T) -> T {
        pthread_mutex_lock(&mutex)
        defer { pthread_mutex_unlock(&mutex) }
        return body(&values)
    }
}

/// A decoded KV request: the key and (for Put) the value.
struct KVRequest {
    var key = ""
    var value: [UInt8] = []
}

func decodeRequest(_ call: UnaryCall) throws -> KVRequest {
    var r = KVRequest()
    if call.codec == "json" {
        let v: JSONValue
        do { v = try JSON.parse(call.request) } catch { throw ConnectError(.invalidArgument, "request is not valid JSON: \(error)") }
        guard case .object = v else { throw ConnectError(.invalidArgument, "request JSON must be an object") }
        if let k = v["key"] {
            guard case .string(let s) = k else { throw ConnectError(.invalidArgument, "key must be a string") }
            r.key = s
        }
        if let val = v["value"] {
            guard case .string(let s) = val, let b = Base64.decode(s) else { throw ConnectError(.invalidArgument, "value must be base64") }
            r.value = b
        }
        return r
    }
    var reader = ProtoReader(call.request)
    do {
        while let (field, wire) = try reader.next() {
            switch (field, wire) {
            case (1, 2): r.key = try reader.string()
            case (2, 2): r.value = try reader.lengthDelimited()
            default: try reader.skip(wireType: wire)
            }
        }
    } catch {
        throw ConnectError(.invalidArgument, "request does not decode: \(error)")
    }
    return r
}

/// Encodes a response given as (field number, JSON name, value) triples; defaults are omitted.
enum Field {
    case bytes(Int, String, [UInt8])
    case bool(Int, String, Bool)
}

func encodeResponse(_ codec: String, _ fields: [Field]) -> [UInt8] {
    if codec == "json" {
        var obj: [(String, JSONValue)] = []
        for f in fields {
            switch f {
            case .bytes(_, let name, let v) where !v.isEmpty: obj.append((name, .string(Base64.encode(v))))
            case .bool(_, let name, let v) where v: obj.append((name, .bool(true)))
            default: break
            }
        }
        return JSON.serialize(.object(obj))
    }
    var w = ProtoWriter()
    for f in fields {
        switch f {
        case .bytes(let n, _, let v): w.bytesField(n, v)
        case .bool(let n, _, let v): w.boolField(n, v)
        }
    }
    return w.bytes
}

func requireKey(_ r: KVRequest) throws {
    if r.key.isEmpty { throw ConnectError(.invalidArgument, "key must not be empty") }
}

var listen: String?
var args = CommandLine.arguments.dropFirst().makeIterator()
while let a = args.next() {
    if a == "--listen" { listen = args.next() } else if a.hasPrefix("--listen=") { listen = String(a.dropFirst(9)) }
}
guard let listenAddr = listen else {
    fputs("usage: kv-server-swift --listen ADDR (host:port or unix:PATH)\n", stderr)
    exit(2)
}

// Block SIGINT/SIGTERM so that this thread can wait for them with sigwait.
var sigs = sigset_t()
sigemptyset(&sigs)
sigaddset(&sigs, SIGINT)
sigaddset(&sigs, SIGTERM)
pthread_sigmask(SIG_BLOCK, &sigs, nil)

let store = Store()
do {
    let server = try Server()
    try server.handle(service + "Put") { call in
        let r = try decodeRequest(call)
        try requireKey(r)
        store.with { $0[r.key] = r.value }
        return encodeResponse(call.codec, [])
    }
    try server.handle(service + "Get") { call in
        let r = try decodeRequest(call)
        try requireKey(r)
        let v = store.with { $0[r.key] }
        return encodeResponse(call.codec, [.bytes(1, "value", v ?? []), .bool(2, "found", v != nil)])
    }
    try server.handle(service + "Delete") { call in
        let r = try decodeRequest(call)
        try requireKey(r)
        let existed = store.with { $0.removeValue(forKey: r.key) != nil }
        return encodeResponse(call.codec, [.bool(1, "existed", existed)])
    }
    let bound = listenAddr.hasPrefix("unix:") ? try server.listenUnix(String(listenAddr.dropFirst(5))) : try server.listenTCP(listenAddr)
    try server.start()
    print("listening on \(bound)")
    fflush(stdout)
    var sig: Int32 = 0
    sigwait(&sigs, &sig)
    server.stop(graceMs: 5000)
    exit(0)
} catch {
    fputs("kv-server-swift: \(error)\n", stderr)
    exit(1)
}
