"""Streaming through our server and our client: every shape x protocol x HTTP version, errors with
details and trailers, deadlines, cancellation, a 10,000-message stream, lifecycles."""

import json
import logging
import threading
import time

import pytest

from connectplugin import (
    Client, ClientStream, Code, ConnectPluginError, MethodKind, RPCError, Server, ServerStream, Status,
)
from connectplugin import _server

SVC = "/connectplugin.test.v1.StreamService"
SUM = SVC + "/Sum"  # client streaming
COUNT = SVC + "/Count"  # server streaming
ECHO = SVC + "/Echo"  # bidi
GEN = SVC + "/Gen"  # server streaming, handler is a generator
FAIL = SVC + "/Fail"  # server streaming: messages, then an error with details and trailers
FAIL_EXPLICIT = SVC + "/FailExplicit"  # bidi: stream.fail() after echoing
BOOM = SVC + "/Boom"  # client streaming: raises ValueError
INFO = SVC + "/Info"  # server streaming: what the handler sees
WAIT = SVC + "/Wait"  # bidi: blocks in receive until the call ends
DUPLEX = SVC + "/Duplex"  # bidi: a helper thread receives while the handler thread sends
UNARY_ECHO = SVC + "/UnaryEcho"
UNARY_GET = SVC + "/UnaryGet"  # unary, no side effects (GET-able)
UNARY_INFO = SVC + "/UnaryInfo"
EARLY_RETURN = SVC + "/EarlyReturn"  # bidi: returns while a helper thread is blocked in receive

DETAILS = [
    ("google.rpc.ErrorInfo", b"\x0a\x06reason\x12\x06domain"),
    ("connectplugin.test.v1.Custom", b"\x00\x01\x02\xfe\xff"),
]
BIN_TRAILER = bytes(range(256))

# (protocol, http): gRPC needs HTTP/2.
PROTOCOL_HTTP = [("connect", "1.1"), ("connect", "2"), ("grpc", "2"), ("grpcweb", "1.1"), ("grpcweb", "2")]
PH_IDS = [f"{p}-h{h}" for p, h in PROTOCOL_HTTP]
H2 = [(p, h) for p, h in PROTOCOL_HTTP if h == "2"]
H2_IDS = [f"{p}-h{h}" for p, h in H2]


