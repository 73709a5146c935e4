// A pool of threads running submitted work: user handlers run here, never on an I/O loop. It keeps
// `threads` ready and starts more when all are busy (a streaming call holds its thread for its whole
// life), up to `maxThreads`; beyond that, work waits in the queue.
import Glibc

public final class ThreadPool: @unchecked Sendable {
    private let cond = ConditionLock()
    private var queue: [() -> Void] = []
    private var head = 0
    private var stopping = false
    private var threads: [pthread_t] = []
    private var idle = 0
    public let maxThreads: Int

    public init(threads count: Int, maxThreads: Int = 1024, name: String = "connectplugin-worker") throws {
        self.maxThreads = max(1, count, maxThreads)
        cond.lock()
        defer { cond.unlock() }
        for _ in 0..<max(1, count) {
            if let e = startThread() {
                cond.unlock()
                shutdown()
                cond.lock()
                throw e
            }
        }
    }

    /// Starts one worker (lock held).
    private func startThread() -> HTTPError? {
        var t = pthread_t()
        let box = Unmanaged.passRetained(self).toOpaque()
        let rc = pthread_create(&t, nil, { arg in
            guard let arg else { return nil }
            let pool = Unmanaged<ThreadPool>.fromOpaque(arg).takeRetainedValue()
            pool.work()
            return nil
        }, box)
        if rc != 0 {
            Unmanaged<ThreadPool>.fromOpaque(box).release()
            return HTTPError(.resource, "cannot start a handler thread (pthread_create: \(rc))")
        }
        threads.append(t)
        return nil
    }

    /// Queues work, starting a thread if every thread is busy and the pool may grow. Returns false
    /// when the pool is shutting down.
    @discardableResult
    public func submit(_ task: @escaping () -> Void) -> Bool {
        cond.lock()
        defer { cond.unlock() }
        if stopping { return false }
        queue.append(task)
        let waiting = queue.count - head
        if waiting > idle && threads.count < maxThreads {
            _ = startThread()  // on failure the existing threads still drain the queue
        }
        cond.signal()
        return true
    }

    public var threadCount: Int { cond.withLock { threads.count } }

    private func work() {
        while true {
            cond.lock()
            idle += 1
            while head >= queue.count && !stopping { cond.wait() }
            idle -= 1
            if head >= queue.count {
                cond.unlock()
                return
            }
            let task = queue[head]
            head += 1
            if head > 1024 && head * 2 > queue.count {
                queue.removeFirst(head)
                head = 0
            }
            cond.unlock()
            task()
        }
    }

    /// Runs what is queued, then stops and joins every thread. Must not be called from a pool thread.
    public func shutdown() {
        cond.lock()
        stopping = true
        cond.broadcast()
        let ts = threads
        threads = []
        cond.unlock()
        let me = pthread_self()
        for t in ts where pthread_equal(t, me) == 0 { pthread_join(t, nil) }
    }
}
