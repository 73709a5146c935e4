// A fixed pool of threads running submitted work: user handlers run here, never on an I/O loop.
import Glibc

public final class ThreadPool: @unchecked Sendable {
    private let cond = ConditionLock()
    private var queue: [() -> Void] = []
    private var head = 0
    private var stopping = false
    private var threads: [pthread_t] = []

    public init(threads count: Int, name: String = "connectplugin-worker") throws {
        for _ in 0..<max(1, count) {
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
                shutdown()
                throw HTTPError(.resource, "cannot start a handler thread (pthread_create: \(rc))")
            }
            threads.append(t)
        }
    }

    /// Queues work. Returns false when the pool is shutting down.
    @discardableResult
    public func submit(_ task: @escaping () -> Void) -> Bool {
        cond.lock()
        defer { cond.unlock() }
        if stopping { return false }
        queue.append(task)
        cond.signal()
        return true
    }

    private func work() {
        while true {
            cond.lock()
            while head >= queue.count && !stopping { cond.wait() }
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
