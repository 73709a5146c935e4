"""Regressions of the three protocol conformance defects of issue 7, each against a real peer.

(a) Our gRPC / gRPC-Web server: a streaming handler that sets response headers and ends without a
    message must send those headers as headers (a HEADERS frame, then the trailers), not fold them
    into a trailers-only response, as grpc-go does whenever headers were set. Server:
    conformance_server.py (ours, through the Python binding); clients: grpcio (gRPC) and curl
    (gRPC-Web, HTTP/1.1 and HTTP/2).
(b) Our client: after `cancel()`, `receive()` reports canceled, even when response messages had
    already arrived. Servers: grpcio (gRPC) and connect-python on hypercorn (Connect), KV `List`;
    client: the Python binding.
(c) Our gRPC client: a deadline that passes is `deadline_exceeded`, also when the server ends the
    call first with RST_STREAM(CANCEL) at its own copy of the deadline (newer grpc-go does; the
    reset then races our own timer). Servers: h2_deadline_reset_server.py (that reset, on the `h2`
    library; Debian's grpc-go 1.33 predates it), Debian's grpc-go (grpcgo/slowserver, a handler
    that sleeps past the deadline) and grpcio (KV `Get __slow__`); client: the Python binding.

Before the fixes, the (a) and (b) tests and test_conformance_deadline_reset_at_server_deadline
failed; the other (c) tests guard the fix: a reset well before the deadline stays canceled, and the
deadline behaviour of Debian's grpc-go (which sends nothing at its deadline) and of grpcio (which
answers DEADLINE_EXCEEDED itself) stays deadline_exceeded.

IDs: `-k conformance`, e.g. `-k "conformance and deadline"`.
"""

from __future__ import annotations

import os
import shlex
import struct
import subprocess
import sys
import tempfile
import time
import uuid

import grpc
import pytest

from conftest import GRPCGO_BUILD, HERE, PROCEDURE, REPO, start_server
from kv.v1 import kv_pb2

sys.path.insert(0, str(REPO / "bindings" / "python" / "src"))
import connectplugin  # noqa: E402
from connectplugin import Code, ConnectPluginError  # noqa: E402

SERVICE = "/conformance.v1.ConformanceService/"
HEADER = ("x-custom-header", "custom-value")
TRAILER = ("x-custom-trailer", "trailer-value")


def envelope(msg: bytes, flags: int = 0) -> bytes:
    return struct.pack(">BI", flags, len(msg)) + msg


@pytest.fixture(scope="module")
def conformance_server():
    srv = start_server("conformance", command=[sys.executable, str(HERE / "conformance_server.py")])
    yield srv
    err = srv.stop()
    if err:
        pytest.fail("GRACEFUL STOP FAILED: " + err, pytrace=False)


# ------------------------------------------------------------------------------------------------
# (a) response headers of a call that ends without a message
# ------------------------------------------------------------------------------------------------


def test_conformance_grpc_headers_without_message_grpcio(conformance_server):
    """grpcio client, server-stream handler: header set, no message, OK. The header must be initial
    metadata (a HEADERS frame before the trailers), the trailer trailing metadata only."""
    srv = conformance_server
    with grpc.insecure_channel(f"{srv.host}:{srv.port}") as channel:
        call = channel.unary_stream(SERVICE + "HeadersOnly")(b"", timeout=30)
        messages = list(call)
        initial, trailing = list(call.initial_metadata()), list(call.trailing_metadata())
        ctx = f"code={call.code()} initial={initial} trailing={trailing}\n{srv.describe()}"
        assert call.code() == grpc.StatusCode.OK, ctx
    assert messages == [], ctx
    assert HEADER in initial, "the response header must arrive as initial metadata (not trailers-only)\n" + ctx
    assert HEADER[0] not in dict(trailing), "the response header must not be repeated as a trailer\n" + ctx
    assert TRAILER in trailing and TRAILER[0] not in dict(initial), ctx


def test_conformance_grpc_headers_then_error_grpcio(conformance_server):
    """The same with an error status: headers first, then the status in the trailers."""
    srv = conformance_server
    with grpc.insecure_channel(f"{srv.host}:{srv.port}") as channel:
        call = channel.unary_stream(SERVICE + "HeadersThenError")(b"", timeout=30)
        with pytest.raises(grpc.RpcError):
            list(call)
        initial, trailing = list(call.initial_metadata()), list(call.trailing_metadata())
        ctx = f"code={call.code()} details={call.details()!r} initial={initial} trailing={trailing}\n{srv.describe()}"
        assert call.code() == grpc.StatusCode.FAILED_PRECONDITION and call.details() == "headers then error", ctx
    assert HEADER in initial and HEADER[0] not in dict(trailing), ctx
    assert TRAILER in trailing, ctx


