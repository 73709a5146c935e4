// The gRPC protocol on the server (protocol digest §2, §6): envelopes over HTTP/2, grpc-timeout,
// grpc-encoding / grpc-accept-encoding, the request's Content-Type echoed (G-5), and the end as
// HTTP/2 trailers — or a trailers-only response (G-8) when no message and no response headers went
// out. Response headers a handler set always go in a HEADERS frame of their own (as grpc-go does),
// even with no message. gRPC-Web (GRPCWeb/GRPCWebHandler.swift) shares the header parts.
import ConnectPluginHTTP

final class GRPCHandler: ProtocolHandler {
    static let shared = GRPCHandler()
    private init() {}

    var rpcProtocol: RPCProtocol { .grpc }
    func serves(_ kind: MethodKind) -> Bool { true }
    var acceptPostTypes: [String] { ["application/grpc", "application/grpc+json"] }

    func negotiate(_ request: HTTPRequest, codec: String, query: [String: String]) -> (CallParams, ConnectError?) {
        GRPCHandler.negotiate(request, codec: codec, wire: .grpc)
    }

    /// gRPC and gRPC-Web request headers.
    static func negotiate(_ request: HTTPRequest, codec: String, wire: WireProtocol) -> (CallParams, ConnectError?) {
        var ct = wire.contentType(codec: codec)
        if let reqCT = request.headers.first("content-type") { ct = asciiLowercased(reqCT) }  // echo the request's (G-5)
        var p = CallParams(codec: codec, responseContentType: ct)
        let encName = request.headers.first("grpc-encoding")
        guard let reqEnc = MessageEncoding(name: encName) else {
            return (p, ConnectError(.unimplemented, "compression \"\(encName ?? "")\" is not supported; supported: \(MessageEncoding.acceptHeaderValue)"))
        }
        // Responses mirror the request's compression, as grpc-go does.
        p.requestEncoding = reqEnc
        p.responseEncoding = reqEnc
        do {
            p.timeoutNs = try GRPCTimeout.decode(request.headers.first("grpc-timeout"))
        } catch let e as ConnectError {
            return (p, e)
        } catch {
            return (p, ConnectError(.invalidArgument, "invalid grpc-timeout"))
        }
        return (p, nil)
    }

    func responseHead(_ params: CallParams, headers: Metadata) -> HTTPHeaders { GRPCHandler.head(params, headers: headers) }

    static func head(_ params: CallParams, headers: Metadata) -> HTTPHeaders {
        var h = HTTPHeaders()
        h.add("content-type", params.responseContentType)
        h.add("grpc-accept-encoding", MessageEncoding.acceptHeaderValue)
        if params.compressResponses { h.add("grpc-encoding", params.responseEncoding.name) }
        headers.write(to: &h)
        return h
    }

    static func trailerFields(_ error: ConnectError?, _ trailers: Metadata) -> HTTPHeaders {
        var t = HTTPHeaders()
        for (n, v) in GRPCTrailers.fields(error: error, trailers: trailers) { t.add(n, v) }
        return t
    }

    func endResponse(_ stream: HTTPServerStream, _ params: CallParams, tail: [UInt8], error: ConnectError?, trailers: Metadata) -> Bool {
        if !tail.isEmpty, stream.write(tail) != nil { return false }
        return stream.finish(trailers: GRPCHandler.trailerFields(error, trailers))
    }

    func wholeResponse(_ params: CallParams, message: [UInt8]?, error: ConnectError?, headers md: Metadata, trailers: Metadata) -> HTTPResponse {
        var h = responseHead(params, headers: md)
        let m = error == nil ? message : nil
        if m == nil && md.isEmpty {
            // Trailers-only (G-8): no message and no response headers.
            for (n, v) in GRPCTrailers.fields(error: error, trailers: trailers) { h.add(n, v) }
            return HTTPResponse(status: 200, headers: h)
        }
        // Response headers set by the handler stay headers (a HEADERS frame, then the trailers),
        // even with no message: folded into a trailers-only response, clients would read them as trailers.
        var body: [UInt8] = []
        if let m { try? frame(m, params, into: &body) }
        return HTTPResponse(status: 200, headers: h, body: body, trailers: GRPCHandler.trailerFields(error, trailers))
    }

    /// gRPC clients read a trailers-only UNIMPLEMENTED (GEN-2).
    func unknownProcedure(_ stream: HTTPServerStream, codec: String, error: ConnectError) {
        let (p, _) = negotiate(stream.request, codec: codec, query: [:])
        var params = p
        params.responseEncoding = .identity
        stream.respond(wholeResponse(params, message: nil, error: error, headers: Metadata(), trailers: Metadata()))
    }
}
