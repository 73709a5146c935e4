"""Ownership: everything freed exactly once, use-after-close, handler registry finalizers."""

import gc
import os
import threading
import time

import pytest

from connectplugin import Client, Code, ConnectPluginError, RPCError, Server, Status
from connectplugin import _server
from _support import ECHO, SLOW, Running


def _noop(req, ctx):
    return req


def test_finalizer_empties_registry_on_close():
    before = _server._registry_size()
    srv = Server()
    for i in range(3):
        srv.register_unary(f"/a.B/M{i}", _noop)
    assert _server._registry_size() == before + 3
    srv.close()
    assert _server._registry_size() == before
    srv.close()  # idempotent
    assert _server._registry_size() == before


def test_finalizer_runs_after_serving_calls():
    before = _server._registry_size()
    r = Running()
    assert _server._registry_size() > before
    with Client(r.url("tcp")) as c:
        assert c.call_unary(ECHO, b"hi").message == b"hi"
    r.close()
    assert _server._registry_size() == before


def test_failed_register_calls_finalizer_immediately():
    before = _server._registry_size()
    with Server() as srv:
        srv.register_unary("/a.B/M", _noop)
        with pytest.raises(ConnectPluginError) as info:
            srv.register_unary("/a.B/M", _noop)  # duplicate
        assert info.value.status is Status.INVALID_ARGUMENT
        assert _server._registry_size() == before + 1
        with pytest.raises(ConnectPluginError) as info:
            srv.register_unary("no-slash", _noop)
        assert info.value.status is Status.INVALID_ARGUMENT
        assert _server._registry_size() == before + 1
        srv.listen_tcp("127.0.0.1:0")
        srv.start()
        with pytest.raises(ConnectPluginError) as info:
            srv.register_unary("/a.B/Late", _noop)
        assert info.value.status is Status.STATE
        assert _server._registry_size() == before + 1
    assert _server._registry_size() == before


def test_garbage_collected_server_is_freed():
    before = _server._registry_size()

    def make():
        srv = Server()
        srv.register_unary("/a.B/M", _noop)
        srv.listen_tcp("127.0.0.1:0")
        srv.start()
        assert _server._registry_size() == before + 1

    make()
    gc.collect()
    assert _server._registry_size() == before


def test_server_use_after_close():
    srv = Server()
    srv.close()
    assert srv.closed
    for op in (
        lambda: srv.listen_tcp("127.0.0.1:0"),
        lambda: srv.listen_unix("/tmp/x.sock"),
        lambda: srv.register_unary("/a.B/M", _noop),
        lambda: srv.start(),
        lambda: srv.stop(),
        lambda: srv.addresses,
    ):
        with pytest.raises(ValueError, match="already closed"):
            op()
    with pytest.raises(ValueError, match="already closed"):
        with srv:
            pass


def test_client_use_after_close():
    client = Client("http://127.0.0.1:1")
    client.close()
    client.close()  # idempotent
    with pytest.raises(ValueError, match="already closed"):
        client.call_unary(ECHO, b"x")
    with Client("http://127.0.0.1:1") as c2:
        pass
    assert c2.closed
    with pytest.raises(ValueError, match="already closed"):
        c2.call_unary(ECHO, b"x")
    del c2
    gc.collect()


def test_client_close_waits_for_calls_in_progress():
    r = Running()
    try:
        client = Client(r.url("tcp"))
        result = {}

        def call():
            try:
                result["msg"] = client.call_unary(SLOW, b"0.5").message
            except BaseException as e:
                result["err"] = e

        t = threading.Thread(target=call)
        t.start()
        assert r.service.slow_entered.wait(5)
        client.close()  # must not free the client under the running call
        t.join(10)
        assert result == {"msg": b"slow-done"}
        with pytest.raises(ValueError, match="already closed"):
            client.call_unary(ECHO, b"x")
    finally:
        r.close()


def test_call_context_unusable_after_handler_returns():
    r = Running()
    try:
        with Client(r.url("tcp")) as c:
            c.call_unary(ECHO, b"x")
        ctx = r.service.contexts[-1]
        assert ctx.procedure == ECHO  # copied values stay readable
        with pytest.raises(ValueError, match="already closed"):
            ctx.timeout_remaining_ms
        with pytest.raises(ValueError, match="already closed"):
            ctx.add_response_header("a", "b")
    finally:
        r.close()


def test_graceful_stop_lets_calls_finish_and_removes_unix_socket():
    r = Running()
    try:
        client = Client(r.url("unix"))
        result = {}

        def call():
            try:
                result["msg"] = client.call_unary(SLOW, b"0.5").message
            except BaseException as e:
                result["err"] = e

        t = threading.Thread(target=call)
        t.start()
        assert r.service.slow_entered.wait(5)
        t0 = time.monotonic()
        r.server.stop(5000)
        assert time.monotonic() - t0 < 4.5
        t.join(10)
        assert result == {"msg": b"slow-done"}
        assert not os.path.exists(r.sock)
        r.server.stop(5000)  # again: OK
        with pytest.raises(RPCError) as info:
            Client(r.url("tcp")).call_unary(ECHO, b"x")
        assert info.value.code is Code.UNAVAILABLE
        client.close()
    finally:
        r.close()


def test_stop_without_start_is_ok():
    with Server() as srv:
        srv.stop(0)
        srv.stop(0)
