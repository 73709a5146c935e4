// The 5-byte length-prefixed envelope shared by Connect streaming, gRPC and gRPC-Web (protocol digest
// §1.2), and the per-message compression applied inside it (§8):
//
//   +--------+-----------------------------+---------------------+
//   | flags  | length (uint32, big-endian) | payload (length B)  |
//   +--------+-----------------------------+---------------------+
//
// Everything here is transport independent: bytes in, envelopes out. Nothing traps on network input.
import ConnectPluginHTTP

/// One framed message as it appears on the wire: the flag byte and the payload *as sent* (possibly
/// still compressed).
public struct Envelope: Equatable, Sendable {
    /// Bit 0x01: the payload is compressed with the stream's encoding (all three protocols).
    public static let compressedFlag: UInt8 = 0x01
    /// Bit 0x02: Connect EndStreamResponse (responses only).
    public static let endStreamFlag: UInt8 = 0x02
    /// Bit 0x80: gRPC-Web trailer block (responses only).
    public static let trailersFlag: UInt8 = 0x80
    /// The size of the flags + length prefix.
    public static let prefixSize = 5
    /// The largest payload the 32-bit length prefix can describe (GEN-3).
    public static let maxPayloadSize = Int(exactly: UInt32.max) ?? Int.max

    public var flags: UInt8
    public var payload: [UInt8]

    public init(flags: UInt8, payload: [UInt8]) {
        self.flags = flags
        self.payload = payload
    }

    public var isCompressed: Bool { flags & Envelope.compressedFlag != 0 }
    public var isEndStream: Bool { flags & Envelope.endStreamFlag != 0 }
    public var isTrailers: Bool { flags & Envelope.trailersFlag != 0 }

    /// Appends the 5-byte prefix and `payload` to `out`. GEN-3: the length is the payload size as
    /// sent (after compression); a payload above 2^32−1 bytes throws resource_exhausted.
    public static func encode(flags: UInt8, payload: [UInt8], into out: inout [UInt8]) throws {
        try appendPrefix(flags: flags, length: payload.count, into: &out)
        out.append(contentsOf: payload)
    }

    /// As `encode(flags:payload:into:)`, from raw memory.
    public static func encode(flags: UInt8, payload: UnsafeRawBufferPointer, into out: inout [UInt8]) throws {
        try appendPrefix(flags: flags, length: payload.count, into: &out)
        out.append(contentsOf: payload)
    }

    /// The envelope as bytes.
    public func encoded() throws -> [UInt8] {
        var out = [UInt8]()
        out.reserveCapacity(payload.count &+ Envelope.prefixSize)
        try Envelope.encode(flags: flags, payload: payload, into: &out)
        return out
    }

    static func appendPrefix(flags: UInt8, length: Int, into out: inout [UInt8]) throws {
        guard length >= 0, let n = UInt32(exactly: length) else {
            throw ConnectError(.resourceExhausted, "message of \(length) bytes does not fit in an envelope (max \(UInt32.max))")
        }
        out.append(flags)
        out.append(UInt8(truncatingIfNeeded: n >> 24))
        out.append(UInt8(truncatingIfNeeded: n >> 16))
        out.append(UInt8(truncatingIfNeeded: n >> 8))
        out.append(UInt8(truncatingIfNeeded: n))
    }
}

/// Appends one envelope (5-byte prefix + payload) to `out` (GEN-3). Same as `Envelope.encode`.
func encodeEnvelope(flags: UInt8, payload: [UInt8], into out: inout [UInt8]) throws {
    try Envelope.encode(flags: flags, payload: payload, into: &out)
}

// MARK: - Incremental reader

