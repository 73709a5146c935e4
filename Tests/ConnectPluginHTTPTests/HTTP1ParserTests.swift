import Testing
@testable import ConnectPluginHTTP

// MARK: - Helpers

private func bytes(_ s: String) -> [UInt8] { Array(s.utf8) }

/// Merges adjacent .body events so that different input splits can be compared.
private func normalized(_ events: [HTTP1ParseEvent]) -> [HTTP1ParseEvent] {
    var out: [HTTP1ParseEvent] = []
    for e in events {
        if case .body(let b) = e, case .body(let prev)? = out.last {
            out[out.count - 1] = .body(prev + b)
        } else {
            out.append(e)
        }
    }
    return out
}

/// Feeds `input` in one piece, then calls finish() if asked.
private func parseAll(_ kind: HTTP1Parser.Kind, _ input: [UInt8], finish: Bool = false) throws -> [HTTP1ParseEvent] {
    var p = HTTP1Parser(kind: kind)
    var events = try p.feed(input)
    if finish { events += try p.finish() }
    return events
}

/// Feeds `input` one byte at a time.
private func parseByteByByte(_ kind: HTTP1Parser.Kind, _ input: [UInt8], finish: Bool = false) throws -> [HTTP1ParseEvent] {
    var p = HTTP1Parser(kind: kind)
    var events: [HTTP1ParseEvent] = []
    for b in input { events += try p.feed([b]) }
    if finish { events += try p.finish() }
    return events
}

/// The error thrown while parsing `input` (whole, then byte by byte; both must agree), or nil.
private func parseFailure(_ kind: HTTP1Parser.Kind, _ input: [UInt8], maxHeaderBytes: Int = 64 * 1024,
                          maxChunkLineBytes: Int = 4096, finish: Bool = false) -> (HTTP1ParseError?, HTTP1ParseError?) {
    func run(_ pieces: [[UInt8]]) -> HTTP1ParseError? {
        var p = HTTP1Parser(kind: kind, maxHeaderBytes: maxHeaderBytes, maxChunkLineBytes: maxChunkLineBytes)
        do {
            for piece in pieces { _ = try p.feed(piece) }
            if finish { _ = try p.finish() }
            return nil
        } catch let e as HTTP1ParseError {
            return e
        } catch {
            return HTTP1ParseError(status: -1, message: "unexpected error type \(error)")
        }
    }
    return (run([input]), run(input.map { [$0] }))
}

private func requestHead(_ events: [HTTP1ParseEvent], at i: Int = 0) -> HTTP1RequestHead? {
    guard i < events.count, case .requestHead(let h) = events[i] else { return nil }
    return h
}

private func responseHead(_ events: [HTTP1ParseEvent], at i: Int = 0) -> HTTP1ResponseHead? {
    guard i < events.count, case .responseHead(let h) = events[i] else { return nil }
    return h
}

/// A small deterministic PRNG (SplitMix64).
private struct SplitMix64 {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    mutating func below(_ n: Int) -> Int { Int(next() % UInt64(max(n, 1))) }
}

// MARK: - Requests

@Suite struct HTTP1RequestParsingTests {
    @Test func simpleGet() throws {
        let raw = bytes("GET /pkg.Svc/Method?x=1 HTTP/1.1\r\nHost: example.com\r\nUser-Agent:  test/1.0 \t\r\nAccept: */*\r\n\r\n")
        var p = HTTP1Parser(kind: .request)
        #expect(p.isIdle)
        let events = try p.feed(raw)
        #expect(p.isIdle)
        #expect(events.count == 2)
        let head = try #require(requestHead(events))
        #expect(head.method == "GET")
        #expect(head.target == "/pkg.Svc/Method?x=1")
        #expect(head.versionMinor == 1)
        #expect(head.keepAlive)
        #expect(head.headers == HTTPHeaders([("host", "example.com"), ("user-agent", "test/1.0"), ("accept", "*/*")]))
        #expect(events[1] == .end(trailers: HTTPHeaders()))
    }

