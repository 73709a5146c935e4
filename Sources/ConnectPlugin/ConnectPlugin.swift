// The Swift API of connectplugin: servers and clients speaking Connect, with the same behaviour as
// the C ABI (libconnectplugin.so) that C, Go and Python hosts use.
@_exported import ConnectPluginRPC
// The plugin runtime: `PluginServer.serve` for plugins, the handshake types for hosts.
@_exported import ConnectPluginRuntime
@_exported import enum ConnectPluginHTTP.HTTPVersion
// TLS for `Server.listenTCP(_:tls:)` and `Client.Options.tls`, and the mTLS identity of `peer`.
@_exported import struct ConnectPluginHTTP.TLSConfig
@_exported import struct ConnectPluginHTTP.HTTPPeerInfo
// Own event loops for `Server.Options.eventLoopGroup` and `Client.Options.eventLoopGroup` (nil: the
// process-wide `EventLoopGroup.shared()`): the group, its loops, and the error starting one throws.
@_exported import class ConnectPluginIO.EventLoopGroup
@_exported import class ConnectPluginIO.EventLoop
@_exported import struct ConnectPluginIO.IOError
import ConnectPluginHTTP
import Glibc

/// A Connect server: listen on TCP or Unix sockets, register handlers, start, stop.
public typealias Server = RPCServer
/// A Connect client for one base URL.
public typealias Client = RPCClient

/// The library version (CONNECTPLUGIN_VERSION of include/connectplugin.h).
public let connectPluginVersion = libraryVersion

// MARK: - Interceptors

extension RPCServer {
    /// Adds an interceptor made of closures, for every call (`procedure` nil) or for one procedure:
    /// `start` may throw a `ConnectError` to reject the call (e.g. `.unauthenticated`) before the
    /// handler runs, and may add response headers and trailers; `end` sees the result. Start hooks
    /// run in the order added (server-wide first), end hooks in reverse. Before `start()` only.
    /// The full protocol (with message observation) is `Interceptor`, added with `addInterceptor`.
    public func intercept(procedure: String? = nil,
                          start: (@Sendable (InterceptorCall) throws -> Void)? = nil,
                          end: (@Sendable (InterceptorCall, CallResult) -> Void)? = nil) throws {
        try addInterceptor(ClosureInterceptor(start: start, end: end), procedure: procedure)
    }
}

extension RPCClient.Options {
    /// Adds an interceptor made of closures around every call of the client: `start` runs before
    /// the request is sent and may add request headers or throw a `ConnectError` to fail the call
    /// without sending it; `end` sees the result.
    public mutating func intercept(start: (@Sendable (InterceptorCall) throws -> Void)? = nil,
                                   end: (@Sendable (InterceptorCall, CallResult) -> Void)? = nil) {
        interceptors.append(ClosureInterceptor(start: start, end: end))
    }
}

// MARK: - Server handlers that throw

extension RPCServer {
    /// Registers a handler that returns the response message or throws a `ConnectError`
    /// (any other error fails the call with `internal`). With `inline` the handler runs on the I/O
    /// loop thread, with no hand-off to the handler pool; it must not block (see
    /// `RPCServer.register(_:noSideEffects:inline:_:)`).
    public func handle(_ procedure: String, inline: Bool = false, _ body: @escaping (UnaryCall) throws -> [UInt8]) throws {
        try register(procedure, inline: inline) { call in
            do {
                let response = try body(call)
                try? call.respond(response)
            } catch let e as ConnectError {
                for d in e.details { try? call.addErrorDetail(d) }
                try? call.fail(e.kind == .rpc ? e.code : .internal, e.message)
            } catch {
                try? call.fail(.internal, "\(error)")
            }
        }
    }

    /// Registers a streaming handler (client, server or bidi streaming) that may throw.
    ///
    /// Returning ends the call OK (unless the handler already finished or failed it). Throwing a
    /// `ConnectError` of kind `.rpc` fails the call with its code, message and details (messages
    /// sent before stay sent: the status follows them); any other error, including the local
    /// errors of `send` after the client went away, fails it with `internal` (a no-op when the
    /// call is already over). Runs on a handler thread, like `register`.
    public func handleStream(_ procedure: String, kind: MethodKind, _ body: @escaping (StreamCall) throws -> Void) throws {
        try register(procedure, kind: kind) { call in
            do {
                try body(call)
            } catch {
                call.failReporting(error)
            }
        }
    }

    /// Registers an `async` streaming handler, e.g. one that reads with `for try await m in
    /// call.requests`. The body runs as a Swift task; the handler thread waits for it, so the
    /// server's stop (which waits for handlers) also waits for the task. Errors as in the
    /// synchronous `handleStream`. `send` still blocks the task's thread under back-pressure.
    public func handleStream(_ procedure: String, kind: MethodKind,
                             _ body: @escaping @Sendable (StreamCall) async throws -> Void) throws {
        try register(procedure, kind: kind) { call in
            let done = Promise<Result<Void, Error>>()
            Task {
                do {
                    try await body(call)
                    done.fulfill(.success(()))
                } catch {
                    done.fulfill(.failure(error))
                }
            }
            if case .failure(let error)? = done.wait() { call.failReporting(error) }
        }
    }
}

