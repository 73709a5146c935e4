// kv-server-swift: the example key-value store served with the connectplugin Swift API
// (examples/proto/README.md: Put, Get, Delete, List, PutMany, Watch; Connect, gRPC and gRPC-Web
// over HTTP/1.1 and HTTP/2 on one port).
// Usage: kv-server-swift --listen ADDR [--tls-cert CERT.pem --tls-key KEY.pem [--tls-client-ca CA.pem]]
//        (ADDR is host:port or unix:PATH; TLS needs host:port)
import ConnectPlugin
import Glibc

let service = "/connectplugin.examples.kv.v1.KVService/"
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

func monotonicMs() -> Int {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return ts.tv_sec * 1000 + ts.tv_nsec / 1_000_000
}

func encodeEvent(_ codec: String, _ e: WatchEvent) -> [UInt8] {
    encodeResponse(codec, [.string(1, "key", e.key), .bytes(2, "value", e.value), .bool(3, "deleted", e.deleted)])
}

do {
    // Every streaming call holds a handler thread while it runs (a Watch until the client
    // half-closes), so allow many more than the default 8 at once.
    var serverOptions = Server.Options()
    serverOptions.handlerThreads = 64
    let server = try Server(options: serverOptions)

    // ---- Unary.
    try server.handle(service + "Put") { call in
        let r = try decodeRequest(call.request, codec: call.codec)
        try checkKey(r.key)
        store.put(r.key, r.value)
        return encodeResponse(call.codec, [])
    }
    try server.handle(service + "Get") { call in
        let r = try decodeRequest(call.request, codec: call.codec)
        try checkKey(r.key)
        if r.key == slowKey {
            // The deadline hook: hold the call for 1 s, or less if it ends first (deadline,
            // cancellation). Other calls run on other handler threads meanwhile.
            let end = monotonicMs() + 1000
            while monotonicMs() < end && !call.isDone { usleep(10_000) }
        }
        let v = store.get(r.key)
        return encodeResponse(call.codec, [.bytes(1, "value", v ?? []), .bool(2, "found", v != nil)])
    }
    try server.setNoSideEffects(service + "Get")
    try server.handle(service + "Delete") { call in
        let r = try decodeRequest(call.request, codec: call.codec)
        try checkKey(r.key)
        let existed = store.delete(r.key)
        return encodeResponse(call.codec, [.bool(1, "existed", existed)])
    }

    // ---- Server streaming: a sorted snapshot of the keys under a prefix.
    try server.handleStream(service + "List", kind: .serverStream) { call in
        guard let m = try call.receive() else { throw ConnectError(.invalidArgument, "List needs a request message") }
        let r = try decodeRequest(m, codec: call.codec, keyName: "prefix")
        try checkPrefix(r.key)
        for (k, v) in store.list(r.key) {
            try call.send(encodeResponse(call.codec, [.string(1, "key", k), .bytes(2, "value", v)]))
        }
    }

    // ---- Client streaming: each item is stored as it arrives; the count once the client is done.
    try server.handleStream(service + "PutMany", kind: .clientStream) { call in
        var count: Int64 = 0
        try call.forEachRequest { m in
            let r = try decodeRequest(m, codec: call.codec)
            try checkKey(r.key)
            store.put(r.key, r.value)
            count += 1
        }
        try call.send(encodeResponse(call.codec, [.int64(1, "count", count)]))
    }

    // ---- Bidi: each request adds a prefix (replay + live events). A reader thread takes the
    // requests; this handler thread sends the call's queued events, waking up every 100 ms to
    // notice a call that is over (client gone, server stopping). When the client half-closes, live
    // events stop, the queue is sent, and the call ends OK; a bad request ends it with its error
    // after the events queued before it.
    try server.handleStream(service + "Watch", kind: .bidiStream) { call in
        let watcher = Watcher()
        store.addWatcher(watcher)
        defer { store.removeWatcher(watcher) }
        let reading = spawnThread {
            do {
                while let m = try call.receive() {
                    let r = try decodeRequest(m, codec: call.codec, keyName: "prefix")
                    try checkPrefix(r.key)
                    store.addPrefix(watcher, r.key)
                }
                store.removeWatcher(watcher)
                watcher.end(nil)
            } catch {
                store.removeWatcher(watcher)
                watcher.end(error)
            }
        }
        if !reading { throw ConnectError(.resourceExhausted, "cannot start a thread for the call") }
        while true {
            switch watcher.next(waitMs: 100) {
            case .event(let e):
                try call.send(encodeEvent(call.codec, e))
            case .end(nil):
                return
            case .end(let error?):
                throw error
            case .idle:
                if call.isDone {
                    watcher.end(nil)  // nothing more will be sent; the reader ends with the call
                    return
                }
            }
        }
    }

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
