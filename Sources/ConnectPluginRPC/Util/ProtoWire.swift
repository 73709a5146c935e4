// A small protobuf wire-format codec for connectplugin's own control messages (handshake, health,
// broker) and for examples. User messages are never parsed by the runtime.

public struct ProtoWireError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(description: String) { self.description = description }
}

/// Appends protobuf fields. Default values (0, false, empty) are skipped, as proto3 does.
public struct ProtoWriter: Sendable {
    public private(set) var bytes: [UInt8] = []
    public init() {}

    public mutating func varint(_ v: UInt64) {
        var v = v
        while v >= 0x80 {
            bytes.append(UInt8(truncatingIfNeeded: v) | 0x80)
            v >>= 7
        }
        bytes.append(UInt8(truncatingIfNeeded: v))
    }

    public mutating func tag(_ field: Int, wireType: Int) { varint(UInt64(truncatingIfNeeded: (field << 3) | wireType)) }

    public mutating func bytesField(_ field: Int, _ value: [UInt8]) {
        if value.isEmpty { return }
        tag(field, wireType: 2)
        varint(UInt64(value.count))
        bytes.append(contentsOf: value)
    }

    public mutating func stringField(_ field: Int, _ value: String) { bytesField(field, Array(value.utf8)) }

    /// A length-delimited field written even when empty: an element of a repeated string or bytes
    /// field, a map entry, or a set sub-message.
    public mutating func lengthDelimitedField(_ field: Int, _ value: [UInt8]) {
        tag(field, wireType: 2)
        varint(UInt64(value.count))
        bytes.append(contentsOf: value)
    }

    public mutating func boolField(_ field: Int, _ value: Bool) {
        if !value { return }
        tag(field, wireType: 0)
        varint(1)
    }

    public mutating func int64Field(_ field: Int, _ value: Int64) {
        if value == 0 { return }
        tag(field, wireType: 0)
        varint(UInt64(bitPattern: value))
    }
}

/// Reads protobuf fields one at a time; unknown fields can be skipped. Never traps on bad input.
public struct ProtoReader: Sendable {
    let bytes: [UInt8]
    var index = 0
    public init(_ bytes: [UInt8]) { self.bytes = bytes }

    public var isAtEnd: Bool { index >= bytes.count }

    public mutating func varint() throws -> UInt64 {
        var result: UInt64 = 0
        var shift: UInt64 = 0
        while true {
            guard index < bytes.count else { throw ProtoWireError(description: "truncated varint") }
            let b = bytes[index]
            index += 1
            if shift >= 64 { throw ProtoWireError(description: "varint too long") }
            result |= UInt64(b & 0x7F) << shift
            if b & 0x80 == 0 { return result }
            shift += 7
        }
    }

    /// The next field's number and wire type, or nil at the end.
    public mutating func next() throws -> (field: Int, wireType: Int)? {
        if isAtEnd { return nil }
        let key = try varint()
        let field = Int(truncatingIfNeeded: key >> 3)
        if field <= 0 || key >> 3 > 536_870_911 { throw ProtoWireError(description: "invalid field number") }
        return (field, Int(key & 7))
    }

    public mutating func lengthDelimited() throws -> [UInt8] {
        let n = try varint()
        guard n <= UInt64(bytes.count - index) else { throw ProtoWireError(description: "truncated length-delimited field") }
        let start = index
        index += Int(n)
        return Array(bytes[start..<index])
    }

    public mutating func string() throws -> String {
        let b = try lengthDelimited()
        guard let s = String(validating: b, as: UTF8.self) else { throw ProtoWireError(description: "string field is not valid UTF-8") }
        return s
    }

    public mutating func skip(wireType: Int) throws {
        switch wireType {
        case 0: _ = try varint()
        case 1: try advance(8)
        case 2: _ = try lengthDelimited()
        case 5: try advance(4)
        default: throw ProtoWireError(description: "unsupported wire type \(wireType)")
        }
    }

    private mutating func advance(_ n: Int) throws {
        guard bytes.count - index >= n else { throw ProtoWireError(description: "truncated fixed-width field") }
        index += n
    }
}
