"""kv-host-python: a plugin host. It launches a KV plugin (written with connectplugin in any
language, or an unmodified HashiCorp go-plugin gRPC plugin), dispenses "kv", runs the scripted
Put/Get/Delete sequence through the plugin's KVService, prints the results, and stops the plugin.

    kv-host-python --plugin PATH [ARGS...] [--repeat N] [--logs] [--automtls]
    kv-host-python --url URL [--repeat N]       a plugin in remote mode (kv-plugin --listen); kill
                                                only disconnects ("stopped: disconnected")
    kv-host-python --in-process [--repeat N]    kv_server.py's KVService served as a plugin inside
                                                this process (inproc://), no sockets

--logs prints each log record of the plugin (its stderr, parsed as hclog, which the binding logs on
the logger "connectplugin.plugin.NAME") on stdout: "log NAME LEVEL MESSAGE key=value ...".

KV handshake: cookie KV_PLUGIN=connectplugin-kv, app protocol version 1, plugin name "kv".
Exit 0 when every step gave the expected answer.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys

import connectplugin
from kv.v1 import kv_pb2

SERVICE = "/connectplugin.examples.kv.v1.KVService/"


class KV:
    """The typed client a host dispenses: KVService's unary methods over the plugin's connection."""

    def __init__(self, client: connectplugin.Client) -> None:
        self._c = client

    def put(self, key: str, value: bytes) -> None:
        self._c.call_unary(SERVICE + "Put", kv_pb2.PutRequest(key=key, value=value).SerializeToString())

    def get(self, key: str) -> tuple[bool, bytes]:
        r = kv_pb2.GetResponse.FromString(self._c.call_unary(SERVICE + "Get", kv_pb2.GetRequest(key=key).SerializeToString()).message)
        return r.found, r.value

    def delete(self, key: str) -> bool:
        r = kv_pb2.DeleteResponse.FromString(self._c.call_unary(SERVICE + "Delete", kv_pb2.DeleteRequest(key=key).SerializeToString()).message)
        return r.existed


def script(kv: KV) -> list[str]:
    out = []
    kv.put("greeting", b"hello")
    out.append("put greeting ok")
    found, value = kv.get("greeting")
    out.append(f"get greeting found={str(found).lower()} value={value.decode()}")
    out.append(f"delete greeting existed={str(kv.delete('greeting')).lower()}")
    found, _ = kv.get("greeting")
    out.append(f"get greeting found={str(found).lower()}")
    return out


EXPECTED = ["put greeting ok", "get greeting found=true value=hello", "delete greeting existed=true",
            "get greeting found=false"]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="connectplugin KV plugin host (Python)")
    parser.add_argument("--url", help="a plugin serving in remote mode")
    parser.add_argument("--in-process", action="store_true", help="serve this host's own KV service as the plugin")
    parser.add_argument("--plugin", nargs=argparse.REMAINDER, metavar="PATH [ARGS...]",
                        help="the plugin binary and its arguments (last on the command line)")
    parser.add_argument("--repeat", type=int, default=1, help="run the script N times")
    parser.add_argument("--logs", action="store_true", help="print the plugin's log records on stdout")
    parser.add_argument("--automtls", action="store_true", help="go-plugin's AutoMTLS (TLS with exchanged certificates)")
    args = parser.parse_args(argv)
    if args.logs:
        # The binding's default: records on logging.getLogger("connectplugin.plugin." + NAME).
        class Line(logging.Formatter):
            def format(self, r: logging.LogRecord) -> str:
                level = {connectplugin.TRACE: "trace", logging.DEBUG: "debug", logging.INFO: "info",
                         logging.WARNING: "warn"}.get(r.levelno, "error")
                return f"log {r.plugin} {level} {r.getMessage()}"

        h = logging.StreamHandler(sys.stdout)
        h.setFormatter(Line())
        log = logging.getLogger("connectplugin.plugin")
        log.addHandler(h)
        log.setLevel(connectplugin.TRACE)
        log.propagate = False
    url = args.url
    in_process = None
    if args.in_process:
        import kv_server  # this host's own KV service (examples/python/kv_server.py)
        in_process = connectplugin.Server()
        kv_server.register_kv(in_process, kv_server.KVService())
        url = in_process.serve_plugin_in_process("KV_PLUGIN", "connectplugin-kv",
                                                 {1: [("kv", connectplugin.version(), SERVICE)]}, f"kv-host-python-{os.getpid()}")
    if not args.plugin and not url:
        parser.error("--plugin PATH, --url URL or --in-process is required")
    try:
        with connectplugin.PluginClient(None if url else args.plugin, cookie=("KV_PLUGIN", "connectplugin-kv"),
                                        plugins={1: ["kv"]}, url=url,
                                        auto_mtls=args.automtls) as plugin:
            print(f"started {url or args.plugin[0]} pid={plugin.pid} version={plugin.negotiated_version}")
            kv = KV(plugin.dispense("kv"))
            ok = True
            for _ in range(max(1, args.repeat)):
                lines = script(kv)
                ok = ok and lines == EXPECTED
            for line in lines:
                print(line)
            plugin.ping()
            print("ping ok")
        if url:
            if in_process is not None:
                in_process.close()
            print("stopped: disconnected")
            return 0 if ok else 1
        print(f"stopped: {plugin.exit_status[0]} {plugin.exit_status[1]}")
        return 0 if ok and plugin.exit_status == ("exited", 0) else 1
    except connectplugin.ConnectPluginError as e:
        print(f"error: {e.code.wire_name}: {e.message}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