class StreamService:
    __test__ = False

    def __init__(self):
        self.lock = threading.Lock()
        self.wait_started = threading.Event()
        self.wait_finished = threading.Event()
        self.wait_observed = {}
        self.streams = []

    def reset_wait(self):
        self.wait_started.clear()
        self.wait_finished.clear()
        self.wait_observed = {}

    def sum(self, stream):
        total = 0
        n = 0
        for msg in stream:
            total += int(msg)
            n += 1
        stream.add_response_header("x-count", str(n))
        stream.add_response_trailer("x-sum-trailer", "done")
        return str(total).encode()

    def count(self, stream):
        req = stream.receive()
        assert stream.receive() is None  # server streaming: exactly one request message
        n = int(req)
        for i in range(n):
            stream.send(b"%06d" % i)

    def gen(self, stream):
        n = int(stream.receive())
        for i in range(n):
            yield b"gen-%d" % i

    def echo(self, stream):
        stream.add_response_header("x-protocol", stream.protocol)
        stream.add_response_header("x-codec", stream.codec)
        test = stream.header("x-test")
        if test is not None:
            stream.add_response_header("x-echo", test)
        stream.send_headers()
        for msg in stream:
            stream.send(b"echo:" + msg)
        stream.add_response_trailer("x-trailer", "trailer-value")
        stream.add_response_trailer("x-bin-bin", BIN_TRAILER)
        self.streams.append(stream)

    def fail(self, stream):
        n = int(stream.receive())
        stream.add_response_header("x-fail-header", "before-fail")
        for i in range(n):
            stream.send(b"msg-%d" % i)
        stream.add_response_trailer("x-fail-trailer", "trailer-value")
        raise RPCError(Code.FAILED_PRECONDITION, "it failed: ünïcode", details=DETAILS)

    def fail_explicit(self, stream):
        for msg in stream:
            stream.send(b"echo:" + msg)
        stream.add_error_detail(*DETAILS[0])
        stream.add_response_trailer("x-fail-trailer", "explicit")
        stream.fail(Code.RESOURCE_EXHAUSTED, "explicit failure")
        # Anything after fail is refused (STATE).
        with pytest.raises(ConnectPluginError) as info:
            stream.send(b"late")
        assert info.value.status is Status.STATE

    def boom(self, stream):
        for _ in stream:
            pass
        raise ValueError("kaboom")

    def info(self, stream):
        req = stream.receive()
        out = {
            "procedure": stream.procedure,
            "codec": stream.codec,
            "protocol": stream.protocol,
            "kind": int(stream.kind),
            "kind_name": stream.kind.name,
            "headers": [[k, v.hex()] for k, v in stream.request_headers],
            "timeout": stream.timeout_remaining_ms,
            "is_done": stream.is_done,
            "peer": None if stream.peer is None else stream.peer.subject,
            "request": req.hex(),
        }
        stream.send(json.dumps(out).encode())

    def wait(self, stream):
        obs = self.wait_observed
        obs["timeout"] = stream.timeout_remaining_ms
        self.wait_started.set()
        try:
            while True:
                msg = stream.receive()
                if msg is None:
                    obs["receive"] = "eof"
                    break
        except RPCError as e:
            obs["receive"] = e.code
            obs["message"] = e.message
        obs["is_done"] = stream.is_done
        try:
            stream.send(b"too late")
            obs["send"] = "ok"
        except ConnectPluginError as e:
            obs["send"] = e.status
        self.wait_finished.set()

    def duplex(self, stream):
        """Full-duplex: a helper thread receives requests; this thread sends a tick for each and
        an extra one every time the queue is idle, until the client half-closes."""
        import queue

        q = queue.Queue()

        def reader():
            try:
                for msg in stream:
                    q.put(("msg", msg))
                q.put(("end", None))
            except RPCError as e:
                q.put(("error", e))

        t = threading.Thread(target=reader, daemon=True)
        t.start()
        while True:
            kind, item = q.get()
            if kind == "msg":
                stream.send(b"got:" + item)
            elif kind == "end":
                return
            else:
                raise item

    def early_return(self, stream):
        got = self.early_return_got = []
        self.early_return_done = done = threading.Event()

        def reader():
            try:
                for msg in stream:
                    got.append(msg)
                time.sleep(0.2)  # by now the handler's return has completed
                stream.receive()
            except BaseException as e:
                got.append(e)
            done.set()

        threading.Thread(target=reader, daemon=True).start()
        time.sleep(0.1)  # let the reader block in receive

    def unary_echo(self, request, ctx):
        return request

    def unary_info(self, request, ctx):
        return json.dumps({"protocol": ctx.protocol, "peer": None if ctx.peer is None else ctx.peer.subject,
                           "request_headers": [[k, v.hex()] for k, v in ctx.request_headers]}).encode()

    def register(self, server):
        server.register_stream(SUM, MethodKind.CLIENT_STREAM, self.sum)
        server.register_stream(COUNT, MethodKind.SERVER_STREAM, self.count)
        server.register_stream(GEN, "server_stream", self.gen)
        server.register_stream(ECHO, MethodKind.BIDI_STREAM, self.echo)
        server.register_stream(FAIL, MethodKind.SERVER_STREAM, self.fail)
        server.register_stream(FAIL_EXPLICIT, "bidi", self.fail_explicit)
        server.register_stream(BOOM, MethodKind.CLIENT_STREAM, self.boom)
        server.register_stream(INFO, 2, self.info)
        server.register_stream(WAIT, MethodKind.BIDI_STREAM, self.wait)
        server.register_stream(DUPLEX, MethodKind.BIDI_STREAM, self.duplex)
        server.register_stream(EARLY_RETURN, MethodKind.BIDI_STREAM, self.early_return)
        server.register_unary(UNARY_ECHO, self.unary_echo)
        server.register_unary(UNARY_GET, self.unary_echo)
        server.set_no_side_effects(UNARY_GET)
        server.register_unary(UNARY_INFO, self.unary_info)


