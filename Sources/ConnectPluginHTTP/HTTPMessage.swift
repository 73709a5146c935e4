// Transport-level request and response values shared by HTTP/1.1 and HTTP/2.

public enum HTTPVersion: Sendable, Equatable {
    case http1_1
    case http2
}

/// A request head as the server received it. The body arrives through the `HTTPServerStream`.
public struct HTTPRequest: Sendable {
    public var method: String
    /// The request target: path and query.
    public var target: String
    public var authority: String?
    public var headers: HTTPHeaders
    public var version: HTTPVersion
    /// Set by the TLS layer: the verified peer certificate's identity, if any.
    public var peer: HTTPPeerInfo?
    /// Set by the server: the connection the request came on (nil when unknown).
    public var connection: HTTPConnectionInfo?

    public init(method: String, target: String, authority: String? = nil, headers: HTTPHeaders, version: HTTPVersion,
                peer: HTTPPeerInfo? = nil, connection: HTTPConnectionInfo? = nil) {
        self.method = method
        self.target = target
        self.authority = authority
        self.headers = headers
        self.version = version
        self.peer = peer
        self.connection = connection
    }

    /// The path without the query.
    public var path: Substring {
        if let q = queryMark { return target[..<q] }
        return target[...]
    }

    /// The query without the "?", or nil.
    public var query: Substring? {
        guard let q = queryMark else { return nil }
        return target[target.index(after: q)...]
    }

    /// Where the "?" is: found among the UTF-8 bytes ("?" is ASCII, so the byte's index is a valid
    /// String index), not Character by Character.
    private var queryMark: String.Index? {
        target.utf8.firstIndex(of: UInt8(ascii: "?"))
    }
}

/// Who is on the other end of a connection (TLS client certificates).
public struct HTTPPeerInfo: Sendable, Equatable {
    public var subject: String
    public var dnsNames: [String]
    public var uris: [String]
    public var ips: [String]
    public init(subject: String, dnsNames: [String], uris: [String], ips: [String]) {
        self.subject = subject
        self.dnsNames = dnsNames
        self.uris = uris
        self.ips = ips
    }
}

/// The server connection a request came on, for per-connection and per-peer limits.
public struct HTTPConnectionInfo: Sendable, Equatable {
    /// Unique among the process's server connections (never reused).
    public var id: UInt64
    /// The remote host: its address, a global IPv6 one cut to its /64 ("2001:db8:1:2::/64"); nil for a Unix socket.
    public var remoteHost: String?
    public init(id: UInt64, remoteHost: String?) {
        self.id = id
        self.remoteHost = remoteHost
    }
}

/// A complete response.
public struct HTTPResponse: Sendable {
    public var status: Int
    public var headers: HTTPHeaders
    public var body: [UInt8]
    public var trailers: HTTPHeaders

    public init(status: Int, headers: HTTPHeaders = HTTPHeaders(), body: [UInt8] = [], trailers: HTTPHeaders = HTTPHeaders()) {
        self.status = status
        self.headers = headers
        self.body = body
        self.trailers = trailers
    }
}

/// A piece of a streamed body.
public enum HTTPBodyEvent: Sendable {
    case data([UInt8])
    /// The body ended; HTTP trailers, if the peer sent any.
    case end(HTTPHeaders)
    /// The stream failed (peer reset, connection closed, canceled).
    case failed(HTTPError)
}

/// What a server connection (HTTP/1.1 or HTTP/2) does for its streams. Loop thread only.
protocol HTTPServerStreamTransport: AnyObject {
    func streamRespond(_ s: HTTPServerStream, _ response: HTTPResponse)
    func streamSendHead(_ s: HTTPServerStream, status: Int, headers: HTTPHeaders, endStream: Bool)
    func streamWrite(_ s: HTTPServerStream, _ bytes: [UInt8])
    func streamFinish(_ s: HTTPServerStream, trailers: HTTPHeaders)
    func streamReset(_ s: HTTPServerStream)
    /// The reader took `bytes` out of the inbound queue (open the window / resume reading).
    func streamConsumed(_ s: HTTPServerStream, bytes: Int)
    /// The handler will not read the rest of the request body.
    func streamAbandonInput(_ s: HTTPServerStream)
}

