// One TLS connection over memory BIOs: ciphertext in and out as bytes, plaintext in and out as bytes,
// no sockets. SocketConnection drives it; failures become HTTPErrors that name the cause in plain words.
import CConnectPluginOpenSSL
import Glibc

/// Who the peer proved to be (from its certificate).
public struct TLSPeerIdentity: Sendable, Equatable {
    /// The subject distinguished name, RFC 2253 (e.g. "CN=client,O=Example").
    public var subject: String
    /// The subject's common name, if any.
    public var commonName: String?
    public var dnsNames: [String]
    public var uris: [String]
    public var ipAddresses: [String]
    public var emailAddresses: [String]
    /// True when the certificate was verified against the configured trust (false when verification
    /// is off: `insecureSkipVerify`, or a server that does not ask for client certificates).
    public var verified: Bool

    public init(subject: String, commonName: String?, dnsNames: [String], uris: [String], ipAddresses: [String],
                emailAddresses: [String], verified: Bool) {
        self.subject = subject
        self.commonName = commonName
        self.dnsNames = dnsNames
        self.uris = uris
        self.ipAddresses = ipAddresses
        self.emailAddresses = emailAddresses
        self.verified = verified
    }

    /// Decodes cp_tls_peer_cert_info's packed entries ([type][2-byte length][bytes]...).
    static func decode(_ bytes: UnsafeRawBufferPointer, verified: Bool) -> TLSPeerIdentity {
        var id = TLSPeerIdentity(subject: "", commonName: nil, dnsNames: [], uris: [], ipAddresses: [],
                                 emailAddresses: [], verified: verified)
        var i = 0
        while i + 3 <= bytes.count {
            let type = bytes[i]
            let len = Int(bytes[i + 1]) << 8 | Int(bytes[i + 2])
            let start = i + 3
            if len > bytes.count - start { break }
            let value = String(decoding: UnsafeRawBufferPointer(rebasing: bytes[start..<(start + len)]), as: UTF8.self)
            switch type {
            case UInt8(ascii: "S"): id.subject = value
            case UInt8(ascii: "C"): id.commonName = value
            case UInt8(ascii: "D"): id.dnsNames.append(value)
            case UInt8(ascii: "U"): id.uris.append(value)
            case UInt8(ascii: "I"): id.ipAddresses.append(value)
            case UInt8(ascii: "E"): id.emailAddresses.append(value)
            default: break
            }
            i = start + len
        }
        return id
    }
}

/// One TLS session (an SSL object with a memory BIO for each direction). Loop thread only.
public final class TLSEngine {
    public let context: TLSContext
    public var isServer: Bool { context.isServer }
    /// Client: the name sent as SNI and verified against the certificate (nil: none).
    public let peerName: String?
    private let tls: OpaquePointer
    /// Plaintext out of SSL_read; valid until the next read.
    private let plainBuffer: UnsafeMutableRawBufferPointer
    private static let plainBufferSize = 16 * 1024
    private var sawInput = false
    /// Set when the first bytes were plainly not TLS; the reply to send before closing (plaintext).
    private(set) var plaintextReply: [UInt8]?
    private var cachedIdentity: TLSPeerIdentity??

    /// The kind of every handshake/verification/record failure (`connectionClosed`, `onConnect`).
    public static let errorKind: HTTPError.Kind = .tls

