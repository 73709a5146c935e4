// What a plugin's own code writes to fd 1 and fd 2 after the handshake, on its way to the host
// through go-plugin's `plugin.GRPCStdio/StreamStdio` (plugin-wire.md §1.9).
//
// go-plugin blocks the plugin's writes until a host reads them, so a plugin under a host that never
// calls StreamStdio (every v1.0.1 host) stalls once the pipe fills (#93, #147). Here the queue is
// bounded in bytes and drops the oldest data when full, counting what it dropped: the plugin never
// blocks on its own stdout, and memory stays bounded. Chunks are at most 1 KiB, as go-plugin's.

import ConnectPluginIO

public final class StdioForwarder: @unchecked Sendable {
    public static let chunkSize = 1024
    private let cond = ConditionLock()
    private var queue: [StdioData] = []
    private var head = 0
    private var queuedBytes = 0
    private let limit: Int
    private var closed = false
    /// Bytes dropped because nobody read them in time.
    public private(set) var droppedBytes = 0

    public init(limitBytes: Int = 1 << 20) {
        limit = max(limitBytes, StdioForwarder.chunkSize)
    }

    /// Queues bytes the plugin wrote on `channel`, split into 1 KiB chunks.
    public func push(_ channel: StdioData.Channel, _ bytes: [UInt8]) {
        if bytes.isEmpty { return }
        cond.withLock {
            if closed { return }
            var i = 0
            while i < bytes.count {
                let j = min(i + StdioForwarder.chunkSize, bytes.count)
                queue.append(StdioData(channel: channel, data: Array(bytes[i..<j])))
                queuedBytes += j - i
                i = j
            }
            while queuedBytes > limit, head < queue.count {
                queuedBytes -= queue[head].data.count
                droppedBytes += queue[head].data.count
                queue[head] = StdioData()
                head += 1
            }
            if head > 64 && head * 2 > queue.count {
                queue.removeFirst(head)
                head = 0
            }
            cond.broadcast()
        }
    }

    /// The next chunk; nil when closed and drained, or at `untilNs` with nothing queued (`timedOut`).
    func next(untilNs: UInt64) -> (StdioData?, timedOut: Bool) {
        cond.lock()
        defer { cond.unlock() }
        while head >= queue.count {
            if closed { return (nil, false) }
            if !cond.wait(untilNs: untilNs) { return (nil, head >= queue.count) }
        }
        let d = queue[head]
        queue[head] = StdioData()
        head += 1
        queuedBytes -= d.data.count
        if head == queue.count {
            queue.removeAll(keepingCapacity: true)
            head = 0
        }
        return (d, false)
    }

    /// No more data will come: readers drain what is queued, then end.
    public func close() {
        cond.withLock {
            closed = true
            cond.broadcast()
        }
    }

    var isClosed: Bool { cond.withLock { closed && head >= queue.count } }

    func poke() { cond.withLock { cond.broadcast() } }
}
