"""Plugins that misbehave, and hosts that die (issue 8 item 7), against the Python host (the binding's
PluginClient over the C ABI) and real plugin processes: Tests/interop/fault_plugin.py (one misbehaviour
per FAULT_MODE), the KV plugins of examples/bin, and fault_host.py (a host process that is measured or
SIGKILLed). Process liveness is read from /proc (no `ps`).

Covered elsewhere, not repeated: a plugin run without its cookie, or with another app's, exits 2 / 1
with a message (test_goplugin.py); a missing binary and no common version (test_plugin_hosts.py).
"""
from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from conftest import HERE, REPO, binary

sys.path.insert(0, str(REPO / "bindings" / "python" / "src"))
import connectplugin  # noqa: E402

from test_goplugin import alive  # noqa: E402

FAULT_PLUGIN = HERE / "fault_plugin.py"
FAULT_HOST = HERE / "fault_host.py"
FAULT = {"cookie": ("FAULT_PLUGIN", "faulty"), "plugins": {1: ["fault"]}}


def launch(mode: str, **kw) -> connectplugin.PluginClient:
    kw.setdefault("start_timeout_ms", 30_000)
    return connectplugin.PluginClient([str(FAULT_PLUGIN)], env={"FAULT_MODE": mode}, **FAULT, **kw)


def test_crash_during_a_call_fails_unavailable_naming_the_plugin_and_its_status():
    p = launch("crash")
    seen: list = []
    got = threading.Event()

    def on_exit(kind: str, value: int) -> None:
        seen.append((kind, value))
        got.set()

    p.on_exit(on_exit)
    c = p.dispense("fault")
    try:
        assert c.call_unary("/fault.v1.Fault/Echo", b"hi").message == b"hi"
        with pytest.raises(connectplugin.RPCError) as e:
            c.call_unary("/fault.v1.Fault/Crash", b"")
        assert e.value.code == connectplugin.Code.UNAVAILABLE, e.value
        assert "fault_plugin.py" in e.value.message and "exited with status 3" in e.value.message, e.value.message
        assert got.wait(5), "the exit callback did not run"
        assert seen == [("exited", 3)]
        assert p.exit_status == ("exited", 3)
        assert p.wait_exit(0) == ("exited", 3)
        with pytest.raises(connectplugin.ConnectPluginError) as e:
            c.call_unary("/fault.v1.Fault/Echo", b"again")
        assert e.value.code == connectplugin.Code.UNAVAILABLE, e.value
    finally:
        c.close()
        p.kill()
    assert seen == [("exited", 3)], "the exit callback ran more than once"


def test_on_exit_after_a_normal_kill_and_when_already_ended():
    p = connectplugin.PluginClient([str(binary("kv-plugin-c"))], cookie=("KV_PLUGIN", "connectplugin-kv"),
                                   plugins={1: ["kv"]}, start_timeout_ms=30_000)
    seen: list = []
    p.on_exit(lambda k, v: seen.append((k, v)))
    pid = p.pid
    assert p.wait_exit(100) is None and seen == []
    p.kill()
    assert seen == [("exited", 0)] and not alive(pid)


def test_no_handshake_times_out():
    t = time.monotonic()
    with pytest.raises(connectplugin.ConnectPluginError) as e:
        launch("silent", start_timeout_ms=1000)
    assert e.value.code == connectplugin.Code.DEADLINE_EXCEEDED, e.value
    assert "printed no handshake line within 1000 ms" in e.value.message, e.value.message
    assert time.monotonic() - t < 10


def test_junk_on_stdout_shows_the_first_bytes():
    with pytest.raises(connectplugin.ConnectPluginError) as e:
        launch("junk", start_timeout_ms=10_000)
    assert "JUNK-16 this is not a handshake" in e.value.message, e.value.message
    assert "16 other lines before it" in e.value.message, e.value.message


def test_exit_at_once_reports_status_and_stderr():
    with pytest.raises(connectplugin.ConnectPluginError) as e:
        launch("exit")
    assert e.value.code == connectplugin.Code.UNAVAILABLE, e.value
    m = e.value.message
    assert "exited with status 7 before its handshake" in m and "fatal: no config file" in m, m


def test_cookie_mismatch_is_reported_by_the_host():
    with pytest.raises(connectplugin.ConnectPluginError) as e:
        connectplugin.PluginClient([str(binary("kv-plugin-c"))], cookie=("KV_PLUGIN", "another-app"),
                                   plugins={1: ["kv"]}, start_timeout_ms=30_000)
    m = e.value.message
    assert "before its handshake" in m and "KV_PLUGIN" in m, m


