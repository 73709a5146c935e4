// Plugin logs on stderr (plugin-wire.md §1.9). A go-plugin plugin logs hclog JSON lines:
//
//   {"@level":"info","@message":"starting","@timestamp":"2026-12-03T16:00:00.000000Z","port":8080}
//
// The host parses each line: JSON lines give a level, a message and key/values; other lines are
// mapped by a `[LEVEL]` prefix, else logged at debug; from go-plugin v1.7.0 a line starting with
// `panic: ` or `fatal error: ` switches the untagged lines after it to error. The plugin side writes
// the same JSON.

import CConnectPluginPosix
import ConnectPluginIO
import ConnectPluginRPC
import Glibc

/// Now, in hclog's JSON timestamp format (Go's "2006-01-02T15:04:05.000000Z07:00"), in UTC.
public func hclogTimestamp() -> String {
    var ts = timespec()
    clock_gettime(CLOCK_REALTIME, &ts)
    var t = ts.tv_sec
    var tmv = tm()
    gmtime_r(&t, &tmv)
    func pad(_ v: Int, _ n: Int) -> String {
        let s = String(v)
        return s.count >= n ? s : String(repeating: "0", count: n - s.count) + s
    }
    return pad(Int(tmv.tm_year) + 1900, 4) + "-" + pad(Int(tmv.tm_mon) + 1, 2) + "-" + pad(Int(tmv.tm_mday), 2)
        + "T" + pad(Int(tmv.tm_hour), 2) + ":" + pad(Int(tmv.tm_min), 2) + ":" + pad(Int(tmv.tm_sec), 2)
        + "." + pad(ts.tv_nsec / 1000, 6) + "Z"
}

public enum LogLevel: Int, Sendable, Comparable, CaseIterable {
    case trace = 0, debug, info, warn, error

    public static func < (a: LogLevel, b: LogLevel) -> Bool { a.rawValue < b.rawValue }

    public var name: String {
        switch self {
        case .trace: return "trace"
        case .debug: return "debug"
        case .info: return "info"
        case .warn: return "warn"
        case .error: return "error"
        }
    }

    /// hclog's names, case-insensitive; "warning" and "err" too.
    public init?(name: String) {
        switch name.lowercased() {
        case "trace": self = .trace
        case "debug": self = .debug
        case "info": self = .info
        case "warn", "warning": self = .warn
        case "error", "err": self = .error
        default: return nil
        }
    }
}

/// One log record from a plugin.
public struct LogRecord: Sendable, Equatable {
    public var level: LogLevel
    public var message: String
    /// hclog's `@timestamp`, as written; "" when the line had none.
    public var timestamp: String
    /// Every other key, in line order, with values as JSON text for non-strings.
    public var fields: [(String, String)]

    public init(level: LogLevel, message: String, timestamp: String = "", fields: [(String, String)] = []) {
        self.level = level
        self.message = message
        self.timestamp = timestamp
        self.fields = fields
    }

    public static func == (a: LogRecord, b: LogRecord) -> Bool {
        a.level == b.level && a.message == b.message && a.timestamp == b.timestamp
            && a.fields.count == b.fields.count && !zip(a.fields, b.fields).contains { $0.0 != $1.0 || $0.1 != $1.1 }
    }

    /// The hclog JSON line (without the newline) a plugin writes on stderr.
    public func jsonLine() -> String {
        var members: [(String, JSONValue)] = [
            ("@level", .string(level.name)), ("@message", .string(message)),
        ]
        if !timestamp.isEmpty { members.append(("@timestamp", .string(timestamp))) }
        for (k, v) in fields { members.append((k, .string(v))) }
        return String(decoding: JSON.serialize(.object(members)), as: UTF8.self)
    }
}

/// Parses a plugin's stderr, line by line (one parser per plugin: it keeps the panic state).
public struct HCLogParser: Sendable {
    private var panicking = false

    public init() {}

    public mutating func parse(_ line: String) -> LogRecord {
        let bytes = Array(line.utf8)
        if bytes.first == UInt8(ascii: "{"), let v = try? JSON.parse(bytes), let members = v.objectValue {
            var level = LogLevel.info
            var message = ""
            var timestamp = ""
            var fields: [(String, String)] = []
            for (k, value) in members {
                switch k {
                case "@level": level = value.stringValue.flatMap { LogLevel(name: $0) } ?? .info
                case "@message": message = value.stringValue ?? String(decoding: JSON.serialize(value), as: UTF8.self)
                case "@timestamp": timestamp = value.stringValue ?? ""
                default: fields.append((k, value.stringValue ?? String(decoding: JSON.serialize(value), as: UTF8.self)))
                }
            }
            return LogRecord(level: level, message: message, timestamp: timestamp, fields: fields)
        }
        for level in LogLevel.allCases {
            let tag = "[" + level.name.uppercased() + "]"
            if line.hasPrefix(tag) {
                var rest = line.dropFirst(tag.count)  // the tag is ASCII: one character a byte
                while rest.first == " " { rest = rest.dropFirst() }
                return LogRecord(level: level, message: String(rest))
            }
        }
        if line.hasPrefix("panic: ") || line.hasPrefix("fatal error: ") { panicking = true }
        return LogRecord(level: panicking ? .error : .debug, message: line)
    }
}

/// The plugin's own logs (plugin side): hclog JSON lines on the process's real stderr — the one
/// the host parses, kept by `serve` while fd 2 is on the pipe forwarded through plugin.GRPCStdio
/// (before and after serving, fd 2). One line is one write, under a lock, so that lines from
/// several threads and the runtime's own never interleave. The bindings' loggers (C's
/// connectplugin_plugin_log, Go's PluginLogger and slog handler, Python's logging handler) end here.
public enum PluginLog {
    private static let lock = Lock()
    nonisolated(unsafe) private static var fd: Int32 = -1
    /// Records below this level are dropped (default trace: everything, as go-plugin's default).
    nonisolated(unsafe) private static var minimum = LogLevel.trace

    /// Set by `serve` (the kept real stderr) and reset to -1 (fd 2) when it stops.
    static func setDescriptor(_ d: Int32) { lock.withLock { fd = d } }

    /// The lowest level written (e.g. from a plugin's own flag or environment).
    public static var level: LogLevel {
        get { lock.withLock { minimum } }
        set { lock.withLock { minimum = newValue } }
    }

    /// Writes `record` as one hclog JSON line (with now as its timestamp when it has none).
    public static func write(_ record: LogRecord) {
        var r = record
        if r.timestamp.isEmpty { r.timestamp = hclogTimestamp() }
        let line = Array((r.jsonLine() + "\n").utf8)
        lock.withLock {
            if r.level < minimum { return }
            let d = fd >= 0 ? fd : 2
            _ = line.withUnsafeBytes { cp_write_all(d, $0.baseAddress, UInt($0.count)) }
        }
    }

    public static func log(_ level: LogLevel, _ message: String, _ fields: [(String, String)] = []) {
        write(LogRecord(level: level, message: message, fields: fields))
    }
}
