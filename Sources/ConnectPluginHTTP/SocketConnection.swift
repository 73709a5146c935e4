// A non-blocking stream socket owned by one event loop: buffered writes, read events handed to a
// protocol handler (HTTP/1.1 or HTTP/2), and one close path.
import CConnectPluginPosix
import Glibc

/// Receives a connection's events on its loop thread.
public protocol ConnectionDelegate: AnyObject {
    func connectionReceived(_ bytes: UnsafeRawBufferPointer)
    /// The peer closed or an I/O error happened; the socket is already closed.
    func connectionClosed(_ error: HTTPError?)
    /// Everything queued so far was written.
    func connectionDrained()
}

public final class SocketConnection: EventHandler {
    public let loop: EventLoop
    public private(set) var fd: Int32
    private var token: UInt64 = 0
    public weak var delegate: ConnectionDelegate?
    /// Holds the delegate strongly while the connection is open (the connection is owned by its loop).
    private var delegateRetainer: AnyObject?
    private var outbound: [UInt8] = []
    private var outboundOffset = 0
    private var wantWrite = false
    private var readPaused = false
    public private(set) var isClosed = false
    private var connectPending = false
    private var onConnect: ((HTTPError?) -> Void)?
    private static let readChunk = 64 * 1024
    private var readBuffer = [UInt8](repeating: 0, count: SocketConnection.readChunk)

    /// Wraps a connected (or connecting) non-blocking socket. Call `start` on the loop thread.
    public init(fd: Int32, loop: EventLoop) {
        self.fd = fd
        self.loop = loop
    }

    /// Registers with the loop (loop thread only). With `connecting`, waits for the connect to finish
    /// and reports it through `onConnect`.
    public func start(delegate: ConnectionDelegate, connecting: Bool = false, onConnect: ((HTTPError?) -> Void)? = nil) {
        self.delegate = delegate
        delegateRetainer = delegate
        connectPending = connecting
        self.onConnect = onConnect
        let interest = connecting ? CP_EV_WRITE : CP_EV_READ
        wantWrite = connecting
        guard let t = loop.register(fd: fd, interest: interest, handler: self) else {
            closeNow(HTTPError(.io, "cannot register a socket with epoll"))
            return
        }
        token = t
        if !connecting, let cb = onConnect {
            self.onConnect = nil
            cb(nil)
        }
    }

    /// Hands the connection to another delegate (protocol detection → HTTP/1.1 or HTTP/2).
    public func replaceDelegate(_ d: ConnectionDelegate) {
        delegate = d
        delegateRetainer = d
    }

    public func handleEvents(_ events: UInt32) {
        if isClosed { return }
        if connectPending {
            if events & (CP_EV_WRITE | CP_EV_ERR | CP_EV_HUP) != 0 {
                connectPending = false
                let r = cp_connect_result(fd)
                if r != 0 {
                    let err = HTTPError.errno("connect", Int(r))
                    let cb = onConnect
                    onConnect = nil
                    cb?(err)
                    closeNow(err)
                    return
                }
                wantWrite = !outbound.isEmpty
                updateInterest()
                let cb = onConnect
                onConnect = nil
                cb?(nil)
                if !outbound.isEmpty { flush() }
            }
            return
        }
        if events & CP_EV_WRITE != 0 { flush() }
        if isClosed { return }
        if lingering {
            if pendingWriteBytes == 0 && events & (CP_EV_READ | CP_EV_HUP | CP_EV_ERR) != 0 { lingerRead() }
            return
        }
        if events & (CP_EV_READ | CP_EV_HUP | CP_EV_ERR) != 0 && !readPaused { readAvailable() }
    }

    private func readAvailable() {
        // Read until EAGAIN, but at most a few chunks per event so one busy peer cannot starve others.
        for _ in 0..<4 {
            if isClosed || readPaused { return }
            let n = readBuffer.withUnsafeMutableBytes { buf in cp_read(fd, buf.baseAddress, buf.count) }
            if n > 0 {
                let count = Int(n)
                readBuffer.withUnsafeBytes { buf in
                    delegate?.connectionReceived(UnsafeRawBufferPointer(rebasing: buf[0..<count]))
                }
                if count < SocketConnection.readChunk { return }
            } else if n == 0 {
                closeNow(nil)
                return
            } else {
                let e = Int32(truncatingIfNeeded: -n)
                if e == EAGAIN || e == EWOULDBLOCK || e == EINTR { return }
                closeNow(HTTPError.errno("read", Int(n)))
                return
            }
        }
    }

