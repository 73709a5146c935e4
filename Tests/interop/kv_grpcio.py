#!/usr/bin/env python3
"""The KV example served and called by grpcio (gRPC C-core), a real gRPC peer of the interop tests.

Server (all six methods of examples/proto/README.md):

    python3 kv_grpcio.py --listen 127.0.0.1:0 [--tls-cert CERT --tls-key KEY [--tls-client-ca CA]]

  h2c with prior knowledge, or TLS (ALPN h2) with --tls-cert/--tls-key; --tls-client-ca requires
  and verifies a client certificate (mTLS). Also `--listen unix:PATH`. Prints `listening on ADDR`
  once ready; SIGTERM/SIGINT stop it gracefully (in-flight calls get up to 5 s) and it exits 0.

Client (the streaming scenario of examples/proto/README.md, Tests/interop/kvscenario.py):

    python3 kv_grpcio.py --url http://127.0.0.1:8080 [--tls-ca CA] [--cert CERT --key KEY]
        [--compression identity|gzip] [--protocol grpc] [--codec proto] [--http 2] [--scenario stream]

  URL scheme https:// (or any --tls-ca) means TLS. grpcio only speaks gRPC over HTTP/2 with the
  proto codec; the other values of --protocol/--codec/--http are refused with exit 2 (so a matrix
  can pass the same flags to every client). Exit 0 when every step printed its expected line.
"""

from __future__ import annotations

import argparse
import os
import queue
import signal
import sys
import threading
from concurrent import futures
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import kvgen  # noqa: E402

kvgen.ensure()

import grpc  # noqa: E402

import kvscenario as sc  # noqa: E402
from kv.v1 import kv_pb2, kv_pb2_grpc  # noqa: E402
from kvstore import EmptyKey, ReservedKey, Store  # noqa: E402

STATUS_DETAILS = "grpc-status-details-bin"


# ------------------------------------------------------------------------------------------------
# Server
# ------------------------------------------------------------------------------------------------


def _error_info_status():
    """google.rpc.Status{failed_precondition, "key is reserved", [Any(ErrorInfo)]}, serialized."""
    from google.protobuf import any_pb2
    from google.rpc import error_details_pb2, status_pb2

    info = error_details_pb2.ErrorInfo(reason=sc.ERROR_REASON, domain=sc.ERROR_DOMAIN,
                                       metadata={"key": sc.ERROR_KEY})
    detail = any_pb2.Any(type_url=f"type.googleapis.com/{sc.ERROR_INFO_TYPE}", value=info.SerializeToString())
    return status_pb2.Status(code=grpc.StatusCode.FAILED_PRECONDITION.value[0], message=sc.RESERVED_MESSAGE,
                             details=[detail]).SerializeToString()


def _abort(context, e: Exception):
    if isinstance(e, ReservedKey):
        context.set_trailing_metadata(((STATUS_DETAILS, _error_info_status()),))
        context.abort(grpc.StatusCode.FAILED_PRECONDITION, sc.RESERVED_MESSAGE)
    if isinstance(e, EmptyKey):
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, sc.EMPTY_KEY)
    raise e