/// One request/response exchange on the server, streamed both ways.
///
/// Inbound, the handler either collects the whole body on the loop (`collectBody`, for unary
/// calls) or reads it piece by piece on its own thread (`read`). Outbound, it either answers with
/// one `respond`, or sends a head, writes body pieces (`write` blocks while `highWater` bytes are
/// waiting for the peer: a slow reader slows the writer) and finishes with trailers.
/// Every outbound call may be made from any thread; `read` and `write` block, so never call them
/// on a loop thread. `respond`, `sendHead`, `finish` and `reset` that end the loop's only open
/// exchange, called from a handler thread while the loop is idle, do their loop work on that
/// thread (`EventLoop.executeOrTakeOver`): the answer is written without waking the loop. With
/// other exchanges open the loop does it, batching the answers of one iteration into one write.
public final class HTTPServerStream: @unchecked Sendable {
    public let request: HTTPRequest
    public let loop: EventLoop
    weak var transport: HTTPServerStreamTransport?
    /// Connection-private tag (the HTTP/2 stream id).
    let tag: Int32
    public static let highWater = 256 << 10
    private let cond = ConditionLock()

    private enum InMode { case pending, collecting, pulling, discarding }
    private var inMode = InMode.pending
    private var inQueue: [[UInt8]] = []
    private var inHead = 0
    private var inQueued = 0
    private var inEnded = false
    private var inTrailers = HTTPHeaders()
    private var inCredit = 0
    private var collectLimit = 0
    private var collected: [UInt8] = []
    private var collectDone: (([UInt8], Bool) -> Void)?

    private var headSent = false
    private var finished = false
    private var canceled: HTTPError?
    private var outstanding = 0
    private var cancelHandlers: [() -> Void] = []
    private var endHandlers: [() -> Void] = []
    /// Counted in the loop's open exchanges until finished or canceled (`closeExchange`).
    private var open = true

    init(request: HTTPRequest, loop: EventLoop, transport: HTTPServerStreamTransport, tag: Int32 = 0) {
        self.request = request
        self.loop = loop
        self.transport = transport
        self.tag = tag
        loop.exchangeOpened()
    }

    deinit {
        if open { _ = loop.exchangeClosed() }
    }

    /// The exchange is over (lock held): true if it was the loop's last open one, so that its
    /// answer is best written by the answering thread itself (`EventLoop.executeOrTakeOver`).
    private func closeExchange() -> Bool {
        guard open else { return false }
        open = false
        return loop.exchangeClosed() == 0
    }

    /// Runs the loop work of an answer: taken over when this was the loop's only open exchange.
    private func runAnswer(alone: Bool, _ work: @escaping () -> Void) {
        if alone { loop.executeOrTakeOver(work) } else { loop.executeOrRun(work) }
    }

    // MARK: inbound (handler side)

    /// Loop thread: collects the whole body (up to `limit` bytes, 0 = no limit) and calls `done` on
    /// the loop with it; with `tooLarge` true it holds only a prefix and the rest is not read.
    /// `headCheck` (optional) sees the first `headCheckBytes` bytes once they arrived; returning false
    /// ends the collection at once as too large (an envelope whose length prefix exceeds the limit
    /// is refused before its payload is read).
    public func collectBody(limit: Int, headCheckBytes: Int = 0, headCheck: ((ArraySlice<UInt8>) -> Bool)? = nil,
                            _ done: @escaping (_ body: [UInt8], _ tooLarge: Bool) -> Void) {
        cond.lock()
        guard inMode == .pending else {
            cond.unlock()
            return
        }
        inMode = .collecting
        collectLimit = limit
        self.headCheck = headCheck
        self.headCheckBytes = headCheckBytes
        var body: [UInt8] = []
        for c in inQueue[inHead...] { body.append(contentsOf: c) }
        inQueue = []
        inHead = 0
        let moved = inQueued
        inQueued = 0
        collected = body
        collectDone = done
        let over = (limit > 0 && collected.count > limit) || !passesHeadCheck()
        let ended = inEnded
        cond.unlock()
        if moved > 0 { transport?.streamConsumed(self, bytes: moved) }
        if over {
            finishCollect(tooLarge: true)
        } else if ended {
            finishCollect(tooLarge: false)
        }
    }

    private var headCheck: ((ArraySlice<UInt8>) -> Bool)?
    private var headCheckBytes = 0

    /// Runs the head check once enough bytes are in (lock held). False = refuse.
    private func passesHeadCheck() -> Bool {
        guard let check = headCheck, collected.count >= headCheckBytes else { return true }
        headCheck = nil
        return check(collected[0..<headCheckBytes])
    }

    private func finishCollect(tooLarge: Bool) {
        cond.lock()
        let done = collectDone
        collectDone = nil
        let body = collected
        collected = []
        if tooLarge { inMode = .discarding }
        cond.unlock()
        if tooLarge { transport?.streamAbandonInput(self) }
        done?(body, tooLarge)
    }

