// The RPC client: a base URL, a transport (`ClientTransport`: the seam where discovery and balancing
// come; today one endpoint over TCP, Unix, TLS or in-process `inproc://NAME`, on the event loops of
// `Options.eventLoopGroup` or the shared ones), the protocol (a `ProtocolClient`: Connect, gRPC or
// gRPC-Web over HTTP/1.1 or HTTP/2), and blocking calls that wait on the caller's thread. Every call
// — unary or streaming — is a `ClientStream` (ClientStream.swift); a unary call is its one-message
// case, started with the whole request body.
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
        /// TLS for https:// URLs (nil = system trust store, ALPN by `httpVersion`), and for unix://
        /// URLs when set (give `serverName`: a Unix socket has no host name to verify).
        public var tls: TLSConfig? = nil
        /// Interceptors around every call (unary and streaming): start hooks in this order before
        /// the request is sent, end hooks in reverse once the result is known.
        public var interceptors: [any Interceptor] = []
        /// The event loops that run the connections (nil = `EventLoopGroup.shared()`, the
        /// process-wide loops, one per core).
        public var eventLoopGroup: EventLoopGroup? = nil
        /// Rewrites the error of a call that failed in the transport (connection lost, refused,
        /// reset), on the caller's thread: a plugin host names the plugin and its exit status.
        public var transportErrorMapper: (@Sendable (ConnectError) -> ConnectError)? = nil
        public init() {}
    }

    public let baseURL: String
    public let options: Options
    let pathPrefix: String
    /// Where the calls go.
    public let transport: any ClientTransport
    let chain: InterceptorChain
    /// The protocol's request heads, framing and response decoding.
    let protocolClient: any ProtocolClient

    public init(baseURL: String, options: Options = Options()) throws {
        protocolClient = try RPCClient.check(options)
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
        // A Unix socket speaks TLS when the options give a TLS config (a plugin with AutoMTLS).
        if case .unix = endpoint, let t = options.tls { cfg.tls = t }
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
        protocolClient = try RPCClient.check(options)
        if !pathPrefix.isEmpty && (!pathPrefix.hasPrefix("/") || pathPrefix.hasSuffix("/")) {
            throw ConnectError.local(.invalidArgument, "path prefix \"\(pathPrefix)\" must start with / and not end with one (e.g. /api)")
        }
        self.baseURL = baseURL
        self.options = options
        self.pathPrefix = pathPrefix
        self.transport = transport
        self.chain = InterceptorChain(options.interceptors)
    }

    /// Checks the options every client needs; returns the protocol client they name.
    static func check(_ options: Options) throws -> any ProtocolClient {
        guard ConnectProtocol.supportedCodecs.contains(options.codec) else {
            throw ConnectError.local(.unsupported, "codec \"\(options.codec)\" is not supported; use proto or json")
        }
        guard options.compression == "identity" || options.compression == "gzip" else {
            throw ConnectError.local(.unsupported, "compression \"\(options.compression)\" is not supported; use identity or gzip")
        }
        if options.timeoutMs < 0 { throw ConnectError.local(.invalidArgument, "timeout must not be negative") }
        return try ProtocolClients.make(options)
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

    /// A unary call past the interceptors: the one-message case of a call, started with the whole
    /// request (a Connect GET carries it in the URL).
    func unaryDirect(_ procedure: String, request: [UInt8], headers: Metadata, timeoutMs timeout: Int64, noSideEffects: Bool) throws -> UnaryResponse {
        let (head, bodyInURL) = try protocolClient.requestHead(path: pathPrefix + procedure, kind: .unary, headers: headers, timeoutMs: timeout,
                                                              unaryMessage: request, noSideEffects: noSideEffects)
        var body: [UInt8] = []
        if !bodyInURL { try protocolClient.frameRequest(request, kind: .unary, into: &body) }
        let call = ClientStream(client: self, kind: .unary, head: head, body: body, endStream: true,
                                timeoutNs: timeout > 0 ? msToNs(timeout) : nil, shared: false)
        return try call.unaryResponse()
    }

    /// `map`, then the options' `transportErrorMapper`.
    func mapTransport(_ e: HTTPError) -> ConnectError {
        let c = RPCClient.map(e)
        return options.transportErrorMapper?(c) ?? c
    }

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

    /// Opens a call as a stream (any kind; a unary method too, cancellable from another thread:
    /// its exchange starts with the one message, on `send` or on `closeSend` without one).
    public func stream(_ procedure: String, kind: MethodKind, headers callHeaders: Metadata = Metadata(), timeoutMs: Int64? = nil) throws -> ClientStream {
        try RPCServer.validateProcedure(procedure)
        let timeout = timeoutMs ?? options.timeoutMs
        if timeout < 0 { throw ConnectError.local(.invalidArgument, "timeout must not be negative") }
        var headers = callHeaders
        let run = chain.isEmpty ? nil : try ClientInterceptors.startStream(self, procedure, kind: kind, headers: &headers, timeoutMs: timeout)
        let (head, _) = try protocolClient.requestHead(path: pathPrefix + procedure, kind: kind, headers: headers, timeoutMs: timeout,
                                                       unaryMessage: nil, noSideEffects: false)
        let timeoutNs: UInt64? = timeout > 0 ? msToNs(timeout) : nil
        let stream: ClientStream
        if kind == .unary {
            var deadline: UInt64?
            if let t = timeoutNs {
                let sum = monotonicNowNs().addingReportingOverflow(t)
                deadline = sum.overflow ? UInt64.max : sum.partialValue
            }
            stream = ClientStream(client: self, kind: kind, deferredHead: head, deadlineNs: deadline)
        } else {
            stream = ClientStream(client: self, kind: kind, head: head, body: [], endStream: false, timeoutNs: timeoutNs)
        }
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
