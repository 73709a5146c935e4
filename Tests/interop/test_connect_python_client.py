"""connect-python's client (generated KVServiceClientSync over pyqwest) against each of our servers:
proto and JSON x HTTP/1.1 and h2c (prior knowledge), gzip and identity request compression.

IDs read `server-S-CODEC-hN[-COMPRESSION]`, e.g. `-k "server-c and h2"`.
"""

from __future__ import annotations

import os
import uuid

import pytest
from connectrpc.code import Code
from connectrpc.errors import ConnectError
from connectrpc.method import IdempotencyLevel, MethodInfo, StreamType

import kv_connect_python as cpy
from conftest import CODECS, HTTP_ID, HTTPS, LANGS, check_client_run, client_argv, run_client
from kv.v1 import kv_pb2

SERVICE = "connectplugin.examples.kv.v1.KVService"
MAX = 4 * 1024 * 1024  # the servers' default max message size (connectplugin.h)


def ids(*parts):
    return "-".join(parts)


CASES = [
    pytest.param(s, codec, http, id=ids(f"server-{s}", codec, HTTP_ID[http]))
    for s in LANGS for codec in CODECS for http in HTTPS
]


@pytest.fixture
def client_for(servers):
    made = []

    def make(server, codec="proto", http="2", compression="gzip"):
        srv = servers.get(server, "tcp")
        c = cpy.make_client(srv.url, codec, http, compression)
        made.append(c)
        return srv, c

    yield make
    for c in made:
        c.close()
        c.http_transport.close()


def expect_error(fn, code: Code, message: str | None = None, srv=None):
    with pytest.raises(ConnectError) as ei:
        fn()
    e = ei.value
    where = f"\n{srv.describe()}" if srv is not None else ""
    assert e.code == code, f"expected {code.value}, got {e.code.value}: {e.message!r}{where}"
    if message is not None:
        assert e.message == message, f"expected message {message!r}, got {e.message!r}{where}"
    return e


@pytest.mark.parametrize("compression", ["gzip", "identity"])
@pytest.mark.parametrize("server,codec,http", CASES)
def test_kv_calls(client_for, server, codec, http, compression):
    srv, c = client_for(server, codec, http, compression)
    key = f"k-{uuid.uuid4().hex}"
    try:
        assert c.put(kv_pb2.PutRequest(key=key, value=b"hello")) == kv_pb2.PutResponse()
        assert c.get(kv_pb2.GetRequest(key=key)) == kv_pb2.GetResponse(value=b"hello", found=True)
        assert c.put(kv_pb2.PutRequest(key=key, value=b"\x00\xff binary")) == kv_pb2.PutResponse()
        assert c.get(kv_pb2.GetRequest(key=key)) == kv_pb2.GetResponse(value=b"\x00\xff binary", found=True)
        assert c.put(kv_pb2.PutRequest(key=key, value=b"")) == kv_pb2.PutResponse()
        assert c.get(kv_pb2.GetRequest(key=key)) == kv_pb2.GetResponse(value=b"", found=True)
        assert c.delete(kv_pb2.DeleteRequest(key=key)) == kv_pb2.DeleteResponse(existed=True)
        assert c.get(kv_pb2.GetRequest(key=key)) == kv_pb2.GetResponse(found=False)
        assert c.delete(kv_pb2.DeleteRequest(key=key)) == kv_pb2.DeleteResponse(existed=False)
        uni = "ключ-🔑"
        assert c.put(kv_pb2.PutRequest(key=uni, value=b"u")) == kv_pb2.PutResponse()
        assert c.get(kv_pb2.GetRequest(key=uni)) == kv_pb2.GetResponse(value=b"u", found=True)
        assert c.delete(kv_pb2.DeleteRequest(key=uni)) == kv_pb2.DeleteResponse(existed=True)
    except ConnectError as e:
        pytest.fail(f"unexpected error {e.code.value}: {e.message}\n{srv.describe()}", pytrace=False)
    for call in (lambda: c.put(kv_pb2.PutRequest(key="", value=b"x")),
                 lambda: c.get(kv_pb2.GetRequest(key="")),
                 lambda: c.delete(kv_pb2.DeleteRequest(key=""))):
        expect_error(call, Code.INVALID_ARGUMENT, "key must not be empty", srv)
    srv.assert_alive()


