// I/O core: child processes. `ChildProcess.spawn` starts a program with posix_spawn (stdin, stdout and
// stderr inherited, /dev/null, a given fd, or a pipe); `watch` reads its stdout/stderr pipes on an
// event loop (non-blocking reads delivered as bytes) and reports its exit through a pidfd registered
// with the same epoll loop. No SIGCHLD handler is installed and none is needed: the pidfd becomes
// readable when the child ends, and the child is reaped then. A watcher holds the handle until it
// saw the exit; a handle released unwatched hands its running child to a `Reaper` on the shared
// event-loop group, so no zombie remains whatever the caller does. A watched child's status stays on
// the handle (`exitStatus`). `ExitWaiter` is the one wait (pidfd or polling) behind both. `FDReader` is the pipe reader, usable for any non-blocking readable fd.
//
// A child that dies with its parent: `parentDeathSignal` (fork/exec with PR_SET_PDEATHSIG, since
// posix_spawn cannot set it); Linux's PR_SET_PDEATHSIG (prctl in the child between fork/vfork and
// exec) fires when the *thread* that spawned the child exits, not the process, so the launcher must
// spawn from a thread that lives as long as the runtime (a dedicated launcher thread, not a pool or
// caller thread), and the child must check getppid() right after prctl (the parent may already be
// gone). The portable safety net is a pipe the child holds (its stdin or a handshake fd): end of file
// there means the runtime went away, and the plugin side exits.
import CConnectPluginPosix
import Glibc

/// How a child process ended.
public enum ProcessExitStatus: Equatable, Sendable, CustomStringConvertible {
    /// It exited with this status (0–255).
    case exited(Int32)
    /// A signal ended it.
    case signaled(Int32)
    /// It ended, but its status could not be collected (another part of the process reaped it, for
    /// example with SIGCHLD set to SIG_IGN); the text says why.
    case unknown(String)

    public var description: String {
        switch self {
        case .exited(let c): return "exited with status \(c)"
        case .signaled(let s): return "killed by signal \(s)"
        case .unknown(let why): return "ended with an unknown status (\(why))"
        }
    }
}

/// Where a child's standard stream goes.
public enum StdioMode: Sendable {
    /// The same as this process's.
    case inherit
    /// /dev/null.
    case null
    /// A new pipe; this process gets the other end (`ChildProcess.stdinFD` etc.).
    case pipe
    /// This file descriptor (which stays open in this process and remains the caller's).
    case fd(Int32)
}

/// A started child process. Its pipe ends belong to it until `watch` hands the read ends to readers;
/// `stdinFD` stays the caller's to write to and close (`closeStdin`).
public final class ChildProcess: @unchecked Sendable {
    public let pid: Int32
    private let lock = Lock()
    /// Write end of the child's stdin pipe (-1 unless stdin was `.pipe`), blocking.
    public private(set) var stdinFD: Int32
    /// Read ends of the child's stdout/stderr pipes (-1 unless `.pipe`), non-blocking.
    public private(set) var stdoutFD: Int32
    public private(set) var stderrFD: Int32
    /// -1 when the kernel has no pidfd_open (then the exit is polled).
    let pidfd: Int32
    private var reaped = false
    private var watching = false
    private var status: ProcessExitStatus?

    private init(pid: Int32, pidfd: Int32, stdinFD: Int32, stdoutFD: Int32, stderrFD: Int32) {
        self.pid = pid
        self.pidfd = pidfd
        self.stdinFD = stdinFD
        self.stdoutFD = stdoutFD
        self.stderrFD = stderrFD
    }

    deinit {
        for fd in [stdinFD, stdoutFD, stderrFD] where fd >= 0 { _ = cp_close(fd) }
        // A watcher holds the handle until it saw the exit, so here nobody watches: reap now if the
        // child ended, else hand it (and the pidfd) to a reaper, so that it leaves no zombie.
        if !reaped {
            var exited: Int32 = 0
            var code: Int32 = 0
            if cp_wait_exit(pid, &exited, &code) == 0 {
                Reaper.adopt(pid: pid, pidfd: pidfd)
                return
            }
        }
        if pidfd >= 0 { _ = cp_close(pidfd) }
    }

