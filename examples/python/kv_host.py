"""kv-host-python: a plugin host. It launches a KV plugin (written with connectplugin in any
language, or an unmodified HashiCorp go-plugin gRPC plugin), dispenses "kv", runs the scripted
Put/Get/Delete sequence and the streaming methods (PutMany, List, Watch) through the plugin's
KVService, prints the results, and stops the plugin.

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
import threading
from typing import Iterable, Iterator, Optional

import connectplugin
from kv.v1 import kv_pb2

SERVICE = "/connectplugin.examples.kv.v1.KVService/"
CALL_TIMEOUT_MS = 30_000  # every call of the script, streams included, ends within this


class ScriptError(Exception):
    """A step of the script got an answer other than the expected one."""


class KV:
    """The typed client a host dispenses: KVService's methods over the plugin's connection (go-plugin's
    pattern: the client-side factory of the "kv" plugin wraps the dispensed connection)."""

    def __init__(self, client: connectplugin.Client) -> None:
        self._c = client

    def put(self, key: str, value: bytes) -> None:
        self._unary("Put", kv_pb2.PutRequest(key=key, value=value))

    def get(self, key: str) -> tuple[bool, bytes]:
        r = kv_pb2.GetResponse.FromString(self._unary("Get", kv_pb2.GetRequest(key=key)))
        return r.found, r.value

    def delete(self, key: str) -> bool:
        return kv_pb2.DeleteResponse.FromString(self._unary("Delete", kv_pb2.DeleteRequest(key=key))).existed

    def list(self, prefix: str) -> Iterator[kv_pb2.ListResponse]:
        """Server-streaming: every stored key starting with ``prefix``, in sorted order."""
        with self._c.server_stream(SERVICE + "List", kv_pb2.ListRequest(prefix=prefix).SerializeToString(),
                                   timeout_ms=CALL_TIMEOUT_MS) as s:
            for data in s:
                yield kv_pb2.ListResponse.FromString(data)

    def put_many(self, items: Iterable[tuple[str, bytes]]) -> int:
        """Client-streaming: stores each item in order; returns how many were stored."""
        reqs = (kv_pb2.PutRequest(key=k, value=v).SerializeToString() for k, v in items)
        return kv_pb2.PutManyResponse.FromString(self._c.client_stream(SERVICE + "PutMany", reqs,
                                                                       timeout_ms=CALL_TIMEOUT_MS)).count

    def watch(self) -> "Watch":
        """Bidi: add prefixes with ``send``; events for matching keys come from ``receive``."""
        return Watch(self._c.bidi_stream(SERVICE + "Watch", timeout_ms=CALL_TIMEOUT_MS))

    def _unary(self, method: str, request) -> bytes:
        return self._c.call_unary(SERVICE + method, request.SerializeToString(), timeout_ms=CALL_TIMEOUT_MS).message


class Watch:
    """A Watch call: ``send(prefix)``, ``receive()`` (a WatchEvent, or None at the end), ``close_send()``."""

    def __init__(self, stream: connectplugin.ClientStream) -> None:
        self._s = stream

    def __enter__(self) -> "Watch":
        return self

    def __exit__(self, *exc) -> None:
        self._s.close()

    def send(self, prefix: str) -> None:
        self._s.send(kv_pb2.WatchRequest(prefix=prefix).SerializeToString())

    def receive(self) -> Optional[kv_pb2.WatchEvent]:
        data = self._s.receive()
        return None if data is None else kv_pb2.WatchEvent.FromString(data)

    def close_send(self) -> None:
        self._s.close_send()


def script(kv: KV) -> list[str]:
    out = []
    kv.put("greeting", b"hello")
    out.append("put greeting ok")
    found, value = kv.get("greeting")
    out.append(f"get greeting found={str(found).lower()} value={value.decode()}")
    out.append(f"delete greeting existed={str(kv.delete('greeting')).lower()}")
    found, _ = kv.get("greeting")
    out.append(f"get greeting found={str(found).lower()}")

    out.append(f"putmany count={kv.put_many([('s/a', b'1'), ('s/b', b'2')])}")
    out.append("list s/" + "".join(f" {r.key}={r.value.decode()}" for r in kv.list("s/")))
    events = []
    with kv.watch() as w:
        def receive() -> None:
            ev = w.receive()
            if ev is None:
                raise ScriptError(f"watch: the stream ended after {len(events)} events")
            events.append(f" deleted:{ev.key}" if ev.deleted else f" {ev.key}={ev.value.decode()}")

        w.send("s/")
        receive()
        receive()  # the replays of s/a and s/b
        kv.put("s/c", b"3")
        receive()
        kv.delete("s/a")
        receive()
        w.close_send()
        extra = w.receive()
        if extra is not None:
            raise ScriptError(f"watch: an event after the half-close: {extra.key}")
    out.append("watch s/" + "".join(events))
    kv.delete("s/b")
    kv.delete("s/c")
    return out


EXPECTED = ["put greeting ok", "get greeting found=true value=hello", "delete greeting existed=true",
            "get greeting found=false", "putmany count=2", "list s/ s/a=1 s/b=2",
            "watch s/ s/a=1 s/b=2 s/c=3 deleted:s/a"]


_stdout = threading.Lock()


def say(line: str) -> None:
    """One line on stdout, whole: plugin log records arrive on another thread (--logs)."""
    with _stdout:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


class Lines(logging.Handler):
    """--logs: each record as one `say` line."""

    def emit(self, record: logging.LogRecord) -> None:
        say(self.format(record))


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

        h = Lines()
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
            say(f"started {url or args.plugin[0]} pid={plugin.pid} version={plugin.negotiated_version}")
            kv = KV(plugin.dispense("kv"))
            ok = True
            for _ in range(max(1, args.repeat)):
                lines = script(kv)
                ok = ok and lines == EXPECTED
            for line in lines:
                say(line)
            plugin.ping()
            say("ping ok")
        if url:
            if in_process is not None:
                in_process.close()
            say("stopped: disconnected")
            return 0 if ok else 1
        say(f"stopped: {plugin.exit_status[0]} {plugin.exit_status[1]}")
        return 0 if ok and plugin.exit_status == ("exited", 0) else 1
    except connectplugin.ConnectPluginError as e:
        print(f"error: {e.code.wire_name}: {e.message}", file=sys.stderr)
        return 1
    except ScriptError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
