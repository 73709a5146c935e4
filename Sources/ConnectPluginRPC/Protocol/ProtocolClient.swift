// The client side of a protocol, as connect-go's protocol.go `protocolClient`: one implementation
// per protocol (Connect/ConnectClient.swift, GRPC/GRPCClient.swift, GRPCWeb/GRPCWebClient.swift)
// owns the request head (path, timeout, encodings, accept-encodings, content type, Connect's GET
// URL form), the framing of request messages, and the decoding of the response: its head, its
// body, and its end (Connect unary body or error JSON, EndStreamResponse, gRPC trailers,
// gRPC-Web trailer frame). The call (`ClientStream`) only moves bytes and holds the state.
import ConnectPluginHTTP

/// The HTTP request that starts a call.
struct ClientRequestHead {
    var method: String
    /// The full path (prefix + procedure, and for Connect GET the query).
    var path: String
    var headers: HTTPHeaders
}

/// One call's response as it is decoded: kept by the call, advanced by its protocol. Protocol
/// neutral, so it lives inline in the call (no allocation of its own).
struct ClientResponseState {
    let kind: MethodKind
    /// Largest response message after decompression; 0 = no limit.
    let maxBytes: Int
    var status = 0
    /// The response head as received.
    var rawHeaders = HTTPHeaders()
    /// The response headers as metadata (available to `responseHeaders` after the head).
    var headers = Metadata()
    /// Trailers sent in the head (Connect unary: `trailer-` headers).
    var headerTrailers = Metadata()
    var encoding = MessageEncoding.identity
    var reader: EnvelopeReader
    /// A whole-body response (Connect unary): the bytes so far.
    var body: [UInt8] = []
    var bodyReceived = false
    /// The terminal envelope (Connect EndStreamResponse, gRPC-Web trailers).
    var terminal: Envelope?
    var messageCount = 0

    init(kind: MethodKind, maxBytes: Int, terminalFlags: UInt8) {
        self.kind = kind
        self.maxBytes = maxBytes
        reader = EnvelopeReader(maxMessageBytes: maxBytes, truncatedCode: .internal, terminalFlags: terminalFlags)
    }

    /// Envelope protocols: feeds body bytes, hands each data message to `onMessage` and keeps a
    /// terminal envelope for the end.
    mutating func pushEnvelopes(_ bytes: [UInt8], _ onMessage: ([UInt8]) throws -> Void) throws {
        reader.push(bytes)
        while let env = try reader.next() {
            if reader.sawTerminal && terminal == nil && (env.flags & (Envelope.endStreamFlag | Envelope.trailersFlag)) != 0 {
                terminal = env
                continue
            }
            let m = try EnvelopeCodec.decodeMessage(env, encoding: encoding, maxBytes: maxBytes)
            try countMessage()
            try onMessage(m)
        }
    }

    /// Counts a response message; a second one of a method with one response is an error.
    mutating func countMessage() throws {
        messageCount += 1
        if !kind.serverStreams && messageCount > 1 {
            throw ConnectError(.unimplemented, "protocol error: the server sent more than one response message", metadata: headers)
        }
    }

    /// At a successful end: a method with one response must have had exactly one.
    func checkMessageCount() throws {
        if !kind.serverStreams && messageCount != 1 {
            throw ConnectError(.unimplemented, "protocol error: expected exactly one response message, got \(messageCount)", metadata: headers)
        }
    }
}

/// The client side of one protocol. Made once per client from its options; stateless per call
/// (the call's state is a `ClientResponseState`). Thread-safe.
protocol ProtocolClient: Sendable {
    var rpcProtocol: RPCProtocol { get }

    /// The request that starts a call of `kind` to `path` (prefix + procedure). `message` is the
    /// request of a unary call when it is known here (a Connect GET carries it in the URL: then the
    /// returned head's `bodyInURL` is true and no body is sent).
    func requestHead(path: String, kind: MethodKind, headers: Metadata, timeoutMs: Int64,
                     unaryMessage: [UInt8]?, noSideEffects: Bool) throws -> (head: ClientRequestHead, bodyInURL: Bool)

    /// Appends one request message, framed (and compressed) as the protocol sends it for `kind`.
    func frameRequest(_ message: [UInt8], kind: MethodKind, into out: inout [UInt8]) throws

    /// A fresh response state for a call of `kind`.
    func responseState(kind: MethodKind) -> ClientResponseState

    /// The response head. Throws the call's error when the head already decides it.
    func responseHead(status: Int, headers: HTTPHeaders, _ state: inout ClientResponseState) throws

    /// Body bytes; every decoded message goes to `onMessage`.
    func responseBody(_ bytes: [UInt8], _ state: inout ClientResponseState, _ onMessage: ([UInt8]) throws -> Void) throws

    /// The end of the response: messages still held (Connect unary) go to `onMessage`; returns the
    /// trailers on success, throws the call's error otherwise.
    func responseEnd(trailers: HTTPHeaders, _ state: inout ClientResponseState, _ onMessage: ([UInt8]) throws -> Void) throws -> Metadata
}

/// What every protocol's client takes from the client's options.
struct ProtocolClientConfig: Sendable {
    let codec: String
    let gzip: Bool
    let maxMessageBytes: Int
    /// Sent with every call.
    let headers: Metadata
    let useHTTPGet: Bool

    init(_ options: RPCClient.Options) {
        codec = options.codec
        gzip = options.compression == "gzip"
        maxMessageBytes = options.maxMessageBytes
        headers = options.headers
        useHTTPGet = options.useHTTPGet
    }
}

enum ProtocolClients {
    /// The protocol client `options` name; throws when the options do not suit it (gRPC over
    /// HTTP/1.1).
    static func make(_ options: RPCClient.Options) throws -> any ProtocolClient {
        let config = ProtocolClientConfig(options)
        switch options.rpcProtocol {
        case .connect: return ConnectClient(config)
        case .grpc: return try GRPCClient(config, httpVersion: options.httpVersion)
        case .grpcWeb: return GRPCWebClient(config)
        }
    }
}

/// The envelope protocols' request framing: one envelope per message, compressed when the client
/// compresses (the compressed form kept even when larger: a peer may check that every message
/// uses the declared compression).
func frameEnvelope(_ message: [UInt8], gzip: Bool, into out: inout [UInt8]) throws {
    out.reserveCapacity(out.count &+ message.count &+ Envelope.prefixSize)
    try EnvelopeCodec.encodeMessage(message, compress: gzip, keepIfLarger: true, into: &out)
}
