// Tests of the Swift API sugar of Sources/ConnectPlugin/ConnectPlugin.swift: throwing stream
// handlers (sync and async), async sequences over stream messages, synchronous loops, and the
// client helpers serverStream / clientStream / bidiStream / openServerStream.
import ConnectPlugin
import ConnectPluginHTTP
import Glibc
import Testing

private let svc = "/test.v1.SwiftAPI/"
private let info = ErrorDetail(type: "google.rpc.ErrorInfo", value: [0x0a, 0x01, 0x78])

private struct NotAConnectError: Error, CustomStringConvertible {
    var description: String { "plain failure" }
}

/// Count (server stream, sync throwing handler): n messages [i], then fails when the request's
/// second byte is 1 (ConnectError with a detail), 2 (a plain Swift error), 3 (a local ConnectError).
/// Sum (client stream, async handler over call.requests): "count:bytes"; a message [0xff] throws.
/// SumSync (client stream, sync: forEachRequest). All (client stream, sync: receiveAll).
/// Chat (bidi, async handler: echoes over call.requests). Hang (bidi: waits for the client).
private func makeServer() throws -> (Server, String) {
    let server = try Server()
    try server.handleStream(svc + "Count", kind: .serverStream) { call in
        let req = try call.receive() ?? []
        let n = Int(req.first ?? 0)
        for i in 0..<n { try call.send([UInt8(i)]) }
        switch req.count > 1 ? req[1] : 0 {
        case 1: throw ConnectError(.failedPrecondition, "stop ☺", details: [info])
        case 2: throw NotAConnectError()
        case 3: throw ConnectError.local(.state, "local trouble")
        default: break
        }
    }
    try server.handleStream(svc + "Sum", kind: .clientStream) { (call: StreamCall) async throws in
        var count = 0
        var bytes = 0
        for try await m in call.requests {
            if m == [0xff] { throw ConnectError(.invalidArgument, "bad item \(count)", details: [info]) }
            count += 1
            bytes += m.count
        }
        try call.send(Array("\(count):\(bytes)".utf8))
    }
    try server.handleStream(svc + "SumSync", kind: .clientStream) { call in
        var count = 0
        try call.forEachRequest { m in
            if m == [0xff] { throw ConnectError(.invalidArgument, "bad item \(count)") }
            count += 1
        }
        try call.send(Array("\(count)".utf8))
    }
    try server.handleStream(svc + "All", kind: .clientStream) { call in
        let all = try call.receiveAll()
        try call.send(all.flatMap { $0 })
    }
    // No annotation: the `await` makes the closure async, which picks the async overload.
    try server.handleStream(svc + "Chat", kind: .bidiStream) { call in
        for try await m in call.requests { try call.send(m) }
    }
    try server.handleStream(svc + "Hang", kind: .bidiStream) { call in
        while try call.receive() != nil {}
    }
    let addr = try server.listenTCP("127.0.0.1:0")
    try server.start()
    return (server, "http://" + addr)
}

/// Runs a closure on a new detached thread.
private enum JobThreadForTests {
    static func run(_ body: @escaping () -> Void) {
        final class Box { let body: () -> Void; init(_ b: @escaping () -> Void) { body = b } }
        var t = pthread_t()
        let arg = Unmanaged.passRetained(Box(body)).toOpaque()
        _ = pthread_create(&t, nil, { arg in
            Unmanaged<Box>.fromOpaque(arg!).takeRetainedValue().body()
            return nil
        }, arg)
        pthread_detach(t)
    }
}

private struct Combo: CustomStringConvertible, Sendable {
    var proto: RPCProtocol
    var http: HTTPVersion
    var description: String { "\(proto.rawValue)-\(http == .http2 ? "h2" : "h1")" }
}

private let combos: [Combo] = RPCProtocol.allCases.flatMap { p in
    [HTTPVersion.http1_1, .http2].filter { !(p == .grpc && $0 == .http1_1) }.map { Combo(proto: p, http: $0) }
}

private func client(_ url: String, _ c: Combo, timeoutMs: Int64 = 0) throws -> Client {
    var o = Client.Options()
    o.rpcProtocol = c.proto
    o.httpVersion = c.http
    o.timeoutMs = timeoutMs
    return try Client(baseURL: url, options: o)
}

/// The error a throwing body threw, as a ConnectError.
private func connectError(_ body: () throws -> Void) -> ConnectError? {
    do {
        try body()
        return nil
    } catch let e as ConnectError {
        return e
    } catch {
        Issue.record("not a ConnectError: \(error)")
        return nil
    }
}

