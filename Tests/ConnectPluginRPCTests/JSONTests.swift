import Testing
@testable import ConnectPluginRPC

@Suite struct JSONTests {
    private func parse(_ s: String, maxDepth: Int = 64) throws -> JSONValue {
        try JSON.parse(Array(s.utf8), maxDepth: maxDepth)
    }

    private func rejects(_ bytes: [UInt8], maxDepth: Int = 64) -> Bool {
        do {
            _ = try JSON.parse(bytes, maxDepth: maxDepth)
            return false
        } catch is JSONError {
            return true
        } catch {
            return false
        }
    }

    private func rejects(_ s: String, maxDepth: Int = 64) -> Bool { rejects(Array(s.utf8), maxDepth: maxDepth) }

    @Test func scalars() throws {
        #expect(try parse("null") == .null)
        #expect(try parse("true") == .bool(true))
        #expect(try parse("false") == .bool(false))
        #expect(try parse(" \t\r\n 42 \n") == .number("42"))
        #expect(try parse("-0") == .number("-0"))
        #expect(try parse("0") == .number("0"))
        #expect(try parse("-12.5e+10") == .number("-12.5e+10"))
        #expect(try parse("1E-3") == .number("1E-3"))
        #expect(try parse("0.001") == .number("0.001"))
        #expect(try parse("\"\"") == .string(""))
        #expect(try parse("\"abc\"") == .string("abc"))
    }

