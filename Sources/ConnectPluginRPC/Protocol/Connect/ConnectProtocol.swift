// Connect protocol constants and header parsing shared by the server and the client.
import ConnectPluginHTTP

public enum ConnectProtocol {
    public static let protocolVersion = "1"
    public static let supportedCodecs = ["proto", "json"]
    public static let supportedEncodings = ["gzip", "identity"]
    /// Responses smaller than this are not compressed (connect-go's WithCompressMinBytes idea).
    public static let compressMinBytes = 1024
    public static let userAgent = "connectplugin/" + libraryVersion

    /// The codec named by a Connect unary Content-Type ("application/proto", "application/json;
    /// charset=utf-8"), or nil for anything else.
    public static func unaryCodec(contentType: String?) -> String? {
        guard let ct = contentType else { return nil }
        switch ct {  // what servers nearly always send, exactly
        case "application/proto": return "proto"
        case "application/json": return "json"
        default: break
        }
        let lower = asciiLowercased(ct)
        let main = lower.split(separator: ";", maxSplits: 1).first.map { String($0).trimmingASCIISpaces() } ?? ""
        guard main.hasPrefix("application/") else { return nil }
        let codec = String(main.dropFirst("application/".count))
        guard supportedCodecs.contains(codec) else { return nil }
        if codec == "json" || codec == "proto", lower.contains(";") {
            // Only a charset parameter of utf-8 is meaningful; others are tolerated for JSON only.
            let params = lower.split(separator: ";").dropFirst().map { String($0).trimmingASCIISpaces() }
            for p in params where p.hasPrefix("charset=") && p != "charset=utf-8" && p != "charset=\"utf-8\"" { return nil }
        }
        return codec
    }

    public static func contentType(codec: String) -> String { "application/" + codec }

    /// Parses Connect-Timeout-Ms: 1–10 ASCII digits. nil when invalid.
    public static func parseTimeoutMs(_ s: String) -> Int64? {
        let u = s.utf8
        if u.isEmpty || u.count > 10 { return nil }
        var v: Int64 = 0
        for b in u {
            guard b >= 0x30 && b <= 0x39 else { return nil }
            v = v * 10 + Int64(b - 0x30)
        }
        return v
    }

    /// The first item of an Accept-Encoding style list ("gzip, br;q=0.5") for which `body` gives a
    /// value, in order: each item's name as UTF-8 bytes, spaces and parameters cut off, empty items
    /// skipped, case kept. Allocates nothing (it runs for every unary call).
    public static func firstListItem<T>(_ s: String?, _ body: (UnsafeBufferPointer<UInt8>) -> T?) -> T? {
        guard var s else { return nil }
        return s.withUTF8 { buf -> T? in
            var i = 0
            while i < buf.count {
                let start = i
                while i < buf.count && buf[i] != UInt8(ascii: ",") { i += 1 }
                var lo = start
                var hi = start
                while hi < i && buf[hi] != UInt8(ascii: ";") { hi += 1 }
                while lo < hi && (buf[lo] == 0x20 || buf[lo] == 0x09) { lo += 1 }
                while hi > lo && (buf[hi - 1] == 0x20 || buf[hi - 1] == 0x09) { hi -= 1 }
                if hi > lo, let v = body(UnsafeBufferPointer(rebasing: buf[lo..<hi])) { return v }
                i += 1
            }
            return nil
        }
    }

    /// `bytes` spell `lowercaseName` (an ASCII literal), ignoring ASCII case.
    public static func asciiEqualsIgnoringCase(_ bytes: UnsafeBufferPointer<UInt8>, _ lowercaseName: StaticString) -> Bool {
        guard bytes.count == lowercaseName.utf8CodeUnitCount else { return false }
        let name = UnsafeBufferPointer(start: lowercaseName.utf8Start, count: lowercaseName.utf8CodeUnitCount)
        for (a, b) in zip(bytes, name) where (a &- 0x41 < 26 ? a | 0x20 : a) != b { return false }
        return true
    }

    /// Splits an Accept-Encoding style list ("gzip, br;q=0.5") into lowercased names in order.
    public static func encodingList(_ s: String?) -> [String] {
        guard let s else { return [] }
        return s.split(separator: ",").compactMap { part in
            let name = part.split(separator: ";", maxSplits: 1).first.map { asciiLowercased(String($0).trimmingASCIISpaces()) } ?? ""
            return name.isEmpty ? nil : name
        }
    }
}
