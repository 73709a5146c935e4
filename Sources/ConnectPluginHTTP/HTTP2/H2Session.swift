// A Swift owner of one nghttp2 session (client or server), driven by nghttp2's memory API over our
// own sockets. Callbacks are file-private C functions that find the session through user_data and
// forward to a delegate on the loop thread. Outgoing bodies are served by one data provider that
// reads from per-stream buffers, with optional trailers.
import CConnectPluginNGHTTP2

protocol H2SessionDelegate: AnyObject {
    func h2BeginHeaders(stream: Int32)
    func h2Header(stream: Int32, name: String, value: String)
    /// A HEADERS frame was fully received (`isTrailers` for a second HEADERS block).
    func h2HeadersComplete(stream: Int32, endStream: Bool)
    func h2Data(stream: Int32, bytes: UnsafeRawBufferPointer)
    /// A DATA frame with END_STREAM.
    func h2EndStream(stream: Int32)
    func h2StreamClosed(stream: Int32, errorCode: UInt32)
    func h2GoAway(lastStreamID: Int32, errorCode: UInt32)
}

/// The body (and trailers) queued for one outgoing stream.
final class H2OutgoingBody {
    var bytes: [UInt8]
    var offset = 0
    var trailers: [(String, String)]
    init(bytes: [UInt8], trailers: [(String, String)]) {
        self.bytes = bytes
        self.trailers = trailers
    }
}

final class H2Session {
    private(set) var session: OpaquePointer?
    weak var delegate: H2SessionDelegate?
    let socket: SocketConnection
    let isServer: Bool
    var outgoing: [Int32: H2OutgoingBody] = [:]
    private var headersSeen: Set<Int32> = []
    /// Set when nghttp2 reports a fatal error or the session has nothing more to do.
    private(set) var isDead = false
    /// True while nghttp2_session_mem_recv runs: nghttp2 forbids mem_send from its callbacks, so a
    /// flush requested then (a response submitted synchronously) is done after mem_recv returns.
    private var receiving = false

