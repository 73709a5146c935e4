// The Connect protocol's client side (protocol digest §2–§4): unary calls as POST with the message
// as the body, or for side-effect-free methods with `useHTTPGet` as GET with the message in the
// URL; streaming calls enveloped, ending with an EndStreamResponse. The response of a unary call
// is the whole message, or with a non-200 status an error JSON.
import ConnectPluginHTTP

struct ConnectClient: ProtocolClient {
    let config: ProtocolClientConfig

    init(_ config: ProtocolClientConfig) { self.config = config }

    var rpcProtocol: RPCProtocol { .connect }

    func requestHead(path: String, kind: MethodKind, headers: Metadata, timeoutMs: Int64,
                     unaryMessage: [UInt8]?, noSideEffects: Bool) throws -> (head: ClientRequestHead, bodyInURL: Bool) {
        var h = HTTPHeaders()
        if kind != .unary {
            h.add("content-type", WireProtocol.connectStream.contentType(codec: config.codec))
            h.add("connect-protocol-version", ConnectProtocol.protocolVersion)
            if timeoutMs > 0 { h.add("connect-timeout-ms", String(min(timeoutMs, 9_999_999_999))) }
            if config.gzip { h.add("connect-content-encoding", "gzip") }
            h.add("connect-accept-encoding", "gzip")
            h.add("user-agent", ConnectProtocol.userAgent)
            config.headers.write(to: &h)
            headers.write(to: &h)
            return (ClientRequestHead(method: "POST", path: path, headers: h), false)
        }
        if config.useHTTPGet && noSideEffects, let message = unaryMessage {
            h.add("accept-encoding", "gzip")
            h.add("user-agent", ConnectProtocol.userAgent)
            if timeoutMs > 0 { h.add("connect-timeout-ms", String(min(timeoutMs, 9_999_999_999))) }
            config.headers.write(to: &h)
            headers.write(to: &h)
            return (ClientRequestHead(method: "GET", path: path + (try getQuery(message)), headers: h), true)
        }
        h.add("content-type", ConnectProtocol.contentType(codec: config.codec))
        h.add("connect-protocol-version", ConnectProtocol.protocolVersion)
        h.add("accept-encoding", "gzip")
        h.add("user-agent", ConnectProtocol.userAgent)
        if timeoutMs > 0 { h.add("connect-timeout-ms", String(min(timeoutMs, 9_999_999_999))) }
        if config.gzip { h.add("content-encoding", "gzip") }
        config.headers.write(to: &h)
        headers.write(to: &h)
        return (ClientRequestHead(method: "POST", path: path, headers: h), false)
    }

    /// Connect unary GET (protocol digest §4): parameters in the order connect, base64,
    /// compression, encoding, message (CG-1); URL-safe unpadded base64 (CG-2).
    func getQuery(_ request: [UInt8]) throws -> String {
        var payload = request
        var compressed = false
        if config.gzip && !request.isEmpty {
            payload = try Gzip.compress(request)
            compressed = true
        }
        var q = "?connect=v1"
        if config.codec == "proto" || compressed {
            let b64 = Base64.encode(payload, padded: false)
            q += "&base64=1"
            if compressed { q += "&compression=gzip" }
            q += "&encoding=" + config.codec + "&message="
            q += String(decoding: b64.utf8.map { $0 == UInt8(ascii: "+") ? UInt8(ascii: "-") : ($0 == UInt8(ascii: "/") ? UInt8(ascii: "_") : $0) }, as: UTF8.self)
        } else {
            q += "&encoding=" + config.codec + "&message=" + ConnectClient.queryEscape(payload)
        }
        return q
    }

