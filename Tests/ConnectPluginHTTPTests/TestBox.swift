// A value slot with a timed wait, so tests never block forever.
import ConnectPluginHTTP

/// Waits for a condition over state guarded by one lock.
final class Box<T>: @unchecked Sendable {
    let cond = ConditionLock()
    private var value: T

    init(_ v: T) { value = v }

    func update(_ body: (inout T) -> Void) {
        cond.lock()
        body(&value)
        cond.broadcast()
        cond.unlock()
    }

    var current: T { cond.withLock { value } }

    /// Waits until `done(value)` or the timeout; returns the value then.
    @discardableResult
    func wait(timeoutNs: UInt64 = 20_000_000_000, until done: (T) -> Bool) -> T {
        let deadline = monotonicNowNs() &+ timeoutNs
        cond.lock()
        defer { cond.unlock() }
        while !done(value) {
            if !cond.wait(untilNs: deadline) && monotonicNowNs() >= deadline { break }
        }
        return value
    }
}

