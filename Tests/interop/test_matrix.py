"""Every example client against every example server (4 x 4), both codecs, both HTTP versions,
over TCP and over Unix sockets; plus the graceful-stop contract of every server.

Each client run must exit 0 and print exactly the five lines of examples/README.md.
IDs read `client-C-server-S-TRANSPORT-CODEC-hN`, so e.g. `-k "client-go and server-swift"`.
"""

from __future__ import annotations

import os
import signal
import time

import pytest

from conftest import CODECS, HTTP_ID, HTTPS, LANGS, check_client_run, client_argv, run_client

CASES = [
    pytest.param(c, s, t, codec, http, id=f"client-{c}-server-{s}-{t}-{codec}-{HTTP_ID[http]}")
    for t in ("tcp", "unix")
    for s in LANGS
    for c in LANGS
    for codec in CODECS
    for http in HTTPS
]


@pytest.mark.parametrize("client,server,transport,codec,http", CASES)
def test_matrix(servers, client, server, transport, codec, http):
    srv = servers.get(server, transport)
    run = run_client(client_argv(client, srv.url, codec, http))
    check_client_run(run, srv)


@pytest.mark.parametrize("transport", ["tcp", "unix"])
@pytest.mark.parametrize("server", [pytest.param(s, id=f"server-{s}") for s in LANGS])
def test_graceful_stop(server_factory, server, transport):
    """Serve one client (same language), then SIGTERM: exit 0 within 10 s; a Unix socket file is
    removed (connectplugin.h: connectplugin_server_listen_unix)."""
    srv = server_factory(server, transport)
    try:
        run = run_client(client_argv(server, srv.url, "proto", "2"))
        check_client_run(run, srv)
    finally:
        t0 = time.monotonic()
        err = srv.stop()
    assert err is None, f"GRACEFUL STOP FAILED after SIGTERM:\n{err}"
    assert time.monotonic() - t0 < 10
    if transport == "unix":
        assert not os.path.exists(srv.path), (
            f"{srv.kind}: socket file {srv.path} still exists after the server stopped\n{srv.describe()}")


@pytest.mark.parametrize("server", [pytest.param(s, id=f"server-{s}") for s in LANGS])
def test_sigint_stops_gracefully(server_factory, server):
    """README: serves until SIGTERM or SIGINT, then exits 0."""
    srv = server_factory(server, "tcp")
    srv.proc.send_signal(signal.SIGINT)
    try:
        rc = srv.proc.wait(timeout=10)
    except Exception:
        srv.proc.kill()
        srv.proc.wait()
        srv.stop_error = "killed after SIGINT timeout"
        pytest.fail(f"{server}: did not exit within 10 s of SIGINT\n{srv.describe()}", pytrace=False)
    srv.stopped_rc = rc
    assert rc == 0, f"{server}: exit code {rc} after SIGINT, expected 0\n{srv.describe()}"
