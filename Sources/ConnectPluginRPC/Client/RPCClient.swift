// The RPC client: a base URL, a transport (`ClientTransport`: the seam where discovery and balancing
// come; today one endpoint over TCP, Unix, TLS or in-process `inproc://NAME`, on the event loops of
// `Options.eventLoopGroup` or the shared ones), the protocols over HTTP/1.1 or HTTP/2, and blocking
// calls that wait on the caller's thread.
import ConnectPluginHTTP

/// A unary response.
public struct UnaryResponse: Sendable {
    public var message: [UInt8]
    public var headers: Metadata
    public var trailers: Metadata
}

public final class RPCClient: @unchecked Sendable {
    public struct Options: Sendable {
        /// "proto" or "json".
        public var codec: String = "proto"
        public var httpVersion: HTTPVersion = .http2
        /// "identity" or "gzip" for requests.
        public var compression: String = "identity"
        /// Default timeout per call in milliseconds; 0 = none.
        public var timeoutMs: Int64 = 0
        /// Largest response message after decompression; 0 = no limit.
        public var maxMessageBytes: Int = 4 << 20
        /// Sent with every call.
        public var headers = Metadata()
        /// connect (default), grpc (HTTP/2 only) or grpcweb.
        public var rpcProtocol: RPCProtocol = .connect
        /// Connect: send unary calls of side-effect-free methods as GET requests.
        public var useHTTPGet = false
        /// TLS for https:// URLs (nil = system trust store, ALPN by `httpVersion`).
        public var tls: TLSConfig? = nil
        /// Interceptors around every call (unary and streaming): start hooks in this order before
        /// the request is sent, end hooks in reverse once the result is known.
        public var interceptors: [any Interceptor] = []
        /// The event loops that run the connections (nil = `EventLoopGroup.shared()`, the
        /// process-wide loops, one per core).
        public var eventLoopGroup: EventLoopGroup? = nil
        public init() {}
    }

    public let baseURL: String
    public let options: Options
    let pathPrefix: String
    /// Where the calls go.
    public let transport: any ClientTransport
    let chain: InterceptorChain

    public init(baseURL: String, options: Options = Options()) throws {
        try RPCClient.check(options)
        let (endpoint, prefix, secure) = try RPCClient.parse(baseURL)
        self.baseURL = baseURL
        self.options = options
        self.pathPrefix = prefix
        self.chain = InterceptorChain(options.interceptors)
        var cfg = HTTPClientConfig()
        cfg.version = options.httpVersion
        // Compressed bodies are checked again after inflating.
        cfg.maxResponseBodyBytes = options.maxMessageBytes == 0 ? 0 : options.maxMessageBytes &+ 1024
        if secure { cfg.tls = options.tls ?? TLSConfig() }
        do {
            transport = try HTTPClient(endpoint: endpoint, config: cfg, group: try options.eventLoopGroup ?? EventLoopGroup.shared())
        } catch let e as HTTPError {
            // A bad CA, certificate or key file is the caller's argument, as for a TLS listener.
            throw ConnectError.local(e.kind == .tls || e.kind == .invalidArgument ? .invalidArgument : .resource, e.message)
        }
    }

    /// A client that sends its calls through `transport` (a balancer, a test transport, or an
    /// `HTTPClient` made elsewhere). `baseURL` names the target in errors and descriptions;
    /// `pathPrefix` ("" or "/prefix") goes before every procedure path.
    public init(transport: any ClientTransport, baseURL: String, pathPrefix: String = "", options: Options = Options()) throws {
        try RPCClient.check(options)
        if !pathPrefix.isEmpty && (!pathPrefix.hasPrefix("/") || pathPrefix.hasSuffix("/")) {
            throw ConnectError.local(.invalidArgument, "path prefix \"\(pathPrefix)\" must start with / and not end with one (e.g. /api)")
        }
        self.baseURL = baseURL
        self.options = options
        self.pathPrefix = pathPrefix
        self.transport = transport
        self.chain = InterceptorChain(options.interceptors)
    }