/// Splits a byte stream into envelopes, whatever the chunking (GEN-4): push bytes as they arrive,
/// then call `next()` until it returns nil; call `finish()` at end of stream.
///
/// * The receive limit is checked on the length prefix, before any of the payload is buffered
///   (CMP-6): a declared length above `maxMessageBytes` throws resource_exhausted at once. A message of
///   exactly `maxMessageBytes` is accepted.
/// * Errors are sticky: once `next()` or `finish()` has thrown, every later call throws the same
///   error and pushed bytes are dropped.
/// * With `terminalFlags` set (Connect client: `Envelope.endStreamFlag`; gRPC-Web client:
///   `Envelope.trailersFlag`), any byte after the terminal envelope is an error (GEN-9): internal,
///   "corrupt response: N extra bytes after end of stream". Bytes after the terminal envelope are
///   counted, not stored.
/// * Consumed bytes are dropped by advancing a read index; the buffer is compacted only when the
///   consumed prefix is at least as large as what is left, so the work per byte is O(1) amortised.
public struct EnvelopeReader: Sendable {
    /// The largest accepted payload length (as sent); 0 or less means no limit.
    public let maxMessageBytes: Int
    /// The code for EOF inside an envelope (GEN-8). The digest (connect-go) uses invalid_argument,
    /// which suits a server reading requests; a client reading responses should use `.internal`
    /// (conformance `gRPC Unexpected Responses/server-stream/incomplete-message*` expects internal,
    /// allows unknown).
    public var truncatedCode: Code
    /// Flag bits that mark the last envelope of the stream (GEN-9); 0 = no terminal envelope.
    public var terminalFlags: UInt8

    private var buffer: [UInt8] = []
    private var readIndex = 0
    private var failure: ConnectError?
    private var terminated = false
    private var extraBytes = 0
    /// How many envelopes `next()` has returned.
    public private(set) var envelopeCount = 0

    public init(maxMessageBytes: Int = 0, truncatedCode: Code = .invalidArgument, terminalFlags: UInt8 = 0) {
        self.maxMessageBytes = maxMessageBytes
        self.truncatedCode = truncatedCode
        self.terminalFlags = terminalFlags
    }

    /// Bytes pushed but not yet returned as envelopes (for bounding memory and flow control).
    public var bufferedBytes: Int { buffer.count &- readIndex }

    /// True when no partial envelope is buffered, i.e. EOF now would be clean (GEN-8).
    public var isAtBoundary: Bool { bufferedBytes == 0 && extraBytes == 0 }

    /// True once a terminal envelope (see `terminalFlags`) has been returned.
    public var sawTerminal: Bool { terminated }

    /// The bytes still needed to complete the envelope in progress (5 when nothing is buffered).
    /// After a failure or a terminal envelope: 0.
    public var bytesNeeded: Int {
        if failure != nil || terminated { return 0 }
        let avail = bufferedBytes
        if avail < Envelope.prefixSize { return Envelope.prefixSize &- avail }
        guard let length = Int(exactly: EnvelopeReader.length(buffer, at: readIndex)),
              length <= Int.max &- Envelope.prefixSize else { return Int.max }
        let total = Envelope.prefixSize &+ length
        return total > avail ? total &- avail : 0
    }

    /// Appends bytes from the transport. No parsing happens here.
    public mutating func push(_ bytes: UnsafeRawBufferPointer) {
        if bytes.isEmpty || failure != nil { return }
        if terminated {
            extraBytes = extraBytes &+ bytes.count
            return
        }
        compactIfWorthwhile()
        buffer.append(contentsOf: bytes)
    }

    /// Appends bytes from the transport.
    public mutating func push(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { push($0) }
    }

    /// Appends bytes from the transport.
    public mutating func push(_ bytes: ArraySlice<UInt8>) {
        bytes.withUnsafeBytes { push($0) }
    }

    /// The next complete envelope, or nil when more bytes are needed.
    public mutating func next() throws -> Envelope? {
        if let f = failure { throw f }
        if terminated {
            let extra = bufferedBytes &+ extraBytes
            if extra > 0 { throw fail(EnvelopeReader.extraBytesError(extra)) }
            return nil
        }
        let avail = bufferedBytes
        guard avail >= Envelope.prefixSize else { return nil }
        let flags = buffer[readIndex]
        let declared = EnvelopeReader.length(buffer, at: readIndex)
        if maxMessageBytes > 0, UInt64(declared) > UInt64(maxMessageBytes) {
            throw fail(ConnectError(.resourceExhausted, "message larger than \(maxMessageBytes) bytes (envelope declares \(declared))"))
        }
        guard let length = Int(exactly: declared), avail &- Envelope.prefixSize >= length else { return nil }
        let start = readIndex &+ Envelope.prefixSize
        let end = start &+ length
        let payload = length == 0 ? [] : Array(buffer[start..<end])
        readIndex = end
        if readIndex == buffer.count {
            buffer.removeAll(keepingCapacity: buffer.capacity <= 1 << 20)
            readIndex = 0
        }
        envelopeCount = envelopeCount &+ 1
        if terminalFlags != 0 && flags & terminalFlags != 0 {
            terminated = true
            // Anything already buffered behind the terminal envelope is moved to the counter.
            extraBytes = extraBytes &+ bufferedBytes
            buffer = []
            readIndex = 0
        }
        return Envelope(flags: flags, payload: payload)
    }

