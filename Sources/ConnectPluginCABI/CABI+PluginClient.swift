// C ABI: the host side of the runtime (connectplugin_plugin_client_*): launch a plugin binary,
// handshake, dispense a connectplugin_client, ping, info, kill; exit notification, SecureConfig, restart
// policy, managed-mode cleanup. All logic is in ConnectPluginRuntime's
// PluginClient.
import CConnectPluginABI
import ConnectPlugin
import ConnectPluginHTTP
import ConnectPluginIO

final class PluginClientConfigBox {
    let lock = Lock()
    var config: PluginClientConfig
    init(_ c: PluginClientConfig) { config = c }
}

final class PluginClientBox {
    let plugin: PluginClient
    /// connectplugin_plugin_client_reattach_info's string (made at start; valid until free).
    let reattach: CBytes?
    init(_ p: PluginClient) {
        plugin = p
        reattach = p.reattachInfo.map { CBytes($0.text) }
    }
}

private func hostConfigArg(_ c: OpaquePointer?) throws -> PluginClientConfigBox {
    guard let b = unbox(c, as: PluginClientConfigBox.self) else { throw ConnectError.local(.invalidArgument, "config is NULL") }
    return b
}

private func pluginClientArg(_ p: OpaquePointer?) throws -> PluginClient {
    guard let b = unbox(p, as: PluginClientBox.self) else { throw ConnectError.local(.invalidArgument, "plugin is NULL") }
    return b.plugin
}

@_cdecl("connectplugin_plugin_client_config_new")
public func connectplugin_plugin_client_config_new(_ key: UnsafePointer<CChar>?, _ value: UnsafePointer<CChar>?,
                                                   _ path: UnsafePointer<CChar>?, _ out: UnsafeMutablePointer<OpaquePointer?>?,
                                                   _ err: UnsafeMutablePointer<OpaquePointer?>?) -> connectplugin_status {
    out?.pointee = nil
    return guarded(err) {
        guard let out else { throw ConnectError.local(.invalidArgument, "out_config is NULL") }
        guard let k = str(key), !k.isEmpty, let v = str(value), !v.isEmpty else {
            throw ConnectError.local(.invalidArgument, "the magic cookie key and value must be non-empty strings")
        }
        guard let p = str(path), !p.isEmpty else { throw ConnectError.local(.invalidArgument, "the plugin path must be a non-empty string") }
        out.pointee = box(PluginClientConfigBox(PluginClientConfig(
            handshake: HandshakeConfig(cookieKey: k, cookieValue: v), versionedPlugins: [:], command: PluginCommand(path: p))))
    }
}

@_cdecl("connectplugin_plugin_client_config_add_arg")
public func connectplugin_plugin_client_config_add_arg(_ c: OpaquePointer?, _ arg: UnsafePointer<CChar>?,
                                                       _ err: UnsafeMutablePointer<OpaquePointer?>?) -> connectplugin_status {
    guarded(err) {
        let b = try hostConfigArg(c)
        guard let a = str(arg) else { throw ConnectError.local(.invalidArgument, "arg is NULL") }
        b.lock.withLock { b.config.command.arguments.append(a) }
    }
}

@_cdecl("connectplugin_plugin_client_config_add_plugin")
public func connectplugin_plugin_client_config_add_plugin(_ c: OpaquePointer?, _ appVersion: Int32, _ name: UnsafePointer<CChar>?,
                                                          _ err: UnsafeMutablePointer<OpaquePointer?>?) -> connectplugin_status {
    guarded(err) {
        let b = try hostConfigArg(c)
        guard let n = str(name), !n.isEmpty else { throw ConnectError.local(.invalidArgument, "the plugin name must be a non-empty string") }
        if appVersion <= 0 { throw ConnectError.local(.invalidArgument, "app protocol versions start at 1 (got \(appVersion))") }
        b.lock.withLock {
            var names = b.config.versionedPlugins[Int(appVersion)] ?? []
            if !names.contains(n) { names.append(n) }
            b.config.versionedPlugins[Int(appVersion)] = names
        }
    }
}

