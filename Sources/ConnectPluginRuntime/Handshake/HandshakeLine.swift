// The go-plugin handshake line (plugin-wire.md §1.4): the one line a plugin prints on stdout once it
// listens, and the host parses to find it:
//
//   CORE|APP|NETWORK|ADDR|PROTOCOL|SERVERCERT[|MUXSUPPORTED]
//   1|1|unix|/tmp/plugin123456|grpc|
//
// Formatting follows go-plugin's server (field 6 always printed, field 7 only when the host asked for
// multiplexing, because v1.0.1 hosts split on at most 6 fields). Parsing follows go-plugin HEAD's host
// (trim, split on every "|", at least 4 fields, a missing field 5 means net/rpc, field 6 used only when
// longer than 50 characters), with errors that say what to change.

/// The network a plugin listens on.
public enum PluginNetwork: String, Sendable, Equatable {
    case unix
    case tcp
}

/// One parsed or to-be-printed handshake line.
public struct HandshakeLine: Sendable, Equatable {
    /// The plugin system's own version: go-plugin's `CoreProtocolVersion`.
    public static let coreProtocolVersion = 1

    public var coreVersion: Int
    /// The negotiated application protocol version.
    public var appVersion: Int
    public var network: PluginNetwork
    /// A socket path, or `127.0.0.1:PORT`.
    public var address: String
    /// `grpc` (the only one connectplugin speaks; go-plugin's other is `netrpc`).
    public var rpcProtocol: String
    /// The plugin's server certificate for AutoMTLS: base64 (standard alphabet, no padding) of the
    /// DER, or "" without TLS.
    public var serverCert: String
    /// Field 7: whether the plugin supports the broker multiplexed over the main connection; nil
    /// when the field is absent (printed only when the host set `PLUGIN_MULTIPLEX_GRPC`).
    public var multiplexSupported: Bool?

    public init(coreVersion: Int = HandshakeLine.coreProtocolVersion, appVersion: Int, network: PluginNetwork,
                address: String, rpcProtocol: String = "grpc", serverCert: String = "", multiplexSupported: Bool? = nil) {
        self.coreVersion = coreVersion
        self.appVersion = appVersion
        self.network = network
        self.address = address
        self.rpcProtocol = rpcProtocol
        self.serverCert = serverCert
        self.multiplexSupported = multiplexSupported
    }

    /// The line as a plugin prints it, without the newline.
    public var formatted: String {
        var s = "\(coreVersion)|\(appVersion)|\(network.rawValue)|\(address)|\(rpcProtocol)|\(serverCert)"
        if let m = multiplexSupported { s += m ? "|true" : "|false" }
        return s
    }

    /// Parses a line the way a go-plugin HEAD host does, and checks the core version and that the
    /// protocol is gRPC. Version and certificate checks against the host's configuration are the
    /// host's (`HandshakeCheck`).
    public static func parse(_ raw: String) -> Result<HandshakeLine, HandshakeError> {
        let line = trimmed(raw)
        let parts = line.split(separator: "|", omittingEmptySubsequences: false).map(String.init)
        if parts.count < 4 {
            return .failure(.unrecognized(line: preview(line)))
        }
        guard let core = Int(parts[0]) else { return .failure(.unrecognized(line: preview(line))) }
        if core != coreProtocolVersion { return .failure(.incompatibleCore(plugin: parts[0])) }
        guard let app = Int(parts[1]) else {
            return .failure(.unrecognized(line: preview(line)))
        }
        guard let network = PluginNetwork(rawValue: parts[2]) else {
            return .failure(.unknownNetwork(parts[2]))
        }
        if parts[3].isEmpty { return .failure(.unrecognized(line: preview(line))) }
        let proto = parts.count > 4 ? parts[4] : "netrpc"
        if proto != "grpc" { return .failure(.unsupportedProtocol(proto)) }
        // go-plugin ignores a field 6 of 50 characters or less: junk "extra" data of old plugins.
        let cert = parts.count > 5 && parts[5].utf8.count > 50 ? parts[5] : ""
        var mux: Bool?
        if parts.count > 6 {
            switch parts[6] {
            case "true", "1", "t", "T", "TRUE", "True": mux = true
            case "false", "0", "f", "F", "FALSE", "False": mux = false
            default: mux = nil  // go-plugin reads field 7 only when it asked for multiplexing
            }
        }
        return .success(HandshakeLine(coreVersion: core, appVersion: app, network: network, address: parts[3],
                                      rpcProtocol: proto, serverCert: cert, multiplexSupported: mux))
    }

