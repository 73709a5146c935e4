// Which protocol and codec a request uses, from its method and Content-Type (protocol digest §1.4,
// §10), the content type to send for a protocol and codec, and the client's check of the response
// content type (GEN-16).
import ConnectPluginHTTP

/// The four wire protocols served on one port.
public enum WireProtocol: Sendable, Equatable, CaseIterable {
    /// Connect unary: POST `application/<codec>`, or GET with `encoding=<codec>`.
    case connectUnary
    /// Connect streaming: `application/connect+<codec>`.
    case connectStream
    /// gRPC over HTTP/2: `application/grpc[+<codec>]`.
    case grpc
    /// gRPC-Web: `application/grpc-web[+<codec>]`.
    case grpcWeb

    /// Server-side detection (§10).
    ///
    /// * `method` "POST" (any case): from `contentType`, case-insensitively, ignoring parameters (a
    ///   `charset` parameter must be utf-8):
    ///   - `application/grpc`, `application/grpc+proto` → (.grpc, "proto") (GEN-15, G-5);
    ///     `application/grpc+json` → (.grpc, "json");
    ///   - `application/grpc-web`, `application/grpc-web+proto`, `application/grpc-web+json` → .grpcWeb;
    ///   - `application/connect+proto|json` → .connectStream;
    ///   - `application/proto`, `application/json` (also `; charset=utf-8`) → .connectUnary.
    /// * `method` "GET": (.connectUnary, codec from the `encoding` query parameter, `getEncoding`).
    /// * nil for anything else: another method, a missing or unknown content type, a codec not in
    ///   `codecs` (`application/grpc+foo`), `application/grpc-web-text` (not supported). The caller
    ///   answers 405 for a bad method and 415 (+ Accept-Post) otherwise (CU-3, CS-1, G-3).
    ///
    /// Whether the protocol suits the method's stream type (e.g. Connect unary content type on a
    /// streaming method → 415) is the caller's check.
    public static func detect(contentType: String?, method: String, getEncoding: String? = nil,
                              codecs: [String] = ConnectProtocol.supportedCodecs) -> (protocol: WireProtocol, codec: String)? {
        let m = asciiLowercased(method)
        if m == "get" {
            guard let enc = getEncoding else { return nil }
            let codec = asciiLowercased(enc)
            return codecs.contains(codec) ? (.connectUnary, codec) : nil
        }
        guard m == "post", let ct = contentType, let parsed = parse(ct) else { return nil }
        guard codecs.contains(parsed.codec) else { return nil }
        return (parsed.protocol, parsed.codec)
    }

    /// The protocol and codec a content type names, without checking the codec against a supported
    /// list ("application/grpc+foo" → (.grpc, "foo")). Nil when it names none of the four
    /// protocols, when a `charset` parameter is not utf-8, or for an empty codec.
    public static func parse(_ contentType: String) -> (protocol: WireProtocol, codec: String)? {
        // What clients send nearly always, exactly: answered without the general parse's copies.
        switch contentType {
        case "application/proto": return (.connectUnary, "proto")
        case "application/json": return (.connectUnary, "json")
        case "application/grpc", "application/grpc+proto": return (.grpc, "proto")
        case "application/grpc+json": return (.grpc, "json")
        case "application/connect+proto": return (.connectStream, "proto")
        case "application/connect+json": return (.connectStream, "json")
        case "application/grpc-web", "application/grpc-web+proto": return (.grpcWeb, "proto")
        case "application/grpc-web+json": return (.grpcWeb, "json")
        default: break
        }
        let lower = Array(asciiLowercased(contentType).utf8)
        let parts = lower.split(separator: UInt8(ascii: ";"), omittingEmptySubsequences: false)
        guard let first = parts.first else { return nil }
        let main = trimmed(first)
        for param in parts.dropFirst() {
            let p = trimmed(param)
            if p.isEmpty { continue }
            guard let eq = p.firstIndex(of: UInt8(ascii: "=")) else { continue }
            let name = trimmed(p[..<eq])
            var value = trimmed(p[(eq &+ 1)...])
            if value.count >= 2, value.first == UInt8(ascii: "\""), value.last == UInt8(ascii: "\"") {
                value = Array(value.dropFirst().dropLast())
            }
            if name == Array("charset".utf8) && value != Array("utf-8".utf8) { return nil }
        }
        let app = Array("application/".utf8)
        guard main.count > app.count, main.starts(with: app) else { return nil }
        let sub = Array(main[app.count...])

        func suffix(after prefix: String) -> String? {
            let p = Array(prefix.utf8)
            guard sub.starts(with: p) else { return nil }
            return String(decoding: sub[p.count...], as: UTF8.self)
        }
        if let rest = suffix(after: "grpc-web") {
            if rest.isEmpty { return (.grpcWeb, "proto") }
            guard rest.hasPrefix("+"), rest.utf8.count > 1 else { return nil }  // e.g. grpc-web-text
            return (.grpcWeb, String(rest.dropFirst()))
        }
        if let rest = suffix(after: "grpc") {
            if rest.isEmpty { return (.grpc, "proto") }
            guard rest.hasPrefix("+"), rest.utf8.count > 1 else { return nil }
            return (.grpc, String(rest.dropFirst()))
        }
        if let rest = suffix(after: "connect+") {
            return rest.isEmpty ? nil : (.connectStream, rest)
        }
        let codec = String(decoding: sub, as: UTF8.self)
        // "application/connect" alone, or a codec with "+" or "/", is not a unary codec.
        if codec == "connect" || sub.contains(UInt8(ascii: "+")) || sub.contains(UInt8(ascii: "/")) { return nil }
        return (.connectUnary, codec)
    }

