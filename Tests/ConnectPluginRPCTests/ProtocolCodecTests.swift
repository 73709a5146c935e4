// Unit tests for the transport-independent codecs under Sources/ConnectPluginRPC/Protocol: the
// envelope reader/writer and per-message compression. The other Protocol*Tests files cover Connect
// EndStream, gRPC, gRPC-Web and protocol detection.
import Testing
@testable import ConnectPluginRPC

/// SplitMix64: a fixed-seed PRNG so every "random" test is the same on every run.
struct ProtocolTestRNG {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    /// Uniform-ish in 0..<n (n > 0).
    mutating func below(_ n: Int) -> Int { Int(truncatingIfNeeded: next() % UInt64(n)) }
    mutating func bytes(_ n: Int) -> [UInt8] {
        var out = [UInt8]()
        out.reserveCapacity(n)
        for _ in 0..<n { out.append(UInt8(truncatingIfNeeded: next())) }
        return out
    }
}

/// The ConnectError thrown by `body`, if any.
func protocolThrownError(_ body: () throws -> Void) -> ConnectError? {
    do {
        try body()
        return nil
    } catch let e as ConnectError {
        return e
    } catch {
        return ConnectError(.unknown, "non-ConnectError: \(error)")
    }
}

func protocolHex(_ s: String) -> [UInt8] {
    var out = [UInt8]()
    var digits = [UInt8]()
    for c in s.utf8 where c != 0x20 {
        digits.append(c)
        if digits.count == 2 {
            out.append(UInt8(String(decoding: digits, as: UTF8.self), radix: 16) ?? 0)
            digits.removeAll()
        }
    }
    return out
}

@Suite struct ProtocolEnvelopeTests {
    // MARK: Encoding

    @Test func encodeEmptyMessageVector() throws {
        var out = [UInt8]()
        try Envelope.encode(flags: 0, payload: [], into: &out)
        #expect(out == [0x00, 0x00, 0x00, 0x00, 0x00])
    }

    @Test func encodeHealthServingVector() throws {
        // §11.1: HealthCheckResponse{status: SERVING} = 08 01 → frame 00 00 00 00 02 08 01.
        var out = [UInt8]()
        try encodeEnvelope(flags: 0, payload: [0x08, 0x01], into: &out)
        #expect(out == protocolHex("00 00000002 0801"))
        #expect(try Envelope(flags: 0, payload: [0x08, 0x01]).encoded() == out)
    }

    @Test func encodeAppendsAndUsesBigEndianLength() throws {
        var out: [UInt8] = [0xAA]
        let payload = [UInt8](repeating: 7, count: 0x010203)
        try Envelope.encode(flags: 0x80, payload: payload, into: &out)
        #expect(Array(out[0..<6]) == [0xAA, 0x80, 0x00, 0x01, 0x02, 0x03])
        #expect(out.count == 1 + 5 + 0x010203)
        var raw = [UInt8]()
        try [UInt8](repeating: 1, count: 3).withUnsafeBytes { try Envelope.encode(flags: 1, payload: $0, into: &raw) }
        #expect(raw == [1, 0, 0, 0, 3, 1, 1, 1])
    }

    @Test func prefixRejectsLengthsBeyondUInt32() {
        var out = [UInt8]()
        let e = protocolThrownError { try Envelope.appendPrefix(flags: 0, length: Int(UInt32.max) + 1, into: &out) }
        #expect(e?.code == .resourceExhausted)
        #expect(out.isEmpty)
        #expect(protocolThrownError { try Envelope.appendPrefix(flags: 0, length: -1, into: &out) }?.code == .resourceExhausted)
        #expect(protocolThrownError { try Envelope.appendPrefix(flags: 0, length: Int(UInt32.max), into: &out) } == nil)
        #expect(out == [0, 0xFF, 0xFF, 0xFF, 0xFF])
    }

    @Test func flagAccessors() {
        #expect(Envelope(flags: 0x03, payload: []).isCompressed)
        #expect(Envelope(flags: 0x03, payload: []).isEndStream)
        #expect(!Envelope(flags: 0x03, payload: []).isTrailers)
        #expect(Envelope(flags: 0x81, payload: []).isTrailers)
    }

