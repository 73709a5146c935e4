// Interceptors: ordered chains of per-call hooks around every call of every shape (unary, client,
// server and bidi streaming), on servers (server-wide and per procedure) and on clients, for all
// three protocols. A hook sees the procedure, the method kind, the protocol, the peer (servers),
// the request headers and the deadline; its start may reject the call or add headers and
// trailers; its end sees the result. Message observation is opt-in per interceptor, so a chain of
// per-call hooks (the default, and the only cheap kind for Go and Python hosts) costs nothing per
// message.
import ConnectPluginHTTP
import Glibc

/// Which way a message travels.
public enum MessageDirection: Int32, Sendable {
    case request = 0
    case response = 1
}

/// The outcome of a call, as its end hooks see it.
public struct CallResult: Sendable {
    /// nil when the call succeeded.
    public var error: ConnectError?
    /// Server: the response headers sent (or to be sent). Client: the response headers received.
    public var responseHeaders: Metadata
    /// The response trailers (server: those of the handler and of the start hooks).
    public var trailers: Metadata

    public init(error: ConnectError?, responseHeaders: Metadata = Metadata(), trailers: Metadata = Metadata()) {
        self.error = error
        self.responseHeaders = responseHeaders
        self.trailers = trailers
    }

    public var code: Code { error?.code ?? .ok }
    public var message: String { error?.message ?? "" }
}

/// One interceptor. Start hooks run in registration order (server-wide ones first, then those of
/// the procedure) before the handler runs (servers) or before the request is sent (clients); end
/// hooks run in reverse order once the call's result is known, for every interceptor whose start
/// ran (the one that rejected included).
///
/// Threads: servers run start hooks on the handler thread, before the handler; end hooks on the
/// thread that ends the call (the handler's, or an I/O thread for deadlines and clients that went
/// away, in which case end runs as soon as the client is gone, while the handler may still run:
/// keep end hooks quick). Clients run start hooks on the calling thread and end hooks on the
/// thread that sees the end (the caller's; `cancel`'s; a stream's `receive`). Hooks of one call
/// never run concurrently with each other, but different calls run them concurrently.
public protocol Interceptor: Sendable {
    /// Throw a `ConnectError` to reject the call with its code and message (any other error
    /// rejects with `internal`). May add headers and trailers through `call`.
    func start(_ call: InterceptorCall) throws
    /// Sees the result. Servers may still add response trailers here (not headers).
    func end(_ call: InterceptorCall, result: CallResult)
    /// True to receive `message(_:direction:bytes:)` for every request and response message.
    /// Read once, when the interceptor is added.
    var observesMessages: Bool { get }
    /// Every message of the call (serialized, uncompressed), when `observesMessages` is true.
    func message(_ call: InterceptorCall, direction: MessageDirection, bytes: [UInt8])
}

extension Interceptor {
    public func start(_ call: InterceptorCall) throws {}
    public func end(_ call: InterceptorCall, result: CallResult) {}
    public var observesMessages: Bool { false }
    public func message(_ call: InterceptorCall, direction: MessageDirection, bytes: [UInt8]) {}
}

/// An interceptor made of closures.
public struct ClosureInterceptor: Interceptor {
    let onStart: (@Sendable (InterceptorCall) throws -> Void)?
    let onEnd: (@Sendable (InterceptorCall, CallResult) -> Void)?
    let onMessage: (@Sendable (InterceptorCall, MessageDirection, [UInt8]) -> Void)?

    public init(start: (@Sendable (InterceptorCall) throws -> Void)? = nil,
                end: (@Sendable (InterceptorCall, CallResult) -> Void)? = nil,
                message: (@Sendable (InterceptorCall, MessageDirection, [UInt8]) -> Void)? = nil) {
        onStart = start
        onEnd = end
        onMessage = message
    }

    public func start(_ call: InterceptorCall) throws { try onStart?(call) }
    public func end(_ call: InterceptorCall, result: CallResult) { onEnd?(call, result) }
    public var observesMessages: Bool { onMessage != nil }
    public func message(_ call: InterceptorCall, direction: MessageDirection, bytes: [UInt8]) { onMessage?(call, direction, bytes) }
}

