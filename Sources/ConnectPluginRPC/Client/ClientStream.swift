// A streaming call on the client, and the response decoder shared with gRPC/gRPC-Web unary:
// envelopes in, Connect EndStreamResponse / gRPC trailers / gRPC-Web trailer frame at the end.
import ConnectPluginHTTP

/// Turns a response (head, body bytes, end) into messages and a final status, per protocol.
struct ResponseDecoder {
    let proto: RPCProtocol
    let wire: WireProtocol
    let codec: String
    let maxBytes: Int
    let kind: MethodKind
    var status = 0
    var headers = Metadata()
    var rawHeaders = HTTPHeaders()
    var encoding = MessageEncoding.identity
    var reader: EnvelopeReader
    var bodyReceived = false
    var terminal: Envelope?
    var messageCount = 0

    init(client: RPCClient, kind: MethodKind) {
        proto = client.options.rpcProtocol
        wire = client.wireProtocol
        codec = client.options.codec
        maxBytes = client.options.maxMessageBytes
        self.kind = kind
        let terminalFlags: UInt8 = proto == .connect ? Envelope.endStreamFlag : (proto == .grpcWeb ? Envelope.trailersFlag : 0)
        reader = EnvelopeReader(maxMessageBytes: maxBytes, truncatedCode: .internal, terminalFlags: terminalFlags)
    }

    mutating func head(status: Int, headers h: HTTPHeaders) throws {
        self.status = status
        rawHeaders = h
        headers = Metadata.from(h).headers
        if status != 200 {
            if proto == .connect {
                throw ConnectError(Code.fromHTTPStatus(status), ConnectErrorJSON.statusText(status), metadata: headers)
            }
            return  // gRPC: classified at the end (G-12 step 1).
        }
        if let e = wire.validateResponseContentType(h.first("content-type"), codec: codec) {
            var err = e
            err.metadata = headers
            // A gRPC trailers-only response may omit or vary the content type: let the status speak.
            if proto == .connect || h.first("grpc-status") == nil { throw err }
        }
        let name = proto == .connect ? h.first("connect-content-encoding") : h.first("grpc-encoding")
        do {
            encoding = try MessageEncoding.forResponse(name)
        } catch var e as ConnectError {
            e.metadata = headers
            throw e
        }
    }

    /// Feeds body bytes; `onMessage` gets each decoded message.
    mutating func push(_ bytes: [UInt8], _ onMessage: ([UInt8]) throws -> Void) throws {
        if bytes.isEmpty { return }
        bodyReceived = true
        if status != 200 { return }
        reader.push(bytes)
        while let env = try reader.next() {
            if reader.sawTerminal && terminal == nil && (env.flags & (Envelope.endStreamFlag | Envelope.trailersFlag)) != 0 {
                terminal = env
                continue
            }
            let m = try EnvelopeCodec.decodeMessage(env, encoding: encoding, maxBytes: maxBytes)
            messageCount += 1
            if !kind.serverStreams && messageCount > 1 {
                throw ConnectError(.unimplemented, "protocol error: the server sent more than one response message", metadata: headers)
            }
            try onMessage(m)
        }
    }

    /// The end of the response: returns the trailers on success, throws the RPC's error otherwise.
    mutating func end(httpTrailers: HTTPHeaders) throws -> Metadata {
        var trailerMD = Metadata()
        switch proto {
        case .connect:
            if status == 200 { try reader.finish() }
            guard let t = terminal else {
                throw ConnectError(.internal, "protocol error: the response ended without an end-stream message", metadata: headers)
            }
            let es = try EndStreamResponse.decode(envelope: t, encoding: encoding, maxBytes: maxBytes)
            trailerMD = es.metadata
            if var e = es.error {
                var all = headers
                all.append(contentsOf: es.metadata)
                e.metadata = all
                throw e
            }
        case .grpc, .grpcWeb:
            var trailers = httpTrailers
            if proto == .grpcWeb {
                if status == 200 && bodyReceived { try reader.finish() }
                trailers = HTTPHeaders()
                if let t = terminal { trailers = try GRPCWebTrailers.decode(envelope: t, encoding: encoding, maxBytes: maxBytes) }
            }
            let outcome = GRPCTrailers.classify(httpStatus: status, headers: rawHeaders, trailers: trailers, bodyReceived: bodyReceived)
            if let e = outcome.error { throw e }
            trailerMD = outcome.trailers
        }
        if !kind.serverStreams && messageCount != 1 {
            throw ConnectError(.unimplemented, "protocol error: expected exactly one response message, got \(messageCount)", metadata: headers)
        }
        return trailerMD
    }
}

/// A streaming call: `send` request messages, `closeSend`, `receive` response messages until nil.
/// Thread-safety: one thread may send while another receives; `cancel` from any thread.
public final class ClientStream: @unchecked Sendable {
    public let kind: MethodKind
    let client: RPCClient
    let call: HTTPClientCall
    private let sendLock = Lock()
    private let recvLock = Lock()
    private var decoder: ResponseDecoder
    private var headSeen = false
    private var pending: [[UInt8]] = []
    private var pendingIndex = 0
    private var finished = false
    private var finalError: ConnectError?
    /// `receive` returned nil or threw the call's error: a later `cancel` no longer changes it.
    private var outcomeReported = false
    private var sendClosed = false
    private var _trailers = Metadata()

    /// Connect unary framing (a unary method called through a stream handle): the body is the
    /// message, the response is decoded as a whole.
    private let connectUnary: Bool
    private var unaryStatus = 0
    private var unaryHeaders = HTTPHeaders()
    private var unaryBody: [UInt8] = []
    /// The call's interceptors (set before the stream is handed out); their end hooks run once,
    /// when the result is known, on cancel, or when the stream is released before its end.
    var interceptorRun: InterceptorRun?