    // MARK: Reader basics

    @Test func readsOneEnvelope() throws {
        var r = EnvelopeReader()
        #expect(r.bytesNeeded == 5)
        r.push(protocolHex("00 00000002 0801"))
        let e = try r.next()
        #expect(e == Envelope(flags: 0, payload: [0x08, 0x01]))
        #expect(try r.next() == nil)
        #expect(r.isAtBoundary)
        #expect(r.envelopeCount == 1)
        try r.finish()
    }

    @Test func zeroLengthEnvelopeIsAnEmptyMessage() throws {
        // GEN-5 / CS-14: a zero-length payload is a valid empty message, even with flag 0x01.
        var r = EnvelopeReader()
        r.push([0x00, 0, 0, 0, 0, 0x01, 0, 0, 0, 0])
        #expect(try r.next() == Envelope(flags: 0, payload: []))
        #expect(try r.next() == Envelope(flags: 1, payload: []))
        #expect(try r.next() == nil)
        try r.finish()
    }

    @Test func manyEnvelopesInOneChunk() throws {
        var stream = [UInt8]()
        for i in 0..<1000 { try Envelope.encode(flags: 0, payload: [UInt8](repeating: UInt8(i & 0xFF), count: i % 17), into: &stream) }
        var r = EnvelopeReader()
        r.push(stream)
        var n = 0
        while let e = try r.next() {
            #expect(e.payload == [UInt8](repeating: UInt8(n & 0xFF), count: n % 17))
            n += 1
        }
        #expect(n == 1000)
        #expect(r.bufferedBytes == 0)
        try r.finish()
    }

    @Test func byteByByte() throws {
        var stream = [UInt8]()
        try Envelope.encode(flags: 0, payload: Array("hello".utf8), into: &stream)
        try Envelope.encode(flags: 2, payload: Array("{}".utf8), into: &stream)
        var r = EnvelopeReader()
        var got: [Envelope] = []
        for b in stream {
            r.push([b])
            while let e = try r.next() { got.append(e) }
        }
        #expect(got == [Envelope(flags: 0, payload: Array("hello".utf8)), Envelope(flags: 2, payload: Array("{}".utf8))])
        try r.finish()
    }

    @Test func bufferedBytesAndBytesNeeded() throws {
        var r = EnvelopeReader()
        r.push([0x00, 0x00])
        #expect(r.bufferedBytes == 2)
        #expect(r.bytesNeeded == 3)
        #expect(try r.next() == nil)
        r.push([0x00, 0x00, 0x04, 0xAA])
        #expect(r.bufferedBytes == 6)
        #expect(r.bytesNeeded == 3)
        #expect(try r.next() == nil)
        r.push([0xBB, 0xCC, 0xDD, 0x00])
        #expect(try r.next() == Envelope(flags: 0, payload: [0xAA, 0xBB, 0xCC, 0xDD]))
        #expect(r.bufferedBytes == 1)
        #expect(r.bytesNeeded == 4)
        #expect(!r.isAtBoundary)
    }

    // MARK: Split-boundary fuzz (GEN-4)

