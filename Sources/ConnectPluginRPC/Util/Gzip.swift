// gzip (RFC 1952) over the system zlib, for Connect/gRPC "gzip" compression (protocol digest §8).
// Decompression is bounded: with a limit N the output buffer never grows past N+1 bytes (CMP-6), so a
// gzip bomb fails with resource_exhausted after at most N+1 bytes of work.
import CConnectPluginZlib

public enum Gzip {
    /// The smallest step by which an output buffer grows.
    static let minimumChunk = 16 * 1024

    /// Compresses `input` into one gzip member. `level` is a zlib level (-1 = zlib default, 0–9).
    public static func compress(_ input: [UInt8], level: Int32 = 6) throws -> [UInt8] {
        guard level >= -1, level <= 9 else {
            throw ConnectError.local(.invalidArgument, "invalid gzip compression level \(level)")
        }
        let strm = UnsafeMutablePointer<z_stream>.allocate(capacity: 1)
        strm.initialize(to: z_stream())
        defer {
            strm.deinitialize(count: 1)
            strm.deallocate()
        }
        let initRC = cp_deflate_init_gzip(strm, level)
        guard initRC == Z_OK else { throw zlibFailure(initRC, strm, compressing: true) }
        defer { deflateEnd(strm) }

        // deflateBound (gzip header and trailer included) is the worst case for one Z_FINISH call;
        // start there and grow only if zlib ever needs more.
        let bound = Int(clamping: deflateBound(strm, uLong(clamping: input.count)))
        var out = [UInt8](repeating: 0, count: max(bound, 64))
        var produced = 0
        var consumed = 0

        try input.withUnsafeBufferPointer { inBuf in
            while true {
                if produced == out.count {
                    let grow = max(out.count / 2, minimumChunk)
                    out.append(contentsOf: [UInt8](repeating: 0, count: grow))
                }
                let inAvail = min(inBuf.count - consumed, Int(UInt32.max))
                let isLast = consumed + inAvail == inBuf.count
                let outAvail = min(out.count - produced, Int(UInt32.max))
                let rc: Int32 = out.withUnsafeMutableBufferPointer { outBuf -> Int32 in
                    if let base = inBuf.baseAddress {
                        strm.pointee.next_in = UnsafeMutablePointer(mutating: base + consumed)
                    } else {
                        strm.pointee.next_in = nil
                    }
                    strm.pointee.avail_in = uInt(inAvail)
                    strm.pointee.next_out = outBuf.baseAddress.map { $0 + produced }
                    strm.pointee.avail_out = uInt(outAvail)
                    return deflate(strm, isLast ? Z_FINISH : Z_NO_FLUSH)
                }
                consumed += inAvail - Int(strm.pointee.avail_in)
                produced += outAvail - Int(strm.pointee.avail_out)
                switch rc {
                case Z_STREAM_END:
                    return
                case Z_OK, Z_BUF_ERROR:
                    continue  // more output space or more input needed; the loop provides both
                default:
                    throw zlibFailure(rc, strm, compressing: true)
                }
            }
        }
        return trimmed(&out, to: produced)
    }

    /// Inflates gzip data (one member, or several concatenated members).
    ///
    /// - `maxBytes` > 0: output larger than `maxBytes` throws resource_exhausted; the output buffer
    ///   never exceeds `maxBytes + 1` bytes. `maxBytes` <= 0 means unlimited.
    /// - Corrupt, truncated or trailing-garbage input throws invalid_argument.
    /// - Empty input returns [] without running zlib.
    public static func decompress(_ input: [UInt8], maxBytes: Int) throws -> [UInt8] {
        try decompress(input, maxBytes: maxBytes, observeBufferSize: nil)
    }

