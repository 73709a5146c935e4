// C ABI: TLS options, shared by TLS listeners and https clients.
import CConnectPluginABI
import ConnectPlugin
import ConnectPluginHTTP

final class TLSOptionsBox { var config = TLSConfig() }

private func tlsArg(_ o: OpaquePointer?) throws -> TLSOptionsBox {
    guard let b = unbox(o, as: TLSOptionsBox.self) else { throw ConnectError.local(.invalidArgument, "tls options is NULL") }
    return b
}

@_cdecl("connectplugin_tls_options_new")
public func connectplugin_tls_options_new() -> OpaquePointer? { box(TLSOptionsBox()) }

@_cdecl("connectplugin_tls_options_set_cert_files")
public func connectplugin_tls_options_set_cert_files(_ o: OpaquePointer?, _ cert: UnsafePointer<CChar>?, _ key: UnsafePointer<CChar>?,
                                                     _ err: UnsafeMutablePointer<OpaquePointer?>?) -> connectplugin_status {
    guarded(err) {
        let b = try tlsArg(o)
        guard let c = str(cert), let k = str(key), !c.isEmpty, !k.isEmpty else { throw ConnectError.local(.invalidArgument, "cert_path and key_path must be non-empty") }
        b.config.certificateChain = .file(c)
        b.config.privateKey = .file(k)
    }
}

@_cdecl("connectplugin_tls_options_set_cert_pem")
public func connectplugin_tls_options_set_cert_pem(_ o: OpaquePointer?, _ cert: UnsafePointer<UInt8>?, _ certLen: Int, _ key: UnsafePointer<UInt8>?,
                                                   _ keyLen: Int, _ err: UnsafeMutablePointer<OpaquePointer?>?) -> connectplugin_status {
    guarded(err) {
        let b = try tlsArg(o)
        guard let c = bytesArg(cert, certLen), let k = bytesArg(key, keyLen), !c.isEmpty, !k.isEmpty else {
            throw ConnectError.local(.invalidArgument, "cert_pem and key_pem must be non-empty")
        }
        b.config.certificateChain = .pem(c)
        b.config.privateKey = .pem(k)
    }
}

@_cdecl("connectplugin_tls_options_set_ca_file")
public func connectplugin_tls_options_set_ca_file(_ o: OpaquePointer?, _ path: UnsafePointer<CChar>?, _ err: UnsafeMutablePointer<OpaquePointer?>?) -> connectplugin_status {
    guarded(err) {
        let b = try tlsArg(o)
        guard let p = str(path), !p.isEmpty else { throw ConnectError.local(.invalidArgument, "path must be non-empty") }
        b.config.trustedCAs = .file(p)
    }
}

@_cdecl("connectplugin_tls_options_set_ca_pem")
public func connectplugin_tls_options_set_ca_pem(_ o: OpaquePointer?, _ pem: UnsafePointer<UInt8>?, _ len: Int, _ err: UnsafeMutablePointer<OpaquePointer?>?) -> connectplugin_status {
    guarded(err) {
        let b = try tlsArg(o)
        guard let p = bytesArg(pem, len), !p.isEmpty else { throw ConnectError.local(.invalidArgument, "pem must be non-empty") }
        b.config.trustedCAs = .pem(p)
    }
}

@_cdecl("connectplugin_tls_options_set_require_client_cert")
public func connectplugin_tls_options_set_require_client_cert(_ o: OpaquePointer?, _ v: Int32, _ err: UnsafeMutablePointer<OpaquePointer?>?) -> connectplugin_status {
    guarded(err) { try tlsArg(o).config.requireClientCert = v != 0 }
}

@_cdecl("connectplugin_tls_options_set_server_name")
public func connectplugin_tls_options_set_server_name(_ o: OpaquePointer?, _ name: UnsafePointer<CChar>?, _ err: UnsafeMutablePointer<OpaquePointer?>?) -> connectplugin_status {
    guarded(err) {
        let b = try tlsArg(o)
        guard let n = str(name), !n.isEmpty else { throw ConnectError.local(.invalidArgument, "name must be non-empty") }
        b.config.serverName = n
    }
}

@_cdecl("connectplugin_tls_options_set_insecure_skip_verify")
public func connectplugin_tls_options_set_insecure_skip_verify(_ o: OpaquePointer?, _ v: Int32, _ err: UnsafeMutablePointer<OpaquePointer?>?) -> connectplugin_status {
    guarded(err) { try tlsArg(o).config.insecureSkipVerify = v != 0 }
}

@_cdecl("connectplugin_tls_options_free")
public func connectplugin_tls_options_free(_ o: OpaquePointer?) { release(o, as: TLSOptionsBox.self) }

@_cdecl("connectplugin_server_listen_tls")
public func connectplugin_server_listen_tls(_ s: OpaquePointer?, _ addr: UnsafePointer<CChar>?, _ tls: OpaquePointer?,
                                            _ err: UnsafeMutablePointer<OpaquePointer?>?) -> connectplugin_status {
    guarded(err) {
        guard let b = unbox(s, as: ServerBox.self) else { throw ConnectError.local(.invalidArgument, "server is NULL") }
        guard let a = str(addr) else { throw ConnectError.local(.invalidArgument, "host_port is NULL") }
        let t = try tlsArg(tls)
        guard t.config.certificateChain != nil, t.config.privateKey != nil else {
            throw ConnectError.local(.invalidArgument, "a TLS listener needs a certificate and a key (connectplugin_tls_options_set_cert_files)")
        }
        _ = try b.server.listenTCP(a, tls: t.config)
        b.refreshAddresses()
    }
}

@_cdecl("connectplugin_client_options_set_tls")
public func connectplugin_client_options_set_tls(_ o: OpaquePointer?, _ tls: OpaquePointer?, _ err: UnsafeMutablePointer<OpaquePointer?>?) -> connectplugin_status {
    guarded(err) {
        guard let b = unbox(o, as: ClientOptionsBox.self) else { throw ConnectError.local(.invalidArgument, "options is NULL") }
        b.options.tls = try tlsArg(tls).config
    }
}
