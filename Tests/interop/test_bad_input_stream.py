"""Hostile input for the envelope protocols (gRPC, gRPC-Web, Connect streaming), streaming abuse
(resets, stalls, flow control) and TLS, on raw sockets against each of our example servers.

Every step of a case costs the server one stream or one connection and must get the answer the
spec fixes (protocol digest §1.2, §5-§7, §9; examples/proto/README.md); then the server must serve:
plaintext cases reuse test_bad_input.health() (HTTP/1.1 and h2c), TLS cases use tls_health()
(HTTP/1.1 over TLS and curl with ALPN h2, with a client certificate for the mTLS server). gRPC
cases on h2c also send a good call on the SAME connection after the bad stream, so a stream-level
error that takes the connection down (GOAWAY, close) fails the case.

Every gRPC / gRPC-Web answer is checked for exactly one `grpc-status` (decimal, 0..16, no leading
zeros) in the trailers, or in the headers of a trailers-only response, with a grpc-message that
is printable ASCII (percent-encoded), and the content-type echoed (`application/grpc...`).

Groups (IDs read `server-S-CASE`, e.g. `-k "server-go and grpcweb_"`, `-k tls_`):
  * grpc_*      gRPC over h2c on the unary Put: short/oversized/compressed/reserved-flag envelopes,
                cardinality, unknown grpc-encoding, bad grpc-timeout, invalid request trailers;
  * grpcweb_*   the same envelopes as gRPC-Web over HTTP/1.1 (trailer frame 0x80 or trailers-only);
  * connect_*   Connect streaming content type on a unary method (415) and the reverse; Connect
                streaming envelopes on List/PutMany (EndStreamResponse errors, CS-3/CS-4/CMP-6);
  * stream_*    needs List/PutMany/Watch (examples/proto/README.md): Watch cancelled with
                RST_STREAM(CANCEL), List never read (flow control, memory), PutMany stalled
                mid-stream, cardinality on List;
  * tls_*       garbage / plaintext instead of a ClientHello, handshake slowloris, mTLS without
                (or with an untrusted) client certificate.

INTEROP_BAD_STREAM_PEERS=1 adds connect-python on hypercorn (`cpy-hypercorn`) as a server, to check
the harness itself against a real peer (it is not a target: its failures say nothing about ours).
"""

from __future__ import annotations

import gzip
import http.client
import json
import os
import re
import select
import socket
import ssl
import struct
import subprocess
import time
import uuid
from dataclasses import dataclass, field

import hpack
import pytest

from conftest import LANGS, PROCEDURE, make_tls_files, tls_config
from test_bad_input import (ACK, CONTINUATION, DATA, END_HEADERS, END_STREAM, GOAWAY, H2_ERRORS, HEADERS, IO_TIMEOUT,
                            MAX, PING, PREFACE, RST_STREAM, SETTINGS, WINDOW_UPDATE, H2Frame, connect,
                            frame, health, hpack_literal, read_response)

PUT, GET, LIST, PUTMANY, WATCH = (PROCEDURE + m for m in ("Put", "Get", "List", "PutMany", "Watch"))
PADDED, PRIORITY_FLAG = 0x8, 0x20
CANCEL, PROTOCOL_ERROR = 8, 1
CODE_NAMES = {0: "OK", 1: "CANCELLED", 2: "UNKNOWN", 3: "INVALID_ARGUMENT", 4: "DEADLINE_EXCEEDED", 5: "NOT_FOUND",
              6: "ALREADY_EXISTS", 7: "PERMISSION_DENIED", 8: "RESOURCE_EXHAUSTED", 9: "FAILED_PRECONDITION",
              10: "ABORTED", 11: "OUT_OF_RANGE", 12: "UNIMPLEMENTED", 13: "INTERNAL", 14: "UNAVAILABLE",
              15: "DATA_LOSS", 16: "UNAUTHENTICATED"}
INVALID_ARGUMENT, RESOURCE_EXHAUSTED, UNIMPLEMENTED, INTERNAL = 3, 8, 12, 13
DECODE_ERRORS = {INVALID_ARGUMENT, INTERNAL}  # GEN-8 / §16 item 1: either is acceptable
RSS_LIMIT_KIB = 100 * 1024
STREAMING_NOTE = ("(List/PutMany/Watch are specified in examples/proto/README.md; a server that answers "
                  "'unimplemented' / 404 for them has not implemented the streaming methods yet)")


def codes(expect) -> str:
    return " or ".join(f"{c} {CODE_NAMES[c]}" for c in sorted(expect))


# ------------------------------------------------------------------------------------------------
# Protobuf and envelopes by hand
# ------------------------------------------------------------------------------------------------


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def pb_bytes(fieldno: int, value: bytes) -> bytes:
    return varint((fieldno << 3) | 2) + varint(len(value)) + value if value else b""


def put_req(key: str, value: bytes = b"") -> bytes:
    return pb_bytes(1, key.encode()) + pb_bytes(2, value)


def key_req(key: str) -> bytes:  # GetRequest, DeleteRequest, ListRequest, WatchRequest: field 1
    return pb_bytes(1, key.encode())


def pb_decode(data: bytes) -> dict[int, list]:
    """Minimal protobuf reader: {field: [bytes (LEN) | int (VARINT)]}; raises ValueError."""
    out: dict[int, list] = {}
    i = 0

    def rd():
        nonlocal i
        shift = n = 0
        while True:
            if i >= len(data):
                raise ValueError("truncated varint")
            b = data[i]
            i += 1
            n |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                return n

    while i < len(data):
        tag = rd()
        fno, wt = tag >> 3, tag & 7
        if wt == 0:
            out.setdefault(fno, []).append(rd())
        elif wt == 2:
            n = rd()
            if i + n > len(data):
                raise ValueError("truncated field")
            out.setdefault(fno, []).append(data[i:i + n])
            i += n
        else:
            raise ValueError(f"wire type {wt}")
    return out


def env(payload: bytes, flags: int = 0, length: int | None = None) -> bytes:
    """A 5-byte-prefixed message (digest §1.2); `length` overrides the declared length."""
    return bytes([flags]) + (len(payload) if length is None else length).to_bytes(4, "big") + payload


def envelopes(data: bytes) -> tuple[list[tuple[int, bytes]], bytes]:
    """Splits a body into (flags, payload) envelopes; returns them and the unparsed rest."""
    out, i = [], 0
    while len(data) - i >= 5:
        n = int.from_bytes(data[i + 1:i + 5], "big")
        if len(data) - i - 5 < n:
            break
        out.append((data[i], data[i + 5:i + 5 + n]))
        i += 5 + n
    return out, data[i:]


def uid() -> str:
    return uuid.uuid4().hex[:10]


# ------------------------------------------------------------------------------------------------
# A small HTTP/2 client on a raw socket: frames by hand, flow control tracked, nothing hidden
# ------------------------------------------------------------------------------------------------


@dataclass
class H2Stream:
    id: int
    send_window: int
    blocks: list = field(default_factory=list)  # decoded header blocks [(name, value)], in order
    data: bytearray = field(default_factory=bytearray)
    flow_bytes: int = 0  # flow-controlled DATA bytes received (padding included)
    ended: bool = False  # END_STREAM received
    rst: int | None = None  # RST_STREAM error code received

    @property
    def closed(self) -> bool:
        return self.ended or self.rst is not None

    def header(self, name: str, block: int = 0) -> list[str]:
        if len(self.blocks) <= block:
            return []
        return [v for k, v in self.blocks[block] if k == name]