/// One call as its interceptors see it. Valid for as long as anyone holds it; the mutating
/// functions work only while the hooks they name run (afterwards they are `.state` errors).
public final class InterceptorCall: @unchecked Sendable {
    public enum Side: Sendable { case server, client }

    public let side: Side
    /// "/package.Service/Method".
    public let procedure: String
    public let kind: MethodKind
    public let rpcProtocol: RPCProtocol
    /// "proto" or "json".
    public let codec: String
    /// Servers: the TLS client certificate's identity (mTLS), if any. Clients: nil.
    public let peer: HTTPPeerInfo?
    /// Monotonic deadline in nanoseconds, if the call has a timeout.
    public let deadlineNs: UInt64?

    enum Phase { case start, handler, end, over }
    let lock = Lock()
    var phase = Phase.start
    private var _requestHeaders: Metadata
    /// Client: headers the start hooks added (sent after the call's own).
    var addedRequestHeaders = Metadata()
    /// Server: headers and trailers the hooks added, merged into the response by the runtime.
    var addedResponseHeaders = Metadata()
    var addedResponseTrailers = Metadata()
    private var values: [String: any Sendable] = [:]

    init(side: Side, procedure: String, kind: MethodKind, rpcProtocol: RPCProtocol, codec: String, peer: HTTPPeerInfo?,
         requestHeaders: Metadata, deadlineNs: UInt64?) {
        self.side = side
        self.procedure = procedure
        self.kind = kind
        self.rpcProtocol = rpcProtocol
        self.codec = codec
        self.peer = peer
        self._requestHeaders = requestHeaders
        self.deadlineNs = deadlineNs
    }

    /// The request headers: servers, as received; clients, the client's and the call's headers
    /// plus those start hooks added so far.
    public var requestHeaders: Metadata { lock.withLock { _requestHeaders } }

    /// Milliseconds until the deadline (0 once passed), or -1 without a deadline.
    public var timeoutRemainingMs: Int64 { remainingMs(deadlineNs) }

    /// Clients, in a start hook: adds a header to the request.
    public func addRequestHeader(_ key: String, _ value: [UInt8]) throws {
        try lock.withLock {
            guard side == .client else { throw ConnectError.local(.state, "request headers can only be added by client interceptors") }
            guard phase == .start else { throw ConnectError.local(.state, "request headers can only be added in a start hook") }
            var one = Metadata()
            try one.add(key, value)
            addedRequestHeaders.append(contentsOf: one)
            _requestHeaders.append(contentsOf: one)
        }
    }

    /// Servers, in a start hook: adds a response header (sent whatever the outcome, rejections
    /// included).
    public func addResponseHeader(_ key: String, _ value: [UInt8]) throws {
        try lock.withLock {
            guard side == .server else { throw ConnectError.local(.state, "response headers can only be added by server interceptors") }
            guard phase == .start else { throw ConnectError.local(.state, "response headers can only be added in a start hook; use a trailer") }
            try addedResponseHeaders.add(key, value)
        }
    }

    /// Servers, in a start or end hook: adds a response trailer.
    public func addResponseTrailer(_ key: String, _ value: [UInt8]) throws {
        try lock.withLock {
            guard side == .server else { throw ConnectError.local(.state, "response trailers can only be added by server interceptors") }
            guard phase == .start || phase == .end else {
                throw ConnectError.local(.state, "response trailers can only be added in a start or end hook")
            }
            try addedResponseTrailers.add(key, value)
        }
    }

    /// Per-call values, for passing state from an interceptor's start to its end.
    public func setValue(_ value: (any Sendable)?, forKey key: String) {
        lock.withLock { values[key] = value }
    }

    public func value(forKey key: String) -> (any Sendable)? { lock.withLock { values[key] } }

    func setPhase(_ p: Phase) { lock.withLock { phase = p } }

    func takeAddedResponseHeaders() -> Metadata {
        lock.withLock {
            let h = addedResponseHeaders
            addedResponseHeaders = Metadata()
            return h
        }
    }

    func takeAddedResponseTrailers() -> Metadata {
        lock.withLock {
            let t = addedResponseTrailers
            addedResponseTrailers = Metadata()
            return t
        }
    }
}

