// A Swift user passes its own event loops (`Server.Options.eventLoopGroup`, `Client.Options.
// eventLoopGroup`) with nothing but `import ConnectPlugin`: EventLoopGroup, EventLoop and the error
// its initializer throws are re-exported. This file must not import the inner modules.
import ConnectPlugin
import Glibc
import Testing

private final class Flag: @unchecked Sendable {
    private var value: [Bool] = []
    private let guardLock = FileMutex()
    func add(_ v: Bool) { guardLock.run { value.append(v) } }
    var all: [Bool] { guardLock.run { value } }
}

/// A tiny mutex for this file (it does not import the I/O core's Lock).
private final class FileMutex: @unchecked Sendable {
    private var m = pthread_mutex_t()
    init() { pthread_mutex_init(&m, nil) }
    deinit { pthread_mutex_destroy(&m) }
    func run<T>(_ body: () -> T) -> T {
        pthread_mutex_lock(&m)
        defer { pthread_mutex_unlock(&m) }
        return body()
    }
}

@Suite struct EventLoopGroupOptionTests {
    @Test func ownLoopsForServerAndClientWithOnlyImportConnectPlugin() throws {
        let group: EventLoopGroup
        do {
            group = try EventLoopGroup(count: 1)
        } catch let e as IOError {
            Issue.record("cannot start an event loop: \(e)")
            return
        }
        let loop: EventLoop = group.next()
        #expect(group.loops.count == 1)
        let onOurLoop = Flag()
        var so = Server.Options()
        so.eventLoopGroup = group
        let server = try Server(options: so)
        defer { server.stop(graceMs: 1000) }
        // Inline: runs on the I/O thread of the connection, which must be our group's only loop.
        try server.handle("/test.v1.Loops/Echo", inline: true) { call in
            onOurLoop.add(loop.inEventLoop)
            return call.request
        }
        let addr = try server.listenTCP("127.0.0.1:0")
        try server.start()
        var co = Client.Options()
        co.eventLoopGroup = group
        let client = try Client(baseURL: "http://" + addr, options: co)
        defer { client.close() }
        #expect(try client.unary("/test.v1.Loops/Echo", request: [4, 2]).message == [4, 2])
        #expect(onOurLoop.all == [true], "the handler ran on our loop: \(onOurLoop.all)")
    }
}