class H2Conn:
    """Client side of one h2c connection. `auto_window=False` never sends WINDOW_UPDATE (the
    server's DATA stays limited by the 65535-byte initial windows). SETTINGS and PING are ACKed."""

    def __init__(self, srv=None, settings: dict | None = None, auto_window: bool = True,
                 timeout: float = IO_TIMEOUT, sock=None, preface: bool = True):
        self.sock = sock if sock is not None else connect(srv, timeout)
        self.timeout = timeout
        self.decoder = hpack.Decoder()
        self.buf = b""
        self.streams: dict[int, H2Stream] = {}
        self.next_id = 1
        self.conn_window = 65535
        self.initial_window = 65535
        self.max_frame = 16384
        self.max_streams = 100
        self.goaway: tuple[int, int, bytes] | None = None
        self.ended = ""
        self.auto_window = auto_window
        self.pending: tuple[int, int, bytearray] | None = None
        self.log: list[str] = []
        self.conn_flow_bytes = 0
        if preface:
            payload = b"".join(struct.pack(">HI", k, v) for k, v in (settings or {}).items())
            self.sock.sendall(PREFACE + frame(SETTINGS, 0, 0, payload))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def describe(self, sid: int | None = None) -> str:
        parts = []
        if sid is not None and sid in self.streams:
            st = self.streams[sid]
            parts.append(f"stream {sid}: header blocks={st.blocks} data={bytes(st.data[:200])!r} "
                         f"({len(st.data)} B) ended={st.ended} rst={H2_ERRORS.get(st.rst, st.rst)}")
        if self.goaway:
            parts.append(f"GOAWAY(last_stream={self.goaway[0]}, {H2_ERRORS.get(self.goaway[1], self.goaway[1])}, "
                         f"debug={self.goaway[2][:80]!r})")
        if self.ended:
            parts.append(f"connection {self.ended}")
        parts.append(f"last frames: {self.log[-12:]}")
        return "; ".join(parts)

    def stream(self, sid: int) -> H2Stream:
        st = self.streams.get(sid)
        if st is None:
            st = self.streams[sid] = H2Stream(sid, self.initial_window)
        return st

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _handle(self, f: H2Frame) -> None:
        self.log.append(repr(f))
        if len(self.log) > 200:
            del self.log[:100]
        t, p = f.type, f.payload
        if t == DATA:
            st = self.stream(f.stream)
            body = p
            if f.flags & PADDED and p:
                body = p[1:len(p) - p[0]]
            st.data += body
            st.flow_bytes += len(p)
            self.conn_flow_bytes += len(p)
            if f.flags & END_STREAM:
                st.ended = True
            if self.auto_window and p:
                self.send(frame(WINDOW_UPDATE, 0, 0, len(p).to_bytes(4, "big")))
                if not st.closed:
                    self.send(frame(WINDOW_UPDATE, 0, f.stream, len(p).to_bytes(4, "big")))
        elif t in (HEADERS, CONTINUATION):
            if t == HEADERS:
                if f.flags & PADDED and p:
                    p = p[1:len(p) - p[0]]
                if f.flags & PRIORITY_FLAG:
                    p = p[5:]
                self.pending = (f.stream, f.flags, bytearray(p))
            elif self.pending is None or self.pending[0] != f.stream:
                self.log.append("CONTINUATION without HEADERS from the server")
                return
            else:
                self.pending[2].extend(p)
            if f.flags & END_HEADERS:
                sid, flags, block = self.pending
                self.pending = None
                st = self.stream(sid)
                try:
                    hs = [(k.decode("latin-1"), v.decode("latin-1"))
                          for k, v in self.decoder.decode(bytes(block), raw=True)]
                except Exception as e:  # noqa: BLE001
                    hs = [("<hpack error>", repr(e))]
                st.blocks.append(hs)
                if flags & END_STREAM:
                    st.ended = True
        elif t == RST_STREAM and len(p) == 4:
            self.stream(f.stream).rst = int.from_bytes(p, "big")
        elif t == SETTINGS and not f.flags & ACK:
            for i in range(0, len(p) - len(p) % 6, 6):
                k, v = struct.unpack(">HI", p[i:i + 6])
                if k == 4:
                    delta = v - self.initial_window
                    self.initial_window = v
                    for st in self.streams.values():
                        st.send_window += delta
                elif k == 5:
                    self.max_frame = v
                elif k == 3:
                    self.max_streams = v
            self.send(frame(SETTINGS, ACK, 0))
        elif t == PING and not f.flags & ACK:
            self.send(frame(PING, ACK, 0, p))
        elif t == GOAWAY and len(p) >= 8:
            last, code = struct.unpack(">II", p[:8])
            self.goaway = (last & 0x7FFFFFFF, code, p[8:])
        elif t == WINDOW_UPDATE and len(p) == 4:
            inc = int.from_bytes(p, "big") & 0x7FFFFFFF
            if f.stream == 0:
                self.conn_window += inc
            else:
                self.stream(f.stream).send_window += inc

    def pump(self, timeout: float, until=None) -> bool:
        """Reads and handles frames until `until()` is true (-> True), EOF or the timeout (-> False).
        timeout 0: handle whatever is already readable, without waiting."""
        deadline = time.monotonic() + timeout
        while True:
            while len(self.buf) >= 9:
                n = int.from_bytes(self.buf[:3], "big")
                if len(self.buf) < 9 + n:
                    break
                f = H2Frame(self.buf[3], self.buf[4], int.from_bytes(self.buf[5:9], "big") & 0x7FFFFFFF,
                            self.buf[9:9 + n])
                self.buf = self.buf[9 + n:]
                try:
                    self._handle(f)
                except OSError:
                    self.ended = self.ended or "reset"
                if until is not None and until():
                    return True
            if until is not None and until():
                return True
            if self.ended:
                return False
            left = deadline - time.monotonic()
            if left <= 0:
                if not select.select([self.sock], [], [], 0)[0]:
                    return False
                left = 0.001  # readable now: take it, then stop
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(262144)
            except socket.timeout:
                return False
            except OSError:
                self.ended = "reset"
                continue
            if not data:
                self.ended = "eof"
                continue
            self.buf += data

    def open(self, path: str, headers=(), end_stream: bool = False, scheme: str = "http") -> int:
        sid = self.next_id
        self.next_id += 2
        self.stream(sid)
        self.send(frame(HEADERS, END_HEADERS | (END_STREAM if end_stream else 0), sid,
                        request_block(path, headers, scheme)))
        return sid

    def send_data(self, sid: int, data: bytes, end_stream: bool = False, wait: float | None = None) -> int:
        """DATA frames within the peer's flow-control windows; waits up to `wait` s for WINDOW_UPDATEs.
        Returns how many bytes were sent (less than len(data) if the windows stayed closed)."""
        st = self.stream(sid)
        deadline = time.monotonic() + (self.timeout if wait is None else wait)
        sent = 0
        frames = 0
        while sent < len(data):
            n = min(len(data) - sent, self.max_frame, self.conn_window, st.send_window)
            if n <= 0 or st.closed:
                if st.closed:
                    break
                left = deadline - time.monotonic()
                if left <= 0 or not self.pump(left, lambda: (self.conn_window > 0 and st.send_window > 0)
                                              or st.closed):
                    break
                continue
            last = end_stream and sent + n == len(data)
            self.send(frame(DATA, END_STREAM if last else 0, sid, data[sent:sent + n]))
            sent += n
            self.conn_window -= n
            st.send_window -= n
            frames += 1
            if frames % 8 == 0:
                self.pump(0)
        if end_stream and not data:
            self.send(frame(DATA, END_STREAM, sid))
        return sent

    def rst(self, sid: int, code: int = CANCEL) -> None:
        self.send(frame(RST_STREAM, 0, sid, code.to_bytes(4, "big")))

    def wait(self, sid: int, timeout: float | None = None) -> H2Stream:
        st = self.stream(sid)
        self.pump(self.timeout if timeout is None else timeout, lambda: st.closed)
        return st


def request_block(path: str, headers=(), scheme: str = "http") -> bytes:
    hs = [(":method", "POST"), (":scheme", scheme), (":path", path), (":authority", "127.0.0.1"), *headers]
    return b"".join(hpack_literal(k, v) for k, v in hs)


def grpc_headers(extra=(), content_type: str = "application/grpc") -> list[tuple[str, str]]:
    return [("content-type", content_type), ("te", "trailers"), *extra]


STATUS_RE = re.compile(r"(0|[1-9][0-9]*)")


def check_status_value(values: list[str], where: str, what: str) -> int:
    assert len(values) == 1, f"{what}: expected exactly one grpc-status in {where}, got {values}"
    v = values[0].strip()
    assert STATUS_RE.fullmatch(v) and int(v) <= 16, (
        f"{what}: grpc-status {v!r} in {where} is not a decimal code 0..16 without leading zeros (G-7)")
    return int(v)


def check_grpc_message(values: list[str], what: str) -> str:
    assert len(values) <= 1, f"{what}: grpc-message sent {len(values)} times: {values}"
    if not values:
        return ""
    raw = values[0]
    assert all(0x20 <= ord(c) <= 0x7E for c in raw), f"{what}: grpc-message not percent-encoded (G-9): {raw!r}"
    try:
        return re.sub(rb"%([0-9A-Fa-f]{2})", lambda m: bytes([int(m.group(1), 16)]), raw.encode()).decode(
            errors="replace")
    except Exception:  # noqa: BLE001
        return raw


