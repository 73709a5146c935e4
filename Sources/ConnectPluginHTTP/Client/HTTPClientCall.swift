// `HTTPClientCall`: a streaming request/response as the caller sees it, with blocking,
// back-pressured `write`/`read` on the caller's thread; the loop delivers response events to it as
// a `ClientResponseSink`.
import Glibc

/// A streaming request/response on the client, used from the caller's thread: `write` and `read`
/// block (never call them on a loop thread); `write` waits while `highWater` bytes are unsent.
public final class HTTPClientCall: ClientResponseSink, @unchecked Sendable {
    public static let highWater = 256 << 10
    let loop: EventLoop
    var request: ClientRequest?
    private let cond = ConditionLock()
    private var status = 0
    private var headers: HTTPHeaders?
    private var inQueue: [[UInt8]] = []
    private var inHead = 0
    private var inQueued = 0
    private var inCredit = 0
    private var trailers: HTTPHeaders?
    private var error: HTTPError?
    private var outstanding = 0
    private var sendClosed = false
    /// The HTTP/2 connection this call's own thread drives (the fast path, see
    /// H2ClientConnection+CallerDriven.swift); nil on the loop path. Caller's thread only.
    var fast: H2ClientConnection? {
        didSet { if fast != nil && oldValue == nil { fastThread = pthread_self() } }
    }
    /// The fast path ended with the stream (no window to open any more). Caller's thread only.
    private var fastStreamOver = false
    /// The thread that took the fast path (set before the call is handed out; never cleared).
    private var fastThread: pthread_t?

    init(loop: EventLoop, sendClosed: Bool = false) {
        self.loop = loop
        self.sendClosed = sendClosed
    }

    var consumesOnArrival: Bool { false }

    // Sink (loop thread).
    func responseHead(status: Int, headers: HTTPHeaders) {
        cond.withLock {
            self.status = status
            self.headers = headers
            cond.broadcast()
        }
    }

    func responseData(_ bytes: UnsafeRawBufferPointer) -> Bool {
        cond.lock()
        defer { cond.unlock() }
        inQueue.append(Array(bytes))
        inQueued += bytes.count
        cond.broadcast()
        return inQueued > HTTPClientCall.highWater
    }

    func responseEnd(trailers: HTTPHeaders) {
        cond.withLock {
            self.trailers = trailers
            if headers == nil { headers = HTTPHeaders() }
            cond.broadcast()
        }
    }

    func responseFailed(_ error: HTTPError) {
        cond.withLock {
            if self.error == nil { self.error = error }
            cond.broadcast()
        }
    }

    func sent(_ n: Int) {
        cond.withLock {
            outstanding -= n
            if outstanding < 0 { outstanding = 0 }
            cond.broadcast()
        }
    }

    /// Writes request body bytes. Returns nil (also when the server already ended its response: the
    /// bytes are dropped, and `read` reports the outcome), or the transport error that ended the call.
    public func write(_ bytes: [UInt8]) -> HTTPError? {
        if bytes.isEmpty { return nil }
        cond.lock()
        while error == nil && trailers == nil && outstanding > HTTPClientCall.highWater { cond.wait() }
        if let e = error {
            cond.unlock()
            return e
        }
        if trailers != nil {
            // The server answered already (e.g. an early error): the bytes are dropped and the
            // reader learns the outcome from the response.
            cond.unlock()
            return nil
        }
        if sendClosed {
            cond.unlock()
            return HTTPError(.invalidArgument, "the request body is already closed")
        }
        outstanding += bytes.count
        cond.unlock()
        loop.execute { [self] in
            guard let req = request else { return }
            if let c = req.connection {
                c.run { c.sendBody(req, bytes) }
            } else {
                req.pendingWrites.append(bytes)
            }
        }
        return nil
    }

