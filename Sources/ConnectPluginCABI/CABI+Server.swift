// C ABI: server options, server, and the call handle handlers receive.
import CConnectPluginABI
import ConnectPlugin
import ConnectPluginHTTP

final class ServerOptionsBox { var options = RPCServer.Options() }

/// A registered user_data and its finalizer, called exactly once.
final class UserData {
    let pointer: UnsafeMutableRawPointer?
    let free: connectplugin_free_func?
    private var freed = false
    private let lock = Lock()
    init(_ p: UnsafeMutableRawPointer?, _ f: connectplugin_free_func?) {
        pointer = p
        free = f
    }
    func finalize() {
        let run: Bool = lock.withLock {
            if freed { return false }
            freed = true
            return true
        }
        if run, let f = free { f(pointer) }
    }
}

final class ServerBox {
    let server: RPCServer
    private let lock = Lock()
    private var addressCache: [CBytes] = []
    /// Strings handed out by connectplugin_server_address and no longer in the cache: the header
    /// promises they stay valid until the server is freed.
    private var retiredAddresses: [CBytes] = []
    private var userData: [UserData] = []

    init(_ s: RPCServer) { server = s }

    /// Listeners are only added, so the strings already handed out are kept as they are; only new
    /// addresses get new strings (and a changed one never frees the old string before the server).
    func refreshAddresses() {
        lock.withLock {
            // Read under our lock so that concurrent listens never install an older list.
            let now = server.addresses
            var fresh: [CBytes] = []
            fresh.reserveCapacity(now.count)
            for (i, a) in now.enumerated() {
                if i < addressCache.count, addressCache[i].equals(a) {
                    fresh.append(addressCache[i])
                } else {
                    if i < addressCache.count { retiredAddresses.append(addressCache[i]) }
                    fresh.append(CBytes(a))
                }
            }
            if addressCache.count > now.count { retiredAddresses.append(contentsOf: addressCache[now.count...]) }
            addressCache = fresh
        }
    }
    func address(_ i: Int) -> UnsafePointer<CChar>? {
        lock.withLock { i >= 0 && i < addressCache.count ? addressCache[i].cString : nil }
    }
    var addressCount: Int { lock.withLock { addressCache.count } }
    func keep(_ u: UserData) { lock.withLock { userData.append(u) } }
    /// The plugin this server serves as while connectplugin_plugin_serve runs (for set_health).
    private var servingPlugin: PluginServer?
    var plugin: PluginServer? {
        get { lock.withLock { servingPlugin } }
        set { lock.withLock { servingPlugin = newValue } }
    }
    func finalizeAll() {
        let all = lock.withLock { () -> [UserData] in
            let a = userData
            userData = []
            return a
        }
        for u in all { u.finalize() }
    }
}

/// What a handler gets as `connectplugin_call *`; valid while the handler runs.
final class CallBox {
    let call: UnaryCall
    let procedure: CBytes
    let codec: CBytes
    let request: CBytes
    let headers: MetadataBox
    let proto: CBytes
    let peer: MetadataBox?
    let doneHooks = DoneHooks()
    /// `procedure`: the registered procedure's bytes, made once at registration.
    init(_ c: UnaryCall, procedure: CBytes) {
        call = c
        self.procedure = procedure
        codec = CBytes.interned(c.codec)
        request = CBytes(c.request)
        headers = MetadataBox(c.requestHeaders)
        proto = CBytes.interned(c.protocolName)
        peer = peerMetadata(c.peer)
    }
}

@_cdecl("connectplugin_server_options_new")
public func connectplugin_server_options_new() -> OpaquePointer? { box(ServerOptionsBox()) }

@_cdecl("connectplugin_server_options_set_max_message_bytes")
public func connectplugin_server_options_set_max_message_bytes(_ o: OpaquePointer?, _ max: UInt64, _ err: UnsafeMutablePointer<OpaquePointer?>?) -> connectplugin_status {
    guarded(err) {
        guard let b = unbox(o, as: ServerOptionsBox.self) else { throw ConnectError.local(.invalidArgument, "options is NULL") }
        guard max <= UInt64(Int.max / 2) else { throw ConnectError.local(.invalidArgument, "max_message_bytes is too large") }
        b.options.maxMessageBytes = Int(max)
    }
}

