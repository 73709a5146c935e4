// The gRPC `grpc-timeout` header (protocol digest §6.3, §9): 1–8 ASCII digits and a unit,
// H (hour), M (minute), S (second), m (millisecond), u (microsecond), n (nanosecond).
import ConnectPluginHTTP

public enum GRPCTimeout {
    /// Units from finest to coarsest, with their size in nanoseconds.
    static let units: [(unit: UInt8, ns: UInt64)] = [
        (UInt8(ascii: "n"), 1),
        (UInt8(ascii: "u"), 1_000),
        (UInt8(ascii: "m"), 1_000_000),
        (UInt8(ascii: "S"), 1_000_000_000),
        (UInt8(ascii: "M"), 60_000_000_000),
        (UInt8(ascii: "H"), 3_600_000_000_000),
    ]

    /// The largest value a unit may carry: 8 digits.
    static let maxValue: UInt64 = 99_999_999

    /// Encodes a remaining timeout (G-14): the finest unit whose value is below 10^8, rounded down
    /// (as connect-go; the server never gets more time than the client has left). `0` (an expired
    /// deadline) is `0n`. Examples: 200 ms → `200000u`, 1 s → `1000000u`, 100 s → `100000m`,
    /// 5 h → `18000000m` (the finest unit under 10^8; see the note in the report about the digest's
    /// `18000S` example, which decodes to the same duration).
    public static func encode(ns: UInt64) -> String {
        if ns == 0 { return "0n" }
        for (unit, size) in units {
            let value = ns / size
            if value <= maxValue {
                return String(value) + String(UnicodeScalar(unit))
            }
        }
        // Hours: UInt64.max ns is ~5124095 h, always fewer than 8 digits.
        let hours = min(ns / 3_600_000_000_000, maxValue)
        return String(hours) + "H"
    }

    /// Decodes a `grpc-timeout` value into nanoseconds (G-15).
    ///
    /// * nil or empty → nil (no timeout).
    /// * 1–8 ASCII digits followed by one of `H M S m u n` → the duration in nanoseconds.
    /// * Anything else (no digits, more than 8 digits, a sign, spaces, a bad or missing unit) →
    ///   throws invalid_argument. (G-16: connect-es may send 9+ digit millisecond values for timeouts
    ///   ≥ ~27.8 h; this decoder follows the MUST and rejects them.)
    /// * A value whose nanosecond count overflows UInt64 (only possible with `H`) → nil, i.e. no
    ///   timeout.
    public static func decode(_ value: String?) throws -> UInt64? {
        guard let value else { return nil }
        let bytes = Array(value.utf8)
        if bytes.isEmpty { return nil }
        guard bytes.count >= 2, bytes.count <= 9 else { throw invalid(value) }
        guard let unitByte = bytes.last,
              let size = units.first(where: { $0.unit == unitByte })?.ns else { throw invalid(value) }
        var n: UInt64 = 0
        for b in bytes.dropLast() {
            guard b >= 0x30, b <= 0x39 else { throw invalid(value) }
            n = n &* 10 &+ UInt64(b &- 0x30)  // at most 8 digits: cannot overflow
        }
        let (ns, overflow) = n.multipliedReportingOverflow(by: size)
        if overflow { return nil }
        return ns
    }

    static func invalid(_ value: String) -> ConnectError {
        var shown = value
        if shown.utf8.count > 32 { shown = String(decoding: Array(value.utf8.prefix(32)), as: UTF8.self) + "…" }
        return ConnectError(.invalidArgument, "protocol error: invalid grpc-timeout \"\(shown)\"")
    }
}
