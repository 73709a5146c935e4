// The gRPC status carriers (protocol digest §2.3, §6.2, §6.4): `grpc-status`, the percent-encoded
// `grpc-message`, `grpc-status-details-bin` (a serialized google.rpc.Status), building the trailer
// fields on the server, classifying a response on the client, and RST_STREAM codes.
import ConnectPluginHTTP

// MARK: - grpc-message percent-encoding

public enum GRPCMessage {
    private static let hexUpper: [UInt8] = Array("0123456789ABCDEF".utf8)

    /// G-9: the UTF-8 bytes of `message` with every byte < 0x20, > 0x7E and `%` written as `%XX`
    /// (uppercase hex); everything else, space included, as is.
    public static func percentEncode(_ message: String) -> String {
        var needs = false
        for b in message.utf8 where b < 0x20 || b > 0x7E || b == 0x25 { needs = true; break }
        if !needs { return message }
        var out = [UInt8]()
        out.reserveCapacity(message.utf8.count &* 3)
        for b in message.utf8 {
            if b < 0x20 || b > 0x7E || b == 0x25 {
                out.append(0x25)
                out.append(hexUpper[Int(b >> 4)])
                out.append(hexUpper[Int(b & 0x0F)])
            } else {
                out.append(b)
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// G-10: never fails. `%XX` (either hex case) becomes the byte; a `%` not followed by two hex
    /// digits is kept literally. Decoded bytes that are not valid UTF-8 become U+FFFD.
    public static func percentDecode(_ encoded: String) -> String {
        if !encoded.utf8.contains(0x25) { return encoded }
        let b = Array(encoded.utf8)
        var out = [UInt8]()
        out.reserveCapacity(b.count)
        var i = 0
        while i < b.count {
            let c = b[i]
            if c == 0x25, i &+ 2 < b.count, let hi = hexValue(b[i &+ 1]), let lo = hexValue(b[i &+ 2]) {
                out.append(hi << 4 | lo)
                i = i &+ 3
            } else {
                out.append(c)
                i = i &+ 1
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    static func hexValue(_ c: UInt8) -> UInt8? {
        switch c {
        case 0x30...0x39: return c &- 0x30
        case 0x41...0x46: return c &- 0x41 &+ 10
        case 0x61...0x66: return c &- 0x61 &+ 10
        default: return nil
        }
    }
}

// MARK: - google.rpc.Status

/// `google.rpc.Status { int32 code = 1; string message = 2; repeated google.protobuf.Any details = 3; }`
/// with `Any { string type_url = 1; bytes value = 2; }` (§2.3).
public struct GRPCStatus: Equatable, Sendable {
    public static let typeURLPrefix = "type.googleapis.com/"

    /// The raw wire code (may be outside 0…16; see `connectCode`).
    public var code: Int32
    public var message: String
    /// Details; `type` is the message name without the URL prefix.
    public var details: [ErrorDetail]

    public init(code: Int32, message: String = "", details: [ErrorDetail] = []) {
        self.code = code
        self.message = message
        self.details = details
    }

    /// The status of an error (nil = OK). A ConnectError carrying `.ok` is reported as unknown.
    public init(error: ConnectError?) {
        guard let error else { self.init(code: 0); return }
        let c: Code = error.code == .ok ? .unknown : error.code
        self.init(code: c.rawValue, message: error.message, details: error.details)
    }

    /// The code, out-of-range values mapped to unknown (ERR-1).
    public var connectCode: Code { Code(wire: Int64(code)) }

    /// The serialized message. proto3: code 0 and an empty message are omitted; every detail is
    /// written, even an empty one.
    public func encode() -> [UInt8] {
        var w = ProtoWriter()
        w.int64Field(1, Int64(code))  // int32 is sign-extended to 64 bits on the wire
        w.stringField(2, message)
        var out = w.bytes
        for d in details {
            var any = ProtoWriter()
            any.stringField(1, GRPCStatus.typeURL(d.type))
            any.bytesField(2, d.value)
            out.append(0x1A)  // field 3, wire type 2
            GRPCStatus.appendVarint(UInt64(any.bytes.count), to: &out)
            out.append(contentsOf: any.bytes)
        }
        return out
    }

    static func appendVarint(_ v: UInt64, to out: inout [UInt8]) {
        var v = v
        while v >= 0x80 {
            out.append(UInt8(truncatingIfNeeded: v) | 0x80)
            v >>= 7
        }
        out.append(UInt8(truncatingIfNeeded: v))
    }

    /// Parses a serialized google.rpc.Status. Unknown fields, and known fields with an unexpected wire
    /// type, are skipped; truncated or malformed input throws ProtoWireError. A message that is not
    /// valid UTF-8 is decoded leniently (U+FFFD).
    public static func decode(_ bytes: [UInt8]) throws -> GRPCStatus {
        var r = ProtoReader(bytes)
        var s = GRPCStatus(code: 0)
        while let (field, wire) = try r.next() {
            switch (field, wire) {
            case (1, 0):
                s.code = Int32(truncatingIfNeeded: try r.varint())
            case (2, 2):
                s.message = String(decoding: try r.lengthDelimited(), as: UTF8.self)
            case (3, 2):
                s.details.append(try decodeAny(try r.lengthDelimited()))
            default:
                try r.skip(wireType: wire)
            }
        }
        return s
    }

    static func decodeAny(_ bytes: [UInt8]) throws -> ErrorDetail {
        var r = ProtoReader(bytes)
        var url = ""
        var value: [UInt8] = []
        while let (field, wire) = try r.next() {
            switch (field, wire) {
            case (1, 2): url = String(decoding: try r.lengthDelimited(), as: UTF8.self)
            case (2, 2): value = try r.lengthDelimited()
            default: try r.skip(wireType: wire)
            }
        }
        return ErrorDetail(type: ConnectErrorJSON.typeName(url), value: value)
    }

    /// "type.googleapis.com/" + name; a type that already contains "/" is kept as is.
    static func typeURL(_ type: String) -> String {
        type.utf8.contains(UInt8(ascii: "/")) ? type : typeURLPrefix + type
    }

    /// The `grpc-status-details-bin` value: unpadded standard base64 of `encode()` (G-11, GEN-10).
    public var detailsBinValue: String { Base64.encode(encode(), padded: false) }

    /// Parses a `grpc-status-details-bin` value (padded or unpadded base64; nil if not base64 or not
    /// a valid Status).
    public static func decode(detailsBin: String) -> GRPCStatus? {
        guard let bytes = Base64.decode(detailsBin.trimmingASCIISpaces()) else { return nil }
        return try? decode(bytes)
    }
}

// MARK: - Trailers (server) and classification (client)

public enum GRPCTrailers {
    /// Header names that carry the status itself.
    public static let statusKey = "grpc-status"
    public static let messageKey = "grpc-message"
    public static let detailsKey = "grpc-status-details-bin"

    /// The fields that end a gRPC / gRPC-Web response (G-7, G-9, G-11), in order:
    /// * `grpc-status` — always; decimal, no leading zeros;
    /// * `grpc-message` — percent-encoded, only when the status is not 0 and the message is not empty;
    /// * `grpc-status-details-bin` — only when the error has details; unpadded base64 of a
    ///   google.rpc.Status whose code and message equal the two fields above;
    /// * the metadata: `trailers`, then `error.metadata` (connect-go merges error metadata into the
    ///   trailers). "-bin" values are unpadded base64 (GEN-10); repeated keys stay separate fields
    ///   (GEN-12); keys are lowercased (GEN-13). Entries are dropped when the key is a protocol header
    ///   (GEN-14), starts with "grpc-" (reserved, §1.3) or is not a valid metadata key, or when a text
    ///   value has bytes outside 0x20–0x7E, so that they can neither override the status nor break the
    ///   header block.
    ///
    /// The same list serves HTTP/2 trailers, a trailers-only HEADERS frame (G-8, GW-2; add `:status`
    /// and content-type) and the gRPC-Web trailer block (`GRPCWebTrailers`).
    public static func fields(error: ConnectError?, trailers: Metadata) -> [(String, String)] {
        let status = GRPCStatus(error: error)
        var out: [(String, String)] = [(statusKey, String(status.code))]
        if status.code != 0 && !status.message.isEmpty {
            out.append((messageKey, GRPCMessage.percentEncode(status.message)))
        }
        if status.code != 0 && !status.details.isEmpty {
            out.append((detailsKey, status.detailsBinValue))
        }
        appendMetadata(trailers, to: &out)
        if let e = error { appendMetadata(e.metadata, to: &out) }
        return out
    }

    static func appendMetadata(_ md: Metadata, to out: inout [(String, String)]) {
        for (rawKey, value) in md {
            let key = asciiLowercased(rawKey)
            guard isValidMetadataKey(key), !Metadata.reservedHeaders.contains(key), !key.hasPrefix("grpc-") else { continue }
            if Metadata.isBinaryKey(key) {
                out.append((key, Base64.encode(value, padded: false)))
            } else {
                guard value.allSatisfy({ $0 >= 0x20 && $0 <= 0x7E }) else { continue }
                out.append((key, String(decoding: value, as: UTF8.self)))
            }
        }
    }

    static func isValidMetadataKey(_ key: String) -> Bool {
        if key.isEmpty { return false }
        for b in key.utf8 {
            let ok = (b >= 0x30 && b <= 0x39) || (b >= 0x61 && b <= 0x7A) || b == 0x5F || b == 0x2D || b == 0x2E
            if !ok { return false }
        }
        return true
    }

    /// What a gRPC or gRPC-Web client makes of the end of a response.
    public struct Outcome: Equatable, Sendable {
        /// nil = the RPC succeeded (status 0). Its metadata is header metadata + trailer metadata
        /// (trailer metadata only for trailers-only responses, where both are the same fields).
        public var error: ConnectError?
        /// The trailing metadata: user metadata from the trailers (from the headers when
        /// `trailersOnly`), protocol fields removed, "-bin" values decoded.
        public var trailers: Metadata
        /// True when the status came from the response headers (G-12 step 3, GW-4).
        public var trailersOnly: Bool
    }

    /// Classifies the end of a gRPC (or gRPC-Web) response on the client (G-12 steps 1, 3–5;
    /// GW-4). `trailers` are the HTTP/2 trailers (gRPC) or the parsed body trailer block (gRPC-Web;
    /// empty when there was none); `bodyReceived` is whether any response body byte arrived.
    ///
    /// 1. `httpStatus` ≠ 200 → the code from §2.2 (ERR-3/4, 431 → unknown), message "HTTP status N
    ///    <phrase>" (ERR-5). The body is ignored.
    /// 3. No body and no trailers → trailers-only: the status comes from the headers, and every header
    ///    (minus protocol headers such as content-type) is exposed as a trailer.
    /// 4. Otherwise the status comes from the trailers only; a `grpc-status` in the headers is
    ///    ignored (conformance `trailers-only/ignore-header-if-body-present`, `…-if-trailer-present`).
    /// 5. No `grpc-status` → internal when there were no trailer fields at all, else unknown.
    ///    A `grpc-status` that is not a decimal number → unknown. Values outside 0…16 → unknown
    ///    (ERR-1). `grpc-message` is percent-decoded and never fails (G-10).
    ///    `grpc-status-details-bin`, when present, is preferred (G-11): its code (unless 0), its
    ///    message (unless empty) and its details; an undecodable value → internal (as connect-go and
    ///    grpc-go).
    ///
    /// Steps 2 (content type, `WireProtocol.validateResponseContentType`; encoding,
    /// `MessageEncoding.forResponse`) and 6 (cardinality) are the caller's.
    public static func classify(httpStatus: Int, headers: HTTPHeaders, trailers: HTTPHeaders, bodyReceived: Bool) -> Outcome {
        let headerMD = Metadata.from(headers).headers
        if httpStatus != 200 {
            let code = Code.fromHTTPStatus(httpStatus)
            let trailerMD = Metadata.from(trailers).headers
            var all = headerMD
            all.append(contentsOf: trailerMD)
            return Outcome(error: ConnectError(code, ConnectErrorJSON.statusText(httpStatus), metadata: all),
                           trailers: trailerMD, trailersOnly: false)
        }
        let trailersOnly = !bodyReceived && trailers.isEmpty
        let source = trailersOnly ? headers : trailers
        let trailerMD = Metadata.from(source).headers
        var errorMD = trailersOnly ? Metadata() : headerMD
        errorMD.append(contentsOf: trailerMD)

        var error = statusError(source, trailersOnly: trailersOnly)
        error?.metadata = errorMD
        return Outcome(error: error, trailers: trailerMD, trailersOnly: trailersOnly)
    }

    /// The error described by the status fields of `fields` (nil for status 0).
    static func statusError(_ fields: HTTPHeaders, trailersOnly: Bool) -> ConnectError? {
        guard let rawStatus = fields.first(statusKey) else {
            // Only content-type (or nothing) in a trailers-only block counts as "no trailers at all".
            let hasTrailers = fields.contains { !$0.name.hasPrefix(":") && $0.name != "content-type" }
            return ConnectError(hasTrailers ? .unknown : .internal, "protocol error: no grpc-status in the response")
        }
        let statusText = rawStatus.trimmingASCIISpaces()
        guard let wire = parseStatus(statusText) else {
            return ConnectError(.unknown, "protocol error: invalid grpc-status \"\(GRPCTrailers.clip(statusText))\"")
        }
        if wire == 0 { return nil }
        var code = Code(wire: wire)
        var message = GRPCMessage.percentDecode(fields.first(messageKey) ?? "")
        var details: [ErrorDetail] = []
        if let bin = fields.first(detailsKey), !bin.isEmpty {
            guard let status = GRPCStatus.decode(detailsBin: bin) else {
                return ConnectError(.internal, "protocol error: invalid grpc-status-details-bin")
            }
            if status.code != 0 { code = status.connectCode }
            if !status.message.isEmpty { message = status.message }
            details = status.details
        }
        return ConnectError(code, message, details: details)
    }

    /// 1–10 ASCII digits (leading zeros tolerated) → the number; nil otherwise.
    static func parseStatus(_ s: String) -> Int64? {
        let u = s.utf8
        guard !u.isEmpty, u.count <= 10 else { return nil }
        var v: Int64 = 0
        for b in u {
            guard b >= 0x30, b <= 0x39 else { return nil }
            v = v &* 10 &+ Int64(b &- 0x30)
        }
        return v
    }

    static func clip(_ s: String) -> String {
        s.utf8.count <= 32 ? s : String(decoding: Array(s.utf8.prefix(32)), as: UTF8.self) + "…"
    }
}

// MARK: - RST_STREAM (client side, §6.4)

public enum HTTP2ErrorCode {
    /// The code for a stream reset by the peer with HTTP/2 error `errorCode`.
    /// * nil when it is not an error: NO_ERROR after the trailers were received (G-13), and
    ///   STREAM_CLOSED (no open stream; log it).
    /// * NO_ERROR before the trailers, PROTOCOL_ERROR, INTERNAL_ERROR, FLOW_CONTROL_ERROR,
    ///   SETTINGS_TIMEOUT, FRAME_SIZE_ERROR, COMPRESSION_ERROR, CONNECT_ERROR, and unknown codes →
    ///   internal.
    /// * REFUSED_STREAM → unavailable (nothing was processed; safe to retry).
    /// * CANCEL → canceled, or deadline_exceeded when the local deadline has passed (T-3).
    /// * ENHANCE_YOUR_CALM → resource_exhausted. INADEQUATE_SECURITY → permission_denied.
    public static func code(forRSTStream errorCode: UInt32, afterTrailers: Bool = false, deadlinePassed: Bool = false) -> Code? {
        switch errorCode {
        case 0x0: return afterTrailers ? nil : .internal
        case 0x5: return nil
        case 0x7: return .unavailable
        case 0x8: return deadlinePassed ? .deadlineExceeded : .canceled
        case 0xB: return .resourceExhausted
        case 0xC: return .permissionDenied
        default: return .internal  // 1, 2, 3, 4, 6, 9, 0xA and anything unknown
        }
    }
}