extension StreamCall {
    /// Fails the call with a thrown error: a `ConnectError` of kind `.rpc` with its code, message
    /// and details, anything else with `internal`. Ignored when the call is already over.
    func failReporting(_ error: Error) {
        if let e = error as? ConnectError {
            if e.kind == .rpc {
                for d in e.details { try? addErrorDetail(d) }
                try? fail(e.code, e.message)
            } else {
                try? fail(.internal, e.message)
            }
        } else {
            try? fail(.internal, "\(error)")
        }
    }
}

// MARK: - Reading a stream: synchronous loops and async sequences

extension StreamCall {
    /// The request messages as an `AsyncSequence`: `for try await message in call.requests`.
    /// Ends when the client half-closes; throws what `receive()` throws. Each `next()` runs the
    /// blocking `receive()` on a thread of its own (one per iteration, started on the first
    /// `next()`), so it never blocks a Swift concurrency thread. Task cancellation does not
    /// interrupt a pending `next()` (it completes when the client sends, half-closes or goes away,
    /// or the deadline passes).
    public var requests: MessageSequence { MessageSequence(receive: { try self.receive() }, cancel: nil) }

    /// Calls `body` for every request message until the client half-closes. Blocks.
    public func forEachRequest(_ body: ([UInt8]) throws -> Void) throws {
        while let m = try receive() { try body(m) }
    }

    /// Every request message until the client half-closes. Blocks.
    public func receiveAll() throws -> [[UInt8]] {
        var out: [[UInt8]] = []
        while let m = try receive() { out.append(m) }
        return out
    }
}

extension ClientStream {
    /// The response messages as an `AsyncSequence`: `for try await message in stream.responses`.
    /// Ends when the call ends OK; throws the call's error (after the messages that came before
    /// it). Each `next()` runs the blocking `receive()` on a thread of its own (one per iteration,
    /// started on the first `next()`), so it never blocks a Swift concurrency thread. Cancelling
    /// the task that waits in `next()` cancels the call (`next()` then throws `canceled`).
    /// Sending from another task while iterating is fine (full-duplex bidi over HTTP/2).
    public var responses: MessageSequence { MessageSequence(receive: { try self.receive() }, cancel: { self.cancel() }) }

    /// Calls `body` for every response message until the call ends; throws the call's error.
    /// Blocks. When `body` throws, the call is canceled and the error is rethrown.
    public func forEachResponse(_ body: ([UInt8]) throws -> Void) throws {
        while let m = try receive() {
            do {
                try body(m)
            } catch {
                cancelIfRunning()
                throw error
            }
        }
    }

    /// Every response message until the call ends OK; throws the call's error. Blocks.
    public func receiveAll() throws -> [[UInt8]] {
        var out: [[UInt8]] = []
        while let m = try receive() { out.append(m) }
        return out
    }
}

/// The messages of a stream (`ClientStream.responses`, `StreamCall.requests`) as an
/// `AsyncSequence` of serialized messages. Iterate it once: every iterator reads from the same
/// stream, so two iterators would split the messages between them.
public struct MessageSequence: AsyncSequence, @unchecked Sendable {
    public typealias Element = [UInt8]
    let receive: () throws -> [UInt8]?
    let cancel: (() -> Void)?

    public func makeAsyncIterator() -> Iterator { Iterator(pump: ReceivePump(receive: receive, cancel: cancel)) }

    public struct Iterator: AsyncIteratorProtocol {
        let pump: ReceivePump
        public mutating func next() async throws -> [UInt8]? { try await pump.next() }
    }
}

/// Runs a blocking `receive` on a dedicated thread and hands each result to the awaiting task.
/// The thread starts on the first `next()`, and exits when the stream ended or the iterator is
/// gone.
final class ReceivePump: @unchecked Sendable {
    private let receive: () throws -> [UInt8]?
    private let cancel: (() -> Void)?
    private let thread = JobThread()
    private let lock = Lock()
    private var ended = false

    init(receive: @escaping () throws -> [UInt8]?, cancel: (() -> Void)?) {
        self.receive = receive
        self.cancel = cancel
    }

    deinit { thread.close() }

    func next() async throws -> [UInt8]? {
        if lock.withLock({ ended }) { return nil }
        let receive = self.receive
        let thread = self.thread
        let cancel = self.cancel
        do {
            let m = try await withTaskCancellationHandler {
                try await withCheckedThrowingContinuation { (c: CheckedContinuation<[UInt8]?, Error>) in
                    thread.submit { c.resume(with: Result { try receive() }) }
                }
            } onCancel: {
                // Off this thread: the canceling thread must never wait for the stream.
                if let cancel { JobThread.detached(cancel) }
            }
            if m == nil { end() }
            return m
        } catch {
            end()
            throw error
        }
    }