def grpc_status(c: H2Conn, st: H2Stream, what: str) -> tuple[int, str]:
    """The gRPC status of a finished h2 stream, with every G-7/G-8/G-12 rule on where it must be."""
    ctx = f"\n  {c.describe(st.id)}"
    assert st.closed, f"{what}: no complete answer within {c.timeout:.0f} s{ctx}"
    assert st.ended, f"{what}: stream reset with {H2_ERRORS.get(st.rst, st.rst)} instead of a gRPC status{ctx}"
    assert st.blocks, f"{what}: END_STREAM without any HEADERS{ctx}"
    head = st.blocks[0]
    statuses = [v for k, v in head if k == ":status"]
    assert statuses == ["200"], f"{what}: :status {statuses}, expected 200 for a gRPC answer{ctx}"
    ctype = (st.header("content-type") or [""])[0]
    assert ctype.startswith("application/grpc"), f"{what}: content-type {ctype!r} is not application/grpc...{ctx}"
    if len(st.blocks) == 1:  # trailers-only
        assert not st.data, f"{what}: DATA sent but no trailers HEADERS (grpc-status must be in trailers){ctx}"
        code = check_status_value(st.header("grpc-status"), "the trailers-only HEADERS", what + ctx)
        msg = check_grpc_message(st.header("grpc-message"), what + ctx)
        return code, msg
    assert len(st.blocks) == 2, f"{what}: {len(st.blocks)} header blocks on one response{ctx}"
    assert not st.header("grpc-status", 0), (
        f"{what}: grpc-status in the response headers AND a trailers block (sent twice, G-7){ctx}")
    code = check_status_value(st.header("grpc-status", 1), "the trailers", what + ctx)
    msg = check_grpc_message(st.header("grpc-message", 1), what + ctx)
    msgs, rest = envelopes(bytes(st.data))
    assert not rest, f"{what}: {len(rest)} bytes of a partial envelope before the trailers{ctx}"
    assert all(fl in (0, 1) for fl, _ in msgs), f"{what}: response envelope flags {[fl for fl, _ in msgs]}{ctx}"
    return code, msg


def grpc_expect(c: H2Conn, what: str, chunks: list[bytes], expect: set[int], extra=(), path: str = PUT,
                end_stream: bool = True, content_type: str = "application/grpc") -> tuple[H2Stream, int, str]:
    """One gRPC call on `c`: HEADERS, one DATA frame per chunk (END_STREAM on the last one, or on
    the HEADERS when there is no chunk), then the status must be in `expect`."""
    sid = c.open(path, grpc_headers(extra, content_type), end_stream=end_stream and not chunks)
    for i, chunk in enumerate(chunks):
        c.send_data(sid, chunk, end_stream=end_stream and i == len(chunks) - 1)
    st = c.wait(sid)
    code, msg = grpc_status(c, st, what)
    if code == UNIMPLEMENTED and UNIMPLEMENTED not in expect and path in (LIST, PUTMANY, WATCH):
        pytest.fail(f"{what}: grpc-status 12 UNIMPLEMENTED ({msg!r}) {STREAMING_NOTE}", pytrace=False)
    assert code in expect, (f"{what}: grpc-status {code} {CODE_NAMES[code]} (message {msg!r}), expected "
                            f"{codes(expect)}\n  {c.describe(sid)}")
    return st, code, msg


def assert_conn_usable(c: H2Conn, what: str) -> None:
    """After a bad stream: a normal gRPC Get on the same connection still works (stream error only)."""
    what = f"{what}: follow-up Get on the SAME connection"
    assert c.goaway is None, f"{what}: the server sent GOAWAY after a stream-level error; {c.describe()}"
    st, code, msg = grpc_expect(c, what, [env(key_req(f"absent-{uid()}"))], {0}, path=GET)
    msgs, _ = envelopes(bytes(st.data))
    assert len(msgs) == 1, f"{what}: {len(msgs)} response messages, expected 1; {c.describe(st.id)}"


def grpc_put_ok(c: H2Conn, key: str, value: bytes, what: str) -> None:
    grpc_expect(c, f"{what}: Put {key}", [env(put_req(key, value))], {0})


def grpc_get(c: H2Conn, key: str, what: str) -> bytes | None:
    st, _, _ = grpc_expect(c, f"{what}: Get {key}", [env(key_req(key))], {0}, path=GET)
    msgs, _ = envelopes(bytes(st.data))
    assert len(msgs) == 1, f"{what}: Get {key}: {len(msgs)} messages; {c.describe(st.id)}"
    fields = pb_decode(msgs[0][1])
    return fields.get(1, [b""])[0] if fields.get(2, [0])[0] else None


# ------------------------------------------------------------------------------------------------
# gRPC-Web and Connect streaming over HTTP/1.1
# ------------------------------------------------------------------------------------------------


def h1_post(path: str, body: bytes, content_type: str, headers: dict | None = None,
            content_length: int | None = None) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", f"Content-Type: {content_type}",
             f"Content-Length: {len(body) if content_length is None else content_length}"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def grpcweb_status(r, what: str) -> tuple[int, str, dict]:
    """Status of a gRPC-Web response: trailers-only headers (empty body) or exactly one trailer
    frame (0x80) at the end of the body, CRLF-terminated lowercase lines (GW-1, GW-2)."""
    assert r.status is not None, f"{what}: no HTTP response: {r}"
    assert r.status == 200, f"{what}: HTTP {r.status}, expected 200 with a grpc-status: {r}"
    ctype = r.header("content-type") or ""
    assert ctype.startswith("application/grpc-web"), f"{what}: content-type {ctype!r}: {r}"
    if not r.body:
        code = check_status_value(r.headers.get("grpc-status", []), "the trailers-only headers", f"{what}: {r}")
        msg = check_grpc_message(r.headers.get("grpc-message", []), f"{what}: {r}")
        return code, msg, {k: v for k, v in r.headers.items()}
    msgs, rest = envelopes(r.body)
    assert not rest, f"{what}: {len(rest)} bytes after the last complete envelope: {r}"
    assert msgs and msgs[-1][0] & 0x80, f"{what}: the body does not end with a trailer frame (0x80): {r}"
    assert all(not fl & 0x80 for fl, _ in msgs[:-1]), f"{what}: more than one trailer frame: {r}"
    assert msgs[-1][0] == 0x80, f"{what}: trailer frame flags {msgs[-1][0]:#x} (compressed trailers?): {r}"
    block = msgs[-1][1]
    assert block.endswith(b"\r\n"), f"{what}: trailer block does not end with CRLF (GW-1): {block!r}"
    trailers: dict[str, list[str]] = {}
    for line in block[:-2].split(b"\r\n"):
        k, sep, v = line.decode("latin-1").partition(":")
        assert sep and k and k == k.strip().lower(), f"{what}: bad trailer line {line!r} (GW-1) in {block!r}"
        trailers.setdefault(k, []).append(v.strip())
    code = check_status_value(trailers.get("grpc-status", []), "the trailer frame", f"{what}: {block!r}")
    msg = check_grpc_message(trailers.get("grpc-message", []), f"{what}: {block!r}")
    return code, msg, trailers


def grpcweb_expect(srv, what: str, body: bytes, expect: set[int], headers: dict | None = None, path: str = PUT,
                   content_length: int | None = None, timeout: float = IO_TIMEOUT):
    with connect(srv) as s:
        s.sendall(h1_post(path, body, "application/grpc-web+proto", {"X-Grpc-Web": "1", **(headers or {})},
                          content_length))
        r = read_response(s, timeout)
    code, msg, trailers = grpcweb_status(r, what)
    assert code in expect, f"{what}: grpc-status {code} {CODE_NAMES[code]} ({msg!r}), expected {codes(expect)}: {r}"
    return r, code, msg, trailers


def connect_end_stream(r, what: str) -> dict:
    """The EndStreamResponse JSON of a Connect streaming response (CS-5, CS-7: HTTP 200)."""
    assert r.status is not None, f"{what}: no HTTP response: {r}"
    assert r.status == 200, f"{what}: HTTP {r.status}; a Connect streaming error is HTTP 200 + EndStream (CS-7): {r}"
    ctype = r.header("content-type") or ""
    assert ctype.startswith("application/connect+"), f"{what}: content-type {ctype!r}: {r}"
    msgs, rest = envelopes(r.body)
    assert not rest and msgs, f"{what}: body is not a sequence of envelopes: {r}"
    flags, payload = msgs[-1]
    assert flags == 0x02, f"{what}: last envelope flags {flags:#x}, expected an EndStreamResponse (0x02): {r}"
    try:
        end = json.loads(payload)
    except ValueError:
        pytest.fail(f"{what}: EndStreamResponse is not JSON: {payload!r}", pytrace=False)
    return end


