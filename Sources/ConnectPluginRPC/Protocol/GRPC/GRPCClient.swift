// The gRPC protocol's client side (protocol digest §5, §6): HTTP/2 only, `te: trailers`,
// `grpc-timeout`, `grpc-encoding` / `grpc-accept-encoding`, every message enveloped, the status in
// the HTTP trailers (or a trailers-only response). The head and end handling below is shared with
// gRPC-Web (GRPCWeb/GRPCWebClient.swift), which differs in its content type and its trailer frame.
import ConnectPluginHTTP

struct GRPCClient: ProtocolClient {
    let config: ProtocolClientConfig

    init(_ config: ProtocolClientConfig, httpVersion: HTTPVersion) throws {
        if httpVersion == .http1_1 {
            throw ConnectError.local(.unsupported, "gRPC needs HTTP/2; use HTTP/2, or the connect or grpcweb protocol over HTTP/1.1")
        }
        self.config = config
    }

    var rpcProtocol: RPCProtocol { .grpc }

    func requestHead(path: String, kind: MethodKind, headers: Metadata, timeoutMs: Int64,
                     unaryMessage: [UInt8]?, noSideEffects: Bool) throws -> (head: ClientRequestHead, bodyInURL: Bool) {
        var h = HTTPHeaders()
        h.add("content-type", WireProtocol.grpc.contentType(codec: config.codec))
        h.add("te", "trailers")
        GRPCClient.addCommonHeaders(config, timeoutMs: timeoutMs, to: &h)
        GRPCClient.addTrailingHeaders(config, headers, to: &h)
        return (ClientRequestHead(method: "POST", path: path, headers: h), false)
    }

    /// grpc-timeout and the encodings.
    static func addCommonHeaders(_ config: ProtocolClientConfig, timeoutMs: Int64, to h: inout HTTPHeaders) {
        if timeoutMs > 0 { h.add("grpc-timeout", GRPCTimeout.encode(ns: msToNs(timeoutMs))) }
        if config.gzip { h.add("grpc-encoding", "gzip") }
        h.add("grpc-accept-encoding", "gzip")
    }

    /// The user agent, the client's and the call's headers.
    static func addTrailingHeaders(_ config: ProtocolClientConfig, _ headers: Metadata, to h: inout HTTPHeaders) {
        h.add("user-agent", ConnectProtocol.userAgent)
        config.headers.write(to: &h)
        headers.write(to: &h)
    }

    func frameRequest(_ message: [UInt8], kind: MethodKind, into out: inout [UInt8]) throws {
        try frameEnvelope(message, gzip: config.gzip, into: &out)
    }

    func responseState(kind: MethodKind) -> ClientResponseState {
        ClientResponseState(kind: kind, maxBytes: config.maxMessageBytes, terminalFlags: 0)
    }

    func responseHead(status: Int, headers: HTTPHeaders, _ state: inout ClientResponseState) throws {
        try GRPCClient.head(.grpc, config, status: status, headers: headers, &state)
    }

    /// gRPC and gRPC-Web: a non-200 status is classified at the end (G-12 step 1); a trailers-only
    /// response may omit or vary the content type, so the status speaks then.
    static func head(_ wire: WireProtocol, _ config: ProtocolClientConfig, status: Int, headers h: HTTPHeaders,
                     _ state: inout ClientResponseState) throws {
        state.status = status
        state.rawHeaders = h
        state.headers = Metadata.from(h).headers
        if status != 200 { return }
        if var e = wire.validateResponseContentType(h.first("content-type"), codec: config.codec), h.first("grpc-status") == nil {
            e.metadata = state.headers
            throw e
        }
        do {
            state.encoding = try MessageEncoding.forResponse(h.first("grpc-encoding"))
        } catch var e as ConnectError {
            e.metadata = state.headers
            throw e
        }
    }

    func responseBody(_ bytes: [UInt8], _ state: inout ClientResponseState, _ onMessage: ([UInt8]) throws -> Void) throws {
        try GRPCClient.body(bytes, &state, onMessage)
    }

    static func body(_ bytes: [UInt8], _ state: inout ClientResponseState, _ onMessage: ([UInt8]) throws -> Void) throws {
        if bytes.isEmpty { return }
        state.bodyReceived = true
        if state.status != 200 { return }
        try state.pushEnvelopes(bytes, onMessage)
    }

    func responseEnd(trailers: HTTPHeaders, _ state: inout ClientResponseState, _ onMessage: ([UInt8]) throws -> Void) throws -> Metadata {
        try GRPCClient.end(trailers: trailers, &state)
    }

    /// The status from the trailers (HTTP trailers, gRPC-Web's trailer frame, or the head of a
    /// trailers-only response; G-12).
    static func end(trailers: HTTPHeaders, _ state: inout ClientResponseState) throws -> Metadata {
        let outcome = GRPCTrailers.classify(httpStatus: state.status, headers: state.rawHeaders, trailers: trailers,
                                            bodyReceived: state.bodyReceived)
        if let e = outcome.error { throw e }
        try state.checkMessageCount()
        return outcome.trailers
    }
}
