// The HTTP/2 client's caller-driven fast path (H2ClientConnection+CallerDriven.swift): sequential
// complete-body calls drive an idle connection on the caller's thread; another call arriving, a
// deadline, a large response (WINDOW_UPDATEs), a PING, GOAWAY and a server closing the connection
// while a caller owns it. Real sockets (Unix and TCP): the fast path is for sockets only.
import Glibc
import Testing
@testable import ConnectPluginHTTP

private final class FastHandler: HTTPServerHandler {
    let pool: ThreadPool
    init() throws { pool = try ThreadPool(threads: 2, maxThreads: 16) }

    func handle(_ stream: HTTPServerStream) {
        switch stream.request.path {
        case "/echo":
            stream.collectBody(limit: 0) { body, _ in
                _ = stream.respond(HTTPResponse(status: 200, headers: HTTPHeaders([("x-len", String(body.count))]), body: body,
                                                trailers: HTTPHeaders([("x-trailer", "done")])))
            }
        case "/slow":
            stream.collectBody(limit: 0) { [pool] body, _ in
                pool.submit {
                    usleep(1_500_000)
                    _ = stream.respond(HTTPResponse(status: 200, body: body))
                }
            }
        case "/big":
            stream.collectBody(limit: 0) { _, _ in
                _ = stream.respond(HTTPResponse(status: 200, body: pattern(3 << 20)))
            }
        default:
            _ = stream.respond(HTTPResponse(status: 404))
        }
    }
}

private func pattern(_ n: Int) -> [UInt8] { (0..<n).map { UInt8(truncatingIfNeeded: $0 &* 131 &+ 17) } }

private let counter = Box(0)
private func uniquePath(_ base: String) -> String {
    var n = 0
    counter.update { $0 += 1; n = $0 }
    return "/tmp/cp-fast-\(base)-\(getpid())-\(n).sock"
}

enum FastPathTransport: CaseIterable, CustomStringConvertible {
    case unix, tcp
    var description: String { self == .unix ? "unix" : "tcp" }
}

/// A real server and a client of it.
private func serverAndClient(_ t: FastPathTransport) throws -> (HTTPServer, HTTPClient) {
    let server = HTTPServer(config: HTTPServerConfig(), group: try EventLoopGroup.shared(), handler: try FastHandler())
    let endpoint: HTTPEndpoint
    switch t {
    case .unix:
        let path = uniquePath("srv")
        unlink(path)
        _ = try server.listenUnix(path: path)
        endpoint = .unix(path: path)
    case .tcp:
        let addr = try server.listenTCP(host: "127.0.0.1", port: 0)
        let port = Int(addr.split(separator: ":").last ?? "") ?? 0
        endpoint = .tcp(host: "127.0.0.1", port: port)
    }
    try server.start()
    return (server, try HTTPClient(endpoint: endpoint, config: HTTPClientConfig(), group: try EventLoopGroup.shared()))
}

private func call(_ c: HTTPClient, _ path: String = "/echo", _ body: [UInt8] = [1, 2, 3], timeoutNs: UInt64? = 20_000_000_000) -> Result<HTTPResponse, HTTPError> {
    c.roundTrip(method: "POST", path: path, headers: HTTPHeaders(), body: body, timeoutNs: timeoutNs)
}

/// Calls until one takes the fast path: the connection is then idle, and the caller that ends a
/// fast call leaves it so itself, so the next call takes the fast path too.
private func warmUp(_ client: HTTPClient) throws {
    for _ in 0..<50 {
        let r = call(client)
        guard case .success = r else {
            Issue.record("warm-up call failed: \(r)")
            throw HTTPError(.io, "warm-up failed")
        }
        if client.fastPathCalls > 0 { return }
    }
    Issue.record("no call took the fast path")
    throw HTTPError(.io, "warm-up failed")
}

/// Runs `body` on a thread of its own.
private func spawn(_ pool: ThreadPool, _ body: @escaping @Sendable () -> Void) { pool.submit(body) }

