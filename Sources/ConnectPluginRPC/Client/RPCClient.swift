// The RPC client: a base URL, one endpoint (the seam where discovery and balancing come later), the
// Connect unary protocol over HTTP/1.1 or h2c, and a blocking call that waits on the caller's thread.
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
        public init() {}
    }

    public let baseURL: String
    public let options: Options
    let pathPrefix: String
    let transport: HTTPClient

    public init(baseURL: String, options: Options = Options()) throws {
        guard ConnectProtocol.supportedCodecs.contains(options.codec) else {
            throw ConnectError.local(.unsupported, "codec \"\(options.codec)\" is not supported; use proto or json")
        }
        guard options.compression == "identity" || options.compression == "gzip" else {
            throw ConnectError.local(.unsupported, "compression \"\(options.compression)\" is not supported; use identity or gzip")
        }
        if options.timeoutMs < 0 { throw ConnectError.local(.invalidArgument, "timeout must not be negative") }
        let (endpoint, prefix) = try RPCClient.parse(baseURL)
        self.baseURL = baseURL
        self.options = options
        self.pathPrefix = prefix
        var cfg = HTTPClientConfig()
        cfg.version = options.httpVersion
        // Compressed bodies are checked again after inflating.
        cfg.maxResponseBodyBytes = options.maxMessageBytes == 0 ? 0 : options.maxMessageBytes &+ 1024
        do {
            transport = HTTPClient(endpoint: endpoint, config: cfg, group: try EventLoopGroup.shared())
        } catch let e as HTTPError {
            throw ConnectError.local(.resource, e.message)
        }
    }

    /// Parses "http://host:port[/prefix]", "unix:///path" or "unix:/path".
    static func parse(_ url: String) throws -> (HTTPEndpoint, String) {
        if url.hasPrefix("unix:") {
            var path = String(url.dropFirst(5))
            if path.hasPrefix("//") { path = String(path.dropFirst(2)) }
            if path.isEmpty || !path.hasPrefix("/") {
                throw ConnectError.local(.invalidArgument, "unix URL \"\(url)\" must name an absolute path, e.g. unix:///tmp/plugin.sock")
            }
            return (.unix(path: path), "")
        }
        if url.hasPrefix("https://") {
            throw ConnectError.local(.unsupported, "https:// is not supported yet (TLS arrives with the protocol-family release); use http:// or unix://")
        }
        guard url.hasPrefix("http://") else {
            throw ConnectError.local(.invalidArgument, "URL \"\(url)\" must start with http:// or unix://")
        }
        let rest = url.dropFirst(7)
        let slash = rest.firstIndex(of: "/")
        let hostPort = slash.map { rest[..<$0] } ?? rest
        var prefix = slash.map { String(rest[$0...]) } ?? ""
        while prefix.hasSuffix("/") { prefix.removeLast() }
        if hostPort.isEmpty { throw ConnectError.local(.invalidArgument, "URL \"\(url)\" has no host") }
        let host: String
        var port = 80
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
        return (.tcp(host: host, port: port), prefix)
    }

    /// A blocking unary call. Throws ConnectError (kind .rpc with the code for RPC failures).
    public func unary(_ procedure: String, request: [UInt8], headers: Metadata = Metadata(), timeoutMs: Int64? = nil) throws -> UnaryResponse {
        try RPCServer.validateProcedure(procedure)
        let timeout = timeoutMs ?? options.timeoutMs
        if timeout < 0 { throw ConnectError.local(.invalidArgument, "timeout must not be negative") }
        var h = HTTPHeaders()
        h.add("content-type", ConnectProtocol.contentType(codec: options.codec))
        h.add("connect-protocol-version", ConnectProtocol.protocolVersion)
        h.add("accept-encoding", "gzip")
        h.add("user-agent", ConnectProtocol.userAgent)
        if timeout > 0 { h.add("connect-timeout-ms", String(timeout)) }
        var body = request
        if options.compression == "gzip" && !request.isEmpty {
            body = try Gzip.compress(request)
            h.add("content-encoding", "gzip")
        }
        options.headers.write(to: &h)
        headers.write(to: &h)
        let promise = Promise<Result<HTTPResponse, HTTPError>>()
        let timeoutNs: UInt64? = timeout > 0 ? UInt64(timeout) &* 1_000_000 : nil
        transport.execute(method: "POST", path: pathPrefix + procedure, headers: h, body: body, timeoutNs: timeoutNs) { r in
            promise.fulfill(r)
        }
        guard let result = promise.wait() else { throw ConnectError(.internal, "the call finished without a result") }
        switch result {
        case .failure(let e):
            throw RPCClient.map(e)
        case .success(let resp):
            return try decode(resp)
        }
    }

    static func map(_ e: HTTPError) -> ConnectError {
        switch e.kind {
        case .timeout: return ConnectError(.deadlineExceeded, e.message)
        case .tooLarge: return ConnectError(.resourceExhausted, e.message)
        case .canceled: return ConnectError(.canceled, e.message)
        case .closed: return ConnectError(.canceled, e.message)
        case .protocolError: return ConnectError(.internal, e.message)
        case .invalidArgument: return ConnectError.local(.invalidArgument, e.message)
        case .io, .resource: return ConnectError(.unavailable, e.message)
        }
    }

    private func decode(_ resp: HTTPResponse) throws -> UnaryResponse {
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

    /// Closes the client's connections. Calls in progress fail with canceled.
    public func close() {
        transport.close()
    }
}
