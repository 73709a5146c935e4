// C ABI: client options, clients, per-call options and responses.
import CConnectPluginABI
import ConnectPlugin

final class ClientOptionsBox { var options = RPCClient.Options() }
final class CallOptionsBox {
    var timeoutMs: Int64?
    var headers = Metadata()
    var noSideEffects = false
}
final class ClientBox {
    let client: RPCClient
    /// False for a client dispensed from a plugin: its connection belongs to the plugin client.
    let ownsConnection: Bool
    init(_ c: RPCClient, ownsConnection: Bool = true) {
        client = c
        self.ownsConnection = ownsConnection
    }
}
final class ResponseBox {
    let message: CBytes
    let headers: MetadataBox
    let trailers: MetadataBox
    init(_ r: UnaryResponse) {
        message = CBytes(r.message)
        headers = MetadataBox(r.headers)
        trailers = MetadataBox(r.trailers)
    }
}

private func clientOptionsArg(_ o: OpaquePointer?) throws -> ClientOptionsBox {
    guard let b = unbox(o, as: ClientOptionsBox.self) else { throw ConnectError.local(.invalidArgument, "options is NULL") }
    return b
}

@_cdecl("connectplugin_client_options_new")
public func connectplugin_client_options_new() -> OpaquePointer? { box(ClientOptionsBox()) }

@_cdecl("connectplugin_client_options_set_codec")
public func connectplugin_client_options_set_codec(_ o: OpaquePointer?, _ codec: UnsafePointer<CChar>?, _ err: UnsafeMutablePointer<OpaquePointer?>?) -> connectplugin_status {
    guarded(err) {
        let b = try clientOptionsArg(o)
        guard let c = str(codec) else { throw ConnectError.local(.invalidArgument, "codec is NULL") }
        guard c == "proto" || c == "json" else { throw ConnectError.local(.unsupported, "codec \"\(c)\" is not supported; use \"proto\" or \"json\"") }
        b.options.codec = c
    }
}

@_cdecl("connectplugin_client_options_set_protocol")
public func connectplugin_client_options_set_protocol(_ o: OpaquePointer?, _ name: UnsafePointer<CChar>?, _ err: UnsafeMutablePointer<OpaquePointer?>?) -> connectplugin_status {
    guarded(err) {
        let b = try clientOptionsArg(o)
        guard let n = str(name) else { throw ConnectError.local(.invalidArgument, "protocol is NULL") }
        guard let p = RPCProtocol(rawValue: n) else {
            throw ConnectError.local(.unsupported, "protocol \"\(n)\" is not supported; use \"connect\", \"grpc\" or \"grpcweb\"")
        }
        b.options.rpcProtocol = p
    }
}

@_cdecl("connectplugin_client_options_set_use_get")
public func connectplugin_client_options_set_use_get(_ o: OpaquePointer?, _ enable: Int32, _ err: UnsafeMutablePointer<OpaquePointer?>?) -> connectplugin_status {
    guarded(err) { try clientOptionsArg(o).options.useHTTPGet = enable != 0 }
}

@_cdecl("connectplugin_call_options_set_no_side_effects")
public func connectplugin_call_options_set_no_side_effects(_ o: OpaquePointer?, _ enable: Int32, _ err: UnsafeMutablePointer<OpaquePointer?>?) -> connectplugin_status {
    guarded(err) {
        guard let b = unbox(o, as: CallOptionsBox.self) else { throw ConnectError.local(.invalidArgument, "options is NULL") }
        b.noSideEffects = enable != 0
    }
}

@_cdecl("connectplugin_client_options_set_http_version")
public func connectplugin_client_options_set_http_version(_ o: OpaquePointer?, _ v: Int32, _ err: UnsafeMutablePointer<OpaquePointer?>?) -> connectplugin_status {
    guarded(err) {
        let b = try clientOptionsArg(o)
        switch v {
        case CONNECTPLUGIN_HTTP_1_1: b.options.httpVersion = .http1_1
        case CONNECTPLUGIN_HTTP_2: b.options.httpVersion = .http2
        default: throw ConnectError.local(.unsupported, "HTTP version \(v) is not supported; use CONNECTPLUGIN_HTTP_1_1 or CONNECTPLUGIN_HTTP_2")
        }
    }
}

