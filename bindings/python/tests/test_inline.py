"""Inline unary handlers (Server.register_unary_inline): they run on the library's I/O thread, not
on a cp-handler thread, over every protocol and both HTTP versions; errors, context and interceptors
work as for pooled handlers."""

import threading

import pytest

from connectplugin import Client, Code, ConnectPluginError, Interceptor, RPCError, Server, Status, _server

SVC = "/test.v1.Inline/"


def thread_name():
    with open("/proc/thread-self/comm") as f:
        return f.read().strip()


class Seen:
    def __init__(self):
        self.lock = threading.Lock()
        self.names = []
        self.hooks = []

    def add(self, name):
        with self.lock:
            self.names.append(name)


@pytest.fixture(scope="module")
def served():
    inline, pooled = Seen(), Seen()

    def lookup(request, ctx):
        inline.add(thread_name())
        if request == b"\x00":
            raise RPCError(Code.NOT_FOUND, "no such key")
        ctx.add_response_header("x-inline", "yes")
        return request + b"\x01"

    def echo(request, ctx):
        pooled.add(thread_name())
        return request

    class Hook(Interceptor):
        def start(self, call):
            if call.procedure == SVC + "Lookup":
                with inline.lock:
                    inline.hooks.append(thread_name())

    server = Server()
    server.register_unary_inline(SVC + "Lookup", lookup)
    server.register_unary(SVC + "Echo", echo)
    server.add_interceptor(Hook())
    addr = server.listen_tcp("127.0.0.1:0")
    server.start()
    yield "http://" + addr, inline, pooled
    server.close()


@pytest.mark.parametrize("protocol,http", [("connect", "1.1"), ("connect", "2"), ("grpc", "2"),
                                           ("grpcweb", "1.1"), ("grpcweb", "2")])
def test_inline_handler_runs_on_the_io_thread(served, protocol, http):
    url, inline, pooled = served
    with inline.lock:
        inline.names.clear()
        inline.hooks.clear()
    with pooled.lock:
        pooled.names.clear()
    with Client(url, protocol=protocol, http_version=http) as c:
        for i in range(1, 6):
            resp = c.call_unary(SVC + "Lookup", bytes([i]))
            assert resp.message == bytes([i, 1])
            assert resp.header("x-inline") == b"yes"
        with pytest.raises(RPCError) as e:
            c.call_unary(SVC + "Lookup", b"\x00")
        assert e.value.code == Code.NOT_FOUND and e.value.message == "no such key"
        assert c.call_unary(SVC + "Echo", b"\x09").message == b"\x09"
    assert len(inline.names) == 6
    assert not any(n.startswith("cp-handler") for n in inline.names), inline.names
    # Interceptors wrap the inline handler and run with it, on the same (I/O) thread.
    assert inline.hooks == inline.names
    # The control: pooled handlers run on cp-handler threads, the name the checks above rely on.
    assert pooled.names and all(n.startswith("cp-handler") for n in pooled.names), pooled.names


def test_register_unary_inline_arguments():
    before = _server._registry_size()
    server = Server()
    try:
        with pytest.raises(TypeError):
            server.register_unary_inline(SVC + "X", "not callable")
        server.register_unary_inline(SVC + "X", lambda r, c: r)
        with pytest.raises(ConnectPluginError) as info:
            server.register_unary_inline(SVC + "X", lambda r, c: r)  # duplicate
        assert info.value.status is Status.INVALID_ARGUMENT
        with pytest.raises(ConnectPluginError) as info:
            server.register_unary_inline("no-slash", lambda r, c: r)
        assert info.value.status is Status.INVALID_ARGUMENT
        assert _server._registry_size() == before + 1  # failed registrations leave nothing behind
        server.listen_tcp("127.0.0.1:0")
        server.start()
        with pytest.raises(ConnectPluginError) as info:
            server.register_unary_inline(SVC + "Late", lambda r, c: r)
        assert info.value.status is Status.STATE
    finally:
        server.close()
    assert _server._registry_size() == before
