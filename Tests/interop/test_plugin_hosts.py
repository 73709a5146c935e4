"""connectplugin hosts launching plugins (plugin-wire.md §1.13 b): the Python host (the binding's
PluginClient over the C ABI) and the example hosts kv-host-{c,go,python,swift} load an unmodified HashiCorp go-plugin 1.0.1 KV plugin written in Go
(goplugin/plugin, built from Debian's packages) and the connectplugin KV plugins in every language,
dispenses "kv", calls Put/Get/Delete over gRPC, pings and kills each one."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

from conftest import BIN, HERE, KV_HOST_LINES, REPO, binary

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
    with pytest.raises(connectplugin.RPCError) as e:
        p.info()  # go-plugin plugins do not serve connectplugin.v1.PluginIdentity
    assert e.value.code == connectplugin.Code.UNIMPLEMENTED and "does not serve" in e.value.message, e.value
    p.kill()
    assert p.exit_status == ("exited", 0)
    assert not alive(pid)


@pytest.mark.parametrize("lang", PLUGIN_LANGS)
def test_python_host_loads_connectplugin_plugins(lang):
    p = launch(binary(f"kv-plugin-{lang}"))
    pid = p.pid
    kv_round_trip(p)
    info = p.info()  # connectplugin.v1.PluginIdentity/GetPluginInfo
    assert info.id == "kv" and info.version, info
    assert info.metadata["app_protocol_version"] == "1", info
    assert info.metadata["runtime"] == f"connectplugin {connectplugin.version()}", info
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
    assert lines[1:] == KV_HOST_LINES + ["stopped: exited 0"], r.stdout
    assert lines[0].startswith(f"started {plugin} pid=") and lines[0].endswith("version=1"), r.stdout


@pytest.mark.parametrize("host", HOST_LANGS)
@pytest.mark.parametrize("lang", PLUGIN_LANGS)
def test_kv_host_receives_plugin_logs(host, lang):
    """A plugin's own log call (Put logs at debug with two fields, through C's connectplugin_plugin_log,
    Go's PluginLogger, Python's logging and Swift's PluginServer.log) is an hclog JSON line on its
    stderr; each host binding parses it and hands it to its logger with the plugin's name, level,
    message and fields (kv-host-HOST --logs prints them), and the runtime's own records too."""
    import subprocess

    plugin = binary(f"kv-plugin-{lang}")
    r = subprocess.run([str(binary(f"kv-host-{host}")), "--logs", "--plugin", str(plugin)], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    logs = [line.split(" ") for line in r.stdout.splitlines() if line.startswith("log ")]
    puts = [w for w in logs if w[1:4] == [f"kv-plugin-{lang}", "debug", "put"]]
    # The script's two unary Puts (greeting, then s/c during the Watch), in order, with their fields.
    # (Hosts may show more fields, such as hclog's @module: only the plugin's own two are compared.)
    fields = [sorted(f for f in w[4:] if f.startswith(("key=", "bytes="))) for w in puts]
    assert fields == [["bytes=5", "key=greeting"], ["bytes=1", "key=s/c"]], r.stdout
    assert any(w[1:5] == [f"kv-plugin-{lang}", "info", "plugin", "stopping"] for w in logs), r.stdout
    assert any(w[1:5] == [f"kv-plugin-{lang}", "debug", "plugin", "started"] for w in logs), r.stdout


LEVELS_PLUGIN = r'''
import logging, sys
sys.path.insert(0, %r)
import connectplugin
srv = connectplugin.Server()
def put(request, ctx):
    log = logging.getLogger("levels")
    log.log(connectplugin.TRACE, "t", extra={"n": 0})
    log.debug("d", extra={"n": 1})
    log.info("i", extra={"n": 2})
    log.warning("w", extra={"n": 3})
    log.error("e", extra={"n": 4})
    connectplugin.plugin_log(2, "direct", [("a", "b"), ("c", 7)])
    return b""
srv.register_unary("/connectplugin.examples.kv.v1.KVService/Put", put)
sys.exit(srv.serve_plugin("KV_PLUGIN", "connectplugin-kv", {1: ["kv"]}))
'''


def test_python_host_logs_plugin_levels_into_logging(tmp_path, caplog):
    """Every level of a plugin's Python logging arrives in the host's logging, on the logger
    connectplugin.plugin.NAME, at the matching level, with its fields; a callback gets the same."""
    import logging
    import os

    exe = tmp_path / "levels-plugin"
    exe.write_text("#!" + sys.executable + "\n" + LEVELS_PLUGIN % str(REPO / "bindings" / "python" / "src"))
    os.chmod(exe, 0o755)
    got = []
    caplog.set_level(connectplugin.TRACE, logger="connectplugin.plugin")
    for logger in (None, lambda name, r: got.append((name, r))):
        p = connectplugin.PluginClient([str(exe)], cookie=("KV_PLUGIN", "connectplugin-kv"), plugins={1: ["kv"]},
                                       start_timeout_ms=30_000, logger=logger)
        kv = p.dispense("kv")
        kv.call_unary(SERVICE + "Put", b"")
        kv.close()
        # The lines are on the plugin's stderr before its answer; the host's reader delivers them soon after.
        import time
        deadline = time.monotonic() + 10
        seen = (lambda: any(r.message == "direct" for _, r in got)) if logger else (
            lambda: any(getattr(r, "plugin_message", None) == "direct" for r in caplog.records))
        while not seen() and time.monotonic() < deadline:
            time.sleep(0.01)
        p.kill()
    recs = [r for r in caplog.records if r.name == "connectplugin.plugin.levels-plugin" and r.plugin_message in "tdiwe"]
    assert [(r.levelno, r.plugin_message, r.plugin_fields.get("n")) for r in recs] == [
        (connectplugin.TRACE, "t", "0"), (logging.DEBUG, "d", "1"), (logging.INFO, "i", "2"),
        (logging.WARNING, "w", "3"), (logging.ERROR, "e", "4")]
    assert all(r.plugin == "levels-plugin" and r.plugin_fields.get("@module") == "levels" for r in recs)
    assert all(len(r.plugin_timestamp) == len("2026-12-04T03:14:03.000000Z") for r in recs)
    mine = [(n, r.level, r.message, r.fields) for n, r in got if r.message in ("t", "d", "i", "w", "e", "direct")]
    assert mine == [("levels-plugin", lv, m, [("@module", "levels"), ("n", str(i))])
                    for i, (lv, m) in enumerate(zip(("trace", "debug", "info", "warn", "error"), "tdiwe"))] + [
        ("levels-plugin", "info", "direct", [("a", "b"), ("c", "7")])]
