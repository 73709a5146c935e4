// A non-blocking stream socket owned by one event loop: buffered writes, read events handed to a
// protocol handler (HTTP/1.1 or HTTP/2), and one close path. Optionally TLS (enableTLS before start):
// the delegate then reads and writes plaintext and the socket carries the TLS records.
import CConnectPluginPosix
import Glibc

public final class SocketConnection: EventHandler {
    public let loop: EventLoop
    public private(set) var fd: Int32
    private var token: UInt64 = 0
    public weak var delegate: ConnectionDelegate?
    /// Holds the delegate strongly while the connection is open (the connection is owned by its loop).
    private var delegateRetainer: AnyObject?
    /// Bytes for the socket (ciphertext with TLS).
    private var outbound: [UInt8] = []
    private var outboundOffset = 0
    private var wantWrite = false
    private var readPaused = false
    public private(set) var isClosed = false
    private var connectPending = false
    private var onConnect: ((HTTPError?) -> Void)?
    private static let readChunk = 64 * 1024
    /// Asked before each epoll event is handled (see `SocketEventGate`); nil: always handled.
    public weak var eventGate: SocketEventGate?
    /// While the socket is lent to another thread (`lendToCaller`): where `write` puts the bytes.
    private var callerWriter: ((UnsafeRawBufferPointer) -> Void)?
    private var readBuffer = [UInt8](repeating: 0, count: SocketConnection.readChunk)

    // TLS state (all nil/false without TLS).
    private var tls: TLSEngine?
    private var tlsEnabled = false
    private var tlsHandshakeDone = false
    /// Plaintext the delegate wrote before the handshake completed; encrypted and sent after it.
    private var tlsPlainPending: [UInt8] = []
    /// Ciphertext was fed to the engine that may still hold plaintext (reading paused mid-delivery).
    private var tlsInputBuffered = false
    private var tlsResumeScheduled = false
    private var tlsCloseNotifyQueued = false

    /// Called on the loop thread once the TLS handshake completed, with the negotiated ALPN protocol
    /// (nil: none), before the first plaintext reaches the delegate. A server picks HTTP/2 or HTTP/1.1
    /// here. Set it before `start`.
    public var onTLSHandshake: ((String?) -> Void)?
    /// The ALPN protocol agreed on in the TLS handshake (nil without TLS, before the handshake, or
    /// when none was agreed).
    public private(set) var negotiatedALPN: String?
    /// The TLS peer's certificate identity (nil without TLS, before the handshake, or when the peer
    /// presented no certificate).
    public private(set) var peerIdentity: TLSPeerIdentity?
    /// "TLSv1.3" etc. after the handshake.
    public private(set) var tlsVersion: String?
    /// Server: the SNI name the client asked for.
    public private(set) var tlsRequestedServerName: String?
    /// True when TLS was enabled on this connection.
    public var isTLS: Bool { tlsEnabled }
    /// True once the TLS handshake completed (always false without TLS).
    public var isTLSHandshakeComplete: Bool { tlsHandshakeDone }
    /// The engine (tests: buffered input bounds). Nil without TLS or once closed.
    var tlsEngine: TLSEngine? { tls }

    /// Wraps a connected (or connecting) non-blocking socket. Call `start` on the loop thread.
    public init(fd: Int32, loop: EventLoop) {
        self.fd = fd
        self.loop = loop
    }

    /// Makes this connection TLS. Call before `start` (returns false, and does nothing, after it).
    /// Reads then deliver plaintext, writes encrypt, and the handshake runs first: writes made before
    /// it completes are sent after it. With TLS, `onConnect` fires only after the handshake (with the
    /// handshake's error if it fails) so `negotiatedALPN` is known before the first write.
    @discardableResult
    public func enableTLS(_ engine: TLSEngine) -> Bool {
        if token != 0 || isClosed || tlsEnabled { return false }
        tls = engine
        tlsEnabled = true
        return true
    }

