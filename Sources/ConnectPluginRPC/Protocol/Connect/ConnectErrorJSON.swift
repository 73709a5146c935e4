import ConnectPluginHTTP
// The Connect unary error body (protocol digest §3.3): writing it (server, CU-12) and reading it from a
// non-200 response (client, CU-14).
//
//   {"code":"not_found","message":"…","details":[{"type":"pkg.Msg","value":"<unpadded b64>"}]}

public enum ConnectErrorJSON {
    /// The error JSON body. `message` is omitted when empty and `details` when there are none; detail
    /// values are unpadded standard base64 and detail types carry no URL prefix. `.ok` (never valid
    /// here) is written as "unknown".
    public static func encode(_ error: ConnectError) -> [UInt8] {
        let code: Code = error.code == .ok ? .unknown : error.code
        var members: [(String, JSONValue)] = [("code", .string(code.name))]
        if !error.message.isEmpty {
            members.append(("message", .string(error.message)))
        }
        if !error.details.isEmpty {
            let details: [JSONValue] = error.details.map { d in
                .object([
                    ("type", .string(typeName(d.type))),
                    ("value", .string(Base64.encode(d.value, padded: false))),
                ])
            }
            members.append(("details", .array(details)))
        }
        return JSON.serialize(.object(members))
    }

    /// The error described by a non-200 Connect unary response (CU-14 steps 2–6). Never throws: a body
    /// that is not usable JSON yields the code implied by `httpStatus` and the status line as message.
    /// The result has kind `.rpc` and empty metadata.
    public static func decode(body: [UInt8], contentType: String?, httpStatus: Int) -> ConnectError {
        let fallbackCode = Code.fromHTTPStatus(httpStatus)
        let fallback = ConnectError(fallbackCode, statusText(httpStatus))
        guard let ct = contentType, isJSONContentType(ct) else { return fallback }
        guard let json = try? JSON.parse(body), case let .object(members) = json else { return fallback }

        var code = fallbackCode
        var message = ""
        var details: [ErrorDetail] = []
        var seenCode = false, seenMessage = false, seenDetails = false
        // The first occurrence of each key counts; unknown keys are ignored.
        for (key, value) in members {
            switch key {
            case "code" where !seenCode:
                seenCode = true
                if let s = value.stringValue, let c = Code(name: s) { code = c }
            case "message" where !seenMessage:
                seenMessage = true
                if let s = value.stringValue { message = s }
            case "details" where !seenDetails:
                seenDetails = true
                guard let list = value.arrayValue else { continue }
                for item in list {
                    if let d = decodeDetail(item) { details.append(d) }
                }
            default:
                continue
            }
        }
        return ConnectError(code, message, details: details)
    }

    // MARK: - Helpers

    /// A detail object → ErrorDetail; nil when `type` is missing or empty or `value` is not base64.
    static func decodeDetail(_ item: JSONValue) -> ErrorDetail? {
        guard let rawType = item["type"]?.stringValue, let rawValue = item["value"]?.stringValue else { return nil }
        let type = typeName(rawType)
        if type.isEmpty { return nil }
        guard let bytes = Base64.decode(rawValue) else { return nil }
        return ErrorDetail(type: type, value: bytes)
    }

    /// The message name of a type or type URL: the part after the last "/".
    static func typeName(_ t: String) -> String {
        guard let slash = t.utf8.lastIndex(of: UInt8(ascii: "/")) else { return t }
        return String(t[t.utf8.index(after: slash)...])
    }

    /// "application/json", optionally with a charset=utf-8 parameter (any case, spacing or quoting).
    static func isJSONContentType(_ ct: String) -> Bool {
        let parts = Array(ct.utf8).split(separator: UInt8(ascii: ";"), omittingEmptySubsequences: false)
        guard let first = parts.first, lowerTrimmed(first) == Array("application/json".utf8) else { return false }
        for param in parts.dropFirst() {
            let p = lowerTrimmed(param)
            if p.isEmpty { continue }
            guard let eq = p.firstIndex(of: UInt8(ascii: "=")) else { return false }
            let name = lowerTrimmed(p[..<eq])
            var value = lowerTrimmed(p[(eq + 1)...])
            if value.count >= 2, value.first == UInt8(ascii: "\""), value.last == UInt8(ascii: "\"") {
                value = Array(value.dropFirst().dropLast())
            }
            guard name == Array("charset".utf8), value == Array("utf-8".utf8) else { return false }
        }
        return true
    }

    /// ASCII-lowercased bytes without surrounding spaces and tabs.
    static func lowerTrimmed<C: Collection>(_ c: C) -> [UInt8] where C.Element == UInt8 {
        var bytes = Array(c)
        while let l = bytes.last, l == 0x20 || l == 0x09 { bytes.removeLast() }
        var start = 0
        while start < bytes.count, bytes[start] == 0x20 || bytes[start] == 0x09 { start += 1 }
        if start > 0 { bytes.removeFirst(start) }
        for k in bytes.indices where bytes[k] >= 0x41 && bytes[k] <= 0x5A { bytes[k] = bytes[k] &+ 0x20 }
        return bytes
    }

    /// "HTTP status N <reason phrase>" (ERR-5); just "HTTP status N" for statuses not in the table.
    static func statusText(_ status: Int) -> String {
        if let phrase = reasonPhrase(status) { return "HTTP status \(status) \(phrase)" }
        return "HTTP status \(status)"
    }

    /// The standard phrase (from the HTTP layer's table), nil for statuses it does not know.
    static func reasonPhrase(_ status: Int) -> String? {
        let p = httpReasonPhrase(status)
        return p == "Unknown" ? nil : p
    }
}
