"""connectplugin hosts launching plugins (plugin-wire.md §1.13 b): the Python host (the binding's
PluginClient over the C ABI) and the example hosts kv-host-{c,go,python,swift} load an unmodified HashiCorp go-plugin 1.0.1 KV plugin written in Go
(goplugin/plugin, built from Debian's packages) and the connectplugin KV plugins in every language,
dispenses "kv", calls Put/Get/Delete over gRPC, pings and kills each one."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

from conftest import BIN, HERE, REPO, binary

sys.path.insert(0, str(REPO / "bindings" / "python" / "src"))
import connectplugin  # noqa: E402

from test_goplugin import PLUGIN_LANGS, alive, goplugin_host  # noqa: E402,F401  (fixture reused)

SERVICE = "/connectplugin.examples.kv.v1.KVService/"


@pytest.fixture(scope="session")
def goplugin_kv_plugin(goplugin_host) -> Path:
    exe = goplugin_host.parent / "goplugin-kv-plugin"
    if not exe.is_file():
        pytest.fail(f"GO-PLUGIN KV PLUGIN MISSING: {exe} (Tests/interop/goplugin/build.sh)", pytrace=False)
    return exe


def kv_round_trip(plugin: connectplugin.PluginClient) -> None:
    kv = plugin.dispense("kv")
    try:
        assert kv.call_unary(SERVICE + "Put", b"\x0a\x05hello\x12\x05world").message == b""
        assert kv.call_unary(SERVICE + "Get", b"\x0a\x05hello").message == b"\x0a\x05world\x10\x01"
        assert kv.call_unary(SERVICE + "Delete", b"\x0a\x05hello").message == b"\x08\x01"
        assert kv.call_unary(SERVICE + "Get", b"\x0a\x05hello").message == b""
        with pytest.raises(connectplugin.RPCError) as e:
            kv.call_unary(SERVICE + "Get", b"")
        assert e.value.code == connectplugin.Code.INVALID_ARGUMENT
    finally:
        kv.close()
    plugin.ping()


def launch(path: Path) -> connectplugin.PluginClient:
    return connectplugin.PluginClient([str(path)], cookie=("KV_PLUGIN", "connectplugin-kv"), plugins={1: ["kv"]},
                                      start_timeout_ms=30_000)


def test_python_host_loads_a_goplugin_plugin(goplugin_kv_plugin):
    p = launch(goplugin_kv_plugin)
    pid = p.pid
    assert p.negotiated_version == 1
    kv_round_trip(p)
    p.kill()
    assert p.exit_status == ("exited", 0)
    assert not alive(pid)


@pytest.mark.parametrize("lang", PLUGIN_LANGS)
def test_python_host_loads_connectplugin_plugins(lang):
    p = launch(binary(f"kv-plugin-{lang}"))
    pid = p.pid
    kv_round_trip(p)
    p.kill()
    assert p.exit_status == ("exited", 0), p.exit_status
    assert not alive(pid)


def test_host_errors_say_what_to_do(tmp_path):
    with pytest.raises(connectplugin.ConnectPluginError) as e:
        launch(tmp_path / "missing")
    assert "not found" in e.value.message
    with pytest.raises(connectplugin.ConnectPluginError) as e:
        connectplugin.PluginClient([str(binary("kv-plugin-c"))], cookie=("KV_PLUGIN", "connectplugin-kv"),
                                   plugins={2: ["kv"]})
    assert "the plugin chose version 1, this host supports [2]" in e.value.message


HOST_LANGS = ("c", "go", "python", "swift")


@pytest.mark.parametrize("host", HOST_LANGS)
@pytest.mark.parametrize("lang", PLUGIN_LANGS + ("goplugin",))
def test_kv_host_example(host, lang, goplugin_kv_plugin):
    """examples/bin/kv-host-HOST (the README's host) end to end against every plugin, go-plugin's too."""
    import subprocess

    plugin = goplugin_kv_plugin if lang == "goplugin" else binary(f"kv-plugin-{lang}")
    r = subprocess.run([str(binary(f"kv-host-{host}")), "--repeat", "3", "--plugin", str(plugin)], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    assert lines[1:] == ["put greeting ok", "get greeting found=true value=hello", "delete greeting existed=true",
                         "get greeting found=false", "ping ok", "stopped: exited 0"], r.stdout
    assert lines[0].startswith(f"started {plugin} pid=") and lines[0].endswith("version=1"), r.stdout