private func connectError(_ body: () async throws -> Void) async -> ConnectError? {
    do {
        try await body()
        return nil
    } catch let e as ConnectError {
        return e
    } catch {
        Issue.record("not a ConnectError: \(error)")
        return nil
    }
}

@Suite("SwiftAPI", .serialized)
struct SwiftAPITests {
    @Test(arguments: combos)
    fileprivate func handleStreamMapsThrownErrors(combo: Combo) throws {
        let (server, url) = try makeServer()
        defer { server.stop(graceMs: 0) }
        let c = try client(url, combo)
        defer { c.close() }

        #expect(try c.serverStream(svc + "Count", request: [3]) == [[0], [1], [2]])

        // A ConnectError after two messages: code, message and details; the messages came first.
        let s = try c.openServerStream(svc + "Count", request: [2, 1])
        var got: [[UInt8]] = []
        let e = connectError { try s.forEachResponse { got.append($0) } }
        #expect(got == [[0], [1]])
        #expect(e?.code == .failedPrecondition)
        #expect(e?.message == "stop ☺")
        #expect(e?.details == [info])

        // Before any message (trailers-only for gRPC), through the collecting helper.
        let e0 = connectError { _ = try c.serverStream(svc + "Count", request: [0, 1]) }
        #expect(e0?.code == .failedPrecondition)
        #expect(e0?.details == [info])

        // Any other error, and local ConnectErrors, are internal.
        let e2 = connectError { _ = try c.serverStream(svc + "Count", request: [1, 2]) }
        #expect(e2?.code == .internal)
        #expect(e2?.message == "plain failure")
        let e3 = connectError { _ = try c.serverStream(svc + "Count", request: [0, 3]) }
        #expect(e3?.code == .internal)
        #expect(e3?.message == "local trouble")
    }

    @Test(arguments: combos)
    fileprivate func clientHelpers(combo: Combo) throws {
        let (server, url) = try makeServer()
        defer { server.stop(graceMs: 0) }
        let c = try client(url, combo)
        defer { c.close() }

        #expect(try c.clientStream(svc + "Sum", messages: [[1, 2], [3], []]) == Array("3:3".utf8))
        #expect(try c.clientStream(svc + "Sum", messages: [[UInt8]]()) == Array("0:0".utf8))
        #expect(try c.clientStream(svc + "SumSync", messages: (0..<50).map { [UInt8($0)] }) == Array("50".utf8))
        #expect(try c.clientStream(svc + "All", messages: [[1], [2, 3]]) == [1, 2, 3])
        let e = connectError { _ = try c.clientStream(svc + "Sum", messages: [[1], [0xff], [2]]) }
        #expect(e?.code == .invalidArgument)
        #expect(e?.message == "bad item 1")
        #expect(e?.details == [info])
        let e2 = connectError { _ = try c.clientStream(svc + "SumSync", messages: [[0xff]]) }
        #expect(e2?.code == .invalidArgument)
        #expect(e2?.message == "bad item 0")

        // Half-duplex bidi works over both HTTP versions.
        #expect(try c.bidiStream(svc + "Chat", messages: [[1], [2], [3]]) == [[1], [2], [3]])
        #expect(try c.bidiStream(svc + "Chat", messages: [[UInt8]]()) == [])

        // receiveAll on an open stream.
        let s = try c.stream(svc + "Chat", kind: .bidiStream)
        try s.send([9])
        s.closeSend()
        #expect(try s.receiveAll() == [[9]])
    }

    @Test(arguments: combos)
    fileprivate func asyncResponses(combo: Combo) async throws {
        let (server, url) = try makeServer()
        defer { server.stop(graceMs: 0) }
        let c = try client(url, combo)
        defer { c.close() }

        var got: [[UInt8]] = []
        for try await m in try c.openServerStream(svc + "Count", request: [4]).responses { got.append(m) }
        #expect(got == [[0], [1], [2], [3]])

        // The error comes after the messages.
        got = []
        let s = try c.openServerStream(svc + "Count", request: [3, 1])
        let e = await connectError {
            for try await m in s.responses { got.append(m) }
        }
        #expect(got == [[0], [1], [2]])
        #expect(e?.code == .failedPrecondition)
        #expect(e?.details == [info])

        // After the end, next() keeps returning nil.
        let s2 = try c.openServerStream(svc + "Count", request: [1])
        var it = s2.responses.makeAsyncIterator()
        #expect(try await it.next() == [0])
        #expect(try await it.next() == nil)
        #expect(try await it.next() == nil)
    }

