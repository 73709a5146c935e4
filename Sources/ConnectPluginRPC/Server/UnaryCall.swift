// The unary shape of the one server call (ServerCall.swift) as a handler sees it: the one request
// message, metadata, deadline, and the ways to answer (the last and only message, or an error).
// The same view serves Connect unary (POST and GET), gRPC and gRPC-Web unary.
import ConnectPluginHTTP

/// A unary call in progress on the server. Handlers answer with `respond` or `fail`, once.
public final class UnaryCall: @unchecked Sendable {
    public let procedure: String
    /// "proto" or "json".
    public let codec: String
    /// "connect", "grpc" or "grpcweb".
    public let protocolName: String
    public let request: [UInt8]
    public let requestHeaders: Metadata
    /// Monotonic deadline in nanoseconds, if the client set a timeout.
    public let deadlineNs: UInt64?
    /// The TLS client certificate's identity (mTLS), if any.
    public let peer: HTTPPeerInfo?
    let core: ServerCallCore

    init(procedure: String, core: ServerCallCore, request: [UInt8], requestHeaders: Metadata, deadlineNs: UInt64?, peer: HTTPPeerInfo?) {
        self.procedure = procedure
        self.codec = core.codec
        self.protocolName = core.proto.rawValue
        self.core = core
        self.request = request
        self.requestHeaders = requestHeaders
        self.deadlineNs = deadlineNs
        self.peer = peer
    }

    /// Milliseconds until the deadline (0 once passed), or -1 without a deadline.
    public var timeoutRemainingMs: Int64 { remainingMs(deadlineNs) }

    /// True once the call can no longer be answered (answered, deadline passed, client gone).
    public var isDone: Bool { core.isOver }

    /// Runs `hook` once if the call ends before the handler answered it (client canceled or gone,
    /// deadline passed, server stopping): on an I/O loop thread, so it must be quick.
    public func onDone(_ hook: @escaping () -> Void) { core.onDone(hook) }

    public func addResponseHeader(_ key: String, _ value: [UInt8]) throws { try core.addResponseHeader(key, value) }
    public func addResponseTrailer(_ key: String, _ value: [UInt8]) throws { try core.addResponseTrailer(key, value) }
    public func addErrorDetail(_ detail: ErrorDetail) throws { try core.addErrorDetail(detail) }

    /// Sends the response message (serialized in `codec`): the call's last and only message.
    public func respond(_ message: [UInt8]) throws { try core.end(message: message, error: nil) }

    /// Fails the call with `code` and `message` (plus details added before).
    public func fail(_ code: Code, _ message: String) throws {
        try core.end(message: nil, error: ConnectError(code == .ok ? .unknown : code, message))
    }
}

extension UnaryCall: ServerCallShape {
    func invoke(_ route: Route) { route.unary?(self) }
    static var whenUnanswered: ConnectError? { ConnectError(.internal, "the handler returned without a response") }
    static var holdsThread: Bool { false }
}