class KVServicer(kv_pb2_grpc.KVServiceServicer):
    def __init__(self) -> None:
        self.store = Store()

    def Put(self, request, context):
        try:
            self.store.put(request.key, request.value)
        except (ReservedKey, EmptyKey) as e:
            _abort(context, e)
        return kv_pb2.PutResponse()

    def Get(self, request, context):
        if request.key == sc.SLOW_KEY:
            done = threading.Event()
            context.add_callback(done.set)  # the call ended (deadline, cancel): stop waiting
            done.wait(sc.SLOW_SECONDS)
        try:
            value = self.store.get(request.key)
        except (ReservedKey, EmptyKey) as e:
            _abort(context, e)
        return kv_pb2.GetResponse(value=value, found=True) if value is not None else kv_pb2.GetResponse()

    def Delete(self, request, context):
        try:
            existed = self.store.delete(request.key)
        except (ReservedKey, EmptyKey) as e:
            _abort(context, e)
        return kv_pb2.DeleteResponse(existed=existed)

    def List(self, request, context):
        try:
            items = self.store.list(request.prefix)
        except ReservedKey as e:
            _abort(context, e)
        for k, v in items:
            yield kv_pb2.ListResponse(key=k, value=v)

    def PutMany(self, request_iterator, context):
        n = 0
        for req in request_iterator:
            try:
                self.store.put(req.key, req.value)
            except (ReservedKey, EmptyKey) as e:
                _abort(context, e)
            n += 1
        return kv_pb2.PutManyResponse(count=n)

    def Watch(self, request_iterator, context):
        events: queue.Queue = queue.Queue()
        END, FAIL = object(), object()
        watcher = self.store.watch(events.put)

        def read_requests():
            try:
                for req in request_iterator:
                    try:
                        self.store.add_prefix(watcher, req.prefix)
                    except ReservedKey as e:
                        events.put((FAIL, e))
                        return
                events.put((END, None))
            except Exception as e:  # the call was cancelled or broke
                events.put((END, e))

        context.add_callback(lambda: events.put((END, None)))
        reader = threading.Thread(target=read_requests, daemon=True)
        reader.start()
        try:
            while True:
                item = events.get()
                if isinstance(item, tuple) and item[0] is END:
                    return
                if isinstance(item, tuple) and item[0] is FAIL:
                    _abort(context, item[1])
                yield kv_pb2.WatchEvent(key=item.key, value=item.value, deleted=item.deleted)
        finally:
            self.store.unwatch(watcher)


def run_server(args) -> int:
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=32),
                         options=[("grpc.so_reuseport", 0)])
    kv_pb2_grpc.add_KVServiceServicer_to_server(KVServicer(), server)
    listen = args.listen
    if args.tls_cert or args.tls_key:
        if not (args.tls_cert and args.tls_key):
            print("error: --tls-cert and --tls-key go together", file=sys.stderr)
            return 2
        client_ca = Path(args.tls_client_ca).read_bytes() if args.tls_client_ca else None
        creds = grpc.ssl_server_credentials(
            [(Path(args.tls_key).read_bytes(), Path(args.tls_cert).read_bytes())],
            root_certificates=client_ca, require_client_auth=client_ca is not None)
        port = server.add_secure_port(listen, creds)
    else:
        port = server.add_insecure_port(listen)
    if not listen.startswith("unix:") and port == 0:
        print(f"error: cannot listen on {listen}", file=sys.stderr)
        return 1
    server.start()
    if listen.startswith("unix:"):
        addr = listen
    else:
        host = listen.rpartition(":")[0]
        addr = f"{host}:{port}"
    print(f"listening on {addr}", flush=True)
    stop.wait()
    server.stop(grace=5).wait(8)
    if listen.startswith("unix:"):
        try:
            os.unlink(listen[len("unix:"):])
        except OSError:
            pass
    return 0


# ------------------------------------------------------------------------------------------------
# Client
# ------------------------------------------------------------------------------------------------


def _failure(e: grpc.RpcError) -> sc.RpcFailure:
    details = []
    for k, v in (e.trailing_metadata() or ()):
        if k == STATUS_DETAILS:
            from google.rpc import status_pb2

            st = status_pb2.Status.FromString(v)
            details = [(a.type_url.rpartition("/")[2], a.value) for a in st.details]
    return sc.RpcFailure(e.code().name.lower(), e.details() or "", details)


class _Watch:
    def __init__(self, stub) -> None:
        self._q: queue.Queue = queue.Queue()
        self._end = object()
        self._call = stub.Watch(self._requests())

    def _requests(self):
        while True:
            item = self._q.get()
            if item is self._end:
                return
            yield kv_pb2.WatchRequest(prefix=item)

    def send(self, prefix: str) -> None:
        self._q.put(prefix)

    def close_send(self) -> None:
        self._q.put(self._end)

    def recv(self):
        try:
            ev = next(self._call)
        except StopIteration:
            return None
        except grpc.RpcError as e:
            raise _failure(e) from None
        return sc.Event(ev.key, ev.value, ev.deleted)

    def cancel(self) -> None:
        self._q.put(self._end)
        self._call.cancel()


