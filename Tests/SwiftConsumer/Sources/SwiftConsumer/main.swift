// Serves one procedure and calls it over HTTP/1.1 and HTTP/2 through the ConnectPlugin product.
import ConnectPlugin
import Glibc

do {
    let server = try Server()
    try server.handle("/consumer.v1.Greeter/Greet") { call in Array("hello, ".utf8) + call.request }
    try server.handle("/consumer.v1.Greeter/Fail") { _ in throw ConnectError(.notFound, "no such greeting") }
    let address = try server.listenTCP("127.0.0.1:0")
    try server.start()
    defer { server.stop(graceMs: 1000) }
    for version in [HTTPVersion.http1_1, .http2] {
        var options = Client.Options()
        options.httpVersion = version
        let client = try Client(baseURL: "http://" + address, options: options)
        defer { client.close() }
        let reply = try client.unary("/consumer.v1.Greeter/Greet", request: Array("swift".utf8))
        guard String(decoding: reply.message, as: UTF8.self) == "hello, swift" else {
            fputs("unexpected reply\n", stderr)
            exit(1)
        }
        do {
            _ = try client.unary("/consumer.v1.Greeter/Fail", request: [])
            fputs("expected not_found\n", stderr)
            exit(1)
        } catch let e as ConnectError where e.code == .notFound && e.message == "no such greeting" {}
        print("swift-consumer: \(version) ok")
    }
} catch {
    fputs("swift-consumer: \(error)\n", stderr)
    exit(1)
}