    @Test func postContentLengthEverySplit() throws {
        let raw = bytes("POST /a HTTP/1.1\r\nHost: x\r\nContent-Type: application/proto\r\nContent-Length: 11\r\n\r\nhello world")
        let whole = try parseAll(.request, raw)
        let expectedHead = HTTP1RequestHead(
            method: "POST", target: "/a", versionMinor: 1,
            headers: HTTPHeaders([("host", "x"), ("content-type", "application/proto"), ("content-length", "11")]),
            keepAlive: true)
        let expected: [HTTP1ParseEvent] = [.requestHead(expectedHead), .body(bytes("hello world")), .end(trailers: HTTPHeaders())]
        #expect(whole == expected)

        // Every two-piece split.
        for cut in 0...raw.count {
            var p = HTTP1Parser(kind: .request)
            var events = try p.feed(Array(raw[..<cut]))
            events += try p.feed(Array(raw[cut...]))
            #expect(normalized(events) == expected, "split at \(cut)")
            #expect(p.isIdle)
            for e in events { if case .body(let b) = e { #expect(!b.isEmpty) } }
        }
        // One byte at a time.
        let single = try parseByteByByte(.request, raw)
        #expect(normalized(single) == expected)
        #expect(single.filter { if case .body = $0 { return true } else { return false } }.count == 11)
    }

    @Test func bodyIsStreamedBeforeItIsComplete() throws {
        var p = HTTP1Parser(kind: .request)
        var events = try p.feed(bytes("POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\n12345"))
        #expect(events.count == 2)
        #expect(events[1] == .body(bytes("12345")))
        #expect(!p.isIdle)
        events = try p.feed(bytes("67890"))
        #expect(events == [.body(bytes("67890")), .end(trailers: HTTPHeaders())])
        #expect(p.isIdle)
    }

    @Test func chunkedWithExtensionsAndTrailers() throws {
        let raw = bytes(
            "POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                + "5;name=value;flag\r\nhello\r\n"
                + "6 ; ext=\"quoted\"\r\n world\r\n"
                + "A\r\n0123456789\r\n"
                + "0;last\r\nGrpc-Status: 0\r\nX-Trailer:  done \r\n\r\n")
        let expected: [HTTP1ParseEvent] = [
            .requestHead(HTTP1RequestHead(
                method: "POST", target: "/up", versionMinor: 1,
                headers: HTTPHeaders([("host", "x"), ("transfer-encoding", "chunked")]), keepAlive: true)),
            .body(bytes("hello world0123456789")),
            .end(trailers: HTTPHeaders([("grpc-status", "0"), ("x-trailer", "done")])),
        ]
        let whole = try parseAll(.request, raw)
        #expect(normalized(whole) == expected)
        #expect(whole.count == 5)  // one body event per chunk
        #expect(normalized(try parseByteByByte(.request, raw)) == expected)
        for cut in 0...raw.count {
            var p = HTTP1Parser(kind: .request)
            let events = try p.feed(Array(raw[..<cut])) + p.feed(Array(raw[cut...]))
            #expect(normalized(events) == expected, "split at \(cut)")
        }
    }

    @Test func chunkedWithoutTrailersAndUppercaseHex() throws {
        let raw = bytes("POST / HTTP/1.1\r\nTransfer-Encoding: Chunked\r\n\r\n1F\r\n" + String(repeating: "z", count: 31) + "\r\n0\r\n\r\n")
        let events = normalized(try parseAll(.request, raw))
        #expect(events.count == 3)
        #expect(events[1] == .body(Array(repeating: UInt8(ascii: "z"), count: 31)))
        #expect(events[2] == .end(trailers: HTTPHeaders()))
    }

    @Test func pipelinedRequestsInOneBuffer() throws {
        let raw = bytes(
            "GET /1 HTTP/1.1\r\nHost: a\r\n\r\n"
                + "POST /2 HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc"
                + "POST /3 HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nxy\r\n0\r\n\r\n"
                + "\r\n"  // a stray empty line between requests is ignored
                + "DELETE /4 HTTP/1.0\r\n\r\n")
        var p = HTTP1Parser(kind: .request)
        let events = try p.feed(raw)
        #expect(p.isIdle)
        let targets = events.compactMap { e -> String? in
            if case .requestHead(let h) = e { return h.target } else { return nil }
        }
        #expect(targets == ["/1", "/2", "/3", "/4"])
        let ends = events.filter { if case .end = $0 { return true } else { return false } }
        #expect(ends.count == 4)
        #expect(events[3] == .body(bytes("abc")))
        #expect(events[6] == .body(bytes("xy")))
        #expect(normalized(try parseByteByByte(.request, raw)) == normalized(events))
    }

    @Test func keepAliveRules() throws {
        func keepAlive(_ version: String, _ connection: String?) throws -> Bool {
            var raw = "GET / HTTP/\(version)\r\n"
            if let connection { raw += "Connection: \(connection)\r\n" }
            raw += "\r\n"
            return try #require(requestHead(try parseAll(.request, bytes(raw)))).keepAlive
        }
        #expect(try keepAlive("1.1", nil) == true)
        #expect(try keepAlive("1.1", "close") == false)
        #expect(try keepAlive("1.1", "Upgrade, CLOSE") == false)
        #expect(try keepAlive("1.1", "keep-alive") == true)
        #expect(try keepAlive("1.0", nil) == false)
        #expect(try keepAlive("1.0", "Keep-Alive") == true)
        #expect(try keepAlive("1.0", "foo,  keep-alive ") == true)
        #expect(try keepAlive("1.0", "keep-alive, close") == false)
        #expect(try keepAlive("1.0", "keep-alive-ish") == false)

        let h10 = try #require(requestHead(try parseAll(.request, bytes("GET / HTTP/1.0\r\n\r\n"))))
        #expect(h10.versionMinor == 0)

        // Separate Connection lines are combined.
        let two = try #require(requestHead(try parseAll(.request, bytes("GET / HTTP/1.1\r\nConnection: te\r\nConnection: close\r\n\r\n"))))
        #expect(!two.keepAlive)
    }

    @Test func contentLengthListOfEqualValuesIsAccepted() throws {
        let events = try parseAll(.request, bytes("POST / HTTP/1.1\r\nContent-Length: 2, 2\r\nContent-Length: 2\r\n\r\nok"))
        #expect(normalized(events).count == 3)
        #expect(events[1] == .body(bytes("ok")))
    }

    @Test func zeroContentLengthAndLeadingEmptyLines() throws {
        var p = HTTP1Parser(kind: .request)
        let events = try p.feed(bytes("\r\n\r\nPOST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n"))
        #expect(events.count == 2)
        #expect(events[1] == .end(trailers: HTTPHeaders()))
        #expect(p.isIdle)
    }

    @Test func headerSizeLimitIsExact() throws {
        let head = "GET / HTTP/1.1\r\nX: " + String(repeating: "a", count: 100) + "\r\n\r\n"
        let size = head.utf8.count
        var ok = HTTP1Parser(kind: .request, maxHeaderBytes: size)
        #expect(try ok.feed(bytes(head)).count == 2)
        var okSlow = HTTP1Parser(kind: .request, maxHeaderBytes: size)
        var n = 0
        for b in bytes(head) { n += try okSlow.feed([b]).count }
        #expect(n == 2)
        let (e1, e2) = parseFailure(.request, bytes(head), maxHeaderBytes: size - 1)
        #expect(e1?.status == 431)
        #expect(e2?.status == 431)
        // An unterminated head fails as soon as it passes the limit.
        var p = HTTP1Parser(kind: .request, maxHeaderBytes: 1024)
        #expect(throws: HTTP1ParseError.self) { _ = try p.feed(Array(repeating: UInt8(ascii: "a"), count: 2000)) }
    }

    @Test func errorsAreSticky() throws {
        var p = HTTP1Parser(kind: .request)
        var first: HTTP1ParseError?
        do { _ = try p.feed(bytes("GET / HTTP/3.0\r\n\r\n")) } catch let e as HTTP1ParseError { first = e }
        #expect(first?.status == 505)
        #expect(!p.isIdle)
        #expect(throws: first!) { _ = try p.feed(bytes("GET / HTTP/1.1\r\n\r\n")) }
        #expect(throws: first!) { _ = try p.finish() }
    }

    @Test func valuesMayCarryObsText() throws {
        let raw: [UInt8] = bytes("GET / HTTP/1.1\r\nX-Name: caf") + [0xC3, 0xA9] + bytes("\r\n\r\n")
        let head = try #require(requestHead(try parseAll(.request, raw)))
        #expect(head.headers.first("x-name") == "café")
    }
}

// MARK: - Rejections

private struct RejectCase {
    var name: String
    var raw: [UInt8]
    var status: Int
    var kind: HTTP1Parser.Kind = .request
    var maxHeaderBytes = 64 * 1024
    var maxChunkLineBytes = 4096
}

@Suite struct HTTP1RejectionTests {
    fileprivate static let cases: [RejectCase] = [
        // Request line.
        .init(name: "missing target", raw: bytes("GET HTTP/1.1\r\n\r\n"), status: 400),
        .init(name: "double space", raw: bytes("GET  / HTTP/1.1\r\n\r\n"), status: 400),
        .init(name: "space in target", raw: bytes("GET /a b HTTP/1.1\r\n\r\n"), status: 400),
        .init(name: "trailing space", raw: bytes("GET / HTTP/1.1 \r\n\r\n"), status: 400),
        .init(name: "no version (HTTP/0.9)", raw: bytes("GET /\r\n\r\n"), status: 400),
        .init(name: "method not a token", raw: bytes("GE(T / HTTP/1.1\r\n\r\n"), status: 400),
        .init(name: "control char in target", raw: bytes("GET /\u{1}x HTTP/1.1\r\n\r\n"), status: 400),
        .init(name: "garbage version", raw: bytes("GET / HTTX/1.1\r\n\r\n"), status: 400),
        .init(name: "long version", raw: bytes("GET / HTTP/1.10\r\n\r\n"), status: 400),
        .init(name: "lowercase version", raw: bytes("GET / http/1.1\r\n\r\n"), status: 400),
        .init(name: "bare LF in head", raw: bytes("GET / HTTP/1.1\nHost: x\n\n"), status: 400),
        .init(name: "bare LF in header line", raw: bytes("GET / HTTP/1.1\r\nHost: x\n\r\n"), status: 400),
        .init(name: "bare CR in head", raw: bytes("GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n"), status: 400),
        // Versions.
        .init(name: "HTTP/2.0", raw: bytes("GET / HTTP/2.0\r\n\r\n"), status: 505),
        .init(name: "HTTP/1.2", raw: bytes("GET / HTTP/1.2\r\n\r\n"), status: 505),
        .init(name: "HTTP/0.9 line", raw: bytes("GET / HTTP/0.9\r\n\r\n"), status: 505),
        // Header fields.
        .init(name: "no colon", raw: bytes("GET / HTTP/1.1\r\nHost example\r\n\r\n"), status: 400),
        .init(name: "space before colon", raw: bytes("GET / HTTP/1.1\r\nHost : x\r\n\r\n"), status: 400),
        .init(name: "tab before colon", raw: bytes("GET / HTTP/1.1\r\nHost\t: x\r\n\r\n"), status: 400),
        .init(name: "empty name", raw: bytes("GET / HTTP/1.1\r\n: x\r\n\r\n"), status: 400),
        .init(name: "bad name char", raw: bytes("GET / HTTP/1.1\r\nX(y): x\r\n\r\n"), status: 400),
        .init(name: "non-ASCII name", raw: bytes("GET / HTTP/1.1\r\nX") + [0xC3, 0xA9] + bytes(": x\r\n\r\n"), status: 400),
        .init(name: "obs-fold", raw: bytes("GET / HTTP/1.1\r\nX: a\r\n  b\r\n\r\n"), status: 400),
        .init(name: "obs-fold tab", raw: bytes("GET / HTTP/1.1\r\nX: a\r\n\tb\r\n\r\n"), status: 400),
        .init(name: "leading whitespace first field", raw: bytes("GET / HTTP/1.1\r\n Host: x\r\n\r\n"), status: 400),
        .init(name: "NUL in value", raw: bytes("GET / HTTP/1.1\r\nX: a\u{0}b\r\n\r\n"), status: 400),
        .init(name: "control in value", raw: bytes("GET / HTTP/1.1\r\nX: a\u{1B}b\r\n\r\n"), status: 400),
        .init(name: "DEL in value", raw: bytes("GET / HTTP/1.1\r\nX: a\u{7F}b\r\n\r\n"), status: 400),
        // Header size.
        .init(name: "header section too large", raw: bytes("GET / HTTP/1.1\r\nX: " + String(repeating: "a", count: 300) + "\r\n\r\n"),
              status: 431, maxHeaderBytes: 256),
        .init(name: "too large and unterminated", raw: bytes("GET / HTTP/1.1\r\nX: " + String(repeating: "a", count: 300)),
              status: 431, maxHeaderBytes: 256),
        // Content-Length.
        .init(name: "CL not digits", raw: bytes("POST / HTTP/1.1\r\nContent-Length: 1x\r\n\r\n"), status: 400),
        .init(name: "CL negative", raw: bytes("POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n"), status: 400),
        .init(name: "CL plus sign", raw: bytes("POST / HTTP/1.1\r\nContent-Length: +1\r\n\r\n"), status: 400),
        .init(name: "CL empty", raw: bytes("POST / HTTP/1.1\r\nContent-Length: \r\n\r\n"), status: 400),
        .init(name: "CL overflow", raw: bytes("POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n"), status: 400),
        .init(name: "CL differing", raw: bytes("POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab"), status: 400),
        .init(name: "CL differing list", raw: bytes("POST / HTTP/1.1\r\nContent-Length: 1, 2\r\n\r\nab"), status: 400),
        .init(name: "CL and TE", raw: bytes("POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n"), status: 400),
        // Transfer-Encoding.
        .init(name: "TE gzip", raw: bytes("POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n"), status: 501),
        .init(name: "TE gzip, chunked", raw: bytes("POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"), status: 501),
        .init(name: "TE chunked twice", raw: bytes("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n"), status: 501),
        .init(name: "TE empty", raw: bytes("POST / HTTP/1.1\r\nTransfer-Encoding: \r\n\r\n"), status: 501),
        .init(name: "TE chunkedx", raw: bytes("POST / HTTP/1.1\r\nTransfer-Encoding: chunkedx\r\n\r\n"), status: 501),
        // Chunks.
        .init(name: "chunk size not hex", raw: bytes("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"), status: 400),
        .init(name: "chunk size empty", raw: bytes("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n\r\n"), status: 400),
        .init(name: "chunk size negative", raw: bytes("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n-1\r\n"), status: 400),
        .init(name: "chunk size trailing junk", raw: bytes("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5x\r\nhello\r\n"), status: 400),
        .init(name: "chunk size overflow", raw: bytes("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n" + String(repeating: "f", count: 17) + "\r\n"), status: 400),
        .init(name: "chunk size 0x8000000000000000", raw: bytes("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n8000000000000000\r\n"), status: 400),
        .init(name: "chunk line too long", raw: bytes("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5;" + String(repeating: "e", count: 200) + "\r\nhello\r\n"),
              status: 400, maxChunkLineBytes: 100),
        .init(name: "chunk line too long unterminated", raw: bytes("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5;" + String(repeating: "e", count: 200)),
              status: 400, maxChunkLineBytes: 100),
        .init(name: "chunk line bare LF", raw: bytes("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\r\n"), status: 400),
        .init(name: "chunk ext control char", raw: bytes("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5;a\u{0}\r\nhello\r\n"), status: 400),
        .init(name: "missing CRLF after chunk data", raw: bytes("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloX\r\n"), status: 400),
        .init(name: "LF only after chunk data", raw: bytes("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\n0\r\n\r\n"), status: 400),
        .init(name: "bad trailer", raw: bytes("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nbad trailer\r\n\r\n"), status: 400),
        .init(name: "trailers too large", raw: bytes("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX: " + String(repeating: "a", count: 300) + "\r\n\r\n"),
              status: 431, maxHeaderBytes: 256),
        // Status lines.
        .init(name: "status not digits", raw: bytes("HTTP/1.1 2x0 OK\r\n\r\n"), status: 400, kind: .response),
        .init(name: "status two digits", raw: bytes("HTTP/1.1 20 OK\r\n\r\n"), status: 400, kind: .response),
        .init(name: "status four digits", raw: bytes("HTTP/1.1 2000 OK\r\n\r\n"), status: 400, kind: .response),
        .init(name: "status below 100", raw: bytes("HTTP/1.1 099 OK\r\n\r\n"), status: 400, kind: .response),
        .init(name: "status line garbage", raw: bytes("HTTP/1.1\r\n\r\n"), status: 400, kind: .response),
        .init(name: "status line short", raw: bytes("HTTP\r\n\r\n"), status: 400, kind: .response),
        .init(name: "status line no space", raw: bytes("HTTP/1.1200 OK\r\n\r\n"), status: 400, kind: .response),
        .init(name: "reason with control", raw: bytes("HTTP/1.1 200 O\u{1}K\r\n\r\n"), status: 400, kind: .response),
        .init(name: "response version 2", raw: bytes("HTTP/2.0 200 OK\r\n\r\n"), status: 505, kind: .response),
        .init(name: "response bad header", raw: bytes("HTTP/1.1 200 OK\r\nX y: z\r\n\r\n"), status: 400, kind: .response),
        .init(name: "response TE gzip", raw: bytes("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n"), status: 501, kind: .response),
        .init(name: "response CL and TE", raw: bytes("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n"), status: 400, kind: .response),
        .init(name: "response CL bad", raw: bytes("HTTP/1.1 200 OK\r\nContent-Length: 0x10\r\n\r\n"), status: 400, kind: .response),
    ]

    @Test func everyRejectionHasItsStatus() {
        for c in Self.cases {
            let (whole, slow) = parseFailure(c.kind, c.raw, maxHeaderBytes: c.maxHeaderBytes, maxChunkLineBytes: c.maxChunkLineBytes)
            #expect(whole?.status == c.status, "\(c.name): \(String(describing: whole))")
            #expect(slow?.status == c.status, "\(c.name) (byte by byte): \(String(describing: slow))")
        }
    }
}

// MARK: - Responses

@Suite struct HTTP1ResponseParsingTests {
    @Test func interimResponsesAreSkipped() throws {
        let raw = bytes(
            "HTTP/1.1 100 Continue\r\n\r\n"
                + "HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
                + "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: application/proto\r\n\r\nhi")
        let expected: [HTTP1ParseEvent] = [
            .responseHead(HTTP1ResponseHead(
                status: 200, reason: "OK", versionMinor: 1,
                headers: HTTPHeaders([("content-length", "2"), ("content-type", "application/proto")]), keepAlive: true)),
            .body(bytes("hi")),
            .end(trailers: HTTPHeaders()),
        ]
        #expect(try parseAll(.response, raw) == expected)
        #expect(normalized(try parseByteByByte(.response, raw)) == expected)
    }

    @Test func noBodyResponses() throws {
        // 204 and 304 ignore Content-Length; the next response parses normally.
        let raw = bytes(
            "HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n"
                + "HTTP/1.1 304 Not Modified\r\nContent-Length: 7\r\n\r\n"
                + "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc")
        var p = HTTP1Parser(kind: .response)
        let events = try p.feed(raw)
        #expect(events.count == 7)
        #expect(responseHead(events, at: 0)?.status == 204)
        #expect(events[1] == .end(trailers: HTTPHeaders()))
        #expect(responseHead(events, at: 2)?.status == 304)
        #expect(events[3] == .end(trailers: HTTPHeaders()))
        #expect(responseHead(events, at: 4)?.status == 200)
        #expect(events[5] == .body(bytes("abc")))
        #expect(p.isIdle)
    }

    @Test func headResponseHasNoBody() throws {
        var p = HTTP1Parser(kind: .response)
        p.expectHeadResponse()
        var events = try p.feed(bytes("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n"))
        #expect(events.count == 2)
        #expect(responseHead(events)?.status == 200)
        #expect(responseHead(events)?.headers.first("content-length") == "10")
        #expect(events[1] == .end(trailers: HTTPHeaders()))
        #expect(p.isIdle)
        // The flag applies to one response only.
        events = try p.feed(bytes("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"))
        #expect(events == [
            .responseHead(HTTP1ResponseHead(status: 200, reason: "OK", versionMinor: 1,
                                            headers: HTTPHeaders([("content-length", "2")]), keepAlive: true)),
            .body(bytes("ok")), .end(trailers: HTTPHeaders()),
        ])
        // HEAD with chunked also has no body.
        p.expectHeadResponse()
        events = try p.feed(bytes("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"))
        #expect(events.count == 2)
        #expect(p.isIdle)
    }

