// The gRPC-Web trailer frame (protocol digest §7): an envelope with flag 0x80 (0x81 when compressed)
// whose payload is an HTTP/1-style header block, `key: value\r\n` per field, no blank line at the end.
import ConnectPluginHTTP

public enum GRPCWebTrailers {
    /// GW-1: `name: value\r\n` per field, names lowercased, repeated names as repeated lines, no
    /// trailing blank line. Fields that would corrupt the block are dropped: an empty name, a name
    /// with characters outside the HTTP token set, or a value containing CR, LF, NUL or another
    /// control character other than HTAB. Values are written as given (no trimming).
    public static func encodeBlock(_ fields: [(String, String)]) -> [UInt8] {
        var out = [UInt8]()
        out.reserveCapacity(fields.count &* 24)
        for (name, value) in fields {
            let n = asciiLowercased(name)
            guard isToken(n), isFieldValue(value) else { continue }
            out.append(contentsOf: n.utf8)
            out.append(0x3A)  // :
            out.append(0x20)
            out.append(contentsOf: value.utf8)
            out.append(0x0D)
            out.append(0x0A)
        }
        return out
    }

    /// The whole trailer envelope: flag 0x80, or 0x81 when `compress` is set and the block reaches
    /// `compressMinBytes`. Example: `[("grpc-status","0")]` → `80 00 00 00 10` `grpc-status: 0\r\n`.
    public static func encodeEnvelope(_ fields: [(String, String)], compress: Bool = false, compressMinBytes: Int = 0,
                                      into out: inout [UInt8]) throws {
        try EnvelopeCodec.encodeMessage(encodeBlock(fields), flags: Envelope.trailersFlag, compress: compress,
                                        compressMinBytes: compressMinBytes, into: &out)
    }

    /// The trailer envelope for an RPC result: `GRPCTrailers.fields(error:trailers:)` as a block.
    public static func encodeEnvelope(error: ConnectError?, trailers: Metadata, compress: Bool = false,
                                      compressMinBytes: Int = 0, into out: inout [UInt8]) throws {
        try encodeEnvelope(GRPCTrailers.fields(error: error, trailers: trailers), compress: compress,
                           compressMinBytes: compressMinBytes, into: &out)
    }

    /// GW-3: parses a trailer block leniently; never throws.
    /// * Lines end in CRLF; a bare LF is accepted too, and the last line may lack its line ending.
    /// * Names are matched case-insensitively and returned lowercased; surrounding spaces and tabs of
    ///   names and values are trimmed; repeated names keep every value, in order.
    /// * Blank lines, lines without `:`, and lines whose name is empty or not an HTTP token are
    ///   skipped.
    public static func parseBlock(_ bytes: [UInt8]) -> HTTPHeaders {
        var headers = HTTPHeaders()
        var lineStart = 0
        let n = bytes.count
        while lineStart < n {
            var lineEnd = lineStart
            while lineEnd < n && bytes[lineEnd] != 0x0A { lineEnd = lineEnd &+ 1 }
            let next = lineEnd &+ 1  // past the LF (or past the end)
            var end = lineEnd
            if end > lineStart && bytes[end &- 1] == 0x0D { end = end &- 1 }
            parseLine(bytes, lineStart, end, into: &headers)
            lineStart = next
        }
        return headers
    }

    /// Decodes a trailer envelope (flag 0x80, optionally 0x01: decompressed with the stream's
    /// encoding, GW-3, GEN-7, CMP-6) into its fields.
    public static func decode(envelope: Envelope, encoding: MessageEncoding, maxBytes: Int) throws -> HTTPHeaders {
        guard envelope.isTrailers else {
            throw ConnectError(.internal, "protocol error: envelope is not a gRPC-Web trailer frame")
        }
        let block = try EnvelopeCodec.decodePayload(envelope, encoding: encoding, maxBytes: maxBytes,
                                                    allowedFlags: Envelope.trailersFlag)
        return parseBlock(block)
    }

    // MARK: Helpers

    private static func parseLine(_ b: [UInt8], _ start: Int, _ end: Int, into headers: inout HTTPHeaders) {
        guard start < end else { return }
        var colon = start
        while colon < end && b[colon] != 0x3A { colon = colon &+ 1 }
        guard colon < end else { return }
        var ns = start, ne = colon
        while ns < ne && isSpace(b[ns]) { ns = ns &+ 1 }
        while ne > ns && isSpace(b[ne &- 1]) { ne = ne &- 1 }
        guard ns < ne else { return }
        var vs = colon &+ 1, ve = end
        while vs < ve && isSpace(b[vs]) { vs = vs &+ 1 }
        while ve > vs && isSpace(b[ve &- 1]) { ve = ve &- 1 }
        let name = String(decoding: b[ns..<ne], as: UTF8.self)
        guard isToken(name) else { return }
        headers.add(name, String(decoding: b[vs..<ve], as: UTF8.self))
    }

    @inline(__always)
    static func isSpace(_ c: UInt8) -> Bool { c == 0x20 || c == 0x09 }

    /// RFC 9110 token characters.
    static func isToken(_ s: String) -> Bool {
        if s.isEmpty { return false }
        for c in s.utf8 {
            switch c {
            case 0x30...0x39, 0x41...0x5A, 0x61...0x7A: continue
            case UInt8(ascii: "!"), UInt8(ascii: "#"), UInt8(ascii: "$"), UInt8(ascii: "%"), UInt8(ascii: "&"),
                 UInt8(ascii: "'"), UInt8(ascii: "*"), UInt8(ascii: "+"), UInt8(ascii: "-"), UInt8(ascii: "."),
                 UInt8(ascii: "^"), UInt8(ascii: "_"), UInt8(ascii: "`"), UInt8(ascii: "|"), UInt8(ascii: "~"):
                continue
            default:
                return false
            }
        }
        return true
    }

    /// A field value without CR, LF, NUL or other controls (HTAB allowed); obs-text (≥ 0x80) allowed.
    static func isFieldValue(_ s: String) -> Bool {
        for c in s.utf8 where (c < 0x20 && c != 0x09) || c == 0x7F { return false }
        return true
    }
}