    /// Creates the session and queues our SETTINGS. Returns nil if nghttp2 cannot allocate.
    init?(isServer: Bool, socket: SocketConnection, delegate: H2SessionDelegate) {
        self.isServer = isServer
        self.socket = socket
        self.delegate = delegate
        var cbs: OpaquePointer?
        guard nghttp2_session_callbacks_new(&cbs) == 0, let callbacks = cbs else { return nil }
        defer { nghttp2_session_callbacks_del(callbacks) }
        nghttp2_session_callbacks_set_on_begin_headers_callback(callbacks, h2OnBeginHeaders)
        nghttp2_session_callbacks_set_on_header_callback(callbacks, h2OnHeader)
        nghttp2_session_callbacks_set_on_frame_recv_callback(callbacks, h2OnFrameRecv)
        nghttp2_session_callbacks_set_on_data_chunk_recv_callback(callbacks, h2OnDataChunk)
        nghttp2_session_callbacks_set_on_stream_close_callback(callbacks, h2OnStreamClose)
        var s: OpaquePointer?
        let ud = Unmanaged.passUnretained(self).toOpaque()
        let rc = isServer ? nghttp2_session_server_new(&s, callbacks, ud) : nghttp2_session_client_new(&s, callbacks, ud)
        guard rc == 0, let sess = s else { return nil }
        session = sess
        var settings = [
            nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS.rawValue), value: 1000),
            nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE.rawValue), value: 1 << 20),
        ]
        _ = settings.withUnsafeMutableBufferPointer { buf in
            nghttp2_submit_settings(sess, UInt8(NGHTTP2_FLAG_NONE.rawValue), buf.baseAddress, buf.count)
        }
        // A larger connection window than the 64 KiB default.
        _ = nghttp2_session_set_local_window_size(sess, UInt8(NGHTTP2_FLAG_NONE.rawValue), 0, 4 << 20)
    }

    deinit {
        if let s = session { nghttp2_session_del(s) }
    }

    /// Frees the nghttp2 session (loop thread; after the socket closed).
    func destroy() {
        if let s = session { nghttp2_session_del(s) }
        session = nil
        isDead = true
        outgoing.removeAll()
    }

    /// Feeds received bytes. Returns false on a fatal protocol error (GOAWAY is queued; flush, then close).
    func receive(_ bytes: UnsafeRawBufferPointer) -> Bool {
        guard let s = session, !isDead else { return false }
        guard let base = bytes.baseAddress else { return true }
        receiving = true
        let n = nghttp2_session_mem_recv(s, base.assumingMemoryBound(to: UInt8.self), bytes.count)
        receiving = false
        if n < 0 {
            // Protocol violation: tell the peer why, then the caller closes after flushing.
            _ = nghttp2_session_terminate_session(s, NGHTTP2_PROTOCOL_ERROR.rawValue)
            flush()
            isDead = true
            return false
        }
        return true
    }

    /// Writes everything nghttp2 has queued. Returns false when the session is finished (the peer
    /// and we are both done: GOAWAY exchanged, or fatal error).
    @discardableResult
    func flush() -> Bool {
        guard let s = session else { return false }
        if receiving { return true }
        var out: [UInt8] = []
        while true {
            var ptr: UnsafePointer<UInt8>?
            let n = nghttp2_session_mem_send(s, &ptr)
            if n < 0 {
                isDead = true
                break
            }
            if n == 0 { break }
            if let p = ptr { out.append(contentsOf: UnsafeBufferPointer(start: p, count: n)) }
            if out.count >= 1 << 20 {
                socket.write(out)
                out.removeAll(keepingCapacity: true)
            }
        }
        if !out.isEmpty { socket.write(out) }
        if nghttp2_session_want_read(s) == 0 && nghttp2_session_want_write(s) == 0 { return false }
        return !isDead
    }

    /// Submits response headers, a body and optional trailers on `stream` (server).
    func submitResponse(stream: Int32, status: Int, headers: HTTPHeaders, body: [UInt8], trailers: HTTPHeaders) -> Bool {
        guard let s = session else { return false }
        var nv: [(String, String)] = [(":status", String(status))]
        for (n, v) in headers where !H2Session.isConnectionSpecific(n) { nv.append((n, v)) }
        let tr = trailers.entries.map { ($0.name, $0.value) }
        let rc: Int32
        if body.isEmpty && tr.isEmpty {
            rc = withNV(nv) { nva, n in nghttp2_submit_response(s, stream, nva, n, nil) }
        } else {
            outgoing[stream] = H2OutgoingBody(bytes: body, trailers: tr)
            var prd = nghttp2_data_provider()
            prd.read_callback = h2ReadBody
            rc = withNV(nv) { nva, n in nghttp2_submit_response(s, stream, nva, n, &prd) }
            if rc != 0 { outgoing[stream] = nil }
        }
        return rc == 0
    }

    /// Submits a request (client). `headers` must start with the pseudo-headers. Returns the stream id.
    func submitRequest(headers: [(String, String)], body: [UInt8]) -> Int32? {
        guard let s = session, !isDead else { return nil }
        var prd = nghttp2_data_provider()
        prd.read_callback = h2ReadBody
        let hasBody = !body.isEmpty
        let holder = H2OutgoingBody(bytes: body, trailers: [])
        let id: Int32 = withNV(headers) { nva, n in
            if hasBody { return nghttp2_submit_request(s, nil, nva, n, &prd, nil) }
            return nghttp2_submit_request(s, nil, nva, n, nil, nil)
        }
        if id <= 0 { return nil }
        if hasBody { outgoing[id] = holder }
        return id
    }

    func resetStream(_ stream: Int32, errorCode: UInt32) {
        guard let s = session else { return }
        _ = nghttp2_submit_rst_stream(s, UInt8(NGHTTP2_FLAG_NONE.rawValue), stream, errorCode)
    }

    /// Sends GOAWAY(NO_ERROR) naming the last stream we processed.
    func goAway() {
        guard let s = session else { return }
        let last = nghttp2_session_get_last_proc_stream_id(s)
        _ = nghttp2_submit_goaway(s, UInt8(NGHTTP2_FLAG_NONE.rawValue), last, NGHTTP2_NO_ERROR.rawValue, nil, 0)
    }

    static func isConnectionSpecific(_ name: String) -> Bool {
        name == "connection" || name == "keep-alive" || name == "transfer-encoding" || name == "upgrade"
            || name == "proxy-connection" 
    }

    // MARK: Called from the C callbacks

    fileprivate func readBody(stream: Int32, into buf: UnsafeMutablePointer<UInt8>, length: Int, flags: UnsafeMutablePointer<UInt32>) -> Int {
        guard let body = outgoing[stream] else {
            flags.pointee |= NGHTTP2_DATA_FLAG_EOF.rawValue
            return 0
        }
        let remaining = body.bytes.count - body.offset
        let n = min(remaining, length)
        if n > 0 {
            body.bytes.withUnsafeBytes { src in
                if let b = src.baseAddress { buf.update(from: b.advanced(by: body.offset).assumingMemoryBound(to: UInt8.self), count: n) }
            }
            body.offset += n
        }
        if body.offset >= body.bytes.count {
            flags.pointee |= NGHTTP2_DATA_FLAG_EOF.rawValue
            if !body.trailers.isEmpty, let s = session {
                flags.pointee |= NGHTTP2_DATA_FLAG_NO_END_STREAM.rawValue
                _ = withNV(body.trailers) { nva, cnt in nghttp2_submit_trailer(s, stream, nva, cnt) }
            }
            outgoing[stream] = nil
        }
        return n
    }

    fileprivate func onFrameRecv(_ frame: UnsafePointer<nghttp2_frame>) {
        let hd = frame.pointee.hd
        let endStream = (hd.flags & UInt8(NGHTTP2_FLAG_END_STREAM.rawValue)) != 0
        switch UInt32(hd.type) {
        case NGHTTP2_HEADERS.rawValue:
            delegate?.h2HeadersComplete(stream: hd.stream_id, endStream: endStream)
        case NGHTTP2_DATA.rawValue:
            if endStream { delegate?.h2EndStream(stream: hd.stream_id) }
        case NGHTTP2_GOAWAY.rawValue:
            delegate?.h2GoAway(lastStreamID: frame.pointee.goaway.last_stream_id, errorCode: frame.pointee.goaway.error_code)
        default:
            break
        }
    }

    fileprivate func onStreamClose(_ stream: Int32, _ code: UInt32) {
        outgoing[stream] = nil
        delegate?.h2StreamClosed(stream: stream, errorCode: code)
    }

    fileprivate func onBeginHeaders(_ stream: Int32) { delegate?.h2BeginHeaders(stream: stream) }
    fileprivate func onHeader(_ stream: Int32, _ name: String, _ value: String) { delegate?.h2Header(stream: stream, name: name, value: value) }
    fileprivate func onData(_ stream: Int32, _ bytes: UnsafeRawBufferPointer) { delegate?.h2Data(stream: stream, bytes: bytes) }
}

