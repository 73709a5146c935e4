// A Swift owner of one nghttp2 session (client or server), driven by nghttp2's memory API over our
// own sockets. Callbacks are file-private C functions that find the session through user_data and
// forward to a delegate on the loop thread. Outgoing bodies are served by one data provider that
// reads from per-stream buffers, with optional trailers.
import CConnectPluginNGHTTP2
import Glibc

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

/// The outgoing body of one stream: byte arrays queued by the sender (kept as they are, not copied
/// together), served to nghttp2 by the data provider without a copy (NGHTTP2_DATA_FLAG_NO_COPY: the
/// send-data callback writes the frame header and the payload straight from these arrays). When the
/// queue is empty and the body is not ended the provider defers, and `send` resumes it.
/// `onConsumed` reports bytes nghttp2 took (the sender's back-pressure credit).
final class H2OutgoingBody {
    /// Queued arrays; `chunks[head]` is the first with unsent bytes, from `headOffset`.
    var chunks: [[UInt8]] = []
    var head = 0
    var headOffset = 0
    /// Unsent bytes in `chunks`.
    private(set) var queued = 0
    /// Bytes promised to nghttp2 by the read callback, not yet taken by the send-data callback.
    var reserved = 0
    var ended = false
    var trailers: [(String, String)] = []
    var deferred = false
    var onConsumed: ((Int) -> Void)?

    func append(_ bytes: [UInt8]) {
        if head > 0 && head * 2 >= chunks.count {
            chunks.removeFirst(head)
            head = 0
        }
        chunks.append(bytes)
        queued += bytes.count
    }

    /// Calls `body` for the next `count` unsent bytes, in pieces (one per queued array they span),
    /// and drops them from the queue.
    func take(_ count: Int, _ body: (UnsafeRawBufferPointer) -> Void) {
        var left = min(count, queued)
        while left > 0, head < chunks.count {
            let chunk = chunks[head]
            let avail = chunk.count - headOffset
            let n = min(avail, left)
            if n > 0 {
                chunk.withUnsafeBytes { raw in
                    body(UnsafeRawBufferPointer(rebasing: raw[headOffset..<(headOffset + n)]))
                }
            }
            left -= n
            queued -= n
            if n == avail {
                chunks[head] = []
                head += 1
                headOffset = 0
            } else {
                headOffset += n
            }
        }
        if head == chunks.count {
            chunks.removeAll(keepingCapacity: true)
            head = 0
            headOffset = 0
        }
    }
}

final class H2Session {
    private(set) var session: OpaquePointer?
    weak var delegate: H2SessionDelegate?
    let socket: any ByteStreamConnection
    let isServer: Bool
    var outgoing: [Int32: H2OutgoingBody] = [:]
    /// Set when nghttp2 reports a fatal error or the session has nothing more to do.
    private(set) var isDead = false
    /// True while nghttp2_session_mem_recv runs: nghttp2 forbids mem_send from its callbacks, so a
    /// flush requested then (a response submitted synchronously) is done after mem_recv returns.
    private var receiving = false
    private var sending = false
    /// True inside nghttp2_session_mem_recv or mem_send: the session must not be destroyed (or the
    /// socket closed) from a callback; the owner acts after the call returns.
    var isBusy: Bool { receiving || sending }
    /// True inside nghttp2_session_mem_recv (the owner flushes once it returns).
    var isReceiving: Bool { receiving }
    /// mem_send stops while this many bytes wait in the socket; the owner flushes again when drained.
    static let socketHighWater = 512 << 10
    /// Per-stream receive window we advertise (flow control bounds what a stream can buffer).
    static let streamWindow: UInt32 = 1 << 20
    /// SETTINGS_MAX_FRAME_SIZE we advertise, and the largest DATA frame we send when the peer allows
    /// it: one frame (one write) per 64 KiB message plus its envelope, instead of five 16 KiB ones.
    static let maxFrameSize: UInt32 = 128 << 10
    /// A DATA payload piece at least this long is written from the sender's array (gathered with the
    /// bytes before it); shorter ones are copied into `scratch`, so small frames still go out together.
    static let directWriteMin = 4096
    /// Bytes to write in order: the frames mem_send returned and the DATA frame headers (and short
    /// payloads) of the send-data callback. Reused, so a flush does not allocate.
    private var scratch: [UInt8] = []
    /// The socket when it is a SocketConnection (gathered writes), else nil (in-memory pipes).
    private let gatherSocket: SocketConnection?

