// C ABI: streaming handlers on the server and streaming calls on the client. The host's own thread
// pulls and pushes messages with blocking calls (no foreign-thread callback per message).
import CConnectPluginABI
import ConnectPlugin
import ConnectPluginHTTP

/// The peer identity as a metadata list ("subject", "dns", "uri", "ip").
func peerMetadata(_ p: HTTPPeerInfo?) -> MetadataBox? {
    guard let p else { return nil }
    var m = Metadata()
    m.appendUnchecked("subject", Array(p.subject.utf8))
    for d in p.dnsNames { m.appendUnchecked("dns", Array(d.utf8)) }
    for u in p.uris { m.appendUnchecked("uri", Array(u.utf8)) }
    for i in p.ips { m.appendUnchecked("ip", Array(i.utf8)) }
    return MetadataBox(m)
}

@inline(__always) func borrowed(_ m: MetadataBox?) -> OpaquePointer? {
    guard let m else { return nil }
    return OpaquePointer(Unmanaged.passUnretained(m).toOpaque())
}

/// What a streaming handler gets as `connectplugin_stream *`.
final class StreamBox {
    let call: StreamCall
    let procedure: CBytes
    let codec: CBytes
    let proto: CBytes
    let headers: MetadataBox
    let peer: MetadataBox?
    var last: CBytes?
    let doneHooks = DoneHooks()
    /// `procedure`: the registered procedure's bytes, made once at registration.
    init(_ c: StreamCall, procedure: CBytes) {
        call = c
        self.procedure = procedure
        codec = CBytes.interned(c.codec)
        proto = CBytes.interned(c.protocolName)
        headers = MetadataBox(c.requestHeaders)
        peer = peerMetadata(c.peer)
    }
}

private func streamArg(_ s: OpaquePointer?) throws -> StreamBox {
    guard let b = unbox(s, as: StreamBox.self) else { throw ConnectError.local(.invalidArgument, "stream is NULL") }
    return b
}

func methodKind(_ k: connectplugin_method_kind) -> MethodKind? {
    switch k {
    case CONNECTPLUGIN_UNARY: return .unary
    case CONNECTPLUGIN_CLIENT_STREAM: return .clientStream
    case CONNECTPLUGIN_SERVER_STREAM: return .serverStream
    case CONNECTPLUGIN_BIDI_STREAM: return .bidiStream
    default: return nil
    }
}

@_cdecl("connectplugin_server_register_stream")
public func connectplugin_server_register_stream(_ s: OpaquePointer?, _ procedure: UnsafePointer<CChar>?, _ kind: connectplugin_method_kind,
                                                 _ handler: connectplugin_stream_handler?, _ userData: UnsafeMutableRawPointer?,
                                                 _ userDataFree: connectplugin_free_func?,
                                                 _ err: UnsafeMutablePointer<OpaquePointer?>?) -> connectplugin_status {
    let ud = UserData(userData, userDataFree)
    let status = guarded(err) {
        guard let b = unbox(s, as: ServerBox.self) else { throw ConnectError.local(.invalidArgument, "server is NULL") }
        guard let p = str(procedure) else { throw ConnectError.local(.invalidArgument, "procedure is NULL") }
        guard let handler else { throw ConnectError.local(.invalidArgument, "handler is NULL") }
        guard let k = methodKind(kind), k != .unary else {
            throw ConnectError.local(.invalidArgument, "kind must be CONNECTPLUGIN_CLIENT_STREAM, CONNECTPLUGIN_SERVER_STREAM or CONNECTPLUGIN_BIDI_STREAM, got \(kind)")
        }
        let procedureBytes = CBytes(p)
        try b.server.register(p, kind: k) { call in
            let sb = StreamBox(call, procedure: procedureBytes)
            let handle = box(sb)
            handler(handle, ud.pointer)
            sb.doneHooks.clearAll()
            release(handle, as: StreamBox.self)
        }
        b.keep(ud)
    }
    if status != CONNECTPLUGIN_OK { ud.finalize() }
    return status
}

