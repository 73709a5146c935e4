// gRPC codecs: grpc-timeout (G-14/15), grpc-message percent-encoding (G-9/10), google.rpc.Status
// (§2.3, G-11), trailer fields (G-7), client classification (G-12) and RST_STREAM codes (§6.4).
import ConnectPluginHTTP
import Testing
@testable import ConnectPluginRPC

@Suite struct ProtocolGRPCTimeoutTests {
    private let ms: UInt64 = 1_000_000
    private let s: UInt64 = 1_000_000_000

    @Test func encodeVectors() throws {
        #expect(GRPCTimeout.encode(ns: 200 * ms) == "200000u")
        #expect(GRPCTimeout.encode(ns: 1 * s) == "1000000u")
        #expect(GRPCTimeout.encode(ns: 100 * s) == "100000m")
        #expect(GRPCTimeout.encode(ns: 0) == "0n")
        #expect(GRPCTimeout.encode(ns: 1) == "1n")
        #expect(GRPCTimeout.encode(ns: 99_999_999) == "99999999n")
        #expect(GRPCTimeout.encode(ns: 100_000_000) == "100000u")
        // 5 h: the finest unit below 10^8 is milliseconds (18 000 000 m), as connect-go and grpc-go
        // encode it. The digest's example "18000S" is the same duration and decodes identically.
        #expect(GRPCTimeout.encode(ns: 5 * 3600 * s) == "18000000m")
        #expect(try GRPCTimeout.decode("18000S") == 5 * 3600 * s)
        #expect(GRPCTimeout.encode(ns: 100_000 * s) == "100000S")
        #expect(GRPCTimeout.encode(ns: UInt64.max) == "5124095H")
    }

    @Test func encodeAlwaysFitsEightDigitsAndRoundsDown() throws {
        var rng = ProtocolTestRNG(seed: 1234)
        for i in 0..<5000 {
            let ns = i < 64 ? (UInt64(1) << UInt64(i)) &- 1 : rng.next() >> UInt64(rng.below(64))
            let text = GRPCTimeout.encode(ns: ns)
            #expect(text.utf8.count >= 2 && text.utf8.count <= 9, "\(text)")
            let back = try #require(try GRPCTimeout.decode(text))
            #expect(back <= ns)
            // Never loses more than a 10^-5 fraction (the coarser unit is only used for ≥ 10^8 finer units).
            #expect(ns - back <= ns / 100_000, "\(ns) → \(text) → \(back)")
        }
    }

    @Test func decodeAllUnits() throws {
        #expect(try GRPCTimeout.decode("1n") == 1)
        #expect(try GRPCTimeout.decode("1u") == 1_000)
        #expect(try GRPCTimeout.decode("1m") == ms)
        #expect(try GRPCTimeout.decode("1S") == s)
        #expect(try GRPCTimeout.decode("1M") == 60 * s)
        #expect(try GRPCTimeout.decode("1H") == 3600 * s)
        #expect(try GRPCTimeout.decode("99999999M") == 99_999_999 * 60 * s)
        #expect(try GRPCTimeout.decode("00000007S") == 7 * s)
        #expect(try GRPCTimeout.decode("0n") == 0)
    }

    @Test func absentOrEmptyMeansNoTimeout() throws {
        #expect(try GRPCTimeout.decode(nil) == nil)
        #expect(try GRPCTimeout.decode("") == nil)
    }

    @Test func hourOverflowMeansNoTimeout() throws {
        #expect(try GRPCTimeout.decode("5124095H") == 5_124_095 * 3600 * s)
        #expect(try GRPCTimeout.decode("5124096H") == nil)
        #expect(try GRPCTimeout.decode("99999999H") == nil)
    }

    @Test func malformedIsInvalidArgument() {
        for v in ["1", "S", "abc", "-1S", "+1S", "1 S", " 1S", "1S ", "123456789m", "1x", "1s", "1h", "1.5S", "١S", "1SS", "0x1S"] {
            let e = protocolThrownError { _ = try GRPCTimeout.decode(v) }
            #expect(e?.code == .invalidArgument, "\(v)")
        }
    }
}

@Suite struct ProtocolGRPCMessageTests {
    private let unicode = "\ntest with whitespace\r\nand Unicode BMP ☺ and non-BMP 😈\n"
    private let unicodeEncoded = "%0Atest with whitespace%0D%0Aand Unicode BMP %E2%98%BA and non-BMP %F0%9F%98%88%0A"