    @Test func randomChunkingsYieldTheSameEnvelopes() throws {
        var rng = ProtocolTestRNG(seed: 0xC0FFEE)
        var expected: [Envelope] = []
        var stream = [UInt8]()
        for _ in 0..<250 {
            let size: Int
            switch rng.below(20) {
            case 0, 1: size = 0
            case 2: size = 1000 + rng.below(3000)
            default: size = rng.below(120)
            }
            let env = Envelope(flags: UInt8(truncatingIfNeeded: rng.next()), payload: rng.bytes(size))
            expected.append(env)
            try Envelope.encode(flags: env.flags, payload: env.payload, into: &stream)
        }
        let limit = 4000
        for round in 0..<70 {
            var r = EnvelopeReader(maxMessageBytes: limit)
            var got: [Envelope] = []
            got.reserveCapacity(expected.count)
            var pos = 0
            let maxChunk = [1, 3, 7, 64, 1500, 16384, stream.count][round % 7]
            var overBuffered = false
            while pos < stream.count {
                let n = min(stream.count - pos, 1 + rng.below(maxChunk))
                if round % 2 == 0 {
                    r.push(stream[pos..<(pos + n)])
                } else {
                    stream.withUnsafeBytes { all in r.push(UnsafeRawBufferPointer(rebasing: all[pos..<(pos + n)])) }
                }
                pos += n
                while let e = try r.next() { got.append(e) }
                // After draining, at most one partial envelope is left.
                if r.bufferedBytes >= limit + 5 { overBuffered = true }
            }
            #expect(!overBuffered)
            #expect(got == expected, "round \(round)")
            #expect(r.envelopeCount == expected.count)
            #expect(r.isAtBoundary)
            try r.finish()
        }
    }

    @Test func manySmallPushesStayLinear() throws {
        // 200k envelopes of 3 bytes pushed in 7-byte chunks: a quadratic compaction would take minutes.
        var stream = [UInt8]()
        stream.reserveCapacity(200_000 * 8)
        for i in 0..<200_000 { try Envelope.encode(flags: 0, payload: [UInt8(i & 0xFF), 1, 2], into: &stream) }
        var r = EnvelopeReader()
        var count = 0
        var pos = 0
        while pos < stream.count {
            let n = min(7, stream.count - pos)
            r.push(stream[pos..<(pos + n)])
            pos += n
            while let e = try r.next() {
                if e.payload.first != UInt8(count & 0xFF) { Issue.record("payload mismatch at \(count)") }
                count += 1
            }
        }
        #expect(count == 200_000)
        try r.finish()
    }

    @Test func bigPushThenDrainInOrder() throws {
        // Mixed: large pushes with partial envelopes left behind exercise compaction.
        var rng = ProtocolTestRNG(seed: 42)
        var stream = [UInt8]()
        var payloads: [[UInt8]] = []
        for _ in 0..<2000 {
            let p = rng.bytes(rng.below(50))
            payloads.append(p)
            try Envelope.encode(flags: 0, payload: p, into: &stream)
        }
        var r = EnvelopeReader()
        var got: [[UInt8]] = []
        var pos = 0
        while pos < stream.count {
            let n = min(stream.count - pos, 4096 + rng.below(4096))
            r.push(stream[pos..<(pos + n)])
            pos += n
            // Drain only some of the envelopes each time.
            for _ in 0..<rng.below(200) { if let e = try r.next() { got.append(e.payload) } }
        }
        while let e = try r.next() { got.append(e.payload) }
        #expect(got == payloads)
    }

    // MARK: Limits (CMP-6)

    @Test func declaredLengthOverLimitFailsBeforePayload() {
        var r = EnvelopeReader(maxMessageBytes: 100)
        r.push([0x00, 0x7F, 0xFF, 0xFF, 0xFF])  // only the prefix: 2 GiB promised
        let e = protocolThrownError { _ = try r.next() }
        #expect(e?.code == .resourceExhausted)
        #expect(e?.message.contains("message larger than 100 bytes") == true)
        // Sticky: later calls fail the same way; later bytes are dropped.
        r.push([UInt8](repeating: 0, count: 1000))
        #expect(r.bufferedBytes == 0)
        #expect(protocolThrownError { _ = try r.next() } == e)
        #expect(protocolThrownError { try r.finish() } == e)
    }

    @Test func exactlyTheLimitIsAccepted() throws {
        var r = EnvelopeReader(maxMessageBytes: 10)
        var s = [UInt8]()
        try Envelope.encode(flags: 0, payload: [UInt8](repeating: 1, count: 10), into: &s)
        try Envelope.encode(flags: 0, payload: [UInt8](repeating: 1, count: 11), into: &s)
        r.push(s)
        #expect(try r.next()?.payload.count == 10)
        #expect(protocolThrownError { _ = try r.next() }?.code == .resourceExhausted)
    }

