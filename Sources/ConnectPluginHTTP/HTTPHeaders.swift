// HTTP header fields as an ordered list. Names are stored lowercased (HTTP/2 requires it and HTTP/1.1
// compares them case-insensitively); repeated names keep every value in order.

/// An ordered list of HTTP header fields with lowercased names.
public struct HTTPHeaders: Sequence, Equatable, Sendable {
    public typealias Element = (name: String, value: String)

    public private(set) var entries: [(name: String, value: String)] = []

    public init() {}

    public init(_ pairs: [(String, String)]) {
        entries.reserveCapacity(pairs.count)
        for (n, v) in pairs { add(n, v) }
    }

    public var count: Int { entries.count }
    public var isEmpty: Bool { entries.isEmpty }

    /// Appends a field; the name is lowercased.
    public mutating func add(_ name: String, _ value: String) {
        entries.append((name: asciiLowercased(name), value: value))
    }

    /// Replaces every field named `name` with one field.
    public mutating func set(_ name: String, _ value: String) {
        remove(name)
        add(name, value)
    }

    public mutating func remove(_ name: String) {
        let n = asciiLowercased(name)
        entries.removeAll { $0.name == n }
    }

    /// The first value of `name`, or nil.
    public func first(_ name: String) -> String? {
        let n = asciiLowercased(name)
        for e in entries where e.name == n { return e.value }
        return nil
    }

    /// Every value of `name`, in order.
    public func all(_ name: String) -> [String] {
        let n = asciiLowercased(name)
        return entries.compactMap { $0.name == n ? $0.value : nil }
    }

    public func contains(_ name: String) -> Bool { first(name) != nil }

    public func makeIterator() -> IndexingIterator<[(name: String, value: String)]> {
        entries.makeIterator()
    }

    public static func == (a: HTTPHeaders, b: HTTPHeaders) -> Bool {
        a.entries.count == b.entries.count && zip(a.entries, b.entries).allSatisfy { $0.name == $1.name && $0.value == $1.value }
    }
}

/// Lowercases ASCII letters only (header names are ASCII tokens; no locale, no Foundation).
@inlinable
public func asciiLowercased(_ s: String) -> String {
    // Most names and tokens are lowercase already: one scan of the contiguous UTF-8 bytes, and they
    // come back as they are, without a copy.
    let upper: (UInt8) -> Bool = { $0 &- 0x41 < 26 }
    let needs = s.utf8.withContiguousStorageIfAvailable { $0.contains(where: upper) } ?? s.utf8.contains(where: upper)
    if !needs { return s }
    let bytes = s.utf8.map { upper($0) ? $0 | 0x20 : $0 }
    return String(decoding: bytes, as: UTF8.self)
}