@_cdecl("connectplugin_plugin_client_config_set_env")
public func connectplugin_plugin_client_config_set_env(_ c: OpaquePointer?, _ key: UnsafePointer<CChar>?, _ value: UnsafePointer<CChar>?,
                                                       _ err: UnsafeMutablePointer<OpaquePointer?>?) -> connectplugin_status {
    guarded(err) {
        let b = try hostConfigArg(c)
        guard let k = str(key), !k.isEmpty, !k.contains("=") else {
            throw ConnectError.local(.invalidArgument, "the variable name must be non-empty and without '='")
        }
        guard let v = str(value) else { throw ConnectError.local(.invalidArgument, "value is NULL") }
        b.lock.withLock { b.config.command.environment.append((k, v)) }
    }
}

@_cdecl("connectplugin_plugin_client_config_set_inherit_env")
public func connectplugin_plugin_client_config_set_inherit_env(_ c: OpaquePointer?, _ inherit: Int32,
                                                               _ err: UnsafeMutablePointer<OpaquePointer?>?) -> connectplugin_status {
    guarded(err) {
        let b = try hostConfigArg(c)
        b.lock.withLock { b.config.command.inheritEnvironment = inherit != 0 }
    }
}

@_cdecl("connectplugin_plugin_client_config_set_working_dir")
public func connectplugin_plugin_client_config_set_working_dir(_ c: OpaquePointer?, _ dir: UnsafePointer<CChar>?,
                                                               _ err: UnsafeMutablePointer<OpaquePointer?>?) -> connectplugin_status {
    guarded(err) {
        let b = try hostConfigArg(c)
        b.lock.withLock { b.config.command.workingDirectory = str(dir) }
    }
}

@_cdecl("connectplugin_plugin_client_config_set_start_timeout_ms")
public func connectplugin_plugin_client_config_set_start_timeout_ms(_ c: OpaquePointer?, _ ms: Int64,
                                                                    _ err: UnsafeMutablePointer<OpaquePointer?>?) -> connectplugin_status {
    guarded(err) {
        let b = try hostConfigArg(c)
        if ms <= 0 { throw ConnectError.local(.invalidArgument, "the start timeout must be positive (got \(ms) ms)") }
        b.lock.withLock { b.config.startTimeoutMs = ms }
    }
}

@_cdecl("connectplugin_plugin_client_config_set_kill_grace_ms")
public func connectplugin_plugin_client_config_set_kill_grace_ms(_ c: OpaquePointer?, _ ms: Int64,
                                                                 _ err: UnsafeMutablePointer<OpaquePointer?>?) -> connectplugin_status {
    guarded(err) {
        let b = try hostConfigArg(c)
        b.lock.withLock { b.config.killGraceMs = max(0, ms) }
    }
}

@_cdecl("connectplugin_plugin_client_config_set_auto_mtls")
public func connectplugin_plugin_client_config_set_auto_mtls(_ c: OpaquePointer?, _ enable: Int32,
                                                             _ err: UnsafeMutablePointer<OpaquePointer?>?) -> connectplugin_status {
    guarded(err) {
        let b = try hostConfigArg(c)
        b.lock.withLock { b.config.autoMTLS = enable != 0 }
    }
}

@_cdecl("connectplugin_plugin_client_config_set_tls")
public func connectplugin_plugin_client_config_set_tls(_ c: OpaquePointer?, _ tls: OpaquePointer?,
                                                       _ err: UnsafeMutablePointer<OpaquePointer?>?) -> connectplugin_status {
    guarded(err) {
        let b = try hostConfigArg(c)
        let t = unbox(tls, as: TLSOptionsBox.self)?.config
        b.lock.withLock { b.config.tls = t }
    }
}

@_cdecl("connectplugin_plugin_client_config_free")
public func connectplugin_plugin_client_config_free(_ c: OpaquePointer?) {
    release(c, as: PluginClientConfigBox.self)
}

@_cdecl("connectplugin_plugin_client_start")
public func connectplugin_plugin_client_start(_ c: OpaquePointer?, _ out: UnsafeMutablePointer<OpaquePointer?>?,
                                              _ err: UnsafeMutablePointer<OpaquePointer?>?) -> connectplugin_status {
    out?.pointee = nil
    return guarded(err) {
        guard let out else { throw ConnectError.local(.invalidArgument, "out_plugin is NULL") }
        let b = try hostConfigArg(c)
        let config = b.lock.withLock { b.config }
        if config.versionedPlugins.isEmpty {
            throw ConnectError.local(.invalidArgument, "declare at least one plugin with connectplugin_plugin_client_config_add_plugin")
        }
        let p = PluginClient(config: config)
        try p.start()
        out.pointee = box(PluginClientBox(p))
    }
}

