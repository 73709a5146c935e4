#!/usr/bin/env python3
"""The KV example server (see examples/README.md and examples/proto/README.md), on the connectplugin
Python binding: Put, Get, Delete (unary), List (server streaming), PutMany (client streaming) and
Watch (bidi streaming), over Connect, gRPC and gRPC-Web, HTTP/1.1 and HTTP/2, plaintext or TLS.

    kv-server-python --listen 127.0.0.1:0
    kv-server-python --listen unix:/tmp/kv.sock
    kv-server-python --listen 127.0.0.1:0 --tls-cert server.crt --tls-key server.key [--tls-client-ca ca.crt]
"""

import argparse
import json
import logging
import queue
import signal
import sys
import threading
import time

from google.protobuf import json_format
from google.protobuf.message import DecodeError

import connectplugin
from connectplugin import Code, MethodKind, RPCError
from kv.v1 import kv_pb2

SERVICE = "/connectplugin.examples.kv.v1.KVService"

EMPTY_KEY = "key must not be empty"
ERROR_KEY = "__error__"  # reserved: fails with failed_precondition and an ErrorInfo detail
SLOW_KEY = "__slow__"  # Get holds the call for 1 s (the deadline hook)
SLOW_SECONDS = 1.0


# ---------------------------------------------------------------------------------------------------
# Codecs and errors
# ---------------------------------------------------------------------------------------------------


def decode(cls, data, codec):
    msg = cls()
    try:
        if codec == "json":
            json_format.Parse(data.decode("utf-8"), msg, ignore_unknown_fields=True)
        else:
            msg.ParseFromString(data)
    except (json_format.ParseError, DecodeError, UnicodeDecodeError, ValueError) as e:
        raise RPCError(Code.INVALID_ARGUMENT, f"could not decode {cls.DESCRIPTOR.full_name} ({codec}): {e}") from None
    return msg


def encode(msg, codec):
    if codec == "json":
        return json.dumps(json_format.MessageToDict(msg), separators=(",", ":")).encode("utf-8")
    return msg.SerializeToString()


def _varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _field(number, value):
    """A length-delimited protobuf field."""
    return _varint(number << 3 | 2) + _varint(len(value)) + value


def error_info(reason, domain, metadata):
    """google.rpc.ErrorInfo{reason = 1, domain = 2, map<string, string> metadata = 3}, serialized by
    hand (no googleapis dependency)."""
    out = _field(1, reason.encode()) + _field(2, domain.encode())
    for k, v in sorted(metadata.items()):
        out += _field(3, _field(1, k.encode()) + _field(2, v.encode()))
    return out


def reserved_key_error():
    detail = ("google.rpc.ErrorInfo", error_info("RESERVED_KEY", "kv.examples.connectplugin", {"key": ERROR_KEY}))
    return RPCError(Code.FAILED_PRECONDITION, "key is reserved", details=[detail])


def check_key(key):
    if not key:
        raise RPCError(Code.INVALID_ARGUMENT, EMPTY_KEY)
    if key == ERROR_KEY:
        raise reserved_key_error()


def check_prefix(prefix):
    if prefix == ERROR_KEY:
        raise reserved_key_error()


# ---------------------------------------------------------------------------------------------------
# The store
# ---------------------------------------------------------------------------------------------------


class Watcher:
    """One Watch call: its prefixes and its event queue (filled under the store lock)."""

    def __init__(self):
        self.prefixes = []
        self.events = queue.Queue()

    def matches(self, key):
        return any(key.startswith(p) for p in self.prefixes)