    /// Registers with the loop (loop thread only). With `connecting`, waits for the connect to finish
    /// and reports it through `onConnect` (with TLS: once the handshake is done).
    public func start(delegate: ConnectionDelegate, connecting: Bool = false, onConnect: ((HTTPError?) -> Void)? = nil) {
        assert(loop.inEventLoop, "SocketConnection.start called off its loop thread")
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
        if connecting { return }
        if tls != nil {
            tlsDriveHandshake()
            return
        }
        if let cb = self.onConnect {
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
        guard let gate = eventGate else {
            handleEventsNow(events)
            return
        }
        if !gate.socketEventsBegin() { return }
        handleEventsNow(events)
        gate.socketEventsEnd()
    }

    private func handleEventsNow(_ events: UInt32) {
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
                if tls != nil {
                    tlsDriveHandshake()
                    return
                }
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
            if tls != nil && tlsInputBuffered {
                // Plaintext left from an earlier read (reading was paused): deliver it before reading more.
                tlsProcessInput()
                continue
            }
            let n = readBuffer.withUnsafeMutableBytes { buf in cp_read(fd, buf.baseAddress, buf.count) }
            if n > 0 {
                let count = Int(n)
                if let engine = tls {
                    let err = readBuffer.withUnsafeBytes { buf in
                        engine.feed(UnsafeRawBufferPointer(rebasing: buf[0..<count]))
                    }
                    if let err {
                        tlsFail(err)
                        return
                    }
                    tlsInputBuffered = true
                    tlsProcessInput()
                } else {
                    readBuffer.withUnsafeBytes { buf in
                        delegate?.connectionReceived(UnsafeRawBufferPointer(rebasing: buf[0..<count]))
                    }
                }
                if count < SocketConnection.readChunk { return }
            } else if n == 0 {
                if tls != nil && !tlsHandshakeDone {
                    closeNow(HTTPError(TLSEngine.errorKind, "TLS handshake failed: the peer closed the connection during the handshake"))
                } else {
                    closeNow(nil)
                }
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
        if let w = callerWriter {
            // Lent to a caller's thread: that thread writes the bytes itself.
            w(bytes)
            return
        }
        assert(loop.inEventLoop, "SocketConnection.write called off its loop thread")
        if isClosed || bytes.isEmpty { return }
        if tls != nil {
            if !tlsHandshakeDone {
                tlsPlainPending.append(contentsOf: bytes)
                return
            }
            // After close_notify nothing more can be sent on this TLS connection.
            if tlsCloseNotifyQueued { return }
            tlsEncrypt(bytes)
            if isClosed { return }
        } else if !connectPending && outboundOffset >= outbound.count {
            // Nothing queued: write from the caller's buffer; only what the socket leaves is copied.
            writeDirect(bytes, UnsafeRawBufferPointer(start: nil, count: 0))
            return
        } else {
            outbound.append(contentsOf: bytes)
        }
        if !connectPending { flush() }
    }

    public func write(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { write($0) }
    }

    /// Queues `a` then `b`: with nothing queued (and no TLS), one gathered write straight from both
    /// buffers (HTTP/2: a DATA frame's header and its payload, no copy), and only what the socket
    /// does not take now is copied into the queue. Loop thread only.
    public func write(_ a: UnsafeRawBufferPointer, _ b: UnsafeRawBufferPointer) {
        if let w = callerWriter {
            // Lent to a caller's thread (the client fast path): that thread writes the bytes itself.
            w(a)
            w(b)
            return
        }
        assert(loop.inEventLoop, "SocketConnection.write called off its loop thread")
        if isClosed { return }
        if tls != nil || connectPending || outboundOffset < outbound.count {
            write(a)
            write(b)
            return
        }
        writeDirect(a, b)
    }

    /// Writes `a` and `b` in one call when nothing is queued (plain socket, connected), queues the
    /// rest, then finishes like `flush` (drained callback, close when drained).
    private func writeDirect(_ a: UnsafeRawBufferPointer, _ b: UnsafeRawBufferPointer) {
        let total = a.count + b.count
        if total == 0 { return }
        let n = sendGather(a, b)
        if n < 0 {
            let e = Int32(truncatingIfNeeded: -n)
            if !(e == EAGAIN || e == EWOULDBLOCK) {
                closeNow(HTTPError.errno("write", n))
                return
            }
        }
        let sent = max(0, n)
        if sent < total {
            if outboundOffset > 0 {
                outbound.removeAll(keepingCapacity: outbound.capacity <= 1 << 20)
                outboundOffset = 0
            }
            if sent < a.count {
                outbound.append(contentsOf: UnsafeRawBufferPointer(rebasing: a[sent...]))
                outbound.append(contentsOf: b)
            } else {
                outbound.append(contentsOf: UnsafeRawBufferPointer(rebasing: b[(sent - a.count)...]))
            }
        }
        flush()
    }

    /// sendmsg of up to two buffers (MSG_NOSIGNAL; writev for a descriptor that is not a socket).
    /// Returns the bytes written or -errno.
    private func sendGather(_ a: UnsafeRawBufferPointer, _ b: UnsafeRawBufferPointer) -> Int {
        var iov = (iovec(iov_base: UnsafeMutableRawPointer(mutating: a.baseAddress), iov_len: a.count),
                   iovec(iov_base: UnsafeMutableRawPointer(mutating: b.baseAddress), iov_len: b.count))
        let count = b.count > 0 ? 2 : 1
        let fd = self.fd
        return withUnsafeMutableBytes(of: &iov) { raw -> Int in
            guard let base = raw.baseAddress?.assumingMemoryBound(to: iovec.self) else { return -Int(EINVAL) }
            var msg = msghdr()
            msg.msg_iov = base
            msg.msg_iovlen = count
            while true {
                var n = sendmsg(fd, &msg, Int32(MSG_NOSIGNAL))
                if n < 0 && errno == ENOTSOCK { n = writev(fd, base, Int32(count)) }
                if n >= 0 { return n }
                let e = errno
                if e == EINTR { continue }
                return -Int(e)
            }
        }
    }

    /// Bytes queued but not yet written (with TLS: plaintext waiting for the handshake plus ciphertext
    /// not yet on the wire; 0 means everything the delegate wrote was sent).
    public var pendingWriteBytes: Int { outbound.count - outboundOffset + tlsPlainPending.count }

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
                // Only close_notify was left (everything the delegate wrote is out): not an error.
                closeNow(tlsCloseNotifyQueued && closeWhenDrained ? nil : HTTPError.errno("write", n))
                return
            }
        }
        outbound.removeAll(keepingCapacity: outbound.capacity <= 1 << 20)
        outboundOffset = 0
        if (closeWhenDrained || lingering) && tlsPlainPending.isEmpty, let engine = tls, tlsHandshakeDone,
           !tlsCloseNotifyQueued {
            // Everything the delegate wrote is out: end the TLS stream properly, then close/linger.
            tlsCloseNotifyQueued = true
            engine.queueCloseNotify()
            engine.takeOutput(appendingTo: &outbound)
            if !outbound.isEmpty {
                flush()
                return
            }
        }
        if closeWhenDrained && tlsPlainPending.isEmpty {
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
        if tlsPlainPending.isEmpty { delegate?.connectionDrained() }
    }