    @Test func readUntilClose() throws {
        var p = HTTP1Parser(kind: .response)
        var events = try p.feed(bytes("HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nfirst "))
        let head = try #require(responseHead(events))
        #expect(head.versionMinor == 0)
        #expect(!head.keepAlive)
        #expect(events[1] == .body(bytes("first ")))
        events = try p.feed(bytes("second"))
        #expect(events == [.body(bytes("second"))])
        #expect(try p.feed([]) == [])
        #expect(!p.isIdle)
        events = try p.finish()
        #expect(events == [.end(trailers: HTTPHeaders())])
        #expect(p.isIdle)

        // HTTP/1.1 without framing is read until close too, and is not keep-alive.
        let all = try parseAll(.response, bytes("HTTP/1.1 200 OK\r\n\r\nxyz"), finish: true)
        #expect(responseHead(all)?.keepAlive == false)
        #expect(Array(all.dropFirst()) == [.body(bytes("xyz")), .end(trailers: HTTPHeaders())])
    }

    @Test func statusLineVariants() throws {
        let noReason = try #require(responseHead(try parseAll(.response, bytes("HTTP/1.1 404\r\nContent-Length: 0\r\n\r\n"))))
        #expect(noReason.status == 404)
        #expect(noReason.reason == "")
        let emptyReason = try #require(responseHead(try parseAll(.response, bytes("HTTP/1.1 500 \r\nContent-Length: 0\r\n\r\n"))))
        #expect(emptyReason.reason == "")
        let long = try #require(responseHead(try parseAll(.response, bytes("HTTP/1.1 499 Client Closed\tRequest\r\nContent-Length: 0\r\n\r\n"))))
        #expect(long.reason == "Client Closed\tRequest")
        let close = try #require(responseHead(try parseAll(.response, bytes("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"))))
        #expect(!close.keepAlive)
    }

