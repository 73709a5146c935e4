// The Connect streaming EndStreamResponse (protocol digest §5.2): the last envelope of every Connect
// streaming response, flag 0x02 (0x03 when compressed), always JSON whatever the codec:
//
//   {}                                              success, no trailers
//   {"error":{"code":"unavailable","message":"…","details":[…]},"metadata":{"key":["v1","v2"]}}
import ConnectPluginHTTP

/// The end of a Connect streaming response: the error (nil on success) and the trailing metadata.
public struct EndStreamResponse: Equatable, Sendable {
    public var error: ConnectError?
    public var metadata: Metadata

    public init(error: ConnectError? = nil, metadata: Metadata = Metadata()) {
        self.error = error
        self.metadata = metadata
    }

    // MARK: Encoding (server, CS-5)

    /// The JSON body. Success with no metadata is exactly `{}`. The "error" key is present only for
    /// an error, and holds the Connect error object (§3.3 schema, via `ConnectErrorJSON.encode`:
    /// code string, message omitted when empty, details with unpadded base64 values). "metadata" is
    /// present only when there is some: `{lowercase-key: [values…]}` in first-appearance order of the
    /// keys, repeated keys grouped (GEN-12), "-bin" values as unpadded base64 (GEN-10). The metadata
    /// written is `metadata` followed by `error.metadata` (as connect-go merges error metadata into
    /// the trailers).
    public func encodeJSON() -> [UInt8] {
        var all = metadata
        if let e = error { all.append(contentsOf: e.metadata) }
        var out: [UInt8] = [0x7B]  // {
        if let e = error {
            out.append(contentsOf: Array(#""error":"#.utf8))
            out.append(contentsOf: ConnectErrorJSON.encode(e))
        }
        if !all.isEmpty {
            if error != nil { out.append(0x2C) }  // ,
            out.append(contentsOf: Array(#""metadata":"#.utf8))
            out.append(contentsOf: JSON.serialize(EndStreamResponse.metadataJSON(all)))
        }
        out.append(0x7D)  // }
        return out
    }

    /// The whole envelope: flags 0x02, or 0x03 when `compress` is set and the JSON reaches
    /// `compressMinBytes` (CS-6).
    public func encodeEnvelope(compress: Bool = false, compressMinBytes: Int = 0, into out: inout [UInt8]) throws {
        try EnvelopeCodec.encodeMessage(encodeJSON(), flags: Envelope.endStreamFlag, compress: compress,
                                        compressMinBytes: compressMinBytes, into: &out)
    }

    static func metadataJSON(_ md: Metadata) -> JSONValue {
        var keys: [String] = []
        var values: [String: [JSONValue]] = [:]
        for (key, value) in md {
            let k = asciiLowercased(key)
            let v = Metadata.isBinaryKey(k) ? Base64.encode(value, padded: false) : String(decoding: value, as: UTF8.self)
            if values[k] == nil {
                keys.append(k)
                values[k] = [.string(v)]
            } else {
                values[k]?.append(.string(v))
            }
        }
        return .object(keys.map { ($0, .array(values[$0] ?? [])) })
    }

    // MARK: Decoding (client, CS-11)

    /// Parses the (already decompressed) JSON of an EndStreamResponse.
    ///
    /// * Not JSON, or JSON of the wrong shape (top level not an object; "error" not an object;
    ///   "metadata" not an object of string arrays) → throws internal. A top-level `null` counts as
    ///   `{}` (connect-go).
    /// * `"error": null` or no "error" → success (conformance `end-stream/null-error`).
    /// * An error whose code is missing, null, not a string or unrecognised → `unknown`, keeping the
    ///   message and details (conformance `end-stream/null-code`, `missing-code`, `unrecognized-code`).
    ///   Unknown keys and garbage `debug` are ignored; invalid details are dropped.
    /// * Metadata keys are lowercased; "-bin" values are base64-decoded (padded or not, each
    ///   comma-separated part separately, GEN-10/11), values that do not decode are dropped.
    /// * The returned error's metadata is the trailing metadata; callers add the response headers in
    ///   front (CS-11: "metadata = headers + trailers").
    public static func decode(json: [UInt8]) throws -> EndStreamResponse {
        let value: JSONValue
        do {
            value = try JSON.parse(json)
        } catch {
            throw ConnectError(.internal, "protocol error: invalid end stream message: \(error)")
        }
        var members: [(String, JSONValue)] = []
        switch value {
        case .null: break
        case .object(let m): members = m
        default: throw invalid("not a JSON object")
        }

        var result = EndStreamResponse()
        var errorValue: JSONValue?
        var seenError = false, seenMetadata = false
        for (key, v) in members {
            switch key {
            case "error" where !seenError:
                seenError = true
                errorValue = v
            case "metadata" where !seenMetadata:
                seenMetadata = true
                result.metadata = try decodeMetadata(v)
            default:
                continue
            }
        }
        if let ev = errorValue {
            switch ev {
            case .null:
                break
            case .object(let fields):
                var e = decodeError(fields)
                e.metadata = result.metadata
                result.error = e
            default:
                throw invalid("\"error\" is not an object")
            }
        }
        return result
    }

    /// Decodes a whole EndStream envelope (flag 0x02, optionally 0x01): decompresses with the
    /// stream's encoding (CS-6, GEN-7, CMP-6), then `decode(json:)`.
    public static func decode(envelope: Envelope, encoding: MessageEncoding, maxBytes: Int) throws -> EndStreamResponse {
        guard envelope.isEndStream else {
            throw ConnectError(.internal, "protocol error: envelope is not an end-stream message")
        }
        let json = try EnvelopeCodec.decodePayload(envelope, encoding: encoding, maxBytes: maxBytes,
                                                   allowedFlags: Envelope.endStreamFlag)
        return try decode(json: json)
    }

    static func invalid(_ why: String) -> ConnectError {
        ConnectError(.internal, "protocol error: invalid end stream message: \(why)")
    }

    static func decodeMetadata(_ v: JSONValue) throws -> Metadata {
        var md = Metadata()
        switch v {
        case .null:
            return md
        case .object(let members):
            for (rawKey, list) in members {
                let key = asciiLowercased(rawKey)
                let items: [JSONValue]
                switch list {
                case .null: continue
                case .array(let a): items = a
                default: throw invalid("metadata value for \"\(rawKey)\" is not an array")
                }
                for item in items {
                    guard case .string(let s) = item else {
                        throw invalid("metadata value for \"\(rawKey)\" is not a string")
                    }
                    if key.isEmpty { continue }
                    if Metadata.isBinaryKey(key) {
                        for part in s.split(separator: ",", omittingEmptySubsequences: false) {
                            if let bytes = Base64.decode(part.trimmingASCIISpaces()) { md.appendUnchecked(key, bytes) }
                        }
                    } else {
                        md.appendUnchecked(key, Array(s.utf8))
                    }
                }
            }
            return md
        default:
            throw invalid("\"metadata\" is not an object")
        }
    }

    /// CS-11: code missing, null or unrecognised → unknown; the first occurrence of each key counts.
    static func decodeError(_ fields: [(String, JSONValue)]) -> ConnectError {
        var code = Code.unknown
        var message = ""
        var details: [ErrorDetail] = []
        var seenCode = false, seenMessage = false, seenDetails = false
        for (key, value) in fields {
            switch key {
            case "code" where !seenCode:
                seenCode = true
                if let s = value.stringValue, let c = Code(name: s) { code = c }
            case "message" where !seenMessage:
                seenMessage = true
                if let s = value.stringValue { message = s }
            case "details" where !seenDetails:
                seenDetails = true
                for item in value.arrayValue ?? [] {
                    if let d = ConnectErrorJSON.decodeDetail(item) { details.append(d) }
                }
            default:
                continue
            }
        }
        return ConnectError(code, message, details: details)
    }
}
