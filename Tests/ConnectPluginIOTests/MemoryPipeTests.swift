// The in-memory duplex pipe: bytes both ways between ends on different loops, back-pressure through
// the bounded buffer, drained notifications, half-close, close after flush, close now.
import Glibc
import Testing
@testable import ConnectPluginIO

/// Two loops for the tests, on which the pipe's ends live.
private let pipeLoops = Result<(EventLoop, EventLoop), Error> {
    (try EventLoop(name: "pipe-test-a"), try EventLoop(name: "pipe-test-b"))
}

private func pattern(_ n: Int) -> [UInt8] { (0..<n).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ $0 >> 8) } }

/// A pipe with recording delegates on both ends, started.
private func startedPair(_ loopA: EventLoop, _ loopB: EventLoop, capacity: Int = MemoryPipe.defaultCapacity,
                         pauseB: Bool = false)
    -> (a: MemoryPipeEnd, b: MemoryPipeEnd, da: RecordingDelegate, db: RecordingDelegate)
{
    let (a, b) = MemoryPipe.makePair(loopA: loopA, loopB: loopB, capacity: capacity)
    let da = RecordingDelegate(), db = RecordingDelegate()
    // As an HTTP connection does, each delegate holds its end: a cycle that closing breaks.
    da.owner = a
    db.owner = b
    _ = onLoop(loopB) {
        b.start(delegate: db)
        if pauseB { b.setReadPaused(true) }
        return true
    }
    _ = onLoop(loopA) { a.start(delegate: da); return true }
    return (a, b, da, db)
}

/// Closes a pair made by `startedPair` and waits until both delegates saw it: that breaks the
/// delegate ↔ end cycles (LeakSanitizer reports an open pair at exit, as it would a socket never closed).
private func closeBoth(_ a: MemoryPipeEnd, _ da: RecordingDelegate, _ db: RecordingDelegate, _ loopA: EventLoop) {
    _ = onLoop(loopA) { a.closeNow(nil); return true }
    #expect(da.state.wait { $0.closed }.closed)
    #expect(db.state.wait { $0.closed }.closed)
}

/// Equality without printing megabytes on failure.
private func same(_ a: [UInt8], _ b: [UInt8]) -> Bool {
    if a != b { Issue.record("got \(a.count) bytes, expected \(b.count) (first difference at \(zip(a, b).enumerated().first { $0.element.0 != $0.element.1 }?.offset ?? min(a.count, b.count)))") }
    return a == b
}

@Suite struct MemoryPipeTests {
    @Test func bytesFlowBothWaysInOrder() throws {
        let (loopA, loopB) = try pipeLoops.get()
        let (a, b, da, db) = startedPair(loopA, loopB, capacity: 4096)
        let big = pattern(100_000)
        _ = onLoop(loopA) { a.write(Array("hello ".utf8)); a.write(big); return true }
        _ = onLoop(loopB) { b.write(Array("world".utf8)); return true }
        let got = db.state.wait { $0.received.count >= 6 + big.count }
        #expect(same(got.received, Array("hello ".utf8) + big))
        #expect(same(da.state.wait { $0.received.count >= 5 }.received, Array("world".utf8)))
        #expect(!got.closed)
        // Everything left the writer's queue and it was told so.
        #expect(da.state.wait { $0.drained > 0 }.drained > 0)
        #expect(onLoop(loopA) { a.pendingWriteBytes } == 0)
        closeBoth(a, da, db, loopA)
    }

    @Test func aPausedReaderStopsItsWriterAtTheBufferBound() throws {
        let (loopA, loopB) = try pipeLoops.get()
        let (a, b, da, db) = startedPair(loopA, loopB, capacity: 1024, pauseB: true)
        let data = pattern(10_000)
        let afterWrite = onLoop(loopA) { () -> (Int, Int) in
            a.write(data)
            return (a.pendingWriteBytes, da.state.current.drained)
        }
        // 1024 bytes fit the buffer; the rest waits in the writer's queue, and "drained" has not fired.
        #expect(afterWrite?.0 == 10_000 - 1024)
        #expect(afterWrite?.1 == 0)
        #expect(onLoop(loopB) { b.bufferedInboundBytes } == 1024)
        #expect(db.state.current.received.isEmpty)
        _ = onLoop(loopB) { b.setReadPaused(false); return true }
        #expect(same(db.state.wait { $0.received.count >= data.count }.received, data))
        #expect(da.state.wait { $0.drained > 0 }.drained > 0)
        #expect(onLoop(loopA) { a.pendingWriteBytes } == 0)
        closeBoth(a, da, db, loopA)
    }

