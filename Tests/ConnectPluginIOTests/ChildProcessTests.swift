// Child processes: posix_spawn, stdout/stderr pipes read on an event loop, exit through a pidfd.
import CConnectPluginPosix
import Glibc
import Testing
@testable import ConnectPluginIO

private struct Outcome {
    var stdout: [UInt8] = []
    var stderr: [UInt8] = []
    var stdoutEnded = false
    var stderrEnded = false
    var exit: ProcessExitStatus?
    var done: Bool { stdoutEnded && stderrEnded && exit != nil }
}

/// Watches `child` on a loop and waits for both pipes' ends and its exit.
private func collect(_ child: ChildProcess, loop: EventLoop) -> Outcome {
    let box = Box(Outcome())
    let watching = child.watch(
        on: loop,
        stdout: FDReader.Handler(data: { b in box.update { $0.stdout.append(contentsOf: b) } },
                                 end: { _ in box.update { $0.stdoutEnded = true } }),
        stderr: FDReader.Handler(data: { b in box.update { $0.stderr.append(contentsOf: b) } },
                                 end: { _ in box.update { $0.stderrEnded = true } }),
        exit: { s in box.update { $0.exit = s } })
    #expect(watching)
    #expect(!child.watch(on: loop, exit: { _ in }))  // only once
    return box.wait { $0.done }
}

@Suite struct ChildProcessTests {
    @Test func readsStdoutAndStderrAndTheExitStatus() throws {
        let loop = try EventLoop(name: "child-test")
        let child = try ChildProcess.spawn("/bin/sh", arguments: ["-c", "echo hi; echo err >&2; exit 3"])
        #expect(child.pid > 0)
        let out = collect(child, loop: loop)
        #expect(String(decoding: out.stdout, as: UTF8.self) == "hi\n")
        #expect(String(decoding: out.stderr, as: UTF8.self) == "err\n")
        #expect(out.exit == .exited(3))
        #expect(child.hasExited)
    }

    @Test func largeOutputArrivesWhole() throws {
        let loop = try EventLoop(name: "child-test")
        // 200 000 bytes: more than a pipe buffer, so the child blocks until the loop reads.
        let child = try ChildProcess.spawn("/bin/sh", arguments: ["-c", "head -c 200000 /dev/zero"])
        let out = collect(child, loop: loop)
        #expect(out.stdout.count == 200_000)
        #expect(out.stdout.allSatisfy { $0 == 0 })
        #expect(out.exit == .exited(0))
    }

    @Test func stdinPipeAndEnvironment() throws {
        let loop = try EventLoop(name: "child-test")
        let child = try ChildProcess.spawn("sh", arguments: ["-c", "printf %s \"$GREETING\"; cat"],
                                           environment: ["GREETING=hello ", "PATH=/usr/bin:/bin"], stdin: .pipe)
        #expect(child.stdinFD >= 0)
        let input = Array("from stdin".utf8)
        let n = input.withUnsafeBytes { write(child.stdinFD, $0.baseAddress, $0.count) }
        #expect(n == input.count)
        child.closeStdin()
        let out = collect(child, loop: loop)
        #expect(String(decoding: out.stdout, as: UTF8.self) == "hello from stdin")
        #expect(out.exit == .exited(0))
    }

    @Test func aSignalEndsTheChildAndIsReported() throws {
        let loop = try EventLoop(name: "child-test")
        let child = try ChildProcess.spawn("/bin/sh", arguments: ["-c", "exec sleep 60"], stdout: .null, stderr: .null)
        #expect(child.sendSignal(SIGTERM) == nil)
        let status = Box<ProcessExitStatus?>(nil)
        child.watch(on: loop, exit: { s in status.update { $0 = s } })
        #expect(status.wait { $0 != nil } == .signaled(SIGTERM))
        // Once reaped, the pid may belong to someone else: no more signals.
        #expect(child.sendSignal(SIGTERM) != nil)
    }

    @Test func workingDirectory() throws {
        let loop = try EventLoop(name: "child-test")
        let child = try ChildProcess.spawn("/bin/pwd", workingDirectory: "/tmp")
        let out = collect(child, loop: loop)
        #expect(String(decoding: out.stdout, as: UTF8.self) == "/tmp\n")
    }