@Suite struct FastPathTests {
    @Test(arguments: FastPathTransport.allCases)
    func sequentialCallsDriveTheConnectionOnTheCallersThread(_ t: FastPathTransport) throws {
        let (server, client) = try serverAndClient(t)
        defer { client.close(); server.stop(graceNs: 0) }
        let n = 60
        for i in 0..<n {
            let body = pattern(i * 37)
            guard case .success(let r) = call(client, "/echo", body) else {
                Issue.record("call \(i) failed: \(call(client))")
                return
            }
            #expect(r.status == 200)
            #expect(r.body == body)
            #expect(r.headers.first("x-len") == String(body.count))
            #expect(r.trailers.first("x-trailer") == "done")
        }
        // The first call opens the connection on the loop; after it the caller drives (a call may
        // still find the loop inside the connection now and then and go the loop's way).
        #expect(client.fastPathCalls >= n / 2)
        // The loop paths keep working on the same connection, in between.
        let box = Box<Result<HTTPResponse, HTTPError>?>(nil)
        client.execute(method: "POST", path: "/echo", headers: HTTPHeaders(), body: [9], timeoutNs: 20_000_000_000) { r in box.update { $0 = r } }
        let done = box.wait { $0 != nil }
        guard case .success(let r)? = done else {
            Issue.record("execute failed")
            return
        }
        #expect(r.body == [9])
        let s = client.stream(method: "POST", path: "/echo", headers: HTTPHeaders(), timeoutNs: 20_000_000_000)
        #expect(s.write([4, 5]) == nil)
        s.closeSend()
        guard case .success(let (status, _)) = s.awaitHead() else {
            Issue.record("stream failed")
            return
        }
        #expect(status == 200)
        var got: [UInt8] = []
        loop: while true {
            switch s.read() {
            case .data(let d): got += d
            case .end: break loop
            case .failed(let e): Issue.record("stream failed: \(e)"); break loop
            }
        }
        #expect(got == [4, 5])
        if case .success(let r2) = call(client, "/echo", [7]) { #expect(r2.body == [7]) } else { Issue.record("call after the stream failed") }
    }

    @Test(arguments: FastPathTransport.allCases)
    func aCallArrivingWhileOneIsOwnedDoesNotWaitForIt(_ t: FastPathTransport) throws {
        let (server, client) = try serverAndClient(t)
        defer { client.close(); server.stop(graceNs: 0) }
        let pool = try ThreadPool(threads: 2, maxThreads: 4)
        try warmUp(client)
        try untilOwned {
        let before = client.fastPathCalls
        let slow = Box<Result<HTTPResponse, HTTPError>?>(nil)
        spawn(pool) {
            let r = call(client, "/slow", [1])
            slow.update { $0 = r }
        }
        // Wait until the slow call owns the connection (it took the fast path); if it went
        // through the loop instead (a loaded machine), let it finish and try again.
        let deadline = monotonicNowNs() + 10_000_000_000
        while client.fastPathCalls == before && slow.current == nil && monotonicNowNs() < deadline { usleep(1000) }
        if client.fastPathCalls == before {
            _ = slow.wait { $0 != nil }
            return false
        }
        let quick = call(client, "/echo", [2])
        guard case .success(let q) = quick else { Issue.record("the second call failed: \(quick)"); return true }
        #expect(q.body == [2])
        // The slow call (1.5 s on the server) is still running: the quick one did not wait for it.
        #expect(slow.current == nil)
        let r = slow.wait { $0 != nil }
        guard case .success(let s)? = r else { Issue.record("the slow call failed: \(String(describing: r))"); return true }
        #expect(s.body == [1])
        if case .success = call(client) {} else { Issue.record("a call after both failed") }
        return true
        }
    }

    @Test(arguments: FastPathTransport.allCases)
    func aDeadlineWhileOwnedFailsTheCallAndTheConnectionGoesOn(_ t: FastPathTransport) throws {
        let (server, client) = try serverAndClient(t)
        defer { client.close(); server.stop(graceNs: 0) }
        try warmUp(client)
        // A loaded machine can keep the loop inside the connection, and then the call takes the
        // loop path (by design): try until one call was driven by its caller.
        var owned = false
        for _ in 0..<20 where !owned {
            let before = client.fastPathCalls
            let r = call(client, "/slow", [1], timeoutNs: 200_000_000)
            owned = client.fastPathCalls == before + 1
            guard case .failure(let e) = r else { Issue.record("expected a timeout, got \(r)"); return }
            #expect(e.kind == .timeout)
            #expect(e.message.contains("deadline exceeded"))
        }
        #expect(owned, "no call took the fast path in 20 tries")
        guard case .success(let ok) = call(client, "/echo", [3]) else { Issue.record("the call after the timeout failed"); return }
        #expect(ok.body == [3])
    }

    @Test(arguments: FastPathTransport.allCases)
    func aLargeResponseOnAnOwnedConnectionOpensTheWindow(_ t: FastPathTransport) throws {
        let (server, client) = try serverAndClient(t)
        defer { client.close(); server.stop(graceNs: 0) }
        try warmUp(client)
        let before = client.fastPathCalls
        // 3 MiB: three times the stream window, so the owning caller must send WINDOW_UPDATEs.
        // (Until one call was owned: a loaded machine may send some through the loop.)
        for i in 0..<8 where i < 2 || client.fastPathCalls == before {
            guard case .success(let r) = call(client, "/big") else { Issue.record("the large call failed"); return }
            #expect(r.body.count == 3 << 20)
            #expect(r.body == pattern(3 << 20))
        }
        #expect(client.fastPathCalls >= before + 1)
        // And a large request body.
        guard case .success(let r) = call(client, "/echo", pattern(2 << 20)) else { Issue.record("the large request failed"); return }
        #expect(r.body == pattern(2 << 20))
    }

    // MARK: A hand-written server

    @Test func aServerClosingTheConnectionMidCallFailsTheCall() throws {
        try untilOwned {
            let raw = try RawH2Server()
            defer { raw.stop() }
            let client = try HTTPClient(endpoint: .unix(path: raw.path), config: HTTPClientConfig(), group: try EventLoopGroup.shared())
            defer { client.close() }
            try warmUp(client)
            let before = client.fastPathCalls
            raw.next.update { $0 = .close }
            let r = call(client)
            let owned = client.fastPathCalls == before + 1
            guard case .failure(let e) = r else { Issue.record("expected a failure, got \(r)"); return true }
            #expect(e.kind == .io)
            #expect(e.message.contains("closed"))
            // A new connection serves the next call.
            guard case .success(let again) = call(client) else { Issue.record("the call on a new connection failed"); return true }
            #expect(again.status == 200)
            #expect(raw.connections.current == 2)
            return owned
        }
    }

    @Test func goAwayWhileOwnedSendsTheUnprocessedCallAgainOnANewConnection() throws {
        try untilOwned {
            let raw = try RawH2Server()
            defer { raw.stop() }
            let client = try HTTPClient(endpoint: .unix(path: raw.path), config: HTTPClientConfig(), group: try EventLoopGroup.shared())
            defer { client.close() }
            try warmUp(client)
            let before = client.fastPathCalls
            raw.next.update { $0 = .goAway }
            let r = call(client)
            let owned = client.fastPathCalls == before + 1
            guard case .success(let ok) = r else { Issue.record("the call the server refused with GOAWAY failed: \(r)"); return true }
            #expect(ok.status == 200)
            #expect(raw.connections.current == 2)
            guard case .success = call(client) else { Issue.record("a later call failed"); return true }
            return owned
        }
    }

    @Test func aPingWhileOwnedIsAcknowledged() throws {
        try untilOwned {
            let raw = try RawH2Server()
            defer { raw.stop() }
            let client = try HTTPClient(endpoint: .unix(path: raw.path), config: HTTPClientConfig(), group: try EventLoopGroup.shared())
            defer { client.close() }
            try warmUp(client)
            let before = client.fastPathCalls
            raw.next.update { $0 = .pingThenAnswer }
            // The server answers only once its PING is acknowledged.
            let r = call(client, timeoutNs: 10_000_000_000)
            let owned = client.fastPathCalls == before + 1
            guard case .success(let ok) = r else { Issue.record("the call failed: \(r)"); return true }
            #expect(ok.status == 200)
            #expect(raw.pingAcks.current == 1)
            return owned
        }
    }
}

/// A minimal HTTP/2 server on a Unix socket (blocking, a thread per connection), for what a real
/// server does not do on demand: it answers 200 with no body, or — once, for the next request after
/// the test set `next` — closes the connection, sends GOAWAY naming the previous stream, or sends a
/// PING and answers once it is acknowledged.
private final class RawH2Server: @unchecked Sendable {
    enum Action { case answer, close, goAway, pingThenAnswer }
    let path = uniquePath("raw")
    let listenFD: Int32
    let next = Box(Action.answer)
    let connections = Box(0)
    let pingAcks = Box(0)
    private let fds = Box<[Int32]>([])
    private let pool: ThreadPool

