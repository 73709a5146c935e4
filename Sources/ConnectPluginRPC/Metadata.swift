// Custom metadata (headers and trailers) of an RPC: an ordered list of (key, bytes). Keys ending in
// "-bin" carry arbitrary bytes, base64-encoded on the wire; other values are printable ASCII.
import ConnectPluginHTTP

/// Ordered RPC metadata with lowercased keys.
public struct Metadata: Equatable, Sendable, Sequence {
    public typealias Element = (key: String, value: [UInt8])
    public private(set) var entries: [(key: String, value: [UInt8])] = []

    public init() {}

    public var count: Int { entries.count }
    public var isEmpty: Bool { entries.isEmpty }

    public func makeIterator() -> IndexingIterator<[(key: String, value: [UInt8])]> { entries.makeIterator() }

    /// Appends (key, value) after validating both (see `validate`).
    public mutating func add(_ key: String, _ value: [UInt8]) throws {
        let k = asciiLowercased(key)
        try Metadata.validate(key: k, value: value)
        entries.append((key: k, value: value))
    }

    public mutating func add(_ key: String, _ value: String) throws {
        try add(key, Array(value.utf8))
    }

    /// Appends without validation (for values that came off the wire already checked).
    public mutating func appendUnchecked(_ key: String, _ value: [UInt8]) {
        entries.append((key: key, value: value))
    }

    public mutating func append(contentsOf other: Metadata) {
        entries.append(contentsOf: other.entries)
    }

    /// The first value of `key`.
    public func first(_ key: String) -> [UInt8]? {
        let k = asciiLowercased(key)
        for e in entries where e.key == k { return e.value }
        return nil
    }

    /// The first value of `key` as a string.
    public func firstString(_ key: String) -> String? {
        first(key).map { String(decoding: $0, as: UTF8.self) }
    }

    public static func == (a: Metadata, b: Metadata) -> Bool {
        a.entries.count == b.entries.count && zip(a.entries, b.entries).allSatisfy { $0.key == $1.key && $0.value == $1.value }
    }

    public static func isBinaryKey(_ key: String) -> Bool { key.hasSuffix("-bin") }

    /// Key: 1*(0-9 a-z _ - .), as HTTP/2 and Connect require; values of non "-bin" keys: 0x20–0x7E.
    public static func validate(key: String, value: [UInt8]) throws {
        if key.isEmpty { throw ConnectError.local(.invalidArgument, "metadata key must not be empty") }
        for b in key.utf8 {
            let ok = (b >= 0x30 && b <= 0x39) || (b >= 0x61 && b <= 0x7A) || b == 0x5F || b == 0x2D || b == 0x2E
            if !ok { throw ConnectError.local(.invalidArgument, "metadata key \"\(key)\" has a character outside [0-9a-z_.-]") }
        }
        if key.hasPrefix(":") { throw ConnectError.local(.invalidArgument, "metadata key \"\(key)\" is a pseudo-header") }
        if !isBinaryKey(key) {
            for b in value where b < 0x20 || b > 0x7E {
                throw ConnectError.local(.invalidArgument, "metadata value of \"\(key)\" must be printable ASCII; use a key ending in -bin for binary values")
            }
        }
    }

    /// Appends every entry to HTTP headers, base64-encoding "-bin" values (unpadded) and prefixing
    /// keys with `prefix` (e.g. "trailer-" for Connect unary trailers).
    public func write(to headers: inout HTTPHeaders, prefix: String = "") {
        for e in entries {
            let v = Metadata.isBinaryKey(e.key) ? Base64.encode(e.value, padded: false) : String(decoding: e.value, as: UTF8.self)
            headers.add(prefix.isEmpty ? e.key : prefix + e.key, v)
        }
    }

    /// Protocol headers that are never user metadata (protocol digest GEN-14), plus HTTP/1 hop headers.
    static let reservedHeaders: Set<String> = [
        "content-type", "content-length", "content-encoding", "host", "user-agent", "trailer", "date",
        "accept-encoding", "connect-content-encoding", "connect-accept-encoding", "connect-timeout-ms",
        "connect-protocol-version", "grpc-encoding", "grpc-accept-encoding", "grpc-timeout", "grpc-status",
        "grpc-message", "grpc-status-details-bin", "connection", "keep-alive", "transfer-encoding", "te",
        "upgrade", "proxy-connection", "accept-post", "accept", "http2-settings",
    ]

    /// User metadata from HTTP headers: drops protocol headers and pseudo-headers; decodes "-bin"
    /// values (each comma-separated part separately). With `trailerPrefix`, entries starting with it
    /// go to `trailers` with the prefix removed.
    public static func from(_ headers: HTTPHeaders, trailerPrefix: String? = nil) -> (headers: Metadata, trailers: Metadata) {
        var h = Metadata()
        var t = Metadata()
        for (name, value) in headers {
            if name.hasPrefix(":") || reservedHeaders.contains(name) { continue }
            var key = name
            var isTrailer = false
            if let p = trailerPrefix, name.hasPrefix(p) {
                key = String(name.dropFirst(p.count))
                isTrailer = true
                if key.isEmpty { continue }
            }
            if isBinaryKey(key) {
                for part in value.split(separator: ",") {
                    let trimmed = part.trimmingASCIISpaces()
                    guard let bytes = Base64.decode(trimmed) else { continue }
                    if isTrailer { t.appendUnchecked(key, bytes) } else { h.appendUnchecked(key, bytes) }
                }
            } else {
                if isTrailer { t.appendUnchecked(key, Array(value.utf8)) } else { h.appendUnchecked(key, Array(value.utf8)) }
            }
        }
        return (h, t)
    }
}

extension Substring {
    func trimmingASCIISpaces() -> String {
        var s = self
        while let f = s.first, f == " " || f == "\t" { s = s.dropFirst() }
        while let l = s.last, l == " " || l == "\t" { s = s.dropLast() }
        return String(s)
    }
}

extension String {
    func trimmingASCIISpaces() -> String { self[...].trimmingASCIISpaces() }
}
