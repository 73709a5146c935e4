// A minimal, strict JSON (RFC 8259) value, parser and serializer for control data (Connect error
// bodies, end-stream messages). Not meant for user messages. Works on bytes; no Foundation.
//
// The parser is iterative (an explicit stack), so nesting depth never touches the call stack; it
// validates UTF-8 (no overlongs, no encoded surrogates, nothing above U+10FFFF), escapes including
// \uXXXX surrogate pairs, the number grammar, and rejects trailing garbage.

/// A JSON value. Numbers keep their source text; objects keep member order (and duplicates).
public indirect enum JSONValue: Equatable, Sendable {
    case null
    case bool(Bool)
    case number(String)
    case string(String)
    case array([JSONValue])
    case object([(String, JSONValue)])

    public static func == (a: JSONValue, b: JSONValue) -> Bool {
        switch (a, b) {
        case (.null, .null): return true
        case let (.bool(x), .bool(y)): return x == y
        case let (.number(x), .number(y)): return x == y
        case let (.string(x), .string(y)): return x == y
        case let (.array(x), .array(y)): return x == y
        case let (.object(x), .object(y)):
            guard x.count == y.count else { return false }
            for (l, r) in zip(x, y) where l.0 != r.0 || l.1 != r.1 { return false }
            return true
        default: return false
        }
    }
}

extension JSONValue {
    /// The value of the first member named `key`, if this is an object that has one.
    public subscript(key: String) -> JSONValue? {
        guard case let .object(members) = self else { return nil }
        for (k, v) in members where k == key { return v }
        return nil
    }

    /// The string, if this is a string.
    public var stringValue: String? {
        if case let .string(s) = self { return s }
        return nil
    }

    /// The elements, if this is an array.
    public var arrayValue: [JSONValue]? {
        if case let .array(a) = self { return a }
        return nil
    }

    /// The members, if this is an object.
    public var objectValue: [(String, JSONValue)]? {
        if case let .object(o) = self { return o }
        return nil
    }

    public var isNull: Bool {
        if case .null = self { return true }
        return false
    }
}

/// A JSON syntax error: what was wrong and the byte offset where it was found.
public struct JSONError: Error, Equatable, CustomStringConvertible, Sendable {
    public var message: String
    public var offset: Int

    public init(_ message: String, offset: Int) {
        self.message = message
        self.offset = offset
    }

    public var description: String { "invalid JSON at byte \(offset): \(message)" }
}

public enum JSON {
    /// Parses exactly one JSON value (surrounding whitespace allowed). Containers nested deeper than
    /// `maxDepth` are rejected.
    public static func parse(_ bytes: [UInt8], maxDepth: Int = 64) throws -> JSONValue {
        var p = Parser(bytes: bytes, maxDepth: maxDepth)
        return try p.parseDocument()
    }

    /// Compact serialization. Strings escape `"`, `\` and control characters; non-ASCII is UTF-8.
    /// A `.number` whose text is not a valid JSON number is written as `null`.
    public static func serialize(_ v: JSONValue) -> [UInt8] {
        var out = [UInt8]()
        out.reserveCapacity(64)
        write(v, into: &out)
        return out
    }

    // MARK: - Serializer

    static func write(_ v: JSONValue, into out: inout [UInt8]) {
        switch v {
        case .null:
            out.append(contentsOf: [0x6E, 0x75, 0x6C, 0x6C])  // null
        case .bool(let b):
            if b { out.append(contentsOf: [0x74, 0x72, 0x75, 0x65]) } else { out.append(contentsOf: [0x66, 0x61, 0x6C, 0x73, 0x65]) }
        case .number(let n):
            let bytes = Array(n.utf8)
            if isValidNumber(bytes) { out.append(contentsOf: bytes) } else { out.append(contentsOf: [0x6E, 0x75, 0x6C, 0x6C]) }
        case .string(let s):
            writeString(s, into: &out)
        case .array(let items):
            out.append(0x5B)
            for (i, item) in items.enumerated() {
                if i > 0 { out.append(0x2C) }
                write(item, into: &out)
            }
            out.append(0x5D)
        case .object(let members):
            out.append(0x7B)
            for (i, m) in members.enumerated() {
                if i > 0 { out.append(0x2C) }
                writeString(m.0, into: &out)
                out.append(0x3A)
                write(m.1, into: &out)
            }
            out.append(0x7D)
        }
    }