    /// The implementation; `observeBufferSize` sees every size the output buffer is grown to (tests).
    static func decompress(_ input: [UInt8], maxBytes: Int, observeBufferSize: ((Int) -> Void)?) throws -> [UInt8] {
        if input.isEmpty { return [] }
        let limited = maxBytes > 0
        // Capacity cap: N+1 so that "exactly N" fits and N+1 is detected.
        let cap = limited ? (maxBytes == Int.max ? Int.max : maxBytes + 1) : Int.max

        let strm = UnsafeMutablePointer<z_stream>.allocate(capacity: 1)
        strm.initialize(to: z_stream())
        defer {
            strm.deinitialize(count: 1)
            strm.deallocate()
        }
        let initRC = cp_inflate_init_gzip(strm)
        guard initRC == Z_OK else { throw zlibFailure(initRC, strm, compressing: false) }
        defer { inflateEnd(strm) }

        var out = [UInt8]()
        var produced = 0
        var consumed = 0

        func tooLarge() -> ConnectError {
            ConnectError(.resourceExhausted, "message larger than \(maxBytes) bytes after decompression")
        }

        try input.withUnsafeBufferPointer { inBuf in
            guard let inBase = inBuf.baseAddress else { return }
            while true {
                if produced == out.count {
                    if limited && produced > maxBytes { throw tooLarge() }
                    // Grow: double (at least a chunk, at first a guess from the input size), capped.
                    let guess = out.isEmpty ? max(minimumChunk, min(inBuf.count, Int.max / 4) * 4) : out.count
                    let target = min(cap, out.count > Int.max - guess ? Int.max : out.count + guess)
                    if target <= out.count {
                        // Only reachable when unlimited and the address space is exhausted.
                        throw ConnectError(.resourceExhausted, "gzip output too large")
                    }
                    out.append(contentsOf: [UInt8](repeating: 0, count: target - out.count))
                    observeBufferSize?(out.count)
                }
                let inAvail = min(inBuf.count - consumed, Int(UInt32.max))
                let outAvail = min(out.count - produced, Int(UInt32.max))
                let rc: Int32 = out.withUnsafeMutableBufferPointer { outBuf -> Int32 in
                    strm.pointee.next_in = UnsafeMutablePointer(mutating: inBase + consumed)
                    strm.pointee.avail_in = uInt(inAvail)
                    strm.pointee.next_out = outBuf.baseAddress.map { $0 + produced }
                    strm.pointee.avail_out = uInt(outAvail)
                    return inflate(strm, Z_NO_FLUSH)
                }
                let leftIn = Int(strm.pointee.avail_in)
                let leftOut = Int(strm.pointee.avail_out)
                consumed += inAvail - leftIn
                produced += outAvail - leftOut
                if limited && produced > maxBytes { throw tooLarge() }

                switch rc {
                case Z_STREAM_END:
                    if consumed == inBuf.count { return }
                    // Another gzip member may follow (RFC 1952 §2.2); anything else is garbage.
                    let rest = inBuf.count - consumed
                    if rest >= 2 && inBuf[consumed] == 0x1f && inBuf[consumed + 1] == 0x8b {
                        let r = inflateReset(strm)
                        guard r == Z_OK else { throw zlibFailure(r, strm, compressing: false) }
                        continue
                    }
                    throw ConnectError(.invalidArgument, "invalid gzip data: trailing garbage after gzip stream")
                case Z_OK:
                    // Out of input with room to spare and no end of stream: truncated.
                    if consumed == inBuf.count && leftOut > 0 {
                        throw ConnectError(.invalidArgument, "invalid gzip data: unexpected end of stream")
                    }
                case Z_BUF_ERROR:
                    // No progress possible. With output room left, zlib wants input we do not have.
                    if leftOut > 0 {
                        throw ConnectError(.invalidArgument, "invalid gzip data: unexpected end of stream")
                    }
                default:
                    throw zlibFailure(rc, strm, compressing: false)
                }
            }
        }
        return trimmed(&out, to: produced)
    }

    /// `buf[0..<count]`, copied into a right-sized array when much of the buffer is unused.
    static func trimmed(_ buf: inout [UInt8], to count: Int) -> [UInt8] {
        if count >= buf.count { return buf }
        if buf.count - count > count / 4 { return Array(buf[0..<count]) }
        buf.removeSubrange(count...)
        return buf
    }

    private static func zlibFailure(_ rc: Int32, _ strm: UnsafeMutablePointer<z_stream>, compressing: Bool) -> ConnectError {
        var msg: String
        if let m = strm.pointee.msg {
            msg = String(cString: m)
        } else {
            switch rc {
            case Z_STREAM_ERROR: msg = "stream error"
            case Z_DATA_ERROR: msg = "data error"
            case Z_MEM_ERROR: msg = "out of memory"
            case Z_BUF_ERROR: msg = "buffer error"
            case Z_VERSION_ERROR: msg = "zlib version mismatch"
            case Z_NEED_DICT: msg = "preset dictionary required"
            default: msg = "zlib error \(rc)"
            }
        }
        if rc == Z_MEM_ERROR {
            return ConnectError(.resourceExhausted, "gzip: \(msg)")
        }
        if compressing {
            return ConnectError(.internal, "gzip compression failed: \(msg)")
        }
        if rc == Z_NEED_DICT { msg = "preset dictionary required" }
        return ConnectError(.invalidArgument, "invalid gzip data: \(msg)")
    }
}