    @Test func noLimitByDefault() throws {
        var r = EnvelopeReader()
        var s = [UInt8]()
        try Envelope.encode(flags: 0, payload: [UInt8](repeating: 9, count: 1 << 20), into: &s)
        r.push(s)
        #expect(try r.next()?.payload.count == 1 << 20)
    }

    // MARK: EOF (GEN-8)

    @Test func eofInsidePrefix() {
        var r = EnvelopeReader()
        r.push([0x00, 0x00, 0x00])
        #expect((try? r.next()) == .some(nil))
        let e = protocolThrownError { try r.finish() }
        #expect(e?.code == .invalidArgument)
        #expect(e?.message.contains("incomplete envelope") == true)
    }

    @Test func eofInsidePayload() throws {
        var r = EnvelopeReader()
        r.push([0x00, 0, 0, 0, 0])  // a complete empty message first
        r.push([0x00, 0, 0, 0, 10, 0x41, 0x41, 0x41, 0x41])
        #expect(try r.next() == Envelope(flags: 0, payload: []))
        #expect(try r.next() == nil)
        let e = protocolThrownError { try r.finish() }
        #expect(e?.code == .invalidArgument)
        #expect(e?.message == "protocol error: promised 10 bytes in enveloped message, got 4 bytes")
    }

    @Test func clientReaderReportsTruncationAsInternal() {
        // Conformance gRPC Unexpected Responses/server-stream/incomplete-message(-prefix) → internal.
        var r = EnvelopeReader(maxMessageBytes: 0, truncatedCode: .internal)
        r.push(protocolHex("00 00000000 000000"))
        #expect((try? r.next()) == .some(Envelope(flags: 0, payload: [])))
        #expect(protocolThrownError { try r.finish() }?.code == .internal)
    }

    @Test func cleanEOFOnEmptyStream() throws {
        let r = EnvelopeReader()
        try r.finish()
        #expect(r.isAtBoundary)
    }

    // MARK: Terminal envelopes (GEN-9)

    @Test func bytesAfterEndStreamAreAnError() throws {
        var r = EnvelopeReader(terminalFlags: Envelope.endStreamFlag)
        var s = [UInt8]()
        try Envelope.encode(flags: 0, payload: [1], into: &s)
        try Envelope.encode(flags: 2, payload: Array("{}".utf8), into: &s)
        s.append(contentsOf: [0xDE, 0xAD, 0xBE])
        r.push(s)
        #expect(try r.next() == Envelope(flags: 0, payload: [1]))
        #expect(try r.next()?.isEndStream == true)
        #expect(r.sawTerminal)
        r.push([0xEF])
        let e = protocolThrownError { try r.finish() }
        #expect(e?.code == .internal)
        #expect(e?.message == "corrupt response: 4 extra bytes after end of stream")
        #expect(protocolThrownError { _ = try r.next() } == e)
    }

    @Test func terminalFrameAtEOFIsClean() throws {
        var r = EnvelopeReader(terminalFlags: Envelope.trailersFlag)
        r.push(protocolHex("80 00000010") + Array("grpc-status: 0\r\n".utf8))
        #expect(try r.next()?.isTrailers == true)
        #expect(try r.next() == nil)
        #expect(r.bytesNeeded == 0)
        try r.finish()
    }

    @Test func compressedTerminalFlagCounts() throws {
        var r = EnvelopeReader(terminalFlags: Envelope.endStreamFlag)
        r.push([0x03, 0, 0, 0, 0])
        #expect(try r.next()?.flags == 0x03)
        #expect(r.sawTerminal)
    }

    // MARK: Malformed input never traps

    @Test func randomGarbageNeverTraps() {
        var rng = ProtocolTestRNG(seed: 7)
        for _ in 0..<500 {
            var r = EnvelopeReader(maxMessageBytes: 1 + rng.below(64), terminalFlags: rng.below(2) == 0 ? 0 : 0x82)
            let data = rng.bytes(rng.below(300))
            var pos = 0
            while pos < data.count {
                let n = min(data.count - pos, 1 + rng.below(20))
                r.push(data[pos..<(pos + n)])
                pos += n
                while (try? r.next()) != nil {}
            }
            _ = try? r.finish()
        }
    }
}

