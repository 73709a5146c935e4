"""Idle streams cannot starve the handler pool (issue 7 item 8): streams that never end are bounded
per connection, per peer and in total through the C ABI options; unary calls still succeed while
they are open; once they close, the extra handler threads exit after the idle thread timeout."""

import time

import pytest

from connectplugin import Client, Code, ConnectPluginError, RPCError, Server

SVC = "/connectplugin.test.v1.LimitService"
WATCH = SVC + "/Watch"  # server streaming: "ready", then open until the client goes away
ECHO = SVC + "/Echo"


def watch(stream):
    stream.receive()
    stream.send(b"ready")
    deadline = time.monotonic() + 120  # never forever, even if the test goes wrong
    while not stream.is_done and time.monotonic() < deadline:
        time.sleep(0.05)


def eventually(seconds, cond):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.05)
    return cond()


def open_watches(url, connections, per_connection):
    clients, admitted, refused = [], [], []
    for _ in range(connections):
        c = Client(url, http_version="2")
        clients.append(c)
        streams = [c.server_stream(WATCH, b"", timeout_ms=120_000) for _ in range(per_connection)]
        for s in streams:
            try:
                assert s.receive() == b"ready"
                admitted.append(s)
            except RPCError as e:
                refused.append(e)
                s.close()
    return clients, admitted, refused


def test_idle_streams_do_not_starve_unary_calls_and_threads_retire():
    server = Server(handler_threads=2, max_streams_per_connection=8, max_streams_per_peer=20, max_streams=100,
                    idle_thread_timeout_ms=300)
    try:
        server.register_stream(WATCH, "server_stream", watch)
        server.register_unary(ECHO, lambda req, ctx: req)
        url = "http://" + server.listen_tcp("127.0.0.1:0")
        server.start()
        assert server.handler_thread_count == 2

        # 5 connections x 16 streams: 8 per connection, 20 from this peer in all; the rest are
        # refused at once instead of holding threads.
        clients, admitted, refused = open_watches(url, 5, 16)
        try:
            assert len(admitted) == 20
            assert len(refused) == 80 - 20
            assert all(e.code == Code.RESOURCE_EXHAUSTED for e in refused)
            assert any("maxStreamsPerConnection" in e.message for e in refused)
            assert any("maxStreamsPerPeer" in e.message for e in refused)
            assert server.handler_thread_count >= 2 + 20 - 2

            # Unary calls from the same peer, on a new connection and on a stream-holding one.
            with Client(url, timeout_ms=5000) as u:
                for i in range(20):
                    assert u.call_unary(ECHO, b"%d" % i).message == b"%d" % i
            assert clients[0].call_unary(ECHO, b"x", timeout_ms=5000).message == b"x"
        finally:
            for s in admitted:
                s.close()
            for c in clients:
                c.close()

        # The threads the streams made the pool start exit once idle.
        assert eventually(30, lambda: server.handler_thread_count == 2), server.handler_thread_count
    finally:
        server.close()


def test_option_ranges():
    with pytest.raises(ValueError):
        Server(max_streams_per_peer=0)
    with pytest.raises(ValueError):
        Server(max_streams=(1 << 20) + 1)
    with pytest.raises(ConnectPluginError):
        Server(idle_thread_timeout_ms=0)  # the library refuses it: 1 to 86400000
    Server(max_streams_per_connection=1, idle_thread_timeout_ms=1).close()
