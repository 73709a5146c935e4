// I/O core: the event loop (one thread running epoll, a task queue woken through an eventfd, and
// timers) and the event-loop group; their error type is in IOError.swift. File descriptors are owned
// by exactly one loop; everything that touches one runs as its loop's work: on its thread, or on a
// thread that took the idle loop over (`executeOrTakeOver`: a handler thread writing its answer
// while the loop waits for events, under the loop's `owner` mutex). Loop-only methods check that in
// debug builds (`assert(inEventLoop)`); the thread is named after the loop.
import CConnectPluginPosix
import Glibc

/// Something registered with an event loop for readiness events of a file descriptor.
public protocol EventHandler: AnyObject {
    /// Called as loop work (see `inEventLoop`) with CP_EV_* bits.
    func handleEvents(_ events: UInt32)
}

/// A cancellable timer.
public struct TimerHandle: Hashable, Sendable {
    let id: UInt64
}

/// The loop whose work this thread is running now: its own loop thread, or a thread that took over
/// an idle loop (`executeOrTakeOver`). Thread-local, so `inEventLoop` needs no shared state.
private let currentLoopKey: pthread_key_t = {
    var k = pthread_key_t()
    _ = pthread_key_create(&k, nil)
    return k
}()
/// The loop this thread took over (not its own thread), while it runs that loop's work.
private let takenOverLoopKey: pthread_key_t = {
    var k = pthread_key_t()
    _ = pthread_key_create(&k, nil)
    return k
}()

/// One epoll loop on its own thread.
public final class EventLoop: @unchecked Sendable {
    private let epfd: Int32
    private let wakeFD: Int32
    private let lock = Lock()
    /// Held by whoever runs the loop's work: the loop thread, except while it waits in epoll_wait
    /// with nothing pending, or a thread that took the idle loop over (`executeOrTakeOver`). Every
    /// piece of loop-thread state below is touched only with it held.
    private let owner = Lock()
    /// When the loop thread's current epoll_wait ends by itself (its next timer; owner held).
    private var sleepDeadlineNs: UInt64 = .max
    private var pending: [() -> Void] = []
    private var wakePending = false
    /// Server exchanges open on this loop (under `lock`): see `exchangeOpened`.
    private var openExchanges = 0
    // Loop-thread state.
    private var handlers: [UInt64: EventHandler] = [:]
    private var nextToken: UInt64 = 1
    private var timerHeap: [(deadline: UInt64, id: UInt64)] = []
    private var timerTasks: [UInt64: () -> Void] = [:]
    private var nextTimerID: UInt64 = 1
    /// Work to run once this iteration's events, timers and tasks are done (loop thread only).
    private var endOfIteration: [() -> Void] = []
    /// The loop's name; the thread carries it too (at most 15 bytes, the kernel's limit).
    public let name: String

    public init(name: String) throws {
        self.name = name
        let ep = cp_epoll_create()
        if ep < 0 { throw HTTPError(.io, "epoll_create failed: \(String(cString: cp_strerror(-ep)))") }
        let ev = cp_eventfd()
        if ev < 0 {
            _ = cp_close(ep)
            throw HTTPError(.io, "eventfd failed: \(String(cString: cp_strerror(-ev)))")
        }
        epfd = ep
        wakeFD = ev
        _ = cp_epoll_add(epfd, wakeFD, CP_EV_READ, 0)
        try startThread()
    }

    private func startThread() throws {
        // Loops live as long as the process: the thread is detached.
        if case .failure(let e) = spawnThread(name: nil, detached: true, { [self] in run() }) { throw e }
    }

    /// True when called on this loop's thread, or on a thread that took the idle loop over and is
    /// running its work now.
    public var inEventLoop: Bool {
        pthread_getspecific(currentLoopKey) == UnsafeMutableRawPointer(Unmanaged.passUnretained(self).toOpaque())
    }

    /// True while this thread runs the loop's work having taken the idle loop over: it is then inside
    /// someone's call (a handler answering), so callbacks of other code (a peer gone, say) are
    /// better handed to the loop thread with `execute` than run here.
    public var inTakeOver: Bool {
        pthread_getspecific(takenOverLoopKey) == UnsafeMutableRawPointer(Unmanaged.passUnretained(self).toOpaque())
    }