    private static let hex: [UInt8] = Array("0123456789abcdef".utf8)

    static func writeString(_ s: String, into out: inout [UInt8]) {
        out.append(0x22)
        for b in s.utf8 {
            switch b {
            case 0x22: out.append(0x5C); out.append(0x22)
            case 0x5C: out.append(0x5C); out.append(0x5C)
            case 0x0A: out.append(0x5C); out.append(0x6E)
            case 0x0D: out.append(0x5C); out.append(0x72)
            case 0x09: out.append(0x5C); out.append(0x74)
            case 0x08: out.append(0x5C); out.append(0x62)
            case 0x0C: out.append(0x5C); out.append(0x66)
            case 0x00..<0x20:
                out.append(contentsOf: [0x5C, 0x75, 0x30, 0x30])  // \u00
                out.append(hex[Int(b >> 4)])
                out.append(hex[Int(b & 0x0F)])
            default:
                out.append(b)
            }
        }
        out.append(0x22)
    }

    /// RFC 8259 number grammar: -? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?
    static func isValidNumber(_ b: [UInt8]) -> Bool {
        var i = 0
        return scanNumber(b, &i) && i == b.count
    }

    /// Scans a number starting at `i`; on success `i` is just past it.
    static func scanNumber(_ b: [UInt8], _ i: inout Int) -> Bool {
        let n = b.count
        @inline(__always) func isDigit(_ j: Int) -> Bool { j < n && b[j] >= 0x30 && b[j] <= 0x39 }
        if i < n && b[i] == 0x2D { i += 1 }
        guard i < n else { return false }
        if b[i] == 0x30 {
            i += 1
        } else if b[i] >= 0x31 && b[i] <= 0x39 {
            while isDigit(i) { i += 1 }
        } else {
            return false
        }
        if i < n && b[i] == 0x2E {
            i += 1
            guard isDigit(i) else { return false }
            while isDigit(i) { i += 1 }
        }
        if i < n && (b[i] == 0x65 || b[i] == 0x45) {
            i += 1
            if i < n && (b[i] == 0x2B || b[i] == 0x2D) { i += 1 }
            guard isDigit(i) else { return false }
            while isDigit(i) { i += 1 }
        }
        return true
    }

    // MARK: - Parser

    struct Parser {
        let b: [UInt8]
        let maxDepth: Int
        var i = 0

        init(bytes: [UInt8], maxDepth: Int) {
            self.b = bytes
            self.maxDepth = maxDepth
        }

        /// One open container on the explicit stack.
        struct Frame {
            var isObject: Bool
            var items: [JSONValue] = []
            var members: [(String, JSONValue)] = []
            var key: String = ""
        }

        func fail(_ message: String) -> JSONError { JSONError(message, offset: i) }

        mutating func skipWhitespace() {
            while i < b.count {
                switch b[i] {
                case 0x20, 0x09, 0x0A, 0x0D: i += 1
                default: return
                }
            }
        }

        func peek() -> UInt8? { i < b.count ? b[i] : nil }

