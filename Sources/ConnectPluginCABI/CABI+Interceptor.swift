// C ABI: interceptors (connectplugin_interceptor_*), added to servers and client options, and the
// call handle their hooks get (connectplugin_interceptor_call_*). One start and one end callback
// per call; message callbacks only for interceptors that opt in.
import CConnectPluginABI
import ConnectPlugin
import ConnectPluginHTTP

/// A C interceptor. Servers, clients, options and the caller's handle each hold a reference; the
/// user_data finalizer runs when the last one goes.
final class CInterceptor: Interceptor, @unchecked Sendable {
    let startFn: connectplugin_interceptor_start_func?
    let endFn: connectplugin_interceptor_end_func?
    let ud: UserData
    private let lock = Lock()
    private var messageFn: connectplugin_interceptor_message_func?
    /// Adds that succeeded or are under way; the hooks are fixed while it is above zero. An add
    /// counts itself before it reaches the server or options (so that they never see a hook change)
    /// and takes itself back when it fails, so a failed add leaves the interceptor as it was.
    private var holds = 0
    /// The key of this interceptor's per-call state slot.
    private(set) var slotKey = ""

    init(start: connectplugin_interceptor_start_func?, end: connectplugin_interceptor_end_func?, ud: UserData) {
        startFn = start
        endFn = end
        self.ud = ud
        slotKey = "connectplugin.c-interceptor.\(UInt(bitPattern: Unmanaged.passUnretained(self).toOpaque()))"
    }

    deinit { ud.finalize() }

    func setMessageFn(_ f: connectplugin_interceptor_message_func?) throws {
        try lock.withLock {
            if holds > 0 { throw ConnectError.local(.state, "the message hook must be set before the interceptor is added") }
            messageFn = f
        }
    }

    /// Runs `add` (adding this interceptor to a server or options) with the hooks fixed; they stay
    /// fixed when it succeeds and are as before when it throws.
    func whileAdding(_ add: () throws -> Void) throws {
        lock.withLock { holds += 1 }
        do {
            try add()
        } catch {
            lock.withLock { holds -= 1 }
            throw error
        }
    }

    var observesMessages: Bool { lock.withLock { messageFn != nil } }

    func start(_ call: InterceptorCall) throws {
        guard let f = startFn else { return }
        let hook = HookCallBox(call, self, inStart: true)
        let handle = box(hook)
        let rc = f(handle, ud.pointer)
        release(handle, as: HookCallBox.self)
        if let r = hook.rejection { throw r }
        if rc != 0 { throw ConnectError(.internal, "interceptor start hook failed (returned \(rc))") }
    }

    func end(_ call: InterceptorCall, result: CallResult) {
        guard let f = endFn else { return }
        let hook = HookCallBox(call, self, inStart: false)
        hook.result = result
        let message = CBytes(result.message)
        let handle = box(hook)
        f(handle, connectplugin_code(result.code.rawValue), message.cString, ud.pointer)
        release(handle, as: HookCallBox.self)
    }

    func message(_ call: InterceptorCall, direction: MessageDirection, bytes: [UInt8]) {
        guard let f = lock.withLock({ messageFn }) else { return }
        let hook = HookCallBox(call, self, inStart: false)
        let handle = box(hook)
        bytes.withUnsafeBufferPointer { b in f(handle, direction.rawValue, b.baseAddress, b.count, ud.pointer) }
        release(handle, as: HookCallBox.self)
    }
}

/// What one hook gets as `connectplugin_interceptor_call *`; valid while the hook runs. The hooks
/// of one call run one at a time, so the lazily built C copies need no lock.
final class HookCallBox {
    let call: InterceptorCall
    let owner: CInterceptor
    let inStart: Bool
    var rejection: ConnectError?
    var result: CallResult?
    lazy var procedure = CBytes(call.procedure)
    lazy var proto = CBytes(call.rpcProtocol.rawValue)
    lazy var codec = CBytes(call.codec)
    lazy var peer: MetadataBox? = peerMetadata(call.peer)
    lazy var responseHeaders: MetadataBox? = result.map { MetadataBox($0.responseHeaders) }
    lazy var responseTrailers: MetadataBox? = result.map { MetadataBox($0.trailers) }
    private var headers: MetadataBox?
    private var headersCount = -1
    /// Earlier request-header snapshots: a start hook may still hold one after adding a header,
    /// and the header promises borrowed results live until the hook returns.
    private var retiredHeaders: [MetadataBox] = []

    init(_ call: InterceptorCall, _ owner: CInterceptor, inStart: Bool) {
        self.call = call
        self.owner = owner
        self.inStart = inStart
    }

    /// The request headers, rebuilt when a start hook added some.
    var requestHeaders: MetadataBox {
        let md = call.requestHeaders
        if let h = headers, headersCount == md.count { return h }
        let h = MetadataBox(md)
        if let old = headers { retiredHeaders.append(old) }
        headers = h
        headersCount = md.count
        return h
    }
}

