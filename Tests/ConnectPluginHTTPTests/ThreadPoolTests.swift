// The handler thread pool: a finished task is released at once, work runs in order, idle threads
// above the core count retire, threads are named.
import Glibc
import Testing
@testable import ConnectPluginHTTP

/// Polls `cond` every 10 ms for up to `seconds`; true once it held.
private func eventually(_ seconds: Double, _ cond: () -> Bool) -> Bool {
    let end = monotonicNowNs() &+ UInt64(seconds * 1e9)
    while monotonicNowNs() < end {
        if cond() { return true }
        usleep(10_000)
    }
    return cond()
}

/// A gate tasks block on until the test opens it.
private final class Gate: @unchecked Sendable {
    private let cond = ConditionLock()
    private var open = false
    private var waiting = 0
    func pass() {
        cond.lock()
        waiting += 1
        cond.broadcast()
        while !open { cond.wait() }
        cond.unlock()
    }
    func release() { cond.withLock { open = true; cond.broadcast() } }
    var waiters: Int { cond.withLock { waiting } }
}

private final class Payload: @unchecked Sendable {
    let bytes = [UInt8](repeating: 7, count: 1 << 20)
}

@Suite("Thread pool")
struct ThreadPoolTests {
    @Test func aFinishedTaskIsReleasedRightAfterItRan() throws {
        let pool = try ThreadPool(threads: 1, maxThreads: 1)
        defer { pool.shutdown() }
        weak var seen: Payload?
        let ran = Promise<Int>()
        do {
            let p = Payload()
            seen = p
            pool.submit { ran.fulfill(p.bytes.count) }
        }
        #expect(ran.wait() == 1 << 20)
        // Nothing else is submitted: the closure (and what it captured) must go away on its own.
        #expect(eventually(10) { seen == nil }, "the pool still holds a task that already ran")
    }

    @Test func manyLargeTasksDoNotAccumulate() throws {
        // 300 tasks, each capturing 1 MiB: at most a few may be alive at any moment.
        let pool = try ThreadPool(threads: 2, maxThreads: 2)
        defer { pool.shutdown() }
        let lock = Lock()
        var refs: [() -> Payload?] = []
        for _ in 0..<300 {
            let p = Payload()
            let done = Promise<Bool>()
            pool.submit { _ = p.bytes.first; done.fulfill(true) }
            _ = done.wait()
            lock.withLock { refs.append { [weak p] in p } }
        }
        #expect(eventually(10) { lock.withLock { refs.allSatisfy { $0() == nil } } })
    }

    @Test func tasksRunInOrderAcrossRingGrowth() throws {
        let pool = try ThreadPool(threads: 1, maxThreads: 1)
        defer { pool.shutdown() }
        let gate = Gate()
        pool.submit { gate.pass() }  // holds the only thread while 5000 tasks queue up
        #expect(eventually(10) { gate.waiters == 1 })
        let lock = Lock()
        var order: [Int] = []
        let done = Promise<Bool>()
        for i in 0..<5000 {
            pool.submit {
                lock.withLock { order.append(i) }
                if i == 4999 { done.fulfill(true) }
            }
        }
        gate.release()
        _ = done.wait()
        #expect(lock.withLock { order } == Array(0..<5000))
    }

    @Test func idleThreadsAboveTheCoreCountRetire() throws {
        let pool = try ThreadPool(threads: 2, maxThreads: 16, idleTimeoutNs: 200_000_000)
        defer { pool.shutdown() }
        #expect(pool.threadCount == 2)
        let gate = Gate()
        for _ in 0..<12 { pool.submit { gate.pass() } }
        #expect(eventually(30) { gate.waiters == 12 }, "12 blocking tasks need 12 threads")
        #expect(pool.threadCount == 12)
        gate.release()
        #expect(eventually(30) { pool.threadCount == 2 }, "threads above the core count did not exit when idle")
        // The pool still works, and grows again.
        let gate2 = Gate()
        for _ in 0..<4 { pool.submit { gate2.pass() } }
        #expect(eventually(30) { gate2.waiters == 4 })
        gate2.release()
        #expect(eventually(30) { pool.threadCount == 2 })
    }

    @Test func threadsAreNamed() throws {
        let pool = try ThreadPool(threads: 1, maxThreads: 1, name: "cp-handler")
        defer { pool.shutdown() }
        let name = Promise<String>()
        pool.submit {
            var buf = [UInt8](repeating: 0, count: 32)
            let fd = open("/proc/thread-self/comm", O_RDONLY)
            let n = fd >= 0 ? read(fd, &buf, buf.count) : -1
            if fd >= 0 { close(fd) }
            name.fulfill(n > 0 ? String(decoding: buf[0..<n], as: UTF8.self) : "")
        }
        #expect(name.wait() == "cp-handler-0\n")
    }

    @Test func shutdownRunsWhatIsQueuedAndRefusesMore() throws {
        let pool = try ThreadPool(threads: 1, maxThreads: 1)
        let lock = Lock()
        var n = 0
        for _ in 0..<100 { pool.submit { lock.withLock { n += 1 } } }
        pool.shutdown()
        #expect(lock.withLock { n } == 100)
        #expect(pool.submit {} == false)
    }
}
