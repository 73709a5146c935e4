// The KV service of examples/proto/README.md (Put, Get, Delete, List, PutMany, Watch) registered
// on a connectplugin server: shared by kv-server-swift (a plain server) and kv-plugin-swift (the
// same service served as a go-plugin compatible plugin).
import ConnectPlugin
import Glibc

public let kvServicePath = "/connectplugin.examples.kv.v1.KVService/"
let service = kvServicePath

func monotonicMs() -> Int {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return ts.tv_sec * 1000 + ts.tv_nsec / 1_000_000
}

func encodeEvent(_ codec: String, _ e: WatchEvent) -> [UInt8] {
    encodeResponse(codec, [.string(1, "key", e.key), .bytes(2, "value", e.value), .bool(3, "deleted", e.deleted)])
}

/// Registers the six KV methods on `server`, backed by `store`. `logPuts` (the plugin): Put logs a
/// debug line, an hclog JSON line the host parses (PluginServer.log).
public func registerKVService(on server: Server, store: Store, logPuts: Bool = false) throws {
    // ---- Unary.
    try server.handle(service + "Put") { call in
        let r = try decodeRequest(call.request, codec: call.codec)
        try checkKey(r.key)
        if logPuts { PluginServer.log(.debug, "put", [("key", r.key), ("bytes", String(r.value.count))]) }
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
}
