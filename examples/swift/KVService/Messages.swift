// The KV messages of examples/proto/kv/v1/kv.proto, hand-encoded in both codecs (binary protobuf
// and proto3 JSON), and the errors of examples/proto/README.md (with the google.rpc.ErrorInfo
// detail, hand-encoded too: no generated code, no googleapis).
import ConnectPlugin

let reservedKey = "__error__"
let slowKey = "__slow__"

/// A decoded request. Every request message of kv.proto has a string in field 1 (`key` or
/// `prefix`) and, for PutRequest, bytes in field 2 (`value`).
struct KVRequest {
    var key = ""
    var value: [UInt8] = []
}

/// Decodes a request; `keyName` is the JSON name of field 1 ("key" or "prefix").
func decodeRequest(_ message: [UInt8], codec: String, keyName: String = "key") throws -> KVRequest {
    var r = KVRequest()
    if codec == "json" {
        let v: JSONValue
        do { v = try JSON.parse(message) } catch { throw ConnectError(.invalidArgument, "request is not valid JSON: \(error)") }
        guard case .object = v else { throw ConnectError(.invalidArgument, "request JSON must be an object") }
        if let k = v[keyName], !k.isNull {
            guard case .string(let s) = k else { throw ConnectError(.invalidArgument, "\(keyName) must be a string") }
            r.key = s
        }
        if let val = v["value"], !val.isNull {
            guard case .string(let s) = val, let b = Base64.decode(s) else { throw ConnectError(.invalidArgument, "value must be base64") }
            r.value = b
        }
        return r
    }
    var reader = ProtoReader(message)
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

/// A response field: (field number, JSON name, value). Default values are omitted in both codecs.
enum Field {
    case string(Int, String, String)
    case bytes(Int, String, [UInt8])
    case bool(Int, String, Bool)
    case int64(Int, String, Int64)
}

func encodeResponse(_ codec: String, _ fields: [Field]) -> [UInt8] {
    if codec == "json" {
        var obj: [(String, JSONValue)] = []
        for f in fields {
            switch f {
            case .string(_, let name, let v) where !v.isEmpty: obj.append((name, .string(v)))
            case .bytes(_, let name, let v) where !v.isEmpty: obj.append((name, .string(Base64.encode(v))))
            case .bool(_, let name, let v) where v: obj.append((name, .bool(true)))
            case .int64(_, let name, let v) where v != 0: obj.append((name, .string(String(v))))  // proto3 JSON: int64 as a string
            default: break
            }
        }
        return JSON.serialize(.object(obj))
    }
    var w = ProtoWriter()
    for f in fields {
        switch f {
        case .string(let n, _, let v): w.stringField(n, v)
        case .bytes(let n, _, let v): w.bytesField(n, v)
        case .bool(let n, _, let v): w.boolField(n, v)
        case .int64(let n, _, let v): w.int64Field(n, v)
        }
    }
    return w.bytes
}

/// `invalid_argument` for an empty key, `failed_precondition` (+ ErrorInfo) for the reserved key.
func checkKey(_ key: String) throws {
    if key.isEmpty { throw ConnectError(.invalidArgument, "key must not be empty") }
    if key == reservedKey { throw reservedKeyError() }
}

/// Prefixes may be empty (every key); the reserved key is refused.
func checkPrefix(_ prefix: String) throws {
    if prefix == reservedKey { throw reservedKeyError() }
}

/// failed_precondition "key is reserved" with one google.rpc.ErrorInfo{reason: "RESERVED_KEY",
/// domain: "kv.examples.connectplugin", metadata: {"key": "__error__"}}. ErrorInfo is
/// `string reason = 1; string domain = 2; map<string, string> metadata = 3;` and a map entry is a
/// message `{string key = 1; string value = 2}`.
func reservedKeyError() -> ConnectError {
    var entry = ProtoWriter()
    entry.stringField(1, "key")
    entry.stringField(2, reservedKey)
    var info = ProtoWriter()
    info.stringField(1, "RESERVED_KEY")
    info.stringField(2, "kv.examples.connectplugin")
    info.bytesField(3, entry.bytes)
    return ConnectError(.failedPrecondition, "key is reserved",
                        details: [ErrorDetail(type: "google.rpc.ErrorInfo", value: info.bytes)])
}
