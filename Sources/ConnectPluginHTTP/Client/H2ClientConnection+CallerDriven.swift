// The HTTP/2 client's fast path: a blocking unary call does its own I/O on the caller's thread
// while its connection is otherwise idle.
//
// Why. On the loop path a sequential unary call crosses threads twice (caller → loop to send it,
// loop → caller with the response): two wake-ups, 4–5 context switches and tens of µs of CPU per
// call on the client. A caller that is going to block anyway can do the loop's work itself — write
// the request, poll(2) the socket, feed nghttp2 — and sleeps once, in poll, with no hand-off.
//
// Ownership. One thread at a time drives a connection:
// - the loop, by default. Its epoll events (through `SocketEventGate`) and its tasks that touch the
//   connection (`gated`, behind `ClientConnection.run`: request timers, HTTPClientCall's writes,
//   credits and cancels, the client's submits and close) enter under `ownLock`, counted in
//   `loopDepth`. Leaving, the loop records whether the connection is idle for a caller
//   (`idleForCaller`: established, usable, a plain socket with nothing queued, no stream in flight
//   or pending, nothing nghttp2 wants to write);
// - a caller, from `HTTPClient.stream(…, endStream: true)` (`tryAcquire`): only when the loop is
//   out and left the connection idle. It takes the fd out of epoll
//   (`SocketConnection.lendToCaller`; what H2Session writes then lands in `callerOut`) and submits
//   its request; its HTTPClientCall's `awaitHead`/`read` then `drive` the connection: write
//   `callerOut`, poll(2) the socket and the wake eventfd until the call's deadline, read and feed
//   nghttp2 until the stream ends. PING and SETTINGS ACKs, and WINDOW_UPDATEs for what the caller
//   has read, go out the same way.
// Hand-back (`release`) happens when the stream ended; at the deadline (RST_STREAM(CANCEL) queued,
// the call fails with the same `.timeout` as on the loop path); at once when loop work arrives
// meanwhile (another request for this connection, a cancel from another thread, the client closing:
// queued in `queuedWhileOwned`, the eventfd wakes the caller; its own call then goes on on the loop
// path, with its deadline timer armed there); on GOAWAY; on EOF, a socket error or a protocol error
// (the loop closes the socket then, so calls see the same errors as on the loop path). Bytes not yet
// written go to the socket's queue, the fd goes back into epoll, and the queued work runs on the
// loop. Loop-side work that comes up while a caller drives — closing the socket, the client's
// connection bookkeeping, retries after GOAWAY — waits in `afterRelease`.
// Timers never touch an owned connection: the caller's request has none (the caller enforces its
// deadline in poll), and every other request's timer goes through `gated`.
// The loop path stays for TLS, HTTP/1.1, the in-memory pipe, streams, `execute`, and whenever
// anything else is in flight on the connection (concurrent callers share it through the loop).
// Contract: a caller that got a fast call reads it to its end or cancels it; the connection is its
// until then (queued loop work waits while the caller is between `awaitHead` and `read`).
import CConnectPluginNGHTTP2
import CConnectPluginPosix
import Glibc

extension H2ClientConnection: SocketEventGate {
    func socketEventsBegin() -> Bool { loopBegin(queueing: nil) }
    func socketEventsEnd() { loopEnd() }
}

extension H2ClientConnection {
    enum DriveOutcome {
        /// `ready` held (or the request ended); the caller still owns the connection.
        case ready
        /// The connection went back to the loop; the call goes on on the loop path.
        case handedBack
        /// The request's deadline passed; the caller still owns the connection.
        case timedOut
    }

    // MARK: Loop side

    func run(_ work: @escaping () -> Void) { gated(work) }

    /// Runs loop work that touches the connection (loop thread): now, or — while a caller owns the
    /// connection — once it is handed back (the caller is woken to hand it back at once).
    func gated(_ work: @escaping () -> Void) {
        if !loopBegin(queueing: work) { return }
        work()
        loopEnd()
    }

    private func loopBegin(queueing work: (() -> Void)?) -> Bool {
        ownLock.lock()
        defer { ownLock.unlock() }
        if callerOwned {
            if let work {
                queuedWhileOwned.append(work)
                if !wakeSignaled && wakeFD >= 0 {
                    wakeSignaled = true
                    _ = cp_eventfd_signal(wakeFD)
                }
            }
            return false
        }
        loopDepth += 1
        idleForCaller = false
        return true
    }