class Store:
    """One map from key to bytes, shared by every call. Mutations notify the watchers under the store
    lock, so a watcher's replay and its live events are never reordered, lost or doubled."""

    def __init__(self):
        self._lock = threading.Lock()
        self._data = {}
        self._watchers = set()

    def _notify(self, key, value, deleted):
        for w in self._watchers:
            if w.matches(key):
                w.events.put(("event", kv_pb2.WatchEvent(key=key, value=value, deleted=deleted)))

    def put(self, key, value):
        check_key(key)
        value = bytes(value)
        with self._lock:
            self._data[key] = value
            self._notify(key, value, False)

    def get(self, key):
        check_key(key)
        with self._lock:
            return self._data.get(key)

    def delete(self, key):
        check_key(key)
        with self._lock:
            existed = self._data.pop(key, None) is not None
            if existed:
                self._notify(key, b"", True)
            return existed

    def list(self, prefix):
        check_prefix(prefix)
        with self._lock:
            return sorted((k, v) for k, v in self._data.items() if k.startswith(prefix))

    def watch(self):
        w = Watcher()
        with self._lock:
            self._watchers.add(w)
        return w

    def add_prefix(self, w, prefix):
        """Replays the keys that already match (sorted) and watches the prefix from now on."""
        check_prefix(prefix)
        with self._lock:
            for k in sorted(k for k in self._data if k.startswith(prefix)):
                w.events.put(("event", kv_pb2.WatchEvent(key=k, value=self._data[k], deleted=False)))
            w.prefixes.append(prefix)

    def unwatch(self, w):
        with self._lock:
            self._watchers.discard(w)


# ---------------------------------------------------------------------------------------------------
# Handlers
# ---------------------------------------------------------------------------------------------------


class KVService:
    def __init__(self):
        self.store = Store()

    # Unary: fn(request bytes, ctx) -> response bytes.

    def put(self, request, ctx):
        req = decode(kv_pb2.PutRequest, request, ctx.codec)
        # As a plugin, serve_plugin's logging handler makes this an hclog line the host parses.
        logging.getLogger("kv").debug("put", extra={"key": req.key, "bytes": len(req.value)})
        self.store.put(req.key, req.value)
        return encode(kv_pb2.PutResponse(), ctx.codec)

    def get(self, request, ctx):
        req = decode(kv_pb2.GetRequest, request, ctx.codec)
        value = self.store.get(req.key)
        if req.key == SLOW_KEY:
            # The deadline hook: hold the call for up to 1 s, but stop as soon as it is over
            # (deadline passed, client gone); the library then answers deadline_exceeded itself.
            end = time.monotonic() + SLOW_SECONDS
            while time.monotonic() < end and not ctx.is_done:
                time.sleep(0.01)
        if value is None:
            resp = kv_pb2.GetResponse(found=False)
        else:
            resp = kv_pb2.GetResponse(value=value, found=True)
        return encode(resp, ctx.codec)

    def delete(self, request, ctx):
        req = decode(kv_pb2.DeleteRequest, request, ctx.codec)
        existed = self.store.delete(req.key)
        return encode(kv_pb2.DeleteResponse(existed=existed), ctx.codec)

    # Streaming: fn(stream). Messages are pulled by the handler's thread.

    def list(self, stream):
        """Server streaming: one ListRequest, then every matching key in sorted order."""
        data = stream.receive()
        req = decode(kv_pb2.ListRequest, data or b"", stream.codec)
        for key, value in self.store.list(req.prefix):  # one consistent snapshot
            stream.send(encode(kv_pb2.ListResponse(key=key, value=value), stream.codec))

    def put_many(self, stream):
        """Client streaming: stores each item as it arrives; the first invalid one fails the call."""
        count = 0
        for data in stream:
            req = decode(kv_pb2.PutRequest, data, stream.codec)
            self.store.put(req.key, req.value)
            count += 1
        return encode(kv_pb2.PutManyResponse(count=count), stream.codec)

    def watch(self, stream):
        """Bidi streaming. Requests (prefixes) are read by a helper thread, which registers them
        (replaying matching keys into the call's queue); this handler thread sends whatever the
        queue holds: replays, live events, and finally the end (half-close: OK) or an error."""
        w = self.store.watch()

        def read_requests():
            try:
                for data in stream:
                    req = decode(kv_pb2.WatchRequest, data, stream.codec)
                    self.store.add_prefix(w, req.prefix)
                w.events.put(("end", None))
            except RPCError as e:  # a bad request, or the request stream failed (client gone)
                w.events.put(("error", e))
            except BaseException as e:  # never leave the handler waiting
                w.events.put(("error", RPCError(Code.INTERNAL, str(e) or type(e).__name__)))

        reader = threading.Thread(target=read_requests, name="kv-watch-reader", daemon=True)
        reader.start()
        try:
            while True:
                kind, item = w.events.get()
                if kind == "event":
                    stream.send(encode(item, stream.codec))
                elif kind == "end":
                    return  # the client half-closed: end the call OK
                else:
                    raise item  # sent after the events queued before it
        finally:
            self.store.unwatch(w)
            # The reader ends when the client half-closes, cancels, or the call's deadline passes;
            # the binding also waits for it before the stream goes away.


