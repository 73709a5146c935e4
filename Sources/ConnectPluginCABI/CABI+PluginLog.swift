// C ABI: plugin logs on both sides — connectplugin_plugin_log (a plugin's own hclog lines on the
// real stderr, through the runtime's PluginLog), and the log callbacks of a plugin configuration
// (the runtime's own records) and of a host configuration (each parsed stderr line of a plugin).
import CConnectPluginABI
import ConnectPlugin
import ConnectPluginIO
import Glibc

/// A C log callback and its user_data, finalized when the last configuration or plugin holding it
/// is gone.
final class LogSink: @unchecked Sendable {
    let fn: connectplugin_log_func
    let ud: UserData
    init(_ fn: connectplugin_log_func, _ ud: UserData) {
        self.fn = fn
        self.ud = ud
    }
    deinit { ud.finalize() }

    func deliver(_ plugin: String, _ r: LogRecord) {
        let keys = r.fields.map { strdup($0.0) }
        let values = r.fields.map { strdup($0.1) }
        defer {
            for p in keys { free(p) }
            for p in values { free(p) }
        }
        if keys.contains(where: { $0 == nil }) || values.contains(where: { $0 == nil }) { return }  // out of memory
        let k: [UnsafePointer<CChar>?] = keys.map { UnsafePointer($0) }
        let v: [UnsafePointer<CChar>?] = values.map { UnsafePointer($0) }
        plugin.withCString { p in
            r.message.withCString { m in
                r.timestamp.withCString { t in
                    k.withUnsafeBufferPointer { kb in
                        v.withUnsafeBufferPointer { vb in
                            fn(p, Int32(r.level.rawValue), m, t, kb.baseAddress, vb.baseAddress, kb.count, ud.pointer)
                        }
                    }
                }
            }
        }
    }
}

private func logLevel(_ level: Int32) throws -> LogLevel {
    guard let l = LogLevel(rawValue: Int(level)) else {
        throw ConnectError.local(.invalidArgument, "log level \(level) is not one of CONNECTPLUGIN_LOG_TRACE (0) .. CONNECTPLUGIN_LOG_ERROR (4)")
    }
    return l
}

@_cdecl("connectplugin_plugin_log")
public func connectplugin_plugin_log(_ level: Int32, _ message: UnsafePointer<CChar>?,
                                     _ keys: UnsafePointer<UnsafePointer<CChar>?>?, _ values: UnsafePointer<UnsafePointer<CChar>?>?,
                                     _ count: Int, _ err: UnsafeMutablePointer<OpaquePointer?>?) -> connectplugin_status {
    guarded(err) {
        let l = try logLevel(level)
        guard let m = str(message) else { throw ConnectError.local(.invalidArgument, "message is NULL") }
        var fields: [(String, String)] = []
        if count > 0 {
            guard let keys, let values else { throw ConnectError.local(.invalidArgument, "keys or values is NULL while field_count is \(count)") }
            fields.reserveCapacity(count)
            for i in 0..<count {
                guard let k = str(keys[i]), let v = str(values[i]) else {
                    throw ConnectError.local(.invalidArgument, "key or value \(i) is NULL")
                }
                fields.append((k, v))
            }
        }
        PluginLog.write(LogRecord(level: l, message: m, fields: fields))
    }
}

@_cdecl("connectplugin_plugin_config_set_logger")
public func connectplugin_plugin_config_set_logger(_ c: OpaquePointer?, _ logger: connectplugin_log_func?,
                                                   _ userData: UnsafeMutableRawPointer?, _ userDataFree: connectplugin_free_func?,
                                                   _ err: UnsafeMutablePointer<OpaquePointer?>?) -> connectplugin_status {
    let ud = UserData(userData, userDataFree)
    let sink = logger.map { LogSink($0, ud) }
    let status = guarded(err) {
        guard let b = unbox(c, as: PluginConfigBox.self) else { throw ConnectError.local(.invalidArgument, "config is NULL") }
        b.lock.withLock { b.config.logger = sink.map { s in { r in s.deliver("", r) } } }
    }
    if status != CONNECTPLUGIN_OK || sink == nil { ud.finalize() }
    return status
}

@_cdecl("connectplugin_plugin_client_config_set_logger")
public func connectplugin_plugin_client_config_set_logger(_ c: OpaquePointer?, _ logger: connectplugin_log_func?,
                                                          _ userData: UnsafeMutableRawPointer?, _ userDataFree: connectplugin_free_func?,
                                                          _ err: UnsafeMutablePointer<OpaquePointer?>?) -> connectplugin_status {
    let ud = UserData(userData, userDataFree)
    let sink = logger.map { LogSink($0, ud) }
    let status = guarded(err) {
        guard let b = unbox(c, as: PluginClientConfigBox.self) else { throw ConnectError.local(.invalidArgument, "config is NULL") }
        b.lock.withLock { b.config.logger = sink.map { s in { name, r in s.deliver(name, r) } } }
    }
    if status != CONNECTPLUGIN_OK || sink == nil { ud.finalize() }
    return status
}
