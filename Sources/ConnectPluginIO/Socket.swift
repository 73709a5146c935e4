// I/O core: socket file descriptors — creating listening sockets (TCP, Unix), accepting, starting
// non-blocking connects, and closing. Every socket is non-blocking and close-on-exec. The bytes on a
// connected socket are handled by a connection type above (SocketConnection, in the HTTP module).
import CConnectPluginPosix
import Glibc

/// Socket-level helpers. Errors carry the system's reason and say what was attempted.
public enum Socket {
    /// The listen backlog used by servers.
    public static let defaultBacklog: Int32 = 1024

    /// Binds and listens on TCP `host:port` (empty host: every address; port 0: any free port).
    /// Returns the fd and the bound address ("host:port").
    public static func listenTCP(host: String, port: Int, backlog: Int32 = defaultBacklog) throws -> (fd: Int32, address: String) {
        let what = "listen on \(host.isEmpty ? "*" : host):\(port)"
        guard (0...65535).contains(port) else {
            throw IOError(.invalidArgument, "\(what): the port must be between 0 and 65535")
        }
        var buf = [CChar](repeating: 0, count: 128)
        let fd = cp_listen_tcp(host, Int32(port), backlog, &buf, buf.count)
        if fd < 0 { throw IOError.errno(what, Int(fd)) }
        return (fd, String(cString: buf))
    }

    /// Binds and listens on the Unix socket `path`. Returns the fd.
    public static func listenUnix(path: String, backlog: Int32 = defaultBacklog) throws -> Int32 {
        let fd = cp_listen_unix(path, backlog)
        if fd < 0 { throw IOError.errno("listen on unix:\(path)", Int(fd)) }
        return fd
    }

    /// Accepts one connection from a listening socket: the new fd, or -errno (EAGAIN when none is
    /// waiting).
    @inline(__always)
    public static func accept(_ listenFD: Int32) -> Int32 { cp_accept(listenFD) }

    /// Starts a non-blocking TCP connect. `inProgress` true: wait for writability, then ask
    /// `connectResult`.
    public static func connectTCP(host: String, port: Int) throws -> (fd: Int32, inProgress: Bool) {
        let what = "connect to " + (host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)")
        guard (0...65535).contains(port) else {
            throw IOError(.invalidArgument, "\(what): the port must be between 0 and 65535")
        }
        var inProgress: Int32 = 0
        let fd = cp_connect_tcp(host, Int32(port), &inProgress)
        if fd < 0 { throw IOError.errno(what, Int(fd)) }
        return (fd, inProgress != 0)
    }

    /// Starts a non-blocking connect to the Unix socket `path`.
    public static func connectUnix(path: String) throws -> (fd: Int32, inProgress: Bool) {
        var inProgress: Int32 = 0
        let fd = cp_connect_unix(path, &inProgress)
        if fd < 0 { throw IOError.errno("connect to unix:\(path)", Int(fd)) }
        return (fd, inProgress != 0)
    }

    /// The outcome of a connect that was in progress: 0, or -errno.
    @inline(__always)
    public static func connectResult(_ fd: Int32) -> Int32 { cp_connect_result(fd) }

    /// Turns off Nagle's algorithm on a TCP socket (ignored for other sockets).
    @inline(__always)
    public static func setNoDelay(_ fd: Int32) { _ = cp_set_nodelay(fd) }

    /// Closes a file descriptor.
    @inline(__always)
    public static func close(_ fd: Int32) { _ = cp_close(fd) }
}