def connect_stream_expect(srv, what: str, path: str, body: bytes, expect: set[str], content_length: int | None = None,
                          headers: dict | None = None) -> dict:
    with connect(srv) as s:
        s.sendall(h1_post(path, body, "application/connect+proto", {"Connect-Protocol-Version": "1", **(headers or {})},
                          content_length))
        r = read_response(s)
    if r.status == 404:
        pytest.fail(f"{what}: HTTP 404 {STREAMING_NOTE}: {r}", pytrace=False)
    end = connect_end_stream(r, what)
    code = (end.get("error") or {}).get("code")
    assert code in expect, f"{what}: EndStream error code {code!r}, expected {' or '.join(sorted(expect))}: {end}"
    return end


# ------------------------------------------------------------------------------------------------
# Cases
# ------------------------------------------------------------------------------------------------

CASES: dict[str, object] = {}
TLS_CASES: dict[str, tuple[str, object]] = {}


def case(fn):
    CASES[fn.__name__] = fn
    return fn


def tls_case(mode: str):
    def deco(fn):
        TLS_CASES[fn.__name__] = (mode, fn)
        return fn
    return deco


def good_put(tag: str = "p") -> bytes:
    return env(put_req(f"{tag}-{uid()}", b"v"))


# --- gRPC over h2c, unary Put ------------------------------------------------------------------


@case
def grpc_valid_put_ok(srv):
    """Sanity of the hand-made gRPC frames: a good Put -> one message, grpc-status 0 in trailers;
    an envelope split byte by byte over DATA frames is fine too (GEN-4)."""
    with H2Conn(srv) as c:
        st, _, _ = grpc_expect(c, "valid gRPC Put", [good_put()], {0})
        msgs, _ = envelopes(bytes(st.data))
        assert len(st.blocks) == 2 and len(msgs) == 1, (
            f"valid Put: expected headers, 1 message, trailers; {c.describe(st.id)}")
        msg = good_put("split")
        grpc_expect(c, "Put with its envelope split over one-byte DATA frames", [msg[i:i + 1] for i in range(len(msg))],
                    {0})
        assert_conn_usable(c, "valid Put")


@case
def grpc_short_envelope(srv):
    """GEN-8: EOF inside the 5-byte prefix, inside the payload, or after a full message."""
    with H2Conn(srv) as c:
        grpc_expect(c, "gRPC Put with a 3-byte envelope then END_STREAM", [b"\x00\x00\x00"], DECODE_ERRORS)
        grpc_expect(c, "gRPC Put with a prefix promising 10 bytes, 3 sent, END_STREAM",
                    [env(b"\x0a\x01k", length=10)], DECODE_ERRORS)
        grpc_expect(c, "gRPC Put: a full message then 2 bytes of a next prefix, END_STREAM",
                    [good_put() + b"\x00\x00"], DECODE_ERRORS)
        assert_conn_usable(c, "short envelope")


@case
def grpc_oversized_length_prefix(srv):
    """CMP-6: a prefix declaring > 4 MiB -> resource_exhausted before the payload is read: only the
    5-byte prefix is sent (no END_STREAM), the answer must arrive anyway."""
    with H2Conn(srv) as c:
        for n in (MAX + 1, 0xFFFFFFFF):
            what = f"gRPC Put with only a 5-byte prefix declaring {n} bytes (max {MAX}), no END_STREAM"
            sid = c.open(PUT, grpc_headers())
            c.send_data(sid, env(b"", length=n))
            st = c.wait(sid, 3)
            if not st.closed:  # diagnose: does the answer come once the request ends?
                c.send_data(sid, b"", end_stream=True)
                c.wait(sid, 2)
                after = (f"grpc-status {st.header('grpc-status') or st.header('grpc-status', 1)} only after END_STREAM"
                         if st.closed else "still nothing after END_STREAM")
                pytest.fail(f"{what}: no answer within 3 s ({after}): the prefix is not checked "
                            f"before the payload is buffered (CMP-6)\n  {c.describe(sid)}", pytrace=False)
            code, msg = grpc_status(c, st, what)
            assert code == RESOURCE_EXHAUSTED, f"{what}: grpc-status {code} ({msg!r}), expected 8 RESOURCE_EXHAUSTED"
        assert_conn_usable(c, "oversized length prefix")


@case
def grpc_compressed_flag_without_encoding(srv):
    """GEN-7 / CMP-3: flag 0x01 with no grpc-encoding, or grpc-encoding identity -> internal."""
    payload = gzip.compress(put_req(f"c-{uid()}", b"v"))
    with H2Conn(srv) as c:
        grpc_expect(c, "gRPC Put, flag 0x01, no grpc-encoding", [env(payload, 0x01)], {INTERNAL})
        grpc_expect(c, "gRPC Put, flag 0x01, grpc-encoding: identity", [env(payload, 0x01)], {INTERNAL},
                    extra=[("grpc-encoding", "identity")])
        assert_conn_usable(c, "compressed flag without encoding")


@case
def grpc_reserved_flags(srv):
    """§1.2: the gRPC request flag byte is only 0 or 1 -> internal for 0x02, 0x80, 0x40."""
    with H2Conn(srv) as c:
        for fl in (0x02, 0x80, 0x40):
            grpc_expect(c, f"gRPC Put with envelope flags {fl:#04x}", [env(put_req(f"r-{uid()}", b"v"), fl)],
                        {INTERNAL})
        assert_conn_usable(c, "reserved flags")


@case
def grpc_unary_cardinality(srv):
    """G-4: a unary method with two request messages, or none -> unimplemented."""
    with H2Conn(srv) as c:
        grpc_expect(c, "gRPC Put with two messages", [good_put() + good_put()], {UNIMPLEMENTED})
        grpc_expect(c, "gRPC Put with two messages in two DATA frames", [good_put(), good_put()], {UNIMPLEMENTED})
        grpc_expect(c, "gRPC Put with zero messages (END_STREAM on HEADERS)", [], {UNIMPLEMENTED})
        grpc_expect(c, "gRPC Put with zero messages (empty DATA with END_STREAM)", [b""], {UNIMPLEMENTED})
        assert_conn_usable(c, "unary cardinality")


@case
def grpc_unknown_encoding(srv):
    """CMP-1: grpc-encoding snappy (unsupported) -> unimplemented, with grpc-accept-encoding in the
    response (headers or trailers) that does not list snappy."""
    with H2Conn(srv) as c:
        for fl in (0x01, 0x00):
            st, _, _ = grpc_expect(c, f"gRPC Put with grpc-encoding: snappy, flag {fl}",
                                   [env(put_req(f"s-{uid()}", b"v"), fl)], {UNIMPLEMENTED},
                                   extra=[("grpc-encoding", "snappy")])
            accept = [v for b in st.blocks for k, v in b if k == "grpc-accept-encoding"]
            assert accept, f"grpc-encoding snappy: no grpc-accept-encoding in the response (CMP-1); {c.describe(st.id)}"
            names = {n.strip().lower() for a in accept for n in a.split(",")}
            assert "snappy" not in names, f"grpc-accept-encoding lists the unsupported snappy: {accept}"
        assert_conn_usable(c, "unknown encoding")


@case
def grpc_bad_timeout(srv):
    """G-15: a malformed grpc-timeout -> invalid_argument; a good one ('1S') is accepted."""
    with H2Conn(srv) as c:
        for value in ("abc", "5X", "123456789m", "-1m", "1.5S", "S"):
            grpc_expect(c, f"gRPC Put with grpc-timeout: {value}", [good_put()], {INVALID_ARGUMENT},
                        extra=[("grpc-timeout", value)])
        grpc_expect(c, "gRPC Put with grpc-timeout: 1S (valid)", [good_put()], {0}, extra=[("grpc-timeout", "1S")])
        assert_conn_usable(c, "bad grpc-timeout")