    @Test func chunkedResponseWithTrailers() throws {
        let raw = bytes("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\ngrpc-status: 0\r\ngrpc-message: \r\n\r\n")
        let events = normalized(try parseAll(.response, raw))
        #expect(events.count == 3)
        #expect(events[1] == .body(bytes("abc")))
        #expect(events[2] == .end(trailers: HTTPHeaders([("grpc-status", "0"), ("grpc-message", "")])))
    }

    @Test func truncatedMessagesThrowOnFinish() {
        let truncated: [(HTTP1Parser.Kind, String)] = [
            (.request, "GET / HTTP/1.1\r\nHost: x\r\n"),
            (.request, "G"),
            (.request, "POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\n12345"),
            (.request, "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel"),
            (.request, "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello"),
            (.request, "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"),
            (.request, "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n"),
            (.request, "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nx: y\r\n"),
            (.response, "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nab"),
            (.response, "HTTP/1.1 100 Continue\r\n\r\n"),  // EOF without a final response after a 1xx is fine…
        ]
        for (i, (kind, raw)) in truncated.enumerated() {
            let (whole, slow) = parseFailure(kind, bytes(raw), finish: true)
            if i == truncated.count - 1 {
                #expect(whole == nil)  // …because nothing partial is buffered.
                continue
            }
            #expect(whole?.status == 400, "\(raw)")
            #expect(whole?.message.hasPrefix("truncated") == true, "\(raw)")
            #expect(slow?.status == 400, "\(raw) (byte by byte)")
        }
        // A clean EOF between messages is not an error.
        var p = HTTP1Parser(kind: .request)
        #expect((try? p.feed(bytes("GET / HTTP/1.1\r\n\r\n")))?.count == 2)
        #expect((try? p.finish()) == [])
    }
}

