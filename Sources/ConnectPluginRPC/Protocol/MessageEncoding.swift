// Per-message compression names for the envelope protocols (protocol digest §8): the values of
// `Connect-Content-Encoding` / `grpc-encoding`, and the accept lists `Connect-Accept-Encoding` /
// `grpc-accept-encoding`.
import ConnectPluginHTTP

/// A message encoding connectplugin implements.
public enum MessageEncoding: String, CaseIterable, Sendable {
    case identity
    case gzip

    /// The encoding a header value names: absent, empty or "identity" → `.identity`, "gzip" →
    /// `.gzip` (case-insensitive, surrounding spaces ignored); nil for anything unsupported.
    public init?(name: String?) {
        guard let name else { self = .identity; return }
        let n = asciiLowercased(name.trimmingASCIISpaces())
        switch n {
        case "", "identity": self = .identity
        case "gzip": self = .gzip
        default: return nil
        }
    }

    public var name: String { rawValue }

    /// Every supported name in preference order, for accept headers and error messages
    /// ("gzip,identity"). Never lists an unsupported name (CMP-1).
    public static let acceptHeaderValue: String =
        ConnectProtocol.supportedEncodings.filter { MessageEncoding(name: $0) != nil }.joined(separator: ",")

    /// The encoding a list item names ("gzip", "identity", any case), or nil.
    static func named(_ bytes: UnsafeBufferPointer<UInt8>) -> MessageEncoding? {
        if ConnectProtocol.asciiEqualsIgnoringCase(bytes, "gzip") { return .gzip }
        if ConnectProtocol.asciiEqualsIgnoringCase(bytes, "identity") { return .identity }
        return nil
    }

    /// Server side: the request stream's encoding from `Connect-Content-Encoding` / `grpc-encoding`.
    /// An unsupported name → unimplemented, with the supported list in the message (CS-2, CMP-1).
    /// The response should carry the accept header (`acceptHeaderValue`).
    public static func forRequest(_ header: String?) throws -> MessageEncoding {
        if let e = MessageEncoding(name: header) { return e }
        let shown = header ?? ""
        throw ConnectError(.unimplemented, "unknown compression \"\(shown)\": supported encodings are \(acceptHeaderValue)")
    }

    /// Client side: the response stream's encoding. An unsupported name → internal (CMP-2, CS-10,
    /// G-12 step 2; conformance `unexpected-compression`).
    public static func forResponse(_ header: String?) throws -> MessageEncoding {
        if let e = MessageEncoding(name: header) { return e }
        let shown = header ?? ""
        throw ConnectError(.internal, "unknown compression \"\(shown)\": supported encodings are \(acceptHeaderValue)")
    }

    /// Server side: the encoding for response messages (CU-8 applied to streams, CS-2, CMP-4). The
    /// request's encoding if it was a supported non-identity one; otherwise the first supported entry
    /// of the client's accept list (`Connect-Accept-Encoding` / `grpc-accept-encoding`, in preference
    /// order, q-values ignored); otherwise identity. Never an encoding the client did not list, except
    /// the one it used itself.
    public static func negotiateResponse(request: MessageEncoding, acceptHeader: String?) -> MessageEncoding {
        if request != .identity { return request }
        return ConnectProtocol.firstListItem(acceptHeader) { named($0) } ?? .identity
    }
}
