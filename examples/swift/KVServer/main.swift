// kv-server-swift: the example key-value store served with the connectplugin Swift API
// (examples/proto/README.md: Put, Get, Delete, List, PutMany, Watch; Connect, gRPC and gRPC-Web
// over HTTP/1.1 and HTTP/2 on one port).
// Usage: kv-server-swift --listen ADDR [--tls-cert CERT.pem --tls-key KEY.pem [--tls-client-ca CA.pem]]
//        (ADDR is host:port or unix:PATH; TLS needs host:port)
import ConnectPlugin
import Glibc
import KVServiceSwift

let usage = "usage: kv-server-swift --listen ADDR [--tls-cert CERT.pem --tls-key KEY.pem [--tls-client-ca CA.pem]]\n"
    + "  ADDR is host:port (port 0 picks one) or unix:PATH; TLS needs host:port\n"

func usageError(_ message: String) -> Never {
    fputs("kv-server-swift: \(message)\n\(usage)", stderr)
    exit(2)
}

// ---- Flags: --name VALUE or --name=VALUE.
var flags: [String: String] = [:]
let known: Set<String> = ["--listen", "--tls-cert", "--tls-key", "--tls-client-ca"]
var argv = CommandLine.arguments.dropFirst().makeIterator()
while let a = argv.next() {
    if a == "-h" || a == "--help" {
        print(usage, terminator: "")
        exit(0)
    }
    var name = a
    var value: String?
    if let eq = a.firstIndex(of: "=") {
        name = String(a[..<eq])
        value = String(a[a.index(after: eq)...])
    }
    guard known.contains(name) else { usageError("unknown argument \(a)") }
    guard let v = value ?? argv.next() else { usageError("\(name) needs a value") }
    flags[name] = v
}
guard let listenAddr = flags["--listen"] else { usageError("--listen is required") }
var tls: TLSConfig?
switch (flags["--tls-cert"], flags["--tls-key"]) {
case (let cert?, let key?):
    if listenAddr.hasPrefix("unix:") { usageError("TLS needs a host:port address") }
    let ca = flags["--tls-client-ca"]
    tls = TLSConfig.server(certificateChain: .file(cert), privateKey: .file(key),
                           clientCAs: ca.map { .file($0) }, requireClientCert: ca != nil)
case (nil, nil):
    if flags["--tls-client-ca"] != nil { usageError("--tls-client-ca needs --tls-cert and --tls-key") }
default:
    usageError("--tls-cert and --tls-key go together")
}

// Block SIGINT/SIGTERM so that this thread can wait for them with sigwait (every thread started
// later inherits the mask).
var sigs = sigset_t()
sigemptyset(&sigs)
sigaddset(&sigs, SIGINT)
sigaddset(&sigs, SIGTERM)
pthread_sigmask(SIG_BLOCK, &sigs, nil)

let store = Store()

do {
    // Every streaming call holds a handler thread while it runs (a Watch until the client
    // half-closes), so allow many more than the default 8 at once.
    var serverOptions = Server.Options()
    serverOptions.handlerThreads = 64
    let server = try Server(options: serverOptions)

    try registerKVService(on: server, store: store)

    let bound = listenAddr.hasPrefix("unix:")
        ? try server.listenUnix(String(listenAddr.dropFirst(5)))
        : try server.listenTCP(listenAddr, tls: tls)
    try server.start()
    print("listening on \(bound)")
    fflush(stdout)
    var sig: Int32 = 0
    sigwait(&sigs, &sig)
    server.stop(graceMs: 5000)
    exit(0)
} catch {
    fputs("kv-server-swift: \(error)\n", stderr)
    exit(1)
}
