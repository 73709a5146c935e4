// The event loop (execute, ordering, timers, cancel) and the handler thread pool.
import Glibc
import Testing
@testable import ConnectPluginIO

@Suite struct EventLoopTests {
    @Test func executeRunsTasksOnTheLoopThreadInOrder() throws {
        let loop = try EventLoop(name: "test-loop")
        #expect(!loop.inEventLoop)
        let seen = Box<[Int]>([])
        let onLoopThread = Box<[Bool]>([])
        for i in 0..<200 {
            loop.execute {
                seen.update { $0.append(i) }
                onLoopThread.update { $0.append(loop.inEventLoop) }
            }
        }
        let order = seen.wait { $0.count == 200 }
        #expect(order == Array(0..<200))
        #expect(onLoopThread.current.allSatisfy { $0 })
    }

    @Test func executeOrRunRunsInlineOnTheLoopAndLaterElsewhere() throws {
        let loop = try EventLoop(name: "test-loop")
        let steps = Box<[String]>([])
        loop.execute {
            loop.executeOrRun { steps.update { $0.append("inline") } }
            steps.update { $0.append("after") }
            loop.execute { steps.update { $0.append("deferred") } }
            steps.update { $0.append("end") }
        }
        #expect(steps.wait { $0.count == 4 } == ["inline", "after", "end", "deferred"])
    }

    @Test func executeOrTakeOverRunsOnTheCallerWhileTheLoopIsIdle() throws {
        let loop = try EventLoop(name: "test-loop")
        let caller = pthread_self()
        // The loop is idle once its thread waits in epoll_wait; until then the task is queued and
        // runs on the loop thread, so try again (a loaded machine may take a while to get there).
        var taken: [String] = []
        let fired = Box<Bool>(false)
        for _ in 0..<200 where taken.isEmpty {
            usleep(10_000)
            let ran = Box<[String]>([])
            loop.executeOrTakeOver {
                let here = pthread_equal(pthread_self(), caller) != 0
                ran.update { $0.append("task here=\(here) loop=\(loop.inEventLoop) takeover=\(loop.inTakeOver)") }
                loop.executeAtEndOfIteration { ran.update { $0.append("end of iteration") } }
                // The loop sleeps with no timer: only the take-over's wake makes this one fire.
                if here { _ = loop.schedule(afterNs: 10_000_000) { fired.update { $0 = true } } }
            }
            let got = ran.wait { $0.count == 2 }
            if got.first?.hasPrefix("task here=true") == true { taken = got }
        }
        // Taken over: done when it returns, on this thread, as loop work; the flags are gone after.
        #expect(taken == ["task here=true loop=true takeover=true", "end of iteration"])
        #expect(!loop.inEventLoop && !loop.inTakeOver)
        #expect(fired.wait { $0 })
    }

    @Test func executeOrTakeOverKeepsTheOrderOfQueuedWork() throws {
        let loop = try EventLoop(name: "test-loop")
        let seen = Box<[Int]>([])
        // From a loop task: inline. From here, with work queued or the loop busy: queued or run
        // after what is queued, never before it.
        let open = Box<Bool>(false), busy = Box<Bool>(false)
        loop.execute {  // the loop is busy until the gate opens
            busy.update { $0 = true }
            _ = open.wait { $0 }
        }
        _ = busy.wait { $0 }
        for i in 0..<50 { loop.execute { seen.update { $0.append(i) } } }
        loop.executeOrTakeOver { seen.update { $0.append(50) } }
        open.update { $0 = true }
        for i in 51..<100 {
            if i % 2 == 0 { loop.execute { seen.update { $0.append(i) } } } else { loop.executeOrTakeOver { seen.update { $0.append(i) } } }
        }
        #expect(seen.wait { $0.count == 100 } == Array(0..<100))
    }

