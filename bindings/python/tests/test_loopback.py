"""Python server + Python client through libconnectplugin, over TCP and a Unix socket."""

import json
import logging
import threading

import pytest

from connectplugin import Client, Code, RPCError, Status
from _support import (
    BAD_RETURN, BIN_TRAILER, BOOM, DETAILS, ECHO, FAIL, INFO, SLEEP, SVC, Running,
)

CODECS = ["proto", "json"]
HTTP = ["1.1", "2"]
TRANSPORTS = ["tcp", "unix"]


@pytest.fixture(scope="module")
def running():
    r = Running()
    yield r
    r.close()


def payload_for(codec, size=0):
    if codec == "json":
        return json.dumps({"text": "hello " + "x" * size}).encode()
    return b"\x0a\x05hello\x12" + bytes([min(size, 127)]) + b"\x00" * min(size, 127) + b"\xff" * size


def test_addresses(running):
    assert running.tcp.startswith("127.0.0.1:")
    assert int(running.tcp.rsplit(":", 1)[1]) > 0
    assert running.unix == "unix:" + running.sock
    assert running.server.addresses == [running.tcp, running.unix]


@pytest.mark.parametrize("compression", ["identity", "gzip"])
@pytest.mark.parametrize("http", HTTP)
@pytest.mark.parametrize("codec", CODECS)
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_echo_roundtrip(running, transport, codec, http, compression):
    body = payload_for(codec, size=20000 if compression == "gzip" else 10)
    with Client(running.url(transport), codec=codec, http_version=http, compression=compression,
                headers={"x-default": "d"}) as client:
        for _ in range(2):  # a reused connection works as well as a fresh one
            resp = client.call_unary(ECHO, body, headers=[("X-Test", "t1"), ("x-bin-bin", b"\x00\xff\x80")])
            assert resp.message == body
            assert resp.header("x-echo") == b"t1"
            assert resp.header("x-echo-bin") == b"\x00\xff\x80"
            assert resp.header("x-codec") == codec.encode()
            assert resp.trailer("x-trailer") == b"trailer-value"
            assert resp.trailer("x-bin-bin") == BIN_TRAILER
            # Trailers are not mixed into the headers, and protocol headers are removed.
            assert resp.header("x-trailer") is None
            assert resp.header("trailer-x-trailer") is None
            assert resp.header("content-type") is None


@pytest.mark.parametrize("http", HTTP)
@pytest.mark.parametrize("codec", CODECS)
def test_call_context(running, codec, http):
    body = payload_for(codec)
    with Client(running.url("tcp"), codec=codec, http_version=http, headers=[("x-default", "d")]) as client:
        resp = client.call_unary(INFO, body, headers={"x-call": "c"}, timeout_ms=10000)
    info = json.loads(resp.message)
    assert info["procedure"] == INFO
    assert info["codec"] == codec
    assert bytes.fromhex(info["request"]) == body
    headers = {k: bytes.fromhex(v) for k, v in info["headers"]}
    assert headers["x-default"] == b"d"
    assert headers["x-call"] == b"c"
    assert "content-type" not in headers
    assert 0 < info["timeout"] <= 10000


def test_no_timeout_is_none(running):
    with Client(running.url("tcp")) as client:
        info = json.loads(client.call_unary(INFO, b"").message)
    assert info["timeout"] is None
    assert info["request"] == ""


@pytest.mark.parametrize("http", HTTP)
@pytest.mark.parametrize("codec", CODECS)
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_rpc_error_roundtrip(running, transport, codec, http):
    with Client(running.url(transport), codec=codec, http_version=http) as client:
        with pytest.raises(RPCError) as info:
            client.call_unary(FAIL, b"7")
    e = info.value
    assert e.status is Status.RPC
    assert e.code is Code.PERMISSION_DENIED
    assert e.message == "it failed: ünïcode"
    assert e.details == DETAILS
    assert str(e) == "PERMISSION_DENIED: it failed: ünïcode"
    assert ("x-fail-header", b"before-fail") in e.metadata


@pytest.mark.parametrize("code", [c for c in Code if c is not Code.OK])
def test_every_code_roundtrips(running, code):
    with Client(running.url("unix")) as client:
        with pytest.raises(RPCError) as info:
            client.call_unary(FAIL, str(int(code)).encode())
    assert info.value.code is code