    /// Stops or resumes reading (back-pressure). Loop thread only.
    public func setReadPaused(_ paused: Bool) {
        assert(loop.inEventLoop, "SocketConnection.setReadPaused called off its loop thread")
        if readPaused == paused || isClosed { return }
        readPaused = paused
        updateInterest()
        if !paused && tls != nil && tlsInputBuffered && !tlsResumeScheduled {
            // Plaintext may be waiting inside the engine with nothing new on the socket (so no epoll
            // event would come): deliver it from the loop, outside the caller's stack.
            tlsResumeScheduled = true
            loop.execute { [weak self] in
                guard let self else { return }
                self.tlsResumeScheduled = false
                if !self.isClosed && !self.readPaused && !self.lingering && self.tlsInputBuffered {
                    self.tlsProcessInput()
                }
            }
        }
    }

    private func updateInterest() {
        if isClosed || token == 0 { return }
        var interest: UInt32 = 0
        if !readPaused && !connectPending { interest |= CP_EV_READ }
        if wantWrite { interest |= CP_EV_WRITE }
        loop.modify(fd: fd, token: token, interest: interest)
    }

    /// Closes after everything queued has been written (or immediately if nothing is queued). With
    /// TLS, close_notify is sent last.
    public func closeAfterFlush() {
        assert(loop.inEventLoop, "SocketConnection.closeAfterFlush called off its loop thread")
        if isClosed { return }
        if tls != nil {
            if !tlsHandshakeDone && tlsPlainPending.isEmpty {
                closeNow(nil)
                return
            }
            closeWhenDrained = true
            // During the handshake the plaintext goes out (and the close happens) once it completes.
            if tlsHandshakeDone && !connectPending { flush() }
            return
        }
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
        if tls != nil && !tlsHandshakeDone {
            closeAfterFlush()
            return
        }
        lingering = true
        lingerBudget = maxBytes
        // The delegate stays alive through `delegateRetainer` until closeNow lets go of it.
        lingerTimer = loop.schedule(afterNs: timeoutNs) { [weak self] in self?.closeNow(nil) }
        if tls != nil {
            // flush sends close_notify after the queued data, then starts the linger read.
            if !connectPending { flush() }
            return
        }
        if pendingWriteBytes == 0 { startLingerRead() }
    }

