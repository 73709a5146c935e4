// The KV messages of examples/proto/kv/v1/kv.proto as the client sends and reads them, hand-encoded
// in both codecs (binary protobuf and proto3 JSON), and google.rpc.ErrorInfo decoding.
import ConnectPlugin

/// Encodes a request: field 1 is a string named `keyName` ("key" or "prefix"), field 2 the bytes
/// `value` (PutRequest only).
func encodeRequest(_ codec: String, _ key: String, keyName: String = "key", value: [UInt8]? = nil) -> [UInt8] {
    if codec == "json" {
        var obj: [(String, JSONValue)] = [(keyName, .string(key))]
        if let v = value { obj.append(("value", .string(Base64.encode(v)))) }
        return JSON.serialize(.object(obj))
    }
    var w = ProtoWriter()
    w.stringField(1, key)
    if let v = value { w.bytesField(2, v) }
    return w.bytes
}

/// The fields of a protobuf message by number (the last occurrence wins).
struct ProtoFields {
    var bytes: [Int: [UInt8]] = [:]
    var varints: [Int: UInt64] = [:]

    init(_ message: [UInt8]) throws {
        var r = ProtoReader(message)
        while let (field, wire) = try r.next() {
            switch wire {
            case 0: varints[field] = try r.varint()
            case 2: bytes[field] = try r.lengthDelimited()
            default: try r.skip(wireType: wire)
            }
        }
    }
}

/// A response message in either codec: field accessors by number (proto) or JSON name.
struct Response {
    private var proto: ProtoFields?
    private var json: JSONValue?

    init(_ codec: String, _ message: [UInt8]) throws {
        if codec == "json" {
            let v = try JSON.parse(message)
            guard case .object = v else { throw ConnectError(.internal, "response JSON is not an object") }
            json = v
        } else {
            proto = try ProtoFields(message)
        }
    }

    func string(_ n: Int, _ name: String) -> String {
        if let p = proto { return text(p.bytes[n] ?? []) }
        return json?[name]?.stringValue ?? ""
    }

    func bytes(_ n: Int, _ name: String) -> [UInt8] {
        if let p = proto { return p.bytes[n] ?? [] }
        return json?[name]?.stringValue.flatMap { Base64.decode($0) } ?? []
    }

    func bool(_ n: Int, _ name: String) -> Bool {
        if let p = proto { return (p.varints[n] ?? 0) != 0 }
        if case .bool(let b)? = json?[name] { return b }
        return false
    }

    /// int64: a varint in proto; a string (or a number) in JSON.
    func int64(_ n: Int, _ name: String) -> Int64 {
        if let p = proto { return Int64(bitPattern: p.varints[n] ?? 0) }
        switch json?[name] {
        case .string(let s)?: return Int64(s) ?? 0
        case .number(let s)?: return Int64(s) ?? 0
        default: return 0
        }
    }
}

func text(_ b: [UInt8]) -> String { String(decoding: b, as: UTF8.self) }

/// google.rpc.ErrorInfo {string reason = 1; string domain = 2; map<string, string> metadata = 3}.
struct ErrorInfo {
    var reason = ""
    var domain = ""
    var metadata: [(String, String)] = []
}

func decodeErrorInfo(_ bytes: [UInt8]) throws -> ErrorInfo {
    var info = ErrorInfo()
    var r = ProtoReader(bytes)
    while let (field, wire) = try r.next() {
        switch (field, wire) {
        case (1, 2): info.reason = text(try r.lengthDelimited())
        case (2, 2): info.domain = text(try r.lengthDelimited())
        case (3, 2):
            var entry = ProtoReader(try r.lengthDelimited())
            var k = "", v = ""
            while let (f, w) = try entry.next() {
                switch (f, w) {
                case (1, 2): k = text(try entry.lengthDelimited())
                case (2, 2): v = text(try entry.lengthDelimited())
                default: try entry.skip(wireType: w)
                }
            }
            info.metadata.append((k, v))
        default: try r.skip(wireType: wire)
        }
    }
    return info
}