    /// A server engine (`context.isServer`), or a client engine that verifies the server against
    /// `serverName` (`TLSConfig.serverName` wins over it). IP literals are verified as addresses and
    /// not sent as SNI. `alpn` replaces the context's ALPN list for this connection (nil: keep it;
    /// []: none). Throws when a verifying client has no name to verify against.
    public init(context: TLSContext, serverName: String? = nil, alpn: [String]? = nil) throws {
        self.context = context
        var name: String? = nil
        if !context.isServer {
            name = context.config.serverName ?? serverName
            if var n = name, n.hasPrefix("["), n.hasSuffix("]"), n.count >= 2 {
                n.removeFirst()
                n.removeLast()
                name = n
            }
            if name?.isEmpty == true { name = nil }
            if name == nil && context.verifiesPeer {
                throw HTTPError(.invalidArgument,
                                "a TLS client needs a server name to verify the certificate against (set TLSConfig.serverName)")
            }
        }
        peerName = name
        guard let t = cp_tls_new(context.ctx, context.isServer ? 1 : 0) else {
            throw HTTPError(.resource, "cannot create a TLS session (out of memory)")
        }
        if let name {
            let isIP = TLSEngine.isIPLiteral(name)
            let ok = cp_tls_set_peer_name(t, name, isIP ? 1 : 0, 1, context.verifiesPeer ? 1 : 0)
            if ok != 1 {
                cp_tls_free(t)
                throw HTTPError(.invalidArgument, "invalid TLS server name \"\(name)\"")
            }
        }
        if let alpn {
            let wire: [UInt8]
            do { wire = try TLSConfig.alpnWire(alpn) } catch {
                cp_tls_free(t)
                throw error
            }
            let ok = wire.withUnsafeBufferPointer { b in cp_tls_set_alpn(t, b.baseAddress, UInt32(truncatingIfNeeded: b.count)) }
            if ok != 1 {
                cp_tls_free(t)
                throw HTTPError(.resource, "cannot set the ALPN protocols")
            }
        }
        tls = t
        plainBuffer = UnsafeMutableRawBufferPointer.allocate(byteCount: TLSEngine.plainBufferSize, alignment: 16)
    }

    /// The same, with the role spelled out (it must match the context's).
    public convenience init(context: TLSContext, isServer: Bool, serverName: String? = nil, alpn: [String]? = nil) throws {
        if isServer != context.isServer {
            throw HTTPError(.invalidArgument, "a TLS \(isServer ? "server" : "client") engine needs a "
                + "\(isServer ? "server" : "client") TLSContext")
        }
        try self.init(context: context, serverName: serverName, alpn: alpn)
    }

    deinit {
        cp_tls_free(tls)
        plainBuffer.deallocate()
    }

    static func isIPLiteral(_ s: String) -> Bool {
        var a4 = in_addr()
        var a6 = in6_addr()
        return inet_pton(AF_INET, s, &a4) == 1 || inet_pton(AF_INET6, s, &a6) == 1
    }

    // MARK: Data path

    /// Takes ciphertext from the network. Returns an error when the very first bytes cannot be TLS
    /// (plaintext HTTP, garbage) or memory ran out.
    public func feed(_ bytes: UnsafeRawBufferPointer) -> HTTPError? {
        if bytes.isEmpty { return nil }
        if !sawInput {
            sawInput = true
            if let err = checkFirstBytes(bytes) { return err }
        }
        guard let base = bytes.baseAddress else { return nil }
        if cp_tls_feed(tls, base, bytes.count) != 1 {
            return HTTPError(.resource, "TLS: out of memory")
        }
        return nil
    }