@Suite struct ProtocolMessageCodecTests {
    private let big = [UInt8]((0..<4000).map { UInt8(truncatingIfNeeded: $0 % 13) })

    @Test func uncompressedMessage() throws {
        var out = [UInt8]()
        try EnvelopeCodec.encodeMessage([1, 2, 3], compress: false, into: &out)
        #expect(out == [0, 0, 0, 0, 3, 1, 2, 3])
        let env = Envelope(flags: out[0], payload: Array(out[5...]))
        #expect(try EnvelopeCodec.decodeMessage(env, encoding: .identity, maxBytes: 0) == [1, 2, 3])
        #expect(try EnvelopeCodec.decodeMessage(env, encoding: .gzip, maxBytes: 3) == [1, 2, 3])
    }

    @Test func compressedRoundTrip() throws {
        var out = [UInt8]()
        try EnvelopeCodec.encodeMessage(big, compress: true, into: &out)
        #expect(out[0] == 0x01)
        #expect(out.count < big.count)
        var r = EnvelopeReader()
        r.push(out)
        let env = try #require(try r.next())
        #expect(try EnvelopeCodec.decodeMessage(env, encoding: .gzip, maxBytes: big.count) == big)
    }

    @Test func compressMinBytesThreshold() throws {
        var small = [UInt8]()
        try EnvelopeCodec.encodeMessage([1, 2, 3], compress: true, compressMinBytes: 4, into: &small)
        #expect(small == [0, 0, 0, 0, 3, 1, 2, 3])
        var exact = [UInt8]()
        try EnvelopeCodec.encodeMessage([1, 2, 3, 4], compress: true, compressMinBytes: 4, keepIfLarger: true, into: &exact)
        #expect(exact[0] == 0x01)
    }

    @Test func incompressibleMessagesAreSentAsIsUnlessKept() throws {
        // gzip of 4 bytes is larger than 4 bytes: a server sends them uncompressed (flag 0) ...
        var plain = [UInt8]()
        try EnvelopeCodec.encodeMessage([1, 2, 3, 4], compress: true, into: &plain)
        #expect(plain == [0, 0, 0, 0, 4, 1, 2, 3, 4])
        // ... compressible ones compressed ...
        var z = [UInt8]()
        try EnvelopeCodec.encodeMessage([UInt8](repeating: 9, count: 4096), compress: true, into: &z)
        #expect(z[0] == 0x01 && z.count < 200)
    }

    @Test func emptyPayloadIsNeverCompressed() throws {
        var out = [UInt8]()
        try EnvelopeCodec.encodeMessage([], compress: true, into: &out)
        #expect(out == [0, 0, 0, 0, 0])
    }

    @Test func extraFlagsAreKept() throws {
        var out = [UInt8]()
        try EnvelopeCodec.encodeMessage(Array("{}".utf8), flags: Envelope.endStreamFlag | 0x01, compress: false, into: &out)
        #expect(out == [0x02, 0, 0, 0, 2, 0x7B, 0x7D])
        out.removeAll()
        try EnvelopeCodec.encodeMessage(big, flags: Envelope.trailersFlag, compress: true, into: &out)
        #expect(out[0] == 0x81)
    }

    @Test func sendLimit() throws {
        // CMP-7: the size as sent counts (compressed when compressing).
        var out = [UInt8]()
        #expect(protocolThrownError { try EnvelopeCodec.encodeMessage(big, compress: false, sendMaxBytes: 100, into: &out) }?.code == .resourceExhausted)
        #expect(out.isEmpty)
        try EnvelopeCodec.encodeMessage(big, compress: true, sendMaxBytes: 200, into: &out)
        #expect(out[0] == 1)
        try EnvelopeCodec.encodeMessage([UInt8](repeating: 0, count: 100), compress: false, sendMaxBytes: 100, into: &out)
    }