@case
def grpc_bad_compressed_payload(srv):
    """A gzip-declared message that is not gzip -> internal (or invalid_argument, §16 item 1); a gzip
    bomb (16 MiB of zeros in ~16 KiB) -> resource_exhausted (CMP-6: the limit is on the decompressed
    size); flag 0x01 with zero length is an empty message, not a decompression (GEN-5) -> the
    handler's own 'key must not be empty'."""
    enc = [("grpc-encoding", "gzip")]
    with H2Conn(srv) as c:
        grpc_expect(c, "gRPC Put, grpc-encoding gzip, flag 0x01, payload not gzip",
                    [env(b"this is not gzip at all", 0x01)], DECODE_ERRORS, extra=enc)
        bomb = gzip.compress(b"\x00" * (16 * 1024 * 1024), compresslevel=9)
        grpc_expect(c, f"gRPC Put, gzip bomb ({len(bomb)} B -> 16 MiB)", [env(bomb, 0x01)], {RESOURCE_EXHAUSTED},
                    extra=enc)
        _, _, msg = grpc_expect(c, "gRPC Put, grpc-encoding gzip, flag 0x01, zero-length message",
                                [env(b"", 0x01)], {INVALID_ARGUMENT}, extra=enc)
        assert "key must not be empty" in msg, f"zero-length compressed Put: message {msg!r}"
        grpc_expect(c, "gRPC Put with an undecodable proto payload", [env(b"\xff\xff\xff\xff")], {INVALID_ARGUMENT})
        assert_conn_usable(c, "bad compressed payload")


@case
def grpc_invalid_request_trailers(srv):
    """RFC 9113 §8.2.1/§8.1.1: request trailers with an uppercase name, a connection-specific field or
    a pseudo-header (and a connection-specific request header) make the request malformed: a stream
    error PROTOCOL_ERROR (RST_STREAM) on that stream only; no GOAWAY, the connection keeps serving."""
    variants = [("X-Upper-Trailer", "v"), ("connection", "close"), ("keep-alive", "timeout=5"), (":path", "/x")]
    with H2Conn(srv) as c:
        for name, value in variants:
            what = f"gRPC Put whose request trailers carry {name!r}"
            sid = c.next_id
            c.next_id += 2
            st = c.stream(sid)
            c.send(frame(HEADERS, END_HEADERS, sid, request_block(PUT, grpc_headers()))
                   + frame(DATA, 0, sid, good_put())
                   + frame(HEADERS, END_HEADERS | END_STREAM, sid,
                           hpack_literal("x-ok", "1") + hpack_literal(name, value)))
            c.wait(sid)
            assert st.rst == PROTOCOL_ERROR and not st.ended, (
                f"{what}: expected a stream error RST_STREAM(PROTOCOL_ERROR) on stream {sid} (malformed request, "
                f"RFC 9113 §8.1.1) and no complete response; {c.describe(sid)}")
        what = "gRPC Put with a 'transfer-encoding: chunked' request header"
        sid = c.open(PUT, grpc_headers([("transfer-encoding", "chunked")]))
        c.send_data(sid, good_put(), end_stream=True)
        st = c.wait(sid)
        assert st.rst == PROTOCOL_ERROR, f"{what}: expected RST_STREAM(PROTOCOL_ERROR); {c.describe(sid)}"
        assert_conn_usable(c, "invalid request trailers")


@case
def grpc_status_always_valid(srv):
    """Every answer of a mixed bag (OK, handler error, unknown method, bad input) carries exactly one
    valid grpc-status where it belongs (checked by grpc_status for every call of this file)."""
    with H2Conn(srv) as c:
        grpc_expect(c, "gRPC Get (OK)", [env(key_req("absent"))], {0}, path=GET)
        _, _, msg = grpc_expect(c, "gRPC Get with an empty key", [env(b"")], {INVALID_ARGUMENT}, path=GET)
        assert msg == "key must not be empty", f"gRPC Get with an empty key: message {msg!r}"
        sid = c.open(PROCEDURE.replace("KVService", "NoSuchService") + "Get", grpc_headers())
        c.send_data(sid, env(b""), end_stream=True)
        st = c.wait(sid)
        if st.header(":status") != ["404"]:  # GEN-2: HTTP 404 or grpc-status 12
            code, msg = grpc_status(c, st, "gRPC call of an unknown method")
            assert code == UNIMPLEMENTED, f"gRPC call of an unknown method: grpc-status {code} {msg!r}, expected 12"
        grpc_expect(c, "gRPC Put with application/grpc+proto", [good_put()], {0}, content_type="application/grpc+proto")
        assert_conn_usable(c, "status checks")


# --- gRPC-Web over HTTP/1.1, unary Put --------------------------------------------------------


@case
def grpcweb_valid_put_ok(srv):
    r, _, _, _ = grpcweb_expect(srv, "valid gRPC-Web Put", good_put(), {0})
    msgs, _ = envelopes(r.body)
    assert len(msgs) == 2 and msgs[0][0] == 0, f"valid gRPC-Web Put: expected one message + trailer frame: {r}"


@case
def grpcweb_short_envelope(srv):
    grpcweb_expect(srv, "gRPC-Web Put with a 3-byte body", b"\x00\x00\x00", DECODE_ERRORS)
    grpcweb_expect(srv, "gRPC-Web Put with a prefix promising 10 bytes, 3 sent", env(b"\x0a\x01k", length=10),
                   DECODE_ERRORS)


@case
def grpcweb_oversized_length_prefix(srv):
    """Content-Length covers the declared message, only the prefix is sent: the answer must come."""
    for n in (MAX + 1, 0xFFFFFFFF):
        grpcweb_expect(srv, f"gRPC-Web Put with Content-Length {5 + n} and only a 5-byte prefix declaring {n} "
                       f"bytes (CMP-6: answer before the payload)", env(b"", length=n), {RESOURCE_EXHAUSTED},
                       content_length=5 + n, timeout=3)


@case
def grpcweb_compressed_flag_without_encoding(srv):
    payload = gzip.compress(put_req(f"c-{uid()}", b"v"))
    grpcweb_expect(srv, "gRPC-Web Put, flag 0x01, no grpc-encoding", env(payload, 0x01), {INTERNAL})


@case
def grpcweb_reserved_flags(srv):
    for fl in (0x02, 0x80):
        grpcweb_expect(srv, f"gRPC-Web Put with request envelope flags {fl:#04x}", env(put_req(f"r-{uid()}", b"v"), fl),
                       {INTERNAL})


@case
def grpcweb_unary_cardinality(srv):
    grpcweb_expect(srv, "gRPC-Web Put with two messages", good_put() + good_put(), {UNIMPLEMENTED})
    grpcweb_expect(srv, "gRPC-Web Put with an empty body (zero messages)", b"", {UNIMPLEMENTED})


@case
def grpcweb_unknown_encoding(srv):
    r, _, _, trailers = grpcweb_expect(srv, "gRPC-Web Put with grpc-encoding: snappy",
                                       env(put_req(f"s-{uid()}", b"v"), 0x01), {UNIMPLEMENTED},
                                       headers={"grpc-encoding": "snappy"})
    accept = r.headers.get("grpc-accept-encoding", []) + trailers.get("grpc-accept-encoding", [])
    assert accept, f"gRPC-Web grpc-encoding snappy: no grpc-accept-encoding in headers or trailers (CMP-1): {r}"
    assert "snappy" not in ",".join(accept).lower(), f"grpc-accept-encoding lists snappy: {accept}"


@case
def grpcweb_bad_timeout(srv):
    grpcweb_expect(srv, "gRPC-Web Put with grpc-timeout: abc", good_put(), {INVALID_ARGUMENT},
                   headers={"grpc-timeout": "abc"})


# --- Connect streaming content types and envelopes --------------------------------------------


@case
def connect_streaming_type_on_unary(srv):
    """§3.4/§10: application/connect+proto on the unary Put -> HTTP 415 (h1 and h2c)."""
    with connect(srv) as s:
        s.sendall(h1_post(PUT, env(put_req(f"k-{uid()}", b"v")), "application/connect+proto"))
        r = read_response(s)
    assert r.status == 415, f"application/connect+proto on unary Put over HTTP/1.1: expected 415, got {r}"
    with H2Conn(srv) as c:
        sid = c.open(PUT, [("content-type", "application/connect+proto")])
        c.send_data(sid, env(put_req(f"k-{uid()}", b"v")), end_stream=True)
        st = c.wait(sid)
        assert st.header(":status") == ["415"], (
            f"application/connect+proto on unary Put over h2c: expected :status 415; {c.describe(sid)}")


@case
def connect_unary_type_on_streaming(srv):
    """CS-1: application/proto (unary) on the server-streaming List -> 415."""
    with connect(srv) as s:
        s.sendall(h1_post(LIST, key_req("x"), "application/proto"))
        r = read_response(s)
    if r.status == 404:
        pytest.fail(f"application/proto on List: HTTP 404 {STREAMING_NOTE}: {r}", pytrace=False)
    assert r.status == 415, f"application/proto on the streaming List: expected 415 (CS-1), got {r}"


