"""Plugins reached other than by launching them (issue 8 items 2, 3 and 6): the KV plugins in every
language run in the runtime's remote mode (`kv-plugin-LANG --listen ADDR`: no cookie needed, prints
`listening on ADDR`, serves the control services) and the example hosts in every language reach them
by endpoint URL (`kv-host-LANG --url URL`: handshake through connectplugin.v1.HandshakeService,
dispense, Put/Get/Delete, ping, disconnect) — the 4x4 matrix by URL, over TCP and a Unix socket;
in-process plugins (`kv-host-LANG --in-process`: the host's own KV service served over inproc://);
Shutdown of a remote plugin; and the URL-mode handshake errors (cookie, versions of both sides,
missing plugin name, unreachable, not a plugin)."""
from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import KV_HOST_LINES, REPO, binary, tls_files  # noqa: F401  (fixture)

sys.path.insert(0, str(REPO / "bindings" / "python" / "src"))
import connectplugin  # noqa: E402

from test_goplugin import PLUGIN_LANGS  # noqa: E402

HOST_LANGS = ("c", "go", "python", "swift")
SERVICE = "/connectplugin.examples.kv.v1.KVService/"
COOKIE = ("KV_PLUGIN", "connectplugin-kv")
EXPECTED = KV_HOST_LINES + ["stopped: disconnected"]


class RemotePlugin:
    """kv-plugin-LANG --listen ADDR, started without the plugin cookie in its environment."""

    def __init__(self, lang: str, listen: str, tmp: Path, extra_env: dict[str, str] | None = None) -> None:
        env = {k: v for k, v in os.environ.items() if k != COOKIE[0] and not k.startswith("PLUGIN_")}
        env.update(extra_env or {})
        self.stderr_path = tmp / f"kv-plugin-{lang}.stderr"
        self.cmd = [str(binary(f"kv-plugin-{lang}")), "--listen", listen]
        self.proc = subprocess.Popen(self.cmd, stdout=subprocess.PIPE, stderr=open(self.stderr_path, "wb"),
                                     stdin=subprocess.DEVNULL, env=env)
        line = b""
        deadline = time.monotonic() + 30
        while not line.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.proc.stdout], [], [], left)[0]:
                self.proc.kill()
                pytest.fail(f"{self.cmd} printed no 'listening on' line in 30 s: {self.stderr()}", pytrace=False)
            b = os.read(self.proc.stdout.fileno(), 1)
            if not b:
                pytest.fail(f"{self.cmd} exited ({self.proc.wait()}) before listening: {self.stderr()}", pytrace=False)
            line += b
        text = line.decode().strip()
        assert text.startswith("listening on "), text
        self.address = text[len("listening on "):]
        scheme = "https://" if "CONNECTPLUGIN_TLS_CERT" in (extra_env or {}) else "http://"
        self.url = "unix://" + self.address[5:] if self.address.startswith("unix:") else scheme + self.address

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")[-2000:]

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            pytest.fail(f"{self.cmd} did not stop within 20 s of SIGTERM: {self.stderr()}", pytrace=False)


@pytest.fixture(scope="module")
def remote_plugins(tmp_path_factory):
    """One remote-mode KV plugin per language, shared by the hosts of every language (a remote
    plugin serves many hosts; a host's kill only disconnects)."""
    tmp = tmp_path_factory.mktemp("remote")
    plugins = {lang: RemotePlugin(lang, "127.0.0.1:0", tmp) for lang in PLUGIN_LANGS}
    yield plugins
    for lang, p in plugins.items():
        rc = p.stop()
        assert rc == 0, f"kv-plugin-{lang} --listen exited {rc} on SIGTERM: {p.stderr()}"


def run_host(host: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(binary(f"kv-host-{host}")), "--repeat", "3", *args], capture_output=True, text=True,
                          timeout=120)


@pytest.mark.parametrize("host", HOST_LANGS)
@pytest.mark.parametrize("lang", PLUGIN_LANGS)
def test_kv_host_by_url(host, lang, remote_plugins):
    """The 4x4 matrix by endpoint URL: kv-host-HOST --url against kv-plugin-LANG --listen."""
    p = remote_plugins[lang]
    r = run_host(host, "--url", p.url)
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == f"started {p.url} pid=0 version=1", r.stdout
    assert lines[1:] == EXPECTED, r.stdout
    assert p.proc.poll() is None, f"kv-plugin-{lang} stopped after a host disconnected: {p.stderr()}"