    /// Checks the options every client needs.
    static func check(_ options: Options) throws {
        guard ConnectProtocol.supportedCodecs.contains(options.codec) else {
            throw ConnectError.local(.unsupported, "codec \"\(options.codec)\" is not supported; use proto or json")
        }
        guard options.compression == "identity" || options.compression == "gzip" else {
            throw ConnectError.local(.unsupported, "compression \"\(options.compression)\" is not supported; use identity or gzip")
        }
        if options.timeoutMs < 0 { throw ConnectError.local(.invalidArgument, "timeout must not be negative") }
        if options.rpcProtocol == .grpc && options.httpVersion == .http1_1 {
            throw ConnectError.local(.unsupported, "gRPC needs HTTP/2; use HTTP/2, or the connect or grpcweb protocol over HTTP/1.1")
        }
    }

    /// Parses "http://host:port[/prefix]", "https://…", "unix:///path", "unix:/path" or
    /// "inproc://NAME[/prefix]" (a server in this process, `RPCServer.listenInProcess`).
    static func parse(_ url: String) throws -> (HTTPEndpoint, String, Bool) {
        if url.hasPrefix("inproc://") {
            let rest = url.dropFirst(9)
            let slash = rest.firstIndex(of: "/")
            let name = String(slash.map { rest[..<$0] } ?? rest)
            var prefix = slash.map { String(rest[$0...]) } ?? ""
            while prefix.hasSuffix("/") { prefix.removeLast() }
            do {
                try InProcessListeners.validate(name)
            } catch let e as HTTPError {
                throw ConnectError.local(.invalidArgument, "URL \"\(url)\": \(e.message)")
            }
            return (.inProcess(name: name), prefix, false)
        }
        if url.hasPrefix("unix:") {
            var path = String(url.dropFirst(5))
            if path.hasPrefix("//") { path = String(path.dropFirst(2)) }
            if path.isEmpty || !path.hasPrefix("/") {
                throw ConnectError.local(.invalidArgument, "unix URL \"\(url)\" must name an absolute path, e.g. unix:///tmp/plugin.sock")
            }
            return (.unix(path: path), "", false)
        }
        let secure = url.hasPrefix("https://")
        guard url.hasPrefix("http://") || secure else {
            throw ConnectError.local(.invalidArgument, "URL \"\(url)\" must start with http://, https://, unix:// or inproc://")
        }
        let rest = url.dropFirst(secure ? 8 : 7)
        let slash = rest.firstIndex(of: "/")
        let hostPort = slash.map { rest[..<$0] } ?? rest
        var prefix = slash.map { String(rest[$0...]) } ?? ""
        while prefix.hasSuffix("/") { prefix.removeLast() }
        if hostPort.isEmpty { throw ConnectError.local(.invalidArgument, "URL \"\(url)\" has no host") }
        let host: String
        var port = secure ? 443 : 80
        if hostPort.hasPrefix("[") {
            guard let close = hostPort.firstIndex(of: "]") else { throw ConnectError.local(.invalidArgument, "URL \"\(url)\" has a malformed IPv6 host") }
            host = String(hostPort[hostPort.index(after: hostPort.startIndex)..<close])
            let after = hostPort[hostPort.index(after: close)...]
            if after.hasPrefix(":") {
                guard let p = Int(after.dropFirst()), p > 0, p <= 65535 else { throw ConnectError.local(.invalidArgument, "URL \"\(url)\" has an invalid port") }
                port = p
            }
        } else if let colon = hostPort.lastIndex(of: ":") {
            host = String(hostPort[..<colon])
            guard let p = Int(hostPort[hostPort.index(after: colon)...]), p > 0, p <= 65535 else {
                throw ConnectError.local(.invalidArgument, "URL \"\(url)\" has an invalid port")
            }
            port = p
        } else {
            host = String(hostPort)
        }
        if host.isEmpty { throw ConnectError.local(.invalidArgument, "URL \"\(url)\" has no host") }
        return (.tcp(host: host, port: port), prefix, secure)
    }

