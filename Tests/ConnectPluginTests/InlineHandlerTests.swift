// Inline unary handlers (`register(_:inline:_:)`): they run on the I/O loop thread that read the
// request, not on the handler pool, over every protocol and both HTTP versions, still wrapped by
// interceptors (which then run inline too); pooled handlers stay on the pool.
import ConnectPlugin
import ConnectPluginHTTP
import Glibc
import Testing

private let svc = "/test.v1.Inline/"

/// The name of the current thread ("cp-handler-N" on the handler pool), from /proc/thread-self/comm.
private func threadName() -> String {
    let fd = open("/proc/thread-self/comm", O_RDONLY)
    if fd < 0 { return "?" }
    defer { close(fd) }
    var buf = [UInt8](repeating: 0, count: 64)
    let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
    if n <= 0 { return "?" }
    return String(decoding: buf[0..<n], as: UTF8.self).split(separator: "\n").first.map(String.init) ?? ""
}

private final class Seen: @unchecked Sendable {
    private let lock = Lock()
    private var names: [String] = []
    private var hookThreads: [pthread_t] = []
    private var handlerAfterHookOnSameThread = 0
    func hook() { lock.withLock { hookThreads.append(pthread_self()) } }
    func handler() {
        lock.withLock {
            names.append(threadName())
            if let t = hookThreads.last, pthread_equal(t, pthread_self()) != 0 { handlerAfterHookOnSameThread += 1 }
        }
    }
    var all: [String] { lock.withLock { names } }
    var sameThreadAsHook: Int { lock.withLock { handlerAfterHookOnSameThread } }
    var hooks: Int { lock.withLock { hookThreads.count } }
}

@Suite struct InlineHandlerTests {
    @Test(arguments: RPCProtocol.allCases)
    func inlineHandlerRunsOnTheLoopWithInterceptors(_ p: RPCProtocol) throws {
        let inline = Seen()
        let pooled = Seen()
        let server = try Server()
        defer { server.stop(graceMs: 1000) }
        try server.handle(svc + "Inline", inline: true) { call in
            inline.handler()
            if call.request == [0] { throw ConnectError(.notFound, "no such key") }
            return call.request + [1]
        }
        try server.handle(svc + "Pooled") { call in
            pooled.handler()
            return call.request
        }
        try server.intercept(start: { call in
            if call.procedure == svc + "Inline" { inline.hook() }
        })
        let addr = try server.listenTCP("127.0.0.1:0")
        try server.start()
        for http in [HTTPVersion.http1_1, .http2] where !(p == .grpc && http == .http1_1) {
            var o = Client.Options()
            o.rpcProtocol = p
            o.httpVersion = http
            let c = try Client(baseURL: "http://" + addr, options: o)
            defer { c.close() }
            for i in 1...5 {
                #expect(try c.unary(svc + "Inline", request: [UInt8(i)]).message == [UInt8(i), 1])
            }
            do {
                _ = try c.unary(svc + "Inline", request: [0])
                Issue.record("an inline handler's error did not reach the client")
            } catch let e as ConnectError {
                #expect(e.code == .notFound && e.message == "no such key", "\(e)")
            }
            #expect(try c.unary(svc + "Pooled", request: [9]).message == [9])
        }
        let names = inline.all
        #expect(!names.isEmpty)
        #expect(names.allSatisfy { !$0.hasPrefix("cp-handler") }, "inline calls ran on handler threads: \(names)")
        #expect(inline.hooks == names.count && inline.sameThreadAsHook == names.count,
                "interceptor start hooks \(inline.hooks), on the handler's thread \(inline.sameThreadAsHook), calls \(names.count)")
        // The control: the pool's threads carry the name the check above relies on.
        #expect(!pooled.all.isEmpty && pooled.all.allSatisfy { $0.hasPrefix("cp-handler") }, "\(pooled.all)")
    }
}
