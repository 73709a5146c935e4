// The Connect protocol on the server (protocol digest §4–§6), in both forms: unary (a bare body,
// POST or GET, the end as the HTTP status with an error JSON body and `trailer-` headers) and
// streaming (envelopes, the end as an EndStreamResponse envelope). Headers: Connect-Protocol-Version,
// Connect-Timeout-Ms, Content-Encoding / Accept-Encoding (unary), Connect-Content-Encoding /
// Connect-Accept-Encoding (streaming). `ConnectGET` decodes the GET form's query.
import ConnectPluginHTTP

final class ConnectHandler: ProtocolHandler {
    static let unary = ConnectHandler(streaming: false)
    static let streaming = ConnectHandler(streaming: true)

    /// The enveloped (streaming) form.
    let streaming: Bool
    private init(streaming: Bool) { self.streaming = streaming }

    var rpcProtocol: RPCProtocol { .connect }

    func serves(_ kind: MethodKind) -> Bool { streaming ? kind != .unary : kind == .unary }

    var acceptPostTypes: [String] {
        streaming ? ["application/connect+json", "application/connect+proto"] : ["application/json", "application/proto"]
    }

    func negotiate(_ request: HTTPRequest, codec: String, query: [String: String]) -> (CallParams, ConnectError?) {
        let isGET = request.method == "GET"
        var p = CallParams(codec: codec, responseContentType: streaming ? "application/connect+" + codec : "application/" + codec)
        p.isGET = isGET
        p.enveloped = streaming
        let encName: String?
        if streaming {
            encName = request.headers.first("connect-content-encoding")
        } else {
            encName = isGET ? query["compression"] : request.headers.first("content-encoding")
        }
        guard let reqEnc = MessageEncoding(name: encName) else {
            return (p, ConnectError(.unimplemented, "compression \"\(encName ?? "")\" is not supported; supported: \(MessageEncoding.acceptHeaderValue)"))
        }
        p.requestEncoding = reqEnc
        if streaming {
            // Streams mirror the request's compression (as grpc-go does): a client that sends
            // identity gets identity, and no CPU goes into compressing for a peer that did not ask.
            p.responseEncoding = reqEnc
        } else {
            // Unary compresses large responses when the client accepts gzip.
            p.responseEncoding = ConnectProtocol.firstListItem(request.headers.first("accept-encoding")) {
                ConnectProtocol.asciiEqualsIgnoringCase($0, "gzip") ? true : nil
            } ?? false ? .gzip : .identity
        }
        let version = isGET ? query["connect"] : request.headers.first("connect-protocol-version")
        if let v = version, v != (isGET ? "v1" : ConnectProtocol.protocolVersion) {
            return (p, ConnectError(.invalidArgument, "connect protocol version must be \(isGET ? "v1" : "1"), got \"\(v)\""))
        }
        if let t = request.headers.first("connect-timeout-ms") {
            guard let ms = ConnectProtocol.parseTimeoutMs(t) else {
                return (p, ConnectError(.invalidArgument, "connect-timeout-ms must be 1 to 10 digits, got \"\(t)\""))
            }
            let ns = UInt64(ms).multipliedReportingOverflow(by: 1_000_000)
            p.timeoutNs = ns.overflow ? UInt64.max : ns.partialValue
        }
        return (p, nil)
    }

    func messageInURL(_ query: [String: String], _ params: CallParams, maxBytes: Int) throws -> [UInt8]? {
        guard params.isGET else { return nil }
        return try ConnectGET.message(query: query, encoding: params.requestEncoding, maxBytes: maxBytes)
    }

    func singleMessage(_ body: [UInt8], _ params: CallParams, maxBytes: Int) throws -> [UInt8] {
        if streaming { return try singleEnvelopedMessage(body, params, maxBytes: maxBytes) }
        if params.requestEncoding == .identity || body.isEmpty {
            if maxBytes > 0 && body.count > maxBytes { throw ConnectError(.resourceExhausted, "request message larger than \(maxBytes) bytes") }
            return body
        }
        do {
            return try Gzip.decompress(body, maxBytes: maxBytes)
        } catch let e as ConnectError {
            if e.code == .resourceExhausted { throw ConnectError(.resourceExhausted, "request message larger than \(maxBytes) bytes after decompression") }
            throw ConnectError(.invalidArgument, e.message)
        }
    }

    func responseHead(_ params: CallParams, headers: Metadata) -> HTTPHeaders {
        var h = HTTPHeaders()
        h.add("content-type", params.responseContentType)
        if streaming {
            h.add("connect-accept-encoding", MessageEncoding.acceptHeaderValue)
            if params.compressResponses { h.add("connect-content-encoding", params.responseEncoding.name) }
        } else {
            h.add("accept-encoding", MessageEncoding.acceptHeaderValue)
            if params.isGET { h.add("vary", "Accept-Encoding") }
        }
        headers.write(to: &h)
        return h
    }

    /// Streaming: the EndStreamResponse envelope ends the body.
    func endResponse(_ stream: HTTPServerStream, _ params: CallParams, tail: [UInt8], error: ConnectError?, trailers: Metadata) -> Bool {
        var out = tail
        try? EndStreamResponse(error: error, metadata: trailers).encodeEnvelope(into: &out)
        if !out.isEmpty, stream.write(out) != nil { return false }
        return stream.finish()
    }

