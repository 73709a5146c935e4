// AutoMTLS (plugin-wire.md §1.5): the self-signed certificates go-plugin's mtls.go makes (generated
// by the OpenSSL shim), the TLS configurations both sides build from them, and the encodings the
// handshake uses (PEM in PLUGIN_CLIENT_CERT, base64 raw-std DER in handshake field 6; the base64 is
// ConnectPluginRPC's).
import CConnectPluginOpenSSL
import ConnectPluginHTTP
import ConnectPluginRPC

/// A certificate and its key, as AutoMTLS makes them.
public struct AutoMTLSCertificate: Sendable {
    /// PEM "CERTIFICATE".
    public let certificatePEM: [UInt8]
    /// PEM "EC PRIVATE KEY".
    public let privateKeyPEM: [UInt8]
    public let certificateDER: [UInt8]

    /// A fresh certificate: ECDSA P-521, self-signed CA, CN=localhost, O=HashiCorp, DNS localhost,
    /// client and server auth, valid from 30 s ago for ~30 years.
    public static func generate() throws -> AutoMTLSCertificate {
        var cp: UnsafeMutablePointer<UInt8>? = nil, kp: UnsafeMutablePointer<UInt8>? = nil, dp: UnsafeMutablePointer<UInt8>? = nil
        var cl = 0, kl = 0, dl = 0
        var err = [CChar](repeating: 0, count: 512)
        let ok = cp_mtls_generate(&cp, &cl, &kp, &kl, &dp, &dl, &err, err.count)
        defer {
            cp_tls_free_buffer(cp)
            cp_tls_free_buffer(kp)
            cp_tls_free_buffer(dp)
        }
        guard ok == 1, let cp, let kp, let dp else {
            throw ConnectError.local(.resource, "cannot generate the AutoMTLS certificate: \(cText(err))")
        }
        return AutoMTLSCertificate(certificatePEM: Array(UnsafeBufferPointer(start: cp, count: cl)),
                                   privateKeyPEM: Array(UnsafeBufferPointer(start: kp, count: kl)),
                                   certificateDER: Array(UnsafeBufferPointer(start: dp, count: dl)))
    }

    /// Field 6 of the handshake line: base64 (standard alphabet, no padding) of the DER.
    public var handshakeField: String { Base64.encode(certificateDER, padded: false) }
}

public enum AutoMTLS {
    /// OpenSSL's text description of a DER certificate, plus "SelfSignatureValid: yes|no".
    public static func describe(der: [UInt8]) throws -> String {
        var out: UnsafeMutablePointer<UInt8>? = nil
        var n = 0
        var err = [CChar](repeating: 0, count: 512)
        let ok = der.withUnsafeBytes { cp_x509_text($0.baseAddress, $0.count, &out, &n, &err, err.count) }
        defer { cp_tls_free_buffer(out) }
        guard ok == 1, let out else { throw ConnectError.local(.invalidArgument, cText(err)) }
        return String(decoding: UnsafeBufferPointer(start: out, count: n), as: UTF8.self)
    }

    /// The plugin's server TLS: its certificate, client certificates required and verified against
    /// the host's (from PLUGIN_CLIENT_CERT), TLS 1.2 or later, ALPN h2.
    public static func serverConfig(plugin: AutoMTLSCertificate, hostCertPEM: [UInt8]) -> TLSConfig {
        TLSConfig.server(certificateChain: .pem(plugin.certificatePEM), privateKey: .pem(plugin.privateKeyPEM),
                         clientCAs: .pem(hostCertPEM), requireClientCert: true, alpnProtocols: ["h2"])
    }

    /// The host's client TLS: the host certificate as client certificate (when there is one), the
    /// plugin's certificate (handshake field 6) as the only trusted root, server name "localhost".
    public static func clientConfig(host: AutoMTLSCertificate?, pluginCertDER: [UInt8]) -> TLSConfig {
        TLSConfig.client(trustedCAs: .pem(PEM.encode(der: pluginCertDER, label: "CERTIFICATE")),
                         certificateChain: host.map { .pem($0.certificatePEM) }, privateKey: host.map { .pem($0.privateKeyPEM) },
                         serverName: "localhost", alpnProtocols: ["h2"])
    }
}

func cText(_ buf: [CChar]) -> String {
    let end = buf.firstIndex(of: 0) ?? buf.count
    return String(decoding: buf[0..<end].map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

/// PEM armour (RFC 7468) for DER bytes.
public enum PEM {
    /// "-----BEGIN LABEL-----", the base64 in 64-column lines, "-----END LABEL-----\n".
    public static func encode(der: [UInt8], label: String) -> [UInt8] {
        let b64 = Array(Base64.encode(der, padded: true).utf8)
        var out = Array("-----BEGIN \(label)-----\n".utf8)
        var i = 0
        while i < b64.count {
            let end = min(i + 64, b64.count)
            out += b64[i..<end]
            out.append(0x0A)
            i = end
        }
        out += Array("-----END \(label)-----\n".utf8)
        return out
    }

    /// The DER of the first block labelled `label`, or nil when there is none or it is not base64.
    public static func decode(_ pem: [UInt8], label: String) -> [UInt8]? {
        let text = String(decoding: pem, as: UTF8.self)
        let begin = "-----BEGIN \(label)-----", end = "-----END \(label)-----"
        guard let b = text.firstRange(of: begin), let e = text[b.upperBound...].firstRange(of: end) else { return nil }
        let body = text[b.upperBound..<e.lowerBound].filter { !$0.isWhitespace }
        return Base64.decode(String(body))
    }
}