    /// A blocking unary call. Throws ConnectError (kind .rpc with the code for RPC failures).
    public func unary(_ procedure: String, request: [UInt8], headers: Metadata = Metadata(), timeoutMs: Int64? = nil,
                      noSideEffects: Bool = false) throws -> UnaryResponse {
        try RPCServer.validateProcedure(procedure)
        let timeout = timeoutMs ?? options.timeoutMs
        if timeout < 0 { throw ConnectError.local(.invalidArgument, "timeout must not be negative") }
        if !chain.isEmpty {
            return try ClientInterceptors.unary(self, procedure, request: request, headers: headers, timeoutMs: timeout, noSideEffects: noSideEffects)
        }
        return try unaryDirect(procedure, request: request, headers: headers, timeoutMs: timeout, noSideEffects: noSideEffects)
    }

    /// A unary call past the interceptors.
    func unaryDirect(_ procedure: String, request: [UInt8], headers: Metadata, timeoutMs timeout: Int64, noSideEffects: Bool) throws -> UnaryResponse {
        if options.rpcProtocol != .connect {
            return try envelopedUnary(procedure, request: request, headers: headers, timeoutMs: timeout)
        }
        if options.useHTTPGet && noSideEffects {
            return try getUnary(procedure, request: request, headers: headers, timeoutMs: timeout)
        }
        let h = connectUnaryHeaders(headers, timeoutMs: timeout)
        let body = try connectUnaryBody(request)
        let timeoutNs: UInt64? = timeout > 0 ? msToNs(timeout) : nil
        let result = transport.roundTrip(method: "POST", path: pathPrefix + procedure, headers: h, body: body, timeoutNs: timeoutNs,
                                         maxResponseBodyBytes: responseBodyLimit)
        switch result {
        case .failure(let e):
            throw RPCClient.map(e)
        case .success(let resp):
            return try decode(resp)
        }
    }

    /// The whole-response limit of `roundTrip` (as the transport's `maxResponseBodyBytes`).
    private var responseBodyLimit: Int { options.maxMessageBytes == 0 ? 0 : options.maxMessageBytes &+ 1024 }

    static func map(_ e: HTTPError) -> ConnectError {
        switch e.kind {
        case .timeout: return ConnectError(.deadlineExceeded, e.message)
        case .tooLarge: return ConnectError(.resourceExhausted, e.message)
        case .canceled: return ConnectError(.canceled, e.message)
        case .closed: return ConnectError(.canceled, e.message)
        case .protocolError: return ConnectError(.internal, e.message)
        case .invalidArgument: return ConnectError.local(.invalidArgument, e.message)
        case .io, .resource, .refused, .tls: return ConnectError(.unavailable, e.message)
        case .limit: return ConnectError(.resourceExhausted, e.message)
        case .permission: return ConnectError(.permissionDenied, e.message)
        }
    }

    /// Request headers of a Connect unary POST.
    func connectUnaryHeaders(_ extra: Metadata, timeoutMs: Int64) -> HTTPHeaders {
        var h = HTTPHeaders()
        h.add("content-type", ConnectProtocol.contentType(codec: options.codec))
        h.add("connect-protocol-version", ConnectProtocol.protocolVersion)
        h.add("accept-encoding", "gzip")
        h.add("user-agent", ConnectProtocol.userAgent)
        if timeoutMs > 0 { h.add("connect-timeout-ms", String(min(timeoutMs, 9_999_999_999))) }
        if options.compression == "gzip" { h.add("content-encoding", "gzip") }
        options.headers.write(to: &h)
        extra.write(to: &h)
        return h
    }

    /// The body of a Connect unary POST (the message, gzipped when the client compresses; an empty
    /// message stays empty, which decodes the same under any encoding).
    func connectUnaryBody(_ request: [UInt8]) throws -> [UInt8] {
        if options.compression == "gzip" && !request.isEmpty { return try Gzip.compress(request) }
        return request
    }