    /// Runs `task` on the loop thread (later, even if called from it). Thread-safe.
    public func execute(_ task: @escaping () -> Void) {
        lock.lock()
        pending.append(task)
        let needWake = !wakePending
        wakePending = true
        lock.unlock()
        if needWake { _ = cp_eventfd_signal(wakeFD) }
    }

    /// Runs `task` on the loop thread once the current iteration's events, timers and tasks have
    /// run, before the loop waits again; no wake-up. Loop thread only. What many events of one
    /// iteration produce (responses of several handlers, say) is then done once: one write per
    /// connection per iteration instead of one per response.
    public func executeAtEndOfIteration(_ task: @escaping () -> Void) {
        assert(inEventLoop, "EventLoop.executeAtEndOfIteration called off the loop thread")
        endOfIteration.append(task)
    }

    /// Runs `task` now if on the loop thread, else schedules it.
    public func executeOrRun(_ task: @escaping () -> Void) {
        if inEventLoop { task() } else { execute(task) }
    }

    /// Runs `task` as loop work: now on the loop thread; else, when the loop is idle (its thread
    /// waits in epoll_wait with nothing pending), on the calling thread, which takes the loop over
    /// for as long as it takes: it runs what is pending first (order is kept), then `task`, then the
    /// end-of-iteration work (a connection's flush: the write), and wakes the loop only if it
    /// scheduled a timer earlier than the loop's wait. Otherwise it is scheduled as `execute` does.
    /// A handler thread answering a call thus writes the answer itself instead of waking the loop
    /// (one thread hand-off and two context switches less per call). Call it with no lock held
    /// that loop work may take, and only for work that does not run the caller's own callbacks.
    public func executeOrTakeOver(_ task: @escaping () -> Void) {
        if inEventLoop {
            task()
            return
        }
        guard pthread_mutex_trylock(owner.mutex) == 0 else {
            execute(task)
            return
        }
        let me = UnsafeMutableRawPointer(Unmanaged.passUnretained(self).toOpaque())
        let previous = pthread_getspecific(currentLoopKey), previousTakeOver = pthread_getspecific(takenOverLoopKey)
        _ = pthread_setspecific(currentLoopKey, me)
        _ = pthread_setspecific(takenOverLoopKey, me)
        lock.lock()
        let queued = pending
        pending.removeAll(keepingCapacity: true)
        lock.unlock()
        for t in queued { t() }
        task()
        runEndOfIteration()
        let wake = timerHeap.first.map { $0.deadline < sleepDeadlineNs } ?? false
        _ = pthread_setspecific(currentLoopKey, previous)
        _ = pthread_setspecific(takenOverLoopKey, previousTakeOver)
        owner.unlock()
        if wake { _ = cp_eventfd_signal(wakeFD) }
    }

    /// A server exchange (HTTPServerStream) opened on this loop. Counted so that a handler thread
    /// takes the loop over only to answer the loop's one open exchange (the sequential call, where
    /// the take-over saves the wake); with several open, the loop batches their answers into one
    /// write per connection per iteration, which is cheaper under load. Thread-safe.
    public func exchangeOpened() {
        lock.lock()
        openExchanges += 1
        lock.unlock()
    }

    /// An exchange ended (answered or gone); returns how many are still open. Thread-safe.
    public func exchangeClosed() -> Int {
        lock.lock()
        openExchanges -= 1
        let n = openExchanges
        lock.unlock()
        return n
    }

    // MARK: Registration (loop thread only)

    /// Registers `fd` for `interest` (CP_EV_READ/CP_EV_WRITE). Returns a token, or nil on failure.
    public func register(fd: Int32, interest: UInt32, handler: EventHandler) -> UInt64? {
        assert(inEventLoop, "EventLoop.register called off the loop thread")
        let token = nextToken
        nextToken &+= 1
        if cp_epoll_add(epfd, fd, interest, token) != 0 { return nil }
        handlers[token] = handler
        return token
    }