@_cdecl("connectplugin_server_options_set_handler_threads")
public func connectplugin_server_options_set_handler_threads(_ o: OpaquePointer?, _ n: UInt32, _ err: UnsafeMutablePointer<OpaquePointer?>?) -> connectplugin_status {
    guarded(err) {
        guard let b = unbox(o, as: ServerOptionsBox.self) else { throw ConnectError.local(.invalidArgument, "options is NULL") }
        guard n >= 1 && n <= 1024 else { throw ConnectError.local(.invalidArgument, "handler_threads must be 1 to 1024, got \(n)") }
        b.options.handlerThreads = Int(n)
    }
}

@_cdecl("connectplugin_server_options_set_stream_limits")
public func connectplugin_server_options_set_stream_limits(_ o: OpaquePointer?, _ perConnection: UInt32, _ perPeer: UInt32, _ total: UInt32,
                                                           _ err: UnsafeMutablePointer<OpaquePointer?>?) -> connectplugin_status {
    guarded(err) {
        guard let b = unbox(o, as: ServerOptionsBox.self) else { throw ConnectError.local(.invalidArgument, "options is NULL") }
        for (name, v) in [("per_connection", perConnection), ("per_peer", perPeer), ("total", total)] where v > 1 << 20 {
            throw ConnectError.local(.invalidArgument, "\(name) must be 1 to 1048576 (0 keeps the default), got \(v)")
        }
        let defaults = RPCServer.Options()
        b.options.maxStreamsPerConnection = perConnection == 0 ? defaults.maxStreamsPerConnection : Int(perConnection)
        b.options.maxStreamsPerPeer = perPeer == 0 ? defaults.maxStreamsPerPeer : Int(perPeer)
        b.options.maxStreams = total == 0 ? defaults.maxStreams : Int(total)
    }
}

@_cdecl("connectplugin_server_options_set_idle_thread_timeout_ms")
public func connectplugin_server_options_set_idle_thread_timeout_ms(_ o: OpaquePointer?, _ ms: UInt32, _ err: UnsafeMutablePointer<OpaquePointer?>?) -> connectplugin_status {
    guarded(err) {
        guard let b = unbox(o, as: ServerOptionsBox.self) else { throw ConnectError.local(.invalidArgument, "options is NULL") }
        guard ms >= 1 && ms <= 86_400_000 else { throw ConnectError.local(.invalidArgument, "timeout_ms must be 1 to 86400000, got \(ms)") }
        b.options.idleThreadTimeoutMs = Int64(ms)
    }
}

@_cdecl("connectplugin_server_options_free")
public func connectplugin_server_options_free(_ o: OpaquePointer?) { release(o, as: ServerOptionsBox.self) }

@_cdecl("connectplugin_server_new")
public func connectplugin_server_new(_ o: OpaquePointer?, _ out: UnsafeMutablePointer<OpaquePointer?>?, _ err: UnsafeMutablePointer<OpaquePointer?>?) -> connectplugin_status {
    out?.pointee = nil
    return guarded(err) {
        guard let out else { throw ConnectError.local(.invalidArgument, "out_server is NULL") }
        let opts = unbox(o, as: ServerOptionsBox.self)?.options ?? RPCServer.Options()
        out.pointee = box(ServerBox(try RPCServer(options: opts)))
    }
}

@_cdecl("connectplugin_server_handler_thread_count")
public func connectplugin_server_handler_thread_count(_ s: OpaquePointer?) -> Int {
    unbox(s, as: ServerBox.self)?.server.handlerThreadCount ?? 0
}

private func serverArg(_ s: OpaquePointer?) throws -> ServerBox {
    guard let b = unbox(s, as: ServerBox.self) else { throw ConnectError.local(.invalidArgument, "server is NULL") }
    return b
}

@_cdecl("connectplugin_server_listen_tcp")
public func connectplugin_server_listen_tcp(_ s: OpaquePointer?, _ addr: UnsafePointer<CChar>?, _ err: UnsafeMutablePointer<OpaquePointer?>?) -> connectplugin_status {
    guarded(err) {
        let b = try serverArg(s)
        guard let a = str(addr) else { throw ConnectError.local(.invalidArgument, "host_port is NULL") }
        _ = try b.server.listenTCP(a)
        b.refreshAddresses()
    }
}

@_cdecl("connectplugin_server_listen_unix")
public func connectplugin_server_listen_unix(_ s: OpaquePointer?, _ path: UnsafePointer<CChar>?, _ err: UnsafeMutablePointer<OpaquePointer?>?) -> connectplugin_status {
    guarded(err) {
        let b = try serverArg(s)
        guard let p = str(path) else { throw ConnectError.local(.invalidArgument, "path is NULL") }
        _ = try b.server.listenUnix(p)
        b.refreshAddresses()
    }
}