    func decode(_ resp: HTTPResponse) throws -> UnaryResponse {
        let (md, trailers) = Metadata.from(resp.headers, trailerPrefix: "trailer-")
        let encoding = asciiLowercased(resp.headers.first("content-encoding") ?? "identity")
        let limit = options.maxMessageBytes
        var body = resp.body
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
        if resp.status != 200 {
            var err = ConnectErrorJSON.decode(body: body, contentType: resp.headers.first("content-type").map(asciiLowercased), httpStatus: resp.status)
            var all = md
            all.append(contentsOf: trailers)
            err.metadata = all
            throw err
        }
        let ct = resp.headers.first("content-type")
        guard let codec = ConnectProtocol.unaryCodec(contentType: ct) else {
            let code: Code = (ct.map { asciiLowercased($0).hasPrefix("application/") } ?? false) ? .internal : .unknown
            throw ConnectError(code, "the server answered with content-type \"\(ct ?? "")\"; expected \(ConnectProtocol.contentType(codec: options.codec))", metadata: md)
        }
        if codec != options.codec {
            throw ConnectError(.internal, "the server answered in codec \(codec); the request used \(options.codec)", metadata: md)
        }
        if limit > 0 && body.count > limit {
            throw ConnectError(.resourceExhausted, "response message larger than \(limit) bytes", metadata: md)
        }
        return UnaryResponse(message: body, headers: md, trailers: trailers)
    }

    /// Runs an HTTP exchange with a whole body, blocking the caller.
    func exchange(method: String, path: String, headers: HTTPHeaders, body: [UInt8], timeoutMs: Int64) throws -> HTTPResponse {
        let timeoutNs: UInt64? = timeoutMs > 0 ? msToNs(timeoutMs) : nil
        let result: Result<HTTPResponse, HTTPError>
        if method == "POST" {
            result = transport.roundTrip(method: method, path: pathPrefix + path, headers: headers, body: body, timeoutNs: timeoutNs,
                                         maxResponseBodyBytes: responseBodyLimit)
        } else {
            let promise = Promise<Result<HTTPResponse, HTTPError>>()
            transport.execute(method: method, path: pathPrefix + path, headers: headers, body: body, timeoutNs: timeoutNs) { r in
                promise.fulfill(r)
            }
            guard let r = promise.wait() else { throw ConnectError(.internal, "the call finished without a result") }
            result = r
        }
        switch result {
        case .failure(let e): throw RPCClient.map(e)
        case .success(let r): return r
        }
    }

    /// Connect unary GET (protocol digest §4): parameters in the order connect, base64,
    /// compression, encoding, message (CG-1); URL-safe unpadded base64 (CG-2).
    private func getUnary(_ procedure: String, request: [UInt8], headers: Metadata, timeoutMs: Int64) throws -> UnaryResponse {
        var h = HTTPHeaders()
        h.add("accept-encoding", "gzip")
        h.add("user-agent", ConnectProtocol.userAgent)
        if timeoutMs > 0 { h.add("connect-timeout-ms", String(min(timeoutMs, 9_999_999_999))) }
        options.headers.write(to: &h)
        headers.write(to: &h)
        var payload = request
        var compressed = false
        if options.compression == "gzip" && !request.isEmpty {
            payload = try Gzip.compress(request)
            compressed = true
        }
        var q = "?connect=v1"
        if options.codec == "proto" || compressed {
            let b64 = Base64.encode(payload, padded: false)
            q += "&base64=1"
            if compressed { q += "&compression=gzip" }
            q += "&encoding=" + options.codec + "&message="
            q += String(decoding: b64.utf8.map { $0 == UInt8(ascii: "+") ? UInt8(ascii: "-") : ($0 == UInt8(ascii: "/") ? UInt8(ascii: "_") : $0) }, as: UTF8.self)
        } else {
            q += "&encoding=" + options.codec + "&message=" + RPCClient.queryEscape(payload)
        }
        let resp = try exchange(method: "GET", path: procedure + q, headers: h, body: [], timeoutMs: timeoutMs)
        return try decode(resp)
    }

    /// Go's url.QueryEscape: unreserved bytes as is, space as +, the rest %XX.
    static func queryEscape(_ bytes: [UInt8]) -> String {
        let hex = Array("0123456789ABCDEF".utf8)
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count * 3)
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

    var wireProtocol: WireProtocol {
        switch options.rpcProtocol {
        case .connect: return .connectStream
        case .grpc: return .grpc
        case .grpcWeb: return .grpcWeb
        }
    }

