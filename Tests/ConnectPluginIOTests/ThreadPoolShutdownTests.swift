// ThreadPool.shutdown called from one of the pool's own threads: it must not join itself, must not
// hang, and must not leak the calling thread (a joinable thread nobody joins keeps its stack mapped).
import Glibc
import Testing
@testable import ConnectPluginIO

/// An address on the calling thread's stack and its kernel thread id (from /proc/thread-self).
private func currentStackAndTID() -> (base: UInt, tid: Int32) {
    var local: Int32 = 0
    let address = withUnsafeMutablePointer(to: &local) { UInt(bitPattern: $0) }
    var buf = [CChar](repeating: 0, count: 128)
    let n = readlink("/proc/thread-self", &buf, buf.count - 1)
    let link = n > 0 ? String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self) : ""
    let tid = link.split(separator: "/").last.flatMap { Int32($0) } ?? -1
    return (address, tid)
}

/// The stack pointers of this process's threads blocked in a system call (/proc/self/task/*/syscall:
/// "nr args… sp pc"; a running thread shows "running" and is left out).
private func liveStackPointers() -> [UInt] {
    guard let dir = opendir("/proc/self/task") else { return [] }
    defer { closedir(dir) }
    var out: [UInt] = []
    while let entry = readdir(dir) {
        let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix(while: { $0 != 0 }), as: UTF8.self) }
        guard Int(name) != nil, let f = fopen("/proc/self/task/\(name)/syscall", "r") else { continue }
        var buf = [CChar](repeating: 0, count: 256)
        let ok = fgets(&buf, Int32(buf.count), f) != nil
        fclose(f)
        guard ok else { continue }
        let fields = String(cString: buf).split(separator: " ")
        if fields.count >= 9, let sp = UInt(fields[fields.count - 2].dropFirst(2), radix: 16) { out.append(sp) }
    }
    return out
}

private func readMaps() -> [(UInt, UInt)] {
    guard let f = fopen("/proc/self/maps", "r") else { return [] }
    defer { fclose(f) }
    var out: [(UInt, UInt)] = []
    var buf = [CChar](repeating: 0, count: 4096)
    while fgets(&buf, Int32(buf.count), f) != nil {
        let line = String(cString: buf)
        guard let range = line.split(separator: " ").first else { continue }
        let ends = range.split(separator: "-")
        if ends.count == 2, let lo = UInt(ends[0], radix: 16), let hi = UInt(ends[1], radix: 16) {
            out.append((lo, hi))
        }
    }
    return out
}

@Suite struct ThreadPoolShutdownFromWithinTests {
    @Test func shutdownFromAPoolThreadReturnsAndTheThreadIsReleased() throws {
        let rounds = 24
        var stacks: Set<UInt> = []
        for _ in 0..<rounds {
            let pool = try ThreadPool(threads: 1, maxThreads: 1, name: "cp-shut-test")
            let seen = Box<(base: UInt, tid: Int32, returned: Bool)?>(nil)
            #expect(pool.submit {
                let me = currentStackAndTID()
                pool.shutdown()  // from the pool's only thread: must not join itself or hang
                seen.update { $0 = (me.base, me.tid, true) }
            })
            guard let s = seen.wait(until: { $0 != nil }) else {
                Issue.record("shutdown from a pool thread did not return")
                return
            }
            #expect(s.returned)
            #expect(!pool.submit {})  // stopped
            stacks.insert(s.base)
            // Wait (bounded) until the thread is gone, so that its stack could be reused.
            let deadline = monotonicNowNs() &+ testTimeoutNs
            while access("/proc/self/task/\(s.tid)", F_OK) == 0 && monotonicNowNs() < deadline { usleep(2_000) }
            #expect(access("/proc/self/task/\(s.tid)", F_OK) != 0, "the pool thread never ended")
        }
        // A thread left joinable and never joined keeps its stack mapped for the process's life; a
        // released one goes back to the C library (reused by the next thread, or unmapped).
        // Other tests' threads (running in parallel) may have taken released stacks: a stack some
        // live thread's stack pointer lies in is in use, not leaked.
        let maps = readMaps()
        let sps = liveStackPointers()
        let stillMapped = stacks.filter { address in
            guard let region = maps.first(where: { $0.0 <= address && address < $0.1 }) else { return false }
            return !sps.contains { region.0 <= $0 && $0 < region.1 }
        }.count
        #expect(stillMapped <= rounds / 2, "\(stillMapped) of \(stacks.count) pool thread stacks are still mapped: threads leaked")
    }

    @Test func shutdownFromAPoolThreadWaitsForTheOthersAndRunsTheQueue() throws {
        let pool = try ThreadPool(threads: 2, maxThreads: 2, name: "cp-shut-test")
        let ran = Box(0)
        let done = Box(false)
        for _ in 0..<20 { pool.submit { usleep(1_000); ran.update { $0 += 1 } } }
        pool.submit {
            pool.shutdown()
            done.update { $0 = true }
        }
        #expect(done.wait { $0 })
        #expect(ran.wait { $0 == 20 } == 20)
        #expect(!pool.submit {})
    }
}
