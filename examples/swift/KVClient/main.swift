// kv-client-swift: runs the scripted Put/Get/Delete sequence against a KV server.
// Usage: kv-client-swift --url URL [--codec proto|json] [--http 1.1|2]
import ConnectPlugin
import Glibc

let service = "/connectplugin.examples.kv.v1.KVService/"

var url: String?
var options = Client.Options()
var args = CommandLine.arguments.dropFirst().makeIterator()
while let a = args.next() {
    switch a {
    case "--url": url = args.next()
    case "--codec": options.codec = args.next() ?? "proto"
    case "--http":
        let v = args.next() ?? "2"
        options.httpVersion = v == "1.1" ? .http1_1 : .http2
    default:
        fputs("unknown argument \(a)\n", stderr)
        exit(2)
    }
}
guard let url else {
    fputs("usage: kv-client-swift --url URL [--codec proto|json] [--http 1.1|2]\n", stderr)
    exit(2)
}

func request(_ key: String, value: [UInt8]? = nil) -> [UInt8] {
    if options.codec == "json" {
        var obj: [(String, JSONValue)] = [("key", .string(key))]
        if let v = value { obj.append(("value", .string(Base64.encode(v)))) }
        return JSON.serialize(.object(obj))
    }
    var w = ProtoWriter()
    w.stringField(1, key)
    if let v = value { w.bytesField(2, v) }
    return w.bytes
}

/// Reads (bytes field 1 or bool fields) from a response.
func decode(_ message: [UInt8]) throws -> (value: [UInt8], flag1: Bool, flag2: Bool) {
    var value: [UInt8] = []
    var f1 = false, f2 = false
    if options.codec == "json" {
        let v = try JSON.parse(message)
        if case .string(let s)? = v["value"], let b = Base64.decode(s) { value = b }
        if case .bool(let b)? = v["existed"] { f1 = b }
        if case .bool(let b)? = v["found"] { f2 = b }
        return (value, f1, f2)
    }
    var r = ProtoReader(message)
    while let (field, wire) = try r.next() {
        switch (field, wire) {
        case (1, 2): value = try r.lengthDelimited()
        case (1, 0): f1 = try r.varint() != 0
        case (2, 0): f2 = try r.varint() != 0
        default: try r.skip(wireType: wire)
        }
    }
    return (value, f1, f2)
}

func fail(_ e: Error) -> Never {
    if let ce = e as? ConnectError { fputs("error: \(ce.code.name): \(ce.message)\n", stderr) } else { fputs("error: \(e)\n", stderr) }
    exit(1)
}

do {
    let client = try Client(baseURL: url, options: options)
    defer { client.close() }
    _ = try client.unary(service + "Put", request: request("greeting", value: Array("hello".utf8)))
    print("put greeting ok")
    var r = try decode(client.unary(service + "Get", request: request("greeting")).message)
    print("get greeting found=\(r.flag2) value=\(String(decoding: r.value, as: UTF8.self))")
    r = try decode(client.unary(service + "Delete", request: request("greeting")).message)
    print("delete greeting existed=\(r.flag1)")
    r = try decode(client.unary(service + "Get", request: request("greeting")).message)
    print("get greeting found=\(r.flag2)")
    do {
        _ = try client.unary(service + "Get", request: request(""))
        fputs("error: Get with an empty key succeeded\n", stderr)
        exit(1)
    } catch let e as ConnectError where e.code == .invalidArgument {
        print("get <empty> error=\(e.code.name) message=\(e.message)")
    }
} catch {
    fail(error)
}
