// The store of examples/proto/README.md: one map shared by every call, and the watchers of the
// Watch calls. One mutex guards both, so a mutation and its notifications, a List snapshot, and a
// Watch prefix's replay plus its registration are each atomic: nothing is lost or doubled between
// a replay and the live events that follow it.
import Glibc

/// A pthread mutex with a condition variable on the monotonic clock.
final class Monitor: @unchecked Sendable {
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let cond = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)

    init() {
        mutex.initialize(to: pthread_mutex_t())
        pthread_mutex_init(mutex, nil)
        cond.initialize(to: pthread_cond_t())
        var attr = pthread_condattr_t()
        pthread_condattr_init(&attr)
        pthread_condattr_setclock(&attr, CLOCK_MONOTONIC)
        pthread_cond_init(cond, &attr)
        pthread_condattr_destroy(&attr)
    }

    deinit {
        pthread_cond_destroy(cond)
        pthread_mutex_destroy(mutex)
        cond.deallocate()
        mutex.deallocate()
    }

    func withLock<T>(_ body: () throws -> T) rethrows -> T {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body()
    }

    /// Wakes the waiters (call with the lock held).
    func broadcast() { pthread_cond_broadcast(cond) }

    /// Waits up to `ms` milliseconds for a broadcast (call with the lock held).
    func wait(ms: Int) {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        let ns = ts.tv_nsec + ms * 1_000_000
        ts.tv_sec += ns / 1_000_000_000
        ts.tv_nsec = ns % 1_000_000_000
        pthread_cond_timedwait(cond, mutex, &ts)
    }
}

/// Runs `body` on a new detached thread.
func spawnThread(_ body: @escaping () -> Void) -> Bool {
    final class Box {
        let body: () -> Void
        init(_ body: @escaping () -> Void) { self.body = body }
    }
    var attr = pthread_attr_t()
    pthread_attr_init(&attr)
    defer { pthread_attr_destroy(&attr) }
    pthread_attr_setdetachstate(&attr, Int32(PTHREAD_CREATE_DETACHED))
    var t = pthread_t()
    let arg = Unmanaged.passRetained(Box(body)).toOpaque()
    let rc = pthread_create(&t, &attr, { arg in
        guard let arg else { return nil }
        Unmanaged<Box>.fromOpaque(arg).takeRetainedValue().body()
        return nil
    }, arg)
    if rc != 0 {
        Unmanaged<Box>.fromOpaque(arg).release()
        return false
    }
    return true
}

/// A change as a Watch call sees it.
struct WatchEvent {
    var key: String
    var value: [UInt8]
    var deleted: Bool
}

/// One Watch call: its prefixes (guarded by the store's lock) and its queue of events to send
/// (guarded by its own monitor; the store pushes under its lock, so the order is the store's).
final class Watcher: @unchecked Sendable {
    fileprivate var prefixes: [String] = []
    private let monitor = Monitor()
    private var queue: [WatchEvent] = []
    private var head = 0
    private var ended = false
    private var failure: Error?

    fileprivate func matches(_ key: String) -> Bool { prefixes.contains { key.hasPrefix($0) } }

    fileprivate func push(_ e: WatchEvent) {
        monitor.withLock {
            if ended { return }
            queue.append(e)
            monitor.broadcast()
        }
    }

    /// No more events: the queue is sent, then the call ends with `failure` (nil: OK).
    func end(_ failure: Error?) {
        monitor.withLock {
            if ended { return }
            ended = true
            self.failure = failure
            monitor.broadcast()
        }
    }

    enum Next {
        case event(WatchEvent)
        case end(Error?)
        case idle
    }

    /// The next queued event; `.end` once ended and drained; `.idle` after `ms` without either.
    func next(waitMs ms: Int) -> Next {
        monitor.withLock {
            for attempt in 0..<2 {
                if head < queue.count {
                    let e = queue[head]
                    head += 1
                    if head == queue.count {
                        queue.removeAll(keepingCapacity: true)
                        head = 0
                    }
                    return .event(e)
                }
                if ended { return .end(failure) }
                if attempt == 0 { monitor.wait(ms: ms) }
            }
            return .idle
        }
    }
}

public final class Store: @unchecked Sendable {
    public init() {}
    private let monitor = Monitor()
    private var values: [String: [UInt8]] = [:]
    private var watchers: [ObjectIdentifier: Watcher] = [:]

    private func notify(_ e: WatchEvent) {
        for w in watchers.values where w.matches(e.key) { w.push(e) }
    }

    func put(_ key: String, _ value: [UInt8]) {
        monitor.withLock {
            values[key] = value
            notify(WatchEvent(key: key, value: value, deleted: false))
        }
    }

    func get(_ key: String) -> [UInt8]? { monitor.withLock { values[key] } }

    func delete(_ key: String) -> Bool {
        monitor.withLock {
            guard values.removeValue(forKey: key) != nil else { return false }
            notify(WatchEvent(key: key, value: [], deleted: true))
            return true
        }
    }

    /// The keys starting with `prefix`, in ascending order of their UTF-8 bytes (lock held).
    private func matching(_ prefix: String) -> [(key: String, value: [UInt8])] {
        values.filter { $0.key.hasPrefix(prefix) }
            .map { (key: $0.key, value: $0.value) }
            .sorted { $0.key.utf8.lexicographicallyPrecedes($1.key.utf8) }
    }

    /// One consistent snapshot of the keys starting with `prefix`, sorted.
    func list(_ prefix: String) -> [(key: String, value: [UInt8])] { monitor.withLock { matching(prefix) } }

    func addWatcher(_ w: Watcher) { monitor.withLock { watchers[ObjectIdentifier(w)] = w } }

    /// Stops live events to `w`; what is queued stays queued.
    func removeWatcher(_ w: Watcher) { _ = monitor.withLock { watchers.removeValue(forKey: ObjectIdentifier(w)) } }

    /// Replays the keys that match `prefix` to `w` and watches `prefix` from now on, atomically.
    func addPrefix(_ w: Watcher, _ prefix: String) {
        monitor.withLock {
            for (k, v) in matching(prefix) { w.push(WatchEvent(key: k, value: v, deleted: false)) }
            w.prefixes.append(prefix)
        }
    }
}
