// The streaming scenario of examples/proto/README.md ("Client flags (new) and the streaming
// scenario"): 18 lines, the same for every client and server (Tests/interop/kvscenario.py).
import ConnectPlugin
import Glibc

let detailLine = "detail=google.rpc.ErrorInfo reason=RESERVED_KEY domain=kv.examples.connectplugin key=__error__"
let reservedError = "error=failed_precondition message=key is reserved \(detailLine)"

/// The exact lines; only `watch-live` depends on the HTTP version (full-duplex bidi needs HTTP/2).
func expectedLines(http: String) -> [String] {
    [
        "put greeting ok",
        "get greeting found=true value=hello",
        "delete greeting existed=true",
        "get greeting found=false",
        "get <empty> error=invalid_argument message=key must not be empty",
        "get __error__ \(reservedError)",
        "get __slow__ error=deadline_exceeded",
        "putmany count=3",
        "putmany <none> count=0",
        "putmany <empty> error=invalid_argument message=key must not be empty",
        "list s/a count=2 s/a1=x s/a2=y",
        "list s/none count=0",
        "list __error__ \(reservedError)",
        "watch s/a,s/b events=3 s/a1=x s/a2=y s/b1=z",
        "watch s/a,__error__ events=2 s/a1=x s/a2=y \(reservedError)",
        http == "2"
            ? "watch-live s/a events=4 s/a1=x s/a2=y s/a3=w s/a3=<deleted>"
            : "watch-live skipped (full-duplex bidi needs HTTP/2)",
        "cleanup deleted=3",
        "list s/ count=0",
    ]
}

/// An RPC error of a stream, with what the stream delivered before it (formatted).
struct StreamFailure: Error {
    var error: ConnectError
    var received: [String]
}

/// `error=CODE [message=MESSAGE]` and each detail (`detail=TYPE`, for ErrorInfo also `reason=R
/// domain=D` and `K=V` per metadata entry in key order).
func formatError(_ e: ConnectError, withMessage: Bool = true) -> String {
    var s = "error=\(e.code.name)"
    if withMessage { s += " message=\(e.message)" }
    for d in e.details {
        let type = d.type.split(separator: "/").last.map(String.init) ?? d.type
        s += " detail=\(type)"
        if type == "google.rpc.ErrorInfo", let info = try? decodeErrorInfo(d.value) {
            s += " reason=\(info.reason) domain=\(info.domain)"
            for (k, v) in info.metadata.sorted(by: { $0.0.utf8.lexicographicallyPrecedes($1.0.utf8) }) { s += " \(k)=\(v)" }
        }
    }
    return s
}

func describe(_ e: Error) -> String {
    if let f = e as? StreamFailure { return describe(f.error) }
    if let ce = e as? ConnectError { return "\(ce.code.name): \(ce.message)" }
    return "\(e)"
}

final class StreamScenario {
    let client: Client
    let codec: String
    let http: String
    let expected: [String]
    private var printed = 0
    private var ok = true

    init(client: Client, codec: String, http: String) {
        self.client = client
        self.codec = codec
        self.http = http
        expected = expectedLines(http: http)
    }

    private struct Stop: Error {}

    /// Prints (and flushes) a line, comparing it with the expected one.
    private func emit(_ line: String) {
        if printed >= expected.count || expected[printed] != line { ok = false }
        printed += 1
        print(line)
        fflush(stdout)
    }

    /// An unexpected error: `error: STEP: CODE: MESSAGE` on stderr, and the scenario stops.
    private func unexpected(_ step: String, _ e: Error) -> Stop {
        ok = false
        fputs("error: \(step): \(describe(e))\n", stderr)
        return Stop()
    }

    /// Runs a step expected to fail with an RPC error and prints `STEP [events=N E1 … EN ]error=…`.
    private func expectFailure(_ step: String, withMessage: Bool = true, _ body: () throws -> String) throws {
        do {
            let r = try body()
            emit("\(step) unexpectedly succeeded: \(r)")
        } catch let f as StreamFailure {
            let prefix = f.received.isEmpty ? "" : "events=\(f.received.count) " + f.received.map { $0 + " " }.joined()
            emit("\(step) \(prefix)\(formatError(f.error, withMessage: withMessage))")
        } catch let e as ConnectError where e.kind == .rpc {
            emit("\(step) \(formatError(e, withMessage: withMessage))")
        } catch {
            throw unexpected(step, error)
        }
    }

    /// Runs steps whose errors are all unexpected.
    private func expectSuccess(_ step: String, _ body: () throws -> Void) throws {
        do { try body() } catch { throw unexpected(step, error) }
    }

    // MARK: calls

    private func put(_ key: String, _ value: [UInt8]) throws {
        _ = try client.unary(service + "Put", request: encodeRequest(codec, key, value: value))
    }

    private func get(_ key: String, timeoutMs: Int64? = nil) throws -> (found: Bool, value: [UInt8]) {
        let r = try Response(codec, client.unary(service + "Get", request: encodeRequest(codec, key), timeoutMs: timeoutMs).message)
        return (r.bool(2, "found"), r.bytes(1, "value"))
    }

    private func delete(_ key: String) throws -> Bool {
        try Response(codec, client.unary(service + "Delete", request: encodeRequest(codec, key)).message).bool(1, "existed")
    }

    /// PutMany: client streaming.
    private func putMany(_ items: [(String, String)]) throws -> Int64 {
        let messages = items.map { encodeRequest(codec, $0.0, value: Array($0.1.utf8)) }
        return try Response(codec, client.clientStream(service + "PutMany", messages: messages)).int64(1, "count")
    }