    private func loopEnd() {
        ownLock.lock()
        defer { ownLock.unlock() }
        loopDepth -= 1
        if loopDepth == 0 { idleForCaller = isIdleForCaller }
    }

    /// Work for the loop that comes up in connection code: now on the loop; kept for the hand-back
    /// while a caller drives.
    func onLoopSide(_ work: @escaping () -> Void) {
        if callerDriving {
            afterRelease.append(work)
        } else {
            work()
        }
    }

    /// Read by whoever drives the connection.
    private var isIdleForCaller: Bool {
        guard !connecting, !dead, !goingAway, pending.isEmpty, streamCount == 0,
              let session, !session.isBusy, !session.isDead, let s = session.session,
              let sock = socket as? SocketConnection, !sock.isClosed, !sock.isTLS, sock.pendingWriteBytes == 0
        else { return false }
        return nghttp2_session_want_write(s) == 0
    }

    // MARK: Caller side

    /// Takes the connection for the calling thread if it is idle (see the file comment). On true the
    /// caller must `submit` its request and drive the call to its end; on false nothing changed.
    func tryAcquire() -> Bool {
        ownLock.lock()
        // The loop may still be inside, finishing the previous call after it woke this caller with
        // the response: give it a moment to leave rather than go the slow way.
        var spins = 0
        while loopDepth > 0 && !callerOwned && spins < 64 {
            ownLock.unlock()
            sched_yield()
            spins += 1
            ownLock.lock()
        }
        if callerOwned || loopDepth > 0 || !idleForCaller {
            ownLock.unlock()
            return false
        }
        if wakeFD < 0 {
            let fd = cp_eventfd()
            if fd < 0 {
                ownLock.unlock()
                return false
            }
            wakeFD = fd
        }
        callerOwned = true
        idleForCaller = false
        ownLock.unlock()
        guard let sock = socket as? SocketConnection,
              let fd = sock.lendToCaller(writer: { [weak self] bytes in self?.callerOut.append(contentsOf: bytes) })
        else {
            release(inFlight: nil)
            return false
        }
        lentSocket = sock
        callerFD = fd
        callerDriving = true
        if callerReadBuffer.isEmpty { callerReadBuffer = [UInt8](repeating: 0, count: 64 << 10) }
        return true
    }

    /// Hands the connection back to the loop (the owning caller's thread). `req`: the caller's
    /// request; if it has not ended it goes on on the loop path, with its deadline timer armed there.
    func release(inFlight req: ClientRequest?) {
        callerDriving = false
        var unsent: [UInt8] = []
        if callerOutOffset < callerOut.count { unsent = Array(callerOut[callerOutOffset...]) }
        callerOut.removeAll(keepingCapacity: callerOut.capacity <= 1 << 20)
        callerOutOffset = 0
        var work = afterRelease
        afterRelease = []
        if let sock = lentSocket {
            lentSocket = nil
            callerFD = -1
            if !sock.returnFromCaller(unsent: unsent) {
                let err = HTTPError(.io, "connection to \(endpoint.description) failed: cannot watch its socket again (epoll)")
                work.append { sock.closeNow(err) }
            }
        }
        if let req, !req.isDone, let d = req.deadlineNs {
            work.append { [weak self, weak req] in
                guard let self, let req, !req.isDone else { return }
                if let owner = self.owner {
                    owner.armTimer(req, deadlineNs: d)
                } else {
                    self.abort(req, HTTPError(.closed, "the client was closed"))
                    req.fail(HTTPError(.closed, "the client was closed"), loop: self.loop)
                }
            }
        }
        let idle = work.isEmpty && isIdleForCaller
        ownLock.lock()
        callerOwned = false
        let queued = queuedWhileOwned
        queuedWhileOwned = []
        if wakeSignaled {
            cp_eventfd_drain(wakeFD)
            wakeSignaled = false
        }
        idleForCaller = idle && queued.isEmpty
        ownLock.unlock()
        work.append(contentsOf: queued)
        if !work.isEmpty {
            loop.execute { [self] in
                for w in work { gated(w) }
            }
        }
    }