    /// Creates the session and queues our SETTINGS. Returns nil if nghttp2 cannot allocate.
    init?(isServer: Bool, socket: any ByteStreamConnection, delegate: H2SessionDelegate) {
        self.isServer = isServer
        self.socket = socket
        self.gatherSocket = socket as? SocketConnection
        self.delegate = delegate
        var cbs: OpaquePointer?
        guard nghttp2_session_callbacks_new(&cbs) == 0, let callbacks = cbs else { return nil }
        defer { nghttp2_session_callbacks_del(callbacks) }
        nghttp2_session_callbacks_set_on_begin_headers_callback(callbacks, h2OnBeginHeaders)
        nghttp2_session_callbacks_set_on_header_callback(callbacks, h2OnHeader)
        nghttp2_session_callbacks_set_on_frame_recv_callback(callbacks, h2OnFrameRecv)
        nghttp2_session_callbacks_set_on_data_chunk_recv_callback(callbacks, h2OnDataChunk)
        nghttp2_session_callbacks_set_on_stream_close_callback(callbacks, h2OnStreamClose)
        nghttp2_session_callbacks_set_send_data_callback(callbacks, h2SendData)
        nghttp2_session_callbacks_set_data_source_read_length_callback(callbacks, h2ReadLength)
        var opt: OpaquePointer?
        guard nghttp2_option_new(&opt) == 0, let option = opt else { return nil }
        defer { nghttp2_option_del(option) }
        // Stream windows are opened only as the application consumes data (back-pressure).
        nghttp2_option_set_no_auto_window_update(option, 1)
        var s: OpaquePointer?
        let ud = Unmanaged.passUnretained(self).toOpaque()
        let rc = isServer ? nghttp2_session_server_new2(&s, callbacks, ud, option) : nghttp2_session_client_new2(&s, callbacks, ud, option)
        guard rc == 0, let sess = s else { return nil }
        session = sess
        var settings = [
            nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS.rawValue), value: 256),
            nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE.rawValue), value: H2Session.streamWindow),
            nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_MAX_FRAME_SIZE.rawValue), value: H2Session.maxFrameSize),
        ]
        _ = settings.withUnsafeMutableBufferPointer { buf in
            nghttp2_submit_settings(sess, UInt8(NGHTTP2_FLAG_NONE.rawValue), buf.baseAddress, buf.count)
        }
        // A larger connection window than the 64 KiB default; it is replenished as data arrives
        // (connection-level flow control is not used for back-pressure, stream windows are).
        _ = nghttp2_session_set_local_window_size(sess, UInt8(NGHTTP2_FLAG_NONE.rawValue), 0, 16 << 20)
    }

    deinit {
        if let s = session { nghttp2_session_del(s) }
    }

    /// Frees the nghttp2 session (loop thread; after the socket closed).
    func destroy() {
        isDead = true
        outgoing.removeAll()
        if isBusy {
            // Inside an nghttp2 call: free the session when it returns.
            destroyPending = true
            return
        }
        if let s = session { nghttp2_session_del(s) }
        session = nil
    }
    private var destroyPending = false

    private func finishPendingDestroy() {
        if destroyPending && !isBusy {
            destroyPending = false
            if let s = session { nghttp2_session_del(s) }
            session = nil
        }
    }

    /// Feeds received bytes. Returns false on a fatal protocol error (GOAWAY is queued; flush, then close).
    func receive(_ bytes: UnsafeRawBufferPointer) -> Bool {
        guard let s = session, !isDead else { return false }
        guard let base = bytes.baseAddress else { return true }
        receiving = true
        let n = nghttp2_session_mem_recv(s, base.assumingMemoryBound(to: UInt8.self), bytes.count)
        receiving = false
        if destroyPending {
            finishPendingDestroy()
            return false
        }
        if n < 0 {
            // Protocol violation: tell the peer why, then the caller closes after flushing.
            _ = nghttp2_session_terminate_session(s, NGHTTP2_PROTOCOL_ERROR.rawValue)
            flush()
            isDead = true
            return false
        }
        return true
    }

    /// Writes what nghttp2 has queued, until the socket holds `socketHighWater` bytes (the owner
    /// calls flush again from connectionDrained). Returns false when the session is finished (GOAWAY
    /// exchanged, or fatal error).
    @discardableResult
    func flush() -> Bool {
        guard let s = session else { return false }
        if receiving || sending { return true }
        sending = true
        defer { sending = false }
        while true {
            scratch.removeAll(keepingCapacity: scratch.capacity <= 1 << 20)
            var wrote = false
            while socket.pendingWriteBytes + scratch.count < H2Session.socketHighWater {
                var ptr: UnsafePointer<UInt8>?
                let before = sentDirect
                let n = nghttp2_session_mem_send(s, &ptr)
                if sentDirect != before { wrote = true }
                if n < 0 {
                    isDead = true
                    break
                }
                if n == 0 || destroyPending { break }
                if let p = ptr { scratch.append(contentsOf: UnsafeBufferPointer(start: p, count: n)) }
            }
            if destroyPending {
                sending = false
                finishPendingDestroy()
                return false
            }
            if scratch.isEmpty && !wrote { break }
            if !scratch.isEmpty {
                scratch.withUnsafeBytes { socket.write($0) }
                scratch.removeAll(keepingCapacity: scratch.capacity <= 1 << 20)
            }
            // A failed write closes the socket, and its owner destroys this session.
            if session == nil || destroyPending {
                sending = false
                finishPendingDestroy()
                return false
            }
            // The socket took everything at once: its drained callback came while we were busy,
            // so keep going ourselves. Otherwise connectionDrained calls flush again.
            if socket.pendingWriteBytes > 0 || isDead || nghttp2_session_want_write(s) == 0 { break }
        }
        if nghttp2_session_want_read(s) == 0 && nghttp2_session_want_write(s) == 0 { return false }
        return !isDead
    }

    /// Server: submits response headers. With `endStream` the HEADERS frame ends the stream (no body,
    /// e.g. gRPC trailers-only); otherwise a body follows through `send`/`end`.
    func submitResponseHead(stream: Int32, status: Int, headers: HTTPHeaders, endStream: Bool, onConsumed: ((Int) -> Void)?) -> Bool {
        guard let s = session else { return false }
        var nv: [(String, String)] = [(":status", String(status))]
        for (n, v) in headers where !H2Session.isConnectionSpecific(n) { nv.append((n, v)) }
        if endStream {
            return withNV(nv) { nva, n in nghttp2_submit_response(s, stream, nva, n, nil) } == 0
        }
        let body = H2OutgoingBody()
        body.onConsumed = onConsumed
        outgoing[stream] = body
        var prd = nghttp2_data_provider()
        prd.read_callback = h2ReadBody
        let rc = withNV(nv) { nva, n in nghttp2_submit_response(s, stream, nva, n, &prd) }
        if rc != 0 { outgoing[stream] = nil }
        return rc == 0
    }

    /// Server: a complete response (headers, body, optional trailers).
    func submitResponse(stream: Int32, status: Int, headers: HTTPHeaders, body: [UInt8], trailers: HTTPHeaders) -> Bool {
        let tr = trailers.entries.map { ($0.name, $0.value) }
        if body.isEmpty && tr.isEmpty {
            return submitResponseHead(stream: stream, status: status, headers: headers, endStream: true, onConsumed: nil)
        }
        guard submitResponseHead(stream: stream, status: status, headers: headers, endStream: false, onConsumed: nil) else { return false }
        send(stream: stream, body)
        end(stream: stream, trailers: tr)
        return true
    }

    /// Client: submits a request. `headers` must start with the pseudo-headers. With `endStream` there
    /// is no body; otherwise the body follows through `send`/`end`. Returns the stream id.
    func submitRequest(headers: [(String, String)], endStream: Bool, onConsumed: ((Int) -> Void)?) -> Int32? {
        guard let s = session, !isDead else { return nil }
        if endStream {
            let id = withNV(headers) { nva, n in nghttp2_submit_request(s, nil, nva, n, nil, nil) }
            return id > 0 ? id : nil
        }
        var prd = nghttp2_data_provider()
        prd.read_callback = h2ReadBody
        let id: Int32 = withNV(headers) { nva, n in nghttp2_submit_request(s, nil, nva, n, &prd, nil) }
        if id <= 0 { return nil }
        let body = H2OutgoingBody()
        body.onConsumed = onConsumed
        outgoing[id] = body
        return id
    }

    /// Queues body bytes on a stream opened with a body (the array is kept, not copied).
    func send(stream: Int32, _ bytes: [UInt8]) {
        guard let body = outgoing[stream], !body.ended, !bytes.isEmpty else { return }
        body.append(bytes)
        resume(stream, body)
    }

    /// Ends a stream's body, with optional trailers.
    func end(stream: Int32, trailers: [(String, String)]) {
        guard let body = outgoing[stream], !body.ended else { return }
        body.ended = true
        body.trailers = trailers
        resume(stream, body)
    }

    private func resume(_ stream: Int32, _ body: H2OutgoingBody) {
        if body.deferred, let s = session {
            body.deferred = false
            _ = nghttp2_session_resume_data(s, stream)
        }
    }

    /// The application consumed `n` received bytes of `stream`: open its window by that much.
    func consume(stream: Int32, _ n: Int) {
        guard let s = session, n > 0 else { return }
        _ = nghttp2_session_consume_stream(s, stream, n)
    }

    func resetStream(_ stream: Int32, errorCode: UInt32) {
        guard let s = session else { return }
        outgoing[stream] = nil
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

    /// The data provider: promises nghttp2 up to `length` queued bytes without copying them
    /// (NGHTTP2_DATA_FLAG_NO_COPY); `sendData` writes them when the frame goes out.
    fileprivate func readBody(stream: Int32, length: Int, flags: UnsafeMutablePointer<UInt32>) -> Int {
        guard let body = outgoing[stream] else {
            flags.pointee |= NGHTTP2_DATA_FLAG_EOF.rawValue
            return 0
        }
        let remaining = body.queued - body.reserved
        if remaining <= 0 && !body.ended {
            body.deferred = true
            return Int(NGHTTP2_ERR_DEFERRED.rawValue)
        }
        let n = max(0, min(remaining, length))
        if n > 0 {
            flags.pointee |= NGHTTP2_DATA_FLAG_NO_COPY.rawValue
            body.reserved += n
        }
        if body.ended && body.reserved >= body.queued {
            flags.pointee |= NGHTTP2_DATA_FLAG_EOF.rawValue
            if !body.trailers.isEmpty, let s = session {
                flags.pointee |= NGHTTP2_DATA_FLAG_NO_END_STREAM.rawValue
                _ = withNV(body.trailers) { nva, cnt in nghttp2_submit_trailer(s, stream, nva, cnt) }
            }
            // An empty last frame is serialized by nghttp2 itself; otherwise sendData still needs
            // the body, and lets go of it once the promised bytes are out.
            if n == 0 { outgoing[stream] = nil }
        }
        return n
    }

    /// Counts DATA frames written by `sendData` (flush: something went out though `scratch` is empty).
    private var sentDirect = 0

    /// The send-data callback of a NO_COPY DATA frame: the 9-byte header, then `length` payload
    /// bytes from the stream's queue (no padding: we never ask for any). Long pieces are written
    /// straight from the sender's arrays, gathered with what `scratch` holds before them.
    fileprivate func sendData(stream: Int32, header: UnsafeRawBufferPointer, length: Int, padding: Int) -> Int32 {
        if socket.isClosed { return NGHTTP2_ERR_CALLBACK_FAILURE.rawValue }
        guard padding == 0, let body = outgoing[stream], length <= body.reserved else {
            // Not a frame we promised (cannot happen): reset this stream only, not the connection.
            return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE.rawValue
        }
        scratch.append(contentsOf: header)
        body.take(length) { piece in
            if piece.count < H2Session.directWriteMin || socket.isClosed {
                scratch.append(contentsOf: piece)
                return
            }
            if let g = gatherSocket {
                scratch.withUnsafeBytes { g.write($0, piece) }
            } else {
                scratch.withUnsafeBytes { socket.write($0) }
                socket.write(piece)
            }
            scratch.removeAll(keepingCapacity: scratch.capacity <= 1 << 20)
            sentDirect &+= 1
        }
        body.reserved -= length
        if body.ended && body.queued == 0 && body.reserved == 0, outgoing[stream] === body {
            outgoing[stream] = nil
        }
        body.onConsumed?(length)
        return socket.isClosed ? NGHTTP2_ERR_CALLBACK_FAILURE.rawValue : 0
    }

    /// DATA frames up to the peer's SETTINGS_MAX_FRAME_SIZE (capped at `maxFrameSize`) instead of
    /// nghttp2's default 16 KiB, within the flow-control windows.
    fileprivate func readLength(sessionWindow: Int32, streamWindow: Int32, remoteMaxFrame: UInt32) -> Int {
        let cap = Int(min(remoteMaxFrame, H2Session.maxFrameSize))
        return max(1, min(cap, Int(sessionWindow), Int(streamWindow)))
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
    fileprivate func onData(_ stream: Int32, _ bytes: UnsafeRawBufferPointer) {
        if let s = session { _ = nghttp2_session_consume_connection(s, bytes.count) }
        delegate?.h2Data(stream: stream, bytes: bytes)
    }
}

/// Calls `body` with an nghttp2_nv array for `pairs` (nghttp2 copies names and values on submit).
/// Names and values are laid out in one temporary buffer, the nv array in another (on the stack
/// when small): no heap allocation per submit.
func withNV<R>(_ pairs: [(String, String)], _ body: (UnsafePointer<nghttp2_nv>?, Int) -> R) -> R {
    var total = 1
    for (n, v) in pairs { total += n.utf8.count + v.utf8.count }
    return withUnsafeTemporaryAllocation(of: UInt8.self, capacity: total) { storage -> R in
        withUnsafeTemporaryAllocation(of: nghttp2_nv.self, capacity: max(1, pairs.count)) { nvs -> R in
            guard let base = storage.baseAddress, let nvBase = nvs.baseAddress else { return body(nil, 0) }
            var at = 0
            var i = 0
            func put(_ str: String) {
                let done: Void? = str.utf8.withContiguousStorageIfAvailable { src in
                    if let p = src.baseAddress { (base + at).update(from: p, count: src.count) }
                    at += src.count
                }
                if done == nil {
                    for b in str.utf8 { storage[at] = b; at += 1 }
                }
            }
            for (n, v) in pairs {
                let ns = at
                put(n)
                let vs = at
                put(v)
                (nvBase + i).initialize(to: nghttp2_nv(name: base + ns, value: base + vs, namelen: vs - ns, valuelen: at - vs,
                                                       flags: UInt8(NGHTTP2_NV_FLAG_NONE.rawValue)))
                i += 1
            }
            return body(UnsafePointer(nvBase), i)
        }
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
    let n = h2HeaderString(UnsafeBufferPointer(start: name, count: namelen))
    let v = h2HeaderString(UnsafeBufferPointer(start: value, count: valuelen))
    s.onHeader(frame.pointee.hd.stream_id, n, v)
    return 0
}

/// Header names and values that most requests and responses carry, as string literals: a field
/// that matches one costs no allocation (a literal longer than 15 bytes is not stored inline,
/// and decoding it anew would allocate each time).
private let h2CommonStrings: [[(String, [UInt8])]] = {
    let all = [
        ":method", ":path", ":scheme", ":authority", ":status", "content-type", "content-length", "user-agent",
        "te", "trailers", "grpc-status", "grpc-message", "grpc-timeout", "grpc-encoding", "grpc-accept-encoding",
        "connect-protocol-version", "connect-timeout-ms", "connect-content-encoding", "connect-accept-encoding",
        "content-encoding", "accept-encoding", "application/proto", "application/json", "application/grpc",
        "application/grpc+proto", "application/grpc+json", "application/connect+proto", "application/connect+json",
        "application/grpc-web", "application/grpc-web+proto", "application/octet-stream", "identity", "gzip",
        "identity, gzip", "gzip, identity", "POST", "GET", "http", "https", "200", "0", "1",
    ]
    var table: [[(String, [UInt8])]] = Array(repeating: [], count: 33)
    for w in all {
        let b = Array(w.utf8)
        if b.count < table.count { table[b.count].append((w, b)) }
    }
    return table
}()

/// A String for a header field's bytes (nghttp2 validated them), shared when it is a common one.
@inline(__always)
private func h2HeaderString(_ bytes: UnsafeBufferPointer<UInt8>) -> String {
    if bytes.count > 15 && bytes.count < h2CommonStrings.count, let base = bytes.baseAddress {
        for (w, b) in h2CommonStrings[bytes.count] where memcmp(base, b, bytes.count) == 0 { return w }
    }
    return String(decoding: bytes, as: UTF8.self)
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

private let h2ReadBody: nghttp2_data_source_read_callback = { _, stream, _, length, flags, _, ud in
    guard let s = sessionFrom(ud), let flags else { return Int(NGHTTP2_ERR_CALLBACK_FAILURE.rawValue) }
    return s.readBody(stream: stream, length: length, flags: flags)
}

private let h2SendData: nghttp2_send_data_callback = { _, frame, framehd, length, _, ud in
    guard let s = sessionFrom(ud), let frame, let framehd else { return NGHTTP2_ERR_CALLBACK_FAILURE.rawValue }
    return s.sendData(stream: frame.pointee.hd.stream_id, header: UnsafeRawBufferPointer(start: framehd, count: 9),
                      length: length, padding: Int(frame.pointee.data.padlen))
}

private let h2ReadLength: nghttp2_data_source_read_length_callback = { _, _, _, sessionWindow, streamWindow, remoteMax, ud in
    guard let s = sessionFrom(ud) else { return 16384 }
    return s.readLength(sessionWindow: sessionWindow, streamWindow: streamWindow, remoteMaxFrame: remoteMax)
}
