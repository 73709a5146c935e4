// A closed SocketConnection lets go of its delegate, so the pair is freed even though the delegate
// holds the connection strongly (as every protocol handler does). Issue 7 item 8.1: a lingering close
// used to keep the delegate for ever, leaking the connection and its 64 KiB read buffer.
import Glibc
import Testing
@testable import ConnectPluginHTTP

/// A delegate that owns its connection, like HTTP1ServerConnection: a reference cycle while open.
private final class OwningDelegate: ConnectionDelegate {
    var socket: SocketConnection?
    let onBytes: (SocketConnection) -> Void
    let closed = Promise<Bool>()
    init(onBytes: @escaping (SocketConnection) -> Void) { self.onBytes = onBytes }
    func connectionReceived(_ bytes: UnsafeRawBufferPointer) {
        if let s = socket { onBytes(s) }
    }
    func connectionClosed(_ error: HTTPError?) { closed.fulfill(true) }
    func connectionDrained() {}
}

/// Weak references, read on the loop thread.
private final class Watch: @unchecked Sendable {
    weak var socket: SocketConnection?
    weak var delegate: OwningDelegate?
}

private func socketPair() throws -> (Int32, Int32) {
    var fds: [Int32] = [0, 0]
    guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &fds) == 0 else {
        throw HTTPError(.io, "socketpair failed: errno \(errno)")
    }
    _ = fcntl(fds[0], F_SETFL, fcntl(fds[0], F_GETFL) | O_NONBLOCK)
    return (fds[0], fds[1])
}

/// Starts a connection on `loop` over one end of a socket pair, with a delegate that owns it; the
/// delegate and the connection are referenced only weakly from here. Returns the peer's end and the
/// delegate's "closed" promise.
private func startOwned(_ loop: EventLoop, _ watch: Watch,
                        onBytes: @escaping (SocketConnection) -> Void) throws -> (Int32, Promise<Bool>) {
    let (ours, peer) = try socketPair()
    let started = Promise<Promise<Bool>>()
    loop.execute {
        let conn = SocketConnection(fd: ours, loop: loop)
        let d = OwningDelegate(onBytes: onBytes)
        d.socket = conn
        watch.socket = conn
        watch.delegate = d
        conn.start(delegate: d)
        started.fulfill(d.closed)
    }
    guard let closed = started.wait() else { throw HTTPError(.io, "not started") }
    return (peer, closed)
}

/// True when both the connection and the delegate were freed (checked on the loop, after the event
/// that closed them returned).
private func bothFreed(_ loop: EventLoop, _ watch: Watch) -> Bool {
    let p = Promise<Bool>()
    loop.execute { p.fulfill(watch.socket == nil && watch.delegate == nil) }
    return p.wait() ?? false
}

private func readToEOF(_ fd: Int32) -> [UInt8] {
    var out: [UInt8] = []
    var buf = [UInt8](repeating: 0, count: 4096)
    while true {
        let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if n <= 0 { return out }
        out.append(contentsOf: buf[0..<n])
    }
}

@Suite struct ConnectionLifetimeTests {
    @Test func lingeringCloseFreesTheConnectionAndItsDelegate() throws {
        let loop = try EventLoopGroup.shared().next()
        let watch = Watch()
        // Answer, then linger (what the HTTP/1.1 server does for a request it rejects).
        let (peer, closed) = try startOwned(loop, watch) { conn in
            conn.write(Array("answer".utf8))
            conn.lingerClose()
        }
        defer { close(peer) }
        let req = Array("bad request".utf8)
        #expect(req.withUnsafeBytes { write(peer, $0.baseAddress, $0.count) } == req.count)
        // The connection shuts down its side after the answer: we see EOF, then close ours.
        #expect(readToEOF(peer) == Array("answer".utf8))
        shutdown(peer, Int32(SHUT_WR))
        #expect(closed.wait() == true)
        #expect(bothFreed(loop, watch), "a connection closed after lingerClose is still alive (it keeps its delegate)")
    }

    @Test func closeNowFreesTheConnectionAndItsDelegate() throws {
        let loop = try EventLoopGroup.shared().next()
        let watch = Watch()
        let (peer, closed) = try startOwned(loop, watch) { conn in conn.closeNow(nil) }
        defer { close(peer) }
        #expect(write(peer, "x", 1) == 1)
        #expect(closed.wait() == true)
        #expect(readToEOF(peer).isEmpty)
        #expect(bothFreed(loop, watch), "a connection closed with closeNow is still alive")
    }

    @Test func peerCloseFreesTheConnectionAndItsDelegate() throws {
        let loop = try EventLoopGroup.shared().next()
        let watch = Watch()
        let (peer, closed) = try startOwned(loop, watch) { _ in }
        close(peer)
        #expect(closed.wait() == true)
        #expect(bothFreed(loop, watch), "a connection the peer closed is still alive")
    }
}