    /// A handle dropped without `watch` must not leave a zombie: the child is reaped anyway.
    @Test func droppedHandlesLeaveNoZombies() throws {
        var pids: [Int32] = []
        for _ in 0..<40 {
            let child = try ChildProcess.spawn("true", stdout: .null, stderr: .null)
            pids.append(child.pid)
        }  // every handle is released here, none watched
        // Bounded wait: `true` ends quickly, but the machine may be loaded.
        let deadline = monotonicNowNs() &+ testTimeoutNs
        var zombies = pids.filter(isOurZombie)
        while !zombies.isEmpty && monotonicNowNs() < deadline {
            usleep(20_000)
            zombies = zombies.filter(isOurZombie)
        }
        #expect(zombies.isEmpty, "zombies left: \(zombies)")
    }

    /// Without a pidfd (old kernels) the reaper polls: a child handed to it is reaped all the same.
    @Test func theReaperPollsWithoutAPidfd() throws {
        var argv: [UnsafeMutablePointer<CChar>?] = [strdup("sh"), strdup("-c"), strdup("sleep 0.1"), nil]
        defer { for p in argv { free(p) } }
        var pid: Int32 = 0
        let rc = argv.withUnsafeMutableBufferPointer { cp_spawn("sh", $0.baseAddress, nil, 1, -1, -1, -1, nil, &pid) }
        #expect(rc == 0 && pid > 0)
        if rc != 0 { return }
        Reaper.adopt(pid: pid, pidfd: -1)
        let deadline = monotonicNowNs() &+ testTimeoutNs
        while isOurChild(pid) && monotonicNowNs() < deadline { usleep(10_000) }
        #expect(!isOurChild(pid), "process \(pid) was not reaped (zombie: \(isOurZombie(pid)))")
    }

    /// The exit status stays readable on the handle after a watcher reported it.
    @Test func theExitStatusStaysOnTheHandle() throws {
        let loop = try EventLoop(name: "child-test")
        let child = try ChildProcess.spawn("/bin/sh", arguments: ["-c", "exit 7"], stdout: .null, stderr: .null)
        #expect(child.exitStatus == nil || child.exitStatus == .exited(7))
        let status = Box<ProcessExitStatus?>(nil)
        child.watch(on: loop, exit: { s in status.update { $0 = s } })
        #expect(status.wait { $0 != nil } == .exited(7))
        #expect(child.exitStatus == .exited(7))
    }

    @Test func aMissingProgramIsAClearError() {
        do {
            _ = try ChildProcess.spawn("/nonexistent/connectplugin-no-such-program")
            Issue.record("spawn of a missing program succeeded")
        } catch let e as IOError {
            #expect(e.kind == .invalidArgument)
            #expect(e.message.contains("no such program"))
        } catch {
            Issue.record("unexpected error \(error)")
        }
        #expect(throws: IOError.self) { try ChildProcess.spawn("sh", arguments: ["-c", "a\u{0}b"]) }
    }
}

/// Whether /proc says `pid` is a zombie whose parent is this process.
private func isOurZombie(_ pid: Int32) -> Bool { procState(pid).map { $0.state == "Z" && $0.ppid == getpid() } ?? false }

/// Whether `pid` is (still) a process whose parent is this one, running or a zombie.
private func isOurChild(_ pid: Int32) -> Bool { procState(pid)?.ppid == getpid() }

/// The state letter and parent of `pid` from /proc/PID/stat; nil once it is gone.
private func procState(_ pid: Int32) -> (state: Substring, ppid: Int32)? {
    let f = fopen("/proc/\(pid)/stat", "r")
    guard let f else { return nil }  // gone: reaped
    defer { fclose(f) }
    var buf = [CChar](repeating: 0, count: 512)
    guard fgets(&buf, Int32(buf.count), f) != nil else { return nil }
    let line = String(cString: buf)
    // "pid (comm) S ppid ...": comm may hold spaces and parentheses; the state follows the last ')'.
    guard let close = line.lastIndex(of: ")") else { return nil }
    let fields = line[line.index(after: close)...].split(separator: " ")
    guard fields.count >= 2, let ppid = Int32(fields[1]) else { return nil }
    return (fields[0], ppid)
}
