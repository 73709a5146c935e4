// The client's one call type: every call of every shape (unary, client, server and bidi
// streaming) and every protocol goes through a `ClientStream`. A unary call is the one-message
// case: its request is known up front, so the exchange starts with the whole body
// (`ClientTransport.stream(…, body:, endStream: true, …)`; the transport may resend a request the
// server never saw). Streams start with the head and write envelopes as they come. What differs
// per protocol (request head, framing, the response's head, body and end) is the call's
// `ProtocolClient` (Protocol/ProtocolClient.swift); the call only moves bytes, keeps the state,
// runs the interceptors' message and end hooks, and maps transport errors to codes.
import ConnectPluginHTTP

/// A call: `send` request messages, `closeSend`, `receive` response messages until nil.
/// Thread-safety: one thread may send while another receives; `cancel` from any thread.
public final class ClientStream: @unchecked Sendable {
    public let kind: MethodKind
    let client: RPCClient
    let proto: any ProtocolClient
    /// The locks (none for a call only its own thread uses: `RPCClient.unary`).
    private let locks: CallLocks
    private let sendLock: CallMutex
    private let recvLock: CallMutex
    /// Guards `httpCall` (set once the exchange starts), the canceled flag and `doneMirror`;
    /// receivers wait on it for a deferred start. `cancel` must not wait for a receive blocked
    /// under `recvLock`.
    private let stateLock: CallMutex
    private var httpCall: HTTPClientCall?
    /// A unary call opened as a stream: the request head, sent with the one message
    /// (`send`, or `closeSend` without one).
    private var deferredHead: ClientRequestHead?
    /// Monotonic deadline (ns) of the call, if it has a timeout.
    private let deadlineNs: UInt64?
    private var canceledFlag = false
    private var doneMirror = false
    /// A deferred start that failed (deadline passed): what receivers report.
    private var finalErrorBeforeStart: ConnectError?

    private var state: ClientResponseState
    private var headSeen = false
    /// The first undelivered message (most calls have one), then the rest in `pending`.
    private var first: [UInt8]?
    private var pending: [[UInt8]] = []
    private var pendingIndex = 0
    private var finished = false
    private var finalError: ConnectError?
    /// `receive` returned nil or threw the call's error: a later `cancel` no longer changes it.
    private var outcomeReported = false
    private var sendClosed = false
    /// The request body went out complete with the head (unary): `closeSend` has nothing to do.
    private var bodyEnded = false
    private var sentOne = false
    private var _trailers = Metadata()

    /// The call's interceptors (set before the stream is handed out); their end hooks run once,
    /// when the result is known, on cancel, or when the stream is released before its end.
    var interceptorRun: InterceptorRun?

    deinit {
        interceptorRun?.end(CallResult(error: ConnectError(.canceled, "the stream was released before its end")))
        locks.destroy()
    }

    /// A call whose exchange starts now: `body` goes out with the head, and with `endStream` it
    /// is the whole request (unary). `shared`: the call is handed out (other threads may use it);
    /// false for a call that only the calling thread uses, which then takes no locks.
    init(client: RPCClient, kind: MethodKind, head: ClientRequestHead, body: [UInt8], endStream: Bool, timeoutNs: UInt64?,
         shared: Bool = true) {
        locks = CallLocks(shared: shared)
        sendLock = locks.mutex(0)
        recvLock = locks.mutex(1)
        stateLock = locks.mutex(2)
        self.client = client
        self.kind = kind
        proto = client.protocolClient
        state = client.protocolClient.responseState(kind: kind)
        deadlineNs = nil
        bodyEnded = endStream
        if endStream {
            sendClosed = true
            sentOne = true
        }
        httpCall = client.transport.stream(method: head.method, path: head.path, headers: head.headers, body: body,
                                           endStream: endStream, timeoutNs: timeoutNs)
    }