def test_plugin_ignoring_shutdown_and_sigterm_is_killed_in_bounded_time():
    p = launch("stubborn", kill_grace_ms=300)
    pid = p.pid
    t = time.monotonic()
    p.kill()
    took = time.monotonic() - t
    assert p.exit_status == ("signaled", signal.SIGKILL), p.exit_status
    assert took < 5, f"kill took {took:.1f} s"
    assert not alive(pid)


def test_wrong_checksum_is_refused_and_the_right_one_accepted():
    with pytest.raises(connectplugin.ConnectPluginError) as e:
        launch("crash", sha256="ab" * 32)
    actual = hashlib.sha256(FAULT_PLUGIN.read_bytes()).hexdigest()
    assert e.value.code == connectplugin.Code.PERMISSION_DENIED, e.value
    assert "ab" * 32 in e.value.message and actual in e.value.message, e.value.message
    with pytest.raises(connectplugin.ConnectPluginError) as e:
        launch("crash", sha256="not-hex")
    assert "64 hex digits" in e.value.message
    p = launch("crash", sha256=actual.upper())
    p.ping()
    p.kill()


def test_flooding_plugin_leaves_the_host_responsive_and_bounded():
    host = subprocess.Popen([sys.executable, str(FAULT_HOST), "flood", str(FAULT_PLUGIN)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    logged = [0]

    def drain() -> None:  # the host logs the plugin's stdout and stderr on its stderr: count it
        while True:
            b = host.stderr.read1(1 << 20)
            if not b:
                return
            logged[0] += len(b)

    t = threading.Thread(target=drain, daemon=True)
    t.start()
    out = host.stdout.read().decode()
    assert host.wait(timeout=120) == 0, out
    t.join(10)
    assert logged[0] > 10 << 20, f"the plugin did not flood (the host logged {logged[0]} bytes)"
    res = json.loads(out.strip().splitlines()[-1])
    assert res["alive"] and res["pings"] >= 10 and res["failures"] == 0, res
    assert res["slowest_ms"] < 2000, res
    assert res["rss_end_kb"] - res["rss_start_kb"] < 100_000, res


def test_plugins_die_with_a_sigkilled_host():
    """A host holding a plugin that ignores SIGTERM and does not watch its parent, and a KV plugin, is
    SIGKILLed: the parent-death signal ends both within a second."""
    host = subprocess.Popen([sys.executable, str(FAULT_HOST), "hold", f"stubborn:{FAULT_PLUGIN}",
                             f"kv:{binary('kv-plugin-c')}", f"kv:{binary('kv-plugin-python')}"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, start_new_session=True)
    pids: list = []
    try:
        line = host.stdout.readline()
        assert line, "the host printed no pids"
        pids = json.loads(line)
        assert len(pids) == 3 and all(alive(p) for p in pids), pids
        os.kill(host.pid, signal.SIGKILL)
        host.wait()
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline and any(alive(p) for p in pids):
            time.sleep(0.02)
        assert not [p for p in pids if alive(p)], "plugins outlived their SIGKILLed host"
    finally:
        if host.poll() is None:
            host.kill()
            host.wait()
        for p in pids:
            if alive(p):
                os.kill(p, signal.SIGKILL)


def test_cleanup_plugins_stops_every_plugin():
    a = launch("crash")
    b = launch("stubborn", kill_grace_ms=200)
    pids = [a.pid, b.pid]
    connectplugin.cleanup_plugins()
    assert not [p for p in pids if alive(p)]
    assert a.exit_status == ("exited", 0) and b.exit_status == ("signaled", signal.SIGKILL)
    a.kill()
    b.kill()


def test_restart_policy_relaunches_and_dispensed_clients_keep_working():
    seen: list = []
    p = launch("crash", max_restarts=2, restart_backoff_ms=(50, 200))
    p.on_exit(lambda k, v: seen.append((k, v)))
    c = p.dispense("fault")
    try:
        first = p.pid
        for n in (1, 2):
            with pytest.raises(connectplugin.RPCError) as e:
                c.call_unary("/fault.v1.Fault/Crash", b"")
            assert e.value.code == connectplugin.Code.UNAVAILABLE and "exited with status 3" in e.value.message, e.value
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and p.restarts < n:
                time.sleep(0.05)
            assert p.restarts == n
            deadline = time.monotonic() + 20
            while True:  # the relaunch handshakes; then the same dispensed client reaches the new process
                try:
                    assert c.call_unary("/fault.v1.Fault/Echo", b"back").message == b"back"
                    break
                except connectplugin.RPCError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
            assert p.pid != first and alive(p.pid) and p.exit_status is None and seen == []
        # The limit is reached: the third crash is final.
        with pytest.raises(connectplugin.RPCError):
            c.call_unary("/fault.v1.Fault/Crash", b"")
        assert p.wait_exit(5000) == ("exited", 3)
        time.sleep(0.5)
        assert p.restarts == 2 and seen == [("exited", 3)]
    finally:
        c.close()
        p.kill()
