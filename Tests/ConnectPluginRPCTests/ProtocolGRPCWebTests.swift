// gRPC-Web trailer frames (GW-1, GW-3, GW-4) and content-type based protocol detection (§1.4, §10,
// GEN-15, GEN-16).
import ConnectPluginHTTP
import Testing
@testable import ConnectPluginRPC

@Suite struct ProtocolGRPCWebTrailerTests {
    private func names(_ h: HTTPHeaders) -> [String] { h.entries.map { $0.name } }
    private func values(_ h: HTTPHeaders) -> [String] { h.entries.map { $0.value } }

    @Test func okTrailerVector() throws {
        var out = [UInt8]()
        try GRPCWebTrailers.encodeEnvelope([("grpc-status", "0")], into: &out)
        #expect(out == protocolHex("80 00000010 67 72 70 63 2d 73 74 61 74 75 73 3a 20 30 0d 0a"))
        var viaResult = [UInt8]()
        try GRPCWebTrailers.encodeEnvelope(error: nil, trailers: Metadata(), into: &viaResult)
        #expect(viaResult == out)
    }

    @Test func errorTrailerVector() throws {
        var md = Metadata()
        try md.add("x-custom-trailer", "bing")
        var out = [UInt8]()
        try GRPCWebTrailers.encodeEnvelope(error: ConnectError(.failedPrecondition, "error"), trailers: md, into: &out)
        let block = "grpc-status: 9\r\ngrpc-message: error\r\nx-custom-trailer: bing\r\n"
        #expect(out == protocolHex("80 0000003d") + Array(block.utf8))
        #expect(block.utf8.count == 61)
    }

    @Test func encodeLowercasesAndDropsUnsafeFields() {
        let block = GRPCWebTrailers.encodeBlock([("Grpc-Status", "0"), ("X-A", "1"), ("x-a", "2"), ("", "empty"),
                                                 ("bad name", "v"), ("x-inject", "a\r\nevil: 1"), ("x-nul", "a\u{0}"),
                                                 ("x-tab", "a\tb"), ("x-utf8", "☺")])
        #expect(String(decoding: block, as: UTF8.self) == "grpc-status: 0\r\nx-a: 1\r\nx-a: 2\r\nx-tab: a\tb\r\nx-utf8: ☺\r\n")
        #expect(GRPCWebTrailers.encodeBlock([]).isEmpty)
    }

    @Test func parseStandard() {
        let h = GRPCWebTrailers.parseBlock(Array("grpc-status: 9\r\ngrpc-message: error\r\nx-custom-trailer: bing\r\n".utf8))
        #expect(names(h) == ["grpc-status", "grpc-message", "x-custom-trailer"])
        #expect(values(h) == ["9", "error", "bing"])
    }

    @Test func parseMixedCaseAndDuplicates() {
        // Conformance gRPC-Web Trailers/trailers-in-body/mixed-case and duplicate-metadata.
        let h = GRPCWebTrailers.parseBlock(Array("Grpc-Status: 9\r\ngRPC-Message: error\r\nx-Custom-Trailer: bing\r\nx-custom-trailer: quuz\r\n".utf8))
        #expect(names(h) == ["grpc-status", "grpc-message", "x-custom-trailer", "x-custom-trailer"])
        #expect(h.all("x-custom-trailer") == ["bing", "quuz"])
    }

    @Test func parseLenientLineEndingsAndWhitespace() {
        let h = GRPCWebTrailers.parseBlock(Array(" grpc-status :\t 0 \t\nx-a:1\r\n\r\n\nx-b:  two words  ".utf8))
        #expect(names(h) == ["grpc-status", "x-a", "x-b"])
        #expect(values(h) == ["0", "1", "two words"])
        let noFinalCRLF = GRPCWebTrailers.parseBlock(Array("grpc-status: 0".utf8))
        #expect(values(noFinalCRLF) == ["0"])
        let emptyValue = GRPCWebTrailers.parseBlock(Array("x-e:\r\nx-f: a: b\r\n".utf8))
        #expect(values(emptyValue) == ["", "a: b"])
    }