@case
def connect_stream_bad_envelopes(srv):
    """Connect streaming requests on PutMany/List: flag 0x02 or 0x80 in a request -> internal (CS-3);
    a truncated envelope -> invalid_argument/internal (GEN-8); a prefix over 4 MiB with only the
    prefix sent -> resource_exhausted (CMP-6); all as HTTP 200 + EndStreamResponse (CS-7)."""
    for fl in (0x02, 0x80):
        connect_stream_expect(srv, f"Connect PutMany with request flags {fl:#04x}", PUTMANY,
                              env(put_req(f"f-{uid()}", b"v"), fl), {"internal"})
    connect_stream_expect(srv, "Connect PutMany with a truncated envelope", PUTMANY,
                          good_put() + env(b"\x0a\x01k", length=10), {"invalid_argument", "internal"})
    connect_stream_expect(srv, "Connect PutMany with only a prefix declaring 4 MiB + 1", PUTMANY,
                          env(b"", length=MAX + 1), {"resource_exhausted"}, content_length=5 + MAX + 1)


@case
def connect_stream_list_cardinality(srv):
    """CS-4: server-streaming List with zero or two request messages -> unimplemented."""
    connect_stream_expect(srv, "Connect List with zero request messages", LIST, b"", {"unimplemented"})
    connect_stream_expect(srv, "Connect List with two request messages", LIST,
                          env(key_req("a")) + env(key_req("b")), {"unimplemented"})


# --- streaming methods: cardinality, resets, stalls -------------------------------------------


def streaming_status(c: H2Conn, st: H2Stream, what: str) -> None:
    """Fails with the streaming note when the server answered 'unimplemented / unknown procedure'."""
    if st.ended and st.blocks:
        try:
            code, msg = grpc_status(c, st, what)
        except AssertionError:
            return
        if code == UNIMPLEMENTED:
            pytest.fail(f"{what}: grpc-status 12 UNIMPLEMENTED ({msg!r}) {STREAMING_NOTE}", pytrace=False)


@case
def early_response_small_body(srv):
    """An answer given before the request body ended (here: unknown method) waits for a small
    declared body (content-length <= 64 KiB) to arrive, so clients that write headers and body
    separately (curl 7.88 hangs otherwise) see it after their upload; a stream without a declared
    length, or with a large one, is answered at once."""
    nope = PUT.rsplit("/", 1)[0] + "/Nope"
    with H2Conn(srv) as c:
        sid = c.open(nope, grpc_headers([("content-length", "5")]))
        c.pump(0.3, lambda: bool(c.stream(sid).blocks))
        assert not c.stream(sid).blocks, f"answered before the declared 5-byte body arrived\n  {c.describe(sid)}"
        c.send_data(sid, env(b""), end_stream=True)
        st = c.wait(sid)
        code, _ = grpc_status(c, st, "unknown method after its 5-byte body")
        assert code == UNIMPLEMENTED, f"unknown method: grpc-status {code}\n  {c.describe(sid)}"
        for what, extra in (("no content-length", []), ("content-length 1 MiB", [("content-length", str(1 << 20))])):
            sid = c.open(nope, grpc_headers(extra))
            st = c.wait(sid, 5)
            assert st.ended and st.blocks, f"unknown method with {what}, body still open: no answer\n  {c.describe(sid)}"
            code, _ = grpc_status(c, st, f"unknown method with {what}")
            assert code == UNIMPLEMENTED, f"unknown method with {what}: grpc-status {code}"


@case
def stream_list_cardinality(srv):
    """G-4: the server-streaming List with zero or two request messages -> unimplemented (while one
    message with a prefix matching nothing -> OK, zero messages)."""
    with H2Conn(srv) as c:
        st, _, _ = grpc_expect(c, "gRPC List with one request (no match)", [env(key_req(f"none-{uid()}/"))], {0},
                               path=LIST)
        msgs, _ = envelopes(bytes(st.data))
        assert not msgs, f"List of an unused prefix returned {len(msgs)} messages"
        grpc_expect(c, "gRPC List with zero request messages", [b""], {UNIMPLEMENTED}, path=LIST)
        grpc_expect(c, "gRPC List with two request messages", [env(key_req("a")) + env(key_req("b"))],
                    {UNIMPLEMENTED}, path=LIST)
        assert_conn_usable(c, "List cardinality")


@case
def stream_watch_rst_cancel(srv):
    """A Watch over h2c, one request, a live event, then RST_STREAM(CANCEL) mid-stream: the other
    streams of the connection are unaffected, no event is sent on the reset stream for a change made
    after the reset (RFC 9113 §6.4), and a new Watch on the same connection works."""
    prefix = f"wrst-{uid()}/"
    with H2Conn(srv) as c:
        w = c.open(WATCH, grpc_headers())
        c.send_data(w, env(key_req(prefix)))
        grpc_put_ok(c, prefix + "a", b"1", "Watch RST")
        wst = c.stream(w)
        got = c.pump(IO_TIMEOUT, lambda: len(envelopes(bytes(wst.data))[0]) >= 1 or wst.closed)
        streaming_status(c, wst, "gRPC Watch")
        assert got and not wst.closed, (
            f"Watch: no live event for a Put under the watched prefix within 5 s; {c.describe(w)}")
        ev = pb_decode(envelopes(bytes(wst.data))[0][0][1])
        assert ev.get(1) == [(prefix + "a").encode()], f"Watch: first event {ev}, expected key {prefix}a"
        c.rst(w, CANCEL)
        grpc_put_ok(c, prefix + "b", b"2", "after the Watch RST")
        assert grpc_get(c, prefix + "b", "after the Watch RST") == b"2", "Get after the Watch RST: wrong value"
        c.pump(0.3)
        late = [pb_decode(p).get(1) for _, p in envelopes(bytes(wst.data))[0]]
        assert [(prefix + "b").encode()] not in late, (
            f"Watch: the server sent an event for a Put it received AFTER our RST_STREAM on stream {w} "
            f"(frames on a closed stream, RFC 9113 §5.1); events={late}")
        w2 = c.open(WATCH, grpc_headers())
        c.send_data(w2, env(key_req(prefix)), end_stream=True)
        st2 = c.wait(w2)
        code, msg = grpc_status(c, st2, "a second Watch (half-closed) after the RST")
        keys = [pb_decode(p).get(1, [b""])[0] for _, p in envelopes(bytes(st2.data))[0]]
        assert code == 0 and keys == [(prefix + "a").encode(), (prefix + "b").encode()], (
            f"second Watch after the RST: status {code} {msg!r}, replayed keys {keys}, expected a, b")
        assert_conn_usable(c, "Watch RST_STREAM(CANCEL)")


_POPULATED: set[int] = set()
LIST_PREFIX = "liststall/"
LIST_KEYS = 2000


def populate_list_store(srv) -> None:
    """2,000 keys x 1 KiB under LIST_PREFIX (gRPC unary Puts, concurrent streams on one h2c
    connection), once per server process."""
    if srv.proc.pid in _POPULATED:
        return
    value = bytes(range(256)) * 4
    with H2Conn(srv, timeout=15) as c:
        c.pump(0.5, lambda: c.log)  # the server's SETTINGS (MAX_CONCURRENT_STREAMS)
        i = 0
        while i < LIST_KEYS:
            keys = range(i, min(i + min(c.max_streams, 100), LIST_KEYS))
            batch = list(range(c.next_id, c.next_id + 2 * len(keys), 2))
            c.next_id += 2 * len(keys)
            c.send(b"".join(frame(HEADERS, END_HEADERS, c.stream(sid).id, request_block(PUT, grpc_headers()))
                            for sid in batch))
            for sid, k in zip(batch, keys):  # within the flow-control windows
                c.send_data(sid, env(put_req(f"{LIST_PREFIX}{k:05d}", value)), end_stream=True)
            i += len(keys)
            c.pump(15, lambda: all(c.streams[s].closed for s in batch))
            for sid in batch:
                code, msg = grpc_status(c, c.streams[sid], f"populating the store for List (stream {sid})")
                assert code == 0, f"populating the store for List: Put on stream {sid} -> {code} {msg!r}"
    _POPULATED.add(srv.proc.pid)


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError(f"no VmRSS in /proc/{pid}/status")


