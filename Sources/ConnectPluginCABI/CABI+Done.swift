// C ABI: connectplugin_call_on_done / connectplugin_stream_on_done, the push notice that a call
// can no longer be answered (client canceled or gone, deadline passed, server stopping). One
// callback per call at most, never one per message.
import CConnectPluginABI
import ConnectPlugin
import ConnectPluginHTTP
import Glibc

/// A registered on_done callback. `clear` (the handler answering the call, or returning) waits for
/// a callback running on another thread, so that afterwards the callback has finished and will
/// never run: the handler may then free what user_data points to. The finalizer runs exactly once,
/// after the callback or at `clear`.
final class DoneHook {
    private let lock = Lock()
    private var active = true
    /// The callback running: `clear` waits for it (entered under `lock`).
    private let gate = HookGate()
    private let fn: connectplugin_done_func
    private let ud: UserData

    init(_ fn: connectplugin_done_func, _ ud: UserData) {
        self.fn = fn
        self.ud = ud
    }

    func fire() {
        let run: Bool = lock.withLock {
            guard active else { return false }
            active = false
            gate.enter()
            return true
        }
        guard run else { return }
        fn(ud.pointer)
        gate.leave()
        ud.finalize()
    }

    func clear() {
        lock.withLock { active = false }
        // Not from inside the callback itself (it would wait for itself).
        gate.waitIdle()
        ud.finalize()
    }
}

/// The hooks of one handler invocation, cleared when the handler returns.
final class DoneHooks {
    private let lock = Lock()
    private var hooks: [DoneHook] = []
    private var closed = false

    /// Adds a hook; false once the handler returned.
    func add(_ h: DoneHook) -> Bool {
        lock.withLock {
            if closed { return false }
            hooks.append(h)
            return true
        }
    }

    func clearAll() {
        let all: [DoneHook] = lock.withLock {
            closed = true
            let a = hooks
            hooks = []
            return a
        }
        for h in all { h.clear() }
    }
}

private func registerDone(_ hooks: DoneHooks, _ onDone: connectplugin_done_func?, _ userData: UnsafeMutableRawPointer?,
                          _ finalizer: connectplugin_free_func?, _ err: UnsafeMutablePointer<OpaquePointer?>?,
                          install: (@escaping () -> Void) -> Void) -> connectplugin_status {
    let ud = UserData(userData, finalizer)
    guard let onDone else {
        ud.finalize()
        return guarded(err) { throw ConnectError.local(.invalidArgument, "on_done is NULL") }
    }
    let hook = DoneHook(onDone, ud)
    guard hooks.add(hook) else {
        ud.finalize()
        return guarded(err) { throw ConnectError.local(.closed, "the handler already returned") }
    }
    install { [weak hook] in hook?.fire() }
    return CONNECTPLUGIN_OK
}

@_cdecl("connectplugin_call_on_done")
public func connectplugin_call_on_done(_ c: OpaquePointer?, _ onDone: connectplugin_done_func?, _ userData: UnsafeMutableRawPointer?,
                                       _ finalizer: connectplugin_free_func?, _ err: UnsafeMutablePointer<OpaquePointer?>?) -> connectplugin_status {
    guard let b = unbox(c, as: CallBox.self) else {
        UserData(userData, finalizer).finalize()
        return guarded(err) { throw ConnectError.local(.invalidArgument, "call is NULL") }
    }
    return registerDone(b.doneHooks, onDone, userData, finalizer, err) { b.call.onDone($0) }
}

@_cdecl("connectplugin_stream_on_done")
public func connectplugin_stream_on_done(_ s: OpaquePointer?, _ onDone: connectplugin_done_func?, _ userData: UnsafeMutableRawPointer?,
                                         _ finalizer: connectplugin_free_func?, _ err: UnsafeMutablePointer<OpaquePointer?>?) -> connectplugin_status {
    guard let b = unbox(s, as: StreamBox.self) else {
        UserData(userData, finalizer).finalize()
        return guarded(err) { throw ConnectError.local(.invalidArgument, "stream is NULL") }
    }
    return registerDone(b.doneHooks, onDone, userData, finalizer, err) { b.call.onDone($0) }
}
