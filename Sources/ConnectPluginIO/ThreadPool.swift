// A pool of threads running submitted work: user handlers run here, never on an I/O loop. It keeps
// `threads` ready and starts more when all are busy (a streaming call holds its thread for its whole
// life), up to `maxThreads`; beyond that, work waits in the queue. Threads above `threads` exit after
// `idleTimeoutNs` without work, so a burst does not pin hundreds of threads for the process's life.
//
// The queue is a ring of optional slots: a task is taken out of its slot (the slot set to nil)
// before it runs, so a finished task's closure (its call, its request bytes) is released as soon as
// the task returns, not when later tasks overwrite it.
//
// The pool itself does not decide who may use it: RPCServer admits streaming handlers per
// connection, per peer and in total before submitting (see RPCServer.StreamAdmission), so streams
// never hold every thread and unary calls always find one.
import CConnectPluginPosix
import Glibc

public final class ThreadPool: @unchecked Sendable {
    private let cond = ConditionLock()
    /// Ring buffer: `count` tasks from `head`, capacity a power of two.
    private var ring: [(() -> Void)?] = Array(repeating: nil, count: 16)
    private var head = 0
    private var count = 0
    private var stopping = false
    /// Live workers by number; a retiring worker moves itself to `exited`, to be joined.
    private var threads: [Int: pthread_t] = [:]
    private var exited: [pthread_t] = []
    private var nextNumber = 0
    private var idle = 0
    /// Started threads that have not reached their loop yet (they will take work like idle ones).
    private var starting = 0
    private let coreThreads: Int
    public let maxThreads: Int
    /// How long a thread above the core count waits for work before it exits.
    public let idleTimeoutNs: UInt64
    private let name: String

    /// `name` prefixes the thread names ("cp-handler" → "cp-handler-12"; at most 15 bytes shown).
    public init(threads count: Int, maxThreads: Int = 1024, idleTimeoutNs: UInt64 = 10_000_000_000,
                name: String = "cp-worker") throws {
        coreThreads = max(1, count)
        self.maxThreads = max(1, count, maxThreads)
        self.idleTimeoutNs = max(1_000_000, idleTimeoutNs)
        self.name = name
        cond.lock()
        defer { cond.unlock() }
        for _ in 0..<coreThreads {
            if let e = startThread() {
                cond.unlock()
                shutdown()
                cond.lock()
                throw e
            }
        }
    }

    private final class Start {
        let pool: ThreadPool
        let number: Int
        init(_ pool: ThreadPool, _ number: Int) {
            self.pool = pool
            self.number = number
        }
    }

    /// Starts one worker (lock held).
    private func startThread() -> HTTPError? {
        var t = pthread_t()
        let number = nextNumber
        let box = Unmanaged.passRetained(Start(self, number)).toOpaque()
        let rc = pthread_create(&t, nil, { arg in
            guard let arg else { return nil }
            let start = Unmanaged<Start>.fromOpaque(arg).takeRetainedValue()
            start.pool.work(number: start.number)
            return nil
        }, box)
        if rc != 0 {
            Unmanaged<Start>.fromOpaque(box).release()
            return HTTPError(.resource, "cannot start a handler thread (pthread_create: \(rc))")
        }
        nextNumber &+= 1
        threads[number] = t
        starting += 1
        return nil
    }

    /// Queues work, starting a thread if every thread is busy and the pool may grow. Returns false
    /// when the pool is shutting down.
    @discardableResult
    public func submit(_ task: @escaping () -> Void) -> Bool {
        cond.lock()
        if stopping {
            cond.unlock()
            return false
        }
        if count == ring.count { grow() }
        ring[(head &+ count) & (ring.count &- 1)] = task
        count += 1
        if count > idle + starting && threads.count < maxThreads {
            _ = startThread()  // on failure the existing threads still drain the queue
        }
        cond.signal()
        let reap = exited
        exited = []
        cond.unlock()
        for t in reap { pthread_join(t, nil) }
        return true
    }

    /// Doubles the ring, keeping the order (lock held).
    private func grow() {
        var bigger: [(() -> Void)?] = Array(repeating: nil, count: ring.count * 2)
        for i in 0..<count { bigger[i] = ring[(head &+ i) & (ring.count &- 1)] }
        ring = bigger
        head = 0
    }

    /// Threads alive now (for tests and diagnostics).
    public var threadCount: Int { cond.withLock { threads.count } }

    /// Takes the next task out of its slot (lock held, count > 0).
    private func take() -> (() -> Void)? {
        let task = ring[head]
        ring[head] = nil
        head = (head &+ 1) & (ring.count &- 1)
        count -= 1
        if count == 0 {
            head = 0
            if ring.count > 1024 { ring = Array(repeating: nil, count: 16) }  // a burst is over
        }
        return task
    }

    private func work(number: Int) {
        _ = cp_set_thread_name(name + "-" + String(number % 10000))
        var first = true
        while true {
            cond.lock()
            if first {
                starting -= 1
                first = false
            }
            idle += 1
            var retire = false
            while count == 0 && !stopping {
                if threads.count > coreThreads {
                    let timedOut = !cond.wait(untilNs: monotonicNowNs() &+ idleTimeoutNs)
                    if timedOut && count == 0 && !stopping && threads.count > coreThreads {
                        retire = true
                        break
                    }
                } else {
                    cond.wait()
                }
            }
            idle -= 1
            if retire {
                // Join the threads that retired before (they are past their last lock), and leave
                // ourselves for the next one, `submit` or `shutdown`: at most one waits unjoined.
                let earlier = exited
                exited = []
                if let me = threads.removeValue(forKey: number) { exited.append(me) }
                cond.unlock()
                for t in earlier { pthread_join(t, nil) }
                return
            }
            guard count > 0, let task = take() else {
                cond.unlock()
                return
            }
            cond.unlock()
            task()
        }
    }

    /// Runs what is queued, then stops and joins every thread; `submit` returns false from then on.
    /// May be called from any thread, including one of the pool's own (from a task): then it joins
    /// the others and detaches the calling thread, which ends by itself once its task returns (it
    /// first runs whatever is still queued). A second call finds nothing left to join.
    public func shutdown() {
        cond.lock()
        stopping = true
        cond.broadcast()
        let ts = Array(threads.values) + exited
        threads = [:]
        exited = []
        cond.unlock()
        let me = pthread_self()
        for t in ts {
            if pthread_equal(t, me) != 0 {
                pthread_detach(t)  // never join yourself: the C library frees this thread when it ends
            } else {
                pthread_join(t, nil)
            }
        }
    }
}
