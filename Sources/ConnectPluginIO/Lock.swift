// I/O core: small pthread-based synchronisation primitives (a lock, a lock with a condition, a
// one-shot promise, and `HookGate`, the wait for a done hook running on another thread).
// Synchronization.Mutex collapses under contention on this platform (see
// shared/docs/platform-notes.md); a plain pthread mutex does not.
import Glibc

/// A non-recursive mutex over pthread_mutex_t.
public final class Lock: @unchecked Sendable {
    @usableFromInline let mutex: UnsafeMutablePointer<pthread_mutex_t>

    public init() {
        mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
        mutex.initialize(to: pthread_mutex_t())
        pthread_mutex_init(mutex, nil)
    }

    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
    }

    @inlinable public func lock() { pthread_mutex_lock(mutex) }
    @inlinable public func unlock() { pthread_mutex_unlock(mutex) }

    @inlinable
    public func withLock<T>(_ body: () throws -> T) rethrows -> T {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body()
    }
}

/// Initialises `cond` (allocated, uninitialised) to measure timed waits on the monotonic clock, the
/// clock of `monotonicNowNs` deadlines.
public func initMonotonicCondition(_ cond: UnsafeMutablePointer<pthread_cond_t>) {
    cond.initialize(to: pthread_cond_t())
    var attr = pthread_condattr_t()
    pthread_condattr_init(&attr)
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC)
    pthread_cond_init(cond, &attr)
    pthread_condattr_destroy(&attr)
}

/// Waits on a condition made by `initMonotonicCondition` (with `mutex` held) until the monotonic time
/// `deadlineNs`. False on timeout.
public func waitMonotonic(_ cond: UnsafeMutablePointer<pthread_cond_t>, _ mutex: UnsafeMutablePointer<pthread_mutex_t>,
                          untilNs deadlineNs: UInt64) -> Bool {
    var ts = timespec(tv_sec: Int(deadlineNs / 1_000_000_000), tv_nsec: Int(deadlineNs % 1_000_000_000))
    return pthread_cond_timedwait(cond, mutex, &ts) == 0
}

/// A mutex with a condition variable, for blocking waits (a host thread waiting for a call).
public final class ConditionLock: @unchecked Sendable {
    let mutex: UnsafeMutablePointer<pthread_mutex_t>
    let cond: UnsafeMutablePointer<pthread_cond_t>

    public init() {
        mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
        mutex.initialize(to: pthread_mutex_t())
        pthread_mutex_init(mutex, nil)
        cond = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
        initMonotonicCondition(cond)
    }

    deinit {
        pthread_cond_destroy(cond)
        pthread_mutex_destroy(mutex)
        cond.deallocate()
        mutex.deallocate()
    }

    public func lock() { pthread_mutex_lock(mutex) }
    public func unlock() { pthread_mutex_unlock(mutex) }
    public func broadcast() { pthread_cond_broadcast(cond) }
    public func signal() { pthread_cond_signal(cond) }
    /// Waits (the lock must be held).
    public func wait() { pthread_cond_wait(cond, mutex) }
    /// Waits until the monotonic time `deadlineNs` (the lock must be held). Returns false on timeout.
    public func wait(untilNs deadlineNs: UInt64) -> Bool { waitMonotonic(cond, mutex, untilNs: deadlineNs) }

    public func withLock<T>(_ body: () throws -> T) rethrows -> T {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body()
    }
}

/// A one-shot result slot a thread can block on.
public final class Promise<T>: @unchecked Sendable {
    private let cond = ConditionLock()
    private var value: T?

    public init() {}

    /// Fulfils the promise; later calls are ignored. Returns true if this call set the value.
    @discardableResult
    public func fulfill(_ v: T) -> Bool {
        cond.lock()
        defer { cond.unlock() }
        if value != nil { return false }
        value = v
        cond.broadcast()
        return true
    }

    public var isFulfilled: Bool { cond.withLock { value != nil } }

    /// Blocks until fulfilled.
    public func wait() -> T? {
        cond.lock()
        defer { cond.unlock() }
        while value == nil { cond.wait() }
        return value
    }
}

/// Hooks that run on one thread at a time (done hooks), and a wait for the one running: `enter()`
/// and `leave()` bracket running them; `waitIdle()` returns once none runs, at once when called
/// from the thread running them (a hook that answers its own call must not wait for itself). To
/// make sure a hook never starts after `waitIdle()` returned, decide to run it and call `enter()`
/// under the same lock that the side calling `waitIdle()` takes first to close the hooks.
public final class HookGate: @unchecked Sendable {
    private let cond = ConditionLock()
    private var running = false
    private var runner = pthread_t()

    public init() {}

    /// Hooks start running on the calling thread.
    public func enter() {
        cond.withLock {
            running = true
            runner = pthread_self()
        }
    }

    /// The hooks entered ended; wakes the waiters.
    public func leave() {
        cond.withLock {
            running = false
            cond.broadcast()
        }
    }

    /// Waits while hooks run on another thread (not when this thread runs them).
    public func waitIdle() {
        cond.withLock {
            while running && pthread_equal(runner, pthread_self()) == 0 { cond.wait() }
        }
    }
}