    @Test func conformanceVector() {
        #expect(GRPCMessage.percentEncode(unicode) == unicodeEncoded)
        #expect(GRPCMessage.percentDecode(unicodeEncoded) == unicode)
    }

    @Test func encodeRules() {
        #expect(GRPCMessage.percentEncode("") == "")
        #expect(GRPCMessage.percentEncode("plain text ~!") == "plain text ~!")
        #expect(GRPCMessage.percentEncode("100%") == "100%25")
        #expect(GRPCMessage.percentEncode("\u{7F}\u{00}\t") == "%7F%00%09")
    }

    @Test func decodeNeverFails() {
        // G-10: invalid sequences are kept as they are.
        #expect(GRPCMessage.percentDecode("100%") == "100%")
        #expect(GRPCMessage.percentDecode("%4") == "%4")
        #expect(GRPCMessage.percentDecode("%zz%41") == "%zzA")
        #expect(GRPCMessage.percentDecode("%%41") == "%A")
        #expect(GRPCMessage.percentDecode("%e2%98%ba") == "☺")
        #expect(GRPCMessage.percentDecode("%FF%FE") == "\u{FFFD}\u{FFFD}")
        #expect(GRPCMessage.percentDecode("already ☺ raw") == "already ☺ raw")
    }

    @Test func roundTripRandomStrings() {
        var rng = ProtocolTestRNG(seed: 5)
        let pool: [Character] = ["a", "Z", " ", "%", "\n", "\r", "\t", "\u{0}", "~", "é", "☺", "😈", "\u{7F}", "\u{80}", "+"]
        for _ in 0..<500 {
            var s = ""
            for _ in 0..<rng.below(30) { s.append(pool[rng.below(pool.count)]) }
            let enc = GRPCMessage.percentEncode(s)
            #expect(enc.utf8.allSatisfy { $0 >= 0x20 && $0 <= 0x7E })
            #expect(GRPCMessage.percentDecode(enc) == s)
        }
    }

    @Test func decodeRandomBytesNeverTraps() {
        var rng = ProtocolTestRNG(seed: 6)
        for _ in 0..<500 {
            let s = String(decoding: rng.bytes(rng.below(20)).map { $0 % 3 == 0 ? 0x25 : $0 }, as: UTF8.self)
            _ = GRPCMessage.percentDecode(s)
        }
    }
}

@Suite struct ProtocolGRPCStatusTests {
    private let fdp = ErrorDetail(type: "google.protobuf.FileDescriptorProto", value: protocolHex("0a0a 746573742e70726f746f"))
    private let fdpStatusBin = "CAsSBG9vcHMaRwo3dHlwZS5nb29nbGVhcGlzLmNvbS9nb29nbGUucHJvdG9idWYuRmlsZURlc2NyaXB0b3JQcm90bxIMCgp0ZXN0LnByb3Rv"

    @Test func statusVector() throws {
        let st = GRPCStatus(code: 9, message: "error")
        #expect(st.encode() == protocolHex("08 09 12 05 65 72 72 6f 72"))
        #expect(st.detailsBinValue == "CAkSBWVycm9y")
        #expect(try GRPCStatus.decode(protocolHex("08 09 12 05 65 72 72 6f 72")) == st)
        #expect(GRPCStatus.decode(detailsBin: "CAkSBWVycm9y") == st)
    }

    @Test func statusWithDetailVector() throws {
        let st = GRPCStatus(code: 11, message: "oops", details: [fdp])
        #expect(st.detailsBinValue == fdpStatusBin)
        #expect(GRPCStatus.decode(detailsBin: fdpStatusBin) == st)
    }

    @Test func paddedAndUnpaddedBase64Accepted() {
        // GEN-10: "CAkSBWVycm9y" has length % 4 == 0; a 1-byte-longer message needs padding.
        let st = GRPCStatus(code: 9, message: "errors")
        let padded = Base64.encode(st.encode(), padded: true)
        #expect(padded.hasSuffix("="))
        #expect(GRPCStatus.decode(detailsBin: padded) == st)
        #expect(GRPCStatus.decode(detailsBin: st.detailsBinValue) == st)
        #expect(!st.detailsBinValue.contains("="))
        #expect(GRPCStatus.decode(detailsBin: "***") == nil)
    }