    /// File descriptors registered now (listeners, connections). Loop thread only.
    public var registeredCount: Int {
        assert(inEventLoop, "EventLoop.registeredCount read off the loop thread")
        return handlers.count
    }

    public func modify(fd: Int32, token: UInt64, interest: UInt32) {
        assert(inEventLoop, "EventLoop.modify called off the loop thread")
        _ = cp_epoll_mod(epfd, fd, interest, token)
    }

    public func unregister(fd: Int32, token: UInt64) {
        assert(inEventLoop, "EventLoop.unregister called off the loop thread")
        _ = cp_epoll_del(epfd, fd)
        handlers[token] = nil
    }

    /// Takes a registered fd out of epoll, from any thread, keeping its handler (no event reaches it
    /// until `reattach`). Only for an fd whose handler has lent it to another thread by a protocol
    /// of its own (the HTTP/2 client's caller-driven fast path): epoll_ctl is thread-safe and the
    /// loop's own state is not touched. Returns 0 or -errno.
    public func detach(fd: Int32) -> Int32 { cp_epoll_del(epfd, fd) }

    /// Puts an fd taken out by `detach` back into epoll under its token, from any thread.
    /// Returns 0 or -errno.
    public func reattach(fd: Int32, token: UInt64, interest: UInt32) -> Int32 { cp_epoll_add(epfd, fd, interest, token) }

    // MARK: Timers

    /// Runs `task` on the loop after `delayNs`. Loop thread only.
    @discardableResult
    public func schedule(afterNs delayNs: UInt64, _ task: @escaping () -> Void) -> TimerHandle {
        assert(inEventLoop, "EventLoop.schedule called off the loop thread")
        let id = nextTimerID
        nextTimerID &+= 1
        let (sum, overflow) = cp_now_ns().addingReportingOverflow(delayNs)
        let deadline = overflow ? UInt64.max : sum
        timerTasks[id] = task
        heapPush((deadline, id))
        return TimerHandle(id: id)
    }

    /// Cancels a timer. Loop thread only. Unknown or fired handles are ignored.
    public func cancel(_ handle: TimerHandle) {
        assert(inEventLoop, "EventLoop.cancel called off the loop thread")
        if timerTasks.removeValue(forKey: handle.id) == nil { return }
        // A cancelled timer's heap entry would stay until its deadline (which a peer may set days
        // ahead): rebuild the heap without them once they are the majority.
        if timerHeap.count > 64 && timerHeap.count > 2 * timerTasks.count {
            timerHeap = timerHeap.filter { timerTasks[$0.id] != nil }
            // Sorted by deadline is a valid min-heap.
            timerHeap.sort { $0.deadline < $1.deadline }
        }
    }

    /// Tests: timers due more than `ns` from now, scheduled (`live`) and in the heap (`heap`, which
    /// also counts cancelled timers not yet dropped). Loop thread only.
    func timerCounts(dueAfterNs ns: UInt64) -> (live: Int, heap: Int) {
        let (sum, overflow) = cp_now_ns().addingReportingOverflow(ns)
        let limit = overflow ? UInt64.max : sum
        var live = 0, heap = 0
        for e in timerHeap where e.deadline > limit {
            heap += 1
            if timerTasks[e.id] != nil { live += 1 }
        }
        return (live, heap)
    }

    private func heapPush(_ e: (deadline: UInt64, id: UInt64)) {
        timerHeap.append(e)
        var i = timerHeap.count - 1
        while i > 0 {
            let p = (i - 1) / 2
            if timerHeap[p].deadline <= timerHeap[i].deadline { break }
            timerHeap.swapAt(p, i)
            i = p
        }
    }

    private func heapPop() -> (deadline: UInt64, id: UInt64)? {
        guard let first = timerHeap.first else { return nil }
        let last = timerHeap.removeLast()
        if !timerHeap.isEmpty {
            timerHeap[0] = last
            var i = 0
            let n = timerHeap.count
            while true {
                let l = 2 * i + 1, r = l + 1
                var m = i
                if l < n && timerHeap[l].deadline < timerHeap[m].deadline { m = l }
                if r < n && timerHeap[r].deadline < timerHeap[m].deadline { m = r }
                if m == i { break }
                timerHeap.swapAt(i, m)
                i = m
            }
        }
        return first
    }