    private var lingerTimer: TimerHandle?

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
        assert(loop.inEventLoop, "SocketConnection.closeNow called off its loop thread")
        if isClosed { return }
        isClosed = true
        if token != 0 { loop.unregister(fd: fd, token: token) }
        if let t = lingerTimer {
            lingerTimer = nil
            loop.cancel(t)
        }
        _ = cp_close(fd)
        fd = -1
        outbound = []
        tlsPlainPending = []
        tls = nil
        tlsInputBuffered = false
        let d = delegate
        let cb = onConnect
        onConnect = nil
        onTLSHandshake = nil
        cb?(error ?? HTTPError(.closed, "connection closed"))
        d?.connectionClosed(error)
        // Let go of the delegate: it holds this connection strongly, so keeping it would keep both
        // (and the read buffer) alive for ever.
        delegateRetainer = nil
    }

    // MARK: TLS

    /// Runs the handshake as far as the input allows; on completion reports it and starts the data phase.
    private func tlsDriveHandshake() {
        guard let engine = tls, !tlsHandshakeDone, !isClosed else { return }
        switch engine.advanceHandshake() {
        case .inProgress:
            tlsInputBuffered = false
            engine.takeOutput(appendingTo: &outbound)
            if !outbound.isEmpty { flush() }
        case .failed(let err):
            tlsFail(err)
        case .complete:
            tlsHandshakeDone = true
            negotiatedALPN = engine.negotiatedALPN
            peerIdentity = engine.peerIdentity
            tlsVersion = engine.protocolVersion
            tlsRequestedServerName = engine.requestedServerName
            engine.takeOutput(appendingTo: &outbound)
            if !tlsPlainPending.isEmpty {
                let early = tlsPlainPending
                tlsPlainPending = []
                early.withUnsafeBytes { tlsEncrypt($0) }
                if isClosed { return }
            }
            if let cb = onTLSHandshake {
                onTLSHandshake = nil
                cb(negotiatedALPN)
                if isClosed { return }
            }
            if let cb = onConnect {
                onConnect = nil
                cb(nil)
                if isClosed { return }
            }
            flush()
        }
    }

    /// Delivers the plaintext in the engine until it needs more input or reading is paused.
    private func tlsProcessInput() {
        guard let engine = tls else { return }
        if !tlsHandshakeDone {
            tlsDriveHandshake()
            if isClosed || !tlsHandshakeDone { return }
        }
        while !isClosed && !readPaused {
            switch engine.readPlaintext() {
            case .data(let plain):
                delegate?.connectionReceived(plain)
            case .wantInput:
                tlsInputBuffered = false
                tlsSendEngineOutput()
                return
            case .closed:
                // close_notify: the peer finished sending (same as EOF on a plain socket).
                closeNow(nil)
                return
            case .failed(let err):
                tlsFail(err)
                return
            }
        }
        tlsSendEngineOutput()
    }

    /// Sends what reading produced (key updates, session tickets), if anything.
    private func tlsSendEngineOutput() {
        guard let engine = tls, !isClosed, engine.pendingOutputBytes > 0 else { return }
        engine.takeOutput(appendingTo: &outbound)
        if !connectPending { flush() }
    }

    /// Encrypts plaintext into the outbound queue in pieces (so the engine's buffer stays small).
    private func tlsEncrypt(_ bytes: UnsafeRawBufferPointer) {
        guard let engine = tls else { return }
        var offset = 0
        let piece = 64 * 1024
        while offset < bytes.count {
            let n = min(piece, bytes.count - offset)
            if let err = engine.writePlaintext(UnsafeRawBufferPointer(rebasing: bytes[offset..<(offset + n)])) {
                tlsFail(err)
                return
            }
            engine.takeOutput(appendingTo: &outbound)
            offset += n
        }
    }

    /// A fatal TLS error: sends what the engine has for the peer (an alert, or a plaintext HTTP 400 to
    /// a plaintext HTTP client) without waiting, then closes with `err`.
    private func tlsFail(_ err: HTTPError) {
        if isClosed { return }
        if let engine = tls {
            if let reply = engine.plaintextReply {
                outbound.append(contentsOf: reply)
            } else {
                engine.takeOutput(appendingTo: &outbound)
            }
        }
        if !connectPending {
            while outboundOffset < outbound.count {
                let n = outbound.withUnsafeBytes { buf -> Int in
                    let rest = UnsafeRawBufferPointer(rebasing: buf[outboundOffset...])
                    return cp_write(fd, rest.baseAddress, rest.count)
                }
                if n <= 0 { break }
                outboundOffset += n
            }
        }
        closeNow(err)
    }
}

