"""curl and nghttp speaking gRPC and gRPC-Web by hand to each of our servers: envelopes, HTTP/2
trailers (grpc-status, percent-encoded grpc-message), trailers-only errors, and the gRPC-Web trailer
frame (flag 0x80) in the body over HTTP/1.1 and HTTP/2 (protocol digest §6, §7).

IDs read `server-S-...`, e.g. `-k "server-c and grpcweb"`.
"""

from __future__ import annotations

import os
import shlex
import struct
import subprocess
import tempfile
import uuid

import pytest

from conftest import LANGS, PROCEDURE
from kv.v1 import kv_pb2


def envelope(msg: bytes, flags: int = 0) -> bytes:
    return struct.pack(">BI", flags, len(msg)) + msg


def split_envelopes(body: bytes) -> list[tuple[int, bytes]]:
    out, i = [], 0
    while i < len(body):
        assert i + 5 <= len(body), f"truncated envelope prefix at {i}: {body!r}"
        flags, n = struct.unpack(">BI", body[i:i + 5])
        assert i + 5 + n <= len(body), f"truncated envelope payload at {i}: {body!r}"
        out.append((flags, body[i + 5:i + 5 + n]))
        i += 5 + n
    return out


def parse_header_dump(raw: str) -> list[dict[str, list[str]]]:
    """curl -D output: one dict per block (response headers, then trailers for HTTP/2)."""
    blocks = []
    for block in raw.replace("\r\n", "\n").split("\n\n"):
        lines = [l for l in block.split("\n") if l.strip()]
        if not lines:
            continue
        d: dict[str, list[str]] = {}
        for line in lines:
            if line.startswith("HTTP/"):
                d.setdefault(":status", []).append(line.split()[1])
            elif ":" in line:
                k, v = line.split(":", 1)
                d.setdefault(k.strip().lower(), []).append(v.strip())
        blocks.append(d)
    return blocks


def curl(srv, method: str, body: bytes, content_type: str, http2: bool, extra: list[str] = ()):
    tmp = tempfile.mkdtemp(prefix="interop-curlgrpc-")
    req, out, hdr = (os.path.join(tmp, n) for n in ("req", "out", "hdr"))
    with open(req, "wb") as f:
        f.write(body)
    argv = ["curl", "-sS", "--max-time", "20", "--http2-prior-knowledge" if http2 else "--http1.1",
            "-H", f"content-type: {content_type}", "-H", "Expect:", "-H", "Accept:", *extra,
            "--data-binary", f"@{req}", "-o", out, "-D", hdr, f"{srv.url}{PROCEDURE}{method}"]
    r = subprocess.run(argv, capture_output=True, timeout=30)
    cmd = shlex.join(argv)
    assert r.returncode == 0, f"curl failed rc={r.returncode}: {r.stderr.decode(errors='replace')}\n{cmd}\n{srv.describe()}"
    return parse_header_dump(open(hdr, encoding="latin-1").read()), open(out, "rb").read(), cmd


def merged(blocks):
    d: dict[str, list[str]] = {}
    for b in blocks:
        for k, v in b.items():
            d.setdefault(k, []).extend(v)
    return d


SERVERS = [pytest.param(s, id=f"server-{s}") for s in LANGS]


@pytest.mark.parametrize("server", SERVERS)
def test_grpc_curl_h2_trailers(servers, server):
    srv = servers.get(server, "tcp")
    key = f"grpc-{uuid.uuid4().hex[:8]}"
    put = kv_pb2.PutRequest(key=key, value=b"hello").SerializeToString()
    te = ["-H", "te: trailers"]
    blocks, body, cmd = curl(srv, "Put", envelope(put), "application/grpc", True, te)
    assert blocks[0][":status"] == ["200"], f"{blocks}\n{cmd}"
    assert blocks[0].get("content-type") == ["application/grpc"], f"content type echoed (G-5): {blocks}\n{cmd}"
    assert len(blocks) >= 2 and blocks[-1].get("grpc-status") == ["0"], f"grpc-status 0 in the trailers: {blocks}\n{cmd}"
    assert "grpc-message" not in blocks[-1], f"no grpc-message with status 0 (G-9): {blocks}"
    assert [f for f, _ in split_envelopes(body)] == [0], f"one uncompressed message: {body!r}"

    get = kv_pb2.GetRequest(key=key).SerializeToString()
    blocks, body, cmd = curl(srv, "Get", envelope(get), "application/grpc+proto", True, te)
    assert blocks[0].get("content-type") == ["application/grpc+proto"], f"{blocks}\n{cmd}"
    envs = split_envelopes(body)
    assert len(envs) == 1 and envs[0][0] == 0, f"{envs}"
    r = kv_pb2.GetResponse.FromString(envs[0][1])
    assert r.found and r.value == b"hello"
    assert blocks[-1].get("grpc-status") == ["0"], f"{blocks}\n{cmd}"