    /// The content type to send for `codec`. gRPC proto is the bare `application/grpc` (GEN-17: what
    /// connect-go's client sends; accepted everywhere). gRPC-Web proto is `application/grpc-web+proto`
    /// (connect-go's client). A server should instead echo the request's Content-Type (GEN-16, G-5).
    public func contentType(codec: String) -> String {
        switch self {
        case .connectUnary: return "application/" + codec
        case .connectStream: return "application/connect+" + codec
        case .grpc: return codec == "proto" ? "application/grpc" : "application/grpc+" + codec
        case .grpcWeb: return "application/grpc-web+" + codec
        }
    }

    /// GEN-16, client side, for a 200 response: nil when `contentType` names this protocol and
    /// `codec`; otherwise the error to raise:
    /// * unknown when it does not even look like this protocol (Connect unary: not `application/…`;
    ///   Connect streaming: not `application/connect+…`; gRPC: neither `application/grpc` nor
    ///   `application/grpc+…`; gRPC-Web likewise) — conformance `unexpected-content-type`;
    /// * internal for the right protocol with another codec — conformance `unexpected-codec`.
    /// `json` and `json; charset=utf-8` are the same codec; bare gRPC types mean proto.
    public func validateResponseContentType(_ contentType: String?, codec: String) -> ConnectError? {
        let ct = contentType ?? ""
        let expected = self.contentType(codec: codec)
        let parsed = WireProtocol.parse(ct)
        if let p = parsed, p.protocol == self {
            if p.codec == asciiLowercased(codec) { return nil }
            return ConnectError(.internal, "invalid content-type: \"\(ct)\"; expecting \"\(expected)\"")
        }
        // Right family, but unparseable codec or another protocol of the same family?
        let lower = asciiLowercased(ct)
        let looksRight: Bool
        switch self {
        case .connectUnary: looksRight = lower.hasPrefix("application/")
        case .connectStream: looksRight = lower.hasPrefix("application/connect+")
        case .grpc: looksRight = lower.hasPrefix("application/grpc+") || WireProtocol.mainType(lower) == "application/grpc"
        case .grpcWeb: looksRight = lower.hasPrefix("application/grpc-web+") || WireProtocol.mainType(lower) == "application/grpc-web"
        }
        return ConnectError(looksRight ? .internal : .unknown, "invalid content-type: \"\(ct)\"; expecting \"\(expected)\"")
    }

    static func mainType(_ lower: String) -> String {
        (lower.split(separator: ";", maxSplits: 1, omittingEmptySubsequences: false).first.map { String($0) } ?? "").trimmingASCIISpaces()
    }

    static func trimmed<C: Collection>(_ c: C) -> [UInt8] where C.Element == UInt8 {
        var a = Array(c)
        while let l = a.last, l == 0x20 || l == 0x09 { a.removeLast() }
        var s = 0
        while s < a.count, a[s] == 0x20 || a[s] == 0x09 { s = s &+ 1 }
        return s == 0 ? a : Array(a[s...])
    }
}

/// Server-side protocol detection; see `WireProtocol.detect`.
func detectProtocol(contentType: String?, method: String) -> (protocol: WireProtocol, codec: String)? {
    WireProtocol.detect(contentType: contentType, method: method)
}