    static func trimmed(_ s: String) -> String {
        let u = Array(s.utf8)
        var lo = 0
        var hi = u.count
        func isSpace(_ c: UInt8) -> Bool { c == 0x20 || c == 0x09 || c == 0x0A || c == 0x0D || c == 0x0B || c == 0x0C }
        while lo < hi && isSpace(u[lo]) { lo += 1 }
        while hi > lo && isSpace(u[hi - 1]) { hi -= 1 }
        return String(decoding: u[lo..<hi], as: UTF8.self)
    }

    /// At most 120 bytes of a line, with control characters shown as `\xNN`, for error messages.
    static func preview(_ s: String) -> String {
        var out = ""
        var n = 0
        for b in s.utf8 {
            if n >= 120 {
                out += "…"
                break
            }
            if b < 0x20 || b == 0x7F {
                let hex = Array("0123456789abcdef")
                out += "\\x" + String(hex[Int(b >> 4)]) + String(hex[Int(b & 0x0F)])
            } else {
                out.unicodeScalars.append(Unicode.Scalar(b))
            }
            n += 1
        }
        return out
    }
}

/// Why a handshake failed. Every description says what to change.
public enum HandshakeError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The line is not a handshake line (often: the plugin printed something else to stdout first).
    case unrecognized(line: String)
    case incompatibleCore(plugin: String)
    case unknownNetwork(String)
    case unsupportedProtocol(String)
    /// The plugin negotiated an app version the host does not have.
    case incompatibleVersion(plugin: Int, host: [Int])
    /// The host asked for the multiplexed broker and the plugin does not support it.
    case multiplexNotSupported

    public var description: String {
        switch self {
        case .unrecognized(let line):
            return "unrecognized handshake line from the plugin: \"\(line)\"; a plugin must print "
                + "CORE|APP|NETWORK|ADDR|grpc|CERT (e.g. 1|1|unix|/tmp/plugin1|grpc|) as its first line on stdout, "
                + "and write its logs to stderr"
        case .incompatibleCore(let v):
            return "the plugin speaks core handshake version \(v), this host speaks \(HandshakeLine.coreProtocolVersion); "
                + "rebuild the plugin with a go-plugin compatible library"
        case .unknownNetwork(let n):
            return "the plugin listens on unknown network \"\(n)\"; it must be unix or tcp"
        case .unsupportedProtocol(let p):
            if p == "netrpc" {
                return "the plugin speaks go-plugin's net/rpc protocol, which connectplugin does not support; "
                    + "serve it over gRPC (in Go: ServeConfig.GRPCServer = plugin.DefaultGRPCServer and GRPCPlugin implementations)"
            }
            return "the plugin speaks RPC protocol \"\(p)\"; connectplugin hosts speak grpc"
        case .incompatibleVersion(let plugin, let host):
            return "incompatible API version with plugin: the plugin chose version \(plugin), this host supports "
                + "\(host.sorted()); give the plugin a plugin set for one of the host's versions, or the host one for \(plugin)"
        case .multiplexNotSupported:
            return "the host asked for the gRPC broker multiplexed over the main connection (PLUGIN_MULTIPLEX_GRPC) "
                + "and the plugin does not support it; turn multiplexing off on the host"
        }
    }
}