    /// Request headers of an enveloped call (Connect streaming, gRPC, gRPC-Web).
    func envelopedHeaders(_ extra: Metadata, timeoutMs: Int64) -> HTTPHeaders {
        var h = HTTPHeaders()
        let wire = wireProtocol
        h.add("content-type", wire.contentType(codec: options.codec))
        switch options.rpcProtocol {
        case .connect:
            h.add("connect-protocol-version", ConnectProtocol.protocolVersion)
            if timeoutMs > 0 { h.add("connect-timeout-ms", String(min(timeoutMs, 9_999_999_999))) }
            if options.compression == "gzip" { h.add("connect-content-encoding", "gzip") }
            h.add("connect-accept-encoding", "gzip")
        case .grpc, .grpcWeb:
            if options.rpcProtocol == .grpc { h.add("te", "trailers") }
            if timeoutMs > 0 { h.add("grpc-timeout", GRPCTimeout.encode(ns: msToNs(timeoutMs))) }
            if options.compression == "gzip" { h.add("grpc-encoding", "gzip") }
            h.add("grpc-accept-encoding", "gzip")
            if options.rpcProtocol == .grpcWeb { h.add("x-grpc-web", "1") }
        }
        h.add("user-agent", ConnectProtocol.userAgent)
        options.headers.write(to: &h)
        extra.write(to: &h)
        return h
    }

    /// gRPC and gRPC-Web unary: one enveloped message each way, status in trailers.
    private func envelopedUnary(_ procedure: String, request: [UInt8], headers: Metadata, timeoutMs: Int64) throws -> UnaryResponse {
        let h = envelopedHeaders(headers, timeoutMs: timeoutMs)
        var body: [UInt8] = []
        try EnvelopeCodec.encodeMessage(request, compress: options.compression == "gzip", keepIfLarger: true, into: &body)
        let resp = try exchange(method: "POST", path: procedure, headers: h, body: body, timeoutMs: timeoutMs)
        var decoder = ResponseDecoder(client: self, kind: .unary)
        try decoder.head(status: resp.status, headers: resp.headers)
        var messages: [[UInt8]] = []
        try decoder.push(resp.body) { messages.append($0) }
        let trailers = try decoder.end(httpTrailers: resp.trailers)
        if messages.count != 1 {
            throw ConnectError(.unimplemented, "protocol error: unary response has \(messages.count) messages", metadata: decoder.headers)
        }
        return UnaryResponse(message: messages[0], headers: decoder.headers, trailers: trailers)
    }

    /// Opens a streaming call (client, server or bidi streaming).
    public func stream(_ procedure: String, kind: MethodKind, headers callHeaders: Metadata = Metadata(), timeoutMs: Int64? = nil) throws -> ClientStream {
        try RPCServer.validateProcedure(procedure)
        let timeout = timeoutMs ?? options.timeoutMs
        if timeout < 0 { throw ConnectError.local(.invalidArgument, "timeout must not be negative") }
        var headers = callHeaders
        let run = chain.isEmpty ? nil : try ClientInterceptors.startStream(self, procedure, kind: kind, headers: &headers, timeoutMs: timeout)
        // A unary method called through a stream handle (cancellable from another thread): Connect
        // uses its unary framing; gRPC and gRPC-Web are enveloped either way.
        let connectUnary = kind == .unary && options.rpcProtocol == .connect
        let h = connectUnary ? connectUnaryHeaders(headers, timeoutMs: timeout) : envelopedHeaders(headers, timeoutMs: timeout)
        let timeoutNs: UInt64? = timeout > 0 ? msToNs(timeout) : nil
        let call = transport.stream(method: "POST", path: pathPrefix + procedure, headers: h, timeoutNs: timeoutNs)
        let stream = ClientStream(client: self, call: call, kind: kind, connectUnary: connectUnary)
        stream.interceptorRun = run
        return stream
    }

    /// Closes the client's connections. Calls in progress fail with canceled.
    public func close() {
        transport.close()
    }
}

/// Milliseconds (≥ 0) to nanoseconds, saturating instead of wrapping.
func msToNs(_ ms: Int64) -> UInt64 {
    let r = UInt64(max(0, ms)).multipliedReportingOverflow(by: 1_000_000)
    return r.overflow ? UInt64.max : r.partialValue
}
