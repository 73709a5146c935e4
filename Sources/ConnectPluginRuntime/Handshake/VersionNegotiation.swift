// App protocol version negotiation, exactly as go-plugin's `protocolVersion()` (server.go, identical
// in v1.0.1 and HEAD; plugin-wire.md §1.3): the host sends every version it has in
// `PLUGIN_PROTOCOL_VERSIONS` (comma-separated, any order); the plugin picks the highest version both
// have, and when none is common it answers with the lowest of its own, so that a legacy host that sent
// no list still gets an answer (and a host that does not have it rejects it by name).

public enum VersionNegotiation {
    /// The environment variable the host sets.
    public static let environmentKey = "PLUGIN_PROTOCOL_VERSIONS"

    /// Parses the host's list. Entries that are not integers (go's `strconv.Atoi`: optional sign,
    /// decimal digits, no spaces) are returned in `invalid`, for the plugin to report and skip.
    public static func parseHostVersions(_ value: String?) -> (versions: [Int], invalid: [String]) {
        guard let value, !value.isEmpty else { return ([], []) }
        var versions: [Int] = []
        var invalid: [String] = []
        for part in value.split(separator: ",", omittingEmptySubsequences: false) {
            if let v = Int(part) { versions.append(v) } else { invalid.append(String(part)) }
        }
        return (versions, invalid)
    }

    /// The version a plugin with `pluginVersions` serves to a host that sent `hostVersions`: the
    /// highest common one, else the lowest of the plugin's. Nil only when the plugin has none.
    public static func negotiate(hostVersions: [Int], pluginVersions: [Int]) -> Int? {
        let own = Set(pluginVersions).sorted(by: >)
        let host = Set(hostVersions)
        for v in own where host.contains(v) { return v }
        return own.last
    }

    /// The value a host puts in `PLUGIN_PROTOCOL_VERSIONS` for the versions it has.
    public static func hostValue(_ versions: [Int]) -> String {
        Set(versions).sorted().map(String.init).joined(separator: ",")
    }
}