    func wholeResponse(_ params: CallParams, message: [UInt8]?, error: ConnectError?, headers md: Metadata, trailers: Metadata) -> HTTPResponse {
        if streaming {
            let h = responseHead(params, headers: md)
            var body: [UInt8] = []
            if let m = message, error == nil { try? frame(m, params, into: &body) }
            try? EndStreamResponse(error: error, metadata: trailers).encodeEnvelope(into: &body)
            return HTTPResponse(status: 200, headers: h, body: body)
        }
        if let err = error {
            var h = HTTPHeaders()
            h.add("content-type", "application/json")
            md.write(to: &h)
            err.metadata.write(to: &h)
            trailers.write(to: &h, prefix: "trailer-")
            return HTTPResponse(status: err.code.httpStatus, headers: h, body: ConnectErrorJSON.encode(err))
        }
        var h = responseHead(params, headers: Metadata())
        var body = message ?? []
        if body.count >= ConnectProtocol.compressMinBytes && params.compressResponses, let z = try? Gzip.compress(body) {
            body = z
            h.add("content-encoding", "gzip")
        }
        md.write(to: &h)
        trailers.write(to: &h, prefix: "trailer-")
        return HTTPResponse(status: 200, headers: h, body: body)
    }

    /// Connect clients (and requests of no known protocol) read an HTTP 404 with an error JSON (GEN-2).
    func unknownProcedure(_ stream: HTTPServerStream, codec: String, error: ConnectError) {
        ConnectHandler.notFound(stream, error)
    }

    static func notFound(_ stream: HTTPServerStream, _ error: ConnectError) {
        var h = HTTPHeaders()
        h.add("content-type", "application/json")
        stream.respond(HTTPResponse(status: 404, headers: h, body: ConnectErrorJSON.encode(error)))
    }

    /// A GET without a usable `encoding` parameter: 415 with an error JSON.
    static func unsupportedGET(_ stream: HTTPServerStream) {
        var h = HTTPHeaders()
        h.add("content-type", "application/json")
        let err = ConnectError(.unimplemented, "GET request needs encoding=proto or encoding=json")
        stream.respond(HTTPResponse(status: 415, headers: h, body: ConnectErrorJSON.encode(err)))
    }
}

/// Connect unary GET (protocol digest §4): the query carries the message.
enum ConnectGET {
    /// Splits "a=1&b=2" with form decoding (+ is a space, %XX escapes); the first value of a key wins.
    static func parseQuery(_ q: Substring) -> [String: String] {
        var out: [String: String] = [:]
        for part in q.split(separator: "&", omittingEmptySubsequences: true) {
            let kv = part.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard let k = kv.first else { continue }
            let key = formDecode(k)
            let value = kv.count > 1 ? formDecode(kv[1]) : ""
            if out[key] == nil { out[key] = value }
        }
        return out
    }

    static func formDecodeBytes(_ s: Substring) -> [UInt8] {
        var out: [UInt8] = []
        let u = Array(s.utf8)
        var i = 0
        while i < u.count {
            let b = u[i]
            if b == UInt8(ascii: "+") {
                out.append(0x20)
                i += 1
            } else if b == UInt8(ascii: "%"), i + 2 < u.count, let h = hex(u[i + 1]), let l = hex(u[i + 2]) {
                out.append(h << 4 | l)
                i += 3
            } else {
                out.append(b)
                i += 1
            }
        }
        return out
    }

    static func formDecode(_ s: Substring) -> String { String(decoding: formDecodeBytes(s), as: UTF8.self) }

    static func hex(_ c: UInt8) -> UInt8? {
        switch c {
        case 0x30...0x39: return c - 0x30
        case 0x41...0x46: return c - 0x41 + 10
        case 0x61...0x66: return c - 0x61 + 10
        default: return nil
        }
    }

    static func message(query: [String: String], encoding: MessageEncoding, maxBytes: Int) throws -> [UInt8] {
        guard let raw = query["message"] else { throw ConnectError(.invalidArgument, "GET request has no message parameter") }
        var bytes: [UInt8]
        if query["base64"] == "1" {
            var s = raw.replacingDashUnderscore()
            while s.hasSuffix("=") { s.removeLast() }
            guard let d = Base64.decode(s) else { throw ConnectError(.invalidArgument, "message parameter is not valid base64") }
            bytes = d
        } else {
            bytes = Array(raw.utf8)
        }
        if encoding == .gzip && !bytes.isEmpty {
            do {
                bytes = try Gzip.decompress(bytes, maxBytes: maxBytes)
            } catch let e as ConnectError {
                if e.code == .resourceExhausted { throw ConnectError(.resourceExhausted, "request message larger than \(maxBytes) bytes after decompression") }
                throw ConnectError(.invalidArgument, e.message)
            }
        }
        if maxBytes > 0 && bytes.count > maxBytes { throw ConnectError(.resourceExhausted, "request message larger than \(maxBytes) bytes") }
        return bytes
    }
}

extension String {
    /// URL-safe base64 → standard alphabet.
    func replacingDashUnderscore() -> String {
        String(decoding: utf8.map { $0 == UInt8(ascii: "-") ? UInt8(ascii: "+") : ($0 == UInt8(ascii: "_") ? UInt8(ascii: "/") : $0) }, as: UTF8.self)
    }
}
