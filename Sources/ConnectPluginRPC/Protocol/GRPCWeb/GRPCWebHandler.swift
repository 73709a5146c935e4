// The gRPC-Web protocol on the server (protocol digest §3): gRPC's headers (GRPC/GRPCHandler.swift:
// grpc-timeout, grpc-encoding, the echoed Content-Type) over HTTP/1.1 or HTTP/2, and the end as a
// trailer frame (an envelope with flag 0x80) in the body — or a trailers-only response (GW-2) when no
// message and no response headers went out.
import ConnectPluginHTTP

final class GRPCWebHandler: ProtocolHandler {
    static let shared = GRPCWebHandler()
    private init() {}

    var rpcProtocol: RPCProtocol { .grpcWeb }
    func serves(_ kind: MethodKind) -> Bool { true }
    var acceptPostTypes: [String] { ["application/grpc-web", "application/grpc-web+json"] }

    func negotiate(_ request: HTTPRequest, codec: String, query: [String: String]) -> (CallParams, ConnectError?) {
        GRPCHandler.negotiate(request, codec: codec, wire: .grpcWeb)
    }

    func responseHead(_ params: CallParams, headers: Metadata) -> HTTPHeaders { GRPCHandler.head(params, headers: headers) }

    func endResponse(_ stream: HTTPServerStream, _ params: CallParams, tail: [UInt8], error: ConnectError?, trailers: Metadata) -> Bool {
        var out = tail
        try? GRPCWebTrailers.encodeEnvelope(GRPCTrailers.fields(error: error, trailers: trailers), into: &out)
        if stream.write(out) != nil { return false }
        return stream.finish()
    }

    func wholeResponse(_ params: CallParams, message: [UInt8]?, error: ConnectError?, headers md: Metadata, trailers: Metadata) -> HTTPResponse {
        var h = responseHead(params, headers: md)
        let fields = GRPCTrailers.fields(error: error, trailers: trailers)
        let m = error == nil ? message : nil
        if m == nil && md.isEmpty {
            // Trailers-only (GW-2): no message and no response headers.
            for (n, v) in fields { h.add(n, v) }
            return HTTPResponse(status: 200, headers: h)
        }
        // Response headers set by the handler stay headers, then the trailer frame, even with no message.
        var body: [UInt8] = []
        if let m { try? frame(m, params, into: &body) }
        try? GRPCWebTrailers.encodeEnvelope(fields, into: &body)
        return HTTPResponse(status: 200, headers: h, body: body)
    }

    /// gRPC-Web clients read a trailers-only UNIMPLEMENTED (GEN-2).
    func unknownProcedure(_ stream: HTTPServerStream, codec: String, error: ConnectError) {
        var (params, _) = negotiate(stream.request, codec: codec, query: [:])
        params.responseEncoding = .identity
        stream.respond(wholeResponse(params, message: nil, error: error, headers: Metadata(), trailers: Metadata()))
    }
}