    /// Starts `executable` (looked up in PATH when `searchPath` and it has no slash) with `arguments`
    /// (without argv[0], which is `executable`). `environment` holds "NAME=value" entries (nil: this
    /// process's environment). `parentDeathSignal` (0: none) is sent to the child when the calling
    /// *thread* ends (Linux PR_SET_PDEATHSIG, through fork/exec instead of posix_spawn): call it from
    /// a thread that lives as long as the process (the plugin launcher's spawner thread).
    public static func spawn(_ executable: String, arguments: [String] = [], environment: [String]? = nil,
                             searchPath: Bool = true, workingDirectory: String? = nil,
                             stdin: StdioMode = .null, stdout: StdioMode = .pipe, stderr: StdioMode = .pipe,
                             parentDeathSignal: Int32 = 0)
        throws -> ChildProcess
    {
        if executable.isEmpty { throw IOError(.invalidArgument, "spawn: the executable name is empty") }
        if (([executable] + arguments + (environment ?? [])) + [workingDirectory ?? ""]).contains(where: { $0.utf8.contains(0) }) {
            throw IOError(.invalidArgument, "spawn \(executable): an argument or environment entry contains a NUL byte")
        }
        var opened: [Int32] = []  // every fd made here; the parent's ends survive on success
        var childEnds: [Int32] = []
        func cleanup() { for fd in opened { _ = cp_close(fd) } }

        func setUp(_ mode: StdioMode, childReads: Bool) throws -> (child: Int32, parent: Int32) {
            switch mode {
            case .inherit: return (-1, -1)
            case .fd(let fd): return (fd, -1)
            case .null:
                let fd = open("/dev/null", O_RDWR | O_CLOEXEC)
                if fd < 0 { throw IOError.errno("spawn \(executable): open /dev/null", -Int(cp_errno())) }
                opened.append(fd)
                childEnds.append(fd)
                return (fd, -1)
            case .pipe:
                var fds: [Int32] = [-1, -1]
                let rc = fds.withUnsafeMutableBufferPointer { cp_pipe($0.baseAddress) }
                if rc < 0 { throw IOError.errno("spawn \(executable): pipe", Int(rc)) }
                opened.append(contentsOf: fds)
                let child = childReads ? fds[0] : fds[1]
                let parent = childReads ? fds[1] : fds[0]
                childEnds.append(child)
                return (child, parent)
            }
        }

        let i: (child: Int32, parent: Int32)
        let o: (child: Int32, parent: Int32)
        let e: (child: Int32, parent: Int32)
        do {
            i = try setUp(stdin, childReads: true)
            o = try setUp(stdout, childReads: false)
            e = try setUp(stderr, childReads: false)
        } catch {
            cleanup()
            throw error
        }
        // Reads of stdout/stderr happen on an event loop: non-blocking.
        for fd in [o.parent, e.parent] where fd >= 0 { _ = cp_set_nonblocking(fd, 1) }

        let argv = [executable] + arguments
        var cArgs: [UnsafeMutablePointer<CChar>?] = argv.map { strdup($0) }
        cArgs.append(nil)
        let cEnv: [UnsafeMutablePointer<CChar>?]? = environment.map { $0.map { strdup($0) } + [nil] }
        defer {
            for p in cArgs { free(p) }
            if let env = cEnv { for p in env { free(p) } }
        }
        if cArgs.dropLast().contains(where: { $0 == nil }) || (cEnv?.dropLast().contains(where: { $0 == nil }) ?? false) {
            cleanup()
            throw IOError(.resource, "spawn \(executable): out of memory")
        }
        var pid: Int32 = 0
        let rc: Int32 = cArgs.withUnsafeMutableBufferPointer { argvBuf in
            func run(_ envp: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
                if let wd = workingDirectory {
                    return cp_spawn_ex(executable, argvBuf.baseAddress, envp, searchPath ? 1 : 0, i.child, o.child, e.child, wd,
                                       parentDeathSignal, &pid)
                }
                return cp_spawn_ex(executable, argvBuf.baseAddress, envp, searchPath ? 1 : 0, i.child, o.child, e.child, nil,
                                   parentDeathSignal, &pid)
            }
            if var env = cEnv {
                return env.withUnsafeMutableBufferPointer { run($0.baseAddress) }
            }
            return run(nil)
        }
        // The child has its copies; the parent keeps only its own ends.
        for fd in childEnds { _ = cp_close(fd) }
        opened.removeAll { childEnds.contains($0) }
        if rc != 0 {
            cleanup()
            let reason = String(cString: cp_strerror(-rc))
            if -rc == ENOENT {
                throw IOError(.invalidArgument, "spawn \(executable): no such program (\(reason)); check the path or PATH")
            }
            throw IOError(.io, "spawn \(executable): \(reason)")
        }
        let pfd = cp_pidfd_open(pid)
        return ChildProcess(pid: pid, pidfd: pfd >= 0 ? pfd : -1, stdinFD: i.parent, stdoutFD: o.parent, stderrFD: e.parent)
    }

