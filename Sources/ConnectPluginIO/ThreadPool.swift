// A pool of threads running submitted work: user handlers run here, never on an I/O loop. It keeps
// `threads` ready and starts more when work waits and every thread is busy (a streaming call holds
// its thread for its whole life), up to `maxThreads`. Threads above `threads` exit after
// `idleTimeoutNs` without work, so a burst does not pin hundreds of threads for the process's life.
//
// Hand-off, built for the unary round trip (one submit per call):
//   - idle workers wait on a stack, each on a condition of its own; `submit` gives the task straight
//     to the worker that went idle last (its stack and caches are warm) and wakes only that one;
//   - one wake at a time: while a woken worker is on its way, more work is queued for it, and it
//     passes the next task on to the next idle worker before running its own. Sixteen requests read
//     in one loop iteration wake threads one after another while work waits, not sixteen at once,
//     and the threads that finish first take what is left;
//   - with no idle worker the task is queued, and one thread at a time is started: a new thread
//     that takes queued work and still sees work waiting starts the next one ("chain growth"). A
//     burst of quick tasks is drained by the threads that finish first instead of starting a thread
//     per task (under `h2load -m 16` the old pool grew to ~25 threads for microsecond handlers), and
//     a pile of long tasks (streams) still gets a thread each, at thread-start speed;
//   - the surplus threads sit at the bottom of the stack, so they are the ones that time out.
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
    /// One worker's parking spot: its own condition (on the pool's mutex) and the task handed to it.
    private final class Worker {
        let number: Int
        let cond: UnsafeMutablePointer<pthread_cond_t>
        var task: (() -> Void)?
        /// On the idle stack (a handed task or a timeout takes it off).
        var parked = false

        init(number: Int) {
            self.number = number
            cond = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
            initMonotonicCondition(cond)
        }

        deinit {
            pthread_cond_destroy(cond)
            cond.deinitialize(count: 1)
            cond.deallocate()
        }
    }

    /// The pool's one mutex (its condition is unused: each worker parks on its own).
    private let poolLock = ConditionLock()
    private var mutex: UnsafeMutablePointer<pthread_mutex_t> { poolLock.mutex }
    /// Ring buffer: `count` tasks from `head`, capacity a power of two.
    private var ring: [(() -> Void)?] = Array(repeating: nil, count: 16)
    private var head = 0
    private var count = 0
    private var stopping = false
    /// Live workers by number; a retiring worker moves itself to `exited`, to be joined.
    private var threads: [Int: pthread_t] = [:]
    private var exited: [pthread_t] = []
    private var nextNumber = 0
    /// Idle workers, the one that went idle last on top.
    private var idleStack: [Worker] = []
    /// Started threads that have not reached their loop yet.
    private var starting = 0
    /// Workers handed a task and signaled that have not run yet: while one is on its way, new work
    /// is queued for it to pass on instead of waking another thread per task.
    private var waking = 0
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
        lock()
        defer { unlock() }
        for _ in 0..<coreThreads {
            if let e = startThread() {
                unlock()
                shutdown()
                lock()
                throw e
            }
        }
    }

    private func lock() { pthread_mutex_lock(mutex) }
    private func unlock() { pthread_mutex_unlock(mutex) }

    /// Starts one worker (lock held). The thread keeps the pool alive until it ends.
    private func startThread() -> HTTPError? {
        let worker = Worker(number: nextNumber)
        let t: pthread_t
        switch spawnThread(name: name + "-" + String(worker.number % 10000), detached: false, { [self] in work(worker) }) {
        case .success(let thread): t = thread
        case .failure(let e): return e
        }
        nextNumber &+= 1
        threads[worker.number] = t
        starting += 1
        return nil
    }

    /// Work is waiting, nobody is idle and no thread is on its way: start one (lock held). On
    /// failure the existing threads still drain the queue.
    private func growIfStarved() {
        if count > 0 && idleStack.isEmpty && starting == 0 && threads.count < maxThreads && !stopping {
            _ = startThread()
        }
    }

    /// Runs `task` on the most recently idle thread, or queues it (starting a thread if every thread
    /// is busy and the pool may grow). Returns false when the pool is shutting down.
    @discardableResult
    public func submit(_ task: @escaping () -> Void) -> Bool {
        lock()
        if stopping {
            unlock()
            return false
        }
        if waking == 0, let w = idleStack.popLast() {
            hand(task, to: w)
        } else {
            if count == ring.count { grow() }
            ring[(head &+ count) & (ring.count &- 1)] = task
            count += 1
            if waking == 0 { growIfStarved() }
        }
        let reap = exited
        exited = []
        unlock()
        for t in reap { pthread_join(t, nil) }
        return true
    }

    /// Gives `task` to a parked worker and wakes it (lock held).
    private func hand(_ task: @escaping () -> Void, to w: Worker) {
        w.parked = false
        w.task = task
        waking += 1
        pthread_cond_signal(w.cond)
    }

    /// A worker about to run a task sees work still queued: it wakes the next idle worker with the
    /// next task, or starts a thread when none is idle (lock held). One wake at a time: a burst read
    /// in one loop iteration wakes threads one after another, only as long as work is waiting.
    private func passOn() {
        guard count > 0, waking == 0 else { return }
        if let w = idleStack.popLast() {
            if let next = take() { hand(next, to: w) } else { idleStack.append(w); w.parked = true }
        } else {
            growIfStarved()
        }
    }

    /// Doubles the ring, keeping the order (lock held).
    private func grow() {
        var bigger: [(() -> Void)?] = Array(repeating: nil, count: ring.count * 2)
        for i in 0..<count { bigger[i] = ring[(head &+ i) & (ring.count &- 1)] }
        ring = bigger
        head = 0
    }

    /// Threads alive now (for tests and diagnostics).
    public var threadCount: Int {
        lock()
        defer { unlock() }
        return threads.count
    }

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

    /// Waits on the worker's own condition; false at the deadline (lock held).
    private func park(_ w: Worker, untilNs deadline: UInt64?) -> Bool {
        guard let deadline else {
            pthread_cond_wait(w.cond, mutex)
            return true
        }
        return waitMonotonic(w.cond, mutex, untilNs: deadline)
    }

    private func work(_ me: Worker) {
        lock()
        starting -= 1
        while true {
            var next = me.task
            me.task = nil
            if next == nil && count > 0 { next = take() }
            if let task = next {
                passOn()
                unlock()
                task()
                lock()
                continue
            }
            if stopping { break }
            // Park on the idle stack until a task is handed over, the pool stops, or (above the core
            // count) the idle timeout passes.
            me.parked = true
            idleStack.append(me)
            let deadline: UInt64? = threads.count > coreThreads ? monotonicNowNs() &+ idleTimeoutNs : nil
            var timedOut = false
            while me.parked && me.task == nil && !stopping {
                if !park(me, untilNs: deadline) {
                    timedOut = true
                    break
                }
            }
            if me.parked {
                me.parked = false
                idleStack.removeAll { $0 === me }
            }
            if me.task != nil { waking -= 1 }
            if me.task == nil && timedOut && count == 0 && !stopping && threads.count > coreThreads {
                // Join the threads that retired before (they are past their last lock), and leave
                // ourselves for the next one, `submit` or `shutdown`: at most one waits unjoined.
                let earlier = exited
                exited = []
                if let t = threads.removeValue(forKey: me.number) { exited.append(t) }
                unlock()
                for t in earlier { pthread_join(t, nil) }
                return
            }
        }
        unlock()
    }

    /// Runs what is queued, then stops and joins every thread; `submit` returns false from then on.
    /// May be called from any thread, including one of the pool's own (from a task): then it joins
    /// the others and detaches the calling thread, which ends by itself once its task returns (it
    /// first runs whatever is still queued). A second call finds nothing left to join.
    public func shutdown() {
        lock()
        stopping = true
        for w in idleStack {
            w.parked = false
            pthread_cond_signal(w.cond)
        }
        idleStack = []
        let ts = Array(threads.values) + exited
        threads = [:]
        exited = []
        unlock()
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
