// A call's locks in one allocation (ClientStream): three pthread mutexes and a condition on the
// third. A call that only the thread that made it ever touches (`RPCClient.unary`) has none: its
// lock operations do nothing, which keeps the unary path's allocations down.
import ConnectPluginIO
import Glibc

/// One mutex of a `CallLocks` block, or no lock at all (nil pointer).
struct CallMutex {
    let mutex: UnsafeMutablePointer<pthread_mutex_t>?
    /// The condition used with this mutex (only the state lock has one).
    let cond: UnsafeMutablePointer<pthread_cond_t>?

    func lock() { if let m = mutex { pthread_mutex_lock(m) } }
    func unlock() { if let m = mutex { pthread_mutex_unlock(m) } }

    func withLock<T>(_ body: () throws -> T) rethrows -> T {
        lock()
        defer { unlock() }
        return try body()
    }

    func broadcast() { if let c = cond { pthread_cond_broadcast(c) } }
    /// Waits (the lock held). Without a lock there is no other thread to wait for: returns.
    func wait() { if let c = cond, let m = mutex { pthread_cond_wait(c, m) } }
    /// Waits until the monotonic time `deadlineNs` (the lock held).
    func wait(untilNs deadlineNs: UInt64) {
        guard let c = cond, let m = mutex else { return }
        var ts = timespec()
        ts.tv_sec = Int(deadlineNs / 1_000_000_000)
        ts.tv_nsec = Int(deadlineNs % 1_000_000_000)
        _ = pthread_cond_timedwait(c, m, &ts)
    }
}

/// The memory of a call's three mutexes and one condition (monotonic clock).
struct CallLocks {
    private let base: UnsafeMutableRawPointer?
    private static let mutexStride = MemoryLayout<pthread_mutex_t>.stride
    private static let condOffset: Int = {
        let end = 3 &* MemoryLayout<pthread_mutex_t>.stride
        let a = MemoryLayout<pthread_cond_t>.alignment
        return (end &+ a &- 1) / a &* a
    }()

    /// `shared`: the call is used from more than one thread (a stream handle).
    init(shared: Bool) {
        guard shared else {
            base = nil
            return
        }
        let size = CallLocks.condOffset &+ MemoryLayout<pthread_cond_t>.stride
        let align = max(MemoryLayout<pthread_mutex_t>.alignment, MemoryLayout<pthread_cond_t>.alignment)
        let p = UnsafeMutableRawPointer.allocate(byteCount: size, alignment: align)
        for i in 0..<3 {
            let m = (p + i &* CallLocks.mutexStride).bindMemory(to: pthread_mutex_t.self, capacity: 1)
            m.initialize(to: pthread_mutex_t())
            pthread_mutex_init(m, nil)
        }
        let c = (p + CallLocks.condOffset).bindMemory(to: pthread_cond_t.self, capacity: 1)
        initMonotonicCondition(c)
        base = p
    }

    /// Mutex 0, 1 or 2; mutex 2 comes with the condition.
    func mutex(_ i: Int) -> CallMutex {
        guard let p = base else { return CallMutex(mutex: nil, cond: nil) }
        let m = (p + i &* CallLocks.mutexStride).assumingMemoryBound(to: pthread_mutex_t.self)
        let c = i == 2 ? (p + CallLocks.condOffset).assumingMemoryBound(to: pthread_cond_t.self) : nil
        return CallMutex(mutex: m, cond: c)
    }

    /// Frees the block (once, from the owner's deinit).
    func destroy() {
        guard let p = base else { return }
        for i in 0..<3 {
            pthread_mutex_destroy((p + i &* CallLocks.mutexStride).assumingMemoryBound(to: pthread_mutex_t.self))
        }
        pthread_cond_destroy((p + CallLocks.condOffset).assumingMemoryBound(to: pthread_cond_t.self))
        p.deallocate()
    }
}