        mutating func parseDocument() throws -> JSONValue {
            var stack: [Frame] = []
            var value: JSONValue

            parseValue: while true {
                skipWhitespace()
                guard let c = peek() else { throw fail("unexpected end of input, expected a value") }
                switch c {
                case 0x7B:  // {
                    guard stack.count < maxDepth else { throw fail("nesting deeper than \(maxDepth)") }
                    i += 1
                    skipWhitespace()
                    if peek() == 0x7D {
                        i += 1
                        value = .object([])
                    } else {
                        let key = try parseMemberKey()
                        stack.append(Frame(isObject: true, key: key))
                        continue parseValue
                    }
                case 0x5B:  // [
                    guard stack.count < maxDepth else { throw fail("nesting deeper than \(maxDepth)") }
                    i += 1
                    skipWhitespace()
                    if peek() == 0x5D {
                        i += 1
                        value = .array([])
                    } else {
                        stack.append(Frame(isObject: false))
                        continue parseValue
                    }
                case 0x22:
                    value = .string(try parseString())
                case 0x74:
                    try expectLiteral([0x74, 0x72, 0x75, 0x65])
                    value = .bool(true)
                case 0x66:
                    try expectLiteral([0x66, 0x61, 0x6C, 0x73, 0x65])
                    value = .bool(false)
                case 0x6E:
                    try expectLiteral([0x6E, 0x75, 0x6C, 0x6C])
                    value = .null
                case 0x2D, 0x30...0x39:
                    let start = i
                    guard JSON.scanNumber(b, &i) else { throw fail("invalid number") }
                    value = .number(String(decoding: b[start..<i], as: UTF8.self))
                default:
                    throw fail("unexpected character, expected a value")
                }

                // A value is complete: hand it to the enclosing containers, closing them as needed.
                while true {
                    guard !stack.isEmpty else { break parseValue }
                    let top = stack.count - 1
                    skipWhitespace()
                    guard let sep = peek() else { throw fail("unexpected end of input inside a container") }
                    i += 1
                    if stack[top].isObject {
                        let key = stack[top].key
                        stack[top].members.append((key, value))
                        if sep == 0x2C {  // ,
                            skipWhitespace()
                            stack[top].key = try parseMemberKey()
                            continue parseValue
                        } else if sep == 0x7D {  // }
                            value = .object(stack[top].members)
                            stack.removeLast()
                        } else {
                            i -= 1
                            throw fail("expected ',' or '}' in object")
                        }
                    } else {
                        stack[top].items.append(value)
                        if sep == 0x2C {
                            continue parseValue
                        } else if sep == 0x5D {  // ]
                            value = .array(stack[top].items)
                            stack.removeLast()
                        } else {
                            i -= 1
                            throw fail("expected ',' or ']' in array")
                        }
                    }
                }
            }

            skipWhitespace()
            guard i == b.count else { throw fail("trailing characters after the JSON value") }
            return value
        }

        /// At a member key: `"key"` then `:`; leaves `i` after the colon.
        mutating func parseMemberKey() throws -> String {
            guard peek() == 0x22 else { throw fail("expected a string key") }
            let key = try parseString()
            skipWhitespace()
            guard peek() == 0x3A else { throw fail("expected ':' after object key") }
            i += 1
            return key
        }

        mutating func expectLiteral(_ lit: [UInt8]) throws {
            guard b.count - i >= lit.count else { throw fail("invalid literal") }
            for (k, c) in lit.enumerated() where b[i + k] != c { throw fail("invalid literal") }
            i += lit.count
        }

        func hexValue(_ c: UInt8) -> UInt32? {
            switch c {
            case 0x30...0x39: return UInt32(c - 0x30)
            case 0x41...0x46: return UInt32(c - 0x41 + 10)
            case 0x61...0x66: return UInt32(c - 0x61 + 10)
            default: return nil
            }
        }

        /// Reads the 4 hex digits of a \u escape at `i`.
        mutating func parseHex4() throws -> UInt32 {
            guard b.count - i >= 4 else { throw fail("truncated \\u escape") }
            var v: UInt32 = 0
            for k in 0..<4 {
                guard let h = hexValue(b[i + k]) else { throw fail("invalid hex digit in \\u escape") }
                v = (v << 4) | h
            }
            i += 4
            return v
        }

        /// At an opening quote; returns the decoded string and leaves `i` after the closing quote.
        mutating func parseString() throws -> String {
            i += 1  // opening quote
            var out = [UInt8]()
            var runStart = i
            let n = b.count
            while true {
                guard i < n else { throw fail("unterminated string") }
                let c = b[i]
                if c == 0x22 {
                    out.append(contentsOf: b[runStart..<i])
                    i += 1
                    return String(decoding: out, as: UTF8.self)
                } else if c == 0x5C {
                    out.append(contentsOf: b[runStart..<i])
                    try parseEscape(into: &out)
                    runStart = i
                } else if c < 0x20 {
                    throw fail("unescaped control character in string")
                } else if c < 0x80 {
                    i += 1
                } else {
                    try skipUTF8Sequence()
                }
            }
        }