    /// Call at end of stream, after draining `next()`. Throws when EOF fell inside an envelope
    /// (GEN-8: "promised N bytes in enveloped message, got M bytes", code `truncatedCode`), when bytes
    /// followed the terminal envelope (GEN-9), or when the reader already failed. Returns normally
    /// only at an envelope boundary. (Whether a terminal envelope was *required* is the caller's
    /// business: see `sawTerminal`, CS-12, GW-4.)
    public func finish() throws {
        if let f = failure { throw f }
        if terminated {
            let extra = bufferedBytes &+ extraBytes
            if extra > 0 { throw EnvelopeReader.extraBytesError(extra) }
            return
        }
        let avail = bufferedBytes
        if avail == 0 { return }
        if avail < Envelope.prefixSize {
            throw ConnectError(truncatedCode, "protocol error: incomplete envelope: got \(avail) of \(Envelope.prefixSize) prefix bytes")
        }
        let declared = EnvelopeReader.length(buffer, at: readIndex)
        let got = avail &- Envelope.prefixSize
        if maxMessageBytes > 0, UInt64(declared) > UInt64(maxMessageBytes) {
            throw ConnectError(.resourceExhausted, "message larger than \(maxMessageBytes) bytes (envelope declares \(declared))")
        }
        throw ConnectError(truncatedCode, "protocol error: promised \(declared) bytes in enveloped message, got \(got) bytes")
    }

    // MARK: Internals

    static func extraBytesError(_ n: Int) -> ConnectError {
        ConnectError(.internal, "corrupt response: \(n) extra bytes after end of stream")
    }

    private mutating func fail(_ e: ConnectError) -> ConnectError {
        failure = e
        buffer = []
        readIndex = 0
        extraBytes = 0
        return e
    }

    /// Big-endian length at `i + 1 ..< i + 5`; the caller guarantees 5 readable bytes.
    @inline(__always)
    static func length(_ b: [UInt8], at i: Int) -> UInt32 {
        (UInt32(b[i &+ 1]) << 24) | (UInt32(b[i &+ 2]) << 16) | (UInt32(b[i &+ 3]) << 8) | UInt32(b[i &+ 4])
    }

    /// Drops the consumed prefix when it is at least as large as the unconsumed rest (so each
    /// compaction moves no more bytes than were consumed since the last one).
    private mutating func compactIfWorthwhile() {
        guard readIndex > 0 else { return }
        if readIndex >= buffer.count {
            buffer.removeAll(keepingCapacity: true)
            readIndex = 0
        } else if readIndex >= buffer.count &- readIndex {
            buffer.removeSubrange(0..<readIndex)
            readIndex = 0
        }
    }
}

// MARK: - Message-level compression