// MARK: - Serializer

@Suite struct HTTP1SerializerTests {
    @Test func requestRoundTrip() throws {
        let headers = HTTPHeaders([("Host", "localhost:8080"), ("content-type", "application/proto"),
                                   ("transfer-encoding", "chunked"), ("x-multi", "a"), ("x-multi", "b")])
        var out: [UInt8] = []
        HTTP1Serializer.requestHead(method: "POST", target: "/pkg.Svc/Call", headers: headers, into: &out)
        #expect(Array(out.prefix(36)) == bytes("POST /pkg.Svc/Call HTTP/1.1\r\nhost: l"))
        let body1 = bytes("first chunk")
        let body2 = Array(repeating: UInt8(0xAB), count: 300)
        body1.withUnsafeBytes { HTTP1Serializer.chunk($0, into: &out) }
        [UInt8]().withUnsafeBytes { HTTP1Serializer.chunk($0, into: &out) }  // writes nothing
        body2.withUnsafeBytes { HTTP1Serializer.chunk($0, into: &out) }
        let trailers = HTTPHeaders([("grpc-status", "0"), ("grpc-message", "fine")])
        HTTP1Serializer.lastChunk(trailers: trailers, into: &out)

        let expected: [HTTP1ParseEvent] = [
            .requestHead(HTTP1RequestHead(method: "POST", target: "/pkg.Svc/Call", versionMinor: 1, headers: headers, keepAlive: true)),
            .body(body1 + body2),
            .end(trailers: trailers),
        ]
        #expect(normalized(try parseAll(.request, out)) == expected)
        #expect(normalized(try parseByteByByte(.request, out)) == expected)
    }

