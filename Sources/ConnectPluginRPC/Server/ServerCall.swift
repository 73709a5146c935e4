// One call on the server, whatever its shape and protocol: request metadata, a sequence of request
// messages, response headers, a sequence of response messages, then an end status with trailers.
// `ServerCallCore` is that call; a unary call is its one-message case. The protocol adapter
// (`ProtocolHandler`) turns it into Connect, gRPC or gRPC-Web on the wire. `StreamCall` (here) and
// `UnaryCall` (UnaryCall.swift) are the handler-facing shapes.
import ConnectPluginHTTP
import Glibc

/// The RPC shape of a method.
public enum MethodKind: Int32, Sendable {
    case unary = 0
    case clientStream = 1
    case serverStream = 2
    case bidiStream = 3

    var clientStreams: Bool { self == .clientStream || self == .bidiStream }
    var serverStreams: Bool { self == .serverStream || self == .bidiStream }
}

/// The wire protocol of a call.
public enum RPCProtocol: String, Sendable, CaseIterable {
    case connect
    case grpc
    case grpcWeb = "grpcweb"
}

/// The one server call: every shape (unary, client, server and bidi streaming) on every protocol.
/// A unary call is its one-message case: the request's one message read before the handler runs,
/// the answer `finish(message:)` (the last message and the end in one write). What differs between
/// protocols is the adapter's (`ProtocolHandler`, Protocol/ProtocolHandler.swift). Thread-safe.
final class ServerCallCore: @unchecked Sendable {
    let stream: HTTPServerStream
    /// The protocol adapter and what the request negotiated with it.
    let handler: any ProtocolHandler
    let params: CallParams
    let maxMessageBytes: Int
    let lock = Lock()
    var responseHeaders = Metadata()
    var responseTrailers = Metadata()
    var errorDetails: [ErrorDetail] = []
    /// The call's interceptors (lock held); their end hooks run in `finish`.
    var interceptorRun: InterceptorRun?
    private(set) var headersSent = false
    private(set) var finished = false
    /// The runtime answered on its own (deadline, shutdown, handler returned without answering).
    private(set) var finishedByRuntime = false

    init(stream: HTTPServerStream, handler: any ProtocolHandler, params: CallParams, maxMessageBytes: Int) {
        self.stream = stream
        self.handler = handler
        self.params = params
        self.maxMessageBytes = maxMessageBytes
        stream.onCancel { [weak self] in self?.fireDone() }
    }

    var proto: RPCProtocol { handler.rpcProtocol }
    var codec: String { params.codec }

    // MARK: done hooks (the call can no longer be answered)

    private var doneHooks: [() -> Void] = []
    private var doneFired = false
    /// Hooks running: answering the call or returning waits for them (entered under `lock`).
    private let doneGate = HookGate()

    /// Runs `hook` once when the call can no longer be answered before it was answered: the client
    /// canceled or went away, the deadline passed, the server is stopping. It runs on an I/O loop
    /// thread, or at once on the calling thread if that already happened; never after the call was
    /// answered: answering (or the handler returning) waits for hooks already running.
    func onDone(_ hook: @escaping () -> Void) {
        let now: Bool = lock.withLock {
            if doneFired { return true }
            if finished && !finishedByRuntime { return false }
            doneHooks.append(hook)
            return false
        }
        if now { hook() }
    }

    /// The call is over without an answer from its handler (loop thread). Nothing happens once the
    /// handler answered the call or returned.
    func fireDone() {
        let hooks: [() -> Void] = lock.withLock {
            if doneFired || (finished && !finishedByRuntime) { return [] }
            doneFired = true
            let h = doneHooks
            doneHooks = []
            if !h.isEmpty { doneGate.enter() }
            return h
        }
        if hooks.isEmpty { return }
        for h in hooks { h() }
        doneGate.leave()
    }

    /// The handler returned: its hooks are dropped without running, after any running ones end.
    func closeDone() {
        lock.withLock {
            doneFired = true
            doneHooks = []
        }
        doneGate.waitIdle()
    }

    /// True once the call can no longer be answered (answered, deadline passed, client gone).
    var isOver: Bool { lock.withLock { finished } || stream.isDone }

    /// Adds a response header; only before the headers went out (with the first message or
    /// `sendHeaders`): afterwards it is a `.state` error.
    func addResponseHeader(_ key: String, _ value: [UInt8]) throws {
        try lock.withLock {
            try checkOpen()
            if headersSent { throw ConnectError.local(.state, "the response headers were already sent; use a trailer") }
            try responseHeaders.add(key, value)
        }
    }

    func addResponseTrailer(_ key: String, _ value: [UInt8]) throws {
        try lock.withLock {
            try checkOpen()
            try responseTrailers.add(key, value)
        }
    }