@pytest.mark.parametrize("http", HTTP)
def test_unknown_procedure_is_unimplemented(running, http):
    with Client(running.url("tcp"), http_version=http) as client:
        with pytest.raises(RPCError) as info:
            client.call_unary(SVC + "/NoSuchMethod", b"")
    assert info.value.code is Code.UNIMPLEMENTED


@pytest.mark.parametrize("http", HTTP)
def test_handler_exception_is_internal(running, http, caplog):
    with caplog.at_level(logging.ERROR, logger="connectplugin"):
        with Client(running.url("tcp"), http_version=http) as client:
            with pytest.raises(RPCError) as info:
                client.call_unary(BOOM, b"")
    assert info.value.code is Code.INTERNAL
    assert "kaboom" in info.value.message
    assert any("raised" in r.getMessage() and r.exc_info and r.exc_info[0] is ValueError for r in caplog.records)


def test_handler_returning_non_bytes_is_internal(running):
    with Client(running.url("tcp")) as client:
        with pytest.raises(RPCError) as info:
            client.call_unary(BAD_RETURN, b"")
    assert info.value.code is Code.INTERNAL
    assert "expected bytes" in info.value.message


@pytest.mark.parametrize("how", ["call", "client"])
@pytest.mark.parametrize("http", HTTP)
def test_timeout_is_deadline_exceeded(running, http, how):
    svc = running.service
    svc.sleep_finished.clear()
    svc.sleep_entered.clear()
    kwargs = {"timeout_ms": 300} if how == "client" else {}
    with Client(running.url("tcp"), http_version=http, **kwargs) as client:
        with pytest.raises(RPCError) as info:
            if how == "call":
                client.call_unary(SLEEP, b"", timeout_ms=300)
            else:
                client.call_unary(SLEEP, b"")
    assert info.value.code is Code.DEADLINE_EXCEEDED
    assert svc.sleep_entered.is_set()
    # The handler sees the deadline and, once it passes, that the call is done.
    assert svc.sleep_finished.wait(10)
    assert svc.sleep_observed["timeout"] is not None and 0 <= svc.sleep_observed["timeout"] <= 300
    assert svc.sleep_observed["done"] is True
    # Done once the deadline passed, or a few ms before it: the client's own timer (started when it
    # sent) can end the call, and the server learns of it, just before the server's copy expires.
    assert 0 <= svc.sleep_observed["remaining_after"] <= 50


def test_eight_threads_concurrently(running):
    errors = []
    barrier = threading.Barrier(8)

    def worker(i, client):
        try:
            barrier.wait()
            for j in range(25):
                body = f"thread {i} call {j}".encode() * (j + 1)
                resp = client.call_unary(ECHO, body, headers={"x-test": f"{i}-{j}"})
                assert resp.message == body
                assert resp.header("x-echo") == f"{i}-{j}".encode()
        except BaseException as e:  # reported below
            errors.append(e)

    for transport, http in [("tcp", "2"), ("tcp", "1.1"), ("unix", "2")]:
        with Client(running.url(transport), http_version=http) as client:
            threads = [threading.Thread(target=worker, args=(i, client)) for i in range(8)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(60)
            assert not any(t.is_alive() for t in threads)
            barrier.reset()
    assert errors == []


def test_unreachable_server_is_unavailable():
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    with Client(f"http://127.0.0.1:{port}") as client:
        with pytest.raises(RPCError) as info:
            client.call_unary(ECHO, b"x")
    assert info.value.code is Code.UNAVAILABLE


def test_max_message_bytes():
    r = Running(max_message_bytes=1024, handler_threads=2)
    try:
        with Client(r.url("tcp")) as client:
            assert client.call_unary(ECHO, b"a" * 1000).message == b"a" * 1000
            with pytest.raises(RPCError) as info:
                client.call_unary(ECHO, b"a" * 2048)
            assert info.value.code is Code.RESOURCE_EXHAUSTED
        with Client(r.url("tcp"), max_message_bytes=100) as client:
            with pytest.raises(RPCError) as info:
                client.call_unary(ECHO, b"a" * 500)
            assert info.value.code is Code.RESOURCE_EXHAUSTED
    finally:
        r.close()