    @Test func parseSkipsMalformedLines() {
        let h = GRPCWebTrailers.parseBlock(Array("no colon here\r\n: novalue\r\nbad name: v\r\n\u{1}x: y\r\ngrpc-status: 3\r\n\r".utf8))
        #expect(names(h) == ["grpc-status"])
        #expect(GRPCWebTrailers.parseBlock([]).isEmpty)
        #expect(GRPCWebTrailers.parseBlock([0x0D, 0x0A, 0x0D]).isEmpty)
    }

    @Test func parseRandomBytesNeverTraps() {
        var rng = ProtocolTestRNG(seed: 77)
        let alphabet: [UInt8] = Array("ab:\r\n \t-Z".utf8) + [0x00, 0xFF, 0xC3]
        for _ in 0..<1000 {
            let b = (0..<rng.below(60)).map { _ in alphabet[rng.below(alphabet.count)] }
            let h = GRPCWebTrailers.parseBlock(b)
            for e in h.entries {
                #expect(!e.name.isEmpty)
                #expect(!e.value.utf8.contains(0x0A))
            }
        }
    }

    @Test func roundTrip() {
        let fields: [(String, String)] = [("grpc-status", "13"), ("grpc-message", "a%0Ab"), ("k", "v1"), ("k", "v2"), ("x-bin", "AAE")]
        let h = GRPCWebTrailers.parseBlock(GRPCWebTrailers.encodeBlock(fields))
        #expect(h == HTTPHeaders(fields))
    }

    @Test func compressedTrailerFrame() throws {
        // GW-3 / conformance "gRPC-Web Compressed Trailers": flag 0x81, gzip.
        var out = [UInt8]()
        // A block long enough for gzip to shrink it (a smaller one is sent uncompressed, flag 0x80).
        let long = Array(repeating: "error", count: 40).joined(separator: " ")
        try GRPCWebTrailers.encodeEnvelope([("grpc-status", "9"), ("grpc-message", long)], compress: true, into: &out)
        #expect(out[0] == 0x81)
        var r = EnvelopeReader(terminalFlags: Envelope.trailersFlag)
        r.push(out)
        let env = try #require(try r.next())
        let h = try GRPCWebTrailers.decode(envelope: env, encoding: .gzip, maxBytes: 0)
        #expect(h == HTTPHeaders([("grpc-status", "9"), ("grpc-message", long)]))
        #expect(protocolThrownError { _ = try GRPCWebTrailers.decode(envelope: env, encoding: .identity, maxBytes: 0) }?.code == .internal)
        #expect(protocolThrownError { _ = try GRPCWebTrailers.decode(envelope: Envelope(flags: 0x82, payload: []), encoding: .gzip, maxBytes: 0) }?.code == .internal)
        #expect(protocolThrownError { _ = try GRPCWebTrailers.decode(envelope: Envelope(flags: 0, payload: []), encoding: .gzip, maxBytes: 0) }?.code == .internal)
    }