@pytest.mark.parametrize("server,codec,http", CASES)
def test_cli_script(servers, server, codec, http):
    """The connect-python CLI client prints the README's five lines against our server."""
    srv = servers.get(server, "tcp")
    check_client_run(run_client(client_argv("cpy", srv.url, codec, http)), srv)


@pytest.mark.parametrize("server,codec,http", CASES)
def test_unknown_procedure(client_for, server, codec, http):
    srv, c = client_for(server, codec, http)
    for service, name in ((SERVICE, "NoSuchMethod"), ("connectplugin.examples.kv.v1.NoSuchService", "Get"),
                          (SERVICE, "get")):  # routing is case-sensitive (GEN-1)
        method = MethodInfo(name=name, service_name=service, input=kv_pb2.GetRequest, output=kv_pb2.GetResponse,
                            idempotency_level=IdempotencyLevel.UNKNOWN, stream_type=StreamType.UNARY)
        with pytest.raises(ConnectError) as ei:
            c.execute_unary(request=kv_pb2.GetRequest(key="x"), method=method)
        assert ei.value.code == Code.UNIMPLEMENTED, (
            f"/{service}/{name}: expected unimplemented, got {ei.value.code.value}: {ei.value.message!r}")
    srv.assert_alive()


@pytest.mark.parametrize("http", [pytest.param(h, id=HTTP_ID[h]) for h in HTTPS])
@pytest.mark.parametrize("server", [pytest.param(s, id=f"server-{s}") for s in LANGS])
def test_large_value(client_for, server, http):
    """1 MiB of incompressible bytes round-trips (several HTTP/2 DATA frames / flow-control windows)."""
    srv, c = client_for(server, "proto", http, "identity")
    value = os.urandom(1024 * 1024)
    key = f"big-{uuid.uuid4().hex}"
    try:
        c.put(kv_pb2.PutRequest(key=key, value=value))
        r = c.get(kv_pb2.GetRequest(key=key))
        c.delete(kv_pb2.DeleteRequest(key=key))
    except ConnectError as e:
        pytest.fail(f"unexpected error {e.code.value}: {e.message}\n{srv.describe()}", pytrace=False)
    assert r.found and r.value == value


@pytest.mark.parametrize("http", [pytest.param(h, id=HTTP_ID[h]) for h in HTTPS])
@pytest.mark.parametrize("server", [pytest.param(s, id=f"server-{s}") for s in LANGS])
def test_message_at_limit_accepted(client_for, server, http):
    """A request of exactly 4 MiB (the default max) is accepted (CMP-6)."""
    srv, c = client_for(server, "proto", http, "identity")
    key = "k"
    req = kv_pb2.PutRequest(key=key, value=b"")
    req.value = b"\x01" * (MAX - 8)
    assert len(req.SerializeToString()) == MAX
    try:
        c.put(req)
        c.delete(kv_pb2.DeleteRequest(key=key))
    except ConnectError as e:
        pytest.fail(f"a {MAX}-byte request was rejected: {e.code.value}: {e.message}\n{srv.describe()}",
                    pytrace=False)


@pytest.mark.parametrize("compression", ["identity", "gzip"])
@pytest.mark.parametrize("http", [pytest.param(h, id=HTTP_ID[h]) for h in HTTPS])
@pytest.mark.parametrize("server", [pytest.param(s, id=f"server-{s}") for s in LANGS])
def test_message_over_limit_rejected(client_for, server, http, compression):
    """A request over 4 MiB -> resource_exhausted; with gzip the limit applies to the decompressed
    size (a 5 MiB message that compresses to a few KiB is still too large) (CMP-6)."""
    srv, c = client_for(server, "proto", http, compression)
    req = kv_pb2.PutRequest(key="too-big", value=b"\x00" * (MAX + 1024 * 1024))
    expect_error(lambda: c.put(req), Code.RESOURCE_EXHAUSTED, None, srv)
    srv.assert_alive()
    # The key was not stored (asked on a new connection: the server may close the one it rejected).
    _, c2 = client_for(server, "proto", http, "identity")
    assert c2.get(kv_pb2.GetRequest(key="too-big")).found is False
