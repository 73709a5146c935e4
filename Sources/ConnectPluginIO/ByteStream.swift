// I/O core: the byte-stream connection interface the HTTP layer runs on. A socket (plain or TLS, in the
// HTTP module) and an in-memory pipe end (MemoryPipe) implement it; HTTP/1.1 and HTTP/2 connections
// only see this protocol.

/// Receives a connection's events on its loop thread.
public protocol ConnectionDelegate: AnyObject {
    func connectionReceived(_ bytes: UnsafeRawBufferPointer)
    /// The peer closed or an I/O error happened; the connection is already closed.
    func connectionClosed(_ error: HTTPError?)
    /// Everything queued so far was written.
    func connectionDrained()
}

/// A full-duplex byte stream owned by one event loop. Every method is loop thread only. While open,
/// the connection holds its delegate strongly (the delegate usually holds the connection); closing
/// lets go of it.
public protocol ByteStreamConnection: AnyObject {
    /// The loop that owns the connection.
    var loop: EventLoop { get }
    var isClosed: Bool { get }
    /// Bytes queued but not yet handed to the transport (0: everything written so far is out).
    var pendingWriteBytes: Int { get }
    /// True when the stream is TLS.
    var isTLS: Bool { get }
    /// The ALPN protocol agreed on in the TLS handshake (nil without TLS or when none was agreed).
    var negotiatedALPN: String? { get }
    /// Starts delivering events to `delegate`. With `connecting`, waits for the connection to be
    /// established first; `onConnect` reports that (nil: connected).
    func start(delegate: ConnectionDelegate, connecting: Bool, onConnect: ((HTTPError?) -> Void)?)
    /// Hands the connection to another delegate (protocol detection → HTTP/1.1 or HTTP/2).
    func replaceDelegate(_ d: ConnectionDelegate)
    /// Queues bytes and writes what the transport takes now.
    func write(_ bytes: UnsafeRawBufferPointer)
    func write(_ bytes: [UInt8])
    /// Stops or resumes reading (back-pressure).
    func setReadPaused(_ paused: Bool)
    /// Closes after everything queued has been written.
    func closeAfterFlush()
    /// Closes after everything queued was written, reading and discarding what the peer still sends
    /// (up to `maxBytes`, for at most `timeoutNs`), so the peer can read the answer before the close.
    func lingerClose(timeoutNs: UInt64, maxBytes: Int)
    /// Closes now and tells the delegate. Idempotent.
    func closeNow(_ error: HTTPError?)
}

extension ByteStreamConnection {
    public func start(delegate: ConnectionDelegate) {
        start(delegate: delegate, connecting: false, onConnect: nil)
    }

    public func lingerClose() {
        lingerClose(timeoutNs: 5_000_000_000, maxBytes: 64 << 20)
    }
}