    /// List: server streaming; the items as `KEY=VALUE`.
    private func list(_ prefix: String) throws -> [String] {
        let s = try client.openServerStream(service + "List", request: encodeRequest(codec, prefix, keyName: "prefix"))
        var items: [String] = []
        do {
            try s.forEachResponse { m in
                let r = try Response(codec, m)
                items.append("\(r.string(1, "key"))=\(text(r.bytes(2, "value")))")
            }
        } catch let e as ConnectError {
            throw StreamFailure(error: e, received: items)
        }
        return items
    }

    private func formatEvent(_ m: [UInt8]) throws -> String {
        let r = try Response(codec, m)
        return "\(r.string(1, "key"))=" + (r.bool(3, "deleted") ? "<deleted>" : text(r.bytes(2, "value")))
    }

    /// Watch, half-duplex: sends every prefix, half-closes, reads to the end.
    private func watchHalfDuplex(_ prefixes: [String]) throws -> [String] {
        let s = try client.stream(service + "Watch", kind: .bidiStream)
        defer { s.cancelIfRunning() }
        var sendError: Error?
        do {
            for p in prefixes { try s.send(encodeRequest(codec, p, keyName: "prefix")) }
        } catch {
            sendError = error  // the server ended the call: its status (read below) says why
        }
        s.closeSend()
        var events: [String] = []
        do {
            try s.forEachResponse { events.append(try formatEvent($0)) }
        } catch let e as ConnectError {
            throw StreamFailure(error: e, received: events)
        }
        if let sendError { throw sendError }
        return events
    }

    /// Watch, full-duplex: s/a; 2 replayed events; Put s/a3 (another call) and its event; Delete
    /// s/a3 and its event; half-close; the stream must end OK without more events.
    private func watchLive() throws -> [String] {
        let s = try client.stream(service + "Watch", kind: .bidiStream)
        defer { s.cancelIfRunning() }
        var events: [String] = []
        func receiveOne() throws {
            guard let m = try s.receive() else {
                throw ConnectError(.internal, "watch stream ended early after \(events.count) events")
            }
            events.append(try formatEvent(m))
        }
        do {
            try s.send(encodeRequest(codec, "s/a", keyName: "prefix"))
            try receiveOne()
            try receiveOne()
            try put("s/a3", Array("w".utf8))
            try receiveOne()
            _ = try delete("s/a3")
            try receiveOne()
            s.closeSend()
            if let extra = try s.receive() {
                throw ConnectError(.internal, "unexpected event after half-close: \(try formatEvent(extra))")
            }
        } catch let e as ConnectError {
            throw StreamFailure(error: e, received: events)
        }
        return events
    }

    // MARK: the script

    /// Runs every step; true when every line was the expected one.
    func run() -> Bool {
        do {
            // 1-5: the unary scenario.
            try expectSuccess("unary") {
                try put("greeting", Array("hello".utf8))
                emit("put greeting ok")
                var r = try get("greeting")
                emit("get greeting found=\(r.found) value=\(text(r.value))")
                emit("delete greeting existed=\(try delete("greeting"))")
                r = try get("greeting")
                emit("get greeting found=\(r.found)")
            }
            try expectFailure("get <empty>") { "\(try get(""))" }
            // 6-7: error details and deadlines.
            try expectFailure("get __error__") { "\(try get("__error__"))" }
            try expectFailure("get __slow__", withMessage: false) { "\(try get("__slow__", timeoutMs: 200))" }
            // 8-10: client streaming.
            try expectSuccess("putmany") {
                emit("putmany count=\(try putMany([("s/a1", "x"), ("s/a2", "y"), ("s/b1", "z")]))")
                emit("putmany <none> count=\(try putMany([]))")
            }
            try expectFailure("putmany <empty>") { "count=\(try putMany([("", "x")]))" }
            // 11-13: server streaming.
            try expectSuccess("list") {
                for prefix in ["s/a", "s/none"] {
                    let items = try list(prefix)
                    emit("list \(prefix) count=\(items.count)" + items.map { " " + $0 }.joined())
                }
            }
            try expectFailure("list __error__") { "\(try list("__error__"))" }
            // 14-15: bidi, half-duplex (send everything, half-close, then read).
            try expectSuccess("watch") {
                let events = try watchHalfDuplex(["s/a", "s/b"])
                emit("watch s/a,s/b events=\(events.count)" + events.map { " " + $0 }.joined())
            }
            try expectFailure("watch s/a,__error__") { "\(try watchHalfDuplex(["s/a", "__error__"]))" }
            // 16: bidi, full-duplex (HTTP/2 only).
            if http == "2" {
                try expectSuccess("watch-live") {
                    let events = try watchLive()
                    emit("watch-live s/a events=\(events.count)" + events.map { " " + $0 }.joined())
                }
            } else {
                emit("watch-live skipped (full-duplex bidi needs HTTP/2)")
            }
            // 17-18: cleanup, so that the scenario can run again on the same server.
            try expectSuccess("cleanup") {
                var deleted = 0
                for k in ["s/a1", "s/a2", "s/b1"] where try delete(k) { deleted += 1 }
                emit("cleanup deleted=\(deleted)")
                emit("list s/ count=\(try list("s/").count)")
            }
        } catch {
            // Stop: the reason is on stderr.
        }
        return ok && printed == expected.count
    }
}