    /// A unary call opened as a stream: the exchange starts with its one message.
    init(client: RPCClient, kind: MethodKind, deferredHead head: ClientRequestHead, deadlineNs: UInt64?) {
        locks = CallLocks(shared: true)
        sendLock = locks.mutex(0)
        recvLock = locks.mutex(1)
        stateLock = locks.mutex(2)
        self.client = client
        self.kind = kind
        proto = client.protocolClient
        state = client.protocolClient.responseState(kind: kind)
        self.deadlineNs = deadlineNs
        deferredHead = head
    }

    private static func canceledError() -> ConnectError { ConnectError(.canceled, "the call was canceled") }

    /// Starts a deferred exchange with the whole request body (sendLock held).
    private func startDeferred(body: [UInt8]) throws {
        guard let head = deferredHead else { return }
        deferredHead = nil
        bodyEnded = true
        var timeoutNs: UInt64?
        if let d = deadlineNs {
            let now = monotonicNowNs()
            if now >= d {
                let e = ConnectError(.deadlineExceeded, "deadline exceeded before the request was sent")
                stateLock.withLock {
                    if finalErrorBeforeStart == nil { finalErrorBeforeStart = e }
                    stateLock.broadcast()
                }
                throw e
            }
            timeoutNs = d &- now
        }
        let c = client.transport.stream(method: head.method, path: head.path, headers: head.headers, body: body,
                                        endStream: true, timeoutNs: timeoutNs)
        let wasCanceled: Bool = stateLock.withLock {
            httpCall = c
            stateLock.broadcast()
            return canceledFlag
        }
        if wasCanceled {
            c.cancel()
            throw ClientStream.canceledError()
        }
    }

    /// Sends one request message. Blocks while the transport is behind (back-pressure).
    /// When the server already ended the call, throws its status (or canceled).
    public func send(_ message: [UInt8]) throws {
        try sendLock.withLock {
            if sendClosed { throw ConnectError.local(.state, "send after closeSend") }
            if !kind.clientStreams && sentOne { throw ConnectError.local(.state, "this method takes exactly one request message") }
            if canceled { throw ClientStream.canceledError() }
            if let r = interceptorRun, r.observesMessages { r.message(.request, message) }
            var out: [UInt8] = []
            try proto.frameRequest(message, kind: kind, into: &out)
            if deferredHead != nil {
                sentOne = true
                try startDeferred(body: out)
                return
            }
            if out.isEmpty {
                sentOne = true
                return
            }
            guard let call = stateLock.withLock({ httpCall }) else { throw ClientStream.canceledError() }
            if let e = call.write(out) {
                throw canceled ? ClientStream.canceledError() : client.mapTransport(e)
            }
            sentOne = true
        }
    }

    private var canceled: Bool { stateLock.withLock { canceledFlag } }

    /// recvLock held.
    private func markFinished() {
        finished = true
        interceptorRun?.end(CallResult(error: finalError, responseHeaders: state.headers, trailers: _trailers))
        stateLock.withLock { doneMirror = true }
    }

    /// Half-closes the request stream (a unary call opened as a stream and sent nothing: sends
    /// the empty request).
    public func closeSend() {
        sendLock.withLock {
            if sendClosed {
                return
            }
            sendClosed = true
            if deferredHead != nil {
                // No message: the request body is empty, as for a stream closed without one.
                try? startDeferred(body: [])
                return
            }
            if bodyEnded { return }
            stateLock.withLock { httpCall }?.closeSend()
        }
    }

    /// Cancels the call; pending and later operations fail with canceled.
    public func cancel() {
        let c: HTTPClientCall? = stateLock.withLock {
            canceledFlag = true
            stateLock.broadcast()
            return httpCall
        }
        c?.cancel()
        interceptorRun?.end(CallResult(error: ClientStream.canceledError()))
    }

    /// Cancels unless the call already ended (used when a stream handle is freed).
    public func cancelIfRunning() {
        // Not under recvLock: a receive may be blocked holding it. Canceling a finished call is a
        // no-op in the transport.
        if !stateLock.withLock({ doneMirror }) { cancel() }
    }