    @Test(arguments: RPCProtocol.allCases)
    func fullDuplexWithAsyncResponses(proto: RPCProtocol) async throws {
        let (server, url) = try makeServer()
        defer { server.stop(graceMs: 0) }
        let c = try client(url, Combo(proto: proto, http: .http2))
        defer { c.close() }
        let s = try c.stream(svc + "Chat", kind: .bidiStream)
        var it = s.responses.makeAsyncIterator()
        for i in 0..<20 {
            try s.send([UInt8(i)])
            #expect(try await it.next() == [UInt8(i)])
        }
        s.closeSend()
        #expect(try await it.next() == nil)

        // Reading in a task while this one sends.
        let s2 = try c.stream(svc + "Chat", kind: .bidiStream)
        let reader = Task { () -> [[UInt8]] in
            var out: [[UInt8]] = []
            for try await m in s2.responses { out.append(m) }
            return out
        }
        for i in 0..<100 { try s2.send([UInt8(i)]) }
        s2.closeSend()
        #expect(try await reader.value == (0..<100).map { [UInt8($0)] })
    }

    @Test(arguments: RPCProtocol.allCases)
    func cancellingTheTaskCancelsTheCall(proto: RPCProtocol) async throws {
        let (server, url) = try makeServer()
        defer { server.stop(graceMs: 0) }
        // The timeout only bounds the test if cancellation does not work.
        let c = try client(url, Combo(proto: proto, http: .http2), timeoutMs: 5000)
        defer { c.close() }
        let s = try c.stream(svc + "Hang", kind: .bidiStream)
        try s.send([1])
        let reader = Task { () -> ConnectError? in
            await connectError {
                for try await _ in s.responses {}
            }
        }
        usleep(200_000)
        let t0 = monotonicNowNs()
        reader.cancel()
        #expect(monotonicNowNs() - t0 < 1_000_000_000, "Task.cancel() must not wait for the stream")
        let e = await reader.value
        #expect(e?.code == .canceled)
        #expect(monotonicNowNs() - t0 < 3_000_000_000)
    }

    /// ClientStream promises "cancel from any thread": here while another thread waits in receive().
    @Test(arguments: RPCProtocol.allCases)
    func cancelFromAnotherThreadWhileReceiving(proto: RPCProtocol) throws {
        let (server, url) = try makeServer()
        defer { server.stop(graceMs: 0) }
        let c = try client(url, Combo(proto: proto, http: .http2), timeoutMs: 3000)
        defer { c.close() }
        let s = try c.stream(svc + "Hang", kind: .bidiStream)
        try s.send([1])
        let result = Promise<ConnectError?>()
        JobThreadForTests.run { result.fulfill(connectError { while try s.receive() != nil {} }) }
        usleep(200_000)
        let t0 = monotonicNowNs()
        s.cancel()
        let cancelNs = monotonicNowNs() - t0
        let e = result.wait() ?? nil
        #expect(cancelNs < 1_000_000_000, "cancel() blocked \(cancelNs / 1_000_000) ms behind the pending receive()")
        #expect(e?.code == .canceled)
    }