@_cdecl("connectplugin_server_listen_inprocess")
public func connectplugin_server_listen_inprocess(_ s: OpaquePointer?, _ name: UnsafePointer<CChar>?, _ err: UnsafeMutablePointer<OpaquePointer?>?) -> connectplugin_status {
    guarded(err) {
        let b = try serverArg(s)
        guard let n = str(name) else { throw ConnectError.local(.invalidArgument, "name is NULL") }
        _ = try b.server.listenInProcess(n)
        b.refreshAddresses()
    }
}

@_cdecl("connectplugin_server_address_count")
public func connectplugin_server_address_count(_ s: OpaquePointer?) -> Int { unbox(s, as: ServerBox.self)?.addressCount ?? 0 }

@_cdecl("connectplugin_server_address")
public func connectplugin_server_address(_ s: OpaquePointer?, _ i: Int) -> UnsafePointer<CChar>? { unbox(s, as: ServerBox.self)?.address(i) }

@_cdecl("connectplugin_server_register_unary")
public func connectplugin_server_register_unary(_ s: OpaquePointer?, _ procedure: UnsafePointer<CChar>?, _ handler: connectplugin_unary_handler?,
                                                _ userData: UnsafeMutableRawPointer?, _ userDataFree: connectplugin_free_func?,
                                                _ err: UnsafeMutablePointer<OpaquePointer?>?) -> connectplugin_status {
    registerUnary(s, procedure, handler, userData, userDataFree, err, inline: false)
}

@_cdecl("connectplugin_server_register_unary_inline")
public func connectplugin_server_register_unary_inline(_ s: OpaquePointer?, _ procedure: UnsafePointer<CChar>?, _ handler: connectplugin_unary_handler?,
                                                       _ userData: UnsafeMutableRawPointer?, _ userDataFree: connectplugin_free_func?,
                                                       _ err: UnsafeMutablePointer<OpaquePointer?>?) -> connectplugin_status {
    registerUnary(s, procedure, handler, userData, userDataFree, err, inline: true)
}

private func registerUnary(_ s: OpaquePointer?, _ procedure: UnsafePointer<CChar>?, _ handler: connectplugin_unary_handler?,
                           _ userData: UnsafeMutableRawPointer?, _ userDataFree: connectplugin_free_func?,
                           _ err: UnsafeMutablePointer<OpaquePointer?>?, inline: Bool) -> connectplugin_status {
    let ud = UserData(userData, userDataFree)
    let status = guarded(err) {
        let b = try serverArg(s)
        guard let p = str(procedure) else { throw ConnectError.local(.invalidArgument, "procedure is NULL") }
        guard let handler else { throw ConnectError.local(.invalidArgument, "handler is NULL") }
        let procedureBytes = CBytes(p)
        try b.server.register(p, inline: inline) { call in
            let cb = CallBox(call, procedure: procedureBytes)
            let handle = box(cb)
            handler(handle, ud.pointer)
            cb.doneHooks.clearAll()
            release(handle, as: CallBox.self)
        }
        b.keep(ud)
    }
    if status != CONNECTPLUGIN_OK { ud.finalize() }
    return status
}

@_cdecl("connectplugin_server_start")
public func connectplugin_server_start(_ s: OpaquePointer?, _ err: UnsafeMutablePointer<OpaquePointer?>?) -> connectplugin_status {
    guarded(err) { try serverArg(s).server.start() }
}

@_cdecl("connectplugin_server_stop")
public func connectplugin_server_stop(_ s: OpaquePointer?, _ graceMs: Int64, _ err: UnsafeMutablePointer<OpaquePointer?>?) -> connectplugin_status {
    guarded(err) { try serverArg(s).server.stop(graceMs: graceMs) }
}

@_cdecl("connectplugin_server_free")
public func connectplugin_server_free(_ s: OpaquePointer?) {
    guard let b = unbox(s, as: ServerBox.self) else { return }
    b.server.stop(graceMs: 0)
    b.finalizeAll()
    release(s, as: ServerBox.self)
}

// MARK: Calls

private func callArg(_ c: OpaquePointer?) throws -> CallBox {
    guard let b = unbox(c, as: CallBox.self) else { throw ConnectError.local(.invalidArgument, "call is NULL") }
    return b
}