def curl_dump(url: str, body: bytes, content_type: str, http2: bool) -> tuple[str, bytes, str]:
    tmp = tempfile.mkdtemp(prefix="interop-conformance-")
    req, out, hdr = (os.path.join(tmp, n) for n in ("req", "out", "hdr"))
    with open(req, "wb") as f:
        f.write(body)
    argv = ["curl", "-sS", "--max-time", "30", "-X", "POST", "--data-binary", f"@{req}",
            "-H", f"content-type: {content_type}", "-H", "x-grpc-web: 1", "-D", hdr, "-o", out,
            "--http2-prior-knowledge" if http2 else "--http1.1", url]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    cmd = shlex.join(argv)
    assert r.returncode == 0, f"curl rc={r.returncode}: {r.stderr}\n{cmd}"
    with open(hdr) as f:
        headers = f.read()
    with open(out, "rb") as f:
        return headers, f.read(), cmd


@pytest.mark.parametrize("http", ["1.1", "2"], ids=["h1", "h2"])
def test_conformance_grpcweb_headers_without_message_curl(conformance_server, http):
    """gRPC-Web: the header in the response headers, the status and the trailer in a trailer frame
    (flag 0x80) in the body, not a trailers-only response."""
    srv = conformance_server
    raw, body, cmd = curl_dump(srv.url + SERVICE + "HeadersOnly", envelope(b""), "application/grpc-web+proto",
                               http == "2")
    lines = [l.strip().lower() for l in raw.replace("\r\n", "\n").split("\n") if ":" in l]
    ctx = f"headers:\n{raw}\nbody: {body!r}\n{cmd}\n{srv.describe()}"
    assert f"{HEADER[0]}: {HEADER[1]}" in lines, ctx
    assert not any(l.startswith("grpc-status:") for l in lines), "the status belongs in the trailer frame\n" + ctx
    assert len(body) >= 5 and body[0] == 0x80, "one trailer frame (flag 0x80) in the body\n" + ctx
    (n,) = struct.unpack(">I", body[1:5])
    assert len(body) == 5 + n, ctx
    block = body[5:].decode().split("\r\n")
    assert "grpc-status: 0" in block and f"{TRAILER[0]}: {TRAILER[1]}" in block, ctx
    assert not any(l.startswith(HEADER[0] + ":") for l in block), ctx


# ------------------------------------------------------------------------------------------------
# (b) receive after cancel
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("server,protocol", [("grpcio", "grpc"), ("cpy-hypercorn", "connect")])
def test_conformance_receive_after_cancel(servers, server, protocol):
    """The server streams 20 messages; the client receives one, waits until the rest arrived (they
    are buffered in the client), cancels: the next receives report canceled, not the buffered
    messages."""
    srv = servers.get(server)
    prefix = f"cancel-{uuid.uuid4().hex[:8]}/"
    keys = [f"{prefix}k{i:02d}" for i in range(20)]
    client = connectplugin.Client(srv.url, protocol=protocol, timeout_ms=30_000)
    try:
        for k in keys:
            client.call_unary(PROCEDURE + "Put", kv_pb2.PutRequest(key=k, value=b"v" * 100).SerializeToString())
        stream = client.server_stream(PROCEDURE + "List", kv_pb2.ListRequest(prefix=prefix).SerializeToString())
        with stream:
            first = stream.receive()
            assert first is not None and kv_pb2.ListResponse.FromString(first).key == keys[0], srv.describe()
            time.sleep(1.0)  # the other 19 messages (2.5 KB) arrive meanwhile
            stream.cancel()
            for attempt in range(2):
                with pytest.raises(ConnectPluginError) as ei:
                    got = stream.receive()
                    pytest.fail(f"receive #{attempt + 1} after cancel returned {got!r}, expected canceled")
                assert ei.value.code == Code.CANCELED, f"receive #{attempt + 1} after cancel: {ei.value!r}"
        for k in keys:
            client.call_unary(PROCEDURE + "Delete", kv_pb2.DeleteRequest(key=k).SerializeToString())
    finally:
        client.close()
    srv.assert_alive("after the cancelled List")


# ------------------------------------------------------------------------------------------------
# (c) a deadline that passes is deadline_exceeded, whoever ends the call
# ------------------------------------------------------------------------------------------------

DEADLINE_MS = 100


def expect_deadline(fn, what: str, ctx: str) -> None:
    t0 = time.monotonic()
    with pytest.raises(ConnectPluginError) as ei:
        fn()
        pytest.fail(f"{what}: succeeded, expected deadline_exceeded\n{ctx}")
    took = (time.monotonic() - t0) * 1000
    assert ei.value.code == Code.DEADLINE_EXCEEDED, f"{what}: {ei.value!r} after {took:.1f} ms\n{ctx}"


def run_deadline_calls(url: str, unary: str, stream: str, rounds: int, ctx: str) -> None:
    """`rounds` unary calls and `rounds` server-stream calls with a DEADLINE_MS deadline, one gRPC
    client (one connection, so the server's copy of each deadline starts right after ours)."""
    client = connectplugin.Client(url, protocol="grpc")
    try:
        for i in range(rounds):
            expect_deadline(lambda: client.call_unary(unary, b"", timeout_ms=DEADLINE_MS), f"unary #{i + 1}", ctx)

            def server_stream():
                with client.server_stream(stream, b"", timeout_ms=DEADLINE_MS) as s:
                    while s.receive() is not None:
                        pass

            expect_deadline(server_stream, f"server stream #{i + 1}", ctx)
    finally:
        client.close()