@pytest.mark.parametrize("server", SERVERS)
def test_grpc_curl_error_is_trailers_only(servers, server):
    srv = servers.get(server, "tcp")
    blocks, body, cmd = curl(srv, "Get", envelope(kv_pb2.GetRequest(key="").SerializeToString()), "application/grpc",
                             True, ["-H", "te: trailers"])
    # Trailers-only (G-8): one HEADERS block with the status, no body.
    assert body == b"", f"trailers-only has no body: {body!r}\n{cmd}"
    h = merged(blocks)
    assert h.get("grpc-status") == ["3"], f"{blocks}\n{cmd}"
    assert h.get("grpc-message") == ["key must not be empty"], f"{blocks}\n{cmd}"


@pytest.mark.parametrize("server", SERVERS)
def test_grpc_unknown_method(servers, server):
    srv = servers.get(server, "tcp")
    blocks, body, cmd = curl(srv, "Nope", envelope(b""), "application/grpc", True, ["-H", "te: trailers"])
    h = merged(blocks)
    assert h.get(":status") == ["200"] and h.get("grpc-status") == ["12"], f"UNIMPLEMENTED: {blocks}\n{cmd}"


@pytest.mark.parametrize("http2", [False, True], ids=["h1", "h2"])
@pytest.mark.parametrize("server", SERVERS)
def test_grpcweb_curl_trailer_frame(servers, server, http2):
    srv = servers.get(server, "tcp")
    key = f"grpcweb-{uuid.uuid4().hex[:8]}"
    put = kv_pb2.PutRequest(key=key, value=b"web").SerializeToString()
    blocks, body, cmd = curl(srv, "Put", envelope(put), "application/grpc-web+proto", http2, ["-H", "x-grpc-web: 1"])
    assert blocks[0][":status"] == ["200"], f"{blocks}\n{cmd}"
    get = kv_pb2.GetRequest(key=key).SerializeToString()
    blocks, body, cmd = curl(srv, "Get", envelope(get), "application/grpc-web+proto", http2)
    assert len(blocks) == 1, f"gRPC-Web sends no HTTP trailers: {blocks}\n{cmd}"
    envs = split_envelopes(body)
    assert [f for f, _ in envs] == [0, 0x80], f"a message, then the trailer frame (flag 0x80): {envs}\n{cmd}"
    assert kv_pb2.GetResponse.FromString(envs[0][1]).value == b"web"
    block = envs[1][1]
    # GW-1: lowercase "key: value" lines, each ending in CRLF, no blank line.
    assert block.endswith(b"\r\n") and b"\r\n\r\n" not in block, f"{block!r}"
    lines = block.decode().split("\r\n")[:-1]
    assert "grpc-status: 0" in lines, f"{lines}"
    assert all(l.split(":", 1)[0] == l.split(":", 1)[0].lower() for l in lines), f"{lines}"


@pytest.mark.parametrize("server", SERVERS)
def test_grpcweb_curl_error(servers, server):
    srv = servers.get(server, "tcp")
    blocks, body, cmd = curl(srv, "Get", envelope(kv_pb2.GetRequest(key="").SerializeToString()),
                             "application/grpc-web+proto", False)
    assert blocks[0][":status"] == ["200"], f"{blocks}\n{cmd}"
    if body:
        envs = split_envelopes(body)
        assert envs[-1][0] == 0x80 and b"grpc-status: 3\r\n" in envs[-1][1], f"{envs}\n{cmd}"
    else:
        # Trailers-only (GW-2): the status is in the headers.
        assert blocks[0].get("grpc-status") == ["3"], f"{blocks}\n{cmd}"
        assert blocks[0].get("grpc-message") == ["key must not be empty"], f"{blocks}\n{cmd}"


@pytest.mark.parametrize("server", SERVERS)
def test_grpc_nghttp_trailers(servers, server):
    """nghttp (nghttp2's client) shows the frames: HEADERS, DATA, then a trailing HEADERS with
    END_STREAM carrying grpc-status."""
    srv = servers.get(server, "tcp")
    tmp = tempfile.mkdtemp(prefix="interop-nghttp-")
    req = os.path.join(tmp, "req")
    with open(req, "wb") as f:
        f.write(envelope(kv_pb2.GetRequest(key="absent-" + uuid.uuid4().hex).SerializeToString()))
    argv = ["nghttp", "-v", "-n", "-t", "20", "-H", "content-type: application/grpc", "-H", "te: trailers",
            "-d", req, f"{srv.url}{PROCEDURE}Get"]
    r = subprocess.run(argv, capture_output=True, timeout=30, text=True)
    out = r.stdout
    assert r.returncode == 0, f"nghttp rc={r.returncode}\n{out}\n{r.stderr}"
    lines = out.splitlines()
    recv_headers = [i for i, line in enumerate(lines) if "recv HEADERS frame" in line]
    assert len(recv_headers) == 2, f"response headers then trailers:\n{out}"
    # nghttp prints a block's fields ("recv (stream_id=N) name: value") before its frame line.
    data = [i for i, line in enumerate(lines) if "recv DATA frame" in line]
    assert data and recv_headers[0] < data[0] < recv_headers[1], f"HEADERS, DATA, HEADERS:\n{out}"
    trailer_fields = "\n".join(lines[data[-1]:recv_headers[1] + 2])
    assert "grpc-status: 0" in trailer_fields and "END_STREAM" in trailer_fields, (
        f"trailers with END_STREAM and grpc-status 0:\n{out}")
