// Client configuration: the endpoint a client talks to (TCP, Unix socket, or a server in this
// process) and the client's options (HTTP version, response size limit, pool size, TLS).

public enum HTTPEndpoint: Sendable, Equatable {
    case tcp(host: String, port: Int)
    case unix(path: String)
    /// A server in this process that listens under this name (`HTTPServer.listenInProcess`),
    /// reached over an in-memory pipe.
    case inProcess(name: String)

    var authority: String {
        switch self {
        case .tcp(let h, let p): return h.contains(":") ? "[\(h)]:\(p)" : "\(h):\(p)"
        case .unix: return "localhost"
        case .inProcess(let name): return name
        }
    }

    var description: String {
        switch self {
        case .tcp: return authority
        case .unix(let p): return "unix:" + p
        case .inProcess(let name): return "inproc://" + name
        }
    }
}

public struct HTTPClientConfig: Sendable {
    public var version: HTTPVersion = .http2
    /// Largest whole response body accepted by `execute` (0 = no limit).
    public var maxResponseBodyBytes: Int = 0
    public var maxIdleHTTP1Connections = 16
    /// TLS (https): nil for plaintext.
    public var tls: TLSConfig? = nil
    public init() {}
}
