// The HTTP layer over in-memory pipes, with no socket: an HTTPServer listening in-process and an
// HTTPClient of `HTTPEndpoint.inProcess`, over HTTP/2 (session, multiplexing, flow control, trailers,
// streaming both ways) and HTTP/1.1; name registration, backlog before start, and stop.
import Glibc
import Testing
@testable import ConnectPluginHTTP

/// Echo handlers: "/echo" answers the whole body with trailers; "/stream" streams every request
/// piece back, on a pool thread (read and write block).
private final class EchoHandler: HTTPServerHandler {
    let pool: ThreadPool
    init() throws { pool = try ThreadPool(threads: 2, maxThreads: 64) }

    func handle(_ stream: HTTPServerStream) {
        switch stream.request.path {
        case "/echo":
            stream.collectBody(limit: 0) { body, _ in
                var h = HTTPHeaders()
                h.add("content-type", "application/octet-stream")
                h.add("x-method", stream.request.method)
                var t = HTTPHeaders()
                t.add("x-trailer", "done")
                _ = stream.respond(HTTPResponse(status: 200, headers: h, body: body, trailers: t))
            }
        case "/stream":
            stream.startReading()
            pool.submit {
                _ = stream.sendHead(status: 200, headers: HTTPHeaders([("content-type", "application/octet-stream")]))
                loop: while true {
                    switch stream.read() {
                    case .data(let d): if stream.write(d) != nil { break loop }
                    case .end: break loop
                    case .failed: return
                    }
                }
                _ = stream.finish(trailers: HTTPHeaders([("x-trailer", "streamed")]))
            }
        default:
            _ = stream.respond(HTTPResponse(status: 404))
        }
    }
}

private var nameCounter = Box(0)

/// A fresh in-process name per test (tests run in parallel).
private func uniqueName(_ base: String) -> String {
    var n = 0
    nameCounter.update { $0 += 1; n = $0 }
    return "\(base)-\(getpid())-\(n)"
}

private func bytes(_ n: Int) -> [UInt8] { (0..<n).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) } }

/// Runs one whole-body request and waits for the result.
private func execute(_ client: HTTPClient, path: String = "/echo", body: [UInt8]) -> Result<HTTPResponse, HTTPError>? {
    let box = Box<Result<HTTPResponse, HTTPError>?>(nil)
    client.execute(method: "POST", path: path, headers: HTTPHeaders(), body: body, timeoutNs: 20_000_000_000) { r in
        box.update { $0 = r }
    }
    return box.wait { $0 != nil }
}

private func startServer(_ name: String, start: Bool = true) throws -> (HTTPServer, EchoHandler) {
    let handler = try EchoHandler()
    let server = HTTPServer(config: HTTPServerConfig(), group: try EventLoopGroup.shared(), handler: handler)
    #expect(try server.listenInProcess(name: name) == "inproc://" + name)
    if start { try server.start() }
    return (server, handler)
}

private func client(_ name: String, _ version: HTTPVersion = .http2) throws -> HTTPClient {
    var cfg = HTTPClientConfig()
    cfg.version = version
    return try HTTPClient(endpoint: .inProcess(name: name), config: cfg, group: try EventLoopGroup.shared())
}