    @Test func roundTrips() throws {
        let cases = [
            GRPCStatus(code: 0),
            GRPCStatus(code: -1, message: "negative"),
            GRPCStatus(code: Int32.max, message: "☺"),
            GRPCStatus(code: 3, details: [ErrorDetail(type: "", value: []), ErrorDetail(type: "x.Y", value: [0, 1, 2])]),
        ]
        for c in cases {
            #expect(try GRPCStatus.decode(c.encode()) == c)
        }
        // A type that is already a URL is sent as is; reading keeps the name after the last "/".
        let custom = GRPCStatus(code: 2, message: "m", details: [ErrorDetail(type: "example.com/custom.T", value: [7])])
        #expect(String(decoding: custom.encode(), as: UTF8.self).contains("example.com/custom.T"))
        #expect(try GRPCStatus.decode(custom.encode()).details == [ErrorDetail(type: "custom.T", value: [7])])
    }

    @Test func typeURLs() throws {
        let any = try GRPCStatus.decode(GRPCStatus(code: 1, details: [ErrorDetail(type: "a.B", value: [1])]).encode())
        #expect(any.details.first?.type == "a.B")
        // The Any carries "type.googleapis.com/a.B" on the wire.
        let wire = GRPCStatus(code: 1, details: [ErrorDetail(type: "a.B", value: [1])]).encode()
        #expect(String(decoding: wire, as: UTF8.self).contains("type.googleapis.com/a.B"))
    }

    @Test func unknownFieldsAndWrongWireTypesAreSkipped() throws {
        // field 4 varint, field 1 as fixed32 (wrong type), then code=5, field 2 as varint (wrong type), message.
        let bytes = protocolHex("20 01 0d 01020304 08 05 10 07 12 02 6869")
        #expect(try GRPCStatus.decode(bytes) == GRPCStatus(code: 5, message: "hi"))
    }

    @Test func malformedThrows() {
        for hex in ["08", "12 05 6869", "1a 05 0a", "0f", "08 ffffffffffffffffffff01", "00"] {
            #expect((try? GRPCStatus.decode(protocolHex(hex))) == nil, "\(hex)")
        }
    }

    @Test func randomBytesNeverTrap() {
        var rng = ProtocolTestRNG(seed: 11)
        for _ in 0..<1000 { _ = try? GRPCStatus.decode(rng.bytes(rng.below(40))) }
    }

    @Test func fromError() {
        #expect(GRPCStatus(error: nil) == GRPCStatus(code: 0))
        #expect(GRPCStatus(error: ConnectError(.notFound, "x", details: [fdp])) == GRPCStatus(code: 5, message: "x", details: [fdp]))
        #expect(GRPCStatus(error: ConnectError(.ok, "odd")).code == 2)
        #expect(GRPCStatus(code: 99).connectCode == .unknown)
        #expect(GRPCStatus(code: -3).connectCode == .unknown)
    }
}

@Suite struct ProtocolGRPCTrailerTests {
    private func md(_ pairs: [(String, [UInt8])]) throws -> Metadata {
        var m = Metadata()
        for (k, v) in pairs { try m.add(k, v) }
        return m
    }

    private func same(_ a: [(String, String)], _ b: [(String, String)]) -> Bool {
        a.count == b.count && zip(a, b).allSatisfy { $0.0 == $1.0 && $0.1 == $1.1 }
    }

    @Test func okStatus() {
        #expect(same(GRPCTrailers.fields(error: nil, trailers: Metadata()), [("grpc-status", "0")]))
    }

    @Test func errorFields() throws {
        let f = GRPCTrailers.fields(error: ConnectError(.failedPrecondition, "error"), trailers: try md([("x-custom-trailer", Array("bing".utf8))]))
        #expect(same(f, [("grpc-status", "9"), ("grpc-message", "error"), ("x-custom-trailer", "bing")]))
    }

    @Test func messageIsPercentEncodedAndOmittedWhenEmpty() {
        let f = GRPCTrailers.fields(error: ConnectError(.internal, "a\nb%"), trailers: Metadata())
        #expect(same(f, [("grpc-status", "13"), ("grpc-message", "a%0Ab%25")]))
        #expect(same(GRPCTrailers.fields(error: ConnectError(.internal, ""), trailers: Metadata()), [("grpc-status", "13")]))
    }