    /// After cancel, receive reports canceled, also for messages that had already arrived (issue 7;
    /// the interop regression is Tests/interop/test_conformance_regressions.py).
    @Test(arguments: RPCProtocol.allCases)
    func receiveAfterCancelDropsArrivedMessages(proto: RPCProtocol) throws {
        let (server, url) = try makeServer()
        defer { server.stop(graceMs: 0) }
        let c = try client(url, Combo(proto: proto, http: .http2), timeoutMs: 30_000)
        defer { c.close() }
        let s = try c.openServerStream(svc + "Count", request: [50])
        #expect(try s.receive() == [0])
        usleep(500_000)  // the other 49 messages arrive meanwhile
        s.cancel()
        for _ in 0..<2 { #expect(connectError { _ = try s.receive() }?.code == .canceled) }
    }

    /// A handler that sets a response header and ends without a message: the header stays a header
    /// on every protocol (gRPC and gRPC-Web no longer fold it into a trailers-only response, issue 7;
    /// the interop regression with grpcio and curl is in Tests/interop/test_conformance_regressions.py).
    @Test(arguments: combos)
    fileprivate func headersWithoutAMessageStayHeaders(_ combo: Combo) throws {
        let server = try Server()
        defer { server.stop(graceMs: 0) }
        for (name, fails) in [("HeadersOnly", false), ("HeadersThenError", true)] {
            try server.handleStream(svc + name, kind: .serverStream) { call in
                _ = try call.receive()
                try call.addResponseHeader("x-custom-header", Array("custom-value".utf8))
                try call.addResponseTrailer("x-custom-trailer", Array("trailer-value".utf8))
                if fails { throw ConnectError(.failedPrecondition, "headers then error") }
            }
        }
        let addr = try server.listenTCP("127.0.0.1:0")
        try server.start()
        let c = try client("http://" + addr, combo, timeoutMs: 30_000)
        defer { c.close() }
        let ok = try c.openServerStream(svc + "HeadersOnly", request: [])
        #expect(try ok.receive() == nil)
        #expect(ok.responseHeaders.firstString("x-custom-header") == "custom-value")
        #expect(ok.responseTrailers.firstString("x-custom-header") == nil)
        #expect(ok.responseTrailers.firstString("x-custom-trailer") == "trailer-value")
        #expect(ok.responseHeaders.firstString("x-custom-trailer") == nil)
        let failing = try c.openServerStream(svc + "HeadersThenError", request: [])
        let e = connectError { _ = try failing.receive() }
        #expect(e?.code == .failedPrecondition)
        #expect(failing.responseHeaders.firstString("x-custom-header") == "custom-value")
        #expect(failing.responseHeaders.firstString("x-custom-trailer") == nil)
    }

    @Test func forEachResponseStopsWhenTheBodyThrows() throws {
        let (server, url) = try makeServer()
        defer { server.stop(graceMs: 0) }
        let c = try client(url, Combo(proto: .grpc, http: .http2))
        defer { c.close() }
        let s = try c.openServerStream(svc + "Count", request: [200])
        var n = 0
        #expect(throws: NotAConnectError.self) {
            try s.forEachResponse { _ in
                n += 1
                if n == 2 { throw NotAConnectError() }
            }
        }
        #expect(n == 2)
        // The call was canceled: the stream reports it instead of more messages.
        #expect(throws: ConnectError.self) { while try s.receive() != nil {} }
    }

    @Test func deadlineEndsAsyncRequestsOnTheServer() throws {
        // An async handler blocked in `for try await m in call.requests` sees the deadline.
        let server = try Server()
        defer { server.stop(graceMs: 0) }
        let seen = Promise<Code?>()
        try server.handleStream(svc + "Wait", kind: .bidiStream) { (call: StreamCall) async throws in
            do {
                for try await _ in call.requests {}
                seen.fulfill(nil)
            } catch let e as ConnectError {
                seen.fulfill(e.code)
                throw e
            }
        }
        let addr = try server.listenTCP("127.0.0.1:0")
        try server.start()
        let c = try client("http://" + addr, Combo(proto: .connect, http: .http2), timeoutMs: 200)
        defer { c.close() }
        let s = try c.stream(svc + "Wait", kind: .bidiStream)
        try s.send([1])
        let e = connectError { while try s.receive() != nil {} }
        #expect(e?.code == .deadlineExceeded)
        // The client's own deadline may cancel the call first: either way the handler is not stuck.
        let code = seen.wait() ?? nil
        #expect(code == .deadlineExceeded || code == .canceled)
    }

    @Test(arguments: combos)
    fileprivate func onDoneTellsAWaitingUnaryHandlerTheClientCanceled(_ combo: Combo) throws {
        // The handler waits on its own flag, not on the call: only the onDone notice wakes it.
        let server = try Server()
        defer { server.stop(graceMs: 0) }
        let woken = Promise<Bool>()
        try server.handle(svc + "WaitDone") { call in
            let flag = Lock()
            nonisolated(unsafe) var fired = false
            call.onDone { flag.withLock { fired = true } }
            var waitedMs = 0
            while !flag.withLock({ fired }) && waitedMs < 10_000 {
                usleep(10_000)
                waitedMs += 10
            }
            woken.fulfill(flag.withLock { fired })
            return []
        }
        let addr = try server.listenTCP("127.0.0.1:0")
        try server.start()
        let c = try client("http://" + addr, combo)
        defer { c.close() }
        let s = try c.stream(svc + "WaitDone", kind: .unary)
        try s.send([1])
        try s.closeSend()
        JobThreadForTests.run {
            usleep(300_000)
            s.cancel()
        }
        let e = connectError { _ = try s.receive() }
        #expect(e?.code == .canceled)
        #expect(woken.wait() == true, "the handler's onDone did not run after the client canceled")
    }
}
