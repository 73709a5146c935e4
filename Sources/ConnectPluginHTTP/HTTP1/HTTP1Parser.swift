// HTTP/1.1 message parsing (RFC 9112): an incremental, push-style parser for requests or responses.
//
// Bytes go in with feed(); completed events (head, body pieces, end with trailers) come out in order.
// Partial input is buffered; the buffer stays bounded (header section ≤ maxHeaderBytes, chunk-size line
// ≤ maxChunkLineBytes, body data is handed out as soon as it arrives). Every malformed input becomes an
// HTTP1ParseError; nothing here traps on input.

/// The head of an HTTP/1.x request.
public struct HTTP1RequestHead: Equatable {
    public var method: String
    public var target: String
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    public var versionMinor: Int
    public var headers: HTTPHeaders
    /// Whether the connection may carry another request after this one (Connection header and version).
    public var keepAlive: Bool

    public init(method: String, target: String, versionMinor: Int = 1, headers: HTTPHeaders = HTTPHeaders(), keepAlive: Bool = true) {
        self.method = method
        self.target = target
        self.versionMinor = versionMinor
        self.headers = headers
        self.keepAlive = keepAlive
    }
}

/// The head of an HTTP/1.x response.
public struct HTTP1ResponseHead: Equatable {
    public var status: Int
    public var reason: String
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    public var versionMinor: Int
    public var headers: HTTPHeaders
    /// Whether the connection may carry another exchange after this one. False when the body is
    /// delimited by the connection closing.
    public var keepAlive: Bool

    public init(status: Int, reason: String, versionMinor: Int = 1, headers: HTTPHeaders = HTTPHeaders(), keepAlive: Bool = true) {
        self.status = status
        self.reason = reason
        self.versionMinor = versionMinor
        self.headers = headers
        self.keepAlive = keepAlive
    }
}

/// One step of a parsed message: its head, a piece of body data (never empty), or its end.
public enum HTTP1ParseEvent: Equatable {
    case requestHead(HTTP1RequestHead)
    case responseHead(HTTP1ResponseHead)
    case body([UInt8])
    case end(trailers: HTTPHeaders)
}

/// A malformed or unsupported message. `status` is the HTTP status a server should answer with
/// (400, 413, 431, 501 or 505).
public struct HTTP1ParseError: Error, Equatable, CustomStringConvertible {
    public var status: Int
    public var message: String

    public init(status: Int, message: String) {
        self.status = status
        self.message = message
    }

    public var description: String { "HTTP/1.1 parse error \(status): \(message)" }
}

// ASCII bytes used below.
private let CR: UInt8 = 0x0D
private let LF: UInt8 = 0x0A
private let SP: UInt8 = 0x20
private let HT: UInt8 = 0x09
private let COLON: UInt8 = 0x3A
private let SEMICOLON: UInt8 = 0x3B
private let COMMA: UInt8 = 0x2C

/// tchar (RFC 9110 §5.6.2): "!#$%&'*+-.^_`|~", DIGIT, ALPHA.
@inline(__always)
private func isTokenChar(_ b: UInt8) -> Bool {
    switch b {
    case 0x30...0x39, 0x41...0x5A, 0x61...0x7A: return true
    case 0x21, 0x23, 0x24, 0x25, 0x26, 0x27, 0x2A, 0x2B, 0x2D, 0x2E, 0x5E, 0x5F, 0x60, 0x7C, 0x7E: return true
    default: return false
    }
}

/// Field values and reason phrases: HTAB, SP, VCHAR and obs-text; no other control characters.
@inline(__always)
private func isFieldValueByte(_ b: UInt8) -> Bool {
    (b >= 0x20 && b != 0x7F) || b == HT
}

@inline(__always)
private func isDigit(_ b: UInt8) -> Bool { b >= 0x30 && b <= 0x39 }

@inline(__always)
private func hexValue(_ b: UInt8) -> Int? {
    switch b {
    case 0x30...0x39: return Int(b &- 0x30)
    case 0x41...0x46: return Int(b &- 0x41 &+ 10)
    case 0x61...0x66: return Int(b &- 0x61 &+ 10)
    default: return nil
    }
}

@inline(__always)
private func parseError(_ status: Int, _ message: String) -> HTTP1ParseError {
    HTTP1ParseError(status: status, message: message)
}

