// TLS configuration and the OpenSSL context built from it once (shared by every connection of a
// server or client). Loading failures name the file and OpenSSL's reason in plain words.
import CConnectPluginOpenSSL

/// How a server or client does TLS.
///
/// Server: `certificateChain` and `privateKey` are required. With `trustedCAs`, client certificates
/// are requested and, when presented, verified against those CAs; `requireClientCert` also rejects
/// clients that present none (mutual TLS).
///
/// Client: the server certificate is verified against `trustedCAs` and/or the system trust store, and
/// its name against `serverName` (or the host the caller connects to). `certificateChain` and
/// `privateKey` are the client certificate for mutual TLS.
public struct TLSConfig: Sendable {
    /// PEM text from a file or from memory.
    public enum PEMSource: Sendable, Equatable {
        case file(String)
        case pem([UInt8])

        /// PEM text given as a string.
        public static func pem(_ text: String) -> PEMSource { .pem(Array(text.utf8)) }

        var label: String {
            switch self {
            case .file(let path): return path
            case .pem: return "from PEM data"
            }
        }
    }

    /// Leaf certificate first, then intermediates.
    public var certificateChain: PEMSource?
    public var privateKey: PEMSource?
    /// CA certificates to trust (servers: for client certificates; clients: for the server's).
    public var trustedCAs: PEMSource?
    /// Whether to trust the system's CA store (`SSL_CTX_set_default_verify_paths`). nil: clients use it
    /// when `trustedCAs` is nil; servers never do.
    public var useSystemTrustStore: Bool?
    /// Server: reject clients without a valid certificate signed by `trustedCAs`.
    public var requireClientCert: Bool
    /// Client: the name sent as SNI and checked against the server certificate, instead of the host
    /// the caller connects to.
    public var serverName: String?
    /// Client: accept any server certificate and name. For tests only: it removes all protection
    /// against a man in the middle.
    public var insecureSkipVerify: Bool
    /// ALPN protocols in preference order. A server picks its first protocol the client offered and
    /// negotiates none when there is no overlap; an empty list disables ALPN.
    public var alpnProtocols: [String]

    public init(certificateChain: PEMSource? = nil, privateKey: PEMSource? = nil, trustedCAs: PEMSource? = nil,
                useSystemTrustStore: Bool? = nil, requireClientCert: Bool = false, serverName: String? = nil,
                insecureSkipVerify: Bool = false, alpnProtocols: [String] = ["h2", "http/1.1"]) {
        self.certificateChain = certificateChain
        self.privateKey = privateKey
        self.trustedCAs = trustedCAs
        self.useSystemTrustStore = useSystemTrustStore
        self.requireClientCert = requireClientCert
        self.serverName = serverName
        self.insecureSkipVerify = insecureSkipVerify
        self.alpnProtocols = alpnProtocols
    }

    /// A server configuration; `clientCAs` with `requireClientCert` for mutual TLS.
    public static func server(certificateChain: PEMSource, privateKey: PEMSource, clientCAs: PEMSource? = nil,
                              requireClientCert: Bool = false,
                              alpnProtocols: [String] = ["h2", "http/1.1"]) -> TLSConfig {
        TLSConfig(certificateChain: certificateChain, privateKey: privateKey, trustedCAs: clientCAs,
                  requireClientCert: requireClientCert, alpnProtocols: alpnProtocols)
    }

    /// A client configuration; `certificateChain`/`privateKey` for mutual TLS.
    public static func client(trustedCAs: PEMSource? = nil, certificateChain: PEMSource? = nil,
                              privateKey: PEMSource? = nil, serverName: String? = nil,
                              alpnProtocols: [String] = ["h2", "http/1.1"]) -> TLSConfig {
        TLSConfig(certificateChain: certificateChain, privateKey: privateKey, trustedCAs: trustedCAs,
                  serverName: serverName, alpnProtocols: alpnProtocols)
    }

    /// The ALPN list in wire format (each name prefixed by its length).
    func alpnWire() throws -> [UInt8] { try TLSConfig.alpnWire(alpnProtocols) }

    static func alpnWire(_ protocols: [String]) throws -> [UInt8] {
        var wire: [UInt8] = []
        for p in protocols {
            let b = Array(p.utf8)
            if b.isEmpty || b.count > 255 {
                throw HTTPError(.invalidArgument, "invalid ALPN protocol name \"\(p)\" (must be 1 to 255 bytes)")
            }
            wire.append(UInt8(truncatingIfNeeded: b.count))
            wire.append(contentsOf: b)
        }
        return wire
    }
}

/// An OpenSSL context (SSL_CTX) built once from a TLSConfig. Thread-safe once built: connections on
/// any loop create their TLSEngine from it.
public final class TLSContext: @unchecked Sendable {
    let ctx: OpaquePointer
    public let config: TLSConfig
    public let isServer: Bool
    /// True when peer certificates are verified (so a present peer certificate is a verified one).
    public let verifiesPeer: Bool

