// The HTTP/2 data path over real sockets (TCP loopback, and a Unix socket): DATA frames are sent
// with NGHTTP2_DATA_FLAG_NO_COPY, their header and payload written straight from the sender's arrays
// by a gathered write, in frames up to H2Session.maxFrameSize. Large bodies both ways (1 MiB and
// 16 MiB, beyond every flow-control window), streamed pieces of odd sizes (pieces that straddle
// frames, short ones copied and long ones written in place), and many concurrent streams on one
// connection, each checked byte for byte.
import Glibc
import Testing
@testable import ConnectPluginHTTP

/// "/echo" answers the whole request body; "/stream" streams every request piece back from a pool
/// thread; "/blob" answers `x-size` pattern bytes to an empty request.
private final class DataHandler: HTTPServerHandler {
    let pool: ThreadPool
    init() throws { pool = try ThreadPool(threads: 2, maxThreads: 128) }

    func handle(_ stream: HTTPServerStream) {
        let path = stream.request.path
        if path == "/echo" {
            stream.collectBody(limit: 0) { body, _ in
                var t = HTTPHeaders()
                t.add("x-length", String(body.count))
                _ = stream.respond(HTTPResponse(status: 200, headers: HTTPHeaders(), body: body, trailers: t))
            }
        } else if path == "/stream" {
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
        } else if path == "/blob", let v = stream.request.headers.first("x-size"), let n = Int(v), n >= 0, n <= 64 << 20 {
            stream.collectBody(limit: 0) { _, _ in
                _ = stream.respond(HTTPResponse(status: 200, headers: HTTPHeaders(), body: pattern(n, seed: 5), trailers: HTTPHeaders()))
            }
        } else {
            _ = stream.respond(HTTPResponse(status: 404))
        }
    }
}

private func pattern(_ n: Int, seed: Int) -> [UInt8] {
    var out = [UInt8](repeating: 0, count: n)
    var x = UInt32(truncatingIfNeeded: seed &* 2_654_435_761 &+ 1)
    for i in 0..<n {
        x = x &* 1_664_525 &+ 1_013_904_223
        out[i] = UInt8(truncatingIfNeeded: x >> 24)
    }
    return out
}

private enum Transport: CustomStringConvertible, CaseIterable {
    case tcp, unix
    var description: String { self == .tcp ? "tcp" : "unix" }
}

private final class Fixture {
    let server: HTTPServer
    let handler: DataHandler
    let client: HTTPClient
    private let unixPath: String?

    init(_ transport: Transport) throws {
        handler = try DataHandler()
        server = HTTPServer(config: HTTPServerConfig(), group: try EventLoopGroup.shared(), handler: handler)
        var cfg = HTTPClientConfig()
        cfg.version = .http2
        let endpoint: HTTPEndpoint
        switch transport {
        case .tcp:
            let addr = try server.listenTCP(host: "127.0.0.1", port: 0)
            let port = addr.split(separator: ":").last.flatMap { Int($0) } ?? 0
            endpoint = .tcp(host: "127.0.0.1", port: port)
            unixPath = nil
        case .unix:
            let path = "/tmp/cp-h2data-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).sock"
            _ = try server.listenUnix(path: path)
            endpoint = .unix(path: path)
            unixPath = path
        }
        try server.start()
        client = try HTTPClient(endpoint: endpoint, config: cfg, group: try EventLoopGroup.shared())
    }

    deinit {
        client.close()
        server.stop(graceNs: 0)
        handler.pool.shutdown()
        if let p = unixPath { unlink(p) }
    }

    func execute(_ path: String, headers: HTTPHeaders = HTTPHeaders(), body: [UInt8]) -> Result<HTTPResponse, HTTPError>? {
        let box = Box<Result<HTTPResponse, HTTPError>?>(nil)
        client.execute(method: "POST", path: path, headers: headers, body: body, timeoutNs: 120_000_000_000) { r in
            box.update { $0 = r }
        }
        return box.wait(timeoutNs: 120_000_000_000) { $0 != nil }
    }
}