        /// At a backslash; appends the escaped character's UTF-8 and moves past the escape.
        mutating func parseEscape(into out: inout [UInt8]) throws {
            i += 1
            guard i < b.count else { throw fail("unterminated escape") }
            let e = b[i]
            i += 1
            switch e {
            case 0x22: out.append(0x22)
            case 0x5C: out.append(0x5C)
            case 0x2F: out.append(0x2F)
            case 0x62: out.append(0x08)
            case 0x66: out.append(0x0C)
            case 0x6E: out.append(0x0A)
            case 0x72: out.append(0x0D)
            case 0x74: out.append(0x09)
            case 0x75:
                let u = try parseHex4()
                var scalar = u
                if u >= 0xD800 && u <= 0xDBFF {
                    guard b.count - i >= 2, b[i] == 0x5C, b[i + 1] == 0x75 else { throw fail("unpaired high surrogate") }
                    i += 2
                    let lo = try parseHex4()
                    guard lo >= 0xDC00 && lo <= 0xDFFF else { throw fail("high surrogate not followed by a low surrogate") }
                    scalar = 0x10000 + ((u - 0xD800) << 10) + (lo - 0xDC00)
                } else if u >= 0xDC00 && u <= 0xDFFF {
                    throw fail("unpaired low surrogate")
                }
                appendUTF8(scalar, into: &out)
            default:
                i -= 1
                throw fail("invalid escape")
            }
        }

        func appendUTF8(_ s: UInt32, into out: inout [UInt8]) {
            if s < 0x80 {
                out.append(UInt8(truncatingIfNeeded: s))
            } else if s < 0x800 {
                out.append(UInt8(truncatingIfNeeded: 0xC0 | (s >> 6)))
                out.append(UInt8(truncatingIfNeeded: 0x80 | (s & 0x3F)))
            } else if s < 0x10000 {
                out.append(UInt8(truncatingIfNeeded: 0xE0 | (s >> 12)))
                out.append(UInt8(truncatingIfNeeded: 0x80 | ((s >> 6) & 0x3F)))
                out.append(UInt8(truncatingIfNeeded: 0x80 | (s & 0x3F)))
            } else {
                out.append(UInt8(truncatingIfNeeded: 0xF0 | (s >> 18)))
                out.append(UInt8(truncatingIfNeeded: 0x80 | ((s >> 12) & 0x3F)))
                out.append(UInt8(truncatingIfNeeded: 0x80 | ((s >> 6) & 0x3F)))
                out.append(UInt8(truncatingIfNeeded: 0x80 | (s & 0x3F)))
            }
        }

        /// At a byte >= 0x80: validates one UTF-8 sequence (RFC 3629 table) and moves past it.
        mutating func skipUTF8Sequence() throws {
            let n = b.count
            let c0 = b[i]
            @inline(__always) func cont(_ j: Int, _ lo: UInt8 = 0x80, _ hi: UInt8 = 0xBF) -> Bool {
                j < n && b[j] >= lo && b[j] <= hi
            }
            switch c0 {
            case 0xC2...0xDF:
                guard cont(i + 1) else { throw fail("invalid UTF-8") }
                i += 2
            case 0xE0:
                guard cont(i + 1, 0xA0, 0xBF), cont(i + 2) else { throw fail("invalid UTF-8") }
                i += 3
            case 0xE1...0xEC, 0xEE...0xEF:
                guard cont(i + 1), cont(i + 2) else { throw fail("invalid UTF-8") }
                i += 3
            case 0xED:  // excludes UTF-16 surrogates
                guard cont(i + 1, 0x80, 0x9F), cont(i + 2) else { throw fail("invalid UTF-8") }
                i += 3
            case 0xF0:
                guard cont(i + 1, 0x90, 0xBF), cont(i + 2), cont(i + 3) else { throw fail("invalid UTF-8") }
                i += 4
            case 0xF1...0xF3:
                guard cont(i + 1), cont(i + 2), cont(i + 3) else { throw fail("invalid UTF-8") }
                i += 4
            case 0xF4:
                guard cont(i + 1, 0x80, 0x8F), cont(i + 2), cont(i + 3) else { throw fail("invalid UTF-8") }
                i += 4
            default:
                throw fail("invalid UTF-8")
            }
        }
    }
}
