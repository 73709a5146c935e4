#!/usr/bin/env python3
"""The KV example served and called by connect-python (the reference peer of the interop tests).

Server (same CLI and behaviour as examples/README.md, on a real ASGI server):

    python3 kv_connect_python.py --listen 127.0.0.1:0 [--server uvicorn|hypercorn]
    python3 kv_connect_python.py --listen unix:/tmp/kv.sock --server hypercorn

  uvicorn speaks HTTP/1.1 only; hypercorn speaks HTTP/1.1 and h2c (prior knowledge, plaintext).
  The socket is bound here (port 0 picks a free port) and handed to the server, so the printed
  `listening on ADDR` line always carries the bound address. SIGTERM/SIGINT stop it gracefully
  (exit 0).

Client (same CLI and five output lines as the example clients):

    python3 kv_connect_python.py --url http://127.0.0.1:8080 [--codec proto|json] [--http 1.1|2]
        [--compression gzip|identity]

  Built on connect-python's generated KVServiceClientSync over pyqwest; `--http 2` is h2c with
  prior knowledge. pyqwest has no Unix-socket transport, so unix:// URLs are refused (exit 2).
  `--compression` picks the request compression; connect-python's default is gzip.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import kvgen  # noqa: E402

kvgen.ensure()

from connectrpc.code import Code  # noqa: E402
from connectrpc.compat import google_protobuf_binary_codec, google_protobuf_json_codec  # noqa: E402
from connectrpc.compression.gzip import GzipCompression  # noqa: E402
from connectrpc.errors import ConnectError  # noqa: E402

from kv.v1 import kv_connect, kv_pb2  # noqa: E402

EMPTY_KEY = "key must not be empty"


# ------------------------------------------------------------------------------------------------
# Server
# ------------------------------------------------------------------------------------------------


class KVStore:
    """KVService over an in-memory dict (single asyncio loop: no lock needed)."""

    def __init__(self) -> None:
        self._data: dict[str, bytes] = {}

    @staticmethod
    def _check(key: str) -> None:
        if not key:
            raise ConnectError(Code.INVALID_ARGUMENT, EMPTY_KEY)

    async def put(self, request, ctx):
        self._check(request.key)
        self._data[request.key] = bytes(request.value)
        return kv_pb2.PutResponse()

    async def get(self, request, ctx):
        self._check(request.key)
        if request.key in self._data:
            return kv_pb2.GetResponse(value=self._data[request.key], found=True)
        return kv_pb2.GetResponse(found=False)

    async def delete(self, request, ctx):
        self._check(request.key)
        existed = self._data.pop(request.key, None) is not None
        return kv_pb2.DeleteResponse(existed=existed)


def make_app():
    return kv_connect.KVServiceASGIApplication(KVStore())


def bind(listen: str) -> tuple[socket.socket, str]:
    """Binds and listens; returns the socket and the bound address as the README prints it."""
    if listen.startswith("unix:"):
        path = listen[len("unix:"):]
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(path)
        sock.listen(128)
        return sock, f"unix:{path}"
    host, _, port = listen.rpartition(":")
    host = host.strip("[]") or "0.0.0.0"
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, int(port)))
    sock.listen(128)
    h, p = sock.getsockname()[:2]
    return sock, (f"[{h}]:{p}" if family == socket.AF_INET6 else f"{h}:{p}")


async def serve_uvicorn(app, sock: socket.socket, addr: str) -> None:
    import contextlib

    import uvicorn

    class Server(uvicorn.Server):
        # uvicorn re-raises a captured SIGTERM after shutdown (exit by signal); we want exit 0.
        @contextlib.contextmanager
        def capture_signals(self):
            yield

    config = uvicorn.Config(app, lifespan="off", log_level="warning", timeout_graceful_shutdown=5,
                            http="h11")
    server = Server(config)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: setattr(server, "should_exit", True))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        if task.done():
            await task
            raise SystemExit("uvicorn stopped before it started")
        await asyncio.sleep(0.01)
    print(f"listening on {addr}", flush=True)
    await task


async def serve_hypercorn(app, sock: socket.socket, addr: str) -> None:
    from hypercorn.asyncio import serve
    from hypercorn.config import Config

    config = Config()
    config.bind = [f"fd://{sock.fileno()}"]
    config.graceful_timeout = 5
    config.loglevel = "WARNING"
    config.accesslog = None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    task = asyncio.create_task(serve(app, config, shutdown_trigger=stop.wait, mode="asgi"))
    # The socket is already listening, so connections made from now on wait in its backlog.
    await asyncio.sleep(0.05)
    if task.done():
        await task
        raise SystemExit("hypercorn stopped before it started")
    print(f"listening on {addr}", flush=True)
    await task


def run_server(args) -> int:
    # A SIGTERM that lands before the asyncio handlers are installed must still mean "exit 0".
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: sys.exit(0))
    sock, addr = bind(args.listen)
    app = make_app()
    try:
        if args.server == "uvicorn":
            asyncio.run(serve_uvicorn(app, sock, addr))
        else:
            asyncio.run(serve_hypercorn(app, sock, addr))
    finally:
        if addr.startswith("unix:"):
            try:
                os.unlink(addr[len("unix:"):])
            except OSError:
                pass
    return 0


# ------------------------------------------------------------------------------------------------
# Client
# ------------------------------------------------------------------------------------------------


def make_client(url: str, codec: str = "proto", http: str = "2", compression: str = "gzip"):
    """A connect-python KVServiceClientSync; the caller closes it and its `http_transport`."""
    from pyqwest import HTTPVersion, SyncClient, SyncHTTPTransport

    if url.startswith("unix:"):
        raise ValueError("connect-python's HTTP client (pyqwest) cannot dial Unix sockets")
    transport = SyncHTTPTransport(
        http_version=HTTPVersion.HTTP2 if http == "2" else HTTPVersion.HTTP1,
        timeout=30.0,
        enable_otel=False,
    )
    http_client = SyncClient(transport)
    client = kv_connect.KVServiceClientSync(
        url,
        codec=google_protobuf_json_codec() if codec == "json" else google_protobuf_binary_codec(),
        send_compression=GzipCompression() if compression == "gzip" else None,
        http_client=http_client,
    )
    client.http_transport = transport
    return client


def run_script(client) -> tuple[list[str], bool]:
    """The README's five steps; returns the printed lines and whether every step was as expected."""
    lines: list[str] = []
    ok = True

    def unexpected(e: ConnectError) -> None:
        nonlocal ok
        ok = False
        print(f"error: {e.code.value}: {e.message}", file=sys.stderr, flush=True)

    try:
        client.put(kv_pb2.PutRequest(key="greeting", value=b"hello"))
        lines.append("put greeting ok")
    except ConnectError as e:
        unexpected(e)
        return lines, False
    try:
        r = client.get(kv_pb2.GetRequest(key="greeting"))
        lines.append(f"get greeting found={str(r.found).lower()} value={r.value.decode(errors='replace')}")
        ok &= r.found and r.value == b"hello"
    except ConnectError as e:
        unexpected(e)
        return lines, False
    try:
        r = client.delete(kv_pb2.DeleteRequest(key="greeting"))
        lines.append(f"delete greeting existed={str(r.existed).lower()}")
        ok &= r.existed
    except ConnectError as e:
        unexpected(e)
        return lines, False
    try:
        r = client.get(kv_pb2.GetRequest(key="greeting"))
        lines.append(f"get greeting found={str(r.found).lower()}")
        ok &= not r.found
    except ConnectError as e:
        unexpected(e)
        return lines, False
    try:
        client.get(kv_pb2.GetRequest(key=""))
        lines.append("get <empty> unexpectedly succeeded")
        ok = False
    except ConnectError as e:
        lines.append(f"get <empty> error={e.code.value} message={e.message}")
        ok &= e.code == Code.INVALID_ARGUMENT and e.message == EMPTY_KEY
    return lines, ok


def run_client(args) -> int:
    try:
        client = make_client(args.url, args.codec, args.http, args.compression)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        lines, ok = run_script(client)
    finally:
        client.close()
        client.http_transport.close()
    for line in lines:
        print(line)
    sys.stdout.flush()
    return 0 if ok else 1


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--listen", help="server: host:port or unix:PATH")
    mode.add_argument("--url", help="client: http://host:port")
    p.add_argument("--server", choices=["uvicorn", "hypercorn"], default="hypercorn")
    p.add_argument("--codec", choices=["proto", "json"], default="proto")
    p.add_argument("--http", choices=["1.1", "2"], default="2")
    p.add_argument("--compression", choices=["gzip", "identity"], default="gzip")
    args = p.parse_args(argv)
    return run_server(args) if args.listen else run_client(args)


if __name__ == "__main__":
    sys.exit(main())