    /// Builds the context. Throws an HTTPError naming the file and the reason for any failure, e.g.
    /// "cannot load certificate /x/y.pem: No such file or directory".
    public init(config: TLSConfig, isServer: Bool) throws {
        self.config = config
        self.isServer = isServer
        guard let c = cp_tls_ctx_new(isServer ? 1 : 0) else {
            throw HTTPError(.resource, "cannot create a TLS context (out of memory)")
        }
        ctx = c
        var verifies = false
        do {
            verifies = try TLSContext.configure(c, config, isServer)
        } catch {
            cp_tls_ctx_free(c)
            throw error
        }
        verifiesPeer = verifies
    }

    deinit { cp_tls_ctx_free(ctx) }

    /// Applies `config` to `ctx`; returns whether peers are verified.
    private static func configure(_ ctx: OpaquePointer, _ config: TLSConfig, _ isServer: Bool) throws -> Bool {
        if isServer && (config.certificateChain == nil || config.privateKey == nil) {
            throw HTTPError(.invalidArgument, "a TLS server needs a certificate chain and a private key")
        }
        if (config.certificateChain == nil) != (config.privateKey == nil) {
            throw HTTPError(.invalidArgument, config.certificateChain == nil
                ? "a private key was given without a certificate chain"
                : "a certificate chain was given without a private key")
        }
        if isServer && config.requireClientCert && config.trustedCAs == nil && config.useSystemTrustStore != true {
            throw HTTPError(.invalidArgument, "requireClientCert needs trustedCAs to verify client certificates against")
        }
        if let chain = config.certificateChain, let key = config.privateKey {
            try load(chain, what: "certificate") { p, d, n, e, el in cp_tls_ctx_use_chain(ctx, p, d, n, e, el) }
            do {
                try load(key, what: "private key") { p, d, n, e, el in cp_tls_ctx_use_key(ctx, p, d, n, e, el) }
            } catch let e as HTTPError where e.message.hasSuffix("private key does not match certificate") {
                throw HTTPError(.invalidArgument,
                                "cannot load private key \(key.label): private key does not match certificate \(chain.label)")
            }
            var err = [CChar](repeating: 0, count: 512)
            if cp_tls_ctx_check_key(ctx, &err, err.count) != 1 {
                throw HTTPError(.invalidArgument,
                                "cannot load private key \(key.label): private key does not match certificate \(chain.label)")
            }
        }
        if let cas = config.trustedCAs {
            let advertise: Int32 = isServer ? 1 : 0
            try load(cas, what: "CA certificates") { p, d, n, e, el in cp_tls_ctx_add_cas(ctx, p, d, n, advertise, e, el) }
        }
        let system = config.useSystemTrustStore ?? (!isServer && config.trustedCAs == nil)
        if system {
            var err = [CChar](repeating: 0, count: 512)
            if cp_tls_ctx_use_system_roots(ctx, &err, err.count) != 1 {
                throw HTTPError(.invalidArgument, "cannot load the system trust store: \(cString(err))")
            }
        }
        let verifies: Bool
        if isServer {
            if config.requireClientCert {
                cp_tls_ctx_set_verify(ctx, CP_TLS_VERIFY_REQUIRE_PEER_CERT)
                verifies = true
            } else if config.trustedCAs != nil || config.useSystemTrustStore == true {
                cp_tls_ctx_set_verify(ctx, CP_TLS_VERIFY_PEER)
                verifies = true
            } else {
                cp_tls_ctx_set_verify(ctx, CP_TLS_VERIFY_NONE)
                verifies = false
            }
        } else {
            verifies = !config.insecureSkipVerify
            cp_tls_ctx_set_verify(ctx, verifies ? CP_TLS_VERIFY_PEER : CP_TLS_VERIFY_NONE)
        }
        let wire = try config.alpnWire()
        if !wire.isEmpty {
            let ok = wire.withUnsafeBufferPointer { b in
                cp_tls_ctx_set_alpn(ctx, isServer ? 1 : 0, b.baseAddress, UInt32(truncatingIfNeeded: b.count))
            }
            if ok != 1 { throw HTTPError(.resource, "cannot set the ALPN protocols") }
        }
        return verifies
    }

    private typealias Loader = (UnsafePointer<CChar>?, UnsafeRawPointer?, Int, UnsafeMutablePointer<CChar>, Int) -> Int32

    private static func load(_ source: TLSConfig.PEMSource, what: String, _ body: Loader) throws {
        var err = [CChar](repeating: 0, count: 512)
        let errCount = err.count
        let ok: Int32 = err.withUnsafeMutableBufferPointer { eb -> Int32 in
            guard let ep = eb.baseAddress else { return 0 }
            switch source {
            case .file(let path):
                return path.withCString { p in body(p, nil, 0, ep, errCount) }
            case .pem(let bytes):
                return bytes.withUnsafeBytes { b in body(nil, b.baseAddress, b.count, ep, errCount) }
            }
        }
        if ok != 1 {
            throw HTTPError(.invalidArgument, "cannot load \(what) \(source.label): \(cString(err))")
        }
    }
}

/// A String from a NUL-terminated (or full) CChar buffer, without trusting the terminator.
func cString(_ buf: [CChar]) -> String {
    let end = buf.firstIndex(of: 0) ?? buf.count
    return String(decoding: buf[0..<end].map { UInt8(bitPattern: $0) }, as: UTF8.self)
}