@_cdecl("connectplugin_server_set_no_side_effects")
public func connectplugin_server_set_no_side_effects(_ s: OpaquePointer?, _ procedure: UnsafePointer<CChar>?,
                                                     _ err: UnsafeMutablePointer<OpaquePointer?>?) -> connectplugin_status {
    guarded(err) {
        guard let b = unbox(s, as: ServerBox.self) else { throw ConnectError.local(.invalidArgument, "server is NULL") }
        guard let p = str(procedure) else { throw ConnectError.local(.invalidArgument, "procedure is NULL") }
        try b.server.setNoSideEffects(p)
    }
}

@_cdecl("connectplugin_call_protocol")
public func connectplugin_call_protocol(_ c: OpaquePointer?) -> UnsafePointer<CChar>? { unbox(c, as: CallBox.self)?.proto.cString }

@_cdecl("connectplugin_call_peer")
public func connectplugin_call_peer(_ c: OpaquePointer?) -> OpaquePointer? { borrowed(unbox(c, as: CallBox.self)?.peer) }

@_cdecl("connectplugin_stream_procedure")
public func connectplugin_stream_procedure(_ s: OpaquePointer?) -> UnsafePointer<CChar>? { unbox(s, as: StreamBox.self)?.procedure.cString }

@_cdecl("connectplugin_stream_codec")
public func connectplugin_stream_codec(_ s: OpaquePointer?) -> UnsafePointer<CChar>? { unbox(s, as: StreamBox.self)?.codec.cString }

@_cdecl("connectplugin_stream_protocol")
public func connectplugin_stream_protocol(_ s: OpaquePointer?) -> UnsafePointer<CChar>? { unbox(s, as: StreamBox.self)?.proto.cString }

@_cdecl("connectplugin_stream_kind")
public func connectplugin_stream_kind(_ s: OpaquePointer?) -> connectplugin_method_kind {
    guard let b = unbox(s, as: StreamBox.self) else { return -1 }
    return b.call.kind.rawValue
}

@_cdecl("connectplugin_stream_request_headers")
public func connectplugin_stream_request_headers(_ s: OpaquePointer?) -> OpaquePointer? { borrowed(unbox(s, as: StreamBox.self)?.headers) }

@_cdecl("connectplugin_stream_peer")
public func connectplugin_stream_peer(_ s: OpaquePointer?) -> OpaquePointer? { borrowed(unbox(s, as: StreamBox.self)?.peer) }

@_cdecl("connectplugin_stream_timeout_remaining_ms")
public func connectplugin_stream_timeout_remaining_ms(_ s: OpaquePointer?) -> Int64 { unbox(s, as: StreamBox.self)?.call.timeoutRemainingMs ?? -1 }

@_cdecl("connectplugin_stream_is_done")
public func connectplugin_stream_is_done(_ s: OpaquePointer?) -> Int32 {
    guard let b = unbox(s, as: StreamBox.self) else { return 1 }
    return b.call.isDone ? 1 : 0
}

@_cdecl("connectplugin_stream_receive")
public func connectplugin_stream_receive(_ s: OpaquePointer?, _ outData: UnsafeMutablePointer<UnsafePointer<UInt8>?>?, _ outLen: UnsafeMutablePointer<Int>?,
                                         _ err: UnsafeMutablePointer<OpaquePointer?>?) -> connectplugin_status {
    outData?.pointee = nil
    outLen?.pointee = 0
    var eof = false
    let st = guarded(err) {
        let b = try streamArg(s)
        // Refuse before taking a message: it must not be lost.
        guard outData != nil, outLen != nil else { throw ConnectError.local(.invalidArgument, "out_data and out_len must not be NULL") }
        guard let m = try b.call.receive() else {
            eof = true
            return
        }
        let c = CBytes(m)
        b.last = c
        outData?.pointee = c.bytes
        outLen?.pointee = c.count
    }
    return st == CONNECTPLUGIN_OK && eof ? CONNECTPLUGIN_EOF : st
}

@_cdecl("connectplugin_stream_send")
public func connectplugin_stream_send(_ s: OpaquePointer?, _ data: UnsafePointer<UInt8>?, _ len: Int, _ err: UnsafeMutablePointer<OpaquePointer?>?) -> connectplugin_status {
    guarded(err) {
        let b = try streamArg(s)
        guard let d = bytesArg(data, len) else { throw ConnectError.local(.invalidArgument, "data is NULL") }
        try b.call.send(d)
    }
}