    /// A TLS record starts with its content type: 0x16 (handshake) or 0x15 (alert), then version 3.x.
    private func checkFirstBytes(_ bytes: UnsafeRawBufferPointer) -> HTTPError? {
        let first = bytes[0]
        let versionOK = bytes.count < 2 || bytes[1] == 0x03
        if (first == 0x16 || (!isServer && first == 0x15)) && versionOK { return nil }
        let prefix = Array(bytes.prefix(16))
        let text = String(decoding: prefix.map { ($0 >= 0x20 && $0 < 0x7f) ? $0 : UInt8(ascii: ".") }, as: UTF8.self)
        if TLSEngine.looksLikeHTTP(prefix) {
            if isServer {
                plaintextReply = Array(("HTTP/1.0 400 Bad Request\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n"
                    + "Client sent an HTTP request to an HTTPS server.\n").utf8)
                return HTTPError(TLSEngine.errorKind, "TLS handshake failed: not a TLS handshake: the client sent plaintext HTTP (\"\(text)\")")
            }
            return HTTPError(TLSEngine.errorKind, "TLS handshake failed: not a TLS handshake: the server replied with plaintext HTTP "
                + "(\"\(text)\"); is it serving TLS on this port?")
        }
        let hex = prefix.prefix(8).map { b -> String in
            let digits = Array("0123456789abcdef".utf8)
            return String(decoding: [digits[Int(b >> 4)], digits[Int(b & 0xf)]], as: UTF8.self)
        }.joined(separator: " ")
        return HTTPError(TLSEngine.errorKind, "TLS handshake failed: not a TLS handshake: unexpected first bytes \(hex) "
            + "(expected a TLS \(isServer ? "ClientHello" : "ServerHello"))")
    }

    private static func looksLikeHTTP(_ p: [UInt8]) -> Bool {
        let s = String(decoding: p, as: UTF8.self)
        for m in ["GET ", "POST ", "PUT ", "HEAD ", "DELETE ", "OPTIONS ", "PATCH ", "CONNECT ", "TRACE ", "PRI * HTTP/2", "HTTP/"] {
            if s.hasPrefix(m) || (s.count < m.count && m.hasPrefix(s) && !s.isEmpty) { return true }
        }
        return false
    }

    public enum HandshakeStatus {
        case inProgress
        case complete
        case failed(HTTPError)
    }

    /// Advances the handshake with the input fed so far. Send `takeOutput` afterwards in every case
    /// (on failure it holds the alert for the peer).
    public func advanceHandshake() -> HandshakeStatus {
        switch cp_tls_handshake(tls) {
        case CP_TLS_OK: return .complete
        case CP_TLS_WANT_IO: return .inProgress
        default: return .failed(failureError(duringHandshake: true))
        }
    }

    public var isHandshakeComplete: Bool { cp_tls_handshake_done(tls) == 1 }

    public enum ReadStatus {
        /// Plaintext, valid until the next call.
        case data(UnsafeRawBufferPointer)
        /// Everything fed so far was consumed.
        case wantInput
        /// The peer sent close_notify.
        case closed
        case failed(HTTPError)
    }

    /// Decrypts the next piece of plaintext.
    public func readPlaintext() -> ReadStatus {
        guard let base = plainBuffer.baseAddress else { return .failed(HTTPError(.resource, "TLS: no buffer")) }
        let n = cp_tls_read(tls, base, Int32(plainBuffer.count))
        if n > 0 { return .data(UnsafeRawBufferPointer(start: base, count: Int(n))) }
        switch n {
        case CP_TLS_WANT_IO: return .wantInput
        case CP_TLS_CLOSED: return .closed
        default: return .failed(failureError(duringHandshake: !isHandshakeComplete))
        }
    }

    /// Encrypts all of `bytes` into the pending output. Returns an error on failure.
    public func writePlaintext(_ bytes: UnsafeRawBufferPointer) -> HTTPError? {
        guard let base = bytes.baseAddress, !bytes.isEmpty else { return nil }
        var offset = 0
        while offset < bytes.count {
            let n = min(bytes.count - offset, 1 << 30)
            if cp_tls_write(tls, base + offset, Int32(n)) < 0 { return failureError(duringHandshake: false) }
            offset += n
        }
        return nil
    }

    /// Queues close_notify (after the handshake; otherwise nothing).
    public func queueCloseNotify() { cp_tls_shutdown(tls) }

    /// Ciphertext waiting to be sent.
    public var pendingOutputBytes: Int { cp_tls_output_pending(tls) }

    /// Ciphertext received but not yet processed.
    public var bufferedInputBytes: Int { cp_tls_input_pending(tls) }