    deinit {
        interceptorRun?.end(CallResult(error: ConnectError(.canceled, "the stream was released before its end")))
    }

    init(client: RPCClient, call: HTTPClientCall, kind: MethodKind, connectUnary: Bool = false) {
        self.client = client
        self.call = call
        self.kind = kind
        self.connectUnary = connectUnary
        decoder = ResponseDecoder(client: client, kind: kind)
    }

    /// Sends one request message. Blocks while the transport is behind (back-pressure).
    /// When the server already ended the call, throws its status (or canceled).
    public func send(_ message: [UInt8]) throws {
        try sendLock.withLock {
            if sendClosed { throw ConnectError.local(.state, "send after closeSend") }
            if !kind.clientStreams && sentOne { throw ConnectError.local(.state, "this method takes exactly one request message") }
            if let r = interceptorRun, r.observesMessages { r.message(.request, message) }
            var out: [UInt8] = []
            if connectUnary {
                out = try client.connectUnaryBody(message)
            } else {
                out.reserveCapacity(message.count + 5)
                try EnvelopeCodec.encodeMessage(message, compress: client.options.compression == "gzip", keepIfLarger: true, into: &out)
            }
            if out.isEmpty {
                sentOne = true
                return
            }
            if let e = call.write(out) {
                throw errorAfterSendFailure(e)
            }
            sentOne = true
        }
    }
    private var sentOne = false

    private func errorAfterSendFailure(_ e: HTTPError) -> ConnectError {
        if canceledLocally { return ConnectError(.canceled, "the call was canceled") }
        return RPCClient.map(e)
    }

    private var canceledLocally: Bool { cancelLock.withLock { canceledFlag } }
    /// `cancel` must not wait for a receive blocked under `recvLock`.
    private let cancelLock = Lock()
    private var canceledFlag = false
    private var canceled: Bool { cancelLock.withLock { canceledFlag } }
    private var doneMirror = false

    /// recvLock held.
    private func markFinished() {
        finished = true
        interceptorRun?.end(CallResult(error: finalError, responseHeaders: decoder.headers, trailers: _trailers))
        cancelLock.withLock { doneMirror = true }
    }

    /// Half-closes the request stream.
    public func closeSend() {
        sendLock.withLock {
            if sendClosed { return }
            sendClosed = true
            call.closeSend()
        }
    }

    /// Cancels the call; pending and later operations fail with canceled.
    public func cancel() {
        cancelLock.withLock { canceledFlag = true }
        call.cancel()
        interceptorRun?.end(CallResult(error: ConnectError(.canceled, "the call was canceled")))
    }

    /// Cancels unless the call already ended (used when a stream handle is freed).
    public func cancelIfRunning() {
        // Not under recvLock: a receive may be blocked holding it. Canceling a finished call is a
        // no-op in the transport.
        if !cancelLock.withLock({ doneMirror }) { cancel() }
    }

    /// Response headers (after the first receive).
    public var responseHeaders: Metadata { recvLock.withLock { decoder.headers } }
    /// Response trailers (after receive returned nil).
    public var responseTrailers: Metadata { recvLock.withLock { _trailers } }

    /// The next response message; nil when the call ended successfully; throws the call's error.
    /// After `cancel`, throws canceled (unless the call's outcome was already reported): messages
    /// that had arrived but were not received yet are dropped.
    public func receive() throws -> [UInt8]? {
        try recvLock.withLock {
            while true {
                if canceled && !outcomeReported {
                    pending.removeAll()
                    pendingIndex = 0
                    finalError = ConnectError(.canceled, "the call was canceled")
                    markFinished()
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
                    try step()
                } catch let e as ConnectError {
                    finalError = e
                    markFinished()
                    outcomeReported = true
                    call.cancel(HTTPError(.canceled, "the client stopped reading"))
                    throw e
                }
            }
        }
    }

    /// One transport event (recvLock held).
    private func step() throws {
        if !headSeen {
            switch call.awaitHead() {
            case .failure(let e):
                throw canceled ? ConnectError(.canceled, "the call was canceled") : RPCClient.map(e)
            case .success(let (status, headers)):
                headSeen = true
                if connectUnary {
                    unaryStatus = status
                    unaryHeaders = headers
                    decoder.headers = Metadata.from(headers, trailerPrefix: "trailer-").headers
                } else {
                    try decoder.head(status: status, headers: headers)
                }
            }
            return
        }
        if connectUnary {
            switch call.read() {
            case .data(let bytes):
                let limit = client.options.maxMessageBytes
                if limit > 0 && unaryBody.count + bytes.count > limit &+ 1024 {
                    throw ConnectError(.resourceExhausted, "response message larger than \(limit) bytes", metadata: decoder.headers)
                }
                unaryBody.append(contentsOf: bytes)
            case .end(let trailers):
                let r = try client.decode(HTTPResponse(status: unaryStatus, headers: unaryHeaders, body: unaryBody, trailers: trailers))
                unaryBody = []
                if let run = interceptorRun, run.observesMessages { run.message(.response, r.message) }
                pending.append(r.message)
                _trailers = r.trailers
                markFinished()
            case .failed(let e):
                if canceled { throw ConnectError(.canceled, "the call was canceled") }
                throw RPCClient.map(e)
            }
            return
        }
        switch call.read() {
        case .data(let bytes):
            try decoder.push(bytes) { m in
                if let run = interceptorRun, run.observesMessages { run.message(.response, m) }
                pending.append(m)
            }
        case .end(let trailers):
            _trailers = try decoder.end(httpTrailers: trailers)
            markFinished()
        case .failed(let e):
            if canceled { throw ConnectError(.canceled, "the call was canceled") }
            throw RPCClient.map(e)
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
}