@_cdecl("connectplugin_plugin_client_negotiated_version")
public func connectplugin_plugin_client_negotiated_version(_ p: OpaquePointer?) -> Int32 {
    guard let pc = try? pluginClientArg(p), let v = pc.negotiatedVersion else { return 0 }
    return Int32(truncatingIfNeeded: v)
}

@_cdecl("connectplugin_plugin_client_pid")
public func connectplugin_plugin_client_pid(_ p: OpaquePointer?) -> Int32 {
    (try? pluginClientArg(p))?.pid ?? 0
}

@_cdecl("connectplugin_plugin_client_dispense")
public func connectplugin_plugin_client_dispense(_ p: OpaquePointer?, _ name: UnsafePointer<CChar>?,
                                                 _ out: UnsafeMutablePointer<OpaquePointer?>?,
                                                 _ err: UnsafeMutablePointer<OpaquePointer?>?) -> connectplugin_status {
    out?.pointee = nil
    return guarded(err) {
        guard let out else { throw ConnectError.local(.invalidArgument, "out_client is NULL") }
        guard let n = str(name) else { throw ConnectError.local(.invalidArgument, "name is NULL") }
        out.pointee = box(ClientBox(try pluginClientArg(p).dispense(n), ownsConnection: false))
    }
}

@_cdecl("connectplugin_plugin_client_ping")
public func connectplugin_plugin_client_ping(_ p: OpaquePointer?, _ timeoutMs: Int64,
                                             _ err: UnsafeMutablePointer<OpaquePointer?>?) -> connectplugin_status {
    guarded(err) { try pluginClientArg(p).ping(timeoutMs: timeoutMs > 0 ? timeoutMs : 10_000) }
}

/// connectplugin_plugin_info: GetPluginInfoResponse with its strings as C strings.
final class PluginInfoBox {
    let id: CBytes
    let version: CBytes
    let metadata: [(key: CBytes, value: CBytes)]

    init(_ r: GetPluginInfoResponse) {
        id = CBytes(r.selfID)
        version = CBytes(r.selfVersion)
        metadata = r.metadata.map { (CBytes($0.0), CBytes($0.1)) }
    }
}

@_cdecl("connectplugin_plugin_client_info")
public func connectplugin_plugin_client_info(_ p: OpaquePointer?, _ timeoutMs: Int64, _ out: UnsafeMutablePointer<OpaquePointer?>?,
                                             _ err: UnsafeMutablePointer<OpaquePointer?>?) -> connectplugin_status {
    out?.pointee = nil
    return guarded(err) {
        guard let out else { throw ConnectError.local(.invalidArgument, "out_info is NULL") }
        let r = try pluginClientArg(p).info(timeoutMs: timeoutMs > 0 ? timeoutMs : 10_000)
        out.pointee = box(PluginInfoBox(r))
    }
}

@_cdecl("connectplugin_plugin_info_id")
public func connectplugin_plugin_info_id(_ i: OpaquePointer?) -> UnsafePointer<CChar>? {
    unbox(i, as: PluginInfoBox.self)?.id.cString ?? staticCString("")
}

@_cdecl("connectplugin_plugin_info_version")
public func connectplugin_plugin_info_version(_ i: OpaquePointer?) -> UnsafePointer<CChar>? {
    unbox(i, as: PluginInfoBox.self)?.version.cString ?? staticCString("")
}

@_cdecl("connectplugin_plugin_info_metadata_count")
public func connectplugin_plugin_info_metadata_count(_ i: OpaquePointer?) -> Int {
    unbox(i, as: PluginInfoBox.self)?.metadata.count ?? 0
}

@_cdecl("connectplugin_plugin_info_metadata_get")
public func connectplugin_plugin_info_metadata_get(_ i: OpaquePointer?, _ index: Int, _ outKey: UnsafeMutablePointer<UnsafePointer<CChar>?>?,
                                                   _ outValue: UnsafeMutablePointer<UnsafePointer<CChar>?>?) -> connectplugin_status {
    outKey?.pointee = nil
    outValue?.pointee = nil
    guard let b = unbox(i, as: PluginInfoBox.self), index >= 0, index < b.metadata.count else { return CONNECTPLUGIN_ERR_INVALID_ARGUMENT }
    outKey?.pointee = b.metadata[index].key.cString
    outValue?.pointee = b.metadata[index].value.cString
    return CONNECTPLUGIN_OK
}

@_cdecl("connectplugin_plugin_info_free")
public func connectplugin_plugin_info_free(_ i: OpaquePointer?) { release(i, as: PluginInfoBox.self) }