    /// Response headers (after the first receive).
    public var responseHeaders: Metadata { recvLock.withLock { state.headers } }
    /// Response trailers (after receive returned nil).
    public var responseTrailers: Metadata { recvLock.withLock { _trailers } }

    /// The next response message; nil when the call ended successfully; throws the call's error.
    /// After `cancel`, throws canceled (unless the call's outcome was already reported): messages
    /// that had arrived but were not received yet are dropped.
    public func receive() throws -> [UInt8]? {
        try recvLock.withLock {
            while true {
                if canceled && !outcomeReported {
                    first = nil
                    pending.removeAll()
                    pendingIndex = 0
                    finalError = ClientStream.canceledError()
                    markFinished()
                }
                if let m = first {
                    first = nil
                    return m
                }
                if pendingIndex < pending.count {
                    let m = pending[pendingIndex]
                    pending[pendingIndex] = []
                    pendingIndex += 1
                    if pendingIndex == pending.count {
                        pending.removeAll(keepingCapacity: true)
                        pendingIndex = 0
                    }
                    return m
                }
                if let e = finalError {
                    outcomeReported = true
                    throw e
                }
                if finished {
                    outcomeReported = true
                    return nil
                }
                do {
                    guard let call = try waitForStart() else { continue }
                    try step(call)
                } catch let e as ConnectError {
                    finalError = e
                    markFinished()
                    outcomeReported = true
                    stateLock.withLock { httpCall }?.cancel(HTTPError(.canceled, "the client stopped reading"))
                    throw e
                }
            }
        }
    }

    /// The exchange, once started; nil when the call was canceled first (recvLock held). A unary
    /// call opened as a stream waits for its message to be sent, until its deadline.
    private func waitForStart() throws -> HTTPClientCall? {
        stateLock.lock()
        defer { stateLock.unlock() }
        while true {
            if let c = httpCall { return c }
            if canceledFlag { return nil }
            if let e = finalErrorBeforeStart { throw e }
            if let d = deadlineNs {
                if monotonicNowNs() >= d {
                    throw ConnectError(.deadlineExceeded, "deadline exceeded before the request was sent")
                }
                stateLock.wait(untilNs: d)
            } else {
                stateLock.wait()
            }
        }
    }

    /// One transport event (recvLock held).
    private func step(_ call: HTTPClientCall) throws {
        if !headSeen {
            switch call.awaitHead() {
            case .failure(let e):
                throw canceled ? ClientStream.canceledError() : client.mapTransport(e)
            case .success(let (status, headers)):
                headSeen = true
                try proto.responseHead(status: status, headers: headers, &state)
            }
            return
        }
        switch call.read() {
        case .data(let bytes):
            try proto.responseBody(bytes, &state, deliver)
        case .end(let trailers):
            _trailers = try proto.responseEnd(trailers: trailers, &state, deliver)
            markFinished()
        case .failed(let e):
            if canceled { throw ClientStream.canceledError() }
            throw client.mapTransport(e)
        }
    }

    /// A response message to hand out (recvLock held).
    private func deliver(_ m: [UInt8]) {
        if let run = interceptorRun, run.observesMessages { run.message(.response, m) }
        if first == nil && pendingIndex == pending.count {
            first = m
        } else {
            pending.append(m)
        }
    }

    /// Client streaming: half-closes and returns the single response message.
    public func closeAndReceive() throws -> [UInt8] {
        closeSend()
        guard let m = try receive() else {
            throw ConnectError(.unimplemented, "protocol error: the server sent no response message")
        }
        if try receive() != nil {
            throw ConnectError(.unimplemented, "protocol error: the server sent more than one response message")
        }
        return m
    }

    /// A unary call: the one response message with the headers and trailers.
    func unaryResponse() throws -> UnaryResponse {
        let m = try closeAndReceive()
        return UnaryResponse(message: m, headers: responseHeaders, trailers: responseTrailers)
    }
}
