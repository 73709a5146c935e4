#!/usr/bin/env python3
"""The KV example server (see examples/README.md), on the connectplugin Python binding.

    kv-server-python --listen 127.0.0.1:0
    kv-server-python --listen unix:/tmp/kv.sock
"""

import argparse
import json
import signal
import sys
import threading

from google.protobuf import json_format
from google.protobuf.message import DecodeError

import connectplugin
from connectplugin import Code, RPCError
from kv.v1 import kv_pb2

SERVICE = "/connectplugin.examples.kv.v1.KVService"


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


def require_key(key):
    if not key:
        raise RPCError(Code.INVALID_ARGUMENT, "key must not be empty")


class Store:
    def __init__(self):
        self._lock = threading.Lock()
        self._data = {}

    def put(self, request, ctx):
        req = decode(kv_pb2.PutRequest, request, ctx.codec)
        require_key(req.key)
        with self._lock:
            self._data[req.key] = bytes(req.value)
        return encode(kv_pb2.PutResponse(), ctx.codec)

    def get(self, request, ctx):
        req = decode(kv_pb2.GetRequest, request, ctx.codec)
        require_key(req.key)
        with self._lock:
            value = self._data.get(req.key)
        if value is None:
            resp = kv_pb2.GetResponse(found=False)
        else:
            resp = kv_pb2.GetResponse(value=value, found=True)
        return encode(resp, ctx.codec)

    def delete(self, request, ctx):
        req = decode(kv_pb2.DeleteRequest, request, ctx.codec)
        require_key(req.key)
        with self._lock:
            existed = self._data.pop(req.key, None) is not None
        return encode(kv_pb2.DeleteResponse(existed=existed), ctx.codec)


def main(argv=None):
    parser = argparse.ArgumentParser(description="connectplugin KV example server (Python)")
    parser.add_argument("--listen", required=True, metavar="ADDR", help="host:port (port 0 picks one) or unix:PATH")
    args = parser.parse_args(argv)

    # Block the stop signals before the library creates threads, so they are delivered only to sigwait.
    stop_signals = {signal.SIGTERM, signal.SIGINT}
    signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)

    store = Store()
    try:
        server = connectplugin.Server()
    except connectplugin.ConnectPluginError as e:
        print(f"error: {e.code.wire_name}: {e.message}", file=sys.stderr)
        return 1
    try:
        server.register_unary(SERVICE + "/Put", store.put)
        server.register_unary(SERVICE + "/Get", store.get)
        server.register_unary(SERVICE + "/Delete", store.delete)
        if args.listen.startswith("unix:"):
            address = server.listen_unix(args.listen[len("unix:"):])
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