/// The bytes [start, end) of `p` as a String (invalid UTF-8 is replaced, never trapped on).
@inline(__always)
private func makeString(_ p: UnsafeBufferPointer<UInt8>, _ start: Int, _ end: Int) -> String {
    String(decoding: UnsafeBufferPointer(rebasing: p[start..<end]), as: UTF8.self)
}

/// The bytes [start, end) of `p` with ASCII letters lowercased, as a String.
private func makeLowercasedString(_ p: UnsafeBufferPointer<UInt8>, _ start: Int, _ end: Int) -> String {
    let count = end - start
    return String(unsafeUninitializedCapacity: count) { out in
        var j = 0
        var i = start
        while i < end {
            let b = p[i]
            out[j] = (b >= 0x41 && b <= 0x5A) ? b &+ 0x20 : b
            i &+= 1
            j &+= 1
        }
        return count
    }
}

/// Calls `body` with each element of a comma-separated list in `value`, trimmed of OWS; empty elements
/// are skipped (RFC 9110 §5.6.1).
private func forEachListElement(_ value: String, _ body: (ArraySlice<UInt8>) throws -> Void) rethrows {
    let bytes = Array(value.utf8)
    var start = 0
    var i = 0
    while i <= bytes.count {
        if i == bytes.count || bytes[i] == COMMA {
            var s = start
            var e = i
            while s < e && (bytes[s] == SP || bytes[s] == HT) { s += 1 }
            while e > s && (bytes[e - 1] == SP || bytes[e - 1] == HT) { e -= 1 }
            if s < e { try body(bytes[s..<e]) }
            start = i + 1
        }
        i += 1
    }
}

/// ASCII case-insensitive comparison of `bytes` against a lowercase ASCII literal.
private func equalsLowercase(_ bytes: ArraySlice<UInt8>, _ literal: String) -> Bool {
    var it = bytes.makeIterator()
    for l in literal.utf8 {
        guard let b = it.next() else { return false }
        let lower = (b >= 0x41 && b <= 0x5A) ? b &+ 0x20 : b
        if lower != l { return false }
    }
    return it.next() == nil
}

/// An incremental HTTP/1.x parser for one direction of one connection.
public struct HTTP1Parser {
    public enum Kind { case request, response }

    private enum State {
        /// Waiting for (the rest of) a message head.
        case head
        /// Content-Length body with this many bytes left (> 0).
        case fixedBody(remaining: Int)
        /// Waiting for a chunk-size line.
        case chunkSize
        /// Inside chunk data with this many bytes left (> 0).
        case chunkData(remaining: Int)
        /// Waiting for the CRLF that follows chunk data.
        case chunkDataEnd
        /// After the last chunk: waiting for the trailer section.
        case trailers
        /// Response body delimited by the connection closing.
        case untilClose
    }

    private enum Framing {
        case none
        case length(Int)
        case chunked
        case untilClose
    }

    private let kind: Kind
    private let maxHeaderBytes: Int
    private let maxChunkLineBytes: Int

    private var state: State = .head
    private var failure: HTTP1ParseError?
    private var nextIsHeadResponse = false

    /// Buffered input; bytes before readIndex are consumed.
    private var buffer: [UInt8] = []
    private var readIndex = 0

    // Progress through a line-oriented section (head, chunk-size line, trailers) that starts at the first
    // unconsumed byte, so that a partial section is not rescanned on every feed. All relative to that byte.
    private var scanned = 0
    private var lineStart = 0
    /// Lines found so far, as (start, end) pairs of their content (without CRLF).
    private var lines: [Int] = []

    public init(kind: Kind, maxHeaderBytes: Int = 64 * 1024, maxChunkLineBytes: Int = 4096) {
        self.kind = kind
        self.maxHeaderBytes = max(maxHeaderBytes, 16)
        self.maxChunkLineBytes = max(maxChunkLineBytes, 3)
    }

    /// Response parsing only: the next response answers a HEAD request (no body, whatever Content-Length
    /// says). Call before feeding that response. Interim (1xx) responses do not use it up.
    public mutating func expectHeadResponse() {
        nextIsHeadResponse = true
    }

    /// True when no partial message is buffered (between messages).
    public var isIdle: Bool {
        guard failure == nil, case .head = state else { return false }
        return readIndex == buffer.count
    }

