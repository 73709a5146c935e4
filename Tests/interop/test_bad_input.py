"""Hostile and broken peers on raw sockets against each of our servers.

After EVERY case the server process must still be alive and answer a normal request over HTTP/1.1
(http.client) and h2c (curl --http2-prior-knowledge). Cases whose expected answer is fixed by a spec
assert it (RFC 9112/9113, protocol digest §1-3, §8-9); the others only require that the server
rejects, closes or answers within a bound, and survives.

IDs read `server-S-CASE`, e.g. `-k "server-swift and h2_"`, `-k "gzip"`.
"""

from __future__ import annotations

import gzip
import http.client
import json
import select
import socket
import struct
import subprocess
import time
import uuid
from dataclasses import dataclass, field

import pytest

from conftest import LANGS, PROCEDURE

MAX = 4 * 1024 * 1024
IO_TIMEOUT = 5.0


# ------------------------------------------------------------------------------------------------
# HTTP/1.1 on a raw socket
# ------------------------------------------------------------------------------------------------


def connect(srv, timeout: float = IO_TIMEOUT) -> socket.socket:
    s = socket.create_connection((srv.host, srv.port), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def request(path: str = PROCEDURE + "Get", body: bytes = b'{"key":"k"}', headers: dict | None = None,
            content_type: str | None = "application/json", content_length: bool = True) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1"]
    if content_type is not None:
        lines.append(f"Content-Type: {content_type}")
    if content_length:
        lines.append(f"Content-Length: {len(body)}")
    for k, v in (headers or {}).items():
        lines.append(f"{k}: {v}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


@dataclass
class H1Resp:
    status: int | None
    headers: dict = field(default_factory=dict)
    body: bytes = b""
    raw: bytes = b""
    ended: str = ""  # how reading stopped when there was no complete response: eof | reset | timeout

    def header(self, name):
        v = self.headers.get(name.lower())
        return v[-1] if v else None

    def __str__(self):
        if self.status is None:
            return f"no response ({self.ended}); bytes received: {self.raw[:300]!r}"
        return f"HTTP {self.status} headers={self.headers} body={self.body[:300]!r}"


def _recv(sock, deadline) -> bytes:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError
    sock.settimeout(left)
    try:
        return sock.recv(65536)
    except socket.timeout as e:
        raise TimeoutError from e


# Bytes read past the end of a response (pipelined responses can arrive in one read), per socket.
_LEFTOVER: dict[int, bytes] = {}


def read_response(sock, timeout: float = IO_TIMEOUT) -> H1Resp:
    deadline = time.monotonic() + timeout
    buf = _LEFTOVER.pop(id(sock), b"")
    try:
        while b"\r\n\r\n" not in buf:
            data = _recv(sock, deadline)
            if not data:
                return H1Resp(None, raw=buf, ended="eof")
            buf += data
        head, rest = buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
            return H1Resp(None, raw=buf, ended=f"bad status line {lines[0]!r}")
        status = int(parts[1])
        headers: dict[str, list[str]] = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers.setdefault(k.strip().lower(), []).append(v.strip())
        resp = H1Resp(status, headers, raw=buf)
        if status in (204, 304) or 100 <= status < 200:
            resp.body = b""
            return resp
        te = ",".join(headers.get("transfer-encoding", [])).lower()
        if "chunked" in te:
            body = b""
            data = rest
            while True:
                while b"\r\n" not in data:
                    more = _recv(sock, deadline)
                    if not more:
                        resp.ended = "eof in chunked body"
                        resp.body = body
                        return resp
                    data += more
                size_line, data = data.split(b"\r\n", 1)
                size = int(size_line.split(b";")[0].strip(), 16)
                while len(data) < size + 2:
                    more = _recv(sock, deadline)
                    if not more:
                        resp.ended = "eof in chunk"
                        resp.body = body + data
                        return resp
                    data += more
                if size == 0:
                    # data now starts with the (empty) trailer section's CRLF
                    end = data.find(b"\r\n\r\n") + 4 if not data.startswith(b"\r\n") else 2
                    if end >= 2 and len(data) > end:
                        _LEFTOVER[id(sock)] = data[end:]
                    break
                body += data[:size]
                data = data[size + 2:]
            resp.body = body
            return resp
        if "content-length" in headers:
            n = int(headers["content-length"][-1])
            while len(rest) < n:
                more = _recv(sock, deadline)
                if not more:
                    resp.ended = "eof in body"
                    break
                rest += more
            resp.body = rest[:n]
            if len(rest) > n:
                _LEFTOVER[id(sock)] = rest[n:]
            return resp
        while True:  # delimited by close
            more = _recv(sock, deadline)
            if not more:
                break
            rest += more
        resp.body = rest
        return resp
    except TimeoutError:
        return H1Resp(None, raw=buf, ended="timeout")
    except (ConnectionResetError, BrokenPipeError):
        return H1Resp(None, raw=buf, ended="reset")


def closed_within(sock, timeout: float = IO_TIMEOUT) -> bool:
    """Reads and discards until EOF/RST; False if the connection is still open after `timeout`."""
    deadline = time.monotonic() + timeout
    try:
        while True:
            if not _recv(sock, deadline):
                return True
    except TimeoutError:
        return False
    except OSError:
        return True


def send_streaming(sock, head: bytes, body_chunks, stop_when_readable: bool = True) -> str:
    """Sends head then the chunks, stopping as soon as the server has answered (readable) or closed.
    Returns 'sent' | 'answered' | 'closed'."""
    try:
        sock.sendall(head)
        for chunk in body_chunks:
            if stop_when_readable and select.select([sock], [], [], 0)[0]:
                return "answered"
            sock.sendall(chunk)
    except (BrokenPipeError, ConnectionResetError):
        return "closed"
    return "sent"


def assert_status(resp: H1Resp, allowed, what: str):
    assert resp.status in allowed, f"{what}: expected HTTP {' or '.join(map(str, allowed))}, got {resp}"


def assert_connect_error(resp: H1Resp, status_by_code: dict[str, int], what: str):
    assert resp.status is not None, f"{what}: expected a Connect error, got {resp}"
    ct = (resp.header("content-type") or "").split(";")[0].strip().lower()
    assert ct == "application/json", f"{what}: Connect error must be application/json, got {resp}"
    try:
        body = json.loads(resp.body)
    except ValueError:
        pytest.fail(f"{what}: error body is not JSON: {resp}", pytrace=False)
    code = body.get("code") if isinstance(body, dict) else None
    assert code in status_by_code, f"{what}: expected code {' or '.join(status_by_code)}, got {resp}"
    assert resp.status == status_by_code[code], (
        f"{what}: code {code} must come with HTTP {status_by_code[code]} (§2.1), got {resp}")


def assert_rejected(resp: H1Resp, sock, what: str):
    """Lenient: an error status (4xx/5xx) or a close without a response, within the bound."""
    if resp.status is None:
        assert resp.ended in ("eof", "reset"), f"{what}: server neither answered nor closed: {resp}"
    else:
        assert 400 <= resp.status < 600, f"{what}: expected a rejection, got {resp}"


# ------------------------------------------------------------------------------------------------
# HTTP/2 frames by hand
# ------------------------------------------------------------------------------------------------

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = 0, 1, 2, 3, 4, 6, 7, 8, 9
END_STREAM, END_HEADERS, ACK = 0x1, 0x4, 0x1
H2_ERRORS = {0: "NO_ERROR", 1: "PROTOCOL_ERROR", 2: "INTERNAL_ERROR", 3: "FLOW_CONTROL_ERROR", 4: "SETTINGS_TIMEOUT",
             5: "STREAM_CLOSED", 6: "FRAME_SIZE_ERROR", 7: "REFUSED_STREAM", 8: "CANCEL", 9: "COMPRESSION_ERROR",
             10: "CONNECT_ERROR", 11: "ENHANCE_YOUR_CALM", 12: "INADEQUATE_SECURITY", 13: "HTTP_1_1_REQUIRED"}
FRAME_NAMES = {0: "DATA", 1: "HEADERS", 2: "PRIORITY", 3: "RST_STREAM", 4: "SETTINGS", 5: "PUSH_PROMISE", 6: "PING",
               7: "GOAWAY", 8: "WINDOW_UPDATE", 9: "CONTINUATION"}


def frame(ftype: int, flags: int, stream: int, payload: bytes = b"", length: int | None = None) -> bytes:
    n = len(payload) if length is None else length
    return n.to_bytes(3, "big") + bytes([ftype, flags]) + (stream & 0x7FFFFFFF).to_bytes(4, "big") + payload


def hpack_int(n: int, prefix_bits: int = 7, first: int = 0) -> bytes:
    limit = (1 << prefix_bits) - 1
    if n < limit:
        return bytes([first | n])
    out = [first | limit]
    n -= limit
    while n >= 128:
        out.append((n % 128) + 128)
        n //= 128
    out.append(n)
    return bytes(out)


def hpack_literal(name: str, value: str | bytes) -> bytes:
    """Literal header field without indexing, new name, no Huffman (RFC 7541 §6.2.2)."""
    nb = name.encode()
    vb = value if isinstance(value, bytes) else value.encode()
    return b"\x00" + hpack_int(len(nb)) + nb + hpack_int(len(vb)) + vb


def request_block(path: str = PROCEDURE + "Get", extra: list[tuple[str, str]] = ()) -> bytes:
    hs = [(":method", "POST"), (":scheme", "http"), (":path", path), (":authority", "127.0.0.1"),
          ("content-type", "application/json"), *extra]
    return b"".join(hpack_literal(k, v) for k, v in hs)


@dataclass
class H2Frame:
    type: int
    flags: int
    stream: int
    payload: bytes

    def __repr__(self):
        name = FRAME_NAMES.get(self.type, f"type{self.type}")
        if self.type == GOAWAY and len(self.payload) >= 8:
            last, code = struct.unpack(">II", self.payload[:8])
            return (f"GOAWAY(last_stream={last & 0x7FFFFFFF}, {H2_ERRORS.get(code, code)}, "
                    f"debug={self.payload[8:60]!r})")
        if self.type == RST_STREAM and len(self.payload) == 4:
            return f"RST_STREAM(stream={self.stream}, {H2_ERRORS.get(struct.unpack('>I', self.payload)[0])})"
        return f"{name}(flags={self.flags:#x}, stream={self.stream}, len={len(self.payload)})"


@dataclass
class H2Read:
    frames: list
    ended: str  # eof | reset | timeout
    trailing: bytes = b""

    def goaway(self):
        return next((f for f in self.frames if f.type == GOAWAY), None)

    def __str__(self):
        return f"frames={self.frames} then {self.ended}" + (f", trailing bytes {self.trailing[:80]!r}"
                                                            if self.trailing else "")


def read_frames(sock, timeout: float = IO_TIMEOUT, until=None) -> H2Read:
    """Reads frames until EOF/RST/timeout, or until `until(frame)` is true."""
    deadline = time.monotonic() + timeout
    buf = b""
    frames = []
    try:
        while True:
            while len(buf) >= 9:
                n = int.from_bytes(buf[:3], "big")
                if len(buf) < 9 + n:
                    break
                f = H2Frame(buf[3], buf[4], int.from_bytes(buf[5:9], "big") & 0x7FFFFFFF, buf[9:9 + n])
                buf = buf[9 + n:]
                frames.append(f)
                if until is not None and until(f):
                    return H2Read(frames, "until", buf)
            data = _recv(sock, deadline)
            if not data:
                return H2Read(frames, "eof", buf)
            buf += data
    except TimeoutError:
        return H2Read(frames, "timeout", buf)
    except (ConnectionResetError, BrokenPipeError):
        return H2Read(frames, "reset", buf)


def expect_goaway_and_close(sock, payload: bytes, codes: tuple[int, ...], what: str):
    try:
        sock.sendall(payload)
    except (BrokenPipeError, ConnectionResetError):
        pass
    r = read_frames(sock, IO_TIMEOUT)
    g = r.goaway()
    assert g is not None, f"{what}: expected a GOAWAY then close, got {r}"
    code = struct.unpack(">I", g.payload[4:8])[0] if len(g.payload) >= 8 else None
    assert code in codes, (f"{what}: GOAWAY error code {H2_ERRORS.get(code, code)}, expected "
                           f"{' or '.join(H2_ERRORS[c] for c in codes)} (RFC 9113); {r}")
    assert r.ended in ("eof", "reset"), f"{what}: connection not closed within {IO_TIMEOUT} s after GOAWAY; {r}"


# ------------------------------------------------------------------------------------------------
# Health check: a normal request must still work
# ------------------------------------------------------------------------------------------------


def health(srv, context: str) -> None:
    key = f"health-{uuid.uuid4().hex[:8]}"
    try:
        conn = http.client.HTTPConnection(srv.host, srv.port, timeout=IO_TIMEOUT)
        conn.request("POST", PROCEDURE + "Put", body=json.dumps({"key": key, "value": "aGVhbHRo"}),
                     headers={"content-type": "application/json"})
        r = conn.getresponse()
        b = r.read()
        assert r.status == 200, f"Put -> HTTP {r.status} {b[:300]!r}"
        conn.request("POST", PROCEDURE + "Get", body=json.dumps({"key": key}),
                     headers={"content-type": "application/json"})
        r = conn.getresponse()
        b = r.read()
        assert r.status == 200 and json.loads(b) == {"value": "aGVhbHRo", "found": True}, (
            f"Get -> HTTP {r.status} {b[:300]!r}")
        conn.close()
    except Exception as e:  # noqa: BLE001
        pytest.fail(f"SERVER NO LONGER ANSWERS a normal HTTP/1.1 request {context}: {type(e).__name__}: {e}\n"
                    f"{srv.describe()}", pytrace=False)
    cmd = ["curl", "-sS", "--max-time", str(int(IO_TIMEOUT)), "--http2-prior-knowledge", "-H",
           "content-type: application/json", "--data-binary", json.dumps({"key": key}), f"{srv.url}{PROCEDURE}Get"]
    r = subprocess.run(cmd, capture_output=True, timeout=IO_TIMEOUT + 5)
    ok = r.returncode == 0
    if ok:
        try:
            ok = json.loads(r.stdout) == {"value": "aGVhbHRo", "found": True}
        except ValueError:
            ok = False
    if not ok:
        pytest.fail(f"SERVER NO LONGER ANSWERS a normal h2c request {context}: curl rc={r.returncode} "
                    f"stdout={r.stdout[:300]!r} stderr={r.stderr[:300]!r}\n{srv.describe()}", pytrace=False)


# ------------------------------------------------------------------------------------------------
# The cases
# ------------------------------------------------------------------------------------------------

CASES = {}


def case(fn):
    CASES[fn.__name__] = fn
    return fn


# --- HTTP/1.1 framing ------------------------------------------------------------------------


@case
def malformed_request_line(srv):
    with connect(srv) as s:
        s.sendall(b"THIS IS NOT HTTP\r\n\r\n")
        r = read_response(s)
        assert_status(r, (400,), "malformed request line")
        assert closed_within(s), "malformed request line: the connection must be closed after the 400"


@case
def request_line_without_version(srv):
    with connect(srv) as s:
        s.sendall(f"POST {PROCEDURE}Get\r\nHost: x\r\n\r\n".encode())
        assert_rejected(read_response(s), s, "request line without HTTP version")


@case
def unsupported_http_version(srv):
    with connect(srv) as s:
        s.sendall(request().replace(b"HTTP/1.1", b"HTTP/3.7", 1))
        r = read_response(s)
        assert_rejected(r, s, "HTTP/3.7 request line")


@case
def tls_client_hello_on_plaintext_port(srv):
    hello = bytes.fromhex("16030100c8010000c40303") + bytes(32) + b"\x00\x00\x04\x13\x01\x13\x02\x01\x00" + bytes(150)
    with connect(srv) as s:
        s.sendall(hello)
        r = read_response(s, 2)
        if r.status is None and r.ended == "timeout":
            # Still waiting for a line end: acceptable, as long as others are served meanwhile and
            # the bytes are rejected once a line end arrives.
            health(srv, "while a TLS ClientHello sits unanswered on another connection")
            try:
                s.sendall(b"\r\n\r\n")
            except OSError:
                return
            r = read_response(s)
        assert_rejected(r, s, "TLS ClientHello (then CRLF CRLF)")


@case
def header_without_colon(srv):
    with connect(srv) as s:
        s.sendall(f"POST {PROCEDURE}Get HTTP/1.1\r\nHost: x\r\nThisHeaderHasNoColon\r\n"
                  f"Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{{}}".encode())
        r = read_response(s)
        assert_status(r, (400,), "header line without a colon")
        assert closed_within(s), "header without colon: the connection must be closed after the 400"


@case
def header_name_with_space_before_colon(srv):
    """RFC 9112 §5.1: whitespace between field name and colon MUST be rejected with 400."""
    with connect(srv) as s:
        s.sendall(request(headers={"X-Bad ": "1"}))
        assert_status(read_response(s), (400,), "space before the colon")


@case
def control_characters_in_header(srv):
    with connect(srv) as s:
        s.sendall(request(headers={"X-Bad": "a\x00b\x7f"}))
        assert_rejected(read_response(s), s, "NUL in a header value")


def _huge_headers(srv, lines_iter, what):
    with connect(srv) as s:
        head = f"POST {PROCEDURE}Get HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n".encode()
        outcome = send_streaming(s, head, lines_iter)
        if outcome == "sent":
            try:
                s.sendall(b"Content-Length: 2\r\n\r\n{}")
            except OSError:
                pass
        r = read_response(s, 10)
        assert_status(r, (431, 400), what)
        assert closed_within(s), f"{what}: the connection must be closed after the {r.status}"


@case
def huge_header_value(srv):
    value = b"a" * 16384
    _huge_headers(srv, (b"X-Huge: " + value + b"\r\n" if i == 0 else value for i in range(64)),
                  "one 1 MiB header line")


@case
def huge_header_section(srv):
    lines = (b"".join(b"X-Pad-%06d: %s\r\n" % (i * 100 + j, b"v" * 100) for j in range(100)) for i in range(100))
    _huge_headers(srv, lines, "10,000 headers (1.1 MB header section)")


@case
def huge_request_uri(srv):
    with connect(srv) as s:
        outcome = send_streaming(s, b"POST /" , (b"a" * 16384 for _ in range(64)))
        if outcome == "sent":
            try:
                s.sendall(b" HTTP/1.1\r\nHost: x\r\n\r\n")
            except OSError:
                pass
        r = read_response(s, 10)
        assert_status(r, (414, 431, 400), "1 MiB request target")
        assert closed_within(s), f"1 MiB request target: the connection must be closed after the {r.status}"


@case
def truncated_body_then_close(srv):
    with connect(srv) as s:
        s.sendall(request(body=b'{"key":"k","value":"aGVsbG8="}')[:-20])
    with connect(srv) as s:  # and with a Content-Length far beyond what is sent
        s.sendall(request(body=b"{}").replace(b"Content-Length: 2", b"Content-Length: 1000") + b'{"key"')
    time.sleep(0.2)


@case
def content_length_over_max_message_size(srv):
    """CMP-6: Content-Length > 4 MiB -> 429 resource_exhausted (Connect JSON)."""
    n = MAX + 1024 * 1024
    head = request(body=b"", content_type="application/proto").replace(b"Content-Length: 0",
                                                                       f"Content-Length: {n}".encode())
    with connect(srv) as s:
        send_streaming(s, head, (b"\x00" * 65536 for _ in range(n // 65536)))
        r = read_response(s, 10)
        assert_connect_error(r, {"resource_exhausted": 429}, f"Content-Length {n} (max {MAX})")


@case
def chunked_body_over_max_message_size(srv):
    head = (f"POST {PROCEDURE}Put HTTP/1.1\r\nHost: x\r\nContent-Type: application/proto\r\n"
            f"Transfer-Encoding: chunked\r\n\r\n").encode()
    chunk = b"10000\r\n" + b"\x00" * 65536 + b"\r\n"
    with connect(srv) as s:
        outcome = send_streaming(s, head, (chunk for _ in range(80)))  # 5 MiB
        if outcome == "sent":
            try:
                s.sendall(b"0\r\n\r\n")
            except OSError:
                pass
        r = read_response(s, 10)
        assert_connect_error(r, {"resource_exhausted": 429}, "5 MiB chunked body (max 4 MiB)")


@case
def invalid_content_length(srv):
    for value in ("abc", "-5", "99999999999999999999999", "10, 20", "0x10"):
        with connect(srv) as s:
            s.sendall(f"POST {PROCEDURE}Get HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                      f"Content-Length: {value}\r\n\r\n{{}}".encode())
            r = read_response(s)
            assert_rejected(r, s, f"Content-Length: {value}")
            assert r.status is None or r.status in (400, 413, 429), f"Content-Length: {value}: got {r}"


@case
def duplicate_conflicting_content_length(srv):
    with connect(srv) as s:
        s.sendall(f"POST {PROCEDURE}Get HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  f"Content-Length: 2\r\nContent-Length: 11\r\n\r\n{{\"key\":\"k\"}}".encode())
        r = read_response(s)
        assert_status(r, (400,), "two different Content-Length headers (RFC 9112 §6.3)")


@case
def bad_chunk_size(srv):
    with connect(srv) as s:
        s.sendall(f"POST {PROCEDURE}Get HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  f"Transfer-Encoding: chunked\r\n\r\nzz\r\n{{}}\r\n0\r\n\r\n".encode())
        r = read_response(s)
        assert_rejected(r, s, "chunk size 'zz'")


# --- Connect-level input -----------------------------------------------------------------------

DECODE_ERROR = {"invalid_argument": 400, "internal": 500}  # §16 item 1: either is acceptable


@case
def invalid_gzip_body(srv):
    with connect(srv) as s:
        s.sendall(request(body=b"this is not gzip at all", headers={"Content-Encoding": "gzip"}))
        assert_connect_error(read_response(s), DECODE_ERROR, "garbage body with Content-Encoding: gzip")


@case
def truncated_gzip_body(srv):
    body = gzip.compress(b'{"key":"greeting","value":"aGVsbG8="}')[:-12]
    with connect(srv) as s:
        s.sendall(request(body=body, headers={"Content-Encoding": "gzip"}))
        assert_connect_error(read_response(s), DECODE_ERROR, "truncated gzip body")


@case
def gzip_bomb(srv):
    """CMP-6: the limit applies to the decompressed size: 64 MiB of zeros in ~64 KiB of gzip."""
    body = gzip.compress(b"\x00" * (64 * 1024 * 1024), compresslevel=9)
    with connect(srv, timeout=15) as s:
        s.sendall(request(body=body, content_type="application/proto", headers={"Content-Encoding": "gzip"}))
        assert_connect_error(read_response(s, 15), {"resource_exhausted": 429}, "gzip bomb (64 MiB decompressed)")


@case
def unknown_content_type(srv):
    with connect(srv) as s:
        s.sendall(request(content_type="text/plain"))
        assert_status(read_response(s), (415,), "Content-Type: text/plain")
    with connect(srv) as s:
        s.sendall(request(content_type=None))
        assert_status(read_response(s), (415,), "no Content-Type")


@case
def timeout_not_a_number(srv):
    with connect(srv) as s:
        s.sendall(request(headers={"Connect-Timeout-Ms": "abc"}))
        assert_connect_error(read_response(s), {"invalid_argument": 400}, "Connect-Timeout-Ms: abc")


@case
def undecodable_message(srv):
    with connect(srv) as s:
        s.sendall(request(body=b"\xff\xff\xff\xff", content_type="application/proto"))
        assert_connect_error(read_response(s), {"invalid_argument": 400}, "undecodable proto body")
    with connect(srv) as s:
        s.sendall(request(body=b'{"key": 12, "value": "!!"'))
        assert_connect_error(read_response(s), {"invalid_argument": 400}, "undecodable JSON body")


@case
def http1_pipelining(srv):
    """Two requests in one write: two responses, in order (RFC 9112 §9.3.2)."""
    k = f"pipe-{uuid.uuid4().hex[:8]}"
    put = request(PROCEDURE + "Put", json.dumps({"key": k, "value": "cGlwZQ=="}).encode())
    get = request(PROCEDURE + "Get", json.dumps({"key": k}).encode())
    with connect(srv) as s:
        s.sendall(put + get)
        r1 = read_response(s)
        r2 = read_response(s)
    assert r1.status == 200 and json.loads(r1.body or b"null") == {}, f"first pipelined response: {r1}"
    assert r2.status == 200 and json.loads(r2.body or b"null") == {"value": "cGlwZQ==", "found": True}, (
        f"second pipelined response: {r2}")


# --- HTTP/2 ------------------------------------------------------------------------------------


@case
def h2_garbage_after_preface(srv):
    with connect(srv) as s:
        expect_goaway_and_close(s, PREFACE + b"\xde\xad\xbe\xef" * 64, (1, 6), "garbage after the h2 preface")


@case
def h2_data_on_stream_0(srv):
    with connect(srv) as s:
        expect_goaway_and_close(s, PREFACE + frame(SETTINGS, 0, 0) + frame(DATA, 0, 0, b"hello"), (1,),
                                "DATA frame on stream 0")


@case
def h2_bad_hpack(srv):
    with connect(srv) as s:
        expect_goaway_and_close(
            s, PREFACE + frame(SETTINGS, 0, 0) + frame(HEADERS, END_HEADERS | END_STREAM, 1, b"\xff\xff\xff\xff\xff\xff"),
            (9,), "HEADERS with an undecodable HPACK block")


@case
def h2_even_stream_id(srv):
    with connect(srv) as s:
        expect_goaway_and_close(s, PREFACE + frame(SETTINGS, 0, 0) + frame(HEADERS, END_HEADERS, 2, request_block()),
                                (1,), "client HEADERS on even stream 2")


@case
def h2_oversized_frame(srv):
    with connect(srv) as s:
        expect_goaway_and_close(
            s, PREFACE + frame(SETTINGS, 0, 0) + frame(HEADERS, END_HEADERS, 1, request_block())
            + frame(DATA, 0, 1, b"\x00" * 20000), (6,), "20000-byte DATA frame (SETTINGS_MAX_FRAME_SIZE 16384)")


@case
def h2_zero_window_update(srv):
    with connect(srv) as s:
        expect_goaway_and_close(s, PREFACE + frame(SETTINGS, 0, 0) + frame(WINDOW_UPDATE, 0, 0, b"\x00\x00\x00\x00"),
                                (1,), "WINDOW_UPDATE with increment 0 on stream 0")


@case
def h2_bad_settings_length(srv):
    with connect(srv) as s:
        expect_goaway_and_close(s, PREFACE + frame(SETTINGS, 0, 0, b"\x00\x03\x00\x00\x00"), (6,),
                                "SETTINGS with a 5-byte payload")


@case
def h2_continuation_without_headers(srv):
    with connect(srv) as s:
        expect_goaway_and_close(s, PREFACE + frame(SETTINGS, 0, 0) + frame(CONTINUATION, END_HEADERS, 1, b"\x82"),
                                (1,), "CONTINUATION without HEADERS")


@case
def h2_bad_preface(srv):
    with connect(srv) as s:
        s.sendall(b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n" + frame(SETTINGS, 0, 0))
        r = read_frames(s)
        assert r.ended in ("eof", "reset"), f"corrupt h2 preface: connection not closed; {r}"


@case
def h2_continuation_flood(srv):
    """CVE-2024-27316-style: HEADERS without END_HEADERS, then 1 MiB of CONTINUATION frames. The server
    must bound it (GOAWAY, RST_STREAM, 431 or close) rather than buffer forever."""
    with connect(srv) as s:
        sent = send_streaming(
            s, PREFACE + frame(SETTINGS, 0, 0) + frame(HEADERS, END_STREAM, 1, request_block()),
            (frame(CONTINUATION, 0, 1, b"".join(hpack_literal(f"x-flood-{i}-{j}", "v" * 200) for j in range(70)))
             for i in range(64)), stop_when_readable=False)
        r = read_frames(s, 10, until=lambda f: f.type in (GOAWAY, RST_STREAM) or (f.type == HEADERS and f.stream == 1))
        assert sent != "sent" or r.ended != "timeout" or any(
            f.type in (GOAWAY, RST_STREAM, HEADERS) for f in r.frames), (
            f"1 MiB header block in CONTINUATION frames: no GOAWAY/RST_STREAM/response/close within 10 s; {r}")


@case
def h2_rapid_reset(srv):
    """CVE-2023-44487-style: 1000 requests each cancelled at once. Survive; GOAWAY is allowed."""
    block = request_block()
    frames = b"".join(frame(HEADERS, END_HEADERS, 2 * i + 1, block) + frame(RST_STREAM, 0, 2 * i + 1, b"\x00\x00\x00\x08")
                      for i in range(1000))
    with connect(srv) as s:
        send_streaming(s, PREFACE + frame(SETTINGS, 0, 0), [frames[i:i + 65536] for i in range(0, len(frames), 65536)],
                       stop_when_readable=False)
        read_frames(s, 2)


@case
def h2_raw_request_ok(srv):
    """Sanity of the hand-made frames: a correct request on raw h2 gets :status 200."""
    import hpack

    body = json.dumps({"key": "no-such-key"}).encode()
    with connect(srv) as s:
        s.sendall(PREFACE + frame(SETTINGS, 0, 0) + frame(HEADERS, END_HEADERS, 1, request_block(
            extra=[("content-length", str(len(body)))])) + frame(DATA, END_STREAM, 1, body))
        r = read_frames(s, until=lambda f: f.stream == 1 and f.flags & END_STREAM)
        hdr = next((f for f in r.frames if f.type == HEADERS and f.stream == 1), None)
        assert hdr is not None, f"no response HEADERS on stream 1: {r}"
        headers = dict(hpack.Decoder().decode(hdr.payload))
        assert headers.get(":status") == "200", f"raw h2 request: {headers}; {r}"


# --- slow and idle peers ---------------------------------------------------------------------


@case
def idle_connections(srv):
    """Clients that connect and send nothing (plain, and after the h2 preface only) must not stop
    the server from serving others."""
    socks = [connect(srv) for _ in range(50)]
    pre = [connect(srv) for _ in range(5)]
    try:
        for s in pre:
            s.sendall(PREFACE)
        health(srv, "while 50 idle connections + 5 preface-only h2 connections are open")
    finally:
        for s in socks + pre:
            s.close()


@case
def half_request_stall(srv):
    """Half a request, then silence: other clients must be served meanwhile."""
    socks = []
    try:
        s = connect(srv)
        s.sendall(f"POST {PROCEDURE}Get HTTP/1.1\r\nHost: x\r\nContent-Ty".encode())
        socks.append(s)
        s = connect(srv)
        s.sendall(request(body=b'{"key":"k","value":"aGVsbG8="}')[:-10])
        socks.append(s)
        s = connect(srv)
        s.sendall(PREFACE + frame(SETTINGS, 0, 0) + frame(HEADERS, END_HEADERS, 1, request_block()) +
                  frame(DATA, 0, 1, b'{"key":'))
        socks.append(s)
        s = connect(srv)
        s.sendall(PREFACE + frame(SETTINGS, 0, 0) + frame(HEADERS, END_HEADERS, 1, request_block())[:7])
        socks.append(s)
        time.sleep(0.3)
        health(srv, "while 4 connections hold half-sent requests (h1 headers, h1 body, h2 body, h2 frame)")
    finally:
        for s in socks:
            s.close()


@case
def close_before_reading_response(srv):
    """Clients that send a request for a large response and vanish (FIN, or RST via SO_LINGER 0):
    the server's write fails (EPIPE/ECONNRESET; SIGPIPE must not kill it)."""
    key = f"big-{uuid.uuid4().hex[:8]}"
    import base64
    value = base64.b64encode(bytes(range(256)) * 4096).decode()  # 1 MiB
    conn = http.client.HTTPConnection(srv.host, srv.port, timeout=IO_TIMEOUT)
    conn.request("POST", PROCEDURE + "Put", body=json.dumps({"key": key, "value": value}),
                 headers={"content-type": "application/json"})
    assert conn.getresponse().status == 200
    conn.close()
    get = request(PROCEDURE + "Get", json.dumps({"key": key}).encode())
    h2get = (PREFACE + frame(SETTINGS, 0, 0) + frame(HEADERS, END_HEADERS, 1, request_block())
             + frame(DATA, END_STREAM, 1, json.dumps({"key": key}).encode()))
    for i in range(40):
        s = connect(srv)
        s.sendall(get if i % 2 == 0 else h2get)
        if i % 4 >= 2:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        if i % 8 >= 4:
            time.sleep(0.01)  # let the response start flowing
        s.close()
    time.sleep(0.5)


@case
def many_connections_at_once(srv):
    """200 connections each sending a full request at the same time; all are answered."""
    socks = [connect(srv, timeout=15) for _ in range(200)]
    try:
        for s in socks:
            s.sendall(request(PROCEDURE + "Get", b'{"key":"absent"}'))
        bad = []
        for i, s in enumerate(socks):
            r = read_response(s, 15)
            if r.status != 200:
                bad.append((i, str(r)))
        assert not bad, f"{len(bad)} of 200 concurrent requests failed, e.g. {bad[:3]}"
    finally:
        for s in socks:
            s.close()


# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("server", [pytest.param(s, id=f"server-{s}") for s in LANGS])
def test_bad_input(servers, server, name):
    srv = servers.get(server, "tcp")
    health(srv, f"before case {name}")
    failure = None
    try:
        CASES[name](srv)
    except (AssertionError, pytest.fail.Exception, OSError) as e:
        failure = e
    problems = []
    if not srv.alive():
        problems.append(f"SERVER DIED during case {name}: rc={srv.proc.returncode}\n{srv.describe()}")
    else:
        try:
            health(srv, f"after case {name}")
        except pytest.fail.Exception as e:
            problems.append(str(e))
    if problems:
        if failure is not None:
            problems.append(f"(the case itself also failed: {failure})")
        pytest.fail("\n".join(problems), pytrace=False)
    if failure is not None:
        raise failure
