// The environment a host gives a plugin it launches (plugin-wire.md §1.2): the host's own environment
// (unless turned off), go-plugin's variables, then the caller's explicit overrides. Unlike go-plugin,
// where the host's environment silently beats `cmd.Env` (#162), an explicit override always wins.

public struct PluginEnvironment: Sendable, Equatable {
    public static let minPortKey = "PLUGIN_MIN_PORT"
    public static let maxPortKey = "PLUGIN_MAX_PORT"
    public static let clientCertKey = "PLUGIN_CLIENT_CERT"
    public static let multiplexKey = "PLUGIN_MULTIPLEX_GRPC"
    public static let socketDirKey = "PLUGIN_UNIX_SOCKET_DIR"
    public static let socketGroupKey = "PLUGIN_UNIX_SOCKET_GROUP"

    public var handshake: HandshakeConfig
    /// Every app protocol version the host has a plugin set for.
    public var versions: [Int]
    /// The TCP port range offered to the plugin (go-plugin's defaults: 10000 and 25000).
    public var minPort: Int = 10000
    public var maxPort: Int = 25000
    /// AutoMTLS: the PEM of the host's ephemeral certificate.
    public var clientCertPEM: String?
    public var multiplex = false
    public var socketDir: String?
    public var socketGroup: String?

    public init(handshake: HandshakeConfig, versions: [Int]) {
        self.handshake = handshake
        self.versions = versions
    }

    /// go-plugin's variables, in the order go-plugin sets them.
    public var pluginVariables: [(String, String)] {
        var v: [(String, String)] = [
            (handshake.cookieKey, handshake.cookieValue),
            (PluginEnvironment.minPortKey, String(minPort)),
            (PluginEnvironment.maxPortKey, String(maxPort)),
            (VersionNegotiation.environmentKey, VersionNegotiation.hostValue(versions)),
        ]
        if let c = clientCertPEM { v.append((PluginEnvironment.clientCertKey, c)) }
        if multiplex { v.append((PluginEnvironment.multiplexKey, "true")) }
        if let d = socketDir { v.append((PluginEnvironment.socketDirKey, d)) }
        if let g = socketGroup { v.append((PluginEnvironment.socketGroupKey, g)) }
        return v
    }

    /// The child's environment as `KEY=VALUE` strings: `host` (pass nil to give the plugin none of
    /// the host's variables), then go-plugin's, then `overrides`; a later entry replaces an earlier one
    /// with the same key, keeping the first one's position.
    public func build(host: [(String, String)]?, overrides: [(String, String)] = []) -> [String] {
        var order: [String] = []
        var values: [String: String] = [:]
        func put(_ k: String, _ v: String) {
            if values.updateValue(v, forKey: k) == nil { order.append(k) }
        }
        for (k, v) in host ?? [] { put(k, v) }
        for (k, v) in pluginVariables { put(k, v) }
        for (k, v) in overrides { put(k, v) }
        return order.map { "\($0)=\(values[$0] ?? "")" }
    }

    /// Splits `KEY=VALUE` entries (as in `environ`); entries without `=` are dropped.
    public static func pairs(_ entries: [String]) -> [(String, String)] {
        entries.compactMap { e in
            guard let i = e.firstIndex(of: "=") else { return nil }
            return (String(e[..<i]), String(e[e.index(after: i)...]))
        }
    }
}