class Running:
    def __init__(self):
        self.service = StreamService()
        self.server = Server(handler_threads=16)
        self.service.register(self.server)
        self.address = self.server.listen_tcp("127.0.0.1:0")
        self.server.start()
        self.url = "http://" + self.address

    def client(self, protocol="connect", http="2", **kw):
        return Client(self.url, protocol=protocol, http_version=http, **kw)

    def close(self):
        self.server.close()


@pytest.fixture(scope="module")
def running():
    r = Running()
    yield r
    r.close()


# ---------------------------------------------------------------------------------------------------
# Every shape x protocol x HTTP version
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("protocol,http", PROTOCOL_HTTP, ids=PH_IDS)
def test_client_streaming(running, protocol, http):
    with running.client(protocol, http) as c:
        assert c.client_stream(SUM, (str(i).encode() for i in range(1, 101))) == b"5050"
        assert c.client_stream(SUM, []) == b"0"  # zero request messages
        with c.stream(SUM, MethodKind.CLIENT_STREAM) as s:
            for i in (1, 2, 3):
                s.send(str(i).encode())
            s.close_send()
            s.close_send()  # idempotent
            assert s.receive() == b"6"
            assert s.receive() is None
            assert s.receive() is None  # stays at the end
            assert s.header("x-count") == b"3"
            assert s.trailer("x-sum-trailer") == b"done"
            assert s.done


@pytest.mark.parametrize("protocol,http", PROTOCOL_HTTP, ids=PH_IDS)
def test_server_streaming(running, protocol, http):
    with running.client(protocol, http) as c:
        assert list(c.server_stream(COUNT, b"5")) == [b"%06d" % i for i in range(5)]
        assert list(c.server_stream(COUNT, b"0")) == []
        assert list(c.server_stream(GEN, b"3")) == [b"gen-0", b"gen-1", b"gen-2"]
        with c.stream(COUNT, "server_stream") as s:
            s.send(b"2")
            with pytest.raises(ConnectPluginError) as info:
                s.send(b"2")  # a server-streaming method takes exactly one request
            assert info.value.status is Status.STATE
            s.close_send()
            assert list(s) == [b"000000", b"000001"]


@pytest.mark.parametrize("codec", ["proto", "json"])
@pytest.mark.parametrize("protocol,http", PROTOCOL_HTTP, ids=PH_IDS)
def test_bidi_half_duplex(running, protocol, http, codec):
    msgs = [b"a", b"bb", b"", b"\x00\xff" * 1000]
    with running.client(protocol, http, codec=codec) as c:
        with c.bidi_stream(ECHO, iter(msgs), headers={"x-test": "t1"}) as s:
            got = list(s)
            assert got == [b"echo:" + m for m in msgs]
            assert s.header("x-protocol") == protocol.encode()
            assert s.header("x-codec") == codec.encode()
            assert s.header("x-echo") == b"t1"
            assert s.header("content-type") is None  # protocol headers are removed
            assert s.trailer("x-trailer") == b"trailer-value"
            assert s.trailer("x-bin-bin") == BIN_TRAILER
        # Or by hand: send everything, half-close, read.
        with c.stream(ECHO, MethodKind.BIDI_STREAM) as s:
            for m in msgs:
                s.send(m)
            s.close_send()
            assert [m for m in s] == [b"echo:" + m for m in msgs]