    /// Queues bytes and writes what the socket takes now. Loop thread only.
    public func write(_ bytes: UnsafeRawBufferPointer) {
        if isClosed || bytes.isEmpty { return }
        outbound.append(contentsOf: bytes)
        if !connectPending { flush() }
    }

    public func write(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { write($0) }
    }

    /// Bytes queued but not yet written.
    public var pendingWriteBytes: Int { outbound.count - outboundOffset }

    private func flush() {
        while outboundOffset < outbound.count {
            let n = outbound.withUnsafeBytes { buf -> Int in
                let rest = UnsafeRawBufferPointer(rebasing: buf[outboundOffset...])
                return cp_write(fd, rest.baseAddress, rest.count)
            }
            if n > 0 {
                outboundOffset += n
            } else {
                let e = Int32(truncatingIfNeeded: -n)
                if n < 0 && (e == EAGAIN || e == EWOULDBLOCK || e == EINTR) {
                    if !wantWrite {
                        wantWrite = true
                        updateInterest()
                    }
                    return
                }
                closeNow(HTTPError.errno("write", n))
                return
            }
        }
        outbound.removeAll(keepingCapacity: outbound.capacity <= 1 << 20)
        outboundOffset = 0
        if closeWhenDrained {
            closeNow(nil)
            return
        }
        if lingering {
            if wantWrite {
                wantWrite = false
                updateInterest()
            }
            startLingerRead()
            return
        }
        if wantWrite {
            wantWrite = false
            updateInterest()
        }
        delegate?.connectionDrained()
    }

    /// Stops or resumes reading (back-pressure). Loop thread only.
    public func setReadPaused(_ paused: Bool) {
        if readPaused == paused || isClosed { return }
        readPaused = paused
        updateInterest()
    }

    private func updateInterest() {
        if isClosed || token == 0 { return }
        var interest: UInt32 = 0
        if !readPaused && !connectPending { interest |= CP_EV_READ }
        if wantWrite { interest |= CP_EV_WRITE }
        loop.modify(fd: fd, token: token, interest: interest)
    }

    /// Closes after everything queued has been written (or immediately if nothing is queued).
    public func closeAfterFlush() {
        if isClosed { return }
        if pendingWriteBytes == 0 {
            closeNow(nil)
        } else {
            closeWhenDrained = true
        }
    }

    private var closeWhenDrained = false
    private var lingering = false
    private var lingerBudget = 0

    /// A "lingering close" for a response sent before the request was fully read: after everything
    /// queued is written, shuts down our side and reads and discards what the peer still sends (up to
    /// `maxBytes`, for at most `timeoutNs`) before closing. Closing with unread input would make the
    /// kernel send RST, and the peer could lose the response it has not read yet.
    public func lingerClose(timeoutNs: UInt64 = 5_000_000_000, maxBytes: Int = 64 << 20) {
        if isClosed || lingering { return }
        lingering = true
        lingerBudget = maxBytes
        delegateRetainerDuringLinger = delegate
        loop.schedule(afterNs: timeoutNs) { [weak self] in self?.closeNow(nil) }
        if pendingWriteBytes == 0 { startLingerRead() }
    }

    private var delegateRetainerDuringLinger: AnyObject?

    private func startLingerRead() {
        _ = cp_shutdown_write(fd)
        readPaused = false
        updateInterest()
    }

    private func lingerRead() {
        while !isClosed {
            let n = readBuffer.withUnsafeMutableBytes { buf in cp_read(fd, buf.baseAddress, buf.count) }
            if n > 0 {
                lingerBudget -= n
                if lingerBudget <= 0 {
                    closeNow(nil)
                    return
                }
            } else if n == 0 {
                closeNow(nil)
                return
            } else {
                let e = Int32(truncatingIfNeeded: -n)
                if e == EAGAIN || e == EWOULDBLOCK || e == EINTR { return }
                closeNow(nil)
                return
            }
        }
    }

    /// Closes the socket now and tells the delegate. Loop thread only. Idempotent.
    public func closeNow(_ error: HTTPError?) {
        if isClosed { return }
        isClosed = true
        if token != 0 { loop.unregister(fd: fd, token: token) }
        _ = cp_close(fd)
        fd = -1
        outbound = []
        let d = delegate
        let cb = onConnect
        onConnect = nil
        cb?(error ?? HTTPError(.closed, "connection closed"))
        d?.connectionClosed(error)
        delegateRetainer = nil
    }
}