    func addErrorDetail(_ detail: ErrorDetail) throws {
        try lock.withLock {
            try checkOpen()
            if detail.type.isEmpty { throw ConnectError.local(.invalidArgument, "error detail type must not be empty") }
            errorDetails.append(detail)
        }
    }

    /// The handler ends the call: `message` is the last response message (unary: the only one).
    func end(message: [UInt8]?, error: ConnectError?) throws {
        try lock.withLock { try checkOpen() }
        if !finish(message: message, error: error) {
            try lock.withLock { try checkOpen() }
            throw ConnectError.local(.closed, "the call is over (deadline passed or client gone)")
        }
    }

    func checkOpen() throws {
        if finishedByRuntime || (!finished && stream.isDone) {
            throw ConnectError.local(.closed, "the call is over (deadline passed, client gone or server stopping)")
        }
        if finished { throw ConnectError.local(.state, "the call was already finished") }
    }

    /// Sends one response message (streams: the headers first, if not sent yet).
    func send(_ message: [UInt8]) throws {
        let headers: HTTPHeaders? = try lock.withLock {
            try checkOpen()
            if headersSent { return nil }
            headersSent = true
            return handler.responseHead(params, headers: responseHeaders)
        }
        if let h = headers, !stream.sendHead(status: 200, headers: h) {
            throw ConnectError.local(.closed, "the call is over (client gone)")
        }
        var out: [UInt8] = []
        out.reserveCapacity(message.count + 5)
        try handler.frame(message, params, into: &out)
        if let e = stream.write(out) {
            throw ConnectError.local(.closed, "the call is over: \(e.message)")
        }
    }

    /// Sends the response headers now (streams), without a message.
    func sendHeaders() throws {
        let headers: HTTPHeaders? = try lock.withLock {
            try checkOpen()
            if headersSent { return nil }
            headersSent = true
            return handler.responseHead(params, headers: responseHeaders)
        }
        if let h = headers, !stream.sendHead(status: 200, headers: h) {
            throw ConnectError.local(.closed, "the call is over (client gone)")
        }
    }

    /// Ends the call: `message` for a unary success, or `error`. Returns false if already finished.
    @discardableResult
    func finish(message: [UInt8]?, error: ConnectError?, byRuntime: Bool = false) -> Bool {
        var run: InterceptorRun?
        let state: (Bool, Metadata, Metadata, [ErrorDetail])? = lock.withLock {
            if finished { return nil }
            finished = true
            run = interceptorRun
            if byRuntime { finishedByRuntime = true }
            let sent = headersSent
            headersSent = true
            return (sent, responseHeaders, responseTrailers, errorDetails)
        }
        // The handler answering: from here on no hook starts (finished), and running ones end first.
        if !byRuntime { doneGate.waitIdle() }
        guard let (sent, md, handlerTrailers, details) = state else { return false }
        var err = error
        if var e = err, e.details.isEmpty, !details.isEmpty {
            e.details = details
            err = e
        }
        var trailers = handlerTrailers
        if let run { ServerInterceptors.end(run, self, message: message, error: err, byRuntime: byRuntime, headers: md, trailers: &trailers) }
        if !sent {
            return stream.respond(handler.wholeResponse(params, message: message, error: err, headers: md, trailers: trailers))
        }
        // Headers (and maybe messages) are out: the last message, then the protocol's end.
        var tail: [UInt8] = []
        if let m = message, err == nil { try? handler.frame(m, params, into: &tail) }
        return handler.endResponse(stream, params, tail: tail, error: err, trailers: trailers)
    }

    // MARK: reading a streamed request

    private let readLock = Lock()
    private var reader = EnvelopeReader()
    private var readerConfigured = false
    private var inputEnded = false
    private var receivedCount = 0

    /// The next request message, or nil at the end of the request stream. Blocks (handler thread).
    /// A malformed request stream (bad envelope flags, truncated envelope, bad compression, too
    /// large) ends the call at once with that error: the client broke the protocol, so whatever the
    /// handler does next (return, send, finish with OK) cannot turn the call into a success.
    func receive() throws -> [UInt8]? {
        do {
            return try receiveLocked()
        } catch let e as MalformedRequest {
            finish(message: nil, error: e.error, byRuntime: true)
            fireDone()
            throw e.error
        }
    }

    private struct MalformedRequest: Error { let error: ConnectError }

    private func malformed<T>(_ body: () throws -> T) throws -> T {
        do {
            return try body()
        } catch let e as ConnectError {
            throw MalformedRequest(error: e)
        } catch {
            throw MalformedRequest(error: ConnectError(.internal, "cannot read the request stream"))
        }
    }