    /// Ends the request body (half-close).
    public func closeSend() {
        let first: Bool = cond.withLock {
            let f = !sendClosed
            sendClosed = true
            return f
        }
        if !first { return }
        loop.execute { [self] in
            guard let req = request else { return }
            if let c = req.connection {
                c.run { c.endBody(req) }
            } else {
                req.pendingEnd = true
            }
        }
    }

    /// Cancels the call: HTTP/2 RST_STREAM(CANCEL), HTTP/1.1 connection close.
    public func cancel(_ err: HTTPError = HTTPError(.canceled, "the call was canceled")) {
        cond.withLock {
            if error == nil { error = err }
            cond.broadcast()
        }
        loop.execute { [self] in
            guard let req = request else { return }
            if let c = req.connection {
                c.run { [loop] in
                    c.abort(req, err)
                    req.fail(err, loop: loop)
                }
            } else {
                req.fail(err, loop: loop)
            }
        }
        // Canceled by the thread that drives the connection itself: hand it back now (the cancel
        // above then runs on the loop).
        if let t = fastThread, pthread_equal(t, pthread_self()) != 0 { leaveFast() }
    }

    /// Fast path: drives the connection on this thread until `ready` holds; lets go of it when the
    /// request ended or the connection went back to the loop.
    private func driveFast(until ready: () -> Bool) {
        guard let c = fast, let req = request else { return }
        switch c.drive(req, until: ready) {
        case .ready:
            if req.isDone {
                c.release(inFlight: nil)
                fast = nil
                fastStreamOver = true
            }
        case .handedBack:
            fast = nil
        case .timedOut:
            c.expire(req, HTTPError(.timeout, "deadline exceeded after \(req.timeoutNs / 1_000_000) ms"))
            fast = nil
            fastStreamOver = true
        }
    }

    /// Fast path: hands the connection back (the call has its outcome, or goes on on the loop).
    private func leaveFast() {
        guard let c = fast else { return }
        fast = nil
        c.release(inFlight: request)
    }

    /// Blocks until the response head arrives. Returns (status, headers) or the error.
    public func awaitHead(untilNs deadline: UInt64? = nil) -> Result<(Int, HTTPHeaders), HTTPError> {
        if fast != nil {
            driveFast { cond.withLock { headers != nil || error != nil } }
            if fast != nil && cond.withLock({ error != nil }) { leaveFast() }
        }
        cond.lock()
        defer { cond.unlock() }
        while headers == nil && error == nil {
            cond.wait()
        }
        if let h = headers { return .success((status, h)) }
        return .failure(error ?? HTTPError(.io, "no response"))
    }

    /// Blocks until the next response body piece, the end (with trailers), or a failure.
    public func read() -> HTTPBodyEvent {
        cond.lock()
        while true {
            if inHead < inQueue.count {
                let chunk = inQueue[inHead]
                inQueue[inHead] = []
                inHead += 1
                if inHead == inQueue.count {
                    inQueue.removeAll(keepingCapacity: true)
                    inHead = 0
                }
                inQueued -= chunk.count
                inCredit += chunk.count
                var credit = 0
                if inCredit >= 32 << 10 || inQueued == 0 {
                    credit = inCredit
                    inCredit = 0
                }
                cond.unlock()
                if credit > 0 && !fastStreamOver {
                    if let c = fast, let req = request {
                        c.consumedByOwner(req, bytes: credit)
                    } else {
                        loop.execute { [self] in
                            guard let req = request, let c = req.connection else { return }
                            c.run {
                                if !req.isDone { c.consumed(req, bytes: credit) }
                            }
                        }
                    }
                }
                return .data(chunk)
            }
            if let e = error {
                cond.unlock()
                leaveFast()
                return .failed(e)
            }
            if let t = trailers {
                cond.unlock()
                leaveFast()
                return .end(t)
            }
            if fast != nil {
                cond.unlock()
                driveFast { cond.withLock { inHead < inQueue.count || error != nil || trailers != nil } }
                cond.lock()
                continue
            }
            cond.wait()
        }
    }

    var queuedBytes: Int { cond.withLock { inQueued } }
}