    private func runDueTimers() {
        let now = cp_now_ns()
        while let top = timerHeap.first, top.deadline <= now {
            _ = heapPop()
            if let task = timerTasks.removeValue(forKey: top.id) { task() }
        }
        // Drop cancelled timers from the top so they do not shorten the wait.
        while let top = timerHeap.first, timerTasks[top.id] == nil { _ = heapPop() }
    }

    private func waitTimeoutMs() -> Int32 {
        guard let top = timerHeap.first else { return -1 }
        let now = cp_now_ns()
        if top.deadline <= now { return 0 }
        let ms = (top.deadline - now + 999_999) / 1_000_000
        return ms > 60_000 ? 60_000 : Int32(ms)
    }

    private func run() {
        _ = cp_set_thread_name(name)
        _ = pthread_setspecific(currentLoopKey, UnsafeMutableRawPointer(Unmanaged.passUnretained(self).toOpaque()))
        var tokens = [UInt64](repeating: 0, count: 64)
        var events = [UInt32](repeating: 0, count: 64)
        owner.lock()
        while true {
            lock.lock()
            let hasPending = !pending.isEmpty
            lock.unlock()
            let timeout: Int32 = hasPending ? 0 : waitTimeoutMs()
            // Idle: the loop may be taken over while this thread waits (executeOrTakeOver).
            if !hasPending {
                sleepDeadlineNs = timeout < 0 ? .max : cp_now_ns() &+ UInt64(timeout) &* 1_000_000
                owner.unlock()
            }
            let n = tokens.withUnsafeMutableBufferPointer { t in
                events.withUnsafeMutableBufferPointer { e in
                    cp_epoll_wait(epfd, t.baseAddress, e.baseAddress, 64, timeout)
                }
            }
            if !hasPending { owner.lock() }
            if n > 0 {
                for i in 0..<Int(n) {
                    let token = tokens[i]
                    if token == 0 {
                        cp_eventfd_drain(wakeFD)
                        continue
                    }
                    handlers[token]?.handleEvents(events[i])
                }
            }
            runDueTimers()
            lock.lock()
            let tasks = pending
            pending.removeAll(keepingCapacity: true)
            wakePending = false
            lock.unlock()
            for task in tasks { task() }
            runEndOfIteration()
        }
    }

    private func runEndOfIteration() {
        while !endOfIteration.isEmpty {
            let late = endOfIteration
            endOfIteration.removeAll(keepingCapacity: true)
            for task in late { task() }
        }
    }
}

/// A fixed set of event loops; connections are spread round-robin.
public final class EventLoopGroup: @unchecked Sendable {
    public let loops: [EventLoop]
    private let lock = Lock()
    private var index = 0

    public init(count: Int) throws {
        var l: [EventLoop] = []
        for i in 0..<max(1, count) { l.append(try EventLoop(name: "cp-io-\(i)")) }
        loops = l
    }

    public func next() -> EventLoop {
        lock.withLock {
            index = (index &+ 1) % max(1, loops.count)
            return loops[index % loops.count]
        }
    }

    /// The process-wide group (one loop per core, at most 4), started on first use. Its threads live
    /// as long as the process; they sleep in epoll when idle.
    public static func shared() throws -> EventLoopGroup {
        try sharedResult.get()
    }

    private static let sharedResult: Result<EventLoopGroup, HTTPError> = {
        do {
            return .success(try EventLoopGroup(count: min(4, Int(cp_cpu_count()))))
        } catch let e as HTTPError {
            return .failure(e)
        } catch {
            return .failure(HTTPError(.resource, "cannot start event loops"))
        }
    }()
}

/// Current monotonic time in nanoseconds.
@inline(__always) public func monotonicNowNs() -> UInt64 { cp_now_ns() }