    private func receiveLocked() throws -> [UInt8]? {
        try readLock.withLock {
            if !readerConfigured {
                reader = EnvelopeReader(maxMessageBytes: maxMessageBytes)
                readerConfigured = true
            }
            while true {
                if let env = try malformed({ try reader.next() }) {
                    let msg = try malformed {
                        try EnvelopeCodec.decodeMessage(env, encoding: params.requestEncoding, maxBytes: maxMessageBytes,
                                                        decompressFailureCode: .invalidArgument)
                    }
                    receivedCount += 1
                    return msg
                }
                if inputEnded { return nil }
                switch stream.read() {
                case .data(let bytes):
                    reader.push(bytes)
                case .end:
                    inputEnded = true
                    try malformed { try reader.finish() }
                    return nil
                case .failed(let e):
                    let code: Code = e.kind == .timeout ? .deadlineExceeded : .canceled
                    throw ConnectError(code, "the request stream ended: \(e.message)")
                }
            }
        }
    }
}

/// A streaming call as its handler sees it (client, server or bidi streaming). Handlers run on a
/// handler thread; `receive` and `send` block (a slow client slows the handler, memory stays bounded).
public final class StreamCall: @unchecked Sendable {
    public let procedure: String
    public let kind: MethodKind
    public let codec: String
    public let protocolName: String
    public let requestHeaders: Metadata
    public let deadlineNs: UInt64?
    public let peer: HTTPPeerInfo?
    let core: ServerCallCore
    /// Server streaming: the one request message, received before the handler runs.
    var firstMessage: [UInt8]?
    /// Interceptors that observe messages (set before the handler runs).
    var observer: InterceptorRun?

    init(procedure: String, kind: MethodKind, core: ServerCallCore, requestHeaders: Metadata, deadlineNs: UInt64?, peer: HTTPPeerInfo?) {
        self.procedure = procedure
        self.kind = kind
        self.codec = core.codec
        self.protocolName = core.proto.rawValue
        self.core = core
        self.requestHeaders = requestHeaders
        self.deadlineNs = deadlineNs
        self.peer = peer
    }

    public var timeoutRemainingMs: Int64 { remainingMs(deadlineNs) }
    public var isDone: Bool { core.isOver }

    /// Runs `hook` once if the call ends before the handler answered it (client canceled or gone,
    /// deadline passed, server stopping): on an I/O loop thread, so it must be quick.
    public func onDone(_ hook: @escaping () -> Void) { core.onDone(hook) }

    /// The next request message, or nil when the client finished sending.
    public func receive() throws -> [UInt8]? {
        let m = try receiveMessage()
        if let o = observer, let m { o.message(.request, m) }
        return m
    }

    private func receiveMessage() throws -> [UInt8]? {
        if let m = firstMessage {
            firstMessage = nil
            return m
        }
        if kind == .serverStream { return nil }
        return try core.receive()
    }

    public func send(_ message: [UInt8]) throws {
        if let o = observer { o.message(.response, message) }
        try core.send(message)
    }
    /// Sends the response headers now (before the first message).
    public func sendHeaders() throws { try core.sendHeaders() }

    /// Adds a response header; only before the headers went out (with the first message or
    /// `sendHeaders`): afterwards it is a `.state` error.
    public func addResponseHeader(_ key: String, _ value: [UInt8]) throws { try core.addResponseHeader(key, value) }
    public func addResponseTrailer(_ key: String, _ value: [UInt8]) throws { try core.addResponseTrailer(key, value) }
    public func addErrorDetail(_ detail: ErrorDetail) throws { try core.addErrorDetail(detail) }

    /// Ends the call successfully (the default when the handler returns).
    public func finish() throws { try core.end(message: nil, error: nil) }

    /// Ends the call with an error.
    public func fail(_ code: Code, _ message: String) throws {
        try core.end(message: nil, error: ConnectError(code == .ok ? .unknown : code, message))
    }
}

extension StreamCall: ServerCallShape {
    func invoke(_ route: Route) { route.stream?(self) }
    static var whenUnanswered: ConnectError? { nil }
    static var holdsThread: Bool { true }
}

/// The handler-facing shapes of the one call (`UnaryCall`, `StreamCall`): what the server's call
/// path (RPCServer.serve) needs to run a handler of that shape.
protocol ServerCallShape: AnyObject, Sendable {
    var core: ServerCallCore { get }
    /// Runs the route's handler for this shape.
    func invoke(_ route: Route)
    /// How the call ends when the handler returns without ending it (unary: an error, it owes an
    /// answer; streams: OK).
    static var whenUnanswered: ConnectError? { get }
    /// The handler holds a thread for a stream's life: admitted by StreamAdmission first.
    static var holdsThread: Bool { get }
}

func remainingMs(_ deadlineNs: UInt64?) -> Int64 {
    guard let d = deadlineNs else { return -1 }
    let now = monotonicNowNs()
    if now >= d { return 0 }
    return Int64((d - now) / 1_000_000)
}
