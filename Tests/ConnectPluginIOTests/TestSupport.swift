// Helpers of the I/O core tests: a value slot with a timed wait (tests never block forever), and a
// connection delegate that records what a byte stream delivers.
import Glibc
@testable import ConnectPluginIO

/// Generous: the machine is shared and loaded; a timeout only turns a hang into a failure.
let testTimeoutNs: UInt64 = 20_000_000_000

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
    func wait(timeoutNs: UInt64 = testTimeoutNs, until done: (T) -> Bool) -> T {
        let deadline = monotonicNowNs() &+ timeoutNs
        cond.lock()
        defer { cond.unlock() }
        while !done(value) {
            if !cond.wait(untilNs: deadline) && monotonicNowNs() >= deadline { break }
        }
        return value
    }
}

/// Runs `body` on `loop` and waits for its result.
func onLoop<T>(_ loop: EventLoop, _ body: @escaping () -> T) -> T? {
    let box = Box<T?>(nil)
    loop.execute { let v = body(); box.update { $0 = v } }
    return box.wait { $0 != nil }
}

/// Records a connection's events.
final class RecordingDelegate: ConnectionDelegate, @unchecked Sendable {
    struct State {
        var received: [UInt8] = []
        var closed = false
        var closeError: IOError?
        var drained = 0
    }
    let state = Box(State())
    /// Holds the connection, as protocol handlers do (tests of lifetimes).
    var owner: AnyObject?
    /// Called on the loop with every chunk (after recording it).
    var onReceive: ((UnsafeRawBufferPointer) -> Void)?

    func connectionReceived(_ bytes: UnsafeRawBufferPointer) {
        state.update { $0.received.append(contentsOf: bytes) }
        onReceive?(bytes)
    }

    func connectionClosed(_ error: IOError?) {
        state.update {
            $0.closed = true
            $0.closeError = error
        }
    }

    func connectionDrained() { state.update { $0.drained += 1 } }
}