class GrpcioAdapter:
    def __init__(self, channel) -> None:
        self.stub = kv_pb2_grpc.KVServiceStub(channel)

    def _call(self, fn, *a, **kw):
        try:
            return fn(*a, **kw)
        except grpc.RpcError as e:
            raise _failure(e) from None

    def put(self, key, value):
        self._call(self.stub.Put, kv_pb2.PutRequest(key=key, value=value))

    def get(self, key, timeout_ms=None):
        r = self._call(self.stub.Get, kv_pb2.GetRequest(key=key),
                       timeout=None if timeout_ms is None else timeout_ms / 1000)
        return r.found, r.value

    def delete(self, key):
        return self._call(self.stub.Delete, kv_pb2.DeleteRequest(key=key)).existed

    def list(self, prefix):
        got = []
        try:
            for r in self.stub.List(kv_pb2.ListRequest(prefix=prefix)):
                got.append((r.key, r.value))
        except grpc.RpcError as e:
            f = _failure(e)
            f.received = got
            raise f from None
        return got

    def put_many(self, items):
        reqs = [kv_pb2.PutRequest(key=k, value=v) for k, v in items]
        return self._call(self.stub.PutMany, iter(reqs)).count

    def watch(self):
        return _Watch(self.stub)


def make_channel(url: str, tls_ca: str | None, cert: str | None, key: str | None, compression: str):
    options = [("grpc.enable_retries", 0)]
    comp = grpc.Compression.Gzip if compression == "gzip" else grpc.Compression.NoCompression
    if url.startswith("unix:"):
        target = url.replace("unix://", "unix:", 1)
        return grpc.insecure_channel(target, options=options, compression=comp)
    scheme, _, rest = url.partition("://")
    target = rest.rstrip("/")
    if scheme == "https" or tls_ca:
        creds = grpc.ssl_channel_credentials(
            root_certificates=Path(tls_ca).read_bytes() if tls_ca else None,
            private_key=Path(key).read_bytes() if key else None,
            certificate_chain=Path(cert).read_bytes() if cert else None)
        return grpc.secure_channel(target, creds, options=options, compression=comp)
    return grpc.insecure_channel(target, options=options, compression=comp)


def run_client(args) -> int:
    gaps = []
    if args.protocol != "grpc":
        gaps.append(f"--protocol {args.protocol}")
    if args.codec != "proto":
        gaps.append(f"--codec {args.codec}")
    if args.http != "2":
        gaps.append(f"--http {args.http}")
    if gaps:
        print(f"error: grpcio does not support {', '.join(gaps)} (gRPC over HTTP/2, proto only)", file=sys.stderr)
        return 2
    if bool(args.cert) != bool(args.key):
        print("error: --cert and --key go together", file=sys.stderr)
        return 2
    channel = make_channel(args.url, args.tls_ca, args.cert, args.key, args.compression)
    try:
        _, ok = sc.run(GrpcioAdapter(channel), args.http)
    finally:
        channel.close()
    return 0 if ok else 1


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--listen", help="server: host:port or unix:PATH")
    mode.add_argument("--url", help="client: http://host:port, https://host:port or unix:///path")
    p.add_argument("--tls-cert", help="server: certificate chain (PEM)")
    p.add_argument("--tls-key", help="server: private key (PEM)")
    p.add_argument("--tls-client-ca", help="server: require client certificates signed by this CA")
    p.add_argument("--tls-ca", "--ca", dest="tls_ca", help="client: verify the server with this CA (PEM)")
    p.add_argument("--cert", help="client: certificate for mTLS (PEM)")
    p.add_argument("--key", help="client: private key for mTLS (PEM)")
    p.add_argument("--protocol", choices=["connect", "grpc", "grpcweb"], default="grpc")
    p.add_argument("--codec", choices=["proto", "json"], default="proto")
    p.add_argument("--http", choices=["1.1", "2"], default="2")
    p.add_argument("--compression", choices=["identity", "gzip"], default="identity")
    p.add_argument("--scenario", choices=["stream"], default="stream",
                   help="client: only the streaming scenario (examples/proto/README.md)")
    args = p.parse_args(argv)
    return run_server(args) if args.listen else run_client(args)


if __name__ == "__main__":
    sys.exit(main())
