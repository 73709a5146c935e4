"""In-process transport: a server that listens under a name and a client of "inproc://NAME" in the
same process, over an in-memory pipe (no socket)."""

import os
import uuid

import pytest

from connectplugin import Client, Code, ConnectPluginError, RPCError, Server
from _support import ECHO, TestService


def _name():
    return f"py-test-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def test_unary_round_trip_in_process():
    name = _name()
    srv = Server()
    TestService().register(srv)
    assert srv.listen_inprocess(name) == "inproc://" + name
    assert "inproc://" + name in srv.addresses
    srv.start()
    try:
        with Client("inproc://" + name) as c:
            assert c.call_unary(ECHO, b"hello").message == b"hello"
            big = bytes(range(256)) * 1024
            assert c.call_unary(ECHO, big).message == big
    finally:
        srv.close()
    # Stopped: the name is gone and calls are unavailable.
    with Client("inproc://" + name) as c:
        with pytest.raises(RPCError) as ei:
            c.call_unary(ECHO, b"x")
        assert ei.value.code == Code.UNAVAILABLE


def test_names_are_checked_and_unique():
    name = _name()
    a, b = Server(), Server()
    try:
        a.listen_inprocess(name)
        with pytest.raises(ConnectPluginError):
            b.listen_inprocess(name)
        with pytest.raises(ConnectPluginError):
            b.listen_inprocess("no/slash")
    finally:
        a.close()
        b.close()