    @Test func detailsBinConsistentWithStatus() throws {
        let detail = ErrorDetail(type: "google.protobuf.FileDescriptorProto", value: protocolHex("0a0a 746573742e70726f746f"))
        let f = GRPCTrailers.fields(error: ConnectError(.outOfRange, "oops", details: [detail]), trailers: Metadata())
        #expect(f.count == 3)
        #expect(f[2].0 == "grpc-status-details-bin")
        #expect(!f[2].1.contains("="))
        let st = try #require(GRPCStatus.decode(detailsBin: f[2].1))
        #expect(st == GRPCStatus(code: 11, message: "oops", details: [detail]))  // G-11
    }

    @Test func metadataRules() throws {
        var e = ConnectError(.aborted, "x")
        e.metadata = try md([("err-md", Array("1".utf8))])
        var t = try md([("Key-Bin", [0xFF]), ("dup", Array("a".utf8)), ("dup", Array("b".utf8)),
                        ("grpc-status", Array("0".utf8)), ("content-type", Array("text/plain".utf8)),
                        ("grpc-custom", Array("y".utf8))])
        t.appendUnchecked("bad key", Array("v".utf8))
        t.appendUnchecked("inject", Array("a\r\nx: y".utf8))
        let f = GRPCTrailers.fields(error: e, trailers: t)
        #expect(same(f, [("grpc-status", "10"), ("grpc-message", "x"), ("key-bin", "/w"), ("dup", "a"), ("dup", "b"), ("err-md", "1")]))
    }

    @Test func okCodeErrorBecomesUnknown() {
        #expect(GRPCTrailers.fields(error: ConnectError(.ok, "m"), trailers: Metadata()).first?.1 == "2")
    }

    // MARK: Client classification (G-12), conformance "gRPC Trailers" / "gRPC Unexpected Responses"

    private let grpcCT: [(String, String)] = [("content-type", "application/grpc")]

    @Test func trailersAtEnd() {
        let o = GRPCTrailers.classify(httpStatus: 200, headers: HTTPHeaders(grpcCT + [("x-custom-header", "foo")]),
                                      trailers: HTTPHeaders([("grpc-status", "9"), ("grpc-message", "error"), ("x-custom-trailer", "bing")]),
                                      bodyReceived: false)
        #expect(o.error?.code == .failedPrecondition)
        #expect(o.error?.message == "error")
        #expect(!o.trailersOnly)
        #expect(o.trailers.entries.map { $0.key } == ["x-custom-trailer"])
        #expect(o.error?.metadata.entries.map { $0.key } == ["x-custom-header", "x-custom-trailer"])
    }

    @Test func duplicateTrailers() {
        let o = GRPCTrailers.classify(httpStatus: 200, headers: HTTPHeaders(grpcCT),
                                      trailers: HTTPHeaders([("grpc-status", "9"), ("x-custom-trailer", "bing"), ("x-custom-trailer", "quuz")]),
                                      bodyReceived: true)
        #expect(o.trailers.entries.map { String(decoding: $0.value, as: UTF8.self) } == ["bing", "quuz"])
    }

    @Test func trailersOnly() {
        let o = GRPCTrailers.classify(httpStatus: 200,
                                      headers: HTTPHeaders(grpcCT + [("x-custom-trailer", "bing"), ("grpc-status", "9"), ("grpc-message", "error")]),
                                      trailers: HTTPHeaders(), bodyReceived: false)
        #expect(o.trailersOnly)
        #expect(o.error?.code == .failedPrecondition)
        #expect(o.error?.message == "error")
        #expect(o.trailers.entries.map { $0.key } == ["x-custom-trailer"])
        #expect(o.error?.metadata.entries.map { $0.key } == ["x-custom-trailer"])
    }

    @Test func trailersOnlySuccess() {
        let o = GRPCTrailers.classify(httpStatus: 200, headers: HTTPHeaders(grpcCT + [("grpc-status", "0")]),
                                      trailers: HTTPHeaders(), bodyReceived: false)
        #expect(o.error == nil)
        #expect(o.trailersOnly)
    }