    @Test func bodyTrailersClassify() throws {
        // A whole gRPC-Web response body: one message, then the trailer frame; header grpc-status ignored (GW-4).
        var body = [UInt8]()
        try Envelope.encode(flags: 0, payload: [0x08, 0x01], into: &body)
        body.append(contentsOf: protocolHex("80 0000003d"))
        body.append(contentsOf: Array("Grpc-Status: 9\r\ngrpc-message: error\r\nx-custom-trailer: bing\r\n".utf8))
        var r = EnvelopeReader(truncatedCode: .internal, terminalFlags: Envelope.trailersFlag)
        var trailers = HTTPHeaders()
        var messages = 0
        for b in body {
            r.push([b])
            while let e = try r.next() {
                if e.isTrailers {
                    trailers = try GRPCWebTrailers.decode(envelope: e, encoding: .identity, maxBytes: 0)
                } else {
                    _ = try EnvelopeCodec.decodeMessage(e, encoding: .identity, maxBytes: 0)
                    messages += 1
                }
            }
        }
        try r.finish()
        #expect(messages == 1)
        let o = GRPCTrailers.classify(httpStatus: 200, headers: HTTPHeaders([("content-type", "application/grpc-web"), ("grpc-status", "8")]),
                                      trailers: trailers, bodyReceived: true)
        #expect(o.error?.code == .failedPrecondition)
        #expect(o.error?.message == "error")
        #expect(o.trailers.entries.map { $0.key } == ["x-custom-trailer"])
    }
}

@Suite struct ProtocolWireProtocolTests {
    @Test func detection() {
        let cases: [(String, WireProtocol, String)] = [
            ("application/grpc", .grpc, "proto"),
            ("application/grpc+proto", .grpc, "proto"),
            ("application/grpc+json", .grpc, "json"),
            ("Application/GRPC+JSON", .grpc, "json"),
            ("application/grpc-web", .grpcWeb, "proto"),
            ("application/grpc-web+proto", .grpcWeb, "proto"),
            ("application/grpc-web+json", .grpcWeb, "json"),
            ("application/connect+proto", .connectStream, "proto"),
            ("application/connect+json", .connectStream, "json"),
            ("application/proto", .connectUnary, "proto"),
            ("application/json", .connectUnary, "json"),
            ("application/json; charset=utf-8", .connectUnary, "json"),
            ("application/json;charset=UTF-8", .connectUnary, "json"),
            ("application/json; charset=\"utf-8\"", .connectUnary, "json"),
            ("application/connect+json; charset=utf-8", .connectStream, "json"),
            ("application/grpc; foo=bar", .grpc, "proto"),
            ("  application/proto  ", .connectUnary, "proto"),
        ]
        for (ct, p, c) in cases {
            let d = WireProtocol.detect(contentType: ct, method: "POST")
            #expect(d?.protocol == p && d?.codec == c, "\(ct)")
        }
        #expect(detectProtocol(contentType: "application/grpc", method: "post")?.protocol == .grpc)
    }

    @Test func commonTypesTakeTheShortcutWithTheSameAnswer() {
        // The exact-match shortcut must agree with the general parse, which the same type in upper
        // case (or with a parameter) still goes through.
        for ct in ["application/proto", "application/json", "application/grpc", "application/grpc+proto", "application/grpc+json",
                   "application/connect+proto", "application/connect+json", "application/grpc-web", "application/grpc-web+proto",
                   "application/grpc-web+json"] {
            let fast = WireProtocol.parse(ct)
            #expect(fast != nil, "\(ct)")
            for general in [ct.uppercased(), ct + "; charset=utf-8"] {
                let slow = WireProtocol.parse(general)
                #expect(fast?.protocol == slow?.protocol && fast?.codec == slow?.codec, "\(general)")
            }
        }
    }

    @Test func rejected() {
        for ct in ["", "image/jpeg", "application/", "application/grpc+", "application/grpc+foo", "application/grpc-web+xml",
                   "application/grpc-web-text", "application/grpc-web-text+proto", "application/grpcfoo",
                   "application/connect+", "application/connect+foo", "application/connect", "application/xml",
                   "application/json; charset=latin1", "text/json", "application/x/json", "application/a+json"] {
            #expect(WireProtocol.detect(contentType: ct, method: "POST") == nil, "\(ct)")
        }
        #expect(WireProtocol.detect(contentType: nil, method: "POST") == nil)
        #expect(WireProtocol.detect(contentType: "application/proto", method: "PUT") == nil)
        #expect(WireProtocol.detect(contentType: "application/proto", method: "GET") == nil)  // GET needs encoding=
    }