@_cdecl("connectplugin_client_options_set_compression")
public func connectplugin_client_options_set_compression(_ o: OpaquePointer?, _ name: UnsafePointer<CChar>?, _ err: UnsafeMutablePointer<OpaquePointer?>?) -> connectplugin_status {
    guarded(err) {
        let b = try clientOptionsArg(o)
        guard let n = str(name) else { throw ConnectError.local(.invalidArgument, "name is NULL") }
        guard n == "identity" || n == "gzip" else { throw ConnectError.local(.unsupported, "compression \"\(n)\" is not supported; use \"identity\" or \"gzip\"") }
        b.options.compression = n
    }
}

@_cdecl("connectplugin_client_options_set_timeout_ms")
public func connectplugin_client_options_set_timeout_ms(_ o: OpaquePointer?, _ ms: Int64, _ err: UnsafeMutablePointer<OpaquePointer?>?) -> connectplugin_status {
    guarded(err) {
        let b = try clientOptionsArg(o)
        guard ms >= 0 else { throw ConnectError.local(.invalidArgument, "timeout_ms must not be negative") }
        b.options.timeoutMs = ms
    }
}

@_cdecl("connectplugin_client_options_set_max_message_bytes")
public func connectplugin_client_options_set_max_message_bytes(_ o: OpaquePointer?, _ max: UInt64, _ err: UnsafeMutablePointer<OpaquePointer?>?) -> connectplugin_status {
    guarded(err) {
        let b = try clientOptionsArg(o)
        guard max <= UInt64(Int.max / 2) else { throw ConnectError.local(.invalidArgument, "max_message_bytes is too large") }
        b.options.maxMessageBytes = Int(max)
    }
}

@_cdecl("connectplugin_client_options_add_header")
public func connectplugin_client_options_add_header(_ o: OpaquePointer?, _ key: UnsafePointer<CChar>?, _ value: UnsafePointer<UInt8>?, _ len: Int,
                                                    _ err: UnsafeMutablePointer<OpaquePointer?>?) -> connectplugin_status {
    guarded(err) {
        let b = try clientOptionsArg(o)
        guard let k = str(key), let v = bytesArg(value, len) else { throw ConnectError.local(.invalidArgument, "key or value is NULL") }
        try b.options.headers.add(k, v)
    }
}

@_cdecl("connectplugin_client_options_free")
public func connectplugin_client_options_free(_ o: OpaquePointer?) { release(o, as: ClientOptionsBox.self) }

@_cdecl("connectplugin_client_new")
public func connectplugin_client_new(_ url: UnsafePointer<CChar>?, _ o: OpaquePointer?, _ out: UnsafeMutablePointer<OpaquePointer?>?,
                                     _ err: UnsafeMutablePointer<OpaquePointer?>?) -> connectplugin_status {
    out?.pointee = nil
    return guarded(err) {
        guard let out else { throw ConnectError.local(.invalidArgument, "out_client is NULL") }
        guard let u = str(url) else { throw ConnectError.local(.invalidArgument, "base_url is NULL") }
        let opts = unbox(o, as: ClientOptionsBox.self)?.options ?? RPCClient.Options()
        out.pointee = box(ClientBox(try RPCClient(baseURL: u, options: opts)))
    }
}

@_cdecl("connectplugin_client_free")
public func connectplugin_client_free(_ c: OpaquePointer?) {
    guard let b = unbox(c, as: ClientBox.self) else { return }
    if b.ownsConnection { b.client.close() }
    release(c, as: ClientBox.self)
}

@_cdecl("connectplugin_call_options_new")
public func connectplugin_call_options_new() -> OpaquePointer? { box(CallOptionsBox()) }