/// Lets a socket's delegate keep the loop out while another thread drives the connection.
public protocol SocketEventGate: AnyObject {
    /// Loop thread, before the socket handles an epoll event. False: the event is dropped (another
    /// thread owns the connection now and does its I/O; the fd is out of epoll, or about to be).
    func socketEventsBegin() -> Bool
    /// After an event that `socketEventsBegin` let through was handled.
    func socketEventsEnd()
}

// MARK: Lending the socket to a caller's thread (the HTTP/2 client's fast path)

extension SocketConnection {
    /// Lends the file descriptor to the calling thread, which then reads and writes it itself: the
    /// fd leaves epoll and `write` hands bytes to `writer` instead of queueing them. Only a plain
    /// (not TLS), connected, open socket with nothing queued and reading not paused can be lent;
    /// returns nil otherwise (nothing changed). The caller must own the connection exclusively (the
    /// loop kept out by the delegate's `SocketEventGate` and its own tasks), and must not close the
    /// fd; `returnFromCaller` gives it back.
    public func lendToCaller(writer: @escaping (UnsafeRawBufferPointer) -> Void) -> Int32? {
        if isClosed || token == 0 || tlsEnabled || connectPending || lingering || closeWhenDrained || readPaused
            || callerWriter != nil || pendingWriteBytes != 0 {
            return nil
        }
        if loop.detach(fd: fd) != 0 { return nil }
        callerWriter = writer
        return fd
    }

    /// Takes the fd back into epoll after `lendToCaller` (on the thread that borrowed it, still
    /// owning the connection). `unsent`: bytes the borrower could not write yet; they go first.
    /// Returns false if epoll refused the fd (the owner then closes the connection on the loop).
    public func returnFromCaller(unsent: [UInt8]) -> Bool {
        callerWriter = nil
        if isClosed { return true }
        if !unsent.isEmpty {
            outbound = unsent
            outboundOffset = 0
            wantWrite = true
        }
        var interest: UInt32 = CP_EV_READ
        if wantWrite { interest |= CP_EV_WRITE }
        return loop.reattach(fd: fd, token: token, interest: interest) == 0
    }
}
