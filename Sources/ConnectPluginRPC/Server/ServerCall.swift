// One call on the server, whatever the protocol: request metadata, a sequence of request
// messages, response headers, a sequence of response messages, then an end status with trailers.
// `ServerCallCore` translates that to Connect (unary and streaming), gRPC and gRPC-Web on the wire;
// `UnaryCall` and `StreamCall` are the handler-facing views.
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

/// Protocol adapter shared by unary and streaming calls. Thread-safe.
final class ServerCallCore: @unchecked Sendable {
    let stream: HTTPServerStream
    let proto: RPCProtocol
    /// Connect: true for the streaming (enveloped) form.
    let enveloped: Bool
    let codec: String
    let responseContentType: String
    let requestEncoding: MessageEncoding
    let responseEncoding: MessageEncoding
    let maxMessageBytes: Int
    let isGET: Bool
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

    init(stream: HTTPServerStream, proto: RPCProtocol, enveloped: Bool, codec: String, responseContentType: String,
         requestEncoding: MessageEncoding, responseEncoding: MessageEncoding, maxMessageBytes: Int, isGET: Bool) {
        self.stream = stream
        self.proto = proto
        self.enveloped = enveloped
        self.codec = codec
        self.responseContentType = responseContentType
        self.requestEncoding = requestEncoding
        self.responseEncoding = responseEncoding
        self.maxMessageBytes = maxMessageBytes
        self.isGET = isGET
        stream.onCancel { [weak self] in self?.fireDone() }
    }

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

    var compressResponses: Bool { responseEncoding == .gzip }