    @Test func responseRoundTrip() throws {
        var out: [UInt8] = []
        let headers = HTTPHeaders([("content-type", "application/connect+proto"), ("transfer-encoding", "chunked")])
        HTTP1Serializer.responseHead(status: 200, headers: headers, into: &out)
        #expect(Array(out.prefix(17)) == bytes("HTTP/1.1 200 OK\r\n"))
        let body = bytes("0123456789abcdef0123456789")
        body.withUnsafeBytes { HTTP1Serializer.chunk($0, into: &out) }
        #expect(String(decoding: out.suffix(body.count + 6), as: UTF8.self).hasPrefix("1a\r\n"))
        HTTP1Serializer.lastChunk(trailers: HTTPHeaders(), into: &out)
        #expect(Array(out.suffix(5)) == bytes("0\r\n\r\n"))
        let events = normalized(try parseAll(.response, out))
        #expect(events == [
            .responseHead(HTTP1ResponseHead(status: 200, reason: "OK", versionMinor: 1, headers: headers, keepAlive: true)),
            .body(body), .end(trailers: HTTPHeaders()),
        ])

        // Content-Length framed, unusual status.
        var out2: [UInt8] = []
        HTTP1Serializer.responseHead(status: 499, headers: HTTPHeaders([("content-length", "0")]), into: &out2)
        #expect(out2 == bytes("HTTP/1.1 499 Client Closed Request\r\ncontent-length: 0\r\n\r\n"))
        let head = try #require(responseHead(try parseAll(.response, out2)))
        #expect(head.status == 499)
        #expect(head.reason == "Client Closed Request")
    }

    @Test func controlCharactersCannotInjectLines() throws {
        var out: [UInt8] = []
        HTTP1Serializer.responseHead(status: 200, headers: HTTPHeaders([("x-evil", "a\r\nSet-Cookie: b"), ("content-length", "0")]), into: &out)
        let events = try parseAll(.response, out)
        let head = try #require(responseHead(events))
        #expect(head.headers.count == 2)
        #expect(head.headers.first("x-evil") == "a  Set-Cookie: b")
    }

    @Test func reasonPhrases() {
        #expect(httpReasonPhrase(200) == "OK")
        #expect(httpReasonPhrase(404) == "Not Found")
        #expect(httpReasonPhrase(405) == "Method Not Allowed")
        #expect(httpReasonPhrase(415) == "Unsupported Media Type")
        #expect(httpReasonPhrase(431) == "Request Header Fields Too Large")
        #expect(httpReasonPhrase(499) == "Client Closed Request")
        #expect(httpReasonPhrase(500) == "Internal Server Error")
        #expect(httpReasonPhrase(505) == "HTTP Version Not Supported")
        #expect(httpReasonPhrase(299) == "Unknown")
        #expect(httpReasonPhrase(-1) == "Unknown")
    }

    @Test func chunkHexSizes() {
        for size in [1, 9, 10, 15, 16, 255, 256, 4095, 65536] {
            var out: [UInt8] = []
            let data = [UInt8](repeating: 1, count: size)
            data.withUnsafeBytes { HTTP1Serializer.chunk($0, into: &out) }
            let hex = String(size, radix: 16)
            #expect(Array(out.prefix(hex.utf8.count + 2)) == bytes(hex + "\r\n"))
            #expect(out.count == hex.utf8.count + 4 + size)
        }
    }
}

