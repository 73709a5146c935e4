// C ABI: versions, status strings, codes, error objects and metadata.
import CConnectPluginABI
import ConnectPlugin

@inline(__always) func staticCString(_ s: StaticString) -> UnsafePointer<CChar> {
    UnsafeRawPointer(s.utf8Start).assumingMemoryBound(to: CChar.self)
}

@_cdecl("connectplugin_version")
public func connectplugin_version() -> UnsafePointer<CChar>? { cp_abi_version_string() }

@_cdecl("connectplugin_version_num")
public func connectplugin_version_num() -> UInt32 { UInt32(CONNECTPLUGIN_VERSION_NUM) }

@_cdecl("connectplugin_abi_version")
public func connectplugin_abi_version() -> UInt32 { UInt32(CONNECTPLUGIN_ABI_VERSION) }

@_cdecl("connectplugin_status_string")
public func connectplugin_status_string(_ status: connectplugin_status) -> UnsafePointer<CChar>? {
    switch status {
    case 0: return staticCString("ok")
    case -1: return staticCString("invalid argument")
    case -2: return staticCString("resource exhausted")
    case -3: return staticCString("closed")
    case -4: return staticCString("I/O error")
    case -5: return staticCString("wrong state")
    case -6: return staticCString("RPC failed")
    case -7: return staticCString("unsupported")
    case 1: return staticCString("end of stream")
    default: return staticCString("unknown status")
    }
}

@_cdecl("connectplugin_code_name")
public func connectplugin_code_name(_ code: connectplugin_code) -> UnsafePointer<CChar>? {
    switch code {
    case 0: return staticCString("ok")
    case 1: return staticCString("canceled")
    case 3: return staticCString("invalid_argument")
    case 4: return staticCString("deadline_exceeded")
    case 5: return staticCString("not_found")
    case 6: return staticCString("already_exists")
    case 7: return staticCString("permission_denied")
    case 8: return staticCString("resource_exhausted")
    case 9: return staticCString("failed_precondition")
    case 10: return staticCString("aborted")
    case 11: return staticCString("out_of_range")
    case 12: return staticCString("unimplemented")
    case 13: return staticCString("internal")
    case 14: return staticCString("unavailable")
    case 15: return staticCString("data_loss")
    case 16: return staticCString("unauthenticated")
    default: return staticCString("unknown")
    }
}

// MARK: Errors

@_cdecl("connectplugin_error_status")
public func connectplugin_error_status(_ e: OpaquePointer?) -> connectplugin_status {
    unbox(e, as: ErrorBox.self)?.error.kind.rawValue ?? CONNECTPLUGIN_ERR_INVALID_ARGUMENT
}

@_cdecl("connectplugin_error_code")
public func connectplugin_error_code(_ e: OpaquePointer?) -> connectplugin_code {
    unbox(e, as: ErrorBox.self)?.error.code.rawValue ?? CONNECTPLUGIN_CODE_UNKNOWN
}

@_cdecl("connectplugin_error_message")
public func connectplugin_error_message(_ e: OpaquePointer?) -> UnsafePointer<CChar>? {
    unbox(e, as: ErrorBox.self)?.message.cString ?? staticCString("")
}

@_cdecl("connectplugin_error_detail_count")
public func connectplugin_error_detail_count(_ e: OpaquePointer?) -> Int {
    unbox(e, as: ErrorBox.self)?.detailTypes.count ?? 0
}

@_cdecl("connectplugin_error_detail")
public func connectplugin_error_detail(_ e: OpaquePointer?, _ index: Int, _ outType: UnsafeMutablePointer<UnsafePointer<CChar>?>?,
                                       _ outValue: UnsafeMutablePointer<UnsafePointer<UInt8>?>?,
                                       _ outLen: UnsafeMutablePointer<Int>?) -> connectplugin_status {
    guard let b = unbox(e, as: ErrorBox.self), let outType, let outValue, let outLen,
          index >= 0, index < b.detailTypes.count, index < b.detailValues.count else { return CONNECTPLUGIN_ERR_INVALID_ARGUMENT }
    outType.pointee = b.detailTypes[index].cString
    outValue.pointee = b.detailValues[index].bytes
    outLen.pointee = b.detailValues[index].count
    return CONNECTPLUGIN_OK
}

@_cdecl("connectplugin_error_metadata")
public func connectplugin_error_metadata(_ e: OpaquePointer?) -> OpaquePointer? {
    guard let b = unbox(e, as: ErrorBox.self) else { return nil }
    return OpaquePointer(Unmanaged.passUnretained(b.metadata).toOpaque())
}

@_cdecl("connectplugin_error_free")
public func connectplugin_error_free(_ e: OpaquePointer?) { release(e, as: ErrorBox.self) }

// MARK: Metadata

@_cdecl("connectplugin_metadata_new")
public func connectplugin_metadata_new() -> OpaquePointer? { box(MetadataBox()) }

@_cdecl("connectplugin_metadata_add")
public func connectplugin_metadata_add(_ m: OpaquePointer?, _ key: UnsafePointer<CChar>?, _ value: UnsafePointer<UInt8>?, _ len: Int,
                                       _ err: UnsafeMutablePointer<OpaquePointer?>?) -> connectplugin_status {
    guarded(err) {
        guard let b = unbox(m, as: MetadataBox.self) else { throw ConnectError.local(.invalidArgument, "metadata is NULL") }
        guard let k = str(key) else { throw ConnectError.local(.invalidArgument, "key is NULL") }
        guard let v = bytesArg(value, len) else { throw ConnectError.local(.invalidArgument, "value is NULL") }
        try b.add(k, v)
    }
}

@_cdecl("connectplugin_metadata_count")
public func connectplugin_metadata_count(_ m: OpaquePointer?) -> Int { unbox(m, as: MetadataBox.self)?.metadata.count ?? 0 }

@_cdecl("connectplugin_metadata_get")
public func connectplugin_metadata_get(_ m: OpaquePointer?, _ index: Int, _ outKey: UnsafeMutablePointer<UnsafePointer<CChar>?>?,
                                       _ outValue: UnsafeMutablePointer<UnsafePointer<UInt8>?>?,
                                       _ outLen: UnsafeMutablePointer<Int>?) -> connectplugin_status {
    guard let b = unbox(m, as: MetadataBox.self), let e = b.entry(index) else { return CONNECTPLUGIN_ERR_INVALID_ARGUMENT }
    outKey?.pointee = e.key.cString
    outValue?.pointee = e.value.bytes
    outLen?.pointee = e.value.count
    return CONNECTPLUGIN_OK
}

@_cdecl("connectplugin_metadata_lookup")
public func connectplugin_metadata_lookup(_ m: OpaquePointer?, _ key: UnsafePointer<CChar>?, _ outLen: UnsafeMutablePointer<Int>?) -> UnsafePointer<UInt8>? {
    guard let b = unbox(m, as: MetadataBox.self), let k = str(key) else { return nil }
    let lower = asciiLower(k)
    for i in 0..<b.metadata.count {
        if let e = b.entry(i), e.key.count == lower.utf8.count, String(cString: e.key.cString) == lower {
            outLen?.pointee = e.value.count
            return e.value.bytes
        }
    }
    return nil
}

func asciiLower(_ s: String) -> String {
    String(decoding: s.utf8.map { $0 >= 0x41 && $0 <= 0x5A ? $0 &+ 0x20 : $0 }, as: UTF8.self)
}

@_cdecl("connectplugin_metadata_free")
public func connectplugin_metadata_free(_ m: OpaquePointer?) { release(m, as: MetadataBox.self) }