@Suite struct InProcessHTTPTests {
    @Test(arguments: [HTTPVersion.http2, .http1_1])
    func wholeBodyRequestsRoundTrip(_ version: HTTPVersion) throws {
        let name = uniqueName("http-echo")
        let (server, handler) = try startServer(name)
        defer { server.stop(graceNs: 0); handler.pool.shutdown() }
        #expect(server.addresses.contains("inproc://" + name))
        let c = try client(name, version)
        defer { c.close() }
        // Larger than the pipe's buffer and HTTP/2's initial window: flow control on both levels.
        let body = bytes(1 << 20)
        guard case .success(let resp)? = execute(c, body: body) else {
            Issue.record("request failed: \(String(describing: execute(c, body: [])))")
            return
        }
        #expect(resp.status == 200)
        #expect(resp.headers.first("x-method") == "POST")
        #expect(resp.body == body)
        if version == .http2 { #expect(resp.trailers.first("x-trailer") == "done") }
        guard case .success(let notFound)? = execute(c, path: "/missing", body: []) else {
            Issue.record("second request on the connection failed")
            return
        }
        #expect(notFound.status == 404)
    }

    @Test func http2MultiplexesConcurrentRequests() throws {
        let name = uniqueName("http-mux")
        let (server, handler) = try startServer(name)
        defer { server.stop(graceNs: 0); handler.pool.shutdown() }
        let c = try client(name)
        defer { c.close() }
        let results = Box<[Int: [UInt8]]>([:])
        for i in 0..<32 {
            let body = Array(repeating: UInt8(i), count: 1000 + i * 3000)
            c.execute(method: "POST", path: "/echo", headers: HTTPHeaders(), body: body, timeoutNs: 20_000_000_000) { r in
                results.update { $0[i] = (try? r.get())?.body ?? [] }
            }
        }
        let got = results.wait { $0.count == 32 }
        #expect(got.count == 32)
        for (i, b) in got { #expect(b == Array(repeating: UInt8(i), count: 1000 + i * 3000)) }
    }

    @Test func http2StreamsBothWays() throws {
        let name = uniqueName("http-stream")
        let (server, handler) = try startServer(name)
        defer { server.stop(graceNs: 0); handler.pool.shutdown() }
        let c = try client(name)
        defer { c.close() }
        let call = c.stream(method: "POST", path: "/stream", headers: HTTPHeaders(), timeoutNs: 20_000_000_000)
        var sent: [UInt8] = []
        var received: [UInt8] = []
        for i in 0..<8 {
            let piece = Array(repeating: UInt8(i), count: 100_000)
            #expect(call.write(piece) == nil)
            sent += piece
        }
        call.closeSend()
        guard case .success(let (status, _)) = call.awaitHead() else {
            Issue.record("no response head")
            return
        }
        #expect(status == 200)
        var trailers: HTTPHeaders?
        reading: while true {
            switch call.read() {
            case .data(let d): received += d
            case .end(let t): trailers = t; break reading
            case .failed(let e): Issue.record("stream failed: \(e)"); break reading
            }
        }
        #expect(received == sent)
        #expect(trailers?.first("x-trailer") == "streamed")
    }

    @Test func connectionsBeforeStartWaitForIt() throws {
        let name = uniqueName("http-backlog")
        let (server, handler) = try startServer(name, start: false)
        defer { server.stop(graceNs: 0); handler.pool.shutdown() }
        let c = try client(name)
        defer { c.close() }
        let box = Box<Result<HTTPResponse, HTTPError>?>(nil)
        c.execute(method: "POST", path: "/echo", headers: HTTPHeaders(), body: [1, 2, 3], timeoutNs: 20_000_000_000) { r in
            box.update { $0 = r }
        }
        usleep(50_000)
        #expect(box.current == nil)  // not served before start
        try server.start()
        guard case .success(let resp)? = box.wait(until: { $0 != nil }) else {
            Issue.record("request failed after start")
            return
        }
        #expect(resp.body == [1, 2, 3])
    }

    @Test func namesAreCheckedAndUnique() throws {
        let name = uniqueName("http-names")
        let (server, handler) = try startServer(name)
        defer { handler.pool.shutdown() }
        let other = HTTPServer(config: HTTPServerConfig(), group: try EventLoopGroup.shared(), handler: handler)
        #expect(throws: HTTPError.self) { try other.listenInProcess(name: name) }
        #expect(throws: HTTPError.self) { try other.listenInProcess(name: "") }
        #expect(throws: HTTPError.self) { try other.listenInProcess(name: "a/b") }
        // Stopping frees the name: clients then fail, and another server may take it.
        server.stop(graceNs: 0)
        let c = try client(name)
        defer { c.close() }
        guard case .failure(let e)? = execute(c, body: [1]) else {
            Issue.record("a request to a stopped in-process server succeeded")
            return
        }
        #expect(e.message.contains("no server listens"))
        #expect(throws: HTTPError.self) { try server.listenInProcess(name: name) }
        #expect(try other.listenInProcess(name: name) == "inproc://" + name)
        other.stop(graceNs: 0)
    }

    @Test func anUnknownNameIsAClearError() throws {
        let c = try client(uniqueName("http-nobody"))
        defer { c.close() }
        guard case .failure(let e)? = execute(c, body: []) else {
            Issue.record("a request to an unknown in-process name succeeded")
            return
        }
        #expect(e.kind == .io)
        #expect(e.message.contains("listenInProcess"))
    }
}
