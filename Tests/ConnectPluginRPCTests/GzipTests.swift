import CConnectPluginZlib
import Testing
@testable import ConnectPluginRPC

@Suite struct GzipTests {
    /// SplitMix64: a fixed-seed PRNG so the "random" payload is the same on every run.
    private struct SplitMix64 {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        mutating func bytes(_ n: Int) -> [UInt8] {
            var out = [UInt8]()
            out.reserveCapacity(n + 8)
            while out.count < n {
                var v = next()
                for _ in 0..<8 { out.append(UInt8(truncatingIfNeeded: v)); v >>= 8 }
            }
            out.removeLast(out.count - n)
            return out
        }
    }

    private func code(of body: () throws -> [UInt8]) -> Code? {
        do {
            _ = try body()
            return nil
        } catch let e as ConnectError {
            return e.code
        } catch {
            return nil
        }
    }

    @Test func roundTripEmpty() throws {
        let z = try Gzip.compress([])
        #expect(z.count >= 18)  // header + empty deflate block + trailer
        #expect(z[0] == 0x1f && z[1] == 0x8b)
        #expect(try Gzip.decompress(z, maxBytes: 0) == [])
    }

    @Test func emptyInputDecompressesToEmpty() throws {
        #expect(try Gzip.decompress([], maxBytes: 0) == [])
        #expect(try Gzip.decompress([], maxBytes: 10) == [])
    }

    @Test func roundTripOneByte() throws {
        let z = try Gzip.compress([0x42])
        #expect(try Gzip.decompress(z, maxBytes: 0) == [0x42])
        #expect(try Gzip.decompress(z, maxBytes: 1) == [0x42])
    }

    @Test func roundTripOneMiBRandom() throws {
        var rng = SplitMix64(state: 0x1234_5678)
        let data = rng.bytes(1 << 20)
        for level: Int32 in [1, 6, 9] {
            let z = try Gzip.compress(data, level: level)
            #expect(try Gzip.decompress(z, maxBytes: 0) == data)
            #expect(try Gzip.decompress(z, maxBytes: 1 << 20) == data)
        }
    }

    @Test func roundTripCompressible() throws {
        let text = Array(String(repeating: "hello connect gzip ", count: 20000).utf8)
        let z = try Gzip.compress(text)
        #expect(z.count < text.count / 20)
        #expect(try Gzip.decompress(z, maxBytes: 0) == text)
    }

    @Test func levelsAndInvalidLevel() throws {
        let data = Array("abcabcabc".utf8)
        for level: Int32 in [-1, 0, 9] {
            #expect(try Gzip.decompress(try Gzip.compress(data, level: level), maxBytes: 0) == data)
        }
        #expect(code { try Gzip.compress(data, level: 10) } == .invalidArgument)
        #expect(code { try Gzip.compress(data, level: -2) } == .invalidArgument)
    }

    @Test func limitExactlyNPassesNPlusOneFails() throws {
        var rng = SplitMix64(state: 7)
        for n in [1, 100, 16384, 65536, 100_000] {
            let exact = rng.bytes(n)
            let z = try Gzip.compress(exact)
            #expect(try Gzip.decompress(z, maxBytes: n) == exact)
            // The same data against a limit one byte smaller.
            if n > 1 {
                #expect(code { try Gzip.decompress(z, maxBytes: n - 1) } == .resourceExhausted)
            }
            let over = rng.bytes(n + 1)
            let zo = try Gzip.compress(over)
            do {
                _ = try Gzip.decompress(zo, maxBytes: n)
                Issue.record("N+1 bytes passed a limit of N=\(n)")
            } catch let e as ConnectError {
                #expect(e.code == .resourceExhausted)
                #expect(e.message == "message larger than \(n) bytes after decompression")
            }
        }
    }

    @Test func limitLargeValuesDoNotOverflow() throws {
        let z = try Gzip.compress([1, 2, 3])
        #expect(try Gzip.decompress(z, maxBytes: Int.max) == [1, 2, 3])
        #expect(try Gzip.decompress(z, maxBytes: Int.max - 1) == [1, 2, 3])
        #expect(try Gzip.decompress(z, maxBytes: -5) == [1, 2, 3])  // <= 0: unlimited
    }

    /// 100 MiB of zeros compressed with streaming zlib (the test never holds 100 MiB itself).
    private func zeroBomb(mebibytes: Int) throws -> [UInt8] {
        let strm = UnsafeMutablePointer<z_stream>.allocate(capacity: 1)
        strm.initialize(to: z_stream())
        defer { strm.deinitialize(count: 1); strm.deallocate() }
        #expect(cp_deflate_init_gzip(strm, 9) == Z_OK)
        defer { deflateEnd(strm) }
        var zeros = [UInt8](repeating: 0, count: 1 << 20)
        var chunk = [UInt8](repeating: 0, count: 64 * 1024)
        var out = [UInt8]()
        for i in 0..<mebibytes {
            let flush = i == mebibytes - 1 ? Z_FINISH : Z_NO_FLUSH
            try zeros.withUnsafeMutableBufferPointer { zin in
                strm.pointee.next_in = zin.baseAddress
                strm.pointee.avail_in = uInt(zin.count)
                while true {
                    let (rc, produced) = chunk.withUnsafeMutableBufferPointer { cbuf -> (Int32, Int) in
                        strm.pointee.next_out = cbuf.baseAddress
                        strm.pointee.avail_out = uInt(cbuf.count)
                        let rc = deflate(strm, flush)
                        return (rc, cbuf.count - Int(strm.pointee.avail_out))
                    }
                    out.append(contentsOf: chunk[0..<produced])
                    if rc == Z_STREAM_END { break }
                    try #require(rc == Z_OK || rc == Z_BUF_ERROR)
                    if strm.pointee.avail_in == 0 && strm.pointee.avail_out != 0 { break }
                }
            }
        }
        return out
    }