/// Calls `body` with an nghttp2_nv array for `pairs` (nghttp2 copies names and values on submit).
func withNV<R>(_ pairs: [(String, String)], _ body: (UnsafePointer<nghttp2_nv>?, Int) -> R) -> R {
    var storage: [UInt8] = [0]
    var ranges: [(Int, Int, Int, Int)] = []
    ranges.reserveCapacity(pairs.count)
    for (n, v) in pairs {
        let ns = storage.count
        storage.append(contentsOf: n.utf8)
        let vs = storage.count
        storage.append(contentsOf: v.utf8)
        ranges.append((ns, vs - ns, vs, storage.count - vs))
    }
    return storage.withUnsafeMutableBufferPointer { sb -> R in
        guard let base = sb.baseAddress else { return body(nil, 0) }
        var nvs: [nghttp2_nv] = ranges.map { r in
            nghttp2_nv(name: base + r.0, value: base + r.2, namelen: r.1, valuelen: r.3, flags: UInt8(NGHTTP2_NV_FLAG_NONE.rawValue))
        }
        return nvs.withUnsafeMutableBufferPointer { nb in body(UnsafePointer(nb.baseAddress), nb.count) }
    }
}

@inline(__always)
private func sessionFrom(_ ud: UnsafeMutableRawPointer?) -> H2Session? {
    guard let ud else { return nil }
    return Unmanaged<H2Session>.fromOpaque(ud).takeUnretainedValue()
}

private let h2OnBeginHeaders: nghttp2_on_begin_headers_callback = { _, frame, ud in
    guard let s = sessionFrom(ud), let frame else { return 0 }
    s.onBeginHeaders(frame.pointee.hd.stream_id)
    return 0
}

private let h2OnHeader: nghttp2_on_header_callback = { _, frame, name, namelen, value, valuelen, _, ud in
    guard let s = sessionFrom(ud), let frame, let name, let value else { return 0 }
    let n = String(decoding: UnsafeBufferPointer(start: name, count: namelen), as: UTF8.self)
    let v = String(decoding: UnsafeBufferPointer(start: value, count: valuelen), as: UTF8.self)
    s.onHeader(frame.pointee.hd.stream_id, n, v)
    return 0
}

private let h2OnFrameRecv: nghttp2_on_frame_recv_callback = { _, frame, ud in
    guard let s = sessionFrom(ud), let frame else { return 0 }
    s.onFrameRecv(frame)
    return 0
}

private let h2OnDataChunk: nghttp2_on_data_chunk_recv_callback = { _, _, stream, data, len, ud in
    guard let s = sessionFrom(ud), let data else { return 0 }
    s.onData(stream, UnsafeRawBufferPointer(start: data, count: len))
    return 0
}

private let h2OnStreamClose: nghttp2_on_stream_close_callback = { _, stream, code, ud in
    guard let s = sessionFrom(ud) else { return 0 }
    s.onStreamClose(stream, code)
    return 0
}

private let h2ReadBody: nghttp2_data_source_read_callback = { _, stream, buf, length, flags, _, ud in
    guard let s = sessionFrom(ud), let buf, let flags else { return Int(NGHTTP2_ERR_CALLBACK_FAILURE.rawValue) }
    return s.readBody(stream: stream, into: buf, length: length, flags: flags)
}
