"""Interceptors from Python: per-call hooks on servers (server-wide and per procedure) and clients,
every protocol, unary and streaming: rejection, headers and trailers both ways, order, the result
seen by end hooks, opt-in message observation, and the registries emptying afterwards."""

import threading

import pytest

from connectplugin import Client, Code, Interceptor, MethodKind, RPCError, Server, DIRECTION_REQUEST
from connectplugin import _interceptor

SVC = "/connectplugin.test.v1.Interceptors"
ECHO = SVC + "/Echo"
MISSING = SVC + "/Missing"
COUNT = SVC + "/Count"
PROTOCOLS = ["connect", "grpc", "grpcweb"]


class Log:
    def __init__(self):
        self._lock = threading.Lock()
        self._events = []

    def add(self, e):
        with self._lock:
            self._events.append(e)

    def take(self):
        with self._lock:
            out, self._events = self._events, []
        return out


def serve(setup):
    """Echo (unary; appends the x-from-client header), Missing (NOT_FOUND), Count (server stream)."""
    handlers = Log()
    srv = Server()

    def echo(request, ctx):
        handlers.add("echo")
        return request + (ctx.header("x-from-client") or b"")

    def missing(request, ctx):
        handlers.add("missing")
        raise RPCError(Code.NOT_FOUND, "no such key")

    def count(stream):
        handlers.add("count")
        n = stream.receive()[0]
        for i in range(n):
            stream.send(bytes([i]))

    srv.register_unary(ECHO, echo)
    srv.register_unary(MISSING, missing)
    srv.register_stream(COUNT, MethodKind.SERVER_STREAM, count)
    setup(srv)
    addr = srv.listen_tcp("127.0.0.1:0")
    srv.start()
    return srv, "http://" + addr, handlers


class Auth(Interceptor):
    def start(self, call):
        if call.header("authorization") != b"Bearer secret":
            raise RPCError(Code.UNAUTHENTICATED, "missing or wrong token")


class Token(Interceptor):
    def start(self, call):
        call.add_request_header("authorization", "Bearer secret")


class Named(Interceptor):
    def __init__(self, name, log):
        self.name, self.log = name, log

    def start(self, call):
        self.log.add(f"start {self.name}")

    def end(self, call, error):
        self.log.add(f"end {self.name} {error.code.wire_name if error else 'ok'}")


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_auth_rejects_unary_and_streams(protocol):
    srv, url, handlers = serve(lambda s: s.add_interceptor(Auth()))
    try:
        with Client(url, protocol=protocol) as c:
            with pytest.raises(RPCError) as e:
                c.call_unary(ECHO, b"a")
            assert e.value.code == Code.UNAUTHENTICATED
            assert e.value.message == "missing or wrong token"
            with pytest.raises(RPCError) as e:
                list(c.server_stream(COUNT, b"\x03"))
            assert e.value.code == Code.UNAUTHENTICATED
            assert handlers.take() == []
            assert c.call_unary(ECHO, b"a", headers={"authorization": "Bearer secret"}).message == b"a"
        with Client(url, protocol=protocol, interceptors=[Token()]) as c:
            assert list(c.server_stream(COUNT, b"\x03")) == [b"\x00", b"\x01", b"\x02"]
        assert handlers.take() == ["echo", "count"]
    finally:
        srv.close()


class Headers(Interceptor):
    def start(self, call):
        call.add_response_header("x-icpt-header", "h-" + call.protocol)
        call.add_response_trailer("x-icpt-start", "s")

    def end(self, call, error):
        call.add_response_trailer("x-icpt-end", error.code.wire_name if error else "ok")


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_response_header_and_trailers_and_request_header(protocol):
    seen = Log()

    class ClientSide(Interceptor):
        def start(self, call):
            call.add_request_header("x-from-client", "-abc")

        def end(self, call, error):
            # A failed call's headers and trailers are both in response_trailers (as in the error's metadata).
            hdr = dict(call.response_headers + call.response_trailers).get("x-icpt-header", b"")
            seen.add(hdr.decode() + "/" + dict(call.response_trailers).get("x-icpt-end", b"").decode())

    srv, url, _ = serve(lambda s: s.add_interceptor(Headers()))
    try:
        with Client(url, protocol=protocol, interceptors=[ClientSide()]) as c:
            r = c.call_unary(ECHO, b"m")
            assert r.message == b"m-abc"
            assert r.header("x-icpt-header") == ("h-" + protocol).encode()
            assert r.trailer("x-icpt-start") == b"s"
            assert r.trailer("x-icpt-end") == b"ok"
            with c.stream(COUNT, MethodKind.SERVER_STREAM) as s:
                s.send(b"\x02")
                s.close_send()
                assert list(s) == [b"\x00", b"\x01"]
                assert dict(s.headers)["x-icpt-header"] == ("h-" + protocol).encode()
                assert dict(s.trailers)["x-icpt-end"] == b"ok"
            with pytest.raises(RPCError) as e:
                c.call_unary(MISSING, b"")
            assert e.value.code == Code.NOT_FOUND
            assert dict(e.value.metadata)["x-icpt-end"] == b"not_found"
        assert seen.take() == [f"h-{protocol}/ok", f"h-{protocol}/ok", f"h-{protocol}/not_found"]
    finally:
        srv.close()