    public mutating func feed(_ bytes: [UInt8]) throws -> [HTTP1ParseEvent] {
        try bytes.withUnsafeBytes { try feed($0) }
    }

    /// Feeds bytes; returns every event completed by them, in order. Buffers partial input internally.
    /// After a thrown error the parser is dead (further feeds throw the same error).
    public mutating func feed(_ bytes: UnsafeRawBufferPointer) throws -> [HTTP1ParseEvent] {
        if let failure { throw failure }
        var events: [HTTP1ParseEvent] = []
        do {
            if readIndex == buffer.count {
                // Nothing buffered: parse straight from the caller's bytes and keep only what is left over.
                buffer.removeAll(keepingCapacity: buffer.capacity <= 256 * 1024)
                readIndex = 0
                try bytes.withMemoryRebound(to: UInt8.self) { input in
                    let used = try process(input, &events)
                    if used < input.count {
                        buffer.append(contentsOf: UnsafeBufferPointer(rebasing: input[used...]))
                    }
                }
            } else {
                buffer.append(contentsOf: bytes)
                // Move the buffer out of self so that reading it while mutating self is not a conflict.
                var local: [UInt8] = []
                swap(&local, &buffer)
                defer { swap(&local, &buffer) }
                let start = readIndex
                let used = try local.withUnsafeBufferPointer { all in
                    try process(UnsafeBufferPointer(rebasing: all[start...]), &events)
                }
                readIndex += used
            }
            compact()
        } catch {
            let e = (error as? HTTP1ParseError) ?? parseError(400, "\(error)")
            failure = e
            throw e
        }
        return events
    }

    /// The peer closed: a response delimited by connection close ends here (.end). Mid-message EOF
    /// otherwise throws (status 400, "truncated ...").
    public mutating func finish() throws -> [HTTP1ParseEvent] {
        if let failure { throw failure }
        let e: HTTP1ParseError
        switch state {
        case .head:
            if readIndex == buffer.count { return [] }
            e = parseError(400, "truncated message head")
        case .untilClose:
            state = .head
            return [.end(trailers: HTTPHeaders())]
        case .fixedBody, .chunkData:
            e = parseError(400, "truncated message body")
        case .chunkSize, .chunkDataEnd:
            e = parseError(400, "truncated chunked body")
        case .trailers:
            e = parseError(400, "truncated trailer section")
        }
        failure = e
        throw e
    }

    // MARK: - Internals

    /// Drops the consumed prefix of the buffer when it is worth it.
    private mutating func compact() {
        if readIndex == buffer.count {
            if !buffer.isEmpty { buffer.removeAll(keepingCapacity: buffer.capacity <= 256 * 1024) }
            readIndex = 0
        } else if readIndex >= 4096 && readIndex >= buffer.count - readIndex {
            buffer.removeSubrange(0..<readIndex)
            readIndex = 0
        }
    }

    private mutating func resetScan() {
        scanned = 0
        lineStart = 0
        lines.removeAll(keepingCapacity: true)
    }

    /// Parses as much of `p` as possible; returns how many bytes were consumed. The unconsumed rest is
    /// always a prefix of an incomplete section (and `scanned`/`lineStart`/`lines` describe it).
    private mutating func process(_ p: UnsafeBufferPointer<UInt8>, _ events: inout [HTTP1ParseEvent]) throws -> Int {
        let n = p.count
        var pos = 0
        while true {
            switch state {
            case .head:
                guard let end = try scanSection(p, base: &pos, limit: maxHeaderBytes, isHead: true) else { return pos }
                try handleHead(p, base: pos, &events)
                pos = end
                resetScan()

            case .fixedBody(let remaining):
                let available = n - pos
                if available == 0 { return pos }
                let k = min(available, remaining)
                events.append(.body(Array(UnsafeBufferPointer(rebasing: p[pos..<(pos + k)]))))
                pos += k
                if k == remaining {
                    state = .head
                    events.append(.end(trailers: HTTPHeaders()))
                } else {
                    state = .fixedBody(remaining: remaining - k)
                }

            case .chunkSize:
                guard let (size, end) = try scanChunkSizeLine(p, base: pos) else { return pos }
                pos = end
                resetScan()
                state = size == 0 ? .trailers : .chunkData(remaining: size)

            case .chunkData(let remaining):
                let available = n - pos
                if available == 0 { return pos }
                let k = min(available, remaining)
                events.append(.body(Array(UnsafeBufferPointer(rebasing: p[pos..<(pos + k)]))))
                pos += k
                state = k == remaining ? .chunkDataEnd : .chunkData(remaining: remaining - k)

            case .chunkDataEnd:
                let available = n - pos
                if available >= 1 && p[pos] != CR { throw parseError(400, "missing CRLF after chunk data") }
                if available < 2 { return pos }
                if p[pos + 1] != LF { throw parseError(400, "missing CRLF after chunk data") }
                pos += 2
                state = .chunkSize

            case .trailers:
                guard let end = try scanSection(p, base: &pos, limit: maxHeaderBytes, isHead: false) else { return pos }
                let trailers = try parseFields(p, base: pos, firstLine: 0)
                pos = end
                resetScan()
                state = .head
                events.append(.end(trailers: trailers))

            case .untilClose:
                if n > pos {
                    events.append(.body(Array(UnsafeBufferPointer(rebasing: p[pos..<n]))))
                }
                return n
            }
        }
    }