@_cdecl("connectplugin_stream_send_headers")
public func connectplugin_stream_send_headers(_ s: OpaquePointer?, _ err: UnsafeMutablePointer<OpaquePointer?>?) -> connectplugin_status {
    guarded(err) { try streamArg(s).call.sendHeaders() }
}

@_cdecl("connectplugin_stream_add_response_header")
public func connectplugin_stream_add_response_header(_ s: OpaquePointer?, _ key: UnsafePointer<CChar>?, _ value: UnsafePointer<UInt8>?, _ len: Int,
                                                     _ err: UnsafeMutablePointer<OpaquePointer?>?) -> connectplugin_status {
    guarded(err) {
        let b = try streamArg(s)
        guard let k = str(key), let v = bytesArg(value, len) else { throw ConnectError.local(.invalidArgument, "key or value is NULL") }
        try b.call.addResponseHeader(k, v)
    }
}

@_cdecl("connectplugin_stream_add_response_trailer")
public func connectplugin_stream_add_response_trailer(_ s: OpaquePointer?, _ key: UnsafePointer<CChar>?, _ value: UnsafePointer<UInt8>?, _ len: Int,
                                                      _ err: UnsafeMutablePointer<OpaquePointer?>?) -> connectplugin_status {
    guarded(err) {
        let b = try streamArg(s)
        guard let k = str(key), let v = bytesArg(value, len) else { throw ConnectError.local(.invalidArgument, "key or value is NULL") }
        try b.call.addResponseTrailer(k, v)
    }
}

@_cdecl("connectplugin_stream_add_error_detail")
public func connectplugin_stream_add_error_detail(_ s: OpaquePointer?, _ type: UnsafePointer<CChar>?, _ value: UnsafePointer<UInt8>?, _ len: Int,
                                                  _ err: UnsafeMutablePointer<OpaquePointer?>?) -> connectplugin_status {
    guarded(err) {
        let b = try streamArg(s)
        guard let t = str(type), let v = bytesArg(value, len) else { throw ConnectError.local(.invalidArgument, "type or value is NULL") }
        try b.call.addErrorDetail(ErrorDetail(type: t, value: v))
    }
}

@_cdecl("connectplugin_stream_fail")
public func connectplugin_stream_fail(_ s: OpaquePointer?, _ code: connectplugin_code, _ message: UnsafePointer<CChar>?,
                                      _ err: UnsafeMutablePointer<OpaquePointer?>?) -> connectplugin_status {
    guarded(err) {
        let b = try streamArg(s)
        let cd = Code(wire: Int64(code))
        b.doneHooks.clearAll()
        try b.call.fail(cd == .ok ? .unknown : cd, str(message) ?? "")
    }
}

@_cdecl("connectplugin_stream_finish")
public func connectplugin_stream_finish(_ s: OpaquePointer?, _ err: UnsafeMutablePointer<OpaquePointer?>?) -> connectplugin_status {
    guarded(err) {
        let b = try streamArg(s)
        b.doneHooks.clearAll()
        try b.call.finish()
    }
}

// MARK: Client streams

final class ClientStreamBox {
    let stream: ClientStream
    let lock = Lock()
    var last: CBytes?
    var headers: MetadataBox?
    var trailers: MetadataBox?
    let emptyHeaders = MetadataBox()
    init(_ s: ClientStream) { stream = s }
}

@_cdecl("connectplugin_client_open_stream")
public func connectplugin_client_open_stream(_ c: OpaquePointer?, _ procedure: UnsafePointer<CChar>?, _ kind: connectplugin_method_kind,
                                             _ o: OpaquePointer?, _ out: UnsafeMutablePointer<OpaquePointer?>?,
                                             _ err: UnsafeMutablePointer<OpaquePointer?>?) -> connectplugin_status {
    out?.pointee = nil
    return guarded(err) {
        guard let out else { throw ConnectError.local(.invalidArgument, "out_stream is NULL") }
        guard let b = unbox(c, as: ClientBox.self) else { throw ConnectError.local(.invalidArgument, "client is NULL") }
        guard let p = str(procedure) else { throw ConnectError.local(.invalidArgument, "procedure is NULL") }
        guard let k = methodKind(kind) else { throw ConnectError.local(.invalidArgument, "unknown method kind \(kind)") }
        let opts = unbox(o, as: CallOptionsBox.self)
        let s = try b.client.stream(p, kind: k, headers: opts?.headers ?? Metadata(), timeoutMs: opts?.timeoutMs)
        out.pointee = box(ClientStreamBox(s))
    }
}