@_cdecl("connectplugin_plugin_client_kill")
public func connectplugin_plugin_client_kill(_ p: OpaquePointer?, _ err: UnsafeMutablePointer<OpaquePointer?>?) -> connectplugin_status {
    guarded(err) { try pluginClientArg(p).kill() }
}

@_cdecl("connectplugin_plugin_client_exit_status")
public func connectplugin_plugin_client_exit_status(_ p: OpaquePointer?, _ outValue: UnsafeMutablePointer<Int32>?) -> Int32 {
    outValue?.pointee = 0
    guard let pc = try? pluginClientArg(p), let s = pc.exitStatus else { return 0 }
    switch s {
    case .exited(let c):
        outValue?.pointee = c
        return 1
    case .signaled(let sig):
        outValue?.pointee = sig
        return 2
    case .unknown:
        return 3
    }
}

@_cdecl("connectplugin_plugin_client_free")
public func connectplugin_plugin_client_free(_ p: OpaquePointer?) {
    guard let b = unbox(p, as: PluginClientBox.self) else { return }
    b.plugin.kill()
    release(p, as: PluginClientBox.self)
}

@_cdecl("connectplugin_plugin_client_config_new_url")
public func connectplugin_plugin_client_config_new_url(_ key: UnsafePointer<CChar>?, _ value: UnsafePointer<CChar>?,
                                                       _ url: UnsafePointer<CChar>?, _ out: UnsafeMutablePointer<OpaquePointer?>?,
                                                       _ err: UnsafeMutablePointer<OpaquePointer?>?) -> connectplugin_status {
    out?.pointee = nil
    return guarded(err) {
        guard let out else { throw ConnectError.local(.invalidArgument, "out_config is NULL") }
        guard let k = str(key), !k.isEmpty, let v = str(value), !v.isEmpty else {
            throw ConnectError.local(.invalidArgument, "the magic cookie key and value must be non-empty strings")
        }
        guard let u = str(url), !u.isEmpty else { throw ConnectError.local(.invalidArgument, "the plugin URL must be a non-empty string") }
        guard ["http://", "https://", "unix:", "inproc://"].contains(where: { u.hasPrefix($0) }) else {
            throw ConnectError.local(.invalidArgument, "plugin URL \"\(u)\" must start with http://, https://, unix:// or inproc://")
        }
        out.pointee = box(PluginClientConfigBox(PluginClientConfig(
            handshake: HandshakeConfig(cookieKey: k, cookieValue: v), versionedPlugins: [:], url: u)))
    }
}

@_cdecl("connectplugin_plugin_client_config_new_reattach")
public func connectplugin_plugin_client_config_new_reattach(_ key: UnsafePointer<CChar>?, _ value: UnsafePointer<CChar>?,
                                                            _ reattach: UnsafePointer<CChar>?, _ out: UnsafeMutablePointer<OpaquePointer?>?,
                                                            _ err: UnsafeMutablePointer<OpaquePointer?>?) -> connectplugin_status {
    out?.pointee = nil
    return guarded(err) {
        guard let out else { throw ConnectError.local(.invalidArgument, "out_config is NULL") }
        guard let k = str(key), !k.isEmpty, let v = str(value), !v.isEmpty else {
            throw ConnectError.local(.invalidArgument, "the magic cookie key and value must be non-empty strings")
        }
        guard let t = str(reattach), !t.isEmpty else { throw ConnectError.local(.invalidArgument, "the reattach information must be a non-empty string") }
        let r = try PluginReattach.parse(t)
        var config = PluginClientConfig(handshake: HandshakeConfig(cookieKey: k, cookieValue: v), versionedPlugins: [:],
                                        command: PluginCommand(path: r.address))
        config.reattach = r
        out.pointee = box(PluginClientConfigBox(config))
    }
}

@_cdecl("connectplugin_plugin_client_reattach_info")
public func connectplugin_plugin_client_reattach_info(_ p: OpaquePointer?) -> UnsafePointer<CChar>? {
    unbox(p, as: PluginClientBox.self)?.reattach?.cString
}

// MARK: Lifecycle: exit notification, SecureConfig, managed mode

/// (kind, value) as connectplugin_plugin_client_exit_status reports them.
private func exitKind(_ s: ProcessExitStatus) -> (Int32, Int32) {
    switch s {
    case .exited(let c): return (1, c)
    case .signaled(let sig): return (2, sig)
    case .unknown: return (3, 0)
    }
}

