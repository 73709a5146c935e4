// I/O core: an in-memory duplex byte pipe. Two ends, each owned by an event loop (the same or two
// different ones), each a ByteStreamConnection with the socket's behaviour: writes are queued and
// moved into a bounded buffer per direction (the pipe's "kernel buffer"); the reader's loop delivers
// them to its delegate; `connectionDrained` fires when everything written is in that buffer; a full
// buffer holds the rest in the writer's queue until the reader takes bytes (back-pressure, so a paused
// reader stops its writer). End of stream and closing behave like a socket's FIN: the peer reads what
// was buffered, then sees its connection closed. Nothing here touches a file descriptor.

/// One direction of a pipe: the bounded buffer between a writer end and a reader end. Shared by the
/// two loops, so every field is guarded by `lock`.
final class PipeChannel: @unchecked Sendable {
    let lock = Lock()
    let capacity: Int
    var buffer: [UInt8] = []
    var readOffset = 0
    /// The writer finished (shutdownWrite or close): after `buffer` the reader sees end of stream.
    var eof = false
    /// The reader closed: the writer's further writes fail.
    var readerGone = false
    /// A delivery task for the reader is queued on its loop.
    var deliveryScheduled = false
    /// The writer has bytes waiting for space.
    var writerWaiting = false

    init(capacity: Int) { self.capacity = capacity }

    var buffered: Int { buffer.count - readOffset }
}

/// Makes connected pairs of in-memory pipe ends.
public enum MemoryPipe {
    /// The default bound of each direction's buffer.
    public static let defaultCapacity = 256 * 1024

    /// Two connected ends: what one writes, the other reads. `a` lives on `loopA`, `b` on `loopB`
    /// (which may be the same loop). `capacity` bounds the bytes in flight per direction (at least 1).
    public static func makePair(loopA: EventLoop, loopB: EventLoop, capacity: Int = defaultCapacity,
                                labelA: String = "memory-pipe", labelB: String = "memory-pipe")
        -> (a: MemoryPipeEnd, b: MemoryPipeEnd)
    {
        let cap = max(1, capacity)
        let aToB = PipeChannel(capacity: cap)
        let bToA = PipeChannel(capacity: cap)
        let a = MemoryPipeEnd(loop: loopA, inbound: bToA, outbound: aToB, label: labelA)
        let b = MemoryPipeEnd(loop: loopB, inbound: aToB, outbound: bToA, label: labelB)
        a.peer = b
        b.peer = a
        return (a, b)
    }
}

/// One end of an in-memory pipe. Loop thread only (its own loop), like a socket connection. Until
/// `start`, bytes the peer writes wait in the buffer.
public final class MemoryPipeEnd: ByteStreamConnection, @unchecked Sendable {
    public let loop: EventLoop
    /// Names the end in errors and descriptions (e.g. "inproc:kv").
    public let label: String
    let inbound: PipeChannel
    let outbound: PipeChannel
    /// The other end. Weak: each end lives as long as its delegate (or its creator) holds it.
    weak var peer: MemoryPipeEnd?

    public weak var delegate: ConnectionDelegate?
    private var delegateRetainer: AnyObject?
    private var pending: [UInt8] = []
    private var pendingOffset = 0
    private var started = false
    private var readPaused = false
    private var writeShutdown = false
    private var closeWhenDrained = false
    private var lingering = false
    private var lingerBudget = 0
    public private(set) var isClosed = false

    /// Bytes handed to the delegate per delivery at most (the socket's read chunk).
    static let deliveryChunk = 64 * 1024

    init(loop: EventLoop, inbound: PipeChannel, outbound: PipeChannel, label: String) {
        self.loop = loop
        self.inbound = inbound
        self.outbound = outbound
        self.label = label
    }

    public var isTLS: Bool { false }
    public var negotiatedALPN: String? { nil }

    /// Queued bytes not yet in the pipe's buffer.
    public var pendingWriteBytes: Int { pending.count - pendingOffset }

    /// Bytes in the buffer towards this end that it has not delivered yet (tests).
    public var bufferedInboundBytes: Int { inbound.lock.withLock { inbound.buffered } }

    public func start(delegate: ConnectionDelegate, connecting: Bool, onConnect: ((HTTPError?) -> Void)?) {
        if started || isClosed {
            onConnect?(HTTPError(.closed, "\(label): the pipe end was already started or closed"))
            return
        }
        started = true
        self.delegate = delegate
        delegateRetainer = delegate
        onConnect?(nil)
        if isClosed { return }
        scheduleDelivery()
        if pendingWriteBytes > 0 { flush() }
    }

    public func replaceDelegate(_ d: ConnectionDelegate) {
        delegate = d
        delegateRetainer = d
    }

    public func write(_ bytes: UnsafeRawBufferPointer) {
        if isClosed || writeShutdown || closeWhenDrained || lingering || bytes.isEmpty { return }
        pending.append(contentsOf: bytes)
        if started { flush() }
    }

    public func write(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { write($0) }
    }

    public func setReadPaused(_ paused: Bool) {
        if readPaused == paused || isClosed { return }
        readPaused = paused
        if !paused { scheduleDelivery() }
    }

    /// Half-close: after everything queued is in the buffer, the peer sees end of stream; this end
    /// keeps reading until the peer closes.
    public func shutdownWrite() {
        if isClosed || writeShutdown { return }
        writeShutdown = true
        if started { flush() } else if pendingWriteBytes == 0 { sendEOF() }
    }

    public func closeAfterFlush() {
        if isClosed { return }
        closeWhenDrained = true
        if pendingWriteBytes == 0 {
            closeNow(nil)
        } else if started {
            flush()
        }
    }

