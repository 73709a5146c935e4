// The server's protocol adapters (Protocol/ProtocolHandler.swift and one per protocol): request
// header negotiation, the Connect GET form, how a response's end is encoded, Accept-Post.
import Testing
import ConnectPluginHTTP
@testable import ConnectPluginRPC

@Suite struct ProtocolHandlerTests {
    private func request(_ headers: [(String, String)], method: String = "POST") -> HTTPRequest {
        HTTPRequest(method: method, target: "/a.B/C", headers: HTTPHeaders(headers), version: .http2)
    }

    @Test func detectedProtocolsMapToTheirAdapters() {
        #expect(WireProtocol.connectUnary.serverHandler.rpcProtocol == .connect)
        #expect(WireProtocol.connectStream.serverHandler.rpcProtocol == .connect)
        #expect(WireProtocol.grpc.serverHandler.rpcProtocol == .grpc)
        #expect(WireProtocol.grpcWeb.serverHandler.rpcProtocol == .grpcWeb)
        #expect(ConnectHandler.unary.serves(.unary) && !ConnectHandler.unary.serves(.bidiStream))
        #expect(!ConnectHandler.streaming.serves(.unary) && ConnectHandler.streaming.serves(.serverStream))
        #expect(GRPCHandler.shared.serves(.unary) && GRPCWebHandler.shared.serves(.clientStream))
    }

    @Test func acceptPostListsTheFormsThatServeTheKind() {
        #expect(ServerProtocols.acceptPost(for: .unary)
                == "application/json, application/proto, application/grpc, application/grpc+json, application/grpc-web, application/grpc-web+json")
        #expect(ServerProtocols.acceptPost(for: .bidiStream)
                == "application/connect+json, application/connect+proto, application/grpc, application/grpc+json, application/grpc-web, application/grpc-web+json")
    }

    @Test func connectUnaryNegotiation() {
        let (p, err) = ConnectHandler.unary.negotiate(request([("connect-timeout-ms", "1500"), ("content-encoding", "gzip"),
                                                               ("accept-encoding", "br, gzip")]), codec: "json", query: [:])
        #expect(err == nil)
        #expect(p.timeoutNs == 1_500_000_000)
        #expect(p.requestEncoding == .gzip && p.responseEncoding == .gzip)
        #expect(p.responseContentType == "application/json" && !p.enveloped && !p.isGET)
        let (_, bad) = ConnectHandler.unary.negotiate(request([("connect-timeout-ms", "12345678901")]), codec: "proto", query: [:])
        #expect(bad?.code == .invalidArgument)
        let (_, version) = ConnectHandler.unary.negotiate(request([("connect-protocol-version", "2")]), codec: "proto", query: [:])
        #expect(version?.code == .invalidArgument)
        let (_, enc) = ConnectHandler.streaming.negotiate(request([("connect-content-encoding", "br")]), codec: "proto", query: [:])
        #expect(enc?.code == .unimplemented)
    }

    @Test func connectGETCarriesTheMessageInTheURL() throws {
        let query = ConnectGET.parseQuery("encoding=json&message=%7B%7D&connect=v1")
        let (p, err) = ConnectHandler.unary.negotiate(request([], method: "GET"), codec: "json", query: query)
        #expect(err == nil && p.isGET)
        #expect(try ConnectHandler.unary.messageInURL(query, p, maxBytes: 0) == Array("{}".utf8))
        #expect(ConnectHandler.unary.responseHead(p, headers: Metadata()).first("vary") == "Accept-Encoding")
        let (post, _) = ConnectHandler.unary.negotiate(request([]), codec: "json", query: [:])
        #expect(try ConnectHandler.unary.messageInURL([:], post, maxBytes: 0) == nil)
        let (_, wrong) = ConnectHandler.unary.negotiate(request([], method: "GET"), codec: "json", query: ["connect": "v2"])
        #expect(wrong?.code == .invalidArgument)
    }

    @Test func grpcNegotiationEchoesTheContentTypeAndMirrorsCompression() {
        let (p, err) = GRPCHandler.shared.negotiate(request([("content-type", "Application/GRPC+proto"), ("grpc-timeout", "2S"),
                                                             ("grpc-encoding", "gzip")]), codec: "proto", query: [:])
        #expect(err == nil)
        #expect(p.responseContentType == "application/grpc+proto")
        #expect(p.timeoutNs == 2_000_000_000)
        #expect(p.responseEncoding == .gzip)
        #expect(GRPCHandler.shared.responseHead(p, headers: Metadata()).first("grpc-encoding") == "gzip")
        let (_, bad) = GRPCWebHandler.shared.negotiate(request([("grpc-timeout", "soon")]), codec: "proto", query: [:])
        #expect(bad?.code == .invalidArgument)
    }

    @Test func connectUnaryEndIsTheHTTPStatusAndErrorJSON() {
        let p = CallParams(codec: "proto", responseContentType: "application/proto", enveloped: false)
        var trailers = Metadata()
        try? trailers.add("t", "1")
        let r = ConnectHandler.unary.wholeResponse(p, message: nil, error: ConnectError(.notFound, "no"), headers: Metadata(), trailers: trailers)
        #expect(r.status == 404)
        #expect(r.headers.first("content-type") == "application/json")
        #expect(r.headers.first("trailer-t") == "1")
        let ok = ConnectHandler.unary.wholeResponse(p, message: [1, 2], error: nil, headers: Metadata(), trailers: Metadata())
        #expect(ok.status == 200 && ok.body == [1, 2])
    }

    @Test func grpcEndIsTrailersOnlyWithoutHeadersOrMessage() {
        let p = CallParams(codec: "proto", responseContentType: "application/grpc")
        let only = GRPCHandler.shared.wholeResponse(p, message: nil, error: nil, headers: Metadata(), trailers: Metadata())
        #expect(only.headers.first("grpc-status") == "0" && only.trailers.count == 0)
        // Headers a handler set stay headers, even with no message (conformance regression).
        var md = Metadata()
        try? md.add("x-custom-header", "v")
        let split = GRPCHandler.shared.wholeResponse(p, message: nil, error: nil, headers: md, trailers: Metadata())
        #expect(split.headers.first("x-custom-header") == "v" && split.headers.first("grpc-status") == nil)
        #expect(split.trailers.first("grpc-status") == "0")
        let web = GRPCWebHandler.shared.wholeResponse(p, message: nil, error: nil, headers: md, trailers: Metadata())
        #expect(web.headers.first("grpc-status") == nil)
        #expect(web.body.first == 0x80)  // the trailer frame
    }
}
