// The magic cookie (plugin-wire.md §1.1): an environment variable the host sets so that a plugin can
// tell it was launched by a host and not run by a person. go-plugin calls it "not a security measure,
// just a UX feature"; a plugin run by hand prints a message for the person and exits.

/// The handshake both sides agree on before anything else: the cookie and the app versions.
public struct HandshakeConfig: Sendable, Equatable {
    public var cookieKey: String
    public var cookieValue: String

    public init(cookieKey: String, cookieValue: String) {
        self.cookieKey = cookieKey
        self.cookieValue = cookieValue
    }

    /// The message a plugin prints (on stderr) when it is run directly, as go-plugin does.
    public static let runDirectlyMessage = """
        This binary is a plugin. These are not meant to be executed directly.
        Please execute the program that consumes these plugins, which will
        load any plugins automatically

        """

    /// The exit status of a plugin run directly (the choice: 2, a usage error; go-plugin exits 1).
    public static let runDirectlyExitStatus: Int32 = 2

    public enum CookieCheck: Sendable, Equatable {
        case ok
        /// The configuration itself is wrong (an empty key or value).
        case misconfigured
        /// The variable is not set: a person ran the binary.
        case missing
        /// Set to another value: launched by a host of another application, or an old cookie.
        case mismatch(found: String)
    }

    /// Checks the cookie in `environment` (the plugin side).
    public func check(environment: [String: String]) -> CookieCheck {
        if cookieKey.isEmpty || cookieValue.isEmpty { return .misconfigured }
        guard let v = environment[cookieKey] else { return .missing }
        return v == cookieValue ? .ok : .mismatch(found: v)
    }

    /// What to tell whoever started the plugin when the check fails; nil on `.ok`.
    public func explain(_ result: CookieCheck) -> String? {
        switch result {
        case .ok: return nil
        case .misconfigured:
            return "misconfigured plugin: the magic cookie key and value must both be non-empty"
        case .missing:
            return HandshakeConfig.runDirectlyMessage
        case .mismatch:
            return "the magic cookie \(cookieKey) does not hold this plugin's value: the host that launched it "
                + "expects another plugin (check the host's handshake configuration and the plugin path)"
        }
    }
}
