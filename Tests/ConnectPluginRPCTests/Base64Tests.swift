import Testing
@testable import ConnectPluginRPC

@Suite struct Base64Tests {
    /// RFC 4648 §10 test vectors: (input, padded encoding).
    private let vectors: [(String, String)] = [
        ("", ""), ("f", "Zg=="), ("fo", "Zm8="), ("foo", "Zm9v"),
        ("foob", "Zm9vYg=="), ("fooba", "Zm9vYmE="), ("foobar", "Zm9vYmFy"),
    ]

    private func unpadded(_ s: String) -> String { String(s.filter { $0 != "=" }) }

    @Test func rfc4648VectorsPadded() {
        for (plain, encoded) in vectors {
            #expect(Base64.encode(Array(plain.utf8)) == encoded)
            #expect(Base64.encode(Array(plain.utf8), padded: true) == encoded)
            #expect(Base64.decode(encoded) == Array(plain.utf8))
        }
    }

    @Test func rfc4648VectorsUnpadded() {
        for (plain, encoded) in vectors {
            let u = unpadded(encoded)
            #expect(Base64.encode(Array(plain.utf8), padded: false) == u)
            #expect(Base64.decode(u) == Array(plain.utf8))
        }
    }

    @Test func statusDetailsVector() {
        let bytes: [UInt8] = [0x08, 0x09, 0x12, 0x05, 0x65, 0x72, 0x72, 0x6f, 0x72]
        #expect(Base64.encode(bytes, padded: false) == "CAkSBWVycm9y")
        #expect(Base64.encode(bytes) == "CAkSBWVycm9y")  // 9 bytes: no padding either way
        #expect(Base64.decode("CAkSBWVycm9y") == bytes)
    }

    @Test func allByteValuesRoundTrip() {
        let all = (0...255).map { UInt8($0) }
        for n in [0, 1, 2, 3, 4, 5, 254, 255, 256] {
            let slice = Array(all.prefix(n))
            #expect(Base64.decode(Base64.encode(slice)) == slice)
            #expect(Base64.decode(Base64.encode(slice, padded: false)) == slice)
        }
    }

    @Test func urlSafeAlphabetIsAccepted() {
        #expect(Base64.decode("-_8") == [0xFB, 0xFF])
        #expect(Base64.decode("+/8=") == [0xFB, 0xFF])
    }

    @Test func invalidInputIsNil() {
        for s in ["Zm9v!", "Zm 9v", "Zm9v\n", "Z", "Zm9vY", "Zg==Zg", "Zm=v", "é", "Zm9v\u{0}", "*", "Zm.v"] {
            #expect(Base64.decode(s) == nil, "accepted \(s.debugDescription)")
        }
    }
}
