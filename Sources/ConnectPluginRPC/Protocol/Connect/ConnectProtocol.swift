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

    /// Splits an Accept-Encoding style list ("gzip, br;q=0.5") into lowercased names in order.
    public static func encodingList(_ s: String?) -> [String] {
        guard let s else { return [] }
        return s.split(separator: ",").compactMap { part in
            let name = part.split(separator: ";", maxSplits: 1).first.map { asciiLowercased(String($0).trimmingASCIISpaces()) } ?? ""
            return name.isEmpty ? nil : name
        }
    }
}