    /// Go's url.QueryEscape: unreserved bytes as is, space as +, the rest %XX.
    static func queryEscape(_ bytes: [UInt8]) -> String {
        let hex = Array("0123456789ABCDEF".utf8)
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count &* 3)
        for b in bytes {
            switch b {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
                 UInt8(ascii: "-"), UInt8(ascii: "_"), UInt8(ascii: "."), UInt8(ascii: "~"):
                out.append(b)
            case 0x20:
                out.append(UInt8(ascii: "+"))
            default:
                out.append(UInt8(ascii: "%"))
                out.append(hex[Int(b >> 4)])
                out.append(hex[Int(b & 0x0F)])
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// Unary: the body is the message, gzipped when the client compresses (an empty message stays
    /// empty, which decodes the same under any encoding). Streams: one envelope per message.
    func frameRequest(_ message: [UInt8], kind: MethodKind, into out: inout [UInt8]) throws {
        if kind == .unary {
            let body = config.gzip && !message.isEmpty ? try Gzip.compress(message) : message
            // Usually `out` is empty: share the bytes instead of copying them.
            if out.isEmpty { out = body } else { out.append(contentsOf: body) }
            return
        }
        try frameEnvelope(message, gzip: config.gzip, into: &out)
    }

    func responseState(kind: MethodKind) -> ClientResponseState {
        ClientResponseState(kind: kind, maxBytes: config.maxMessageBytes, terminalFlags: Envelope.endStreamFlag)
    }

    func responseHead(status: Int, headers h: HTTPHeaders, _ state: inout ClientResponseState) throws {
        state.status = status
        state.rawHeaders = h
        if state.kind == .unary {
            // Decided at the end, from the status, the content type and the whole body.
            (state.headers, state.headerTrailers) = Metadata.from(h, trailerPrefix: "trailer-")
            return
        }
        state.headers = Metadata.from(h).headers
        if status != 200 {
            throw ConnectError(Code.fromHTTPStatus(status), ConnectErrorJSON.statusText(status), metadata: state.headers)
        }
        if var e = WireProtocol.connectStream.validateResponseContentType(h.first("content-type"), codec: config.codec) {
            e.metadata = state.headers
            throw e
        }
        do {
            state.encoding = try MessageEncoding.forResponse(h.first("connect-content-encoding"))
        } catch var e as ConnectError {
            e.metadata = state.headers
            throw e
        }
    }

    func responseBody(_ bytes: [UInt8], _ state: inout ClientResponseState, _ onMessage: ([UInt8]) throws -> Void) throws {
        if bytes.isEmpty { return }
        state.bodyReceived = true
        if state.kind == .unary {
            // Compressed bodies are checked again after inflating; error JSON gets some room.
            let limit = config.maxMessageBytes
            if limit > 0 && state.body.count &+ bytes.count > limit &+ 1024 {
                throw ConnectError(.resourceExhausted, "response message larger than \(limit) bytes", metadata: state.headers)
            }
            if state.body.isEmpty { state.body = bytes } else { state.body.append(contentsOf: bytes) }
            return
        }
        try state.pushEnvelopes(bytes, onMessage)
    }

    func responseEnd(trailers httpTrailers: HTTPHeaders, _ state: inout ClientResponseState,
                     _ onMessage: ([UInt8]) throws -> Void) throws -> Metadata {
        if state.kind == .unary {
            let (message, trailers) = try unaryResponse(&state)
            try state.countMessage()
            try onMessage(message)
            return trailers
        }
        try state.reader.finish()
        guard let t = state.terminal else {
            throw ConnectError(.internal, "protocol error: the response ended without an end-stream message", metadata: state.headers)
        }
        let es = try EndStreamResponse.decode(envelope: t, encoding: state.encoding, maxBytes: state.maxBytes)
        if var e = es.error {
            var all = state.headers
            all.append(contentsOf: es.metadata)
            e.metadata = all
            throw e
        }
        try state.checkMessageCount()
        return es.metadata
    }

    /// A whole unary response: the message and the trailers (`trailer-` headers), or the error
    /// (error JSON with the HTTP status; GEN-16 content-type checks; compressed bodies).
    func unaryResponse(_ state: inout ClientResponseState) throws -> ([UInt8], Metadata) {
        let md = state.headers
        let trailers = state.headerTrailers
        let encoding = asciiLowercased(state.rawHeaders.first("content-encoding") ?? "identity")
        let limit = config.maxMessageBytes
        var body = state.body
        state.body = []
        if !body.isEmpty && encoding != "identity" {
            guard encoding == "gzip" else {
                throw ConnectError(.internal, "the server answered with content-encoding \"\(encoding)\", which this client did not ask for", metadata: md)
            }
            do {
                body = try Gzip.decompress(body, maxBytes: limit)
            } catch let e as ConnectError {
                throw ConnectError(e.code == .resourceExhausted ? .resourceExhausted : .internal, "response: " + e.message, metadata: md)
            }
        }
        if state.status != 200 {
            var err = ConnectErrorJSON.decode(body: body, contentType: state.rawHeaders.first("content-type").map(asciiLowercased),
                                              httpStatus: state.status)
            var all = md
            all.append(contentsOf: trailers)
            err.metadata = all
            throw err
        }
        let ct = state.rawHeaders.first("content-type")
        guard let codec = ConnectProtocol.unaryCodec(contentType: ct) else {
            let code: Code = (ct.map { asciiLowercased($0).hasPrefix("application/") } ?? false) ? .internal : .unknown
            throw ConnectError(code, "the server answered with content-type \"\(ct ?? "")\"; expected \(ConnectProtocol.contentType(codec: config.codec))", metadata: md)
        }
        if codec != config.codec {
            throw ConnectError(.internal, "the server answered in codec \(codec); the request used \(config.codec)", metadata: md)
        }
        if limit > 0 && body.count > limit {
            throw ConnectError(.resourceExhausted, "response message larger than \(limit) bytes", metadata: md)
        }
        return (body, trailers)
    }
}