@case
def stream_list_never_read(srv):
    """List of 2,000 x 1 KiB keys by clients that never open their window (no WINDOW_UPDATE: at most
    65,535 bytes of DATA may arrive, and the stream cannot end) or never read the socket at all (with
    huge windows: only TCP back-pressure), held for 2 s and closed. Meanwhile the server serves
    others, and its VmRSS grows by less than 100 MiB."""
    populate_list_store(srv)
    rss0 = rss_kib(srv.proc.pid)
    hdr = grpc_headers()
    readers: list[tuple[H2Conn, int]] = []
    mutes: list[socket.socket] = []
    try:
        for _ in range(3):
            c = H2Conn(srv, auto_window=False)
            sid = c.open(LIST, hdr)
            c.send_data(sid, env(key_req(LIST_PREFIX)), end_stream=True)
            readers.append((c, sid))
        for _ in range(3):
            s = connect(srv)
            big = 2**31 - 1
            s.sendall(PREFACE + frame(SETTINGS, 0, 0, struct.pack(">HI", 4, big))
                      + frame(WINDOW_UPDATE, 0, 0, (big - 65535).to_bytes(4, "big"))
                      + frame(HEADERS, END_HEADERS, 1, request_block(LIST, hdr))
                      + frame(DATA, END_STREAM, 1, env(key_req(LIST_PREFIX))))
            mutes.append(s)
        t_end = time.monotonic() + 2.0
        for c, sid in readers:
            c.pump(0.3)
            streaming_status(c, c.stream(sid), "gRPC List")
        health(srv, "while 6 List streams are stalled (3 with closed windows, 3 never reading the socket)")
        time.sleep(max(0.0, t_end - time.monotonic()))
        for c, sid in readers:
            c.pump(0.1)
        rss_mid = rss_kib(srv.proc.pid)
        for c, sid in readers:
            st = c.stream(sid)
            streaming_status(c, st, "gRPC List")
            what = f"List of {LIST_KEYS} x 1 KiB, no WINDOW_UPDATE"
            assert st.header(":status") == ["200"], f"{what}: no response headers within 2 s; {c.describe(sid)}"
            assert st.flow_bytes > 0, f"{what}: no DATA within 2 s (the window allows 65535 bytes); {c.describe(sid)}"
            assert st.flow_bytes <= 65535 and c.conn_flow_bytes <= 65535, (
                f"{what}: FLOW-CONTROL VIOLATION, the server sent {st.flow_bytes} bytes on the stream and "
                f"{c.conn_flow_bytes} on the connection with 65535-byte windows and no WINDOW_UPDATE; "
                f"{c.describe(sid)}")
            assert not st.ended, f"{what}: the stream ended within a 65535-byte window; {c.describe(sid)}"
    finally:
        for c, _ in readers:
            c.close()
        for i, s in enumerate(mutes):
            if i % 2:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            s.close()
    time.sleep(0.5)
    srv.assert_alive("after the stalled List clients closed")
    rss1 = rss_kib(srv.proc.pid)
    grow = max(rss_mid, rss1) - rss0
    print(f"[{srv.kind}] List never read: DATA received per closed-window stream "
          f"{[c.stream(sid).flow_bytes for c, sid in readers]} B; VmRSS {rss0} -> {rss_mid} -> {rss1} KiB")
    assert grow < RSS_LIMIT_KIB, (f"List never read: server VmRSS grew by {grow // 1024} MiB (before {rss0} KiB, "
                                  f"during {rss_mid} KiB, after {rss1} KiB); limit 100 MiB")


@case
def stream_putmany_stalled(srv):
    """PutMany over h2c: as many 16 KiB messages as the server's windows take (up to 8 MiB) with no
    END_STREAM, then silence; and a second PutMany whose one envelope declares 4 MiB and stops after
    1 KiB. The server keeps serving others, stores the items that arrived (README: each item is
    visible as soon as it is stored) and does not end either call before the client half-closes."""
    key = f"pmstall-{uid()}"
    msg = env(put_req(key, b"m" * 16384))
    with H2Conn(srv) as c, H2Conn(srv) as c2:
        sid = c.open(PUTMANY, grpc_headers())
        sent = 0
        while sent < 8 * 1024 * 1024:
            n = c.send_data(sid, msg, wait=1.0)
            sent += n
            if n < len(msg):
                break
        sid2 = c2.open(PUTMANY, grpc_headers())
        c2.send_data(sid2, env(b"", length=MAX)[:5] + b"\x0a" * 1024, wait=1.0)
        c.pump(0.2)
        c2.pump(0.2)
        for cc, s_id in ((c, sid), (c2, sid2)):
            st = cc.stream(s_id)
            streaming_status(cc, st, "gRPC PutMany")
            assert not st.closed, (f"PutMany ended before the client half-closed ({sent} bytes sent on the first); "
                                   f"{cc.describe(s_id)}")
        assert sent >= len(msg), f"PutMany: the server's windows took only {sent} bytes (less than one 16 KiB item)"
        print(f"[{srv.kind}] PutMany stall: the server's windows took {sent} bytes before the client stopped")
        health(srv, f"while a PutMany holds {sent} bytes without END_STREAM and another a partial 4 MiB envelope")
        with H2Conn(srv) as c3:
            deadline = time.monotonic() + 2
            while (v := grpc_get(c3, key, "PutMany stall")) is None and time.monotonic() < deadline:
                time.sleep(0.1)
            assert v == b"m" * 16384, f"PutMany stall: {sent} bytes of items sent, but Get {key} -> {v!r:.60}"


# --- TLS ----------------------------------------------------------------------------------------


def client_ctx(files, cert: tuple | None = None, alpn=("http/1.1",)) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(files.ca))
    if cert:
        ctx.load_cert_chain(str(cert[0]), str(cert[1]))
    ctx.set_alpn_protocols(list(alpn))
    return ctx


def tls_conn(srv, ctx) -> http.client.HTTPSConnection:
    return http.client.HTTPSConnection(srv.host, srv.port, timeout=IO_TIMEOUT, context=ctx)


def plaintext_served(srv) -> bool:
    try:
        with connect(srv, timeout=2) as s:
            s.sendall(h1_post(GET, b'{"key":"k"}', "application/json"))
            r = read_response(s, 2)
        return r.status == 200
    except OSError:
        return False


def tls_health(srv, cfg, context: str) -> None:
    """Connect JSON Put + Get over HTTP/1.1 on TLS (client certificate when mTLS), then a Get with
    curl over TLS that must negotiate h2 by ALPN."""
    files = cfg.files
    cert = (files.client_cert, files.client_key) if cfg.mode == "mtls" else None
    key = f"health-{uid()}"
    try:
        conn = tls_conn(srv, client_ctx(files, cert))
        conn.request("POST", PUT, body=json.dumps({"key": key, "value": "aGVhbHRo"}),
                     headers={"content-type": "application/json"})
        r = conn.getresponse()
        b = r.read()
        assert r.status == 200, f"Put -> HTTP {r.status} {b[:300]!r}"
        conn.request("POST", GET, body=json.dumps({"key": key}), headers={"content-type": "application/json"})
        r = conn.getresponse()
        b = r.read()
        assert r.status == 200 and json.loads(b) == {"value": "aGVhbHRo", "found": True}, (
            f"Get -> {r.status} {b[:300]!r}")
        conn.close()
    except Exception as e:  # noqa: BLE001
        hint = ""
        if plaintext_served(srv):
            hint = ("\n  THE SERVER ANSWERS PLAINTEXT HTTP on a port started with --tls-cert/--tls-key: it ignores "
                    "the TLS flags (README: 'With --tls-cert/--tls-key the server speaks TLS only')")
        pytest.fail(f"SERVER NO LONGER ANSWERS over TLS ({cfg.mode}, HTTP/1.1) {context}: {type(e).__name__}: {e}"
                    f"{hint}\n{srv.describe()}", pytrace=False)
    cmd = ["curl", "-sS", "--max-time", str(int(IO_TIMEOUT)), "--http2", "--cacert", str(files.ca),
           "-w", "\n%{http_version}", "-H", "content-type: application/json", "--data-binary",
           json.dumps({"key": key}), f"https://127.0.0.1:{srv.port}{GET}"]
    if cert:
        cmd[1:1] = ["--cert", str(cert[0]), "--key", str(cert[1])]
    r = subprocess.run(cmd, capture_output=True, timeout=IO_TIMEOUT + 5)
    out = r.stdout.decode(errors="replace")
    body, _, version = out.rpartition("\n")
    ok = r.returncode == 0 and version == "2"
    if ok:
        try:
            ok = json.loads(body) == {"value": "aGVhbHRo", "found": True}
        except ValueError:
            ok = False
    if not ok:
        pytest.fail(f"SERVER NO LONGER ANSWERS over TLS ({cfg.mode}) with ALPN h2 {context}: curl rc={r.returncode} "
                    f"http_version={version!r} stdout={out[:300]!r} stderr={r.stderr[:300]!r}\n{srv.describe()}",
                    pytrace=False)


