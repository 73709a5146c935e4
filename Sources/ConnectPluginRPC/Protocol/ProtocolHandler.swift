// The server's protocol type, as connect-go's protocol.go `protocolHandler`: everything that differs
// between Connect (unary and streaming forms), gRPC and gRPC-Web on the server side. One
// implementation per protocol, in its own folder (Connect/ConnectHandler.swift, GRPC/GRPCHandler.swift,
// GRPCWeb/GRPCWebHandler.swift). The server call (Server/ServerCall.swift) and the router
// (Server/RPCServer.swift) talk only to this type: request-header parsing (timeouts, encodings,
// accept-encoding), content types, the Connect GET form, the response head, message framing and the
// encoding of a response's end all live in the adapters.
//
// The adapters are stateless singletons (no per-call allocation); what a call negotiated is a
// `CallParams` value stored in the call.
import ConnectPluginHTTP

/// What a request negotiated with its protocol adapter: codec, encodings, content type, timeout.
struct CallParams: Sendable {
    /// "proto" or "json".
    var codec: String
    /// The Content-Type of a successful response.
    var responseContentType: String
    var requestEncoding: MessageEncoding = .identity
    var responseEncoding: MessageEncoding = .identity
    /// The request came as a Connect GET (query parameters, no body).
    var isGET = false
    /// The request body is a sequence of envelopes (false only for Connect unary).
    var enveloped = true
    /// The client's timeout, if it set one.
    var timeoutNs: UInt64?

    var compressResponses: Bool { responseEncoding == .gzip }
}

/// One wire protocol on the server side. Implementations are stateless and thread-safe.
protocol ProtocolHandler: Sendable {
    /// The protocol a handler or interceptor sees (`UnaryCall.protocolName`).
    var rpcProtocol: RPCProtocol { get }
    /// Whether a method of `kind` can be called in this form (Connect unary content types serve
    /// only unary methods, Connect streaming ones only streaming methods).
    func serves(_ kind: MethodKind) -> Bool
    /// The request content types of this form (for Accept-Post on a 415).
    var acceptPostTypes: [String] { get }

    /// Reads the request's protocol headers (and the Connect GET query). Always returns parameters
    /// good enough to answer with; the error, if any, is the answer (bad timeout, unsupported
    /// compression, wrong protocol version).
    func negotiate(_ request: HTTPRequest, codec: String, query: [String: String]) -> (CallParams, ConnectError?)

    /// The request message carried in the URL (Connect GET), or nil when it comes in the body.
    func messageInURL(_ query: [String: String], _ params: CallParams, maxBytes: Int) throws -> [UInt8]?
    /// The one message of a unary or server-streaming request body.
    func singleMessage(_ body: [UInt8], _ params: CallParams, maxBytes: Int) throws -> [UInt8]

    /// The headers of a response that starts before its end (a message or `sendHeaders` first).
    func responseHead(_ params: CallParams, headers: Metadata) -> HTTPHeaders
    /// Appends one response message, framed for the wire.
    func frame(_ message: [UInt8], _ params: CallParams, into out: inout [UInt8]) throws
    /// Ends a response whose head went out: `tail` holds the last message, already framed (may be
    /// empty). Returns false when the stream is gone.
    func endResponse(_ stream: HTTPServerStream, _ params: CallParams, tail: [UInt8], error: ConnectError?, trailers: Metadata) -> Bool
    /// A complete response: nothing was sent before.
    func wholeResponse(_ params: CallParams, message: [UInt8]?, error: ConnectError?, headers: Metadata, trailers: Metadata) -> HTTPResponse
    /// The answer to a procedure that is not registered.
    func unknownProcedure(_ stream: HTTPServerStream, codec: String, error: ConnectError)
}

extension ProtocolHandler {
    func messageInURL(_ query: [String: String], _ params: CallParams, maxBytes: Int) throws -> [UInt8]? { nil }

    func singleMessage(_ body: [UInt8], _ params: CallParams, maxBytes: Int) throws -> [UInt8] {
        try singleEnvelopedMessage(body, params, maxBytes: maxBytes)
    }

    /// Enveloped bodies (Connect streaming, gRPC, gRPC-Web): exactly one envelope.
    func singleEnvelopedMessage(_ body: [UInt8], _ params: CallParams, maxBytes: Int) throws -> [UInt8] {
        var reader = EnvelopeReader(maxMessageBytes: maxBytes)
        reader.push(body)
        var messages: [[UInt8]] = []
        while let env = try reader.next() {
            if messages.count >= 1 { throw ConnectError(.unimplemented, "the method takes exactly one request message; got more") }
            messages.append(try EnvelopeCodec.decodeMessage(env, encoding: params.requestEncoding, maxBytes: maxBytes,
                                                            decompressFailureCode: .invalidArgument))
        }
        try reader.finish()
        guard let m = messages.first else { throw ConnectError(.unimplemented, "the method takes exactly one request message; got none") }
        return m
    }

    /// Enveloped responses: a 5-byte prefix, compressed above `compressMinBytes` when negotiated.
    func frame(_ message: [UInt8], _ params: CallParams, into out: inout [UInt8]) throws {
        try EnvelopeCodec.encodeMessage(message, compress: params.compressResponses, compressMinBytes: ConnectProtocol.compressMinBytes, into: &out)
    }
}

/// The server adapters, in the order their content types are listed in Accept-Post.
enum ServerProtocols {
    static let all: [any ProtocolHandler] = [ConnectHandler.unary, ConnectHandler.streaming, GRPCHandler.shared, GRPCWebHandler.shared]

    /// The Accept-Post value of a 415 for a method of `kind`.
    static func acceptPost(for kind: MethodKind) -> String {
        all.filter { $0.serves(kind) }.flatMap { $0.acceptPostTypes }.joined(separator: ", ")
    }
}

extension WireProtocol {
    /// The server adapter of a detected protocol.
    var serverHandler: any ProtocolHandler {
        switch self {
        case .connectUnary: return ConnectHandler.unary
        case .connectStream: return ConnectHandler.streaming
        case .grpc: return GRPCHandler.shared
        case .grpcWeb: return GRPCWebHandler.shared
        }
    }
}
