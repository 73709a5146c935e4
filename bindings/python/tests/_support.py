"""A test service served by a Python Server, used by the loopback and lifecycle tests."""

import json
import os
import shutil
import tempfile
import threading
import time

from connectplugin import Code, RPCError, Server

SVC = "/connectplugin.test.v1.TestService"
ECHO = SVC + "/Echo"
INFO = SVC + "/Info"
FAIL = SVC + "/Fail"
BOOM = SVC + "/Boom"
BAD_RETURN = SVC + "/BadReturn"
SLEEP = SVC + "/Sleep"
SLOW = SVC + "/Slow"

BIN_TRAILER = bytes(range(256))
DETAILS = [
    ("google.rpc.ErrorInfo", b"\x0a\x06reason\x12\x06domain"),
    ("connectplugin.test.v1.Custom", b"\x00\x01\x02\xfe\xff"),
]


class TestService:
    """Handlers plus what they observed."""

    __test__ = False

    def __init__(self):
        self.sleep_observed = {}
        self.sleep_entered = threading.Event()
        self.sleep_finished = threading.Event()
        self.slow_entered = threading.Event()
        self.contexts = []

    def echo(self, request, ctx):
        test = ctx.header("x-test")
        if test is not None:
            ctx.add_response_header("x-echo", test)
        b = ctx.header("x-bin-bin")
        if b is not None:
            ctx.add_response_header("x-echo-bin", b)
        ctx.add_response_header("x-codec", ctx.codec)
        ctx.add_response_trailer("x-trailer", b"trailer-value")
        ctx.add_response_trailer("x-bin-bin", BIN_TRAILER)
        self.contexts.append(ctx)
        return request

    def info(self, request, ctx):
        out = {
            "procedure": ctx.procedure,
            "codec": ctx.codec,
            "headers": [[k, v.hex()] for k, v in ctx.headers],
            "timeout": ctx.timeout_remaining_ms,
            "request": request.hex(),
        }
        return json.dumps(out).encode()

    def fail(self, request, ctx):
        ctx.add_response_header("x-fail-header", b"before-fail")
        code = Code(int(request.decode() or "5")) if request[:1].isdigit() else Code.NOT_FOUND
        raise RPCError(code, "it failed: ünïcode", details=DETAILS)

    def boom(self, request, ctx):
        raise ValueError("kaboom")

    def bad_return(self, request, ctx):
        return 42

    def sleep(self, request, ctx):
        self.sleep_observed.clear()
        self.sleep_observed["timeout"] = ctx.timeout_remaining_ms
        self.sleep_entered.set()
        deadline = time.monotonic() + 5
        while not ctx.is_done and time.monotonic() < deadline:
            time.sleep(0.01)
        self.sleep_observed["done"] = ctx.is_done
        self.sleep_observed["remaining_after"] = ctx.timeout_remaining_ms
        self.sleep_finished.set()
        return b"too late"

    def slow(self, request, ctx):
        self.slow_entered.set()
        time.sleep(float(request.decode() or "0.5"))
        return b"slow-done"

    def register(self, server):
        server.register_unary(ECHO, self.echo)
        server.register_unary(INFO, self.info)
        server.register_unary(FAIL, self.fail)
        server.register_unary(BOOM, self.boom)
        server.register_unary(BAD_RETURN, self.bad_return)
        server.register_unary(SLEEP, self.sleep)
        server.register_unary(SLOW, self.slow)


class Running:
    """A started server listening on TCP and on a Unix socket."""

    def __init__(self, **server_kwargs):
        self.service = TestService()
        self.server = Server(**server_kwargs)
        self.service.register(self.server)
        self.tcp = self.server.listen_tcp("127.0.0.1:0")
        self.dir = tempfile.mkdtemp(prefix="cp-py-")
        self.sock = os.path.join(self.dir, "s.sock")
        self.unix = self.server.listen_unix(self.sock)
        self.server.start()

    def url(self, transport):
        if transport == "tcp":
            return "http://" + self.tcp
        return "unix://" + self.sock

    def close(self):
        self.server.close()
        shutil.rmtree(self.dir, ignore_errors=True)