    @Test func success() {
        let o = GRPCTrailers.classify(httpStatus: 200, headers: HTTPHeaders(grpcCT), trailers: HTTPHeaders([("grpc-status", "0"), ("grpc-message", "ignored")]),
                                      bodyReceived: true)
        #expect(o.error == nil)
        #expect(o.trailers.isEmpty)
    }

    @Test func missingStatus() {
        // missing-status: trailers without grpc-status → unknown (internal allowed).
        let o = GRPCTrailers.classify(httpStatus: 200, headers: HTTPHeaders(grpcCT), trailers: HTTPHeaders([("grpc-message", "error")]), bodyReceived: false)
        #expect(o.error?.code == .unknown)
        // no-terminal-status: body but no trailers at all → internal.
        let n = GRPCTrailers.classify(httpStatus: 200, headers: HTTPHeaders(grpcCT), trailers: HTTPHeaders(), bodyReceived: true)
        #expect(n.error?.code == .internal)
        // Trailers-only with no status and nothing but content-type → internal.
        let t = GRPCTrailers.classify(httpStatus: 200, headers: HTTPHeaders(grpcCT), trailers: HTTPHeaders(), bodyReceived: false)
        #expect(t.error?.code == .internal)
    }

    @Test func ignoreHeaderStatusIfBodyPresent() {
        let o = GRPCTrailers.classify(httpStatus: 200, headers: HTTPHeaders(grpcCT + [("grpc-status", "9")]), trailers: HTTPHeaders(), bodyReceived: true)
        #expect(o.error?.code == .internal)
        #expect(!o.trailersOnly)
    }

    @Test func ignoreHeaderStatusIfTrailerPresent() {
        let o = GRPCTrailers.classify(httpStatus: 200, headers: HTTPHeaders(grpcCT + [("grpc-status", "8")]),
                                      trailers: HTTPHeaders([("foo", "bar"), ("grpc-status", "9")]), bodyReceived: false)
        #expect(o.error?.code == .failedPrecondition)
    }

    @Test func httpStatusFallback() {
        // ERR-3/4/5: non-200 → code from the HTTP status, message = status line.
        let cases: [(Int, Code)] = [(400, .internal), (401, .unauthenticated), (403, .permissionDenied), (404, .unimplemented),
                                    (409, .unknown), (412, .unknown), (413, .unknown), (415, .unknown), (418, .unknown),
                                    (429, .unavailable), (431, .unknown), (502, .unavailable), (503, .unavailable),
                                    (504, .unavailable), (505, .unknown), (800, .unknown)]
        for (status, code) in cases {
            let o = GRPCTrailers.classify(httpStatus: status, headers: HTTPHeaders([("grpc-status", "0")]), trailers: HTTPHeaders([("grpc-status", "0")]), bodyReceived: true)
            #expect(o.error?.code == code, "\(status)")
        }
        let o = GRPCTrailers.classify(httpStatus: 503, headers: HTTPHeaders(), trailers: HTTPHeaders(), bodyReceived: false)
        #expect(o.error?.message == "HTTP status 503 Service Unavailable")
    }

    @Test func detailsBinIsPreferred() {
        let st = GRPCStatus(code: 11, message: "from details", details: [ErrorDetail(type: "a.B", value: [1])])
        let o = GRPCTrailers.classify(httpStatus: 200, headers: HTTPHeaders(grpcCT),
                                      trailers: HTTPHeaders([("grpc-status", "2"), ("grpc-message", "from header"), ("grpc-status-details-bin", st.detailsBinValue)]),
                                      bodyReceived: true)
        #expect(o.error?.code == .outOfRange)
        #expect(o.error?.message == "from details")
        #expect(o.error?.details == st.details)
        // A details Status without code/message keeps the header's.
        let bare = GRPCStatus(code: 0, details: [ErrorDetail(type: "a.B", value: [1])])
        let p = GRPCTrailers.classify(httpStatus: 200, headers: HTTPHeaders(grpcCT),
                                      trailers: HTTPHeaders([("grpc-status", "7"), ("grpc-message", "hdr"), ("grpc-status-details-bin", bare.detailsBinValue)]),
                                      bodyReceived: true)
        #expect(p.error?.code == .permissionDenied)
        #expect(p.error?.message == "hdr")
        #expect(p.error?.details.count == 1)
    }