# ---------------------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------------------


def register_kv(server, svc):
    """Registers KVService's handlers (svc: a KVService) on server; kv-host-python --in-process
    uses it too."""
    server.register_unary(SERVICE + "/Put", svc.put)
    server.register_unary(SERVICE + "/Get", svc.get)
    server.set_no_side_effects(SERVICE + "/Get")
    server.register_unary(SERVICE + "/Delete", svc.delete)
    server.register_stream(SERVICE + "/List", MethodKind.SERVER_STREAM, svc.list)
    server.register_stream(SERVICE + "/PutMany", MethodKind.CLIENT_STREAM, svc.put_many)
    server.register_stream(SERVICE + "/Watch", MethodKind.BIDI_STREAM, svc.watch)


def main(argv=None):
    parser = argparse.ArgumentParser(description="connectplugin KV example server (Python)")
    parser.add_argument("--listen", metavar="ADDR", help="host:port (port 0 picks one) or unix:PATH")
    # kv-plugin-python passes --as-plugin: without --listen, serve as a go-plugin compatible plugin;
    # with --listen, in the plugin runtime's remote mode (hosts connect with --url).
    parser.add_argument("--as-plugin", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--tls-cert", metavar="CERT.pem", help="serve TLS only, with this certificate chain")
    parser.add_argument("--tls-key", metavar="KEY.pem", help="the private key of --tls-cert")
    parser.add_argument("--tls-client-ca", metavar="CA.pem",
                        help="require a client certificate signed by this CA (mTLS)")
    args = parser.parse_args(argv)
    plugin_mode = args.as_plugin
    if plugin_mode and args.tls_cert:
        parser.error("kv-plugin-python's remote mode has no TLS yet")
    if not plugin_mode and not args.listen:
        parser.error("--listen is required")
    if bool(args.tls_cert) != bool(args.tls_key):
        parser.error("--tls-cert and --tls-key go together")
    if args.tls_client_ca and not args.tls_cert:
        parser.error("--tls-client-ca needs --tls-cert and --tls-key")
    if args.tls_cert and args.listen.startswith("unix:"):
        parser.error("TLS is for TCP listeners (host:port)")

    # Block the stop signals before the library creates threads, so they are delivered only to sigwait.
    stop_signals = {signal.SIGTERM, signal.SIGINT}
    if not plugin_mode:  # (a plugin's serve turns SIGTERM and SIGINT into a graceful stop itself)
        signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)

    svc = KVService()
    try:
        server = connectplugin.Server()
    except connectplugin.ConnectPluginError as e:
        print(f"error: {e.code.wire_name}: {e.message}", file=sys.stderr)
        return 1
    try:
        register_kv(server, svc)
        if plugin_mode:
            # Blocks until the host calls Shutdown, SIGTERM/SIGINT, or the host is gone.
            return server.serve_plugin("KV_PLUGIN", "connectplugin-kv",
                                       {1: [("kv", connectplugin.version(), SERVICE + "/")]}, listen=args.listen)
        if args.listen.startswith("unix:"):
            address = server.listen_unix(args.listen[len("unix:"):])
        elif args.tls_cert:
            address = server.listen_tls(args.listen, cert_file=args.tls_cert, key_file=args.tls_key,
                                        client_ca_file=args.tls_client_ca)
        else:
            address = server.listen_tcp(args.listen)
        server.start()
        print(f"listening on {address}", flush=True)

        signal.sigwait(stop_signals)
        server.stop(5000)
    except connectplugin.ConnectPluginError as e:
        print(f"error: {e.code.wire_name}: {e.message}", file=sys.stderr)
        return 1
    finally:
        server.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