def read_until_close(sock, timeout: float = IO_TIMEOUT) -> tuple[bytes, str]:
    deadline = time.monotonic() + timeout
    data = b""
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return data, "timeout"
        sock.settimeout(left)
        try:
            more = sock.recv(65536)
        except socket.timeout:
            return data, "timeout"
        except (ssl.SSLError, OSError) as e:
            return data, f"error {type(e).__name__}: {e}"
        if not more:
            return data, "eof"
        data += more


def client_hello(files) -> bytes:
    """A real ClientHello (TLS 1.2/1.3, ALPN h2 + http/1.1, SNI-less IP) from Python's ssl."""
    ctx = client_ctx(files, alpn=("h2", "http/1.1"))
    out = ssl.MemoryBIO()
    obj = ctx.wrap_bio(ssl.MemoryBIO(), out, server_hostname="127.0.0.1")
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return out.read()


@tls_case("tls")
def tls_garbage_instead_of_client_hello(srv, cfg, rogue):
    for what, payload in (("64 bytes of garbage", b"\xde\xad\xbe\xef" * 16),
                          ("a handshake record header declaring 65535 bytes (over the 16 KiB record limit)",
                           b"\x16\x03\x01\xff\xff" + b"\x01" * 1000),
                          ("a ClientHello record with a corrupt body", b"\x16\x03\x01\x00\x30" + b"\xff" * 48)):
        with connect(srv) as s:
            s.sendall(payload)
            data, how = read_until_close(s)
            assert how != "timeout", f"TLS port, {what}: connection still open after {IO_TIMEOUT} s; got {data[:80]!r}"
            assert not data or data[0] == 0x15, f"TLS port, {what}: expected nothing or a TLS alert, got {data[:80]!r}"


@tls_case("tls")
def tls_plaintext_http(srv, cfg, rogue):
    """Plaintext HTTP/1.1 (a GET and a Connect POST) and the h2c preface on the TLS port: no request is
    served; the connection closes (an HTTP 400 first is allowed)."""
    for what, payload in (("plaintext GET / HTTP/1.1", b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"),
                          ("a plaintext Connect Put", h1_post(PUT, json.dumps({"key": f"plain-{uid()}"}).encode(),
                                                             "application/json")),
                          ("the h2c preface", PREFACE + frame(SETTINGS, 0, 0))):
        with connect(srv) as s:
            s.sendall(payload)
            data, how = read_until_close(s)
        assert how != "timeout", f"TLS port, {what}: connection still open after {IO_TIMEOUT} s; got {data[:120]!r}"
        if data.startswith(b"HTTP/1."):
            assert data.split(b" ", 2)[1] == b"400", (
                f"TLS port, {what}: a plaintext answer other than 400: {data[:200]!r}")
        else:
            assert not data or data[0] == 0x15, f"TLS port, {what}: unexpected bytes {data[:120]!r}"


@tls_case("tls")
def tls_handshake_slowloris(srv, cfg, rogue):
    """10 clients send a ClientHello and go silent, 10 send 20 bytes of one, 10 connect and send
    nothing: a normal TLS client (h1 and ALPN h2) is served meanwhile."""
    hello = client_hello(cfg.files)
    assert hello and hello[0] == 0x16, f"could not build a ClientHello: {hello[:20]!r}"
    socks = []
    try:
        for i in range(30):
            s = connect(srv)
            if i < 10:
                s.sendall(hello)
            elif i < 20:
                s.sendall(hello[:20])
            socks.append(s)
        time.sleep(0.2)
        t0 = time.monotonic()
        tls_health(srv, cfg, "while 30 TLS handshakes are stalled (full ClientHello, partial, nothing)")
        took = time.monotonic() - t0
        assert took < 4, f"TLS health check took {took:.1f} s while handshakes were stalled"
        sh = [read_until_close(s, 0.01)[0][:1] for s in socks[:10]]
        assert all(b in (b"\x16", b"") for b in sh), f"answers to the stalled ClientHellos: {sh}"
    finally:
        for s in socks:
            s.close()


def mtls_refused(srv, cfg, ctx, who: str, curl_cert: tuple | None = None) -> None:
    """`ctx` must not get an RPC served: HTTP/1.1 Put over TLS, then curl over h2; the key must not
    exist afterwards (checked with the good client certificate)."""
    key = f"mtls-{uid()}"
    body = json.dumps({"key": key, "value": "bm9wZQ=="}).encode()
    served = None
    try:
        with ctx.wrap_socket(connect(srv), server_hostname="127.0.0.1") as s:
            s.sendall(h1_post(PUT, body, "application/json"))
            data, how = read_until_close(s)
            if data.startswith(b"HTTP/"):
                served = data[:200]
    except (ssl.SSLError, OSError):
        pass
    assert served is None, f"mTLS server, client {who}: the request got an HTTP answer: {served!r}"
    cmd = ["curl", "-sS", "--max-time", str(int(IO_TIMEOUT)), "--http2", "--cacert", str(cfg.files.ca),
           "-H", "content-type: application/json", "--data-binary", body.decode(), f"https://127.0.0.1:{srv.port}{PUT}"]
    if curl_cert:
        cmd[1:1] = ["--cert", str(curl_cert[0]), "--key", str(curl_cert[1])]
    r = subprocess.run(cmd, capture_output=True, timeout=IO_TIMEOUT + 5)
    assert r.returncode != 0, f"mTLS server, client {who} (curl h2): the call succeeded: {r.stdout[:200]!r}"
    good = client_ctx(cfg.files, (cfg.files.client_cert, cfg.files.client_key))
    conn = tls_conn(srv, good)
    conn.request("POST", GET, body=json.dumps({"key": key}), headers={"content-type": "application/json"})
    resp = conn.getresponse()
    b = resp.read()
    conn.close()
    assert resp.status == 200 and json.loads(b) == {}, (
        f"mTLS server, client {who}: its Put was SERVED (Get {key} -> {resp.status} {b[:200]!r})")


@tls_case("mtls")
def mtls_no_client_certificate(srv, cfg, rogue):
    mtls_refused(srv, cfg, client_ctx(cfg.files), "without a certificate")


@tls_case("mtls")
def mtls_untrusted_client_certificate(srv, cfg, rogue):
    cert = (rogue.client_cert, rogue.client_key)
    mtls_refused(srv, cfg, client_ctx(cfg.files, cert), "with a certificate from an untrusted CA", cert)


# ------------------------------------------------------------------------------------------------

SERVERS = list(LANGS) + (["cpy-hypercorn"] if os.environ.get("INTEROP_BAD_STREAM_PEERS", "") == "1" else [])


def run_case(srv, name: str, fn, check_health) -> None:
    check_health(f"before case {name}")
    failure = None
    try:
        fn()
    except (AssertionError, pytest.fail.Exception, OSError) as e:
        failure = e
    problems = []
    if not srv.alive():
        problems.append(f"SERVER DIED during case {name}: rc={srv.proc.returncode}\n{srv.describe()}")
    else:
        try:
            check_health(f"after case {name}")
        except pytest.fail.Exception as e:
            problems.append(str(e))
    if problems:
        if failure is not None:
            problems.append(f"(the case itself also failed: {failure})")
        pytest.fail("\n".join(problems), pytrace=False)
    if failure is not None:
        raise failure


@pytest.fixture(scope="module")
def rogue_tls(tmp_path_factory):
    """A second, unrelated CA and client certificate (the servers must not trust it)."""
    return make_tls_files(tmp_path_factory.mktemp("tls-rogue"))


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("server", [pytest.param(s, id=f"server-{s}") for s in SERVERS])
def test_bad_envelope(servers, server, name):
    srv = servers.get(server, "tcp")
    run_case(srv, name, lambda: CASES[name](srv), lambda ctx: health(srv, ctx))


@pytest.mark.parametrize("name", list(TLS_CASES))
@pytest.mark.parametrize("server", [pytest.param(s, id=f"server-{s}") for s in SERVERS])
def test_bad_tls(servers, tls_files, rogue_tls, server, name):
    mode, fn = TLS_CASES[name]
    cfg = tls_config(mode, tls_files)
    srv = servers.get(server, "tcp", cfg)
    run_case(srv, name, lambda: fn(srv, cfg, rogue_tls), lambda ctx: tls_health(srv, cfg, ctx))