    @Test func nestedValues() throws {
        let v = try parse(#" { "a" : [1, {"b": null}, [], {}, "x"], "c": {"d": {"e": [true, false]}}, "a": 2 } "#)
        let expected: JSONValue = .object([
            ("a", .array([.number("1"), .object([("b", .null)]), .array([]), .object([]), .string("x")])),
            ("c", .object([("d", .object([("e", .array([.bool(true), .bool(false)]))]))])),
            ("a", .number("2")),
        ])
        #expect(v == expected)
        // The subscript returns the first matching key.
        #expect(v["a"]?.arrayValue?.count == 5)
        #expect(v["c"]?["d"]?["e"] == .array([.bool(true), .bool(false)]))
        #expect(v["missing"] == nil)
        #expect(JSONValue.string("s")["a"] == nil)
        #expect(v["a"]?.arrayValue?[4].stringValue == "x")
        #expect(JSONValue.number("1").stringValue == nil)
    }

    @Test func objectOrderMatters() {
        let a: JSONValue = .object([("x", .null), ("y", .null)])
        let b: JSONValue = .object([("y", .null), ("x", .null)])
        #expect(a != b)
        #expect(a == .object([("x", .null), ("y", .null)]))
        #expect(JSONValue.number("1") != .number("1.0"))
        #expect(JSONValue.array([.null]) != .array([.null, .null]))
        #expect(JSONValue.null != .bool(false))
    }

    @Test func escapes() throws {
        #expect(try parse(#""\"\\\/\b\f\n\r\t""#) == .string("\"\\/\u{08}\u{0C}\n\r\t"))
        #expect(try parse(#""\u0041\u00e9\u20AC""#) == .string("Aé€"))
        #expect(try parse(#""\u0000""#) == .string("\u{0}"))
        #expect(try parse(#""a\u0062c""#) == .string("abc"))
        // Raw UTF-8.
        #expect(try parse("\"héllo ☺ 😈\"") == .string("héllo ☺ 😈"))
    }

    @Test func surrogatePairs() throws {
        #expect(try parse(#""\uD83D\uDE08""#) == .string("😈"))
        #expect(try parse(#""\ud83d\ude08x""#) == .string("😈x"))
        #expect(try parse(#""\uDBFF\uDFFF""#) == .string("\u{10FFFF}"))
        #expect(try parse(#""\uD800\uDC00""#) == .string("\u{10000}"))
    }

    @Test func invalidInputsThrow() {
        let bad: [String] = [
            "", " ", "[1,]", "{\"a\":1,}", "[,1]", "{,}", "[1 2]", "{\"a\" 1}", "{\"a\":}", "{a:1}", "{'a':1}",
            "{\"a\":1", "[1", "[", "{", "\"abc", "\"abc\\", "\"\\u12\"", "\"\\u12G4\"",
            "\"\\x\"", "\"\\a\"", "\"\\U0041\"", "\"\\'\"",
            "\"\\uD83D\"", "\"\\uD83Dx\"", "\"\\uD83D\\u0041\"", "\"\\uDE08\"", "\"\\uDE08\\uD83D\"", "\"\\uD83D\\\"",
            "01", "00", "-01", "+1", "1.", ".5", "1e", "1e+", "-", "--1", "0x10", "1.5.5", "Infinity", "NaN",
            "tru", "True", "nul", "nulll", "falsey",
            "1 2", "{} {}", "[]]", "null x", "\"a\"\"b\"",
            "\"a\u{1}b\"", "\"tab\there\"", "\"line\nbreak\"", "\"\u{1F}\"",
            "[1,,2]", "{\"a\":1,,\"b\":2}", "{\"a\"::1}", "{\"a\":1:2}", "[}", "{]",
        ]
        for s in bad {
            #expect(rejects(s), "accepted \(s.debugDescription)")
        }
    }

    @Test func invalidUTF8Throws() {
        let cases: [[UInt8]] = [
            [0x22, 0xFF, 0x22],  // invalid byte
            [0x22, 0xC0, 0xAF, 0x22],  // overlong "/"
            [0x22, 0xE0, 0x80, 0xAF, 0x22],  // overlong
            [0x22, 0xED, 0xA0, 0x80, 0x22],  // encoded surrogate U+D800
            [0x22, 0xF4, 0x90, 0x80, 0x80, 0x22],  // > U+10FFFF
            [0x22, 0xC3, 0x22],  // truncated sequence
            [0x22, 0x80, 0x22],  // lone continuation byte
            [0xEF, 0xBB, 0xBF, 0x6E, 0x75, 0x6C, 0x6C],  // BOM before the value
            [0x22, 0xE2, 0x98],  // truncated at end of input
            [0xC3, 0xA9],  // non-ASCII outside a string
        ]
        for c in cases {
            #expect(rejects(c), "accepted \(c)")
        }
        #expect(!rejects([0x22, 0xC3, 0xA9, 0x22]))
        #expect(!rejects([0x22, 0xF0, 0x9F, 0x98, 0x88, 0x22]))
        #expect(!rejects([0x22, 0xEF, 0xBF, 0xBF, 0x22]))  // U+FFFF is a valid scalar
    }

    @Test func depthLimit() throws {
        func nested(_ n: Int) -> String { String(repeating: "[", count: n) + String(repeating: "]", count: n) }
        func nestedObj(_ n: Int) -> String { String(repeating: "{\"a\":", count: n) + "1" + String(repeating: "}", count: n) }
        _ = try parse(nested(64))
        _ = try parse(nestedObj(64))
        #expect(rejects(nested(65)))
        #expect(rejects(nestedObj(65)))
        _ = try parse(nested(3), maxDepth: 3)
        #expect(rejects(nested(4), maxDepth: 3))
        #expect(rejects("[]", maxDepth: 0))
        _ = try parse("1", maxDepth: 0)
        // Very deep input is rejected without recursing.
        #expect(rejects(nested(1_000_000)))
        #expect(rejects(String(repeating: "[", count: 1_000_000)))
    }

    @Test func serializeCompactAndEscaped() {
        let v: JSONValue = .object([
            ("s", .string("q\"b\\n\nr\rt\tb\u{08}f\u{0C}z\u{0}u\u{1F}é😈/")),
            ("a", .array([.null, .bool(true), .bool(false), .number("-1.5e3")])),
            ("o", .object([])),
        ])
        let out = String(decoding: JSON.serialize(v), as: UTF8.self)
        #expect(out == #"{"s":"q\"b\\n\nr\rt\tb\bf\fz\u0000u\u001fé😈/","a":[null,true,false,-1.5e3],"o":{}}"#)
        #expect(JSON.serialize(.number("01")) == Array("null".utf8))  // invalid number text
        #expect(JSON.serialize(.array([])) == Array("[]".utf8))
    }

    @Test func serializeParseRoundTrip() throws {
        var all = ""
        for s in 0..<0x80 { all.unicodeScalars.append(Unicode.Scalar(UInt8(s))) }
        let values: [JSONValue] = [
            .null, .bool(true), .number("0"), .number("-3.25E-7"), .string(""), .string(all),
            .string("Unicode ☺ and 😈 \u{10FFFF}\u{7F}\u{2028}"),
            .array([.array([.array([])]), .object([("", .string(""))])]),
            .object([("code", .string("not_found")), ("message", .string("no \"x\"\n")),
                     ("details", .array([.object([("type", .string("a.B")), ("value", .string("CAk"))])]))]),
            .object([("dup", .number("1")), ("dup", .number("2"))]),
        ]
        for v in values {
            let bytes = JSON.serialize(v)
            #expect(try JSON.parse(bytes) == v)
            // Serializing again is stable.
            #expect(JSON.serialize(try JSON.parse(bytes)) == bytes)
        }
    }

    @Test func errorCarriesOffset() {
        do {
            _ = try parse("[1, 2, x]")
            Issue.record("accepted")
        } catch let e as JSONError {
            #expect(e.offset == 7)
        } catch {
            Issue.record("unexpected error \(error)")
        }
    }
}