    /// Closes the write end of the child's stdin (the child reads end of file). Thread-safe.
    public func closeStdin() {
        let fd: Int32 = lock.withLock {
            let fd = stdinFD
            stdinFD = -1
            return fd
        }
        if fd >= 0 { _ = cp_close(fd) }
    }

    /// Sends `signal` (e.g. SIGTERM) unless the child was already reaped. Thread-safe.
    @discardableResult
    public func sendSignal(_ signal: Int32) -> IOError? {
        let rc: Int32 = lock.withLock {
            if reaped { return -ESRCH }
            return pidfd >= 0 ? cp_pidfd_send_signal(pidfd, signal) : cp_kill(pid, signal)
        }
        return rc == 0 ? nil : IOError.errno("signal \(signal) to process \(pid)", Int(rc))
    }

    /// Whether the child was reaped (its exit was reported).
    public var hasExited: Bool { lock.withLock { reaped } }

    /// How the child ended, once a watcher reaped it (nil before). Thread-safe.
    public var exitStatus: ProcessExitStatus? { lock.withLock { status } }

    /// Reaps the child if it ended (non-blocking). nil while it runs.
    func pollExit() -> ProcessExitStatus? {
        lock.lock()
        defer { lock.unlock() }
        if reaped { return nil }
        var exited: Int32 = 0
        var code: Int32 = 0
        let rc = cp_wait_exit(pid, &exited, &code)
        if rc == 0 { return nil }
        reaped = true
        let result: ProcessExitStatus
        if rc < 0 {
            result = .unknown("waitpid: \(String(cString: cp_strerror(-rc)))")
        } else {
            result = exited != 0 ? .exited(code) : .signaled(code)
        }
        status = result
        return result
    }

    /// Watches the child on `loop`: `stdout`/`stderr` get the bytes of the respective pipe (when it
    /// is `.pipe` and a handler is given) and then `end` once with nil at end of file or the error;
    /// `exit` gets the exit status once the child ended (it may come before the pipes' last bytes:
    /// wait for all three when you need them all). Callbacks run on the loop thread. Call once;
    /// later calls return false and do nothing.
    @discardableResult
    public func watch(on loop: EventLoop,
                      stdout: FDReader.Handler? = nil,
                      stderr: FDReader.Handler? = nil,
                      exit: @escaping (ProcessExitStatus) -> Void) -> Bool
    {
        let fds: (Int32, Int32)? = lock.withLock {
            if watching { return nil }
            watching = true
            var o: Int32 = -1, e: Int32 = -1
            if stdout != nil {
                o = stdoutFD
                stdoutFD = -1
            }
            if stderr != nil {
                e = stderrFD
                stderrFD = -1
            }
            return (o, e)
        }
        guard let (o, e) = fds else { return false }
        if o >= 0, let h = stdout { FDReader(fd: o, loop: loop, handler: h).start() }
        if e >= 0, let h = stderr { FDReader(fd: e, loop: loop, handler: h).start() }
        ExitWatcher.start(process: self, loop: loop, onExit: exit)
        return true
    }
}

/// Waits on a loop until a child ended: through its pidfd in epoll, or without one by polling (1 ms,
/// doubling up to 100 ms). `check` runs on the loop whenever the child may have ended and returns
/// true once it is done with it; then the waiter unregisters, calls `done` once and lets go of both.
/// The loop keeps the waiter alive while it is registered or its timer is pending.
final class ExitWaiter: EventHandler {
    private let loop: EventLoop
    private let pidfd: Int32
    private var check: (() -> Bool)?
    private var done: (() -> Void)?
    private var token: UInt64 = 0
    private var pollDelayNs: UInt64 = 1_000_000

    init(loop: EventLoop, pidfd: Int32, check: @escaping () -> Bool, done: @escaping () -> Void) {
        self.loop = loop
        self.pidfd = pidfd
        self.check = check
        self.done = done
    }

    /// Starts waiting (from any thread).
    func start() {
        loop.execute { [self] in
            if run() { return }
            if pidfd >= 0, let t = loop.register(fd: pidfd, interest: CP_EV_READ, handler: self) {
                token = t
                return
            }
            poll()
        }
    }

    private func poll() {
        loop.schedule(afterNs: pollDelayNs) { [self] in
            if run() { return }
            pollDelayNs = min(pollDelayNs * 2, 100_000_000)
            poll()
        }
    }