@pytest.mark.parametrize("protocol,http", H2, ids=H2_IDS)
def test_bidi_full_duplex(running, protocol, http):
    with running.client(protocol, http) as c:
        with c.stream(ECHO, MethodKind.BIDI_STREAM) as s:
            for i in range(20):
                s.send(b"%d" % i)
                assert s.receive() == b"echo:%d" % i  # interleaved: one answer per request
            s.close_send()
            assert s.receive() is None
            assert s.trailer("x-trailer") == b"trailer-value"


@pytest.mark.parametrize("protocol,http", H2, ids=H2_IDS)
def test_bidi_full_duplex_server_helper_thread(running, protocol, http):
    """A handler whose requests are read by a helper thread while the handler thread sends."""
    with running.client(protocol, http) as c:
        with c.stream(DUPLEX, MethodKind.BIDI_STREAM) as s:
            for i in range(10):
                s.send(b"%d" % i)
                assert s.receive() == b"got:%d" % i
            s.close_send()
            assert s.receive() is None


@pytest.mark.parametrize("compression", ["identity", "gzip"])
@pytest.mark.parametrize("protocol,http", PROTOCOL_HTTP, ids=PH_IDS)
def test_large_messages_and_compression(running, protocol, http, compression):
    big = b"compressible " * 50000
    with running.client(protocol, http, compression=compression) as c:
        with c.bidi_stream(ECHO, [big, big[:1000]]) as s:
            assert list(s) == [b"echo:" + big, b"echo:" + big[:1000]]


def test_unary_method_through_a_stream_handle(running):
    for protocol, http in PROTOCOL_HTTP:
        with running.client(protocol, http) as c:
            with c.stream(UNARY_ECHO, MethodKind.UNARY) as s:
                s.send(b"one")
                s.close_send()
                assert list(s) == [b"one"]


# ---------------------------------------------------------------------------------------------------
# What the handler sees
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("codec", ["proto", "json"])
@pytest.mark.parametrize("protocol,http", PROTOCOL_HTTP, ids=PH_IDS)
def test_server_stream_properties(running, protocol, http, codec):
    with running.client(protocol, http, codec=codec, headers={"x-default": "d"}) as c:
        out = list(c.server_stream(INFO, b"\x01\x02", headers=[("x-call", "c"), ("x-bin-bin", b"\x00\xff")],
                                   timeout_ms=10000))
    info = json.loads(out[0])
    assert info["procedure"] == INFO
    assert info["codec"] == codec
    assert info["protocol"] == protocol
    assert (info["kind"], info["kind_name"]) == (2, "SERVER_STREAM")
    headers = {k: bytes.fromhex(v) for k, v in info["headers"]}
    assert headers["x-default"] == b"d"
    assert headers["x-call"] == b"c"
    assert headers["x-bin-bin"] == b"\x00\xff"
    assert "content-type" not in headers
    assert 0 < info["timeout"] <= 10000
    assert info["is_done"] is False
    assert info["peer"] is None  # no TLS
    assert bytes.fromhex(info["request"]) == b"\x01\x02"


def test_server_stream_no_timeout_is_none(running):
    with running.client() as c:
        info = json.loads(next(iter(c.server_stream(INFO, b""))))
    assert info["timeout"] is None


@pytest.mark.parametrize("protocol,http", PROTOCOL_HTTP, ids=PH_IDS)
def test_unary_call_context_protocol_and_peer(running, protocol, http):
    with running.client(protocol, http) as c:
        info = json.loads(c.call_unary(UNARY_INFO, b"", headers={"x-a": "1"}).message)
    assert info["protocol"] == protocol
    assert info["peer"] is None
    assert ["x-a", b"1".hex()] in info["request_headers"]


def test_server_stream_unusable_after_handler_returns(running):
    running.service.streams.clear()
    with running.client() as c:
        with c.bidi_stream(ECHO, [b"x"]) as s:
            list(s)
    stream = running.service.streams[-1]
    assert isinstance(stream, ServerStream)
    assert stream.closed
    assert stream.procedure == ECHO  # copied values stay readable
    for op in (lambda: stream.receive(), lambda: stream.send(b"x"), lambda: stream.timeout_remaining_ms,
               lambda: stream.add_response_trailer("a", "b"), lambda: stream.fail(Code.INTERNAL, "x")):
        with pytest.raises(ValueError, match="already closed"):
            op()


