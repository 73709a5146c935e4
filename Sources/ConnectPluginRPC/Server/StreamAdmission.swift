// Admission of streaming handlers to the handler pool.
//
// A streaming handler holds a pool thread for the stream's whole life, and a stream may stay open
// and idle for as long as the client likes (a Watch). Without a bound, a few connections full of
// idle streams hold every thread the pool may start, and every other call — unary calls, other
// peers — waits behind them until they close. grpc-go does not have this problem in the same form:
// it runs each stream on its own goroutine (cheap, no shared pool) and bounds streams per connection
// only with HTTP/2 MAX_CONCURRENT_STREAMS (unlimited by default), which the client honours by
// queueing. Our handlers run on OS threads with a blocking API, so threads are the scarce resource
// and we bound who may hold them:
//
// - per connection (`maxStreamsPerConnection`, default 128; HTTP/2 also caps a connection at 256
//   concurrent requests of any kind),
// - per peer (`maxStreamsPerPeer`, default 512): a remote address (a global IPv6 one by its /64),
//   over all its connections, so opening more connections does not buy more threads; a Unix socket
//   connection is its own peer,
// - in total (`maxStreams`, default 768, at most `maxHandlerThreads` − 1): the rest of the pool
//   (256 threads by default) is kept for unary calls, so unary calls never wait behind streams.
//
// A stream over a limit is refused at once with RESOURCE_EXHAUSTED (the client may retry later)
// rather than queued: a queued stream would hold its request and wait behind streams that may never
// end. Unary calls are not admitted here: they are short by nature, wait in the pool's queue when
// every thread is busy, and always have the reserved threads.
import ConnectPluginHTTP

final class StreamAdmission: @unchecked Sendable {
    let perConnection: Int
    let perPeer: Int
    let total: Int
    private let lock = Lock()
    private var byConnection: [UInt64: Int] = [:]
    private var byPeer: [String: Int] = [:]
    private var running = 0

    /// A held admission; give it back with `release` when the handler returned.
    struct Ticket {
        let connection: UInt64?
        let peer: String?
    }

    init(perConnection: Int, perPeer: Int, total: Int) {
        self.perConnection = max(1, perConnection)
        self.perPeer = max(1, perPeer)
        self.total = max(1, total)
    }

    /// The peer a connection counts against: its remote host, or the connection itself (Unix sockets).
    static func peerKey(_ c: HTTPConnectionInfo) -> String { c.remoteHost ?? "connection \(c.id)" }

    /// Admits one more stream on `connection`, or says which limit refused it.
    func acquire(_ connection: HTTPConnectionInfo?) -> Result<Ticket, ConnectError> {
        lock.lock()
        defer { lock.unlock() }
        if running >= total {
            return .failure(ConnectError(.resourceExhausted, "the server is running its maximum of \(total) streams; retry later (the server's total stream limit: maxStreams, connectplugin_server_options_set_stream_limits)"))
        }
        guard let c = connection else {
            running += 1
            return .success(Ticket(connection: nil, peer: nil))
        }
        let onConnection = byConnection[c.id] ?? 0
        if onConnection >= perConnection {
            return .failure(ConnectError(.resourceExhausted, "this connection already has \(perConnection) streams open; close some or open them on another connection (the server's per-connection stream limit: maxStreamsPerConnection, connectplugin_server_options_set_stream_limits)"))
        }
        let key = StreamAdmission.peerKey(c)
        let fromPeer = byPeer[key] ?? 0
        if fromPeer >= perPeer {
            return .failure(ConnectError(.resourceExhausted, "this client's host already has \(perPeer) streams open over all its connections; close some and retry (the server's per-peer stream limit: maxStreamsPerPeer, connectplugin_server_options_set_stream_limits)"))
        }
        running += 1
        byConnection[c.id] = onConnection + 1
        byPeer[key] = fromPeer + 1
        return .success(Ticket(connection: c.id, peer: key))
    }

    func release(_ t: Ticket) {
        lock.lock()
        defer { lock.unlock() }
        running -= 1
        if let id = t.connection {
            let n = (byConnection[id] ?? 1) - 1
            byConnection[id] = n > 0 ? n : nil
        }
        if let key = t.peer {
            let n = (byPeer[key] ?? 1) - 1
            byPeer[key] = n > 0 ? n : nil
        }
    }

    /// Streams admitted and not yet returned (for tests).
    var runningCount: Int { lock.withLock { running } }
}
