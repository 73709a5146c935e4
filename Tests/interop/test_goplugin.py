"""The plugin runtime against real go-plugin peers (plugin-wire.md §1.13 a):

* an unmodified HashiCorp go-plugin 1.0.1 host (Debian's golang-github-hashicorp-go-plugin-dev, built by
  goplugin/build.sh) launches examples/bin/kv-plugin-LANG, dispenses "kv", calls Put/Get/Delete, pings
  and kills it (GRPCController.Shutdown: the plugin must be gone before go-plugin's 2 s SIGKILL);
* an independent grpcio host speaks go-plugin's handshake by hand: the environment, the stdout line,
  grpc.health.v1 over the printed Unix socket, GRPCController.Shutdown;
* the same grpcio host acting as a go-plugin HEAD host: PLUGIN_MULTIPLEX_GRPC (field 7 answered
  "false"), StreamStdio and the broker stream held open, both ended cleanly by Shutdown;
* the plugin run by a person (no cookie) says so and exits 2; SIGTERM stops it gracefully; a plugin
  whose host vanished (SIGKILLed) exits by itself.
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from conftest import HERE, binary

PLUGIN_LANGS = ("c", "go", "python", "swift")
COOKIE = {"KV_PLUGIN": "connectplugin-kv"}
EXPECTED_HOST_LINES = ["ok version 1", "ok put <nil>", 'ok get "hello" true <nil>', "ok delete true <nil>",
                       "ok get-after-delete false <nil>", "ok ping <nil>"]


@pytest.fixture(scope="session")
def goplugin_host(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("goplugin-bin")
    env = {k: v for k, v in os.environ.items() if k != "GOFLAGS"}
    r = subprocess.run(["bash", str(HERE / "goplugin" / "build.sh"), str(out)], capture_output=True, text=True,
                       env=env, timeout=300)
    exe = out / "goplugin-host"
    if r.returncode != 0 or not exe.is_file():
        pytest.fail(f"GO-PLUGIN HOST BUILD FAILED ({r.returncode})\n{r.stdout}{r.stderr}", pytrace=False)
    return exe


def alive(pid: int) -> bool:
    """The process exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def plugin_env(tmp: Path, **extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLUGIN_") and k != "KV_PLUGIN"}
    env.update(COOKIE, PLUGIN_PROTOCOL_VERSIONS="1", PLUGIN_UNIX_SOCKET_DIR=str(tmp), **extra)
    return env


def start_plugin(lang: str, tmp: Path, **extra: str) -> tuple[subprocess.Popen, list[str]]:
    """Launches the plugin as a go-plugin host would and returns it with its handshake fields."""
    p = subprocess.Popen([str(binary(f"kv-plugin-{lang}"))], env=plugin_env(tmp, **extra), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    line = p.stdout.readline()
    if not line:
        p.kill()
        pytest.fail(f"no handshake line from kv-plugin-{lang}; stderr: {p.stderr.read()}", pytrace=False)
    return p, line.rstrip("\n").split("|")


@pytest.mark.parametrize("lang", PLUGIN_LANGS)
def test_goplugin_host_loads_the_plugin(lang, goplugin_host):
    plugin = binary(f"kv-plugin-{lang}")
    r = subprocess.run([str(goplugin_host), str(plugin)], capture_output=True, text=True, timeout=60)
    lines = r.stdout.splitlines()
    assert r.returncode == 0, f"go-plugin host failed ({r.returncode}):\n{r.stdout}\n{r.stderr}"
    assert lines[:len(EXPECTED_HOST_LINES)] == EXPECTED_HOST_LINES, r.stdout
    assert lines[-1].startswith("ok kill"), r.stdout
    # The plugin's hclog lines reached the go-plugin host's logger under the plugin's name.
    assert f"kv-plugin-{lang}: plugin started" in r.stderr, r.stderr
    assert "plugin exited" in r.stderr, r.stderr
    m = re.search(r"plugin started: path=\S+ pid=(\d+)", r.stderr)
    assert m, r.stderr
    assert not alive(int(m.group(1))), "the plugin process outlived its host's Kill"


@pytest.mark.parametrize("lang", PLUGIN_LANGS)
def test_grpcio_host_speaks_the_handshake(lang, tmp_path):
    p, fields = start_plugin(lang, tmp_path)
    try:
        assert len(fields) == 6 and fields[:3] == ["1", "1", "unix"] and fields[4:] == ["grpc", ""], fields
        sock = Path(fields[3])
        assert sock.parent == tmp_path and sock.is_socket()
        assert sock.stat().st_mode & 0o777 == 0o600  # owner-only
        with grpc.insecure_channel(f"unix:{sock}") as ch:
            health = health_pb2_grpc.HealthStub(ch)
            for svc in ("plugin", "", "kv"):
                assert health.Check(health_pb2.HealthCheckRequest(service=svc), timeout=20).status == \
                    health_pb2.HealthCheckResponse.SERVING
            with pytest.raises(grpc.RpcError) as e:
                health.Check(health_pb2.HealthCheckRequest(service="nope"), timeout=20)
            assert e.value.code() == grpc.StatusCode.NOT_FOUND
            shutdown = ch.unary_unary("/plugin.GRPCController/Shutdown")
            assert shutdown(b"", timeout=20) == b""
        assert p.wait(timeout=10) == 0
        assert not sock.exists(), "the socket file stays after shutdown"
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


@pytest.mark.parametrize("lang", PLUGIN_LANGS)
def test_grpcio_host_speaks_the_head_handshake(lang, tmp_path):
    """What a go-plugin HEAD host does beyond 1.0.1: it sets PLUGIN_MULTIPLEX_GRPC (the plugin must
    answer field 7, "false": no multiplexed broker yet), opens plugin.GRPCStdio/StreamStdio at once and
    keeps it open (a HEAD plugin blocks otherwise), and opens plugin.GRPCBroker/StartStream. Both
    streams must be accepted and end when the plugin shuts down."""
    p, fields = start_plugin(lang, tmp_path, PLUGIN_MULTIPLEX_GRPC="true")
    try:
        assert len(fields) == 7 and fields[:3] == ["1", "1", "unix"] and fields[4:] == ["grpc", "", "false"], fields
        with grpc.insecure_channel(f"unix:{fields[3]}") as ch:
            stdio = ch.unary_stream("/plugin.GRPCStdio/StreamStdio")(b"", timeout=30)
            hold = threading.Event()

            def knocks():  # a HEAD host keeps its side of the broker stream open
                hold.wait(30)
                yield from ()

            broker = ch.stream_stream("/plugin.GRPCBroker/StartStream")(knocks(), timeout=30)
            health = health_pb2_grpc.HealthStub(ch)
            assert health.Check(health_pb2.HealthCheckRequest(service="plugin"), timeout=20).status == \
                health_pb2.HealthCheckResponse.SERVING
            # Both streams are open: neither failed at once (e.g. unimplemented).
            assert not stdio.done() and not broker.done()
            assert ch.unary_unary("/plugin.GRPCController/Shutdown")(b"", timeout=20) == b""
            hold.set()
            for name, call in (("StreamStdio", stdio), ("StartStream", broker)):
                try:
                    list(call)
                except grpc.RpcError as e:
                    pytest.fail(f"{name} ended with {e.code()}: {e.details()}", pytrace=False)
                assert call.code() == grpc.StatusCode.OK
        assert p.wait(timeout=10) == 0
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


@pytest.mark.parametrize("lang", PLUGIN_LANGS)
def test_run_directly_says_it_is_a_plugin(lang):
    env = {k: v for k, v in os.environ.items() if k != "KV_PLUGIN"}
    r = subprocess.run([str(binary(f"kv-plugin-{lang}"))], capture_output=True, text=True, env=env, timeout=30)
    assert r.returncode == 2
    assert r.stdout == ""
    assert r.stderr.startswith("This binary is a plugin. These are not meant to be executed directly."), r.stderr


@pytest.mark.parametrize("lang", PLUGIN_LANGS)
def test_wrong_cookie_is_refused(lang, tmp_path):
    env = plugin_env(tmp_path)
    env["KV_PLUGIN"] = "another-app"
    r = subprocess.run([str(binary(f"kv-plugin-{lang}"))], capture_output=True, text=True, env=env, timeout=30)
    assert r.returncode == 1 and r.stdout == ""
    assert "KV_PLUGIN" in r.stderr and "expects another plugin" in r.stderr, r.stderr


@pytest.mark.parametrize("lang", PLUGIN_LANGS)
def test_sigterm_stops_gracefully(lang, tmp_path):
    p, fields = start_plugin(lang, tmp_path)
    try:
        p.send_signal(signal.SIGTERM)
        assert p.wait(timeout=10) == 0
        assert '"reason":"SIGTERM"' in p.stderr.read()
        assert not Path(fields[3]).exists()
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


@pytest.mark.parametrize("lang", PLUGIN_LANGS)
def test_plugin_exits_when_its_host_is_killed(lang, tmp_path):
    """The 'host' is a shell that launched the plugin; SIGKILL it and the plugin notices its parent
    is gone and stops by itself within a second or so."""
    plugin = binary(f"kv-plugin-{lang}")
    pidfile = tmp_path / "pid"
    host = subprocess.Popen(["sh", "-c", f'"{plugin}" > "{tmp_path}/out" 2>&1 & echo $! > "{pidfile}"; wait'],
                            env=plugin_env(tmp_path), start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        def ready() -> bool:
            out = tmp_path / "out"
            return (pidfile.exists() and pidfile.read_text().strip().isdigit() and out.exists()
                    and "|grpc|" in out.read_text())
        while time.monotonic() < deadline and not ready():
            time.sleep(0.05)
        assert ready(), (tmp_path / "out").read_text() if (tmp_path / "out").exists() else "no output"
        pid = int(pidfile.read_text())
        assert alive(pid), (tmp_path / "out").read_text()
        os.kill(host.pid, signal.SIGKILL)
        host.wait()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and alive(pid):
            time.sleep(0.05)
        out = (tmp_path / "out").read_text()
        assert not alive(pid), "the plugin outlived its killed host:\n" + out
        assert "the host that launched this plugin is gone" in out, out
    finally:
        if pidfile.exists() and pidfile.read_text().strip().isdigit() and alive(int(pidfile.read_text())):
            os.kill(int(pidfile.read_text()), signal.SIGKILL)