@pytest.mark.parametrize("protocol,http", H2, ids=H2_IDS)
def test_handler_return_waits_for_a_helper_thread_in_receive(running, protocol, http):
    """The binding never lets the library free the stream while another thread is inside a call on
    it: the handler's return waits for the helper's receive, later calls raise ValueError."""
    with running.client(protocol, http) as c:
        with c.stream(EARLY_RETURN, MethodKind.BIDI_STREAM, timeout_ms=10000) as s:
            s.send(b"one")
            time.sleep(0.3)  # the handler has returned; its helper thread still waits in receive
            s.close_send()
            assert s.receive() is None  # the call ended OK once the helper was out of receive
    svc = running.service
    assert svc.early_return_done.wait(5)
    assert svc.early_return_got[0] == b"one"
    assert len(svc.early_return_got) == 2
    assert isinstance(svc.early_return_got[1], ValueError)


# ---------------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("protocol,http", PROTOCOL_HTTP, ids=PH_IDS)
def test_error_after_messages_with_details_and_trailers(running, protocol, http):
    with running.client(protocol, http) as c:
        received = []
        with pytest.raises(RPCError) as info:
            for m in c.server_stream(FAIL, b"3"):
                received.append(m)
        assert received == [b"msg-0", b"msg-1", b"msg-2"]
        e = info.value
        assert e.status is Status.RPC
        assert e.code is Code.FAILED_PRECONDITION
        assert e.message == "it failed: ünïcode"
        assert e.details == DETAILS
        assert ("x-fail-header", b"before-fail") in e.metadata
        assert ("x-fail-trailer", b"trailer-value") in e.metadata

        # Before any message (Connect: end-stream error; gRPC: trailers-only).
        with pytest.raises(RPCError) as info:
            list(c.server_stream(FAIL, b"0"))
        assert (info.value.code, info.value.details) == (Code.FAILED_PRECONDITION, DETAILS)
        assert ("x-fail-trailer", b"trailer-value") in info.value.metadata

        # The same error on every later receive.
        with c.server_stream(FAIL, b"1") as s:
            assert s.receive() == b"msg-0"
            with pytest.raises(RPCError) as first:
                s.receive()
            with pytest.raises(RPCError) as again:
                s.receive()
            assert again.value is first.value
            assert s.done


@pytest.mark.parametrize("protocol,http", PROTOCOL_HTTP, ids=PH_IDS)
def test_explicit_fail(running, protocol, http):
    with running.client(protocol, http) as c:
        with c.bidi_stream(FAIL_EXPLICIT, [b"a", b"b"]) as s:
            assert s.receive() == b"echo:a"
            assert s.receive() == b"echo:b"
            with pytest.raises(RPCError) as info:
                s.receive()
    e = info.value
    assert (e.code, e.message) == (Code.RESOURCE_EXHAUSTED, "explicit failure")
    assert e.details == [DETAILS[0]]
    assert ("x-fail-trailer", b"explicit") in e.metadata


@pytest.mark.parametrize("protocol,http", PROTOCOL_HTTP, ids=PH_IDS)
def test_handler_exception_is_internal(running, protocol, http, caplog):
    with caplog.at_level(logging.ERROR, logger="connectplugin"):
        with running.client(protocol, http) as c:
            with pytest.raises(RPCError) as info:
                c.client_stream(BOOM, [b"1", b"2"])
    assert info.value.code is Code.INTERNAL
    assert "kaboom" in info.value.message
    assert any(r.exc_info and r.exc_info[0] is ValueError for r in caplog.records)


def test_client_stream_error_raised_even_if_sends_fail(running):
    """client_stream() keeps the RPC error when the server fails before every request was sent."""
    with running.client() as c:
        with pytest.raises(RPCError) as info:
            c.client_stream(BOOM, (b"x" * 100000 for _ in range(200)))
    assert info.value.code is Code.INTERNAL