    @Test func getRequests() {
        #expect(WireProtocol.detect(contentType: nil, method: "GET", getEncoding: "proto").map { "\($0.protocol) \($0.codec)" } == "connectUnary proto")
        #expect(WireProtocol.detect(contentType: nil, method: "GET", getEncoding: "JSON")?.codec == "json")
        #expect(WireProtocol.detect(contentType: nil, method: "GET", getEncoding: "xml") == nil)
    }

    @Test func customCodecList() {
        #expect(WireProtocol.detect(contentType: "application/grpc+cbor", method: "POST", codecs: ["proto", "cbor"])?.codec == "cbor")
        #expect(WireProtocol.parse("application/grpc+foo").map { "\($0.protocol) \($0.codec)" } == "grpc foo")
    }

    @Test func contentTypes() {
        #expect(WireProtocol.connectUnary.contentType(codec: "json") == "application/json")
        #expect(WireProtocol.connectStream.contentType(codec: "proto") == "application/connect+proto")
        #expect(WireProtocol.grpc.contentType(codec: "proto") == "application/grpc")
        #expect(WireProtocol.grpc.contentType(codec: "json") == "application/grpc+json")
        #expect(WireProtocol.grpcWeb.contentType(codec: "proto") == "application/grpc-web+proto")
        for p in WireProtocol.allCases {
            for c in ["proto", "json"] {
                let d = WireProtocol.detect(contentType: p.contentType(codec: c), method: "POST")
                #expect(d?.protocol == p && d?.codec == c)
            }
        }
    }

    @Test func responseContentTypeValidation() {
        // GEN-16; conformance unexpected-content-type (→ unknown) and unexpected-codec (→ internal).
        #expect(WireProtocol.grpc.validateResponseContentType("application/grpc", codec: "proto") == nil)
        #expect(WireProtocol.grpc.validateResponseContentType("application/grpc+proto", codec: "proto") == nil)
        #expect(WireProtocol.grpc.validateResponseContentType("image/jpeg", codec: "proto")?.code == .unknown)
        #expect(WireProtocol.grpc.validateResponseContentType(nil, codec: "proto")?.code == .unknown)
        #expect(WireProtocol.grpc.validateResponseContentType("application/grpc+json", codec: "proto")?.code == .internal)
        #expect(WireProtocol.grpc.validateResponseContentType("application/grpc+foo", codec: "proto")?.code == .internal)
        #expect(WireProtocol.grpc.validateResponseContentType("application/grpc", codec: "json")?.code == .internal)
        #expect(WireProtocol.grpc.validateResponseContentType("application/grpc-web+proto", codec: "proto")?.code == .unknown)
        #expect(WireProtocol.grpcWeb.validateResponseContentType("application/grpc-web", codec: "proto") == nil)
        #expect(WireProtocol.grpcWeb.validateResponseContentType("application/grpc-web+json", codec: "proto")?.code == .internal)
        #expect(WireProtocol.grpcWeb.validateResponseContentType("application/grpc+proto", codec: "proto")?.code == .unknown)
        #expect(WireProtocol.connectStream.validateResponseContentType("application/connect+proto", codec: "proto") == nil)
        #expect(WireProtocol.connectStream.validateResponseContentType("application/connect+json", codec: "proto")?.code == .internal)
        #expect(WireProtocol.connectStream.validateResponseContentType("application/proto", codec: "proto")?.code == .unknown)
        #expect(WireProtocol.connectUnary.validateResponseContentType("application/json; charset=utf-8", codec: "json") == nil)
        #expect(WireProtocol.connectUnary.validateResponseContentType("application/proto", codec: "json")?.code == .internal)
        #expect(WireProtocol.connectUnary.validateResponseContentType("application/connect+proto", codec: "proto")?.code == .internal)
        #expect(WireProtocol.connectUnary.validateResponseContentType("text/html", codec: "proto")?.code == .unknown)
    }
}