    init() throws {
        unlink(path)
        listenFD = try Socket.listenUnix(path: path)
        _ = fcntl(listenFD, F_SETFL, fcntl(listenFD, F_GETFL) & ~O_NONBLOCK)
        pool = try ThreadPool(threads: 4, maxThreads: 8)
        pool.submit { [self] in acceptLoop() }
    }

    func stop() {
        _ = shutdown(listenFD, Int32(SHUT_RDWR))
        for fd in fds.current { _ = shutdown(fd, Int32(SHUT_RDWR)) }
        unlink(path)
    }

    private func acceptLoop() {
        while true {
            let fd = accept(listenFD, nil, nil)
            if fd < 0 { return }
            _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK)
            var index = 0
            connections.update { index = $0; $0 += 1 }
            fds.update { $0.append(fd) }
            pool.submit { [self] in serve(fd, index) }
        }
    }

    private func readFull(_ fd: Int32, _ n: Int) -> [UInt8]? {
        var out = [UInt8](repeating: 0, count: n)
        var got = 0
        while got < n {
            let r = out.withUnsafeMutableBytes { read(fd, $0.baseAddress! + got, n - got) }
            if r <= 0 { return nil }
            got += r
        }
        return out
    }

    private func frame(_ type: UInt8, _ flags: UInt8, _ stream: Int32, _ payload: [UInt8]) -> [UInt8] {
        let n = payload.count
        let s = UInt32(bitPattern: stream)
        return [UInt8(n >> 16 & 0xff), UInt8(n >> 8 & 0xff), UInt8(n & 0xff), type, flags,
                UInt8(s >> 24 & 0x7f), UInt8(s >> 16 & 0xff), UInt8(s >> 8 & 0xff), UInt8(s & 0xff)] + payload
    }