    /// Appends all pending ciphertext to `out`.
    public func takeOutput(appendingTo out: inout [UInt8]) {
        while true {
            let pending = cp_tls_output_pending(tls)
            if pending == 0 { return }
            let start = out.count
            out.append(contentsOf: repeatElement(0, count: pending))
            let got = out.withUnsafeMutableBytes { buf -> Int in
                guard let base = buf.baseAddress else { return 0 }
                return cp_tls_take_output(tls, base + start, pending)
            }
            if got < pending { out.removeLast(pending - got) }
            if got == 0 { return }
        }
    }

    // MARK: Session facts

    /// The ALPN protocol agreed on, or nil (none offered, or no overlap).
    public var negotiatedALPN: String? {
        var len: UInt32 = 0
        guard let p = cp_tls_alpn(tls, &len), len > 0 else { return nil }
        return String(decoding: UnsafeBufferPointer(start: p, count: Int(len)), as: UTF8.self)
    }

    /// "TLSv1.3", "TLSv1.2" (after the handshake).
    public var protocolVersion: String? {
        guard isHandshakeComplete, let v = cp_tls_version(tls) else { return nil }
        return String(cString: v)
    }

    /// Server: the SNI name the client asked for.
    public var requestedServerName: String? {
        guard isServer, let s = cp_tls_sni(tls) else { return nil }
        return String(cString: s)
    }

    /// The peer certificate's identity (nil when the peer presented none). After the handshake.
    public var peerIdentity: TLSPeerIdentity? {
        if let c = cachedIdentity { return c }
        guard isHandshakeComplete, cp_tls_has_peer_cert(tls) == 1 else { return nil }
        let verified = context.verifiesPeer && cp_tls_verify_result(tls) == 0
        let id = certificateInfo(verified: verified)
        cachedIdentity = .some(id)
        return id
    }

    private func certificateInfo(verified: Bool) -> TLSPeerIdentity? {
        var len = 0
        guard let p = cp_tls_peer_cert_info(tls, &len) else { return nil }
        defer { cp_tls_free_buffer(p) }
        return TLSPeerIdentity.decode(UnsafeRawBufferPointer(start: p, count: len), verified: verified)
    }

    // MARK: Errors in plain words

    private func failureError(duringHandshake: Bool) -> HTTPError {
        let sslCode = cp_tls_error_ssl_code(tls)
        let lib = cp_tls_error_lib(tls)
        let reason = cp_tls_error_reason(tls)
        var buf = [CChar](repeating: 0, count: 512)
        cp_tls_error_text(tls, &buf, buf.count)
        let text = cString(buf)
        let prefix = duringHandshake ? "TLS handshake failed: " : "TLS error: "
        let verify = cp_tls_verify_result(tls)
        let isSSLLib = lib == ERR_LIB_SSL
        if isSSLLib && reason == SSL_R_CERTIFICATE_VERIFY_FAILED {
            let whose = isServer ? "client" : "server"
            return HTTPError(TLSEngine.errorKind, prefix + "cannot verify the \(whose) certificate: " + verifyMessage(verify))
        }
        if isSSLLib && reason >= SSL_AD_REASON_OFFSET && reason < SSL_AD_REASON_OFFSET + 256 {
            return HTTPError(TLSEngine.errorKind, prefix + alertMessage(Int32(reason - SSL_AD_REASON_OFFSET)))
        }
        if isSSLLib {
            switch reason {
            case SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE:
                return HTTPError(TLSEngine.errorKind, prefix + "the client did not present a certificate (this server requires one)")
            case SSL_R_HTTP_REQUEST, SSL_R_HTTPS_PROXY_REQUEST:
                return HTTPError(TLSEngine.errorKind, prefix + "not a TLS handshake: the peer sent plaintext HTTP")
            case SSL_R_WRONG_VERSION_NUMBER, SSL_R_UNKNOWN_PROTOCOL, SSL_R_PACKET_LENGTH_TOO_LONG,
                 SSL_R_RECORD_LENGTH_MISMATCH, SSL_R_UNEXPECTED_RECORD:
                if duringHandshake { return HTTPError(TLSEngine.errorKind, prefix + "not a TLS handshake (\(text))") }
                return HTTPError(TLSEngine.errorKind, prefix + "corrupt TLS record (\(text))")
            case SSL_R_UNEXPECTED_MESSAGE where duringHandshake:
                return HTTPError(TLSEngine.errorKind, prefix + "invalid TLS handshake (unexpected message)")
            case SSL_R_NO_SHARED_CIPHER, SSL_R_UNSUPPORTED_PROTOCOL, SSL_R_VERSION_TOO_LOW, SSL_R_NO_PROTOCOLS_AVAILABLE:
                return HTTPError(TLSEngine.errorKind, prefix + "no common TLS version or cipher (\(text))")
            case SSL_R_UNEXPECTED_EOF_WHILE_READING:
                return HTTPError(TLSEngine.errorKind, prefix + "the peer closed the connection in the middle of a TLS record")
            default: break
            }
        }
        if !text.isEmpty { return HTTPError(TLSEngine.errorKind, prefix + text) }
        if sslCode == SSL_ERROR_SYSCALL { return HTTPError(TLSEngine.errorKind, prefix + "unexpected end of the TLS stream") }
        return HTTPError(TLSEngine.errorKind, prefix + "TLS failure (SSL_get_error \(sslCode))")
    }

