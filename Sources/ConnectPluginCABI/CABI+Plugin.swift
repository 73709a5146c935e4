// C ABI: the plugin side of the runtime (connectplugin_plugin_*): a plugin configuration (cookie,
// plugin names per app protocol version) and serve, over a server whose handlers the plugin
// registered. All logic is in ConnectPluginRuntime's PluginServer.
import CConnectPluginABI
import ConnectPlugin
import ConnectPluginHTTP
import Glibc

final class PluginConfigBox {
    let lock = Lock()
    var config: PluginServeConfig
    init(_ c: PluginServeConfig) { config = c }
}

@_cdecl("connectplugin_plugin_config_new")
public func connectplugin_plugin_config_new(_ key: UnsafePointer<CChar>?, _ value: UnsafePointer<CChar>?,
                                            _ out: UnsafeMutablePointer<OpaquePointer?>?,
                                            _ err: UnsafeMutablePointer<OpaquePointer?>?) -> connectplugin_status {
    out?.pointee = nil
    return guarded(err) {
        guard let out else { throw ConnectError.local(.invalidArgument, "out_config is NULL") }
        guard let k = str(key), !k.isEmpty, let v = str(value), !v.isEmpty else {
            throw ConnectError.local(.invalidArgument, "the magic cookie key and value must be non-empty strings")
        }
        out.pointee = box(PluginConfigBox(PluginServeConfig(handshake: HandshakeConfig(cookieKey: k, cookieValue: v),
                                                            versionedPlugins: [:])))
    }
}

@_cdecl("connectplugin_plugin_config_add_plugin")
public func connectplugin_plugin_config_add_plugin(_ c: OpaquePointer?, _ appVersion: Int32, _ name: UnsafePointer<CChar>?,
                                                   _ version: UnsafePointer<CChar>?, _ servicePath: UnsafePointer<CChar>?,
                                                   _ err: UnsafeMutablePointer<OpaquePointer?>?) -> connectplugin_status {
    guarded(err) {
        guard let b = unbox(c, as: PluginConfigBox.self) else { throw ConnectError.local(.invalidArgument, "config is NULL") }
        guard let n = str(name), !n.isEmpty else { throw ConnectError.local(.invalidArgument, "the plugin name must be a non-empty string") }
        if appVersion <= 0 { throw ConnectError.local(.invalidArgument, "app protocol versions start at 1 (got \(appVersion))") }
        try b.lock.withLock {
            var set = b.config.versionedPlugins[Int(appVersion)] ?? [:]
            if set[n] != nil { throw ConnectError.local(.invalidArgument, "plugin \"\(n)\" is already declared for version \(appVersion)") }
            set[n] = PluginRegistration(version: str(version) ?? "", servicePath: str(servicePath) ?? "") { _ in }
            b.config.versionedPlugins[Int(appVersion)] = set
        }
    }
}

@_cdecl("connectplugin_plugin_config_set_grace_ms")
public func connectplugin_plugin_config_set_grace_ms(_ c: OpaquePointer?, _ ms: Int64,
                                                     _ err: UnsafeMutablePointer<OpaquePointer?>?) -> connectplugin_status {
    guarded(err) {
        guard let b = unbox(c, as: PluginConfigBox.self) else { throw ConnectError.local(.invalidArgument, "config is NULL") }
        b.lock.withLock { b.config.gracePeriodMs = max(0, ms) }
    }
}

@_cdecl("connectplugin_plugin_config_set_network")
public func connectplugin_plugin_config_set_network(_ c: OpaquePointer?, _ network: UnsafePointer<CChar>?,
                                                    _ err: UnsafeMutablePointer<OpaquePointer?>?) -> connectplugin_status {
    guarded(err) {
        guard let b = unbox(c, as: PluginConfigBox.self) else { throw ConnectError.local(.invalidArgument, "config is NULL") }
        guard let n = str(network).flatMap({ PluginNetwork(rawValue: $0) }) else {
            throw ConnectError.local(.invalidArgument, "the network must be \"unix\" or \"tcp\"")
        }
        b.lock.withLock { b.config.network = n }
    }
}