    @Test func invalidDetailsBinIsInternal() {
        let o = GRPCTrailers.classify(httpStatus: 200, headers: HTTPHeaders(grpcCT),
                                      trailers: HTTPHeaders([("grpc-status", "5"), ("grpc-status-details-bin", "!!!")]), bodyReceived: true)
        #expect(o.error?.code == .internal)
    }

    @Test func oddStatusValues() {
        func code(_ v: String) -> Code? {
            GRPCTrailers.classify(httpStatus: 200, headers: HTTPHeaders(grpcCT), trailers: HTTPHeaders([("grpc-status", v)]), bodyReceived: true).error?.code
        }
        #expect(code("abc") == .unknown)
        #expect(code("") == .unknown)
        #expect(code("-1") == .unknown)
        #expect(code("17") == .unknown)  // ERR-1
        #expect(code("99999999999999999999") == .unknown)
        #expect(code("16") == .unauthenticated)
        #expect(code(" 3 ") == .invalidArgument)
        #expect(code("0") == nil)
    }

    @Test func messageIsPercentDecodedLeniently() {
        let o = GRPCTrailers.classify(httpStatus: 200, headers: HTTPHeaders(grpcCT),
                                      trailers: HTTPHeaders([("grpc-status", "3"), ("grpc-message", "%0Atest with whitespace%0D%0Aand Unicode BMP %E2%98%BA and non-BMP %F0%9F%98%88%0A bad %zz")]),
                                      bodyReceived: true)
        #expect(o.error?.message == "\ntest with whitespace\r\nand Unicode BMP ☺ and non-BMP 😈\n bad %zz")
    }

    @Test func binaryTrailersAreDecoded() {
        let o = GRPCTrailers.classify(httpStatus: 200, headers: HTTPHeaders(grpcCT),
                                      trailers: HTTPHeaders([("grpc-status", "0"), ("x-data-bin", "/w,AAE=")]), bodyReceived: true)
        #expect(o.trailers.entries.map { $0.value } == [[0xFF], [0x00, 0x01]])
    }

    @Test func serverFieldsClassifyBack() throws {
        // Round trip: the fields a server writes, read back by the client (as trailers and as trailers-only).
        let detail = ErrorDetail(type: "x.Y", value: [1, 2, 3])
        let errors: [ConnectError?] = [nil] + Code.allCases.filter { $0 != .ok }.map { ConnectError($0, "msg \($0.name) ☺%\n", details: [detail]) }
        let trailers = try md([("t-bin", [0, 255]), ("t", Array("v".utf8))])
        for e in errors {
            let fields = GRPCTrailers.fields(error: e, trailers: trailers)
            let a = GRPCTrailers.classify(httpStatus: 200, headers: HTTPHeaders(grpcCT), trailers: HTTPHeaders(fields), bodyReceived: true)
            let b = GRPCTrailers.classify(httpStatus: 200, headers: HTTPHeaders(grpcCT + fields), trailers: HTTPHeaders(), bodyReceived: false)
            for o in [a, b] {
                #expect(o.trailers == trailers)
                #expect(o.error?.code == e?.code)
                #expect(o.error?.message == e?.message)
                #expect(o.error?.details == e?.details)
            }
        }
    }

    // MARK: RST_STREAM (§6.4)

    @Test func rstStreamCodes() {
        #expect(HTTP2ErrorCode.code(forRSTStream: 0) == .internal)
        #expect(HTTP2ErrorCode.code(forRSTStream: 0, afterTrailers: true) == nil)
        for c: UInt32 in [1, 2, 3, 4, 6, 9, 0xA, 0xD, 0xFFFF_FFFF] { #expect(HTTP2ErrorCode.code(forRSTStream: c) == .internal) }
        #expect(HTTP2ErrorCode.code(forRSTStream: 5) == nil)
        #expect(HTTP2ErrorCode.code(forRSTStream: 7) == .unavailable)
        #expect(HTTP2ErrorCode.code(forRSTStream: 8) == .canceled)
        #expect(HTTP2ErrorCode.code(forRSTStream: 8, deadlinePassed: true) == .deadlineExceeded)
        #expect(HTTP2ErrorCode.code(forRSTStream: 0xB) == .resourceExhausted)
        #expect(HTTP2ErrorCode.code(forRSTStream: 0xC) == .permissionDenied)
    }
}