    /// In memory nothing is lost by closing with unread input, but the peer may still be writing a
    /// request it wants answered: send what is queued, end our direction, drop what arrives, and close
    /// on the peer's end of stream, after `maxBytes` or `timeoutNs`.
    public func lingerClose(timeoutNs: UInt64, maxBytes: Int) {
        if isClosed || lingering { return }
        lingering = true
        lingerBudget = maxBytes
        writeShutdown = true
        loop.schedule(afterNs: timeoutNs) { [weak self] in self?.closeNow(nil) }
        if started { flush() } else if pendingWriteBytes == 0 { sendEOF() }
        readPaused = false
        scheduleDelivery()
    }

    public func closeNow(_ error: HTTPError?) {
        if isClosed { return }
        isClosed = true
        pending = []
        pendingOffset = 0
        let notifyPeer: Bool = outbound.lock.withLock {
            outbound.eof = true
            if outbound.deliveryScheduled { return false }
            outbound.deliveryScheduled = true
            return true
        }
        let wakeWriter: Bool = inbound.lock.withLock {
            inbound.readerGone = true
            inbound.buffer = []
            inbound.readOffset = 0
            let w = inbound.writerWaiting
            inbound.writerWaiting = false
            return w
        }
        if notifyPeer || wakeWriter, let p = peer {
            p.loop.execute {
                if notifyPeer { p.deliver() }
                if wakeWriter { p.flush() }
            }
        }
        let d = delegate
        d?.connectionClosed(error)
        delegateRetainer = nil
    }

    // MARK: Moving bytes

    /// Writer side (own loop): moves queued bytes into the outbound buffer as far as it has room.
    func flush() {
        if isClosed || !started { return }
        var readerGone = false
        var schedule = false
        var allMoved = false
        outbound.lock.withLock {
            if outbound.readerGone {
                readerGone = true
                return
            }
            let waiting = pending.count - pendingOffset
            let room = outbound.capacity - outbound.buffered
            let n = min(waiting, max(0, room))
            if n > 0 {
                if outbound.readOffset > 0 && outbound.readOffset >= outbound.buffer.count / 2 {
                    outbound.buffer.removeFirst(outbound.readOffset)
                    outbound.readOffset = 0
                }
                pending.withUnsafeBytes { buf in
                    outbound.buffer.append(contentsOf: UnsafeRawBufferPointer(rebasing: buf[pendingOffset..<(pendingOffset + n)]))
                }
                pendingOffset += n
            }
            allMoved = pendingOffset >= pending.count
            outbound.writerWaiting = !allMoved
            if allMoved && (writeShutdown || closeWhenDrained) { outbound.eof = true }
            if (n > 0 || outbound.eof) && !outbound.deliveryScheduled {
                outbound.deliveryScheduled = true
                schedule = true
            }
        }
        if readerGone {
            closeNow(HTTPError(.io, "write to \(label): the peer closed the in-memory pipe"))
            return
        }
        if schedule {
            guard let p = peer else {
                closeNow(HTTPError(.io, "write to \(label): the peer end of the in-memory pipe is gone"))
                return
            }
            p.loop.execute { p.deliver() }
        }
        if !allMoved { return }
        pending.removeAll(keepingCapacity: pending.capacity <= 1 << 20)
        pendingOffset = 0
        if closeWhenDrained {
            closeNow(nil)
            return
        }
        if !lingering && !writeShutdown { delegate?.connectionDrained() }
    }

    private func sendEOF() {
        let schedule: Bool = outbound.lock.withLock {
            outbound.eof = true
            if outbound.deliveryScheduled { return false }
            outbound.deliveryScheduled = true
            return true
        }
        if schedule, let p = peer { p.loop.execute { p.deliver() } }
    }

    /// Queues a delivery on this end's loop unless one is queued.
    private func scheduleDelivery() {
        let schedule: Bool = inbound.lock.withLock {
            if inbound.deliveryScheduled { return false }
            inbound.deliveryScheduled = true
            return true
        }
        if schedule { loop.execute { [self] in deliver() } }
    }

    /// Reader side (own loop): hands buffered bytes to the delegate, one chunk at a time.
    func deliver() {
        var chunk: [UInt8] = []
        var eof = false
        var wakeWriter = false
        var more = false
        let active = started && !isClosed && !readPaused
        inbound.lock.withLock {
            inbound.deliveryScheduled = false
            if !active { return }
            let n = min(inbound.buffered, MemoryPipeEnd.deliveryChunk)
            if n > 0 {
                chunk = Array(inbound.buffer[inbound.readOffset..<(inbound.readOffset + n)])
                inbound.readOffset += n
                if inbound.readOffset == inbound.buffer.count {
                    inbound.buffer.removeAll(keepingCapacity: inbound.buffer.capacity <= 1 << 20)
                    inbound.readOffset = 0
                }
                if inbound.writerWaiting {
                    inbound.writerWaiting = false
                    wakeWriter = true
                }
            }
            more = inbound.buffered > 0
            eof = inbound.eof && !more
            if more || eof {
                // Another round from the loop, after other work (one busy pipe cannot starve others).
                inbound.deliveryScheduled = true
            }
        }
        if !active { return }
        if wakeWriter, let p = peer { p.loop.execute { p.flush() } }
        if !chunk.isEmpty {
            if lingering {
                lingerBudget -= chunk.count
                if lingerBudget <= 0 {
                    closeNow(nil)
                    return
                }
            } else {
                chunk.withUnsafeBytes { delegate?.connectionReceived($0) }
            }
        }
        if more || eof {
            if isClosed { return }
            if more {
                loop.execute { [self] in deliver() }
            } else if chunk.isEmpty {
                closeNow(nil)
            } else {
                loop.execute { [self] in deliver() }
            }
        }
    }
}
