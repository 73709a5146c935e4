// Connect streaming EndStreamResponse (protocol digest §5.2, CS-5, CS-6, CS-11).
import Testing
@testable import ConnectPluginRPC

@Suite struct ProtocolConnectEndStreamTests {
    private func md(_ pairs: [(String, [UInt8])]) throws -> Metadata {
        var m = Metadata()
        for (k, v) in pairs { try m.add(k, v) }
        return m
    }

    private func decode(_ s: String) throws -> EndStreamResponse {
        try EndStreamResponse.decode(json: Array(s.utf8))
    }

    // MARK: Encoding

    @Test func emptySuccessVector() throws {
        var out = [UInt8]()
        try EndStreamResponse().encodeEnvelope(into: &out)
        #expect(out == [0x02, 0x00, 0x00, 0x00, 0x02, 0x7B, 0x7D])
    }

    @Test func errorVector() throws {
        let json = EndStreamResponse(error: ConnectError(.unavailable, "overloaded")).encodeJSON()
        #expect(String(decoding: json, as: UTF8.self) == #"{"error":{"code":"unavailable","message":"overloaded"}}"#)
        var out = [UInt8]()
        try EndStreamResponse(error: ConnectError(.unavailable, "overloaded")).encodeEnvelope(into: &out)
        #expect(out[0] == 0x02)
        #expect(Array(out[1..<5]) == [0, 0, 0, UInt8(json.count)])
    }

    @Test func metadataIsGroupedLowercaseAndBinUnpadded() throws {
        let m = try md([("Acme-Operation-Cost", Array("237".utf8)), ("x-bin-key-bin", [0xFF, 0x00]),
                        ("acme-operation-cost", Array("12".utf8))])
        let json = String(decoding: EndStreamResponse(metadata: m).encodeJSON(), as: UTF8.self)
        #expect(json == #"{"metadata":{"acme-operation-cost":["237","12"],"x-bin-key-bin":["/wA"]}}"#)
    }

    @Test func errorWithDetailsAndMetadata() throws {
        let detail = ErrorDetail(type: "google.protobuf.FileDescriptorProto", value: protocolHex("0a0a 746573742e70726f746f"))
        var e = ConnectError(.outOfRange, "oops", details: [detail])
        e.metadata = try md([("err-key", Array("e".utf8))])
        let r = EndStreamResponse(error: e, metadata: try md([("t", Array("1".utf8))]))
        let json = String(decoding: r.encodeJSON(), as: UTF8.self)
        #expect(json == #"{"error":{"code":"out_of_range","message":"oops","details":[{"type":"google.protobuf.FileDescriptorProto","value":"Cgp0ZXN0LnByb3Rv"}]},"metadata":{"t":["1"],"err-key":["e"]}}"#)
    }

    @Test func okCodeInErrorIsWrittenAsUnknown() {
        let json = String(decoding: EndStreamResponse(error: ConnectError(.ok, "")).encodeJSON(), as: UTF8.self)
        #expect(json == #"{"error":{"code":"unknown"}}"#)
    }

    // MARK: Decoding (client, CS-11; conformance "Connect Error and End-Stream")

    @Test func emptyObjectIsSuccess() throws {
        let r = try decode("{}")
        #expect(r.error == nil)
        #expect(r.metadata.isEmpty)
        #expect(try decode("null").error == nil)
        #expect(try decode(" {}\n").error == nil)
    }

    @Test func nullErrorIsSuccess() throws {
        #expect(try decode("{ \"error\": null }\n").error == nil)  // end-stream/null-error
    }

    @Test func nullMissingOrUnknownCodeIsUnknown() throws {
        for body in [#"{"error":{"code":null,"message":"oops"}}"#, #"{"error":{"message":"oops"}}"#,
                     #"{"error":{"code":"foobar","message":"oops"}}"#, #"{"error":{"code":5,"message":"oops"}}"#,
                     #"{"error":{"code":"ok","message":"oops"}}"#] {
            let e = try #require(try decode(body).error, "\(body)")
            #expect(e.code == .unknown, "\(body)")
            #expect(e.message == "oops")
        }
        let empty = try #require(try decode(#"{"error":{}}"#).error)
        #expect(empty.code == .unknown)
        #expect(empty.message == "")
    }

