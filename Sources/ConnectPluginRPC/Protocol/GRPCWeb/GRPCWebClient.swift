// The gRPC-Web protocol's client side (protocol digest §7): gRPC's headers and envelopes over
// HTTP/1.1 or HTTP/2 without `te: trailers`, plus `x-grpc-web: 1`; the status comes in a trailer
// frame (an envelope with flag 0x80) at the end of the body, or in the head of a trailers-only
// response.
import ConnectPluginHTTP

struct GRPCWebClient: ProtocolClient {
    let config: ProtocolClientConfig

    init(_ config: ProtocolClientConfig) { self.config = config }

    var rpcProtocol: RPCProtocol { .grpcWeb }

    func requestHead(path: String, kind: MethodKind, headers: Metadata, timeoutMs: Int64,
                     unaryMessage: [UInt8]?, noSideEffects: Bool) throws -> (head: ClientRequestHead, bodyInURL: Bool) {
        var h = HTTPHeaders()
        h.add("content-type", WireProtocol.grpcWeb.contentType(codec: config.codec))
        GRPCClient.addCommonHeaders(config, timeoutMs: timeoutMs, to: &h)
        h.add("x-grpc-web", "1")
        GRPCClient.addTrailingHeaders(config, headers, to: &h)
        return (ClientRequestHead(method: "POST", path: path, headers: h), false)
    }

    func frameRequest(_ message: [UInt8], kind: MethodKind, into out: inout [UInt8]) throws {
        try frameEnvelope(message, gzip: config.gzip, into: &out)
    }

    func responseState(kind: MethodKind) -> ClientResponseState {
        ClientResponseState(kind: kind, maxBytes: config.maxMessageBytes, terminalFlags: Envelope.trailersFlag)
    }

    func responseHead(status: Int, headers: HTTPHeaders, _ state: inout ClientResponseState) throws {
        try GRPCClient.head(.grpcWeb, config, status: status, headers: headers, &state)
    }

    func responseBody(_ bytes: [UInt8], _ state: inout ClientResponseState, _ onMessage: ([UInt8]) throws -> Void) throws {
        try GRPCClient.body(bytes, &state, onMessage)
    }

    /// The HTTP trailers are ignored: the trailer frame (or a trailers-only head) carries the status.
    func responseEnd(trailers: HTTPHeaders, _ state: inout ClientResponseState, _ onMessage: ([UInt8]) throws -> Void) throws -> Metadata {
        if state.status == 200 && state.bodyReceived { try state.reader.finish() }
        var frame = HTTPHeaders()
        if let t = state.terminal {
            frame = try GRPCWebTrailers.decode(envelope: t, encoding: state.encoding, maxBytes: state.maxBytes)
        }
        return try GRPCClient.end(trailers: frame, &state)
    }
}