private func hookArg(_ c: OpaquePointer?) throws -> HookCallBox {
    guard let b = unbox(c, as: HookCallBox.self) else { throw ConnectError.local(.invalidArgument, "call is NULL") }
    return b
}

private func interceptorArg(_ i: OpaquePointer?) throws -> CInterceptor {
    guard let b = unbox(i, as: CInterceptor.self) else { throw ConnectError.local(.invalidArgument, "interceptor is NULL") }
    return b
}

private func unretained(_ m: MetadataBox?) -> OpaquePointer? {
    guard let m else { return nil }
    return OpaquePointer(Unmanaged.passUnretained(m).toOpaque())
}

@_cdecl("connectplugin_interceptor_new")
public func connectplugin_interceptor_new(_ start: connectplugin_interceptor_start_func?, _ end: connectplugin_interceptor_end_func?,
                                          _ userData: UnsafeMutableRawPointer?, _ userDataFree: connectplugin_free_func?,
                                          _ out: UnsafeMutablePointer<OpaquePointer?>?,
                                          _ err: UnsafeMutablePointer<OpaquePointer?>?) -> connectplugin_status {
    out?.pointee = nil
    let ud = UserData(userData, userDataFree)
    let status = guarded(err) {
        guard let out else { throw ConnectError.local(.invalidArgument, "out_interceptor is NULL") }
        if start == nil && end == nil { throw ConnectError.local(.invalidArgument, "an interceptor needs a start or an end hook") }
        out.pointee = box(CInterceptor(start: start, end: end, ud: ud))
    }
    if status != CONNECTPLUGIN_OK { ud.finalize() }
    return status
}

@_cdecl("connectplugin_interceptor_set_message_func")
public func connectplugin_interceptor_set_message_func(_ i: OpaquePointer?, _ f: connectplugin_interceptor_message_func?,
                                                       _ err: UnsafeMutablePointer<OpaquePointer?>?) -> connectplugin_status {
    guarded(err) { try interceptorArg(i).setMessageFn(f) }
}

@_cdecl("connectplugin_interceptor_free")
public func connectplugin_interceptor_free(_ i: OpaquePointer?) { release(i, as: CInterceptor.self) }

@_cdecl("connectplugin_server_add_interceptor")
public func connectplugin_server_add_interceptor(_ s: OpaquePointer?, _ procedure: UnsafePointer<CChar>?, _ i: OpaquePointer?,
                                                 _ err: UnsafeMutablePointer<OpaquePointer?>?) -> connectplugin_status {
    guarded(err) {
        guard let b = unbox(s, as: ServerBox.self) else { throw ConnectError.local(.invalidArgument, "server is NULL") }
        let ic = try interceptorArg(i)
        try ic.whileAdding { try b.server.addInterceptor(ic, procedure: str(procedure)) }
    }
}

@_cdecl("connectplugin_client_options_add_interceptor")
public func connectplugin_client_options_add_interceptor(_ o: OpaquePointer?, _ i: OpaquePointer?,
                                                         _ err: UnsafeMutablePointer<OpaquePointer?>?) -> connectplugin_status {
    guarded(err) {
        guard let b = unbox(o, as: ClientOptionsBox.self) else { throw ConnectError.local(.invalidArgument, "options is NULL") }
        let ic = try interceptorArg(i)
        try ic.whileAdding { b.options.interceptors.append(ic) }
    }
}

// MARK: Inside a hook

@_cdecl("connectplugin_interceptor_call_procedure")
public func connectplugin_interceptor_call_procedure(_ c: OpaquePointer?) -> UnsafePointer<CChar>? {
    unbox(c, as: HookCallBox.self)?.procedure.cString
}

@_cdecl("connectplugin_interceptor_call_kind")
public func connectplugin_interceptor_call_kind(_ c: OpaquePointer?) -> connectplugin_method_kind {
    unbox(c, as: HookCallBox.self)?.call.kind.rawValue ?? -1
}

@_cdecl("connectplugin_interceptor_call_protocol")
public func connectplugin_interceptor_call_protocol(_ c: OpaquePointer?) -> UnsafePointer<CChar>? {
    unbox(c, as: HookCallBox.self)?.proto.cString
}

@_cdecl("connectplugin_interceptor_call_codec")
public func connectplugin_interceptor_call_codec(_ c: OpaquePointer?) -> UnsafePointer<CChar>? {
    unbox(c, as: HookCallBox.self)?.codec.cString
}

@_cdecl("connectplugin_interceptor_call_is_server")
public func connectplugin_interceptor_call_is_server(_ c: OpaquePointer?) -> Int32 {
    guard let b = unbox(c, as: HookCallBox.self) else { return -1 }
    return b.call.side == .server ? 1 : 0
}