    @Test func compressedFlagWithoutEncodingIsInternal() {
        // GEN-7 / CMP-3 (conformance unexpected-compressed-message), even for a zero-length payload.
        for payload: [UInt8] in [[], [1, 2, 3]] {
            let e = protocolThrownError { _ = try EnvelopeCodec.decodeMessage(Envelope(flags: 1, payload: payload), encoding: .identity, maxBytes: 0) }
            #expect(e?.code == .internal)
        }
    }

    @Test func zeroLengthCompressedIsEmptyMessage() throws {
        // GEN-5: never run the decompressor on zero bytes.
        #expect(try EnvelopeCodec.decodeMessage(Envelope(flags: 1, payload: []), encoding: .gzip, maxBytes: 10) == [])
    }

    @Test func badGzip() {
        let env = Envelope(flags: 1, payload: [0x1F, 0x8B, 0x08, 0x00, 0x01, 0x02, 0x03])
        let e = protocolThrownError { _ = try EnvelopeCodec.decodeMessage(env, encoding: .gzip, maxBytes: 0) }
        #expect(e?.code == .internal)
        let e2 = protocolThrownError { _ = try EnvelopeCodec.decodeMessage(env, encoding: .gzip, maxBytes: 0, decompressFailureCode: .invalidArgument) }
        #expect(e2?.code == .invalidArgument)
        let notGzip = Envelope(flags: 1, payload: Array("plain text".utf8))
        #expect(protocolThrownError { _ = try EnvelopeCodec.decodeMessage(notGzip, encoding: .gzip, maxBytes: 0) }?.code == .internal)
    }

    @Test func decompressedSizeLimit() throws {
        let z = try Gzip.compress(big)
        let env = Envelope(flags: 1, payload: z)
        #expect(try EnvelopeCodec.decodeMessage(env, encoding: .gzip, maxBytes: big.count) == big)
        let e = protocolThrownError { _ = try EnvelopeCodec.decodeMessage(env, encoding: .gzip, maxBytes: big.count - 1) }
        #expect(e?.code == .resourceExhausted)
    }

    @Test func uncompressedSizeLimit() {
        let e = protocolThrownError { _ = try EnvelopeCodec.decodeMessage(Envelope(flags: 0, payload: [1, 2, 3]), encoding: .identity, maxBytes: 2) }
        #expect(e?.code == .resourceExhausted)
    }

    @Test func unknownFlagBitsAreInternal() {
        // CS-3: reserved / end-stream / trailer bits on a data message.
        for flags: UInt8 in [0x02, 0x03, 0x04, 0x40, 0x80, 0x81, 0xFF] {
            let e = protocolThrownError { _ = try EnvelopeCodec.decodeMessage(Envelope(flags: flags, payload: [1]), encoding: .gzip, maxBytes: 0) }
            #expect(e?.code == .internal, "flags \(flags)")
            #expect(e?.message.contains("invalid envelope flags") == true)
        }
        #expect(protocolThrownError { _ = try EnvelopeCodec.decodePayload(Envelope(flags: 0x02, payload: [1]), encoding: .identity, maxBytes: 0, allowedFlags: Envelope.endStreamFlag) } == nil)
        #expect(protocolThrownError { _ = try EnvelopeCodec.decodePayload(Envelope(flags: 0x82, payload: [1]), encoding: .identity, maxBytes: 0, allowedFlags: Envelope.endStreamFlag) }?.code == .internal)
    }

    @Test func eachMessageCompressedIndependently() throws {
        // GEN-6: every message decodes on its own, in any order.
        var out = [UInt8]()
        let msgs: [[UInt8]] = [big, Array(big.reversed()), [UInt8](repeating: 5, count: 3000)]
        for m in msgs { try EnvelopeCodec.encodeMessage(m, compress: true, into: &out) }
        var r = EnvelopeReader()
        r.push(out)
        var envs: [Envelope] = []
        while let e = try r.next() { envs.append(e) }
        for (i, e) in envs.enumerated().reversed() {
            #expect(try EnvelopeCodec.decodeMessage(e, encoding: .gzip, maxBytes: 0) == msgs[i])
        }
    }
}