@_cdecl("connectplugin_plugin_config_set_tls")
public func connectplugin_plugin_config_set_tls(_ c: OpaquePointer?, _ tls: OpaquePointer?,
                                                _ err: UnsafeMutablePointer<OpaquePointer?>?) -> connectplugin_status {
    guarded(err) {
        guard let b = unbox(c, as: PluginConfigBox.self) else { throw ConnectError.local(.invalidArgument, "config is NULL") }
        var t = unbox(tls, as: TLSOptionsBox.self)?.config
        if let cfg = t, cfg.certificateChain == nil || cfg.privateKey == nil {
            throw ConnectError.local(.invalidArgument, "a plugin's TLS needs a certificate and a key (connectplugin_tls_options_set_cert_files)")
        }
        t?.alpnProtocols = ["h2"]
        b.lock.withLock { b.config.tls = t }
    }
}

@_cdecl("connectplugin_plugin_config_free")
public func connectplugin_plugin_config_free(_ c: OpaquePointer?) {
    release(c, as: PluginConfigBox.self)
}

@_cdecl("connectplugin_plugin_serve")
public func connectplugin_plugin_serve(_ s: OpaquePointer?, _ c: OpaquePointer?) -> Int32 {
    guard let sb = unbox(s, as: ServerBox.self) else {
        writeStderr("connectplugin_plugin_serve: server is NULL\n")
        return 1
    }
    guard let cb = unbox(c, as: PluginConfigBox.self) else {
        writeStderr("connectplugin_plugin_serve: config is NULL\n")
        return 1
    }
    let config = cb.lock.withLock { cb.config }
    let plugin: PluginServer
    do { plugin = try PluginServer(config: config, server: sb.server) } catch let e as ConnectError {
        writeStderr("connectplugin_plugin_serve: \(e.message)\n")
        return 1
    } catch {
        writeStderr("connectplugin_plugin_serve: \(error)\n")
        return 1
    }
    sb.plugin = plugin
    defer { sb.plugin = nil }
    return PluginServer.serve(plugin)
}

@_cdecl("connectplugin_plugin_set_health")
public func connectplugin_plugin_set_health(_ s: OpaquePointer?, _ state: Int32, _ reason: UnsafePointer<CChar>?,
                                            _ err: UnsafeMutablePointer<OpaquePointer?>?) -> connectplugin_status {
    guarded(err) {
        guard let sb = unbox(s, as: ServerBox.self) else { throw ConnectError.local(.invalidArgument, "server is NULL") }
        guard let st = HealthState(rawValue: state), st != .unspecified else {
            throw ConnectError.local(.invalidArgument, "health state must be CONNECTPLUGIN_HEALTH_HEALTHY, _DEGRADED or _UNHEALTHY")
        }
        guard let p = sb.plugin else {
            throw ConnectError.local(.state, "the server is not serving as a plugin (call from a handler or another thread while connectplugin_plugin_serve runs)")
        }
        p.setHealth(st, reason: str(reason) ?? "")
    }
}

@_cdecl("connectplugin_plugin_config_set_listen_address")
public func connectplugin_plugin_config_set_listen_address(_ c: OpaquePointer?, _ address: UnsafePointer<CChar>?,
                                                           _ err: UnsafeMutablePointer<OpaquePointer?>?) -> connectplugin_status {
    guarded(err) {
        guard let b = unbox(c, as: PluginConfigBox.self) else { throw ConnectError.local(.invalidArgument, "config is NULL") }
        let a = str(address)
        b.lock.withLock { b.config.listenAddress = (a?.isEmpty ?? true) ? nil : a }
    }
}

@_cdecl("connectplugin_plugin_serve_in_process")
public func connectplugin_plugin_serve_in_process(_ s: OpaquePointer?, _ c: OpaquePointer?, _ name: UnsafePointer<CChar>?,
                                                  _ err: UnsafeMutablePointer<OpaquePointer?>?) -> connectplugin_status {
    guarded(err) {
        guard let sb = unbox(s, as: ServerBox.self) else { throw ConnectError.local(.invalidArgument, "server is NULL") }
        guard let cb = unbox(c, as: PluginConfigBox.self) else { throw ConnectError.local(.invalidArgument, "config is NULL") }
        guard let n = str(name), !n.isEmpty else { throw ConnectError.local(.invalidArgument, "the in-process name must be a non-empty string") }
        var config = cb.lock.withLock { cb.config }
        config.handleSignals = false
        config.watchParent = false
        config.redirectStdio = false
        let plugin = try PluginServer(config: config, server: sb.server)
        do { _ = try plugin.startInProcess(name: n) } catch let e as PluginServeError {
            plugin.stop("failed to start")
            throw ConnectError.local(.invalidArgument, e.description)
        }
        sb.plugin = plugin
    }
}
