// `HTTPClientCall`: a streaming request/response as the caller sees it, with blocking,
// back-pressured `write`/`read` on the caller's thread; the loop delivers response events to it as
// a `ClientResponseSink`.

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
                c.sendBody(req, bytes)
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
                c.endBody(req)
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
            req.connection?.abort(req, err)
            req.fail(err, loop: loop)
        }
    }

    /// Blocks until the response head arrives. Returns (status, headers) or the error.
    public func awaitHead(untilNs deadline: UInt64? = nil) -> Result<(Int, HTTPHeaders), HTTPError> {
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
                if credit > 0 {
                    loop.execute { [self] in
                        guard let req = request, !req.isDone else { return }
                        req.connection?.consumed(req, bytes: credit)
                    }
                }
                return .data(chunk)
            }
            if let e = error {
                cond.unlock()
                return .failed(e)
            }
            if let t = trailers {
                cond.unlock()
                return .end(t)
            }
            cond.wait()
        }
    }

    var queuedBytes: Int { cond.withLock { inQueued } }
}
