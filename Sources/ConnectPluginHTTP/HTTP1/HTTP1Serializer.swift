// HTTP/1.1 message serialization (RFC 9112): heads, chunks and the last chunk with trailers, appended to
// a caller-owned byte buffer. Control characters (other than HTAB) in names, values, method and target
// are replaced by spaces so that no input can inject extra lines into the message.

private let CRLF: (UInt8, UInt8) = (0x0D, 0x0A)

public enum HTTP1Serializer {
    /// "METHOD target HTTP/1.1\r\n" + header lines + "\r\n". Header names are written as given.
    public static func requestHead(method: String, target: String, headers: HTTPHeaders, into out: inout [UInt8]) {
        appendSafe(method, &out)
        out.append(0x20)
        appendSafe(target, &out)
        out.append(contentsOf: " HTTP/1.1\r\n".utf8)
        appendFields(headers, &out)
        out.append(CRLF.0)
        out.append(CRLF.1)
    }

    /// "HTTP/1.1 200 OK\r\n" + header lines + "\r\n"; the reason phrase comes from httpReasonPhrase.
    public static func responseHead(status: Int, headers: HTTPHeaders, into out: inout [UInt8]) {
        out.append(contentsOf: "HTTP/1.1 ".utf8)
        appendDecimal(status, &out)
        out.append(0x20)
        out.append(contentsOf: httpReasonPhrase(status).utf8)
        out.append(CRLF.0)
        out.append(CRLF.1)
        appendFields(headers, &out)
        out.append(CRLF.0)
        out.append(CRLF.1)
    }

    /// One chunk: hex size CRLF data CRLF. Empty input writes nothing (a zero-size chunk would end the body).
    public static func chunk(_ bytes: UnsafeRawBufferPointer, into out: inout [UInt8]) {
        let count = bytes.count
        if count == 0 { return }
        out.reserveCapacity(out.count + count + 20)
        appendHex(count, &out)
        out.append(CRLF.0)
        out.append(CRLF.1)
        out.append(contentsOf: bytes)
        out.append(CRLF.0)
        out.append(CRLF.1)
    }

    /// The last chunk: "0\r\n" + trailer lines + "\r\n".
    public static func lastChunk(trailers: HTTPHeaders, into out: inout [UInt8]) {
        out.append(0x30)
        out.append(CRLF.0)
        out.append(CRLF.1)
        appendFields(trailers, &out)
        out.append(CRLF.0)
        out.append(CRLF.1)
    }

    // MARK: - Helpers

    private static func appendFields(_ headers: HTTPHeaders, _ out: inout [UInt8]) {
        for (name, value) in headers {
            appendSafe(name, &out)
            out.append(0x3A)
            out.append(0x20)
            appendSafe(value, &out)
            out.append(CRLF.0)
            out.append(CRLF.1)
        }
    }

    /// Appends the UTF-8 of `s`, replacing control characters other than HTAB (CR, LF, NUL, DEL, …) by SP.
    private static func appendSafe(_ s: String, _ out: inout [UInt8]) {
        let utf8 = s.utf8
        var clean = true
        for b in utf8 where (b < 0x20 && b != 0x09) || b == 0x7F {
            clean = false
            break
        }
        if clean {
            out.append(contentsOf: utf8)
            return
        }
        for b in utf8 {
            out.append(((b < 0x20 && b != 0x09) || b == 0x7F) ? 0x20 : b)
        }
    }

    private static func appendDecimal(_ value: Int, _ out: inout [UInt8]) {
        if value < 0 || value > 999_999 {
            out.append(contentsOf: String(value).utf8)
            return
        }
        var digits: (UInt8, UInt8, UInt8, UInt8, UInt8, UInt8) = (0, 0, 0, 0, 0, 0)
        var n = value
        var count = 0
        withUnsafeMutableBytes(of: &digits) { d in
            repeat {
                d[count] = UInt8(truncatingIfNeeded: 0x30 &+ n % 10)
                n /= 10
                count &+= 1
            } while n > 0 && count < 6
            while count > 0 {
                count &-= 1
                out.append(d[count])
            }
        }
    }

    private static func appendHex(_ value: Int, _ out: inout [UInt8]) {
        var v = UInt(bitPattern: value)
        var digits: (UInt64, UInt64) = (0, 0)  // 16 bytes: enough for a 64-bit value in hex
        var count = 0
        withUnsafeMutableBytes(of: &digits) { d in
            repeat {
                let nibble = UInt8(truncatingIfNeeded: v & 0xF)
                d[count] = nibble < 10 ? 0x30 &+ nibble : 0x61 &+ (nibble &- 10)
                v >>= 4
                count &+= 1
            } while v != 0 && count < 16
            while count > 0 {
                count &-= 1
                out.append(d[count])
            }
        }
    }
}

/// The standard reason phrase for `status` (RFC 9110 and common extensions); "Unknown" otherwise.
public func httpReasonPhrase(_ status: Int) -> String {
    switch status {
    case 100: return "Continue"
    case 101: return "Switching Protocols"
    case 102: return "Processing"
    case 103: return "Early Hints"
    case 200: return "OK"
    case 201: return "Created"
    case 202: return "Accepted"
    case 203: return "Non-Authoritative Information"
    case 204: return "No Content"
    case 205: return "Reset Content"
    case 206: return "Partial Content"
    case 207: return "Multi-Status"
    case 208: return "Already Reported"
    case 226: return "IM Used"
    case 300: return "Multiple Choices"
    case 301: return "Moved Permanently"
    case 302: return "Found"
    case 303: return "See Other"
    case 304: return "Not Modified"
    case 305: return "Use Proxy"
    case 307: return "Temporary Redirect"
    case 308: return "Permanent Redirect"
    case 400: return "Bad Request"
    case 401: return "Unauthorized"
    case 402: return "Payment Required"
    case 403: return "Forbidden"
    case 404: return "Not Found"
    case 405: return "Method Not Allowed"
    case 406: return "Not Acceptable"
    case 407: return "Proxy Authentication Required"
    case 408: return "Request Timeout"
    case 409: return "Conflict"
    case 410: return "Gone"
    case 411: return "Length Required"
    case 412: return "Precondition Failed"
    case 413: return "Content Too Large"
    case 414: return "URI Too Long"
    case 415: return "Unsupported Media Type"
    case 416: return "Range Not Satisfiable"
    case 417: return "Expectation Failed"
    case 418: return "I'm a teapot"
    case 421: return "Misdirected Request"
    case 422: return "Unprocessable Content"
    case 423: return "Locked"
    case 424: return "Failed Dependency"
    case 425: return "Too Early"
    case 426: return "Upgrade Required"
    case 428: return "Precondition Required"
    case 429: return "Too Many Requests"
    case 431: return "Request Header Fields Too Large"
    case 451: return "Unavailable For Legal Reasons"
    case 499: return "Client Closed Request"
    case 500: return "Internal Server Error"
    case 501: return "Not Implemented"
    case 502: return "Bad Gateway"
    case 503: return "Service Unavailable"
    case 504: return "Gateway Timeout"
    case 505: return "HTTP Version Not Supported"
    case 506: return "Variant Also Negotiates"
    case 507: return "Insufficient Storage"
    case 508: return "Loop Detected"
    case 510: return "Not Extended"
    case 511: return "Network Authentication Required"
    default: return "Unknown"
    }
}
