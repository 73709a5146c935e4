import Testing
@testable import ConnectPluginRPC

@Suite struct ConnectErrorJSONTests {
    private let json = "application/json"

    private func decode(_ body: String, _ contentType: String? = "application/json", status: Int) -> ConnectError {
        ConnectErrorJSON.decode(body: Array(body.utf8), contentType: contentType, httpStatus: status)
    }

    // MARK: Conformance cases (protocol digest CU-14)

    @Test func nullBodyUsesHTTPStatus() {
        let e = decode("null", status: 401)
        #expect(e.code == .unauthenticated)
        #expect(e.message == "HTTP status 401 Unauthorized")
        #expect(e.details.isEmpty)
        #expect(e.kind == .rpc)
        #expect(e.metadata.isEmpty)
    }

    @Test func nullCodeKeepsMessage() {
        let e = decode(#"{"code":null,"message":"oops"}"#, status: 401)
        #expect(e.code == .unauthenticated)
        #expect(e.message == "oops")
    }

    @Test func unknownCodeKeepsMessage() {
        let e = decode(#"{"code":"foobar","message":"oops"}"#, status: 429)
        #expect(e.code == .unavailable)
        #expect(e.message == "oops")
    }

    @Test func missingCodeKeepsMessageAndDetails() {
        let e = decode(#"{"message":"m","details":[{"type":"a.B","value":"CAk"}]}"#, status: 503)
        #expect(e.code == .unavailable)
        #expect(e.message == "m")
        #expect(e.details == [ErrorDetail(type: "a.B", value: [0x08, 0x09])])
    }

    @Test func jsonCodeWinsOverHTTPStatus() {
        let e = decode(#"{"code":"out_of_range","message":"too far"}"#, status: 422)
        #expect(e.code == .outOfRange)
        #expect(e.message == "too far")
        #expect(decode(#"{"code":"not_found"}"#, status: 500).code == .notFound)
        #expect(decode(#"{"code":"not_found"}"#, status: 500).message == "")
        // "ok" is not an error code.
        #expect(decode(#"{"code":"ok"}"#, status: 500).code == .unknown)
    }

    @Test func nonJSONContentTypeIsNotParsed() {
        let body = #"{"code":"not_found","message":"nope"}"#
        let e = decode(body, "application/proto", status: 403)
        #expect(e.code == .permissionDenied)
        #expect(e.message == "HTTP status 403 Forbidden")
        #expect(decode(body, nil, status: 404).code == .unimplemented)
        #expect(decode(body, nil, status: 404).message == "HTTP status 404 Not Found")
        #expect(decode(body, "text/plain", status: 502).code == .unavailable)
        #expect(decode(body, "application/json+x", status: 400).code == .internal)
        #expect(decode(body, "application/jsonx", status: 400).code == .internal)
        #expect(decode(body, "application/json; charset=latin1", status: 400).code == .internal)
        #expect(decode(body, "application/json; foo=bar", status: 400).code == .internal)
        #expect(decode(body, "", status: 400).code == .internal)
    }

    @Test func jsonContentTypeVariants() {
        let body = #"{"code":"not_found"}"#
        for ct in ["application/json", "application/json; charset=utf-8", "application/json;charset=utf-8",
                   "Application/JSON ;  Charset=UTF-8 ", " application/json ", "application/json; charset=\"utf-8\""] {
            #expect(decode(body, ct, status: 500).code == .notFound, "content-type \(ct)")
        }
    }

    @Test func parseFailuresUseHTTPStatus() {
        for body in ["", "{", "not json", #"{"code":"not_found",}"#, "[1,2]", #""str""#, "42", "{\"code\":\"not_found\"} x"] {
            let e = decode(body, status: 503)
            #expect(e.code == .unavailable, "body \(body)")
            #expect(e.message == "HTTP status 503 Service Unavailable")
        }
        #expect(decode("", status: 418).message == "HTTP status 418 I'm a teapot")
        #expect(decode("", status: 418).code == .unknown)
        #expect(decode("", status: 431).code == .unknown)
        #expect(decode("", status: 431).message == "HTTP status 431 Request Header Fields Too Large")
        #expect(decode("", status: 800).message == "HTTP status 800")
        #expect(decode("", status: -1).code == .unknown)
    }

    @Test func wrongTypedFieldsAreIgnored() {
        let e = decode(#"{"code":7,"message":["x"],"details":"nope"}"#, status: 401)
        #expect(e.code == .unauthenticated)
        #expect(e.message == "")
        #expect(e.details.isEmpty)
    }

    // MARK: Details

    @Test func detailTypesWithAndWithoutURLPrefix() {
        let body = #"""
        {"code":"invalid_argument","message":"bad","details":[
          {"type":"google.rpc.BadRequest","value":"CAkSBWVycm9y"},
          {"type":"type.googleapis.com/google.rpc.RetryInfo","value":"CAk"},
          {"type":"example.com/a/b/pkg.Msg","value":""}
        ]}
        """#
        let e = decode(body, status: 400)
        #expect(e.code == .invalidArgument)
        #expect(e.message == "bad")
        #expect(e.details == [
            ErrorDetail(type: "google.rpc.BadRequest", value: [0x08, 0x09, 0x12, 0x05, 0x65, 0x72, 0x72, 0x6f, 0x72]),
            ErrorDetail(type: "google.rpc.RetryInfo", value: [0x08, 0x09]),
            ErrorDetail(type: "pkg.Msg", value: []),
        ])
    }

    @Test func paddedAndURLSafeValuesAreAccepted() {
        let e = decode(#"{"code":"internal","details":[{"type":"a.B","value":"CAk="},{"type":"a.C","value":"-_8"}]}"#, status: 500)
        #expect(e.details == [ErrorDetail(type: "a.B", value: [0x08, 0x09]), ErrorDetail(type: "a.C", value: [0xFB, 0xFF])])
    }

    @Test func garbageDebugAndUnknownKeysAreIgnored() {
        let body = #"""
        {"code":"data_loss","extra":{"x":[1,2]},"message":"lost","details":[
          {"type":"google.protobuf.FileDescriptorProto","value":"Cgp0ZXN0LnByb3Rv","debug":"garbage!!"},
          {"type":"a.B","value":"CAk","debug":{"not":"matching"},"unknown":42}
        ]}
        """#
        let e = decode(body, status: 500)
        #expect(e.code == .dataLoss)
        #expect(e.message == "lost")
        #expect(e.details == [
            ErrorDetail(type: "google.protobuf.FileDescriptorProto", value: Array("\n\ntest.proto".utf8)),
            ErrorDetail(type: "a.B", value: [0x08, 0x09]),
        ])
    }

    @Test func undecodableDetailsAreSkipped() {
        let body = #"""
        {"code":"aborted","details":[
          {"type":"a.Bad","value":"not base64!"},
          {"type":"a.Short","value":"C"},
          {"value":"CAk"},
          {"type":"a.NoValue"},
          {"type":"","value":"CAk"},
          {"type":"a.Num","value":12},
          "string detail",
          null,
          {"type":"a.Good","value":"CAk"}
        ]}
        """#
        let e = decode(body, status: 409)
        #expect(e.code == .aborted)
        #expect(e.details == [ErrorDetail(type: "a.Good", value: [0x08, 0x09])])
    }

    // MARK: Encoding

    @Test func encodeShape() {
        #expect(String(decoding: ConnectErrorJSON.encode(ConnectError(.notFound, "")), as: UTF8.self) == #"{"code":"not_found"}"#)
        #expect(String(decoding: ConnectErrorJSON.encode(ConnectError(.ok, "")), as: UTF8.self) == #"{"code":"unknown"}"#)
        #expect(String(decoding: ConnectErrorJSON.encode(ConnectError(.canceled, "bye \"now\"\n")), as: UTF8.self)
            == #"{"code":"canceled","message":"bye \"now\"\n"}"#)
        let e = ConnectError(.failedPrecondition, "error", details: [
            ErrorDetail(type: "google.rpc.Status", value: [0x08, 0x09, 0x12, 0x05, 0x65, 0x72, 0x72, 0x6f, 0x72]),
            ErrorDetail(type: "type.googleapis.com/a.B", value: [0x08]),
        ])
        #expect(String(decoding: ConnectErrorJSON.encode(e), as: UTF8.self)
            == #"{"code":"failed_precondition","message":"error","details":[{"type":"google.rpc.Status","value":"CAkSBWVycm9y"},{"type":"a.B","value":"CA"}]}"#)
    }

    @Test func encodeUsesUnpaddedBase64() throws {
        // Lengths 1 and 2 would need padding.
        let e = ConnectError(.internal, "x", details: [ErrorDetail(type: "a.One", value: [0xFF]), ErrorDetail(type: "a.Two", value: [0xFF, 0xFE])])
        let bytes = ConnectErrorJSON.encode(e)
        #expect(!bytes.contains(UInt8(ascii: "=")))
        let parsed = try JSON.parse(bytes)
        let values = parsed["details"]?.arrayValue?.compactMap { $0["value"]?.stringValue }
        #expect(values == ["/w", "//4"])
    }

    @Test func encodeDecodeRoundTrip() {
        for code in Code.allCases where code != .ok {
            let e = ConnectError(code, "message for \(code.name) ☺ 😈 \"q\" \\ \n", details: [
                ErrorDetail(type: "google.rpc.ErrorInfo", value: Array(0...255)),
                ErrorDetail(type: "x.Empty", value: []),
                ErrorDetail(type: "a.b.C", value: [1, 2, 3, 4, 5]),
            ])
            // The status the server would use, and an unrelated one: the JSON code wins either way.
            for status in [code.httpStatus, 200, 500] {
                let d = ConnectErrorJSON.decode(body: ConnectErrorJSON.encode(e), contentType: "application/json", httpStatus: status)
                #expect(d == e)
                #expect(d.kind == .rpc)
            }
        }
        let plain = ConnectError(.unavailable, "")
        #expect(ConnectErrorJSON.decode(body: ConnectErrorJSON.encode(plain), contentType: "application/json; charset=utf-8", httpStatus: 503) == plain)
    }
}