    /// The protocol headers of a successful response (before any message).
    private func baseHeaders() -> HTTPHeaders {
        var h = HTTPHeaders()
        h.add("content-type", responseContentType)
        switch proto {
        case .connect:
            if enveloped {
                h.add("connect-accept-encoding", MessageEncoding.acceptHeaderValue)
                if compressResponses { h.add("connect-content-encoding", responseEncoding.name) }
            } else {
                h.add("accept-encoding", MessageEncoding.acceptHeaderValue)
                if isGET { h.add("vary", "Accept-Encoding") }
            }
        case .grpc, .grpcWeb:
            h.add("grpc-accept-encoding", MessageEncoding.acceptHeaderValue)
            if compressResponses { h.add("grpc-encoding", responseEncoding.name) }
        }
        return h
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
            var h = baseHeaders()
            responseHeaders.write(to: &h)
            return h
        }
        if let h = headers, !stream.sendHead(status: 200, headers: h) {
            throw ConnectError.local(.closed, "the call is over (client gone)")
        }
        var out: [UInt8] = []
        out.reserveCapacity(message.count + 5)
        try EnvelopeCodec.encodeMessage(message, compress: compressResponses, compressMinBytes: ConnectProtocol.compressMinBytes, into: &out)
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
            var h = baseHeaders()
            responseHeaders.write(to: &h)
            return h
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
            return stream.respond(wholeResponse(message: message, error: err, headers: md, trailers: trailers))
        }
        // Headers (and maybe messages) are out: end the stream.
        var tail: [UInt8] = []
        if let m = message, err == nil {
            try? EnvelopeCodec.encodeMessage(m, compress: compressResponses, compressMinBytes: ConnectProtocol.compressMinBytes, into: &tail)
        }
        switch proto {
        case .connect:
            try? EndStreamResponse(error: err, metadata: trailers).encodeEnvelope(into: &tail)
            if !tail.isEmpty, stream.write(tail) != nil { return false }
            return stream.finish()
        case .grpcWeb:
            try? GRPCWebTrailers.encodeEnvelope(GRPCTrailers.fields(error: err, trailers: trailers), into: &tail)
            if stream.write(tail) != nil { return false }
            return stream.finish()
        case .grpc:
            if !tail.isEmpty, stream.write(tail) != nil { return false }
            var t = HTTPHeaders()
            for (n, v) in GRPCTrailers.fields(error: err, trailers: trailers) { t.add(n, v) }
            return stream.finish(trailers: t)
        }
    }

    /// A complete response: nothing was sent before.
    func wholeResponse(message: [UInt8]?, error: ConnectError?, headers md: Metadata, trailers: Metadata) -> HTTPResponse {
        switch proto {
        case .connect where !enveloped:
            if let err = error {
                var h = HTTPHeaders()
                h.add("content-type", "application/json")
                md.write(to: &h)
                err.metadata.write(to: &h)
                trailers.write(to: &h, prefix: "trailer-")
                return HTTPResponse(status: err.code.httpStatus, headers: h, body: ConnectErrorJSON.encode(err))
            }
            var h = baseHeaders()
            var body = message ?? []
            if body.count >= ConnectProtocol.compressMinBytes && compressResponses, let z = try? Gzip.compress(body) {
                body = z
                h.add("content-encoding", "gzip")
            }
            md.write(to: &h)
            trailers.write(to: &h, prefix: "trailer-")
            return HTTPResponse(status: 200, headers: h, body: body)
        case .connect:
            var h = baseHeaders()
            md.write(to: &h)
            var body: [UInt8] = []
            if let m = message, error == nil {
                try? EnvelopeCodec.encodeMessage(m, compress: compressResponses, compressMinBytes: ConnectProtocol.compressMinBytes, into: &body)
            }
            try? EndStreamResponse(error: error, metadata: trailers).encodeEnvelope(into: &body)
            return HTTPResponse(status: 200, headers: h, body: body)
        case .grpc, .grpcWeb:
            var h = baseHeaders()
            md.write(to: &h)
            let fields = GRPCTrailers.fields(error: error, trailers: trailers)
            let m = error == nil ? message : nil
            if m == nil && md.isEmpty {
                // Trailers-only (G-8, GW-2): no message and no response headers.
                for (n, v) in fields { h.add(n, v) }
                return HTTPResponse(status: 200, headers: h)
            }
            // Response headers set by the handler stay headers, as grpc-go sends them (a HEADERS
            // frame, then the trailers; gRPC-Web: the headers, then the trailer frame), even with
            // no message: folded into a trailers-only response, clients would read them as trailers.
            var body: [UInt8] = []
            if let m { try? EnvelopeCodec.encodeMessage(m, compress: compressResponses, compressMinBytes: ConnectProtocol.compressMinBytes, into: &body) }
            if proto == .grpcWeb {
                try? GRPCWebTrailers.encodeEnvelope(fields, into: &body)
                return HTTPResponse(status: 200, headers: h, body: body)
            }
            var t = HTTPHeaders()
            for (n, v) in fields { t.add(n, v) }
            return HTTPResponse(status: 200, headers: h, body: body, trailers: t)
        }
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
                        try EnvelopeCodec.decodeMessage(env, encoding: requestEncoding, maxBytes: maxMessageBytes,
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
    public var isDone: Bool { core.lock.withLock { core.finished } || core.stream.isDone }

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
    public func addResponseHeader(_ key: String, _ value: [UInt8]) throws {
        try core.lock.withLock {
            try core.checkOpen()
            if core.headersSent { throw ConnectError.local(.state, "the response headers were already sent; use a trailer") }
            try core.responseHeaders.add(key, value)
        }
    }

    public func addResponseTrailer(_ key: String, _ value: [UInt8]) throws {
        try core.lock.withLock {
            try core.checkOpen()
            try core.responseTrailers.add(key, value)
        }
    }

    public func addErrorDetail(_ detail: ErrorDetail) throws {
        try core.lock.withLock {
            try core.checkOpen()
            if detail.type.isEmpty { throw ConnectError.local(.invalidArgument, "error detail type must not be empty") }
            core.errorDetails.append(detail)
        }
    }

    /// Ends the call successfully (the default when the handler returns).
    public func finish() throws {
        try core.lock.withLock { try core.checkOpen() }
        if !core.finish(message: nil, error: nil) { throw ConnectError.local(.closed, "the call is over (client gone)") }
    }

    /// Ends the call with an error.
    public func fail(_ code: Code, _ message: String) throws {
        try core.lock.withLock { try core.checkOpen() }
        if !core.finish(message: nil, error: ConnectError(code == .ok ? .unknown : code, message)) {
            throw ConnectError.local(.closed, "the call is over (client gone)")
        }
    }
}

func remainingMs(_ deadlineNs: UInt64?) -> Int64 {
    guard let d = deadlineNs else { return -1 }
    let now = monotonicNowNs()
    if now >= d { return 0 }
    return Int64((d - now) / 1_000_000)
}