// MARK: - Fuzz

@Suite struct HTTP1FuzzTests {
    static let seeds: [[UInt8]] = [
        bytes("POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"),
        bytes("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n0\r\nT: v\r\n\r\n"),
        bytes("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /2 HTTP/1.1\r\n\r\n"),
        bytes("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc"),
        bytes("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nA\r\n0123456789\r\n0\r\n\r\n"),
        bytes("HTTP/1.0 200 OK\r\n\r\nuntil close"),
    ]

    /// Returns normally or throws HTTP1ParseError; a trap would crash the test process.
    private static func exercise(_ kind: HTTP1Parser.Kind, _ input: [UInt8], _ rng: inout SplitMix64) -> Bool {
        var p = HTTP1Parser(kind: kind, maxHeaderBytes: 64 + rng.below(512), maxChunkLineBytes: 4 + rng.below(64))
        if rng.below(4) == 0 { p.expectHeadResponse() }
        var i = 0
        do {
            while i < input.count {
                let n = 1 + rng.below(min(input.count - i, 40))
                let events = try p.feed(Array(input[i..<(i + n)]))
                for e in events { if case .body(let b) = e, b.isEmpty { return false } }
                i += n
            }
            _ = try p.finish()
        } catch is HTTP1ParseError {
            // Expected for garbage; the parser must stay dead.
            do { _ = try p.feed([0x41]); return false } catch { return error is HTTP1ParseError }
        } catch {
            return false
        }
        return true
    }