    @Test func unrecognizedFieldsAreIgnored() throws {
        let body = """
        {
          "error": {
            "code": "out_of_range",
            "message": "oops",
            "foobar": "baz",
            "details": [
              {
                "type": "google.protobuf.FileDescriptorProto",
                "value": "Cgp0ZXN0LnByb3Rv",
                "frob": "nitz",
                "debug": { "name": "test.proto", "foobar": true }
              }
            ]
          },
          "other": [1, 2, 3]
        }
        """
        let e = try #require(try decode(body).error)
        #expect(e.code == .outOfRange)
        #expect(e.message == "oops")
        #expect(e.details == [ErrorDetail(type: "google.protobuf.FileDescriptorProto", value: protocolHex("0a0a 746573742e70726f746f"))])
    }

    @Test func metadataIsDecodedAndMergedIntoError() throws {
        let body = #"{"metadata":{"Acme-Cost":["237","12"],"x-bin":["/wA","/wA=","!!"],"k":null},"error":{"code":"aborted"}}"#
        let r = try decode(body)
        let expected = try md([("acme-cost", Array("237".utf8)), ("acme-cost", Array("12".utf8)),
                               ("x-bin", [0xFF, 0x00]), ("x-bin", [0xFF, 0x00])])
        #expect(r.metadata == expected)
        #expect(r.error?.code == .aborted)
        #expect(r.error?.metadata == expected)
    }

    @Test func invalidJSONIsInternal() {
        for body in ["", "{", "{\"error\":", "nope", "[]", "\"x\"", "1", #"{"error":"x"}"#, #"{"error":[]}"#,
                     #"{"metadata":[]}"#, #"{"metadata":{"a":"b"}}"#, #"{"metadata":{"a":[1]}}"#, "{}{}"] {
            let e = protocolThrownError { _ = try EndStreamResponse.decode(json: Array(body.utf8)) }
            #expect(e?.code == .internal, "\(body)")
        }
    }

    @Test func garbageBytesNeverTrap() {
        var rng = ProtocolTestRNG(seed: 99)
        for _ in 0..<300 {
            let b = rng.bytes(rng.below(40))
            _ = try? EndStreamResponse.decode(json: b)
        }
    }

    // MARK: Envelope level

    @Test func compressedEndStreamRoundTrip() throws {
        // CS-6: flags 0x03 (conformance "Connect Compressed Error and End-Stream").
        let r = EndStreamResponse(error: ConnectError(.dataLoss, String(repeating: "x", count: 300)),
                                  metadata: try md([("a", Array("b".utf8))]))
        var out = [UInt8]()
        try r.encodeEnvelope(compress: true, into: &out)
        #expect(out[0] == 0x03)
        var reader = EnvelopeReader(terminalFlags: Envelope.endStreamFlag)
        reader.push(out)
        let env = try #require(try reader.next())
        var back = try EndStreamResponse.decode(envelope: env, encoding: .gzip, maxBytes: 0)
        #expect(back.metadata == r.metadata)
        back.error?.metadata = Metadata()
        #expect(back.error == r.error)
        // Compressed end-stream on an identity stream → internal (GEN-7).
        #expect(protocolThrownError { _ = try EndStreamResponse.decode(envelope: env, encoding: .identity, maxBytes: 0) }?.code == .internal)
        // A data envelope is not an end-stream.
        #expect(protocolThrownError { _ = try EndStreamResponse.decode(envelope: Envelope(flags: 0, payload: []), encoding: .identity, maxBytes: 0) }?.code == .internal)
    }

    @Test func roundTrips() throws {
        let cases: [EndStreamResponse] = [
            EndStreamResponse(),
            EndStreamResponse(metadata: try md([("x-a", Array("1".utf8)), ("x-b-bin", [0, 1, 2, 3, 4])])),
            EndStreamResponse(error: ConnectError(.permissionDenied, "no \"quotes\" \\ ☺\n")),
            EndStreamResponse(error: ConnectError(.internal, "", details: [ErrorDetail(type: "a.B", value: []), ErrorDetail(type: "c.D", value: [9])])),
        ]
        for c in cases {
            var back = try EndStreamResponse.decode(json: c.encodeJSON())
            #expect(back.metadata == c.metadata)
            back.error?.metadata = Metadata()
            #expect(back.error == c.error)
        }
        for code in Code.allCases where code != .ok {
            let back = try EndStreamResponse.decode(json: EndStreamResponse(error: ConnectError(code, "m")).encodeJSON())
            #expect(back.error?.code == code)
        }
    }
}