    func handleEvents(_ events: UInt32) { _ = run() }

    /// Loop thread. True once finished.
    private func run() -> Bool {
        guard let c = check else { return true }
        if !c() { return false }
        check = nil
        if token != 0 {
            loop.unregister(fd: pidfd, token: token)
            token = 0
        }
        let d = done
        done = nil
        d?()
        return true
    }
}

/// Reports a watched child's exit on a loop (`ChildProcess.watch`); holds the process until then.
enum ExitWatcher {
    static func start(process: ChildProcess, loop: EventLoop, onExit: @escaping (ProcessExitStatus) -> Void) {
        var status: ProcessExitStatus?
        ExitWaiter(loop: loop, pidfd: process.pidfd, check: {
            status = process.pollExit()
            return status != nil || process.hasExited  // reaped elsewhere: nothing more will come
        }, done: {
            if let status { onExit(status) }
        }).start()
    }
}

/// Reaps a child nobody watches any more (`ChildProcess.deinit`): on a loop of the shared group or,
/// when no loop can be started, on a thread blocked in waitpid. Owns the pidfd and closes it once
/// the child is gone.
enum Reaper {
    /// Takes over `pid` (a running child of ours) and `pidfd` (-1 if none). Any thread.
    static func adopt(pid: Int32, pidfd: Int32) {
        guard let loop = try? EventLoopGroup.shared().next() else {
            if pidfd >= 0 { _ = cp_close(pidfd) }
            reapOnThread(pid)
            return
        }
        ExitWaiter(loop: loop, pidfd: pidfd, check: {
            var exited: Int32 = 0
            var code: Int32 = 0
            return cp_wait_exit(pid, &exited, &code) != 0  // reaped, or gone (ECHILD)
        }, done: {
            if pidfd >= 0 { _ = cp_close(pidfd) }
        }).start()
    }

    /// The last resort: a detached thread that blocks in waitpid.
    private static func reapOnThread(_ pid: Int32) {
        startThread(name: "cp-reaper") {
            var status: Int32 = 0
            while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        }
    }
}

/// Reads a non-blocking fd on a loop until end of file, handing the bytes to a handler; closes the
/// fd at the end. Owned by the loop while registered.
public final class FDReader: EventHandler {
    /// What a reader reports, on its loop thread.
    public struct Handler {
        /// Bytes read (valid during the call only).
        public var data: (UnsafeRawBufferPointer) -> Void
        /// End of file (nil) or the read error; called once, after the last `data`.
        public var end: (IOError?) -> Void
        public init(data: @escaping (UnsafeRawBufferPointer) -> Void, end: @escaping (IOError?) -> Void) {
            self.data = data
            self.end = end
        }
    }

    public let loop: EventLoop
    private var fd: Int32
    private let handler: Handler
    private var token: UInt64 = 0
    private var buffer = [UInt8](repeating: 0, count: 16 * 1024)

    /// Takes ownership of `fd` (it must be non-blocking).
    public init(fd: Int32, loop: EventLoop, handler: Handler) {
        self.fd = fd
        self.loop = loop
        self.handler = handler
    }

    /// Starts reading (from any thread).
    public func start() {
        loop.execute { [self] in
            if fd < 0 { return }
            guard let t = loop.register(fd: fd, interest: CP_EV_READ, handler: self) else {
                finish(IOError(.io, "cannot register fd \(fd) with epoll"))
                return
            }
            token = t
        }
    }

    /// Stops reading and closes the fd without reporting the end (loop thread).
    public func stop() {
        if fd < 0 { return }
        if token != 0 { loop.unregister(fd: fd, token: token) }
        token = 0
        _ = cp_close(fd)
        fd = -1
    }

    public func handleEvents(_ events: UInt32) {
        for _ in 0..<16 {
            if fd < 0 { return }
            let n = buffer.withUnsafeMutableBytes { cp_read(fd, $0.baseAddress, $0.count) }
            if n > 0 {
                let count = n
                buffer.withUnsafeBytes { handler.data(UnsafeRawBufferPointer(rebasing: $0[0..<count])) }
                if count < buffer.count { return }
            } else if n == 0 {
                finish(nil)
                return
            } else {
                let e = Int32(truncatingIfNeeded: -n)
                if e == EAGAIN || e == EWOULDBLOCK || e == EINTR { return }
                finish(IOError.errno("read", n))
                return
            }
        }
    }

    private func finish(_ error: IOError?) {
        stop()
        handler.end(error)
    }
}
