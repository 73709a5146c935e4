// In-process listening: a process-wide table of names → servers. A client of
// `HTTPEndpoint.inProcess(name:)` (URL `inproc://NAME`) looks the name up and connects over an
// in-memory pipe (MemoryPipe), so the full HTTP/2 (or HTTP/1.1) stack runs with no socket.

/// The names servers listen under in this process. Thread-safe.
public enum InProcessListeners {
    private static let lock = Lock()
    private final class Entry {
        weak var server: HTTPServer?
        init(_ s: HTTPServer) { server = s }
    }
    nonisolated(unsafe) private static var servers: [String: Entry] = [:]

    /// The longest name accepted.
    public static let maxNameLength = 255

    /// Checks a name: 1–255 bytes of letters, digits and `-._~` (what fits a URL authority unescaped).
    public static func validate(_ name: String) throws {
        let bytes = Array(name.utf8)
        if bytes.isEmpty || bytes.count > maxNameLength {
            throw HTTPError(.invalidArgument, "in-process name \"\(name)\" must be 1 to \(maxNameLength) bytes long")
        }
        for b in bytes {
            switch b {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
                 UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"),
                 UInt8(ascii: "~"):
                continue
            default:
                throw HTTPError(.invalidArgument, "in-process name \"\(name)\" may only hold letters, digits and -._~")
            }
        }
    }

    static func register(name: String, server: HTTPServer) throws {
        try validate(name)
        try lock.withLock {
            if let e = servers[name], let other = e.server, other !== server {
                throw HTTPError(.invalidArgument, "in-process name \"\(name)\" is already used by another server in this process; choose another name or stop that server")
            }
            servers[name] = Entry(server)
        }
    }

    static func unregister(name: String, server: HTTPServer) {
        lock.withLock {
            if let e = servers[name], e.server === server || e.server == nil { servers[name] = nil }
        }
    }

    /// The server listening under `name`, if any.
    public static func lookup(_ name: String) -> HTTPServer? {
        lock.withLock { servers[name]?.server }
    }

    /// Connects to the server listening under `name`: returns this side's end of a new in-memory
    /// pipe, owned by `loop` (not started yet). The server's end is on one of the server's loops.
    public static func connect(name: String, loop: EventLoop) -> Result<MemoryPipeEnd, HTTPError> {
        guard let server = lookup(name) else {
            return .failure(HTTPError(.io, "connect to inproc://\(name): no server listens under that name in this process (call listenInProcess(\"\(name)\") on the server, and check that it was not stopped)"))
        }
        let (mine, theirs) = MemoryPipe.makePair(loopA: loop, loopB: server.group.next(),
                                                 labelA: "inproc://\(name)", labelB: "inproc://\(name) (server side)")
        guard server.adopt(stream: theirs) else {
            return .failure(HTTPError(.closed, "connect to inproc://\(name): the server was stopped"))
        }
        return .success(mine)
    }
}