    @Test func bytesWrittenBeforeThePeerStartedArriveAfterStart() throws {
        let (loopA, loopB) = try pipeLoops.get()
        let (a, b) = MemoryPipe.makePair(loopA: loopA, loopB: loopB)
        let da = RecordingDelegate(), db = RecordingDelegate()
        _ = onLoop(loopA) { a.start(delegate: da); a.write(Array("early".utf8)); return true }
        usleep(20_000)
        #expect(db.state.current.received.isEmpty)
        _ = onLoop(loopB) { b.start(delegate: db); return true }
        #expect(same(db.state.wait { $0.received.count >= 5 }.received, Array("early".utf8)))
    }

    @Test func closeAfterFlushDeliversEverythingThenEndOfStream() throws {
        let (loopA, loopB) = try pipeLoops.get()
        let (a, _, da, db) = startedPair(loopA, loopB, capacity: 512)
        let data = pattern(5000)
        _ = onLoop(loopA) { a.write(data); a.closeAfterFlush(); return true }
        let got = db.state.wait { $0.closed }
        #expect(same(got.received, data))
        #expect(got.closed && got.closeError == nil)
        #expect(da.state.wait { $0.closed }.closed)
        #expect(onLoop(loopA) { a.isClosed } == true)
    }

    @Test func halfCloseLetsThePeerAnswer() throws {
        let (loopA, loopB) = try pipeLoops.get()
        let (a, b, da, db) = startedPair(loopA, loopB)
        // B answers every request, like a server that reads a request to its end.
        db.onReceive = { bytes in b.write(Array("re:".utf8) + Array(bytes)) }
        _ = onLoop(loopA) { a.write(Array("ping".utf8)); a.shutdownWrite(); return true }
        // B saw the end of stream (and closed, as a socket does); A still read B's answer.
        #expect(same(db.state.wait { $0.closed }.received, Array("ping".utf8)))
        let ga = da.state.wait { $0.closed }
        #expect(same(ga.received, Array("re:ping".utf8)))
        #expect(ga.closeError == nil)
        // Writes after shutdownWrite are dropped.
        _ = onLoop(loopA) { a.write(Array("late".utf8)); return true }
        #expect(same(db.state.current.received, Array("ping".utf8)))
    }

    @Test func closeNowTellsBothSidesAndLaterWritesAreIgnored() throws {
        let (loopA, loopB) = try pipeLoops.get()
        let (a, b, da, db) = startedPair(loopA, loopB)
        _ = onLoop(loopA) { a.closeNow(IOError(.canceled, "test")); return true }
        #expect(da.state.current.closed)
        #expect(da.state.current.closeError?.kind == .canceled)
        let gb = db.state.wait { $0.closed }
        #expect(gb.closed && gb.closeError == nil)
        _ = onLoop(loopB) { b.write(Array("x".utf8)); return true }
        #expect(onLoop(loopB) { b.isClosed } == true)
        #expect(da.state.current.received.isEmpty)
    }

    @Test func aWriterWaitingOnAClosedReaderFails() throws {
        let (loopA, loopB) = try pipeLoops.get()
        let (a, b, da, _) = startedPair(loopA, loopB, capacity: 16, pauseB: true)
        _ = onLoop(loopA) { a.write(pattern(100)); return true }
        // B leaves without reading: A, blocked on the full buffer, learns it and fails.
        _ = onLoop(loopB) { b.closeNow(nil); return true }
        let ga = da.state.wait { $0.closed }
        #expect(ga.closed)
    }

    @Test func theEndsAreFreedOnceClosed() throws {
        let (loopA, loopB) = try pipeLoops.get()
        weak var weakA: MemoryPipeEnd?
        weak var weakB: MemoryPipeEnd?
        do {
            let (a, b, _, _) = startedPair(loopA, loopB)
            weakA = a
            weakB = b
            _ = onLoop(loopA) { a.write(Array("bye".utf8)); a.closeAfterFlush(); return true }
        }
        // The delegates (held by the pipe while open) and the ends go away after both closed.
        let gone = Box(false)
        for _ in 0..<200 where !gone.current {
            _ = onLoop(loopA) { true }
            _ = onLoop(loopB) { true }
            if weakA == nil && weakB == nil { gone.update { $0 = true } }
            usleep(5_000)
        }
        #expect(weakA == nil && weakB == nil)
    }
}