@pytest.mark.parametrize("lang", PLUGIN_LANGS)
def test_remote_plugin_on_a_unix_socket_stops_on_shutdown(lang, tmp_path):
    """--listen unix:PATH; the Python binding's host by unix:// URL: the control services are
    there (health, PluginControl/Shutdown), Shutdown stops the service with status 0 and removes
    its socket."""
    sock = Path("/tmp") / f"cp-remote-{lang}-{os.getpid()}.sock"
    p = RemotePlugin(lang, f"unix:{sock}", tmp_path)
    try:
        assert p.address == f"unix:{sock}"
        assert p.url == f"unix://{sock}"
        assert (sock.stat().st_mode & 0o777) != 0
        plugin = connectplugin.PluginClient(None, cookie=COOKIE, plugins={1: ["kv"]}, url=p.url)
        try:
            assert plugin.pid == 0 and plugin.negotiated_version == 1
            kv = plugin.dispense("kv")
            assert kv.call_unary(SERVICE + "Put", b"\x0a\x05hello\x12\x05world").message == b""
            assert kv.call_unary(SERVICE + "Get", b"\x0a\x05hello").message == b"\x0a\x05world\x10\x01"
            plugin.ping()
            # grpc.health.v1 answers for the plugin's name; connectplugin.v1.PluginControl/Shutdown stops it.
            assert kv.call_unary("/grpc.health.v1.Health/Check", b"\x0a\x02kv").message == b"\x08\x01"
            assert kv.call_unary("/connectplugin.v1.PluginControl/Shutdown", b"\x12\x04test").message == b"\x08\x01"
            kv.close()
        finally:
            plugin.kill()
        assert p.proc.wait(timeout=20) == 0, p.stderr()
        assert not sock.exists(), f"{sock} left behind"
        assert "connectplugin.v1.PluginControl/Shutdown (test)" in p.stderr()
    finally:
        p.stop()


def test_url_handshake_errors_say_what_to_do(remote_plugins, tmp_path):
    url = remote_plugins["c"].url

    def start(**kw):
        args = dict(cookie=COOKIE, plugins={1: ["kv"]}, url=url, start_timeout_ms=10_000)
        args.update(kw)
        with pytest.raises(connectplugin.ConnectPluginError) as e:
            connectplugin.PluginClient(None, **args)
        return e.value

    e = start(cookie=("KV_PLUGIN", "wrong"))
    assert "refused the handshake: magic cookie mismatch" in e.message, e.message
    e = start(plugins={2: ["kv"], 3: ["kv"]})
    assert "no common app protocol version: the plugin serves version 1, this host supports [2, 3]" in e.message, e.message
    e = start(plugins={1: ["kv", "other"]})
    assert "does not serve [\"other\"] at version 1 (it serves [\"kv\"])" in e.message, e.message
    e = start(url="http://127.0.0.1:1")
    assert e.code == connectplugin.Code.UNAVAILABLE and f"cannot reach plugin at http://127.0.0.1:1" in e.message, e.message
    e = start(url="ftp://x")
    assert "must start with http://, https://, unix:// or inproc://" in e.message, e.message
    # A plain KV server (no control services) is not a plugin in remote mode.
    server = subprocess.Popen([str(binary("kv-server-c")), "--listen", "127.0.0.1:0"], stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True)
    try:
        line = server.stdout.readline().strip()
        assert line.startswith("listening on "), line
        e = start(url="http://" + line[len("listening on "):])
        assert "has no connectplugin.v1.HandshakeService" in e.message, e.message
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=20)
    # Remote plugins survive their hosts' failed handshakes.
    assert remote_plugins["c"].proc.poll() is None


IN_PROCESS_LANGS = HOST_LANGS


@pytest.mark.parametrize("host", IN_PROCESS_LANGS)
def test_kv_host_in_process(host):
    """kv-host-HOST --in-process: the host's own KV service served as a plugin in the host's process
    (inproc://, no socket, no child process), called through the same typed interface."""
    r = run_host(host, "--in-process")
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("started inproc://") and lines[0].endswith(" pid=0 version=1"), r.stdout
    assert lines[1:] == EXPECTED, r.stdout


