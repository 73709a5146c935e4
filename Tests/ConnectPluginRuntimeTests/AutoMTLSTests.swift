// AutoMTLS: the certificate go-plugin's mtls.go makes (read back by OpenSSL), the encodings of the
// handshake, and a plugin served in this process with PLUGIN_CLIENT_CERT: TLS with the host's
// certificate works, plaintext h2c and TLS without a client certificate are refused.
import Testing
import CConnectPluginPosix
import ConnectPluginHTTP
import ConnectPluginIO
import ConnectPluginRPC
@testable import ConnectPluginRuntime
import Glibc

@Suite("AutoMTLS") struct AutoMTLSTests {
    @Test func certificateHasGoPluginsFields() throws {
        let c = try AutoMTLSCertificate.generate()
        #expect(String(decoding: c.certificatePEM, as: UTF8.self).hasPrefix("-----BEGIN CERTIFICATE-----\n"))
        #expect(String(decoding: c.privateKeyPEM, as: UTF8.self).hasPrefix("-----BEGIN EC PRIVATE KEY-----\n"))
        #expect(PEM.decode(c.certificatePEM, label: "CERTIFICATE") == c.certificateDER)
        let text = try AutoMTLS.describe(der: c.certificateDER)
        for want in ["Version: 3 (0x2)", "Signature Algorithm: ecdsa-with-SHA512", "Issuer: O = HashiCorp, CN = localhost",
                     "Subject: O = HashiCorp, CN = localhost", "Public-Key: (521 bit)", "NIST CURVE: P-521",
                     "CA:TRUE", "Digital Signature, Key Encipherment, Key Agreement, Certificate Sign",
                     "TLS Web Client Authentication, TLS Web Server Authentication", "DNS:localhost",
                     "SelfSignatureValid: yes"] {
            #expect(text.contains(want), "missing \(want) in\n\(text)")
        }
        // 30 years: the NotAfter year is 30 years on (262980 h = 30 years less a few days).
        let lines = text.split(separator: "\n").map { $0.trimmingPrefix(while: { $0 == " " }) }
        let nb = lines.first { $0.hasPrefix("Not Before:") }.map(String.init) ?? ""
        let na = lines.first { $0.hasPrefix("Not After :") }.map(String.init) ?? ""
        let nbYear = nb.split(separator: " ").compactMap { Int($0) }.first { $0 > 2000 } ?? 0
        let naYear = na.split(separator: " ").compactMap { Int($0) }.first { $0 > 2000 } ?? 0
        #expect(naYear - nbYear == 30 || naYear - nbYear == 29, "\(nb) / \(na)")
        // Serial: random, so two certificates differ.
        let d = try AutoMTLSCertificate.generate()
        #expect(d.certificateDER != c.certificateDER)
        #expect(Base64.decode(c.handshakeField) == c.certificateDER)
        #expect(!c.handshakeField.hasSuffix("="))
    }

    @Test func base64AndPEM() {
        let cases: [(String, String)] = [("", ""), ("f", "Zg"), ("fo", "Zm8"), ("foo", "Zm9v"), ("foob", "Zm9vYg"),
                                         ("fooba", "Zm9vYmE"), ("foobar", "Zm9vYmFy")]
        for (plain, raw) in cases {
            #expect(Base64.encode(Array(plain.utf8), padded: false) == raw)
            #expect(Base64.decode(raw) == Array(plain.utf8))
            let padded = Base64.encode(Array(plain.utf8), padded: true)
            #expect(padded.count % 4 == 0)
            #expect(Base64.decode(padded) == Array(plain.utf8))
        }
        #expect(Base64.encode([0xFB, 0xFF], padded: false) == "+/8")
        #expect(Base64.decode("Zm9v!") == nil)
        #expect(Base64.decode("Z") == nil)
        let all = (0..<256).map { UInt8($0) }
        #expect(Base64.decode(Base64.encode(all, padded: false)) == all)
        #expect(PEM.decode(PEM.encode(der: all, label: "X"), label: "X") == all)
        #expect(PEM.decode(PEM.encode(der: all, label: "X"), label: "Y") == nil)
    }

    @Test(arguments: [PluginNetwork.unix, .tcp])
    func pluginServesTLSToTheHostCertificateOnly(network: PluginNetwork) throws {
        let host = try AutoMTLSCertificate.generate()
        var fds: [Int32] = [-1, -1]
        #expect(cp_pipe(&fds) == 0)
        defer { _ = cp_close(fds[0]); _ = cp_close(fds[1]) }
        var c = PluginServeConfig(handshake: HandshakeConfig(cookieKey: "KV_PLUGIN", cookieValue: "connectplugin-kv"),
                                  versionedPlugins: [1: ["kv": PluginRegistration { server in
                                      try server.register("/test.Echo/Echo") { call in try? call.respond(call.request) }
                                  }]])
        c.environment = ["KV_PLUGIN": "connectplugin-kv", "PLUGIN_CLIENT_CERT": String(decoding: host.certificatePEM, as: UTF8.self),
                         "TMPDIR": "/tmp"]
        c.network = network
        c.redirectStdio = false
        c.handshakeFD = fds[1]
        c.watchParent = false
        c.handleSignals = false
        c.logger = { _ in }
        let s = try PluginServer(config: c)
        defer { s.stop() }
        let line = try s.start()
        #expect(!line.serverCert.isEmpty)
        let der = try #require(Base64.decode(line.serverCert))
        #expect(try AutoMTLS.describe(der: der).contains("Subject: O = HashiCorp, CN = localhost"))

        func call(_ tls: TLSConfig?) throws -> [UInt8] {
            var o = RPCClient.Options()
            o.rpcProtocol = .grpc
            o.timeoutMs = 10_000
            o.tls = tls
            let url = network == .unix ? "unix://" + line.address : (tls == nil ? "http://" : "https://") + line.address
            let client = try RPCClient(baseURL: url, options: o)
            defer { client.close() }
            return try client.unary("/test.Echo/Echo", request: [7]).message
        }
        #expect(try call(AutoMTLS.clientConfig(host: host, pluginCertDER: der)) == [7])
        // Plaintext h2c: refused.
        #expect(throws: ConnectError.self) { _ = try call(nil) }
        // TLS without a client certificate, or with another one: refused.
        #expect(throws: ConnectError.self) { _ = try call(AutoMTLS.clientConfig(host: nil, pluginCertDER: der)) }
        let other = try AutoMTLSCertificate.generate()
        #expect(throws: ConnectError.self) { _ = try call(AutoMTLS.clientConfig(host: other, pluginCertDER: der)) }
        // A host that trusts another certificate than the plugin's: refused by the host.
        #expect(throws: ConnectError.self) { _ = try call(AutoMTLS.clientConfig(host: host, pluginCertDER: other.certificateDER)) }
    }
}