    /// Switches to pull mode: the handler reads the body with `read`.
    public func startReading() {
        cond.withLock { if inMode == .pending { inMode = .pulling } }
    }

    /// Blocks until the next body piece, the end, or a failure. Not on a loop thread.
    public func read() -> HTTPBodyEvent {
        cond.lock()
        if inMode == .pending { inMode = .pulling }
        while true {
            if let e = canceled ?? readError {
                cond.unlock()
                return .failed(e)
            }
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
                    loop.execute { [weak self] in
                        guard let self else { return }
                        self.transport?.streamConsumed(self, bytes: credit)
                    }
                }
                return .data(chunk)
            }
            if inEnded {
                let t = inTrailers
                cond.unlock()
                return .end(t)
            }
            if inMode != .pulling {
                cond.unlock()
                return .failed(HTTPError(.invalidArgument, "the request body is not being read as a stream"))
            }
            cond.wait()
        }
    }

    /// Makes pending and future `read`s fail with `error` (a deadline passed). Any thread.
    public func failReads(_ error: HTTPError) {
        cond.withLock {
            if readError == nil { readError = error }
            cond.broadcast()
        }
    }
    private var readError: HTTPError?

    /// Bytes received and not yet read (loop side uses it to pause reading).
    var inboundQueuedBytes: Int { cond.withLock { inQueued } }

    // MARK: inbound (transport side, loop thread)

    /// Returns true when the reader is behind by more than `highWater` (the transport should stop reading).
    func deliver(_ bytes: UnsafeRawBufferPointer) -> Bool {
        cond.lock()
        if canceled != nil || (finished && inMode != .pulling) {
            cond.unlock()
            return false
        }
        switch inMode {
        case .pending, .pulling:
            inQueue.append(Array(bytes))
            inQueued += bytes.count
            let behind = inQueued > HTTPServerStream.highWater
            cond.signal()
            cond.unlock()
            return behind
        case .collecting:
            collected.append(contentsOf: bytes)
            let over = (collectLimit > 0 && collected.count > collectLimit) || !passesHeadCheck()
            cond.unlock()
            if over { finishCollect(tooLarge: true) }
            return false
        case .discarding:
            cond.unlock()
            return false
        }
    }

    /// The whole request body arrived.
    func deliverEnd(_ trailers: HTTPHeaders) {
        cond.lock()
        if inEnded {
            cond.unlock()
            return
        }
        inEnded = true
        inTrailers = trailers
        let collecting = inMode == .collecting
        cond.signal()
        cond.unlock()
        if collecting { finishCollect(tooLarge: false) }
    }

    /// True when the body is consumed as it arrives (collect or discard): the transport opens
    /// the flow-control window at once.
    var consumesOnArrival: Bool { cond.withLock { inMode == .collecting || inMode == .discarding } }

    var inputEnded: Bool { cond.withLock { inEnded } }

    // MARK: outbound

    /// Sends a complete response. Returns false if the stream already answered or is gone.
    @discardableResult
    public func respond(_ response: HTTPResponse) -> Bool {
        cond.lock()
        if finished || headSent || canceled != nil {
            cond.unlock()
            return false
        }
        finished = true
        headSent = true
        cancelHandlers = []
        let ends = takeEndHandlers()
        let alone = closeExchange()
        cond.unlock()
        runAnswer(alone: alone) { [self] in
            transport?.streamRespond(self, response)
            for h in ends { h() }
        }
        return true
    }

    /// Sends the response head; the body follows with `write`, then `finish`. With `endStream`
    /// the response ends with the head (HTTP/2: one HEADERS frame; gRPC trailers-only).
    @discardableResult
    public func sendHead(status: Int, headers: HTTPHeaders, endStream: Bool = false) -> Bool {
        cond.lock()
        if finished || headSent || canceled != nil {
            cond.unlock()
            return false
        }
        headSent = true
        var ends: [() -> Void] = []
        var alone = false
        if endStream {
            finished = true
            cancelHandlers = []
            ends = takeEndHandlers()
            alone = closeExchange()
        }
        cond.unlock()
        runAnswer(alone: alone) { [self] in
            transport?.streamSendHead(self, status: status, headers: headers, endStream: endStream)
            for h in ends { h() }
        }
        return true
    }

    /// Writes body bytes, blocking while more than `highWater` bytes wait for the peer.
    /// Returns nil, or the error that ended the stream.
    public func write(_ bytes: [UInt8]) -> HTTPError? {
        if bytes.isEmpty { return nil }
        cond.lock()
        while canceled == nil && !finished && outstanding > HTTPServerStream.highWater { cond.wait() }
        if let e = canceled {
            cond.unlock()
            return e
        }
        if finished || !headSent {
            cond.unlock()
            return HTTPError(.invalidArgument, finished ? "the response is already finished" : "send the response head first")
        }
        outstanding += bytes.count
        cond.unlock()
        // Body writes stay loop work (not taken over): the loop batches a stream's messages into one
        // write per iteration, where a take-over would make one syscall per message.
        loop.executeOrRun { [self] in transport?.streamWrite(self, bytes) }
        return nil
    }

    /// Ends the response body with optional trailers.
    @discardableResult
    public func finish(trailers: HTTPHeaders = HTTPHeaders()) -> Bool {
        cond.lock()
        if finished || !headSent || canceled != nil {
            cond.unlock()
            return false
        }
        finished = true
        cancelHandlers = []
        let ends = takeEndHandlers()
        let alone = closeExchange()
        cond.unlock()
        runAnswer(alone: alone) { [self] in
            transport?.streamFinish(self, trailers: trailers)
            for h in ends { h() }
        }
        return true
    }

    /// Aborts the exchange (HTTP/2 RST_STREAM, HTTP/1.1 connection close).
    public func reset() {
        cond.lock()
        if canceled != nil || finished {
            cond.unlock()
            return
        }
        finished = true
        cancelHandlers = []
        let ends = takeEndHandlers()
        let alone = closeExchange()
        cond.broadcast()
        cond.unlock()
        runAnswer(alone: alone) { [self] in
            transport?.streamReset(self)
            for h in ends { h() }
        }
    }

    /// Transport: `n` written bytes left our buffers.
    func consumedOutbound(_ n: Int) {
        cond.lock()
        outstanding -= n
        if outstanding < 0 { outstanding = 0 }
        cond.broadcast()
        cond.unlock()
    }

    /// True once finished or canceled.
    public var isDone: Bool { cond.withLock { finished || canceled != nil } }
    public var isCanceled: Bool { cond.withLock { canceled != nil } }
    public var isHeadSent: Bool { cond.withLock { headSent } }

    /// Called (on the loop) if the peer goes away before the response is finished; immediately if
    /// it already has. Several handlers may be registered.
    public func onCancel(_ handler: @escaping () -> Void) {
        cond.lock()
        if canceled != nil {
            cond.unlock()
            loop.executeOrRun(handler)
            return
        }
        if finished {
            cond.unlock()
            return
        }
        cancelHandlers.append(handler)
        cond.unlock()
    }

    /// Called once on the loop when the exchange is over in any way: the response was finished
    /// (`respond`, `finish`, `sendHead` with `endStream`), the stream was reset, or the peer went
    /// away; at once (on the loop) if it already is. For releasing what lives as long as the
    /// exchange, such as a deadline timer. Several handlers may be registered.
    public func onEnd(_ handler: @escaping () -> Void) {
        cond.lock()
        if finished || canceled != nil {
            cond.unlock()
            loop.executeOrRun(handler)
            return
        }
        endHandlers.append(handler)
        cond.unlock()
    }

    /// Lock held.
    private func takeEndHandlers() -> [() -> Void] {
        let hs = endHandlers
        endHandlers = []
        return hs
    }

    /// Transport side: the stream or connection went away.
    func cancel(_ error: HTTPError) {
        cond.lock()
        if canceled != nil {
            cond.unlock()
            return
        }
        let wasFinished = finished
        canceled = error
        _ = closeExchange()
        let hs = cancelHandlers
        cancelHandlers = []
        let ends = takeEndHandlers()
        let done = collectDone
        collectDone = nil
        cond.broadcast()
        cond.unlock()
        _ = done
        if !wasFinished && !hs.isEmpty {
            // Cancel handlers reach the application (on_done hooks, interceptors): on the loop
            // thread, not inside a handler thread that took the loop over to write its answer.
            if loop.inTakeOver { loop.execute { for h in hs { h() } } } else { for h in hs { h() } }
        }
        for h in ends { h() }
    }
}

/// Receives requests, on the connection's loop thread, as soon as their head arrived. Must not block.
public protocol HTTPServerHandler: AnyObject {
    func handle(_ stream: HTTPServerStream)
}

/// Limits of the HTTP server.
public struct HTTPServerConfig: Sendable {
    public var maxHeaderBytes: Int = 64 << 10
    /// A connection with nothing in flight and no bytes for this long is closed.
    public var idleTimeoutNs: UInt64 = 120_000_000_000
    public init() {}
}