@pytest.mark.parametrize("http", ["1.1", "2"])
def test_unknown_procedure_is_unimplemented(running, http):
    with running.client(http=http) as c:
        with pytest.raises(RPCError) as info:
            list(c.server_stream(SVC + "/Nope", b""))
    assert info.value.code is Code.UNIMPLEMENTED


def test_request_iterator_exception_is_reraised(running):
    def requests():
        yield b"1"
        raise KeyError("from the iterator")

    with running.client() as c:
        # The iterator's exception cancels the call, which unblocks the receive below. The 3 s
        # deadline is only a backstop (see test_cancel_from_another_thread_unblocks_receive).
        with c.bidi_stream(WAIT, requests(), timeout_ms=3000) as s:
            with pytest.raises(KeyError, match="from the iterator"):
                s.receive()
            with pytest.raises(KeyError):
                s.receive()


def test_grpc_needs_http2():
    with pytest.raises(ConnectPluginError) as info:
        Client("http://127.0.0.1:1", protocol="grpc", http_version="1.1")
    assert info.value.status is Status.UNSUPPORTED


def test_unknown_protocol_is_unsupported():
    with pytest.raises(ConnectPluginError) as info:
        Client("http://127.0.0.1:1", protocol="soap")
    assert info.value.status is Status.UNSUPPORTED


# ---------------------------------------------------------------------------------------------------
# Deadlines and cancellation
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["call", "client"])
@pytest.mark.parametrize("protocol,http", PROTOCOL_HTTP, ids=PH_IDS)
def test_stream_deadline(running, protocol, http, how):
    svc = running.service
    svc.reset_wait()
    kwargs = {"timeout_ms": 300} if how == "client" else {}
    with running.client(protocol, http, **kwargs) as c:
        with c.stream(WAIT, MethodKind.BIDI_STREAM, timeout_ms=300 if how == "call" else None) as s:
            s.send(b"x")  # no half-close: the handler keeps waiting for more
            t0 = time.monotonic()
            with pytest.raises(RPCError) as info:
                s.receive()
            elapsed = time.monotonic() - t0
    assert info.value.code is Code.DEADLINE_EXCEEDED
    assert elapsed < 3.0
    assert svc.wait_started.is_set()
    assert svc.wait_finished.wait(10)
    obs = svc.wait_observed
    assert obs["timeout"] is not None and 0 <= obs["timeout"] <= 300
    # The handler's receive failed: the client reset the stream (HTTP/2) or closed the connection
    # (HTTP/1.1), or the deadline passed first; the call is over for the handler too.
    assert obs["receive"] in (Code.CANCELED, Code.DEADLINE_EXCEEDED)
    assert obs["is_done"] is True
    assert obs["send"] is Status.CLOSED


@pytest.mark.parametrize("protocol,http", PROTOCOL_HTTP, ids=PH_IDS)
def test_cancel_before_receive(running, protocol, http):
    """cancel() ends the call: later receives and sends fail with CANCELED, and the handler's receive fails."""
    svc = running.service
    svc.reset_wait()
    with running.client(protocol, http) as c:
        s = c.stream(WAIT, MethodKind.BIDI_STREAM, timeout_ms=10000)
        s.send(b"x")  # no half-close: the handler keeps waiting for more
        assert svc.wait_started.wait(5)
        s.cancel()
        s.cancel()  # again: harmless
        with pytest.raises(RPCError) as info:
            s.receive()
        assert info.value.code is Code.CANCELED
        s.close()
        s.cancel()  # after close: a no-op
    assert svc.wait_finished.wait(5)
    assert svc.wait_observed["receive"] is Code.CANCELED
    assert svc.wait_observed["is_done"] is True