/// A C exit callback and its user_data (called once, then finalized).
private final class ExitHook: @unchecked Sendable {
    let fn: connectplugin_plugin_exit_func
    let ud: UserData
    init(_ fn: connectplugin_plugin_exit_func, _ ud: UserData) {
        self.fn = fn
        self.ud = ud
    }
}

@_cdecl("connectplugin_plugin_client_on_exit")
public func connectplugin_plugin_client_on_exit(_ p: OpaquePointer?, _ fn: connectplugin_plugin_exit_func?,
                                                _ userData: UnsafeMutableRawPointer?, _ finalizer: connectplugin_free_func?,
                                                _ err: UnsafeMutablePointer<OpaquePointer?>?) -> connectplugin_status {
    let ud = UserData(userData, finalizer)
    let rc = guarded(err) {
        let pc = try pluginClientArg(p)
        guard let fn else { throw ConnectError.local(.invalidArgument, "the exit callback is NULL") }
        let hook = ExitHook(fn, ud)
        pc.onExit { status in
            let (kind, value) = exitKind(status)
            hook.fn(kind, value, hook.ud.pointer)
            hook.ud.finalize()
        }
    }
    if rc != CONNECTPLUGIN_OK { ud.finalize() }
    return rc
}

@_cdecl("connectplugin_plugin_client_wait_exit")
public func connectplugin_plugin_client_wait_exit(_ p: OpaquePointer?, _ timeoutMs: Int64, _ outValue: UnsafeMutablePointer<Int32>?) -> Int32 {
    outValue?.pointee = 0
    guard let pc = try? pluginClientArg(p) else { return 0 }
    let until = timeoutMs < 0 ? UInt64.max : monotonicNowNs() &+ UInt64(timeoutMs) &* 1_000_000
    guard pc.waitExit(untilNs: until), let s = pc.exitStatus else { return 0 }
    let (kind, value) = exitKind(s)
    outValue?.pointee = value
    return kind
}

@_cdecl("connectplugin_plugin_client_config_set_checksum_sha256")
public func connectplugin_plugin_client_config_set_checksum_sha256(_ c: OpaquePointer?, _ hex: UnsafePointer<CChar>?,
                                                                   _ err: UnsafeMutablePointer<OpaquePointer?>?) -> connectplugin_status {
    guarded(err) {
        let b = try hostConfigArg(c)
        let h = str(hex)
        if let h, h.utf8.count != 64 || !h.utf8.allSatisfy({ ($0 >= 0x30 && $0 <= 0x39) || ($0 | 0x20 >= 0x61 && $0 | 0x20 <= 0x66) }) {
            throw ConnectError.local(.invalidArgument, "the SHA-256 must be 64 hex digits (e.g. the first field of sha256sum's output), got \"\(h)\"")
        }
        b.lock.withLock { b.config.checksumSHA256 = h }
    }
}

@_cdecl("connectplugin_plugin_cleanup_all")
public func connectplugin_plugin_cleanup_all() {
    PluginClient.cleanupAll()
}

@_cdecl("connectplugin_plugin_client_config_set_restart")
public func connectplugin_plugin_client_config_set_restart(_ c: OpaquePointer?, _ maxRestarts: Int32, _ initialBackoffMs: Int64,
                                                           _ maxBackoffMs: Int64,
                                                           _ err: UnsafeMutablePointer<OpaquePointer?>?) -> connectplugin_status {
    guarded(err) {
        let b = try hostConfigArg(c)
        if maxRestarts < 0 || initialBackoffMs < 0 || maxBackoffMs < 0 {
            throw ConnectError.local(.invalidArgument, "the restart limit and backoffs must not be negative")
        }
        let policy = maxRestarts == 0 ? nil : RestartPolicy(maxRestarts: Int(maxRestarts), initialBackoffMs: initialBackoffMs > 0 ? initialBackoffMs : 100,
                                                            maxBackoffMs: maxBackoffMs > 0 ? maxBackoffMs : 5000)
        b.lock.withLock { b.config.restart = policy }
    }
}

@_cdecl("connectplugin_plugin_client_restart_count")
public func connectplugin_plugin_client_restart_count(_ p: OpaquePointer?) -> Int32 {
    guard let pc = try? pluginClientArg(p) else { return 0 }
    return Int32(truncatingIfNeeded: pc.restarts)
}