    private func verifyMessage(_ code: Int) -> String {
        let base = cp_tls_verify_error_string(code).map { String(cString: $0) } ?? "verification error \(code)"
        switch Int32(truncatingIfNeeded: code) {
        case X509_V_ERR_HOSTNAME_MISMATCH, X509_V_ERR_IP_ADDRESS_MISMATCH:
            let what = code == Int(X509_V_ERR_IP_ADDRESS_MISMATCH) ? "IP address mismatch" : "hostname mismatch"
            return "\(what): certificate is for \(certificateNames()), not \(peerName ?? "the requested name")"
        case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY, X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT,
             X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT, X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN,
             X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
            return "\(base) (unknown CA)"
        default:
            return base
        }
    }

    /// The names the peer certificate is for: SAN DNS names and IPs, else the common name.
    private func certificateNames() -> String {
        guard let id = certificateInfo(verified: false) else { return "an unknown name" }
        let names = id.dnsNames + id.ipAddresses
        if !names.isEmpty { return names.joined(separator: ", ") }
        if let cn = id.commonName { return cn }
        return id.subject.isEmpty ? "an unknown name" : id.subject
    }

    private func alertMessage(_ alert: Int32) -> String {
        // OpenSSL 3.0 names no TLS 1.3 alerts ("unknown"): name the ones a peer sends here ourselves.
        let own: [Int32: String] = [109: "missing extension", 116: "certificate required", 120: "no application protocol"]
        var desc = cp_tls_alert_string(alert).map { String(cString: $0) } ?? "unknown"
        if desc == "unknown" { desc = own[alert] ?? "alert \(alert)" }
        switch alert {
        case 116: // certificate_required
            return "the server requires a client certificate (alert: \(desc))"
        case 48: // unknown_ca
            return "the peer does not trust our certificate (alert: \(desc))"
        case 45: // certificate_expired
            return "the peer rejected our certificate as expired (alert: \(desc))"
        case 42, 43, 44, 46: // bad, unsupported, revoked, unknown certificate
            return "the peer rejected our certificate (alert: \(desc))"
        case 120: // no_application_protocol
            return "no common application protocol (ALPN) (alert: \(desc))"
        case 70, 71: // protocol_version, insufficient_security
            return "no common TLS version or cipher (alert: \(desc))"
        case 40: // handshake_failure
            return "the peer aborted the handshake (alert: \(desc))"
        default:
            return "the peer sent a TLS alert: \(desc)"
        }
    }
}