/// Per-message compression of the envelope protocols (§8.1): `Connect-Content-Encoding` /
/// `grpc-encoding` name the algorithm for the stream, and each envelope's 0x01 flag says whether
/// that message was actually compressed.
public enum EnvelopeCodec {
    /// Encodes one message: compresses it with gzip when `compress` is true and the payload has at
    /// least `compressMinBytes` bytes (CMP-5; an empty payload is never compressed), and sets flag
    /// 0x01 when it did (GEN-6: every message is compressed on its own). `flags` are extra bits
    /// (e.g. `Envelope.endStreamFlag`, `Envelope.trailersFlag`); bit 0x01 in it is ignored.
    /// With `sendMaxBytes` > 0, a message whose size *as sent* exceeds it throws resource_exhausted
    /// (CMP-7).
    public static func encodeMessage(
        _ payload: [UInt8], flags: UInt8 = 0, compress: Bool, compressMinBytes: Int = 0,
        sendMaxBytes: Int = 0, keepIfLarger: Bool = false, into out: inout [UInt8]
    ) throws {
        var f = flags & ~Envelope.compressedFlag
        var body = payload
        if compress && !payload.isEmpty && payload.count >= compressMinBytes {
            let z = try Gzip.compress(payload)
            // Incompressible data goes out as is: the flag is per message (CMP-5). Clients keep
            // the compressed form (`keepIfLarger`): a peer may check that every request message
            // uses the compression the call declared.
            if keepIfLarger || z.count < payload.count {
                body = z
                f |= Envelope.compressedFlag
            }
        }
        if sendMaxBytes > 0 && body.count > sendMaxBytes {
            throw ConnectError(.resourceExhausted, "message size \(body.count) exceeds send limit of \(sendMaxBytes) bytes")
        }
        try Envelope.encode(flags: f, payload: body, into: &out)
    }

    /// The payload of a data envelope: only flag 0x01 may be set (CS-3: anything else → internal
    /// "invalid envelope flags"). See `decodePayload` for compression and limits.
    public static func decodeMessage(
        _ envelope: Envelope, encoding: MessageEncoding, maxBytes: Int,
        decompressFailureCode: Code = .internal
    ) throws -> [UInt8] {
        try decodePayload(envelope, encoding: encoding, maxBytes: maxBytes, allowedFlags: 0,
                          decompressFailureCode: decompressFailureCode)
    }

    /// The payload of an envelope, decompressed.
    ///
    /// * Flag bits other than 0x01 and `allowedFlags` → internal "invalid envelope flags" (CS-3).
    ///   Pass `Envelope.endStreamFlag` for a Connect EndStreamResponse, `Envelope.trailersFlag` for a
    ///   gRPC-Web trailer frame.
    /// * Flag 0x01 when the stream's encoding is identity (or absent) → internal (GEN-7, CMP-3).
    /// * A zero-length payload is the empty message, never run through the decompressor (GEN-5).
    /// * `maxBytes` > 0: a decompressed (or uncompressed) size above it → resource_exhausted (CMP-6);
    ///   the decompressor never allocates more than maxBytes+1 bytes.
    /// * Corrupt compressed data → `decompressFailureCode`. The digest leaves the choice open (§16.1:
    ///   gRPC says internal, connect-go invalid_argument); the default is internal, as [GSC] and the
    ///   existing unary client. A server may pass `.invalidArgument` as the unary server does.
    public static func decodePayload(
        _ envelope: Envelope, encoding: MessageEncoding, maxBytes: Int, allowedFlags: UInt8,
        decompressFailureCode: Code = .internal
    ) throws -> [UInt8] {
        let unknown = envelope.flags & ~(Envelope.compressedFlag | allowedFlags)
        if unknown != 0 {
            throw ConnectError(.internal, "protocol error: invalid envelope flags 0x\(hex2(envelope.flags))")
        }
        if !envelope.isCompressed {
            if maxBytes > 0 && envelope.payload.count > maxBytes {
                throw ConnectError(.resourceExhausted, "message larger than \(maxBytes) bytes")
            }
            return envelope.payload
        }
        guard encoding != .identity else {
            throw ConnectError(.internal, "protocol error: received compressed message without a message encoding (identity)")
        }
        if envelope.payload.isEmpty { return [] }
        do {
            switch encoding {
            case .identity:
                return envelope.payload  // unreachable: handled above
            case .gzip:
                return try Gzip.decompress(envelope.payload, maxBytes: maxBytes)
            }
        } catch let e as ConnectError {
            if e.code == .resourceExhausted {
                throw ConnectError(.resourceExhausted, "message larger than \(maxBytes) bytes after decompression")
            }
            throw ConnectError(decompressFailureCode, "failed to decompress message: \(e.message)")
        }
    }

    static func hex2(_ b: UInt8) -> String {
        let digits: [Character] = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "a", "b", "c", "d", "e", "f"]
        return String([digits[Int(b >> 4)], digits[Int(b & 0x0F)]])
    }
}
