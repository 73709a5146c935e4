// I/O core: starting threads. Every thread the library starts (event loops, handler pools, job and
// stdio threads, reapers) goes through `spawnThread`, so naming, the retained-closure hand-over and
// the pthread_create failure path live in one place.
import CConnectPluginPosix
import Glibc

private final class ThreadStart {
    let name: String?
    let body: () -> Void
    init(_ name: String?, _ body: @escaping () -> Void) {
        self.name = name
        self.body = body
    }
}

/// Starts a thread running `body`, named `name` (at most 15 bytes show in `ps` and debuggers).
/// Joinable unless `detached`; the caller of a joinable thread must join it. Fails with `.resource`
/// when the system cannot start a thread.
public func spawnThread(name: String?, detached: Bool, _ body: @escaping () -> Void) -> Result<pthread_t, IOError> {
    let box = Unmanaged.passRetained(ThreadStart(name, body)).toOpaque()
    var t = pthread_t()
    let rc = pthread_create(&t, nil, { arg in
        guard let arg else { return nil }
        let start = Unmanaged<ThreadStart>.fromOpaque(arg).takeRetainedValue()
        if let name = start.name { _ = cp_set_thread_name(name) }
        start.body()
        return nil
    }, box)
    if rc != 0 {
        Unmanaged<ThreadStart>.fromOpaque(box).release()
        return .failure(IOError(.resource, "cannot start a thread\(name.map { " (\($0))" } ?? "") (pthread_create: \(rc))"))
    }
    if detached { pthread_detach(t) }
    return .success(t)
}

/// A detached thread named `name`; false when it could not start.
@discardableResult
public func startThread(name: String, _ body: @escaping () -> Void) -> Bool {
    if case .success = spawnThread(name: name, detached: true, body) { return true }
    return false
}
