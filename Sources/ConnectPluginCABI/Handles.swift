// Handle boxing and the small owned C buffers behind borrowed pointers of the C ABI.
import CConnectPluginABI
import ConnectPlugin
import ConnectPluginHTTP

/// Bytes in malloc'd memory with a NUL after them, so they can be handed out as `const char *` or
/// `const uint8_t *` and stay valid as long as their owner.
final class CBytes {
    let pointer: UnsafeMutablePointer<UInt8>
    let count: Int

    init<C: Collection>(_ bytes: C) where C.Element == UInt8 {
        count = bytes.count
        pointer = UnsafeMutablePointer<UInt8>.allocate(capacity: count + 1)
        let copied: Void? = bytes.withContiguousStorageIfAvailable { src in
            if let base = src.baseAddress { pointer.initialize(from: base, count: src.count) }
        }
        if copied == nil {
            var i = 0
            for b in bytes {
                (pointer + i).initialize(to: b)
                i += 1
            }
        }
        (pointer + count).initialize(to: 0)
    }

    convenience init(_ s: String) { self.init(s.utf8) }

    /// The same bytes for every call that names one of the few codec and protocol names: shared,
    /// immutable, never freed (a call's codec and protocol cost no allocation).
    static func interned(_ s: String) -> CBytes {
        switch s {
        case "proto": return internedProto
        case "json": return internedJSON
        case "connect": return internedConnect
        case "grpc": return internedGRPC
        case "grpcweb": return internedGRPCWeb
        default: return CBytes(s)
        }
    }
    private static let internedProto = CBytes("proto")
    private static let internedJSON = CBytes("json")
    private static let internedConnect = CBytes("connect")
    private static let internedGRPC = CBytes("grpc")
    private static let internedGRPCWeb = CBytes("grpcweb")

    deinit { pointer.deallocate() }

    var cString: UnsafePointer<CChar> { UnsafeRawPointer(pointer).assumingMemoryBound(to: CChar.self) }

    /// True when these bytes are the UTF-8 of `s`.
    func equals(_ s: String) -> Bool {
        let u = s.utf8
        if u.count != count { return false }
        var i = 0
        for b in u {
            if pointer[i] != b { return false }
            i += 1
        }
        return true
    }
    var bytes: UnsafePointer<UInt8> { UnsafePointer(pointer) }
}

/// Boxes a Swift object as an opaque handle (+1) and back.
@inline(__always) func box<T: AnyObject>(_ o: T) -> OpaquePointer { OpaquePointer(Unmanaged.passRetained(o).toOpaque()) }
@inline(__always) func unbox<T: AnyObject>(_ p: OpaquePointer?, as: T.Type) -> T? {
    guard let p else { return nil }
    return Unmanaged<T>.fromOpaque(UnsafeRawPointer(p)).takeUnretainedValue()
}
@inline(__always) func release<T: AnyObject>(_ p: OpaquePointer?, as: T.Type) {
    guard let p else { return }
    Unmanaged<T>.fromOpaque(UnsafeRawPointer(p)).release()
}

/// A C string argument as a Swift String; nil for NULL.
@inline(__always) func str(_ p: UnsafePointer<CChar>?) -> String? {
    guard let p else { return nil }
    return String(decoding: UnsafeRawBufferPointer(start: p, count: strlenSafe(p)), as: UTF8.self)
}

@inline(__always) func strlenSafe(_ p: UnsafePointer<CChar>) -> Int {
    var n = 0
    while p[n] != 0 { n += 1 }
    return n
}

/// Bytes argument (NULL with length 0 is the empty message).
func bytesArg(_ p: UnsafePointer<UInt8>?, _ len: Int) -> [UInt8]? {
    if len == 0 { return [] }
    guard let p, len > 0 else { return nil }
    return Array(UnsafeBufferPointer(start: p, count: len))
}

// MARK: Errors

final class ErrorBox {
    let error: ConnectError
    let message: CBytes
    let detailTypes: [CBytes]
    let detailValues: [CBytes]
    let metadata: MetadataBox

    init(_ e: ConnectError) {
        error = e
        message = CBytes(e.message)
        detailTypes = e.details.map { CBytes($0.type) }
        detailValues = e.details.map { CBytes($0.value) }
        metadata = MetadataBox(e.metadata)
    }
}

/// Stores `e` in *out (if out is non-NULL) and returns its status.
func fail(_ e: ConnectError, _ out: UnsafeMutablePointer<OpaquePointer?>?) -> connectplugin_status {
    out?.pointee = box(ErrorBox(e))
    return e.kind.rawValue
}

func fail(_ kind: ConnectError.Kind, _ message: String, _ out: UnsafeMutablePointer<OpaquePointer?>?) -> connectplugin_status {
    fail(ConnectError.local(kind, message), out)
}

/// Runs `body`, turning any thrown error into a status and an error object.
func guarded(_ out: UnsafeMutablePointer<OpaquePointer?>?, _ body: () throws -> Void) -> connectplugin_status {
    out?.pointee = nil
    do {
        try body()
        return CONNECTPLUGIN_OK
    } catch let e as ConnectError {
        return fail(e, out)
    } catch {
        return fail(.invalidArgument, "\(error)", out)
    }
}

// MARK: Metadata

final class MetadataBox {
    private(set) var metadata: Metadata
    /// The C strings behind connectplugin_metadata_get, built on the first read. The header lets
    /// several threads read one metadata object at once, so the cache is built and read under
    /// `lock`; once built it stays (and its pointers stay valid) until the next `add` or the free.
    private var cache: [(key: CBytes, value: CBytes)]?
    private let lock = Lock()

    init(_ m: Metadata = Metadata()) { metadata = m }

    func entry(_ i: Int) -> (key: CBytes, value: CBytes)? {
        lock.withLock {
            let c: [(key: CBytes, value: CBytes)]
            if let built = cache {
                c = built
            } else {
                c = metadata.entries.map { (CBytes($0.key), CBytes($0.value)) }
                cache = c
            }
            guard i >= 0, i < c.count else { return nil }
            return c[i]
        }
    }

    func add(_ key: String, _ value: [UInt8]) throws {
        try lock.withLock {
            try metadata.add(key, value)
            cache = nil
        }
    }
}