@pytest.mark.parametrize("protocol,http", PROTOCOL_HTTP, ids=PH_IDS)
def test_cancel_from_another_thread_unblocks_receive(running, protocol, http):
    """The header: cancel "Any thread … Blocked send and receive return with CANCELED"."""
    svc = running.service
    svc.reset_wait()
    with running.client(protocol, http) as c:
        # The call's deadline (5 s) is the backstop: without a working cancel the receive would
        # only return then, with DEADLINE_EXCEEDED.
        s = c.stream(WAIT, MethodKind.BIDI_STREAM, timeout_ms=5000)
        s.send(b"x")
        assert svc.wait_started.wait(5)
        cancel_returned = threading.Event()

        def cancel():
            s.cancel()
            cancel_returned.set()

        timer = threading.Timer(0.3, cancel)
        timer.start()
        t0 = time.monotonic()
        with pytest.raises(RPCError) as info:
            s.receive()
        elapsed = time.monotonic() - t0
        timer.join()
        s.close()
    assert cancel_returned.is_set()
    assert info.value.code is Code.CANCELED and 0.25 <= elapsed < 2.0, (
        f"blocked receive returned {info.value.code.name} ({info.value.message}) after {elapsed:.2f} s; "
        "cancel at 0.3 s should end it at once with CANCELED")
    assert svc.wait_finished.wait(5)
    assert svc.wait_observed["receive"] is Code.CANCELED


def test_gil_is_released_while_receive_blocks(running):
    counter = [0]
    stop = threading.Event()

    def spin():
        while not stop.is_set():
            counter[0] += 1
            time.sleep(0.001)

    t = threading.Thread(target=spin)
    t.start()
    try:
        with running.client() as c:
            with c.stream(WAIT, MethodKind.BIDI_STREAM, timeout_ms=500) as s:
                s.send(b"x")
                before = counter[0]
                with pytest.raises(RPCError):
                    s.receive()
                assert counter[0] - before > 50
    finally:
        stop.set()
        t.join()


# ---------------------------------------------------------------------------------------------------
# Volume
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("protocol,http", PROTOCOL_HTTP, ids=PH_IDS)
def test_server_stream_of_10000_messages(running, protocol, http):
    with running.client(protocol, http) as c:
        n = 0
        for i, msg in enumerate(c.server_stream(COUNT, b"10000")):
            assert msg == b"%06d" % i
            n += 1
    assert n == 10000