    /// Scans the CRLF-terminated lines of a header section starting at `base`, recording them in `lines`.
    /// Returns the index just past the empty line that ends the section, or nil when more input is needed.
    /// For a head, empty lines before the start line are skipped (RFC 9112 §2.2) by advancing `base`.
    private mutating func scanSection(_ p: UnsafeBufferPointer<UInt8>, base: inout Int, limit: Int, isHead: Bool) throws -> Int? {
        let n = p.count
        var i = base + scanned
        var ls = base + lineStart
        while i < n {
            if i - base >= limit {
                throw parseError(431, isHead ? "header section too large" : "trailer section too large")
            }
            if p[i] == LF {
                if i == ls || p[i - 1] != CR { throw parseError(400, "line not terminated by CRLF") }
                let contentEnd = i - 1
                if contentEnd == ls {
                    if isHead && lines.isEmpty {
                        // An empty line before the start line: skip it.
                        base = i + 1
                        ls = base
                        i = base
                        continue
                    }
                    return i + 1
                }
                lines.append(ls - base)
                lines.append(contentEnd - base)
                ls = i + 1
            }
            i += 1
        }
        scanned = i - base
        lineStart = ls - base
        return nil
    }

    /// Scans a chunk-size line starting at `base`: returns the chunk size and the index just past the line,
    /// or nil when more input is needed.
    private mutating func scanChunkSizeLine(_ p: UnsafeBufferPointer<UInt8>, base: Int) throws -> (Int, Int)? {
        let n = p.count
        var i = base + scanned
        while i < n {
            if i - base >= maxChunkLineBytes { throw parseError(400, "chunk size line too long") }
            if p[i] == LF {
                if i == base || p[i - 1] != CR { throw parseError(400, "chunk size line not terminated by CRLF") }
                return (try parseChunkSize(p, base, i - 1), i + 1)
            }
            i += 1
        }
        scanned = i - base
        return nil
    }

    /// chunk-size [ BWS ";" chunk-ext ] — extensions are ignored but must not contain control characters.
    private func parseChunkSize(_ p: UnsafeBufferPointer<UInt8>, _ start: Int, _ end: Int) throws -> Int {
        var i = start
        var size = 0
        while i < end, let d = hexValue(p[i]) {
            let (m, o1) = size.multipliedReportingOverflow(by: 16)
            let (s, o2) = m.addingReportingOverflow(d)
            if o1 || o2 { throw parseError(400, "chunk size too large") }
            size = s
            i += 1
        }
        if i == start { throw parseError(400, "invalid chunk size") }
        while i < end && (p[i] == SP || p[i] == HT) { i += 1 }
        if i < end {
            if p[i] != SEMICOLON { throw parseError(400, "invalid chunk size") }
            while i < end {
                if !isFieldValueByte(p[i]) { throw parseError(400, "invalid character in chunk extension") }
                i += 1
            }
        }
        return size
    }