def test_python_binding_in_process_plugin():
    """The Python binding's in-process API directly: Server.serve_plugin_in_process, then
    PluginClient(url="inproc://NAME") in the same process; stopping the server ends the plugin."""
    server = connectplugin.Server()
    server.register_unary(SERVICE + "Get", lambda req, ctx: b"\x0a\x02hi\x10\x01")
    url = server.serve_plugin_in_process("KV_PLUGIN", "connectplugin-kv", {1: [("kv", "1.0", SERVICE)]},
                                         f"test-inproc-{os.getpid()}")
    assert url == f"inproc://test-inproc-{os.getpid()}"
    try:
        with connectplugin.PluginClient(None, cookie=COOKIE, plugins={1: ["kv"]}, url=url) as plugin:
            kv = plugin.dispense("kv")
            assert kv.call_unary(SERVICE + "Get", b"\x0a\x02hi").message == b"\x0a\x02hi\x10\x01"
            plugin.ping()
            kv.close()
        with pytest.raises(connectplugin.ConnectPluginError) as e:
            connectplugin.PluginClient(None, cookie=("KV_PLUGIN", "nope"), plugins={1: ["kv"]}, url=url)
        assert "magic cookie mismatch" in e.value.message
    finally:
        server.close()
    with pytest.raises(connectplugin.ConnectPluginError) as e:
        connectplugin.PluginClient(None, cookie=COOKIE, plugins={1: ["kv"]}, url=url)
    assert "no server listens under that name" in e.value.message or "was stopped" in e.value.message, e.value.message


FIRST_HOST = r"""
import sys
sys.path.insert(0, sys.argv[1])
import connectplugin
p = connectplugin.PluginClient([sys.argv[2]], cookie=("KV_PLUGIN", "connectplugin-kv"), plugins={1: ["kv"]})
print(p.reattach_info, flush=True)
sys.stdin.readline()      # the test reattached, called and killed the plugin from its own process
status = p.wait_exit(10_000)  # the exit is seen asynchronously (the child watcher), so wait for it
p.kill()
print(status, flush=True)
"""


def proc_gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state in ("Z", "X")