@Suite struct H2DataPathTests {
    /// Request and response bodies of 1 MiB and 16 MiB: the request goes out through the client's
    /// data provider, the answer through the server's, both beyond the stream and connection windows.
    @Test(arguments: [Transport.tcp, .unix], [1 << 20, 16 << 20])
    fileprivate func largeBodiesBothWays(_ transport: Transport, _ size: Int) throws {
        let f = try Fixture(transport)
        let body = pattern(size, seed: size)
        guard case .success(let resp)? = f.execute("/echo", body: body) else {
            Issue.record("echo of \(size) bytes failed")
            return
        }
        #expect(resp.status == 200)
        #expect(resp.body.count == size)
        expectSame(resp.body, body, "echo of \(size) bytes over \(transport)")
        #expect(resp.trailers.first("x-length") == String(size))
        // Server → client only (an empty request), then client → server only.
        guard case .success(let blob)? = f.execute("/blob", headers: HTTPHeaders([("x-size", String(size))]), body: []) else {
            Issue.record("download of \(size) bytes failed")
            return
        }
        #expect(blob.status == 200)
        expectSame(blob.body, pattern(size, seed: 5), "download of \(size) bytes over \(transport)")
    }

    /// Pieces of odd sizes streamed both ways on one stream: short pieces (copied, gathered with the
    /// frame headers), long ones (written in place), and frames that span several pieces.
    @Test(arguments: [Transport.tcp, .unix])
    fileprivate func streamedPiecesKeepTheirOrder(_ transport: Transport) throws {
        let f = try Fixture(transport)
        let call = f.client.stream(method: "POST", path: "/stream", headers: HTTPHeaders(), timeoutNs: 120_000_000_000)
        let sizes = [1, 9, 4095, 4096, 4097, 16_383, 16_384, 16_385, 65_541, 131_072, 131_073, 300_001, 7, 1 << 20, 3]
        var sent: [UInt8] = []
        let reader = Box<(bytes: [UInt8], trailers: HTTPHeaders?, failed: String?, done: Bool)>(([], nil, nil, false))
        let t = Thread {
            reading: while true {
                switch call.read() {
                case .data(let d): reader.update { $0.bytes += d }
                case .end(let tr): reader.update { $0.trailers = tr; $0.done = true }; break reading
                case .failed(let e): reader.update { $0.failed = "\(e)"; $0.done = true }; break reading
                }
            }
        }
        for _ in 0..<3 {
            for (i, n) in sizes.enumerated() {
                let piece = pattern(n, seed: i &+ sent.count)
                #expect(call.write(piece) == nil)
                sent += piece
            }
        }
        call.closeSend()
        let got = reader.wait(timeoutNs: 120_000_000_000) { $0.done }
        t.join()
        #expect(got.failed == nil)
        #expect(got.bytes.count == sent.count)
        expectSame(got.bytes, sent, "streamed pieces over \(transport)")
        #expect(got.trailers?.first("x-trailer") == "streamed")
    }

    /// 64 concurrent streams on one connection, each echoing its own body (up to 512 KiB): frames of
    /// different streams interleave on the wire and every stream's flow control runs on its own.
    @Test(arguments: [Transport.tcp, .unix])
    fileprivate func manyConcurrentStreams(_ transport: Transport) throws {
        let f = try Fixture(transport)
        let results = Box<[Int: Result<HTTPResponse, HTTPError>]>([:])
        let count = 64
        for i in 0..<count {
            let body = pattern(1000 + i * 8000, seed: i)
            f.client.execute(method: "POST", path: "/echo", headers: HTTPHeaders(), body: body, timeoutNs: 120_000_000_000) { r in
                results.update { $0[i] = r }
            }
        }
        let got = results.wait(timeoutNs: 120_000_000_000) { $0.count == count }
        #expect(got.count == count)
        for (i, r) in got {
            guard case .success(let resp) = r else {
                Issue.record("stream \(i) failed: \(r)")
                continue
            }
            expectSame(resp.body, pattern(1000 + i * 8000, seed: i), "stream \(i) over \(transport)")
        }
    }
}

/// Compares two byte arrays and reports the first difference (swift-testing's diff of two large
/// arrays would take minutes).
private func expectSame(_ got: [UInt8], _ want: [UInt8], _ what: String) {
    if got == want { return }
    var i = 0
    while i < got.count && i < want.count && got[i] == want[i] { i += 1 }
    Issue.record("\(what): \(got.count) bytes, want \(want.count); first difference at byte \(i)")
}

/// A joinable thread for a test's reader.
private final class Thread {
    private var tid = pthread_t()
    private let box: Unmanaged<Body>
    private final class Body {
        let run: () -> Void
        init(_ run: @escaping () -> Void) { self.run = run }
    }

    init(_ run: @escaping () -> Void) {
        box = Unmanaged.passRetained(Body(run))
        let rc = pthread_create(&tid, nil, { arg in
            guard let arg else { return nil }
            Unmanaged<Body>.fromOpaque(arg).takeRetainedValue().run()
            return nil
        }, box.toOpaque())
        #expect(rc == 0)
    }

    func join() { pthread_join(tid, nil) }
}