@pytest.fixture(scope="module")
def h2_reset_server():
    srv = start_server("h2-deadline-reset", command=[sys.executable, str(HERE / "h2_deadline_reset_server.py")])
    yield srv
    err = srv.stop()
    if err:
        pytest.fail("GRACEFUL STOP FAILED: " + err, pytrace=False)


def test_conformance_deadline_reset_at_server_deadline(h2_reset_server):
    """The server resets with CANCEL at its copy of the deadline; the reset often arrives before our
    own timer fires (it rounds up to the next millisecond). 20 calls of each shape, every one must
    be deadline_exceeded (before the fix, some of every run were canceled)."""
    srv = h2_reset_server
    run_deadline_calls(srv.url, "/t.Reset/Unary", "/t.Reset/Stream", 20, srv.describe())
    # Streams whose response headers arrived before the reset.
    run_deadline_calls(srv.url, "/t.Reset/UnaryAfterHeaders", "/t.Reset/StreamAfterHeaders", 10, srv.describe())
    srv.assert_alive()


def test_conformance_reset_before_deadline_is_canceled(h2_reset_server):
    """A CANCEL reset well before the deadline (30 s) stays canceled, unary and server stream."""
    srv = h2_reset_server
    client = connectplugin.Client(srv.url, protocol="grpc", timeout_ms=30_000)
    try:
        for path in ("/t.Reset/UnaryResetNow", "/t.Reset/StreamAfterHeadersResetNow"):
            with pytest.raises(ConnectPluginError) as ei:
                with client.server_stream(path, b"") as s:
                    while s.receive() is not None:
                        pass
            assert ei.value.code == Code.CANCELED, f"{path}: {ei.value!r}\n{srv.describe()}"
        with pytest.raises(ConnectPluginError) as ei:
            client.call_unary("/t.Reset/UnaryResetNow", b"")
        assert ei.value.code == Code.CANCELED, f"unary: {ei.value!r}\n{srv.describe()}"
    finally:
        client.close()


@pytest.fixture(scope="module")
def grpcgo_slow_server(tmp_path_factory):
    out = tmp_path_factory.mktemp("grpcgo-slow-bin")
    env = {k: v for k, v in os.environ.items() if k != "GOFLAGS"}
    r = subprocess.run(["bash", str(GRPCGO_BUILD), str(out)], capture_output=True, text=True, env=env, timeout=300)
    exe = out / "slowserver-grpcgo"
    if r.returncode != 0 or not exe.is_file():
        pytest.fail(f"GRPC-GO SERVER BUILD FAILED ({r.returncode}): bash {GRPCGO_BUILD} {out}\n{r.stdout}{r.stderr}",
                    pytrace=False)
    srv = start_server("grpcgo-slow", command=[str(exe)])
    yield srv
    err = srv.stop()
    if err:
        pytest.fail("GRACEFUL STOP FAILED: " + err, pytrace=False)


def test_conformance_deadline_grpcgo_server(grpcgo_slow_server):
    """Debian's grpc-go (1.33): the handler sleeps past the deadline and the server sends nothing at
    its deadline, so our timer ends the call: deadline_exceeded, for unary and server streams
    (with and without response headers first)."""
    srv = grpcgo_slow_server
    run_deadline_calls(srv.url, "/t.Slow/Unary", "/t.Slow/Stream", 3, srv.describe())
    run_deadline_calls(srv.url, "/t.Slow/UnaryAfterHeaders", "/t.Slow/StreamAfterHeaders", 3, srv.describe())
    srv.assert_alive()


def test_conformance_deadline_grpcio_server(servers):
    """grpcio ends a call whose deadline passed with a DEADLINE_EXCEEDED status itself (trailers-only,
    plus RST_STREAM(NO_ERROR) when the request is still open): deadline_exceeded."""
    srv = servers.get("grpcio")
    client = connectplugin.Client(srv.url, protocol="grpc")
    try:
        req = kv_pb2.GetRequest(key="__slow__").SerializeToString()
        for i in range(3):
            expect_deadline(lambda: client.call_unary(PROCEDURE + "Get", req, timeout_ms=DEADLINE_MS),
                            f"Get __slow__ #{i + 1}", srv.describe())

            def watch():
                with client.stream(PROCEDURE + "Watch", "bidi_stream", timeout_ms=DEADLINE_MS) as s:
                    s.send(kv_pb2.WatchRequest(prefix="deadline-none/").SerializeToString())
                    while s.receive() is not None:
                        pass

            expect_deadline(watch, f"Watch #{i + 1}", srv.describe())
    finally:
        client.close()