@_cdecl("connectplugin_call_request")
public func connectplugin_call_request(_ c: OpaquePointer?, _ outLen: UnsafeMutablePointer<Int>?) -> UnsafePointer<UInt8>? {
    guard let b = unbox(c, as: CallBox.self) else {
        outLen?.pointee = 0
        return nil
    }
    outLen?.pointee = b.request.count
    return b.request.bytes
}

@_cdecl("connectplugin_call_procedure")
public func connectplugin_call_procedure(_ c: OpaquePointer?) -> UnsafePointer<CChar>? { unbox(c, as: CallBox.self)?.procedure.cString }

@_cdecl("connectplugin_call_codec")
public func connectplugin_call_codec(_ c: OpaquePointer?) -> UnsafePointer<CChar>? { unbox(c, as: CallBox.self)?.codec.cString }

@_cdecl("connectplugin_call_request_headers")
public func connectplugin_call_request_headers(_ c: OpaquePointer?) -> OpaquePointer? {
    guard let b = unbox(c, as: CallBox.self) else { return nil }
    return OpaquePointer(Unmanaged.passUnretained(b.headers).toOpaque())
}

@_cdecl("connectplugin_call_timeout_remaining_ms")
public func connectplugin_call_timeout_remaining_ms(_ c: OpaquePointer?) -> Int64 { unbox(c, as: CallBox.self)?.call.timeoutRemainingMs ?? -1 }

@_cdecl("connectplugin_call_is_done")
public func connectplugin_call_is_done(_ c: OpaquePointer?) -> Int32 {
    guard let b = unbox(c, as: CallBox.self) else { return 1 }
    return b.call.isDone ? 1 : 0
}

@_cdecl("connectplugin_call_add_response_header")
public func connectplugin_call_add_response_header(_ c: OpaquePointer?, _ key: UnsafePointer<CChar>?, _ value: UnsafePointer<UInt8>?, _ len: Int,
                                                   _ err: UnsafeMutablePointer<OpaquePointer?>?) -> connectplugin_status {
    guarded(err) {
        let b = try callArg(c)
        guard let k = str(key), let v = bytesArg(value, len) else { throw ConnectError.local(.invalidArgument, "key or value is NULL") }
        try b.call.addResponseHeader(k, v)
    }
}

@_cdecl("connectplugin_call_add_response_trailer")
public func connectplugin_call_add_response_trailer(_ c: OpaquePointer?, _ key: UnsafePointer<CChar>?, _ value: UnsafePointer<UInt8>?, _ len: Int,
                                                    _ err: UnsafeMutablePointer<OpaquePointer?>?) -> connectplugin_status {
    guarded(err) {
        let b = try callArg(c)
        guard let k = str(key), let v = bytesArg(value, len) else { throw ConnectError.local(.invalidArgument, "key or value is NULL") }
        try b.call.addResponseTrailer(k, v)
    }
}

@_cdecl("connectplugin_call_respond")
public func connectplugin_call_respond(_ c: OpaquePointer?, _ data: UnsafePointer<UInt8>?, _ len: Int, _ err: UnsafeMutablePointer<OpaquePointer?>?) -> connectplugin_status {
    guarded(err) {
        let b = try callArg(c)
        guard let d = bytesArg(data, len) else { throw ConnectError.local(.invalidArgument, "data is NULL") }
        b.doneHooks.clearAll()
        try b.call.respond(d)
    }
}

@_cdecl("connectplugin_call_add_error_detail")
public func connectplugin_call_add_error_detail(_ c: OpaquePointer?, _ type: UnsafePointer<CChar>?, _ value: UnsafePointer<UInt8>?, _ len: Int,
                                                _ err: UnsafeMutablePointer<OpaquePointer?>?) -> connectplugin_status {
    guarded(err) {
        let b = try callArg(c)
        guard let t = str(type), let v = bytesArg(value, len) else { throw ConnectError.local(.invalidArgument, "type or value is NULL") }
        try b.call.addErrorDetail(ErrorDetail(type: t, value: v))
    }
}

@_cdecl("connectplugin_call_fail")
public func connectplugin_call_fail(_ c: OpaquePointer?, _ code: connectplugin_code, _ message: UnsafePointer<CChar>?, _ err: UnsafeMutablePointer<OpaquePointer?>?) -> connectplugin_status {
    guarded(err) {
        let b = try callArg(c)
        let cd = Code(wire: Int64(code))
        b.doneHooks.clearAll()
        try b.call.fail(cd == .ok ? .unknown : cd, str(message) ?? "")
    }
}
