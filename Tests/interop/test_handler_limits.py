"""Idle Watch streams cannot starve our KV servers (issue 7 item 8), with grpcio as the client.

5 connections x 256 idle `Watch` streams used to hold all 1024 handler threads, so every unary call
timed out until they closed, and the threads never went away. Now, with the default limits (128
streams per connection, 512 per peer), 512 streams are admitted and the rest fail at once with
RESOURCE_EXHAUSTED; unary calls still answer within 5 s; and once the streams close, the handler
threads ("cp-handler-N", counted in /proc) go back to the server's core count after the idle thread
timeout (10 s by default).

The Go example is the exception for the last check only: Go's runtime clones its own OS threads from
whichever thread it runs on, so they inherit the name "cp-handler-N" of a handler thread that called
into Go, and Go never retires them; /proc cannot tell them from ours. The Go binding's own test
(bindings/go, TestIdleHandlerThreadsRetire) checks the pool shrinks there, through
connectplugin_server_handler_thread_count.
"""

from __future__ import annotations

import os
import threading
import time

import pytest

import kvgen

kvgen.ensure()

import grpc  # noqa: E402

from conftest import LANGS  # noqa: E402
from kv.v1 import kv_pb2, kv_pb2_grpc  # noqa: E402

CONNECTIONS = 5
STREAMS_PER_CONNECTION = 256
ADMITTED = 512  # the default per-peer bound (the per-connection one is 128)
PREFIX = "limits/"


def handler_threads(pid: int) -> int:
    n = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/comm") as f:
                if f.read().startswith("cp-handler-"):
                    n += 1
        except OSError:
            pass  # the thread exited meanwhile
    return n


def eventually(seconds: float, cond) -> bool:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.1)
    return cond()


@pytest.mark.parametrize("server", [pytest.param(s, id=f"server-{s}") for s in LANGS])
def test_idle_watch_streams_do_not_starve_unary_calls(server_factory, server):
    srv = server_factory(server)
    target = f"{srv.host}:{srv.port}"
    release = threading.Event()

    def requests():
        yield kv_pb2.WatchRequest(prefix=PREFIX)
        release.wait(120)  # keeps the request side open: the stream stays idle

    # Separate connections: grpcio would otherwise share one subchannel between the channels.
    channels = [grpc.insecure_channel(target, options=[("grpc.use_local_subchannel_pool", 1)])
                for _ in range(CONNECTIONS + 1)]
    try:
        stub = kv_pb2_grpc.KVServiceStub(channels[-1])
        stub.Put(kv_pb2.PutRequest(key=PREFIX + "k", value=b"v"), timeout=30)
        # The core handler threads name themselves as they start: wait until their count is steady.
        core, end = handler_threads(srv.proc.pid), time.monotonic() + 10
        while time.monotonic() < end:
            time.sleep(0.5)
            now = handler_threads(srv.proc.pid)
            if now == core:
                break
            core = now
        assert core > 0, "no handler thread is named cp-handler-N"
        calls = []
        for ch in channels[:CONNECTIONS]:
            watch = kv_pb2_grpc.KVServiceStub(ch).Watch
            calls += [watch(requests(), timeout=120) for _ in range(STREAMS_PER_CONNECTION)]
        admitted, refused, other = 0, 0, []
        for call in calls:
            try:
                ev = next(call)  # the replay of the one stored key
                assert ev.key == PREFIX + "k" and ev.value == b"v"
                admitted += 1
            except grpc.RpcError as e:
                if e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
                    refused += 1
                else:
                    other.append(f"{e.code()}: {e.details()}")
        assert not other, f"{len(other)} Watch calls failed otherwise, e.g. {other[:3]}"
        assert admitted == ADMITTED
        assert refused == CONNECTIONS * STREAMS_PER_CONNECTION - ADMITTED
        srv.assert_alive("with the Watch streams open")
        held = handler_threads(srv.proc.pid)
        assert held >= ADMITTED

        # Unary calls are answered while the streams stay open, on a new connection and on one
        # that holds 128 of them.
        for i in range(20):
            r = stub.Get(kv_pb2.GetRequest(key=PREFIX + "k"), timeout=5)
            assert r.found and r.value == b"v"
        busy = kv_pb2_grpc.KVServiceStub(channels[0])
        assert busy.Get(kv_pb2.GetRequest(key=PREFIX + "k"), timeout=5).found

        # Closing the streams gives the threads back: they exit after the idle thread timeout.
        release.set()
        for call in calls:
            call.cancel()
    finally:
        release.set()
        for ch in channels:
            ch.close()
    if server != "go":  # see the module docstring
        assert eventually(60, lambda: handler_threads(srv.proc.pid) <= core), \
            f"{handler_threads(srv.proc.pid)} handler threads 60 s after the streams closed (core {core}, held {held})"
    srv.assert_alive()