@pytest.mark.parametrize("protocol", ["connect", "grpc"])
def test_chain_order_and_per_procedure(protocol):
    log = Log()

    def setup(s):
        s.add_interceptor(Named("a", log))
        s.add_interceptor(Named("p", log), procedure=MISSING)
        s.add_interceptor(Named("b", log))

    srv, url, _ = serve(setup)
    try:
        with Client(url, protocol=protocol, interceptors=[Named("c1", log), Named("c2", log)]) as c:
            c.call_unary(ECHO, b"x")
            assert log.take() == ["start c1", "start c2", "start a", "start b",
                                  "end b ok", "end a ok", "end c2 ok", "end c1 ok"]
            with pytest.raises(RPCError):
                c.call_unary(MISSING, b"")
            assert log.take() == ["start c1", "start c2", "start a", "start b", "start p", "end p not_found",
                                  "end b not_found", "end a not_found", "end c2 not_found", "end c1 not_found"]
            assert len(list(c.server_stream(COUNT, b"\x01"))) == 1
            assert log.take() == ["start c1", "start c2", "start a", "start b",
                                  "end b ok", "end a ok", "end c2 ok", "end c1 ok"]
    finally:
        srv.close()


def test_end_sees_code_call_info_and_state():
    log = Log()

    class Info(Interceptor):
        def start(self, call):
            call.state = call.procedure
            log.add((call.procedure, call.kind, call.protocol, call.codec, call.is_server,
                     call.timeout_remaining_ms > 0, call.peer))

        def end(self, call, error):
            log.add(("end", call.state, error.code if error else Code.OK, error.message if error else ""))

    srv, url, _ = serve(lambda s: s.add_interceptor(Info()))
    try:
        with Client(url, protocol="grpcweb", timeout_ms=60000) as c:
            with pytest.raises(RPCError):
                c.call_unary(MISSING, b"")
            assert list(c.server_stream(COUNT, b"\x01")) == [b"\x00"]
        assert log.take() == [
            (MISSING, MethodKind.UNARY, "grpcweb", "proto", True, True, None),
            ("end", MISSING, Code.NOT_FOUND, "no such key"),
            (COUNT, MethodKind.SERVER_STREAM, "grpcweb", "proto", True, True, None),
            ("end", COUNT, Code.OK, ""),
        ]
    finally:
        srv.close()


def test_client_rejects_and_observes_messages():
    srv, url, handlers = serve(lambda s: None)
    ends = Log()

    class Deny(Interceptor):
        def start(self, call):
            raise ValueError("not today")

        def end(self, call, error):
            ends.add((error.code, error.message))

    class Watch(Interceptor):
        observe_messages = True

        def message(self, call, direction, data):
            ends.add(("req" if direction == DIRECTION_REQUEST else "resp", data))

    try:
        with Client(url, interceptors=[Deny()]) as c:
            with pytest.raises(RPCError) as e:
                c.call_unary(ECHO, b"x")
            assert e.value.code == Code.INTERNAL
        assert ends.take() == [(Code.INTERNAL, "interceptor: not today")]
        assert handlers.take() == []
        with Client(url, interceptors=[Watch()]) as c:
            assert c.call_unary(ECHO, b"hi").message == b"hi"
        assert ends.take() == [("req", b"hi"), ("resp", b"hi")]
    finally:
        srv.close()


def test_rules_and_registries_empty_afterwards():
    before = _interceptor._registry_size()
    srv = Server()
    try:
        with pytest.raises(TypeError):
            srv.add_interceptor(object())
        with pytest.raises(Exception):
            srv.add_interceptor(Auth(), procedure="bad")
        srv.register_unary(ECHO, lambda r, ctx: r)
        srv.add_interceptor(Auth())
        srv.listen_tcp("127.0.0.1:0")
        srv.start()
        with pytest.raises(Exception) as e:
            srv.add_interceptor(Auth())
        assert "start" in str(e.value)
    finally:
        srv.close()
    assert _interceptor._registry_size() == before