@_cdecl("connectplugin_call_options_set_timeout_ms")
public func connectplugin_call_options_set_timeout_ms(_ o: OpaquePointer?, _ ms: Int64, _ err: UnsafeMutablePointer<OpaquePointer?>?) -> connectplugin_status {
    guarded(err) {
        guard let b = unbox(o, as: CallOptionsBox.self) else { throw ConnectError.local(.invalidArgument, "options is NULL") }
        guard ms >= 0 else { throw ConnectError.local(.invalidArgument, "timeout_ms must not be negative") }
        b.timeoutMs = ms
    }
}

@_cdecl("connectplugin_call_options_add_header")
public func connectplugin_call_options_add_header(_ o: OpaquePointer?, _ key: UnsafePointer<CChar>?, _ value: UnsafePointer<UInt8>?, _ len: Int,
                                                  _ err: UnsafeMutablePointer<OpaquePointer?>?) -> connectplugin_status {
    guarded(err) {
        guard let b = unbox(o, as: CallOptionsBox.self) else { throw ConnectError.local(.invalidArgument, "options is NULL") }
        guard let k = str(key), let v = bytesArg(value, len) else { throw ConnectError.local(.invalidArgument, "key or value is NULL") }
        try b.headers.add(k, v)
    }
}

@_cdecl("connectplugin_call_options_free")
public func connectplugin_call_options_free(_ o: OpaquePointer?) { release(o, as: CallOptionsBox.self) }

@_cdecl("connectplugin_client_call_unary")
public func connectplugin_client_call_unary(_ c: OpaquePointer?, _ procedure: UnsafePointer<CChar>?, _ request: UnsafePointer<UInt8>?, _ len: Int,
                                            _ o: OpaquePointer?, _ out: UnsafeMutablePointer<OpaquePointer?>?,
                                            _ err: UnsafeMutablePointer<OpaquePointer?>?) -> connectplugin_status {
    out?.pointee = nil
    return guarded(err) {
        guard let b = unbox(c, as: ClientBox.self) else { throw ConnectError.local(.invalidArgument, "client is NULL") }
        guard let out else { throw ConnectError.local(.invalidArgument, "out_response is NULL") }
        guard let p = str(procedure) else { throw ConnectError.local(.invalidArgument, "procedure is NULL") }
        guard let req = bytesArg(request, len) else { throw ConnectError.local(.invalidArgument, "request is NULL with a non-zero length") }
        let co = unbox(o, as: CallOptionsBox.self)
        let resp = try b.client.unary(p, request: req, headers: co?.headers ?? Metadata(), timeoutMs: co?.timeoutMs,
                                       noSideEffects: co?.noSideEffects ?? false)
        out.pointee = box(ResponseBox(resp))
    }
}

@_cdecl("connectplugin_response_message")
public func connectplugin_response_message(_ r: OpaquePointer?, _ outLen: UnsafeMutablePointer<Int>?) -> UnsafePointer<UInt8>? {
    guard let b = unbox(r, as: ResponseBox.self) else {
        outLen?.pointee = 0
        return nil
    }
    outLen?.pointee = b.message.count
    return b.message.bytes
}

@_cdecl("connectplugin_response_headers")
public func connectplugin_response_headers(_ r: OpaquePointer?) -> OpaquePointer? {
    guard let b = unbox(r, as: ResponseBox.self) else { return nil }
    return OpaquePointer(Unmanaged.passUnretained(b.headers).toOpaque())
}

@_cdecl("connectplugin_response_trailers")
public func connectplugin_response_trailers(_ r: OpaquePointer?) -> OpaquePointer? {
    guard let b = unbox(r, as: ResponseBox.self) else { return nil }
    return OpaquePointer(Unmanaged.passUnretained(b.trailers).toOpaque())
}

@_cdecl("connectplugin_response_free")
public func connectplugin_response_free(_ r: OpaquePointer?) { release(r, as: ResponseBox.self) }