@pytest.mark.parametrize("lang", PLUGIN_LANGS)
def test_reattach_from_a_second_process(lang):
    """A first host process (the Python binding) starts kv-plugin-LANG and prints its reattach
    information; this process reattaches with it, dispenses, calls and kills it (Shutdown; the pid
    is gone); the first host then sees the plugin's exit 0."""
    import json

    first = subprocess.Popen([sys.executable, "-c", FIRST_HOST, str(REPO / "bindings" / "python" / "src"),
                              str(binary(f"kv-plugin-{lang}"))], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        info = first.stdout.readline().strip()
        assert info.startswith("{"), info + first.stderr.read() if first.poll() is not None else info
        cfg = json.loads(info)
        assert cfg["Protocol"] == "grpc" and cfg["ProtocolVersion"] == 1 and cfg["Addr"]["Network"] == "unix", cfg
        pid = cfg["Pid"]
        assert pid > 0 and not proc_gone(pid)
        plugin = connectplugin.PluginClient(None, cookie=COOKIE, plugins={1: ["kv"]}, reattach=info)
        assert plugin.pid == pid and plugin.negotiated_version == 1
        assert plugin.reattach_info == info
        kv = plugin.dispense("kv")
        assert kv.call_unary(SERVICE + "Put", b"\x0a\x05hello\x12\x05world").message == b""
        assert kv.call_unary(SERVICE + "Get", b"\x0a\x05hello").message == b"\x0a\x05world\x10\x01"
        kv.close()
        plugin.ping()
        plugin.kill()
        assert plugin.exit_status == ("unknown", -1)
        assert proc_gone(pid), f"plugin {pid} still runs after the reattached host killed it"
        with pytest.raises(connectplugin.ConnectPluginError) as e:
            connectplugin.PluginClient(None, cookie=COOKIE, plugins={1: ["kv"]}, reattach=info)
        assert f"process {pid} is gone" in e.value.message, e.value.message
        out, err = first.communicate("\n", timeout=30)
        assert first.returncode == 0, err
        assert out.strip() == "('exited', 0)", out + err
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()


def test_reattach_errors_say_what_to_do():
    for text, want in [("nonsense", "is not JSON"), ('{"Protocol":"netrpc"}', "grpc only"),
                       ('{"Protocol":"grpc","ProtocolVersion":1}', "has no Addr"),
                       ('{"ProtocolVersion":1,"Addr":{"Network":"udp","String":"x"}}', 'network "udp"')]:
        with pytest.raises(connectplugin.ConnectPluginError) as e:
            connectplugin.PluginClient(None, cookie=COOKIE, plugins={1: ["kv"]}, reattach=text)
        assert want in e.value.message, e.value.message
    with pytest.raises(connectplugin.ConnectPluginError) as e:
        connectplugin.PluginClient(None, cookie=COOKIE, plugins={2: ["kv"]},
                                   reattach='{"ProtocolVersion":1,"Addr":{"Network":"unix","String":"/nonexistent"},"Pid":0}')
    assert "the plugin chose version 1, this host supports [2]" in e.value.message, e.value.message


def tls_env(files, mutual: bool) -> dict[str, str]:
    env = {"CONNECTPLUGIN_TLS_CERT": str(files.server_cert), "CONNECTPLUGIN_TLS_KEY": str(files.server_key)}
    if mutual:
        env["CONNECTPLUGIN_TLS_CLIENT_CA"] = str(files.ca)
    return env


@pytest.mark.parametrize("mutual", [False, True], ids=["tls", "mtls"])
@pytest.mark.parametrize("lang", PLUGIN_LANGS)
def test_remote_plugin_over_tls(lang, mutual, tls_files, tmp_path):
    """kv-plugin-LANG --listen with CONNECTPLUGIN_TLS_CERT/_KEY (and _CLIENT_CA: mutual TLS) serves
    TLS only: a Python host reaches it by https:// URL with its TLS options (KV calls, ping, info);
    grpcio, an independent TLS peer, gets SERVING from its grpc.health.v1.Health; a plaintext URL and
    (mutual TLS) a host without a client certificate cannot start."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    from test_plugin_hosts import kv_round_trip

    plugin = RemotePlugin(lang, "127.0.0.1:0", tmp_path, tls_env(tls_files, mutual))
    try:
        assert plugin.url.startswith("https://127.0.0.1:"), plugin.url
        client_cert = {"cert_file": str(tls_files.client_cert), "key_file": str(tls_files.client_key)} if mutual else {}
        tls = connectplugin.TLSOptions(ca_file=str(tls_files.ca), **client_cert)
        with connectplugin.PluginClient(None, cookie=COOKIE, plugins={1: ["kv"]}, url=plugin.url, tls=tls) as p:
            kv_round_trip(p)
            assert p.info().id == "kv"

        creds = grpc.ssl_channel_credentials(
            root_certificates=tls_files.ca.read_bytes(),
            private_key=tls_files.client_key.read_bytes() if mutual else None,
            certificate_chain=tls_files.client_cert.read_bytes() if mutual else None)
        with grpc.secure_channel(plugin.address, creds) as ch:
            r = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(service="plugin"), timeout=10)
            assert r.status == health_pb2.HealthCheckResponse.SERVING

        with pytest.raises(connectplugin.ConnectPluginError) as e:
            connectplugin.PluginClient(None, cookie=COOKIE, plugins={1: ["kv"]}, url="http://" + plugin.address,
                                       start_timeout_ms=5_000)
        assert e.value.code == connectplugin.Code.UNAVAILABLE, e.value
        if mutual:
            with pytest.raises(connectplugin.ConnectPluginError) as e:
                connectplugin.PluginClient(None, cookie=COOKIE, plugins={1: ["kv"]}, url=plugin.url,
                                           tls=connectplugin.TLSOptions(ca_file=str(tls_files.ca)), start_timeout_ms=5_000)
            assert e.value.code == connectplugin.Code.UNAVAILABLE, e.value
    finally:
        assert plugin.stop() == 0, plugin.stderr()
    assert '"tls":"' + ("mutual" if mutual else "server") + '"' in plugin.stderr(), plugin.stderr()


def test_remote_tls_errors_say_what_to_do(tls_files, tmp_path):
    """Half a TLS configuration in the environment stops the plugin with a message naming what is
    missing; a host with TLS options and a plain http:// URL is told to use https://."""
    env = {k: v for k, v in os.environ.items() if k != COOKIE[0] and not k.startswith("PLUGIN_")}
    env["CONNECTPLUGIN_TLS_CERT"] = str(tls_files.server_cert)
    r = subprocess.run([str(binary("kv-plugin-python")), "--listen", "127.0.0.1:0"], env=env, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode != 0 and "CONNECTPLUGIN_TLS_KEY" in r.stderr and "listening on" not in r.stdout, r
    env["CONNECTPLUGIN_TLS_KEY"] = str(tmp_path / "missing.key")
    r = subprocess.run([str(binary("kv-plugin-go")), "--listen", "127.0.0.1:0"], env=env, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode != 0 and "missing.key" in r.stderr, r
    with pytest.raises(connectplugin.ConnectPluginError) as e:
        connectplugin.PluginClient(None, cookie=COOKIE, plugins={1: ["kv"]}, url="http://127.0.0.1:1",
                                   tls=connectplugin.TLSOptions(ca_file=str(tls_files.ca)))
    assert "not https://" in e.value.message, e.value.message