    @Test func gzipBombFailsFastWithBoundedMemory() throws {
        let bomb = try zeroBomb(mebibytes: 100)
        #expect(bomb.count < 200 * 1024)
        let limit = 1 << 20
        var largest = 0
        let clock = ContinuousClock()
        let start = clock.now
        do {
            _ = try Gzip.decompress(bomb, maxBytes: limit, observeBufferSize: { largest = max(largest, $0) })
            Issue.record("gzip bomb was accepted")
        } catch let e as ConnectError {
            #expect(e.code == .resourceExhausted)
        }
        let elapsed = clock.now - start
        // The output buffer never exceeds limit + 1 bytes, however large the bomb.
        #expect(largest <= limit + 1)
        #expect(largest > 0)
        #expect(elapsed < .seconds(5))
    }

    @Test func bombWithinLimitOfFullSizeDecompresses() throws {
        let bomb = try zeroBomb(mebibytes: 4)
        let out = try Gzip.decompress(bomb, maxBytes: 4 << 20)
        #expect(out.count == 4 << 20)
        #expect(out.allSatisfy { $0 == 0 })
        #expect(code { try Gzip.decompress(bomb, maxBytes: (4 << 20) - 1) } == .resourceExhausted)
    }

    @Test func corruptInputIsInvalidArgument() throws {
        var rng = SplitMix64(state: 99)
        let data = Array(String(repeating: "corrupt me please ", count: 500).utf8) + rng.bytes(1000)
        let z = try Gzip.compress(data)

        // Not gzip at all.
        #expect(code { try Gzip.decompress(Array("hello, world".utf8), maxBytes: 0) } == .invalidArgument)
        #expect(code { try Gzip.decompress([0x00], maxBytes: 0) } == .invalidArgument)
        // zlib (RFC 1950) framing is not gzip.
        #expect(code { try Gzip.decompress([0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01], maxBytes: 0) } == .invalidArgument)

        // Bad header byte (compression method).
        var badHeader = z
        badHeader[2] = 0x07
        #expect(code { try Gzip.decompress(badHeader, maxBytes: 0) } == .invalidArgument)

        // CRC mismatch in the trailer.
        var badCRC = z
        badCRC[badCRC.count - 8] ^= 0xFF
        #expect(code { try Gzip.decompress(badCRC, maxBytes: 0) } == .invalidArgument)

        // Length mismatch in the trailer.
        var badLen = z
        badLen[badLen.count - 1] ^= 0x01
        #expect(code { try Gzip.decompress(badLen, maxBytes: 0) } == .invalidArgument)

        // Flipped bits in the deflate body.
        var flips = 0
        for pos in stride(from: 12, to: z.count - 8, by: max(1, (z.count - 20) / 40)) {
            var c = z
            c[pos] ^= 0x55
            #expect(code { try Gzip.decompress(c, maxBytes: 0) } == .invalidArgument)
            flips += 1
        }
        #expect(flips > 10)
    }

    @Test func truncatedInputIsInvalidArgument() throws {
        let data = Array(String(repeating: "truncate ", count: 1000).utf8)
        let z = try Gzip.compress(data)
        for cut in [1, 2, 5, 10, z.count / 2, z.count - 8, z.count - 4, z.count - 1] {
            let t = Array(z[0..<cut])
            do {
                _ = try Gzip.decompress(t, maxBytes: 0)
                Issue.record("truncated to \(cut) bytes was accepted")
            } catch let e as ConnectError {
                #expect(e.code == .invalidArgument)
                #expect(e.message.hasPrefix("invalid gzip data: "))
            }
        }
    }

    @Test func trailingGarbageIsInvalidArgument() throws {
        let z = try Gzip.compress(Array("payload".utf8))
        #expect(code { try Gzip.decompress(z + [0x00], maxBytes: 0) } == .invalidArgument)
        #expect(code { try Gzip.decompress(z + Array("garbage".utf8), maxBytes: 0) } == .invalidArgument)
        #expect(code { try Gzip.decompress(z + [0x1f], maxBytes: 0) } == .invalidArgument)
        // A second member that is itself truncated.
        #expect(code { try Gzip.decompress(z + Array(z[0..<10]), maxBytes: 0) } == .invalidArgument)
    }

    @Test func concatenatedMembersAreAccepted() throws {
        let a = try Gzip.compress(Array("hello ".utf8))
        let b = try Gzip.compress(Array("world".utf8))
        let e = try Gzip.compress([])
        #expect(try Gzip.decompress(a + b, maxBytes: 0) == Array("hello world".utf8))
        #expect(try Gzip.decompress(a + e + b, maxBytes: 0) == Array("hello world".utf8))
        // The limit applies to the total.
        #expect(try Gzip.decompress(a + b, maxBytes: 11) == Array("hello world".utf8))
        #expect(code { try Gzip.decompress(a + b, maxBytes: 10) } == .resourceExhausted)
    }
}