private func clientStreamArg(_ s: OpaquePointer?) throws -> ClientStreamBox {
    guard let b = unbox(s, as: ClientStreamBox.self) else { throw ConnectError.local(.invalidArgument, "stream is NULL") }
    return b
}

@_cdecl("connectplugin_client_stream_send")
public func connectplugin_client_stream_send(_ s: OpaquePointer?, _ data: UnsafePointer<UInt8>?, _ len: Int,
                                             _ err: UnsafeMutablePointer<OpaquePointer?>?) -> connectplugin_status {
    guarded(err) {
        let b = try clientStreamArg(s)
        guard let d = bytesArg(data, len) else { throw ConnectError.local(.invalidArgument, "data is NULL") }
        try b.stream.send(d)
    }
}

@_cdecl("connectplugin_client_stream_close_send")
public func connectplugin_client_stream_close_send(_ s: OpaquePointer?, _ err: UnsafeMutablePointer<OpaquePointer?>?) -> connectplugin_status {
    guarded(err) { try clientStreamArg(s).stream.closeSend() }
}

@_cdecl("connectplugin_client_stream_receive")
public func connectplugin_client_stream_receive(_ s: OpaquePointer?, _ outData: UnsafeMutablePointer<UnsafePointer<UInt8>?>?,
                                                _ outLen: UnsafeMutablePointer<Int>?, _ err: UnsafeMutablePointer<OpaquePointer?>?) -> connectplugin_status {
    outData?.pointee = nil
    outLen?.pointee = 0
    var eof = false
    let st = guarded(err) {
        let b = try clientStreamArg(s)
        // Refuse before taking a message: it must not be lost.
        guard outData != nil, outLen != nil else { throw ConnectError.local(.invalidArgument, "out_data and out_len must not be NULL") }
        defer {
            let h = b.stream.responseHeaders
            b.lock.withLock {
                if b.headers == nil && !h.isEmpty { b.headers = MetadataBox(h) }
            }
        }
        guard let m = try b.stream.receive() else {
            eof = true
            let t = b.stream.responseTrailers
            b.lock.withLock { b.trailers = MetadataBox(t) }
            return
        }
        let c = CBytes(m)
        b.last = c
        outData?.pointee = c.bytes
        outLen?.pointee = c.count
    }
    return st == CONNECTPLUGIN_OK && eof ? CONNECTPLUGIN_EOF : st
}

@_cdecl("connectplugin_client_stream_headers")
public func connectplugin_client_stream_headers(_ s: OpaquePointer?) -> OpaquePointer? {
    guard let b = unbox(s, as: ClientStreamBox.self) else { return nil }
    return b.lock.withLock { borrowed(b.headers ?? b.emptyHeaders) }
}

@_cdecl("connectplugin_client_stream_trailers")
public func connectplugin_client_stream_trailers(_ s: OpaquePointer?) -> OpaquePointer? {
    guard let b = unbox(s, as: ClientStreamBox.self) else { return nil }
    return b.lock.withLock { borrowed(b.trailers ?? b.emptyHeaders) }
}

@_cdecl("connectplugin_client_stream_cancel")
public func connectplugin_client_stream_cancel(_ s: OpaquePointer?) {
    unbox(s, as: ClientStreamBox.self)?.stream.cancel()
}

@_cdecl("connectplugin_client_stream_free")
public func connectplugin_client_stream_free(_ s: OpaquePointer?) {
    guard let b = unbox(s, as: ClientStreamBox.self) else { return }
    b.stream.cancelIfRunning()
    release(s, as: ClientStreamBox.self)
}