@Suite struct ProtocolMessageEncodingTests {
    @Test func names() {
        #expect(MessageEncoding(name: nil) == .identity)
        #expect(MessageEncoding(name: "") == .identity)
        #expect(MessageEncoding(name: "identity") == .identity)
        #expect(MessageEncoding(name: " GZip ") == .gzip)
        #expect(MessageEncoding(name: "br") == nil)
        #expect(MessageEncoding(name: "gzip, br") == nil)
        #expect(MessageEncoding.acceptHeaderValue == "gzip,identity")
    }

    @Test func requestAndResponseErrors() throws {
        #expect(try MessageEncoding.forRequest(nil) == .identity)
        #expect(try MessageEncoding.forRequest("gzip") == .gzip)
        let e = protocolThrownError { _ = try MessageEncoding.forRequest("zstd") }
        #expect(e?.code == .unimplemented)  // CMP-1
        #expect(e?.message.contains("gzip,identity") == true)
        #expect(protocolThrownError { _ = try MessageEncoding.forResponse("foo") }?.code == .internal)  // CMP-2
        #expect(try MessageEncoding.forResponse("identity") == .identity)
    }

    @Test func negotiation() {
        #expect(MessageEncoding.negotiateResponse(request: .gzip, acceptHeader: nil) == .gzip)
        #expect(MessageEncoding.negotiateResponse(request: .identity, acceptHeader: "br, gzip") == .gzip)
        #expect(MessageEncoding.negotiateResponse(request: .identity, acceptHeader: "identity, gzip") == .identity)
        #expect(MessageEncoding.negotiateResponse(request: .identity, acceptHeader: "br;q=1, zstd") == .identity)
        #expect(MessageEncoding.negotiateResponse(request: .identity, acceptHeader: nil) == .identity)
        #expect(MessageEncoding.negotiateResponse(request: .identity, acceptHeader: " , \tGZip ;q=0.5") == .gzip)
        #expect(MessageEncoding.negotiateResponse(request: .identity, acceptHeader: "gzipx, xgzip, gzi") == .identity)
    }

    @Test func listItemsAreScannedWithoutSplitting() {
        // The allocation-free scan gives the same items, in order, as the splitting one.
        for header in ["gzip, br;q=0.5", " GZIP ", ",,identity,", "br;q=1, gzip;q=0.1", "", "a,\tb\t;x, c"] {
            var items: [String] = []
            let none: Int? = ConnectProtocol.firstListItem(header) { bytes -> Int? in
                items.append(String(decoding: bytes, as: UTF8.self).lowercased())
                return nil
            }
            #expect(none == nil)
            #expect(items == ConnectProtocol.encodingList(header), "\(header)")
        }
        #expect(ConnectProtocol.firstListItem(nil) { _ in 1 } == nil)
        #expect(ConnectProtocol.firstListItem(";q=1, ;gzip") { _ in 1 } == nil)  // no names, only parameters
    }
}

@Suite struct ProcedureNameTests {
    @Test func shapeIsSlashServiceSlashMethod() {
        for ok in ["/a.B/C", "/x/y", "/connectplugin.examples.kv.v1.KVService/Get"] {
            #expect((try? RPCServer.validateProcedure(ok)) != nil, "\(ok)")
        }
        for bad in ["", "/", "//", "/a/", "a/b/c", "/a/b/c", "//b", "/a//", "x/a/b", "/a", "/a b/c", "/a/b?x", "/a/b#"] {
            #expect(throws: ConnectError.self, "\(bad)") { try RPCServer.validateProcedure(bad) }
        }
    }

    @Test func unaryResponseCodecShortcutAgreesWithTheParse() {
        for ct in ["application/proto", "application/json"] {
            #expect(ConnectProtocol.unaryCodec(contentType: ct) == ConnectProtocol.unaryCodec(contentType: ct.uppercased()))
            #expect(ConnectProtocol.unaryCodec(contentType: ct) == ConnectProtocol.unaryCodec(contentType: ct + "; charset=utf-8"))
        }
        #expect(ConnectProtocol.unaryCodec(contentType: "application/proto") == "proto")
    }
}