/// An ordered chain, fixed when a server starts or a client is made.
public struct InterceptorChain: Sendable {
    public let interceptors: [any Interceptor]
    /// Indices of the interceptors that observe messages.
    let observers: [Int]

    public init(_ interceptors: [any Interceptor]) {
        self.interceptors = interceptors
        var obs: [Int] = []
        for (i, ic) in interceptors.enumerated() where ic.observesMessages { obs.append(i) }
        observers = obs
    }

    public var isEmpty: Bool { interceptors.isEmpty }
    var observesMessages: Bool { !observers.isEmpty }
}

/// One call's run through a chain: start hooks, message observers, end hooks exactly once.
final class InterceptorRun: @unchecked Sendable {
    let chain: InterceptorChain
    let call: InterceptorCall
    private let lock = Lock()
    /// Held while message and end hooks run, so that the hooks of one call never run concurrently
    /// (the header promises it) even when one thread sends while another receives, or a cancel or
    /// a vanished peer ends the call while a message hook runs. Recursive: a hook that ends its own
    /// call (a host closure cancelling its stream) runs the end hooks on the same thread.
    private let hookLock = RecursiveLock()
    /// How many start hooks ran (their end hooks run).
    private var startedCount = 0
    private var starting = true
    private var ended = false
    /// The call ended while its start hooks were still running: their end runs after them.
    private var deferredResult: CallResult?

    init(chain: InterceptorChain, call: InterceptorCall) {
        self.chain = chain
        self.call = call
    }

    var observesMessages: Bool { chain.observesMessages }

    /// Runs the start hooks in order; returns the rejection of the first that threw.
    func start() -> ConnectError? {
        var rejection: ConnectError?
        var ran = 0
        for ic in chain.interceptors {
            ran += 1
            do {
                try ic.start(call)
            } catch let e as ConnectError {
                let code: Code = e.kind == .rpc ? (e.code == .ok ? .unknown : e.code) : .internal
                rejection = ConnectError(code, e.message, details: e.details)
                break
            } catch {
                rejection = ConnectError(.internal, "interceptor: \(error)")
                break
            }
        }
        call.setPhase(.handler)
        let pending: CallResult? = lock.withLock {
            startedCount = ran
            starting = false
            if let r = deferredResult {
                ended = true
                deferredResult = nil
                return r
            }
            return nil
        }
        if let r = pending { runEnd(r) }
        return rejection
    }

    /// Every message of the call (only when an interceptor observes messages).
    func message(_ direction: MessageDirection, _ bytes: [UInt8]) {
        hookLock.lock()
        defer { hookLock.unlock() }
        if lock.withLock({ ended }) { return }  // the client went away: the call is over
        for i in chain.observers where i < chain.interceptors.count {
            chain.interceptors[i].message(call, direction: direction, bytes: bytes)
        }
    }

    /// The call's result; the end hooks run once (now, or after start hooks still running).
    /// Returns false when they were deferred or already ran.
    @discardableResult
    func end(_ result: CallResult) -> Bool {
        let now: Bool = lock.withLock {
            if ended || deferredResult != nil { return false }
            if starting {
                deferredResult = result
                return false
            }
            ended = true
            return true
        }
        if now { runEnd(result) }
        return now
    }

    private func runEnd(_ result: CallResult) {
        hookLock.lock()
        defer { hookLock.unlock() }
        call.setPhase(.end)
        let n = lock.withLock { startedCount }
        var i = min(n, chain.interceptors.count)
        while i > 0 {
            i -= 1
            chain.interceptors[i].end(call, result: result)
        }
        call.setPhase(.over)
    }
}

/// A recursive pthread mutex (InterceptorRun's hook lock).
final class RecursiveLock: @unchecked Sendable {
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>

    init() {
        mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
        var attr = pthread_mutexattr_t()
        pthread_mutexattr_init(&attr)
        pthread_mutexattr_settype(&attr, Int32(PTHREAD_MUTEX_RECURSIVE))
        pthread_mutex_init(mutex, &attr)
        pthread_mutexattr_destroy(&attr)
    }

    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
    }

    func lock() { pthread_mutex_lock(mutex) }
    func unlock() { pthread_mutex_unlock(mutex) }
}