    @Test func timersFireInDeadlineOrderAndNotEarly() throws {
        let loop = try EventLoop(name: "test-loop")
        let fired = Box<[(Int, UInt64)]>([])
        let start = monotonicNowNs()
        loop.execute {
            for ms in [60, 20, 40] {
                loop.schedule(afterNs: UInt64(ms) * 1_000_000) {
                    fired.update { $0.append((ms, monotonicNowNs() - start)) }
                }
            }
        }
        let result = fired.wait { $0.count == 3 }
        #expect(result.map { $0.0 } == [20, 40, 60])
        for (ms, elapsed) in result { #expect(elapsed >= UInt64(ms) * 1_000_000) }
    }

    @Test func cancelledTimersNeverRun() throws {
        let loop = try EventLoop(name: "test-loop")
        let fired = Box<[String]>([])
        loop.execute {
            let a = loop.schedule(afterNs: 10_000_000) { fired.update { $0.append("cancelled") } }
            loop.schedule(afterNs: 5_000_000) { fired.update { $0.append("kept-early") } }
            loop.cancel(a)
            loop.cancel(a)  // twice: ignored
            loop.schedule(afterNs: 80_000_000) { fired.update { $0.append("kept-late") } }
        }
        let result = fired.wait { $0.contains("kept-late") }
        #expect(result == ["kept-early", "kept-late"])
    }

    @Test func groupHandsOutEveryLoop() throws {
        let group = try EventLoopGroup(count: 3)
        #expect(group.loops.count == 3)
        var seen = Set<ObjectIdentifier>()
        for _ in 0..<6 { seen.insert(ObjectIdentifier(group.next())) }
        #expect(seen.count == 3)
    }
}

@Suite struct ThreadPoolTests {
    @Test func runsEverySubmittedTask() throws {
        let pool = try ThreadPool(threads: 2, maxThreads: 4)
        defer { pool.shutdown() }
        let count = Box(0)
        for _ in 0..<500 { #expect(pool.submit { count.update { $0 += 1 } }) }
        #expect(count.wait { $0 == 500 } == 500)
    }

    @Test func growsWhenEveryThreadIsBusy() throws {
        // Four tasks that each wait for all four to have started can only finish if the pool runs
        // them at the same time, i.e. it grew from one thread to four.
        let pool = try ThreadPool(threads: 1, maxThreads: 4)
        defer { pool.shutdown() }
        let started = Box(0)
        let finished = Box(0)
        for _ in 0..<4 {
            pool.submit {
                started.update { $0 += 1 }
                started.wait { $0 == 4 }
                finished.update { $0 += 1 }
            }
        }
        #expect(finished.wait { $0 == 4 } == 4)
    }

    @Test func surplusThreadsRetireAndTheCoreServesOn() throws {
        // Grow to four threads (four tasks that wait for each other), let them go idle: the three
        // above the core count time out and exit, and the one left still runs work handed to it.
        let pool = try ThreadPool(threads: 1, maxThreads: 4, idleTimeoutNs: 20_000_000)
        defer { pool.shutdown() }
        let started = Box(0)
        for _ in 0..<4 {
            pool.submit {
                started.update { $0 += 1 }
                started.wait { $0 == 4 }
            }
        }
        #expect(started.wait { $0 == 4 } == 4)
        let deadline = monotonicNowNs() &+ 5_000_000_000
        while pool.threadCount > 1 && monotonicNowNs() < deadline { usleep(5_000) }
        #expect(pool.threadCount == 1)
        let ran = Box(0)
        for _ in 0..<100 { pool.submit { ran.update { $0 += 1 } } }
        #expect(ran.wait { $0 == 100 } == 100)
    }

    @Test func aBurstOfBlockingTasksGetsAThreadEach() throws {
        // Chain growth: 32 tasks submitted at once that each wait for all 32 to have started can only
        // finish if one thread start leads to the next until every task has a thread.
        let pool = try ThreadPool(threads: 2, maxThreads: 40)
        defer { pool.shutdown() }
        let started = Box(0)
        let finished = Box(0)
        for _ in 0..<32 {
            pool.submit {
                started.update { $0 += 1 }
                started.wait { $0 == 32 }
                finished.update { $0 += 1 }
            }
        }
        #expect(finished.wait { $0 == 32 } == 32)
    }

    @Test func shutdownRunsQueuedWorkThenRefusesMore() throws {
        let pool = try ThreadPool(threads: 1, maxThreads: 1)
        let count = Box(0)
        for _ in 0..<50 { pool.submit { count.update { $0 += 1 } } }
        pool.shutdown()
        #expect(count.current == 50)
        #expect(!pool.submit { count.update { $0 += 1 } })
        #expect(pool.threadCount == 0)
    }
}