    /// The owning caller's request passed its deadline: reset the stream, fail the request, hand the
    /// connection back (the RST goes out from the loop if the socket does not take it now).
    func expire(_ req: ClientRequest, _ err: HTTPError) {
        abort(req, err)
        req.fail(err, loop: loop)
        _ = writeOut()
        release(inFlight: nil)
    }

    /// The owning caller read `n` bytes of its response: open the stream's window (the
    /// WINDOW_UPDATE goes out with the next write).
    func consumedByOwner(_ req: ClientRequest, bytes n: Int) {
        if req.isDone { return }
        consumed(req, bytes: n)
    }

    /// Writes what the socket takes now of the bytes queued by the owning caller. False on a write
    /// error (`callerError` tells which).
    @discardableResult
    func writeOut() -> Bool {
        while callerOutOffset < callerOut.count {
            let off = callerOutOffset
            let fd = callerFD
            let n = callerOut.withUnsafeBytes { buf -> Int in
                guard let base = buf.baseAddress else { return 0 }
                return cp_write(fd, base + off, buf.count - off)
            }
            if n > 0 {
                callerOutOffset += n
                continue
            }
            let e = Int32(truncatingIfNeeded: -n)
            if n < 0 && (e == EAGAIN || e == EWOULDBLOCK || e == EINTR) { return true }
            callerError = HTTPError.errno("write", n)
            return false
        }
        callerOut.removeAll(keepingCapacity: callerOut.capacity <= 1 << 20)
        callerOutOffset = 0
        return true
    }

    /// Drives the connection on the owning caller's thread until `ready()` holds, the request
    /// ends, its deadline passes, or the connection has to go back to the loop (then it is handed
    /// back here). `ready` must not call into the connection.
    func drive(_ req: ClientRequest, until ready: () -> Bool) -> DriveOutcome {
        while true {
            if !writeOut() {
                let err = callerError
                if let sock = lentSocket { afterRelease.append { sock.closeNow(err) } }
                release(inFlight: req)
                return .handedBack
            }
            if req.isDone || ready() { return .ready }
            if ids[ObjectIdentifier(req)] == nil || !afterRelease.isEmpty || dead || goingAway {
                // Moved (retried after GOAWAY), or the loop has work here: let it continue.
                release(inFlight: req)
                return .handedBack
            }
            if ownLock.withLock({ !queuedWhileOwned.isEmpty }) {
                release(inFlight: req)
                return .handedBack
            }
            var timeout: Int32 = -1
            if let d = req.deadlineNs {
                let now = monotonicNowNs()
                if now >= d { return .timedOut }
                let ms = (d - now + 999_999) / 1_000_000
                timeout = ms > 60_000 ? 60_000 : Int32(ms)
            }
            var fds: (pollfd, pollfd) = (
                pollfd(fd: callerFD, events: Int16(POLLIN) | (callerOutOffset < callerOut.count ? Int16(POLLOUT) : 0), revents: 0),
                pollfd(fd: wakeFD, events: Int16(POLLIN), revents: 0))
            let rc = withUnsafeMutablePointer(to: &fds) { p in
                p.withMemoryRebound(to: pollfd.self, capacity: 2) { poll($0, 2, timeout) }
            }
            if rc < 0 {
                let e = errno
                if e == EINTR || e == EAGAIN { continue }
                // poll itself failed (resources): the loop goes on with the call.
                release(inFlight: req)
                return .handedBack
            }
            if rc == 0 || fds.0.revents & Int16(POLLIN | POLLHUP | POLLERR) == 0 { continue }
            let fd = callerFD
            let n = callerReadBuffer.withUnsafeMutableBytes { buf in cp_read(fd, buf.baseAddress, buf.count) }
            if n > 0 {
                let count = Int(n)
                callerReadBuffer.withUnsafeBytes { buf in
                    connectionReceived(UnsafeRawBufferPointer(rebasing: buf[0..<count]))
                }
                continue
            }
            let e = Int32(truncatingIfNeeded: -n)
            if n < 0 && (e == EAGAIN || e == EWOULDBLOCK || e == EINTR) { continue }
            // EOF or a socket error: the loop closes the connection (and fails its calls) as it would.
            let err: HTTPError? = n == 0 ? nil : HTTPError.errno("read", Int(n))
            if let sock = lentSocket { afterRelease.append { sock.closeNow(err) } }
            release(inFlight: req)
            return .handedBack
        }
    }
}
