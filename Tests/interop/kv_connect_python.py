#!/usr/bin/env python3
"""The KV example served and called by connect-python (the reference peer of the interop tests).

Server (all six methods of examples/proto/README.md, on a real ASGI server):

    python3 kv_connect_python.py --listen 127.0.0.1:0 [--server uvicorn|hypercorn]
        [--tls-cert CERT --tls-key KEY [--tls-client-ca CA]]
    python3 kv_connect_python.py --listen unix:/tmp/kv.sock --server hypercorn

  connect-python serves Connect, gRPC and gRPC-Web on one route. uvicorn speaks HTTP/1.1 only and
  has no ASGI trailers, so it serves Connect and gRPC-Web (gRPC is refused there); hypercorn speaks
  HTTP/1.1 and h2c (prior knowledge) or, with TLS, ALPN h2/http1.1, and has the trailers extension
  that gRPC needs. The socket is bound here (port 0 picks a free port) and handed to the server, so
  the printed `listening on ADDR` line always carries the bound address. SIGTERM/SIGINT stop it
  gracefully (exit 0).

Client:

    python3 kv_connect_python.py --url http://127.0.0.1:8080 [--codec proto|json] [--http 1.1|2]
        [--compression gzip|identity] [--protocol connect|grpc|grpcweb] [--scenario unary|stream]
        [--tls-ca CA] [--cert CERT --key KEY]

  Built on connect-python's generated KVServiceClientSync over pyqwest; `--http 2` is h2c with
  prior knowledge (or h2 over TLS with https:// URLs). pyqwest has no Unix-socket transport, so
  unix:// URLs are refused (exit 2). `--compression` picks the request compression (connect-python's
  default is gzip). `--scenario unary` (default) prints the five lines of examples/README.md;
  `--scenario stream` runs the streaming scenario of examples/proto/README.md (Tests/interop/
  kvscenario.py).
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
from connectrpc.errors import ConnectError, ErrorDetail  # noqa: E402
from connectrpc.protocol import ProtocolType  # noqa: E402

import kvscenario as sc  # noqa: E402
from kv.v1 import kv_connect, kv_pb2  # noqa: E402
from kvstore import EmptyKey, ReservedKey, Store  # noqa: E402

EMPTY_KEY = sc.EMPTY_KEY
PROTOCOLS = {"connect": ProtocolType.CONNECT, "grpc": ProtocolType.GRPC, "grpcweb": ProtocolType.GRPC_WEB}


# ------------------------------------------------------------------------------------------------
# Server
# ------------------------------------------------------------------------------------------------


def _reserved_error() -> ConnectError:
    from google.rpc import error_details_pb2
    from protobuf.wkt import Any

    info = error_details_pb2.ErrorInfo(reason=sc.ERROR_REASON, domain=sc.ERROR_DOMAIN,
                                       metadata={"key": sc.ERROR_KEY})
    detail = Any(type_url=f"type.googleapis.com/{sc.ERROR_INFO_TYPE}", value=info.SerializeToString())
    return ConnectError(Code.FAILED_PRECONDITION, sc.RESERVED_MESSAGE, details=[ErrorDetail(detail)])


def _rpc_error(e: Exception) -> ConnectError:
    if isinstance(e, ReservedKey):
        return _reserved_error()
    if isinstance(e, EmptyKey):
        return ConnectError(Code.INVALID_ARGUMENT, EMPTY_KEY)
    raise e


class KVStore:
    """KVService over kvstore.Store (examples/proto/README.md). Every handler runs on the one
    asyncio loop, so watcher sinks can use asyncio queues directly."""

    def __init__(self) -> None:
        self.store = Store()

    async def put(self, request, ctx):
        try:
            self.store.put(request.key, request.value)
        except (ReservedKey, EmptyKey) as e:
            raise _rpc_error(e) from None
        return kv_pb2.PutResponse()

    async def get(self, request, ctx):
        if request.key == sc.SLOW_KEY:
            await asyncio.sleep(sc.SLOW_SECONDS)
        try:
            value = self.store.get(request.key)
        except (ReservedKey, EmptyKey) as e:
            raise _rpc_error(e) from None
        if value is not None:
            return kv_pb2.GetResponse(value=value, found=True)
        return kv_pb2.GetResponse(found=False)

    async def delete(self, request, ctx):
        try:
            existed = self.store.delete(request.key)
        except (ReservedKey, EmptyKey) as e:
            raise _rpc_error(e) from None
        return kv_pb2.DeleteResponse(existed=existed)

    async def list(self, request, ctx):
        try:
            items = self.store.list(request.prefix)
        except ReservedKey as e:
            raise _rpc_error(e) from None
        for k, v in items:
            yield kv_pb2.ListResponse(key=k, value=v)

    async def put_many(self, request, ctx):
        n = 0
        async for req in request:
            try:
                self.store.put(req.key, req.value)
            except (ReservedKey, EmptyKey) as e:
                raise _rpc_error(e) from None
            n += 1
        return kv_pb2.PutManyResponse(count=n)

    async def watch(self, request, ctx):
        events: asyncio.Queue = asyncio.Queue()
        end, fail = object(), object()
        watcher = self.store.watch(events.put_nowait)

        async def read_requests():
            try:
                async for req in request:
                    try:
                        self.store.add_prefix(watcher, req.prefix)
                    except ReservedKey as e:
                        events.put_nowait((fail, e))
                        return
                events.put_nowait((end, None))
            except Exception as e:  # noqa: BLE001 - the request stream broke: end the call
                events.put_nowait((fail, e))

        reader = asyncio.create_task(read_requests())
        try:
            while True:
                item = await events.get()
                if isinstance(item, tuple) and item[0] is end:
                    return
                if isinstance(item, tuple) and item[0] is fail:
                    if isinstance(item[1], ConnectError):
                        raise item[1]
                    raise _rpc_error(item[1]) from None
                yield kv_pb2.WatchEvent(key=item.key, value=item.value, deleted=item.deleted)
        finally:
            reader.cancel()
            self.store.unwatch(watcher)


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


async def serve_uvicorn(app, sock: socket.socket, addr: str, tls=None) -> None:
    import contextlib

    import uvicorn

    class Server(uvicorn.Server):
        # uvicorn re-raises a captured SIGTERM after shutdown (exit by signal); we want exit 0.
        @contextlib.contextmanager
        def capture_signals(self):
            yield

    ssl_kw = {}
    if tls is not None:
        import ssl

        cert, key, client_ca = tls
        ssl_kw = {"ssl_certfile": cert, "ssl_keyfile": key}
        if client_ca:
            ssl_kw.update(ssl_ca_certs=client_ca, ssl_cert_reqs=ssl.CERT_REQUIRED)
    config = uvicorn.Config(app, lifespan="off", log_level="warning", timeout_graceful_shutdown=5,
                            http="h11", **ssl_kw)
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


def _patch_hypercorn_h2() -> None:
    """hypercorn 0.18 kills the whole HTTP/2 connection (`KeyError` in H2Protocol._handle_events)
    when DATA arrives for a stream it has already answered and closed, e.g. a bidi/client stream
    whose server ended the call with an error before the client's last DATA/END_STREAM
    (pgjones/hypercorn issue #329, unmerged fixes in PRs #312, #334, #365). Every other call on that
    connection then fails, which made the scenario flaky. Same fix as those PRs: drop such DATA and
    only acknowledge it for connection-level flow control."""
    import h2.events
    from hypercorn.protocol.h2 import H2Protocol

    if getattr(H2Protocol._handle_events, "_kv_patched", False):
        return
    original = H2Protocol._handle_events

    async def _handle_events(self, events):
        # One event at a time: a RequestReceived earlier in the batch creates the stream that a
        # later DataReceived belongs to.
        for event in events:
            if isinstance(event, h2.events.DataReceived) and event.stream_id not in self.streams:
                self.connection.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                await self._flush()
                continue
            await original(self, [event])

    _handle_events._kv_patched = True
    H2Protocol._handle_events = _handle_events


async def serve_hypercorn(app, sock: socket.socket, addr: str, tls=None) -> None:
    from hypercorn.asyncio import serve
    from hypercorn.config import Config

    _patch_hypercorn_h2()

    config = Config()
    config.bind = [f"fd://{sock.fileno()}"]
    config.graceful_timeout = 5
    config.keep_alive_max_requests = 1_000_000  # default 1000: a shared test server would drop connections
    config.loglevel = "WARNING"
    config.accesslog = None
    if tls is not None:
        import ssl

        config.certfile, config.keyfile, client_ca = tls
        if client_ca:
            config.ca_certs = client_ca
            config.cert_reqs = ssl.CERT_REQUIRED
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
    tls = None
    if args.tls_cert or args.tls_key or args.tls_client_ca:
        if not (args.tls_cert and args.tls_key):
            print("error: --tls-cert and --tls-key go together", file=sys.stderr)
            return 2
        tls = (args.tls_cert, args.tls_key, args.tls_client_ca)
    sock, addr = bind(args.listen)
    app = make_app()
    try:
        if args.server == "uvicorn":
            asyncio.run(serve_uvicorn(app, sock, addr, tls))
        else:
            asyncio.run(serve_hypercorn(app, sock, addr, tls))
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


def make_client(url: str, codec: str = "proto", http: str = "2", compression: str = "gzip",
                protocol: str = "connect", tls_ca: str | None = None, cert: str | None = None,
                key: str | None = None, timeout: float = 30.0):
    """A connect-python KVServiceClientSync; the caller closes it and its `http_transport`."""
    from pyqwest import HTTPVersion, SyncClient, SyncHTTPTransport

    if url.startswith("unix:"):
        raise ValueError("connect-python's HTTP client (pyqwest) cannot dial Unix sockets")
    if bool(cert) != bool(key):
        raise ValueError("--cert and --key go together")
    transport = SyncHTTPTransport(
        http_version=HTTPVersion.HTTP2 if http == "2" else HTTPVersion.HTTP1,
        timeout=timeout,
        enable_otel=False,
        tls_ca_cert=Path(tls_ca).read_bytes() if tls_ca else None,
        tls_cert=Path(cert).read_bytes() if cert else None,
        tls_key=Path(key).read_bytes() if key else None,
    )
    http_client = SyncClient(transport)
    client = kv_connect.KVServiceClientSync(
        url,
        codec=google_protobuf_json_codec() if codec == "json" else google_protobuf_binary_codec(),
        protocol=PROTOCOLS[protocol],
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


# --- the streaming scenario (kvscenario.py) over connect-python ---------------------------------


def _failure(e: ConnectError, received=()) -> sc.RpcFailure:
    return sc.RpcFailure(e.code.value, e.message, [(d.type_name, d.message_bytes) for d in e.details],
                         list(received))


class _Watch:
    """A bidi call driven from this thread: requests come from a queue that pyqwest drains on its
    own (full duplex over HTTP/2), responses are read with recv()."""

    def __init__(self, client) -> None:
        import queue

        self._q: queue.Queue = queue.Queue()
        self._end = object()
        self._responses = None
        self._client = client

    def _requests(self):
        while True:
            item = self._q.get()
            if item is self._end:
                return
            yield kv_pb2.WatchRequest(prefix=item)

    def _start(self):
        if self._responses is None:
            self._responses = iter(self._client.watch(self._requests()))

    def send(self, prefix: str) -> None:
        self._q.put(prefix)

    def close_send(self) -> None:
        self._q.put(self._end)

    def recv(self):
        self._start()
        try:
            ev = next(self._responses)
        except StopIteration:
            return None
        except ConnectError as e:
            raise _failure(e) from None
        return sc.Event(ev.key, ev.value, ev.deleted)

    def cancel(self) -> None:
        self._q.put(self._end)
        if self._responses is not None and hasattr(self._responses, "close"):
            try:
                self._responses.close()
            except Exception:  # noqa: BLE001
                pass


class ConnectPythonAdapter:
    def __init__(self, client) -> None:
        self.c = client

    def _call(self, fn, *a, **kw):
        try:
            return fn(*a, **kw)
        except ConnectError as e:
            raise _failure(e) from None

    def put(self, key, value):
        self._call(self.c.put, kv_pb2.PutRequest(key=key, value=value))

    def get(self, key, timeout_ms=None):
        r = self._call(self.c.get, kv_pb2.GetRequest(key=key), timeout_ms=timeout_ms)
        return r.found, r.value

    def delete(self, key):
        return self._call(self.c.delete, kv_pb2.DeleteRequest(key=key)).existed

    def list(self, prefix):
        got = []
        try:
            for r in self.c.list(kv_pb2.ListRequest(prefix=prefix)):
                got.append((r.key, r.value))
        except ConnectError as e:
            raise _failure(e, got) from None
        return got

    def put_many(self, items):
        reqs = [kv_pb2.PutRequest(key=k, value=v) for k, v in items]
        return self._call(self.c.put_many, iter(reqs)).count

    def watch(self):
        return _Watch(self.c)


def run_client(args) -> int:
    try:
        client = make_client(args.url, args.codec, args.http, args.compression, args.protocol,
                             args.tls_ca, args.cert, args.key)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        if args.scenario == "stream":
            _, ok = sc.run(ConnectPythonAdapter(client), args.http)
            return 0 if ok else 1
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
    p.add_argument("--protocol", choices=sorted(PROTOCOLS), default="connect")
    p.add_argument("--scenario", choices=["unary", "stream"], default="unary")
    p.add_argument("--tls-cert", help="server: certificate chain (PEM)")
    p.add_argument("--tls-key", help="server: private key (PEM)")
    p.add_argument("--tls-client-ca", help="server: require client certificates signed by this CA")
    p.add_argument("--tls-ca", "--ca", dest="tls_ca", help="client: verify the server with this CA (PEM)")
    p.add_argument("--cert", help="client: certificate for mTLS (PEM)")
    p.add_argument("--key", help="client: private key for mTLS (PEM)")
    args = p.parse_args(argv)
    return run_server(args) if args.listen else run_client(args)


if __name__ == "__main__":
    sys.exit(main())