@_cdecl("connectplugin_interceptor_call_peer")
public func connectplugin_interceptor_call_peer(_ c: OpaquePointer?) -> OpaquePointer? {
    unretained(unbox(c, as: HookCallBox.self)?.peer)
}

@_cdecl("connectplugin_interceptor_call_request_headers")
public func connectplugin_interceptor_call_request_headers(_ c: OpaquePointer?) -> OpaquePointer? {
    unretained(unbox(c, as: HookCallBox.self)?.requestHeaders)
}

@_cdecl("connectplugin_interceptor_call_timeout_remaining_ms")
public func connectplugin_interceptor_call_timeout_remaining_ms(_ c: OpaquePointer?) -> Int64 {
    unbox(c, as: HookCallBox.self)?.call.timeoutRemainingMs ?? -1
}

@_cdecl("connectplugin_interceptor_call_response_headers")
public func connectplugin_interceptor_call_response_headers(_ c: OpaquePointer?) -> OpaquePointer? {
    unretained(unbox(c, as: HookCallBox.self)?.responseHeaders)
}

@_cdecl("connectplugin_interceptor_call_response_trailers")
public func connectplugin_interceptor_call_response_trailers(_ c: OpaquePointer?) -> OpaquePointer? {
    unretained(unbox(c, as: HookCallBox.self)?.responseTrailers)
}

@_cdecl("connectplugin_interceptor_call_set_state")
public func connectplugin_interceptor_call_set_state(_ c: OpaquePointer?, _ state: UnsafeMutableRawPointer?) {
    guard let b = unbox(c, as: HookCallBox.self) else { return }
    b.call.setValue(state.map { UInt(bitPattern: $0) }, forKey: b.owner.slotKey)
}

@_cdecl("connectplugin_interceptor_call_state")
public func connectplugin_interceptor_call_state(_ c: OpaquePointer?) -> UnsafeMutableRawPointer? {
    guard let b = unbox(c, as: HookCallBox.self), let v = b.call.value(forKey: b.owner.slotKey) as? UInt else { return nil }
    return UnsafeMutableRawPointer(bitPattern: v)
}

@_cdecl("connectplugin_interceptor_call_reject")
public func connectplugin_interceptor_call_reject(_ c: OpaquePointer?, _ code: connectplugin_code, _ message: UnsafePointer<CChar>?,
                                                  _ err: UnsafeMutablePointer<OpaquePointer?>?) -> connectplugin_status {
    guarded(err) {
        let b = try hookArg(c)
        guard b.inStart else { throw ConnectError.local(.state, "a call can only be rejected in a start hook") }
        let cd = Code(wire: Int64(code))
        b.rejection = ConnectError(cd == .ok ? .unknown : cd, str(message) ?? "")
    }
}

/// The add_request_header / add_response_header / add_response_trailer body: argument checks, then `add`.
private func addEntry(_ c: OpaquePointer?, _ key: UnsafePointer<CChar>?, _ value: UnsafePointer<UInt8>?, _ len: Int,
                      _ err: UnsafeMutablePointer<OpaquePointer?>?,
                      _ add: (InterceptorCall, String, [UInt8]) throws -> Void) -> connectplugin_status {
    guarded(err) {
        let b = try hookArg(c)
        guard let k = str(key), let v = bytesArg(value, len) else { throw ConnectError.local(.invalidArgument, "key or value is NULL") }
        try add(b.call, k, v)
    }
}

@_cdecl("connectplugin_interceptor_call_add_request_header")
public func connectplugin_interceptor_call_add_request_header(_ c: OpaquePointer?, _ key: UnsafePointer<CChar>?, _ value: UnsafePointer<UInt8>?,
                                                              _ len: Int, _ err: UnsafeMutablePointer<OpaquePointer?>?) -> connectplugin_status {
    addEntry(c, key, value, len, err) { try $0.addRequestHeader($1, $2) }
}

@_cdecl("connectplugin_interceptor_call_add_response_header")
public func connectplugin_interceptor_call_add_response_header(_ c: OpaquePointer?, _ key: UnsafePointer<CChar>?, _ value: UnsafePointer<UInt8>?,
                                                               _ len: Int, _ err: UnsafeMutablePointer<OpaquePointer?>?) -> connectplugin_status {
    addEntry(c, key, value, len, err) { try $0.addResponseHeader($1, $2) }
}

@_cdecl("connectplugin_interceptor_call_add_response_trailer")
public func connectplugin_interceptor_call_add_response_trailer(_ c: OpaquePointer?, _ key: UnsafePointer<CChar>?, _ value: UnsafePointer<UInt8>?,
                                                                _ len: Int, _ err: UnsafeMutablePointer<OpaquePointer?>?) -> connectplugin_status {
    addEntry(c, key, value, len, err) { try $0.addResponseTrailer($1, $2) }
}