def test_concurrent_streams_from_threads(running):
    errors = []

    def worker(i, client):
        try:
            for j in range(10):
                msgs = [b"%d-%d-%d" % (i, j, k) for k in range(5)]
                with client.bidi_stream(ECHO, msgs) as s:
                    assert list(s) == [b"echo:" + m for m in msgs]
                assert client.client_stream(SUM, [b"1"] * j) == str(j).encode()
        except BaseException as e:
            errors.append(e)

    for protocol, http in [("connect", "2"), ("grpc", "2"), ("grpcweb", "1.1")]:
        with Client(running.url, protocol=protocol, http_version=http) as client:
            threads = [threading.Thread(target=worker, args=(i, client)) for i in range(8)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(60)
            assert not any(t.is_alive() for t in threads)
    assert errors == []


# ---------------------------------------------------------------------------------------------------
# GET for side-effect-free unary methods
# ---------------------------------------------------------------------------------------------------


def test_use_get_for_no_side_effects(running):
    with running.client(use_get=True) as c:
        # Marked no-side-effects on both ends: sent as GET, which the server accepts.
        assert c.call_unary(UNARY_GET, b"\x01abc", no_side_effects=True).message == b"\x01abc"
        # The server did not mark UnaryEcho: a GET is refused, which shows the call used GET.
        with pytest.raises(RPCError) as info:
            c.call_unary(UNARY_ECHO, b"x", no_side_effects=True)
        assert info.value.code is not Code.OK
        # Without no_side_effects the client POSTs as usual.
        assert c.call_unary(UNARY_ECHO, b"x").message == b"x"
    with running.client() as c:
        # use_get off: no_side_effects alone keeps POST.
        assert c.call_unary(UNARY_ECHO, b"y", no_side_effects=True).message == b"y"


def test_set_no_side_effects_needs_a_registered_unary():
    with Server() as srv:
        with pytest.raises(ConnectPluginError) as info:
            srv.set_no_side_effects("/a.B/Missing")
        assert info.value.status is Status.INVALID_ARGUMENT


# ---------------------------------------------------------------------------------------------------
# Registration and lifecycles
# ---------------------------------------------------------------------------------------------------


def _noop(stream):
    pass


def test_method_kind_parse():
    assert MethodKind.parse("client_stream") is MethodKind.CLIENT_STREAM
    assert MethodKind.parse("Server-Stream") is MethodKind.SERVER_STREAM
    assert MethodKind.parse("bidi") is MethodKind.BIDI_STREAM
    assert MethodKind.parse(0) is MethodKind.UNARY
    with pytest.raises(ValueError):
        MethodKind.parse("sideways")
    with pytest.raises(ValueError):
        MethodKind.parse(7)
    with pytest.raises(TypeError):
        MethodKind.parse(1.5)


def test_register_stream_errors_and_finalizers():
    before = _server._registry_size()
    with Server() as srv:
        srv.register_stream("/a.B/S", MethodKind.BIDI_STREAM, _noop)
        assert _server._registry_size() == before + 1
        for proc, kind in (("/a.B/S", MethodKind.BIDI_STREAM),  # duplicate
                           ("no-slash", MethodKind.BIDI_STREAM),
                           ("/a.B/U", MethodKind.UNARY)):  # unary needs register_unary
            with pytest.raises(ConnectPluginError) as info:
                srv.register_stream(proc, kind, _noop)
            assert info.value.status is Status.INVALID_ARGUMENT
            assert _server._registry_size() == before + 1
        with pytest.raises(ValueError):
            srv.register_stream("/a.B/X", "sideways", _noop)
        with pytest.raises(TypeError):
            srv.register_stream("/a.B/X", MethodKind.BIDI_STREAM, "not callable")
        srv.listen_tcp("127.0.0.1:0")
        srv.start()
        with pytest.raises(ConnectPluginError) as info:
            srv.register_stream("/a.B/Late", MethodKind.CLIENT_STREAM, _noop)
        assert info.value.status is Status.STATE
    assert _server._registry_size() == before


def test_client_stream_use_after_close(running):
    with running.client() as c:
        s = c.stream(ECHO, MethodKind.BIDI_STREAM)
        assert isinstance(s, ClientStream)
        s.close()
        s.close()  # idempotent
        assert s.closed
        for op in (lambda: s.send(b"x"), lambda: s.receive(), lambda: s.close_send()):
            with pytest.raises(ValueError, match="already closed"):
                op()
        with pytest.raises(ValueError):
            with s:
                pass


def test_client_close_cancels_open_streams(running):
    svc = running.service
    svc.reset_wait()
    c = running.client()
    s = c.stream(WAIT, MethodKind.BIDI_STREAM, timeout_ms=10000)
    s.send(b"x")
    assert svc.wait_started.wait(5)
    c.close()  # frees the stream (cancelling the call), then the client
    assert s.closed
    with pytest.raises(ValueError, match="already closed"):
        s.receive()
    with pytest.raises(ValueError, match="already closed"):
        c.stream(ECHO, MethodKind.BIDI_STREAM)
    assert svc.wait_finished.wait(5)
    assert svc.wait_observed["receive"] is Code.CANCELED


def test_garbage_collected_stream_is_freed(running):
    import gc

    svc = running.service
    svc.reset_wait()
    with running.client() as c:
        s = c.stream(WAIT, MethodKind.BIDI_STREAM, timeout_ms=10000)
        s.send(b"x")
        assert svc.wait_started.wait(5)
        del s
        gc.collect()
        assert len(c._streams) == 0
        assert svc.wait_finished.wait(5)  # freeing cancelled the call
        assert svc.wait_observed["receive"] is Code.CANCELED