    /// Parses a complete head (lines recorded by scanSection, relative to `base`) and emits its events.
    private mutating func handleHead(_ p: UnsafeBufferPointer<UInt8>, base: Int, _ events: inout [HTTP1ParseEvent]) throws {
        guard lines.count >= 2 else { throw parseError(400, "empty message head") }
        let lineStartIndex = base + lines[0]
        let lineEndIndex = base + lines[1]
        switch kind {
        case .request:
            let (method, target, minor) = try parseRequestLine(p, lineStartIndex, lineEndIndex)
            let headers = try parseFields(p, base: base, firstLine: 1)
            let framing = try bodyFraming(headers)
            let head = HTTP1RequestHead(
                method: method, target: target, versionMinor: minor, headers: headers,
                keepAlive: Self.keepAlive(headers, versionMinor: minor))
            events.append(.requestHead(head))
            switch framing {
            case .none, .untilClose, .length(0):
                events.append(.end(trailers: HTTPHeaders()))
                state = .head
            case .length(let n):
                state = .fixedBody(remaining: n)
            case .chunked:
                state = .chunkSize
            }

        case .response:
            let (status, reason, minor) = try parseStatusLine(p, lineStartIndex, lineEndIndex)
            let headers = try parseFields(p, base: base, firstLine: 1)
            if status < 200 {
                // Interim response: skipped; the final response follows.
                state = .head
                return
            }
            let answersHead = nextIsHeadResponse
            nextIsHeadResponse = false
            var framing: Framing = .none
            if !(answersHead || status == 204 || status == 304) {
                framing = try bodyFraming(headers)
                if case .none = framing { framing = .untilClose }
            }
            var keepAlive = Self.keepAlive(headers, versionMinor: minor)
            if case .untilClose = framing { keepAlive = false }
            let head = HTTP1ResponseHead(status: status, reason: reason, versionMinor: minor, headers: headers, keepAlive: keepAlive)
            events.append(.responseHead(head))
            switch framing {
            case .none, .length(0):
                events.append(.end(trailers: HTTPHeaders()))
                state = .head
            case .length(let n):
                state = .fixedBody(remaining: n)
            case .chunked:
                state = .chunkSize
            case .untilClose:
                state = .untilClose
            }
        }
    }

    /// method SP request-target SP HTTP-version
    private func parseRequestLine(_ p: UnsafeBufferPointer<UInt8>, _ start: Int, _ end: Int) throws -> (String, String, Int) {
        var sp1 = start
        while sp1 < end && p[sp1] != SP {
            if !isTokenChar(p[sp1]) { throw parseError(400, "invalid character in request method") }
            sp1 += 1
        }
        if sp1 == start || sp1 == end { throw parseError(400, "malformed request line") }
        var sp2 = sp1 + 1
        while sp2 < end && p[sp2] != SP {
            let b = p[sp2]
            if b <= SP || b >= 0x7F { throw parseError(400, "invalid character in request target") }
            sp2 += 1
        }
        if sp2 == sp1 + 1 || sp2 == end { throw parseError(400, "malformed request line") }
        let minor = try parseVersion(p, sp2 + 1, end)
        return (makeString(p, start, sp1), makeString(p, sp1 + 1, sp2), minor)
    }

    /// HTTP-version SP 3DIGIT [ SP reason-phrase ] (a missing SP before an empty reason is tolerated).
    private func parseStatusLine(_ p: UnsafeBufferPointer<UInt8>, _ start: Int, _ end: Int) throws -> (Int, String, Int) {
        let length = end - start
        if length < 8 { throw parseError(400, "malformed status line") }
        let minor = try parseVersion(p, start, start + 8)
        guard length >= 12, p[start + 8] == SP, isDigit(p[start + 9]), isDigit(p[start + 10]), isDigit(p[start + 11]) else {
            throw parseError(400, "malformed status line")
        }
        let status = Int(p[start + 9] &- 0x30) * 100 + Int(p[start + 10] &- 0x30) * 10 + Int(p[start + 11] &- 0x30)
        if status < 100 { throw parseError(400, "invalid status code") }
        var reason = ""
        if length > 12 {
            if p[start + 12] != SP { throw parseError(400, "malformed status line") }
            var i = start + 13
            while i < end {
                if !isFieldValueByte(p[i]) { throw parseError(400, "invalid character in reason phrase") }
                i += 1
            }
            reason = makeString(p, start + 13, end)
        }
        return (status, reason, minor)
    }