    @Test func randomBytesNeverTrap() {
        var rng = SplitMix64(state: 0x5EED_1234)
        // Bytes drawn mostly from the protocol's alphabet so that the parser gets past the first line.
        let alphabet = bytes("GETPOSTHTTP/1.01 :\r\n\r\n\t;,0123456789abcdefABCDEF-xXchunkedContent-LengthTransfer-Encoding") + [0, 0x7F, 0xFF, 0x0A, 0x0D]
        for _ in 0..<3000 {
            let length = rng.below(300)
            var input: [UInt8] = []
            input.reserveCapacity(length)
            for _ in 0..<length {
                input.append(rng.below(3) == 0 ? UInt8(truncatingIfNeeded: rng.next()) : alphabet[rng.below(alphabet.count)])
            }
            #expect(Self.exercise(rng.below(2) == 0 ? .request : .response, input, &rng))
        }
    }

    @Test func mutatedValidMessagesNeverTrap() {
        var rng = SplitMix64(state: 42)
        let interesting: [UInt8] = [0x00, 0x0A, 0x0D, 0x20, 0x09, 0x3A, 0x3B, 0x2C, 0x30, 0x66, 0x46, 0x7F, 0x80, 0xFF]
        for _ in 0..<6000 {
            let seed = Self.seeds[rng.below(Self.seeds.count)]
            var input = seed
            let mutations = 1 + rng.below(4)
            for _ in 0..<mutations where !input.isEmpty {
                let at = rng.below(input.count)
                switch rng.below(5) {
                case 0: input[at] = interesting[rng.below(interesting.count)]
                case 1: input[at] = UInt8(truncatingIfNeeded: rng.next())
                case 2: input.remove(at: at)
                case 3: input.insert(interesting[rng.below(interesting.count)], at: at)
                default:
                    let end = min(input.count, at + rng.below(16))
                    input.insert(contentsOf: Array(input[at..<end]), at: at)
                }
            }
            let kind: HTTP1Parser.Kind = (seed.first == UInt8(ascii: "H")) ? .response : .request
            #expect(Self.exercise(kind, input, &rng))
        }
    }
}