    private func send(_ fd: Int32, _ bytes: [UInt8]) {
        var off = 0
        while off < bytes.count {
            let r = bytes.withUnsafeBytes { write(fd, $0.baseAddress! + off, bytes.count - off) }
            if r <= 0 { return }
            off += r
        }
    }

    private func serve(_ fd: Int32, _: Int) {
        defer { _ = close(fd) }
        guard readFull(fd, 24) != nil else { return }
        send(fd, frame(4, 0, 0, []))
        var waitingPing: Int32?
        let answer: (Int32) -> Void = { sid in self.send(fd, self.frame(1, 0x5, sid, [0x88])) }  // :status 200, END_STREAM
        while true {
            guard let h = readFull(fd, 9) else { return }
            let len = Int(h[0]) << 16 | Int(h[1]) << 8 | Int(h[2])
            let type = h[3], flags = h[4]
            let sid = Int32(h[5] & 0x7f) << 24 | Int32(h[6]) << 16 | Int32(h[7]) << 8 | Int32(h[8])
            guard let payload = readFull(fd, len) else { return }
            switch type {
            case 4 where flags & 1 == 0:
                send(fd, frame(4, 1, 0, []))
            case 6 where flags & 1 != 0:
                pingAcks.update { $0 += 1 }
                if let s = waitingPing {
                    waitingPing = nil
                    answer(s)
                }
            case 6:
                send(fd, frame(6, 1, 0, payload))
            case 0, 1:
                if flags & 1 == 0 { continue }  // the request goes on (END_STREAM comes later)
                var action = Action.answer
                next.update {
                    action = $0
                    $0 = .answer
                }
                switch action {
                case .answer:
                    answer(sid)
                case .close:
                    return
                case .goAway:
                    let last = UInt32(max(0, sid - 2))
                    send(fd, frame(7, 0, 0, [UInt8(last >> 24), UInt8(last >> 16 & 0xff), UInt8(last >> 8 & 0xff), UInt8(last & 0xff), 0, 0, 0, 0]))
                case .pingThenAnswer:
                    waitingPing = sid
                    send(fd, frame(6, 0, 0, [1, 2, 3, 4, 5, 6, 7, 8]))
                }
            default:
                break
            }
        }
    }
}

/// Runs `scenario` (which returns whether its call was driven by the caller) until one run took
/// the fast path, at most `attempts` times: on a loaded machine the loop may still be inside the
/// connection and the call then takes the loop path, by design. The behaviour checked inside must
/// hold on both paths; the owned path must have been covered at least once.
func untilOwned(_ attempts: Int = 8, _ scenario: () throws -> Bool) rethrows {
    for _ in 0..<attempts {
        if try scenario() { return }
    }
    Issue.record("no run took the fast path in \(attempts) attempts")
}