    /// "HTTP/" DIGIT "." DIGIT → the minor version; only 1.0 and 1.1 are supported (else 505).
    private func parseVersion(_ p: UnsafeBufferPointer<UInt8>, _ start: Int, _ end: Int) throws -> Int {
        guard end - start == 8,
              p[start] == 0x48, p[start + 1] == 0x54, p[start + 2] == 0x54, p[start + 3] == 0x50, p[start + 4] == 0x2F,
              isDigit(p[start + 5]), p[start + 6] == 0x2E, isDigit(p[start + 7])
        else { throw parseError(400, "malformed HTTP version") }
        let major = p[start + 5] &- 0x30
        let minor = p[start + 7] &- 0x30
        guard major == 1 && minor <= 1 else { throw parseError(505, "unsupported HTTP version") }
        return Int(minor)
    }

    /// Parses the field lines recorded in `lines` from line index `firstLine` on.
    private func parseFields(_ p: UnsafeBufferPointer<UInt8>, base: Int, firstLine: Int) throws -> HTTPHeaders {
        var headers = HTTPHeaders()
        var k = firstLine * 2
        while k + 1 < lines.count {
            let start = base + lines[k]
            let end = base + lines[k + 1]
            k += 2
            // Lines are never empty here (an empty line ends the section).
            if p[start] == SP || p[start] == HT { throw parseError(400, "obsolete line folding in header section") }
            var colon = start
            while colon < end && p[colon] != COLON {
                let b = p[colon]
                if !isTokenChar(b) {
                    if b == SP || b == HT { throw parseError(400, "whitespace before colon in header field") }
                    throw parseError(400, "invalid character in header field name")
                }
                colon += 1
            }
            if colon == end { throw parseError(400, "header field without colon") }
            if colon == start { throw parseError(400, "empty header field name") }
            var vs = colon + 1
            var ve = end
            while vs < ve && (p[vs] == SP || p[vs] == HT) { vs += 1 }
            while ve > vs && (p[ve - 1] == SP || p[ve - 1] == HT) { ve -= 1 }
            var i = vs
            while i < ve {
                if !isFieldValueByte(p[i]) { throw parseError(400, "invalid character in header field value") }
                i += 1
            }
            headers.add(makeLowercasedString(p, start, colon), makeString(p, vs, ve))
        }
        return headers
    }

    /// How the body is delimited according to Transfer-Encoding and Content-Length (RFC 9112 §6.3).
    private func bodyFraming(_ headers: HTTPHeaders) throws -> Framing {
        var hasTransferEncoding = false
        var chunkedOnly = true
        var codings = 0
        var contentLength: Int?
        for (name, value) in headers {
            if name == "transfer-encoding" {
                hasTransferEncoding = true
                forEachListElement(value) { element in
                    codings += 1
                    if !equalsLowercase(element, "chunked") { chunkedOnly = false }
                }
            } else if name == "content-length" {
                var sawElement = false
                try forEachListElement(value) { element in
                    sawElement = true
                    var n = 0
                    for b in element {
                        guard isDigit(b) else { throw parseError(400, "invalid Content-Length") }
                        let (m, o1) = n.multipliedReportingOverflow(by: 10)
                        let (s, o2) = m.addingReportingOverflow(Int(b &- 0x30))
                        if o1 || o2 { throw parseError(400, "Content-Length too large") }
                        n = s
                    }
                    if let previous = contentLength, previous != n {
                        throw parseError(400, "conflicting Content-Length values")
                    }
                    contentLength = n
                }
                if !sawElement { throw parseError(400, "invalid Content-Length") }
            }
        }
        if hasTransferEncoding {
            if contentLength != nil { throw parseError(400, "both Content-Length and Transfer-Encoding") }
            if codings != 1 || !chunkedOnly { throw parseError(501, "unsupported Transfer-Encoding") }
            return .chunked
        }
        if let contentLength { return .length(contentLength) }
        return .none
    }

    /// HTTP/1.1 persists unless "Connection: close"; HTTP/1.0 only with "Connection: keep-alive".
    private static func keepAlive(_ headers: HTTPHeaders, versionMinor: Int) -> Bool {
        var close = false
        var keepAlive = false
        for (name, value) in headers where name == "connection" {
            forEachListElement(value) { element in
                if equalsLowercase(element, "close") {
                    close = true
                } else if equalsLowercase(element, "keep-alive") {
                    keepAlive = true
                }
            }
        }
        if close { return false }
        return versionMinor >= 1 || keepAlive
    }
}