    private func end() {
        lock.withLock { ended = true }
        thread.close()
    }
}

/// One detached thread running submitted jobs in order. It starts with the first job and exits
/// once closed and idle (a job submitted after that starts a new one).
final class JobThread: @unchecked Sendable {
    private let cond = ConditionLock()
    private var jobs: [() -> Void] = []
    private var closed = false
    private var running = false

    func submit(_ job: @escaping () -> Void) {
        cond.lock()
        jobs.append(job)
        let start = !running
        running = true
        cond.signal()
        cond.unlock()
        if start && !spawn() {
            // No thread to be had: run the job here (it blocks this thread, but it does run).
            cond.withLock { running = false }
            let pending: [() -> Void] = cond.withLock {
                let p = jobs
                jobs = []
                return p
            }
            for j in pending { j() }
        }
    }

    /// Runs `job` once on a thread of its own (on this thread if none can be started).
    static func detached(_ job: @escaping () -> Void) {
        let t = JobThread()
        t.submit(job)
        t.close()
    }

    func close() {
        cond.withLock {
            closed = true
            cond.broadcast()
        }
    }

    private func spawn() -> Bool {
        startThread(name: "cp-job") { [self] in run() }
    }

    private func run() {
        cond.lock()
        while true {
            if !jobs.isEmpty {
                let job = jobs.removeFirst()
                cond.unlock()
                job()
                cond.lock()
                continue
            }
            if closed {
                running = false
                cond.unlock()
                return
            }
            cond.wait()
        }
    }
}

// MARK: - Client conveniences

extension RPCClient {
    /// Server streaming: opens the call, sends `request` and half-closes. Read the responses with
    /// `receive()`, `forEachResponse`, `receiveAll()` or `for try await m in stream.responses`
    /// (the way to see the messages that came before an error).
    public func openServerStream(_ procedure: String, request: [UInt8], headers: Metadata = Metadata(),
                                 timeoutMs: Int64? = nil) throws -> ClientStream {
        let s = try stream(procedure, kind: .serverStream, headers: headers, timeoutMs: timeoutMs)
        do {
            try s.send(request)
        } catch {
            s.closeSend()
            // The server may have answered already: its status says more than the failed send.
            if let e = Self.statusAfterSendFailure(s) { throw e }
            s.cancelIfRunning()
            throw error
        }
        s.closeSend()
        return s
    }

    /// Server streaming: sends `request` and returns every response message once the call ended
    /// OK. Throws the call's error (the messages before it are dropped: use `openServerStream` to
    /// see them).
    public func serverStream(_ procedure: String, request: [UInt8], headers: Metadata = Metadata(),
                             timeoutMs: Int64? = nil) throws -> [[UInt8]] {
        try openServerStream(procedure, request: request, headers: headers, timeoutMs: timeoutMs).receiveAll()
    }

    /// Client streaming: sends every message of `messages` (none is fine), half-closes and returns
    /// the single response message. Throws the call's error; when the server ends the call while
    /// messages are still being sent, throws the server's status rather than the failed send.
    public func clientStream<S: Sequence>(_ procedure: String, messages: S, headers: Metadata = Metadata(),
                                          timeoutMs: Int64? = nil) throws -> [UInt8] where S.Element == [UInt8] {
        let s = try stream(procedure, kind: .clientStream, headers: headers, timeoutMs: timeoutMs)
        do {
            for m in messages { try s.send(m) }
        } catch {
            s.closeSend()
            if let e = Self.statusAfterSendFailure(s) { throw e }
            s.cancelIfRunning()
            throw error
        }
        return try s.closeAndReceive()
    }

    /// Bidi streaming, half-duplex: sends every message of `messages`, half-closes, then returns
    /// every response message once the call ended OK (works over HTTP/1.1 too).
    public func bidiStream<S: Sequence>(_ procedure: String, messages: S, headers: Metadata = Metadata(),
                                        timeoutMs: Int64? = nil) throws -> [[UInt8]] where S.Element == [UInt8] {
        let s = try stream(procedure, kind: .bidiStream, headers: headers, timeoutMs: timeoutMs)
        do {
            for m in messages { try s.send(m) }
        } catch {
            s.closeSend()
            if let e = Self.statusAfterSendFailure(s) { throw e }
            s.cancelIfRunning()
            throw error
        }
        s.closeSend()
        return try s.receiveAll()
    }

    /// After a failed send: the RPC error the server answered with, if its response is readable.
    private static func statusAfterSendFailure(_ s: ClientStream) -> ConnectError? {
        do {
            while try s.receive() != nil {}
            return nil
        } catch let e as ConnectError {
            return e.kind == .rpc ? e : nil
        } catch {
            return nil
        }
    }
}
