#!/usr/bin/env python3
"""The KV example client (see examples/README.md), on the connectplugin Python binding.

    kv-client-python --url http://127.0.0.1:43127 [--codec proto|json] [--http 1.1|2]
"""

import argparse
import json
import sys

from google.protobuf import json_format
from google.protobuf.message import DecodeError

import connectplugin
from connectplugin import Code, RPCError
from kv.v1 import kv_pb2

SERVICE = "/connectplugin.examples.kv.v1.KVService"


class Unexpected(Exception):
    pass


class KVClient:
    def __init__(self, client, codec):
        self.client = client
        self.codec = codec

    def call(self, method, request, response_cls):
        if self.codec == "json":
            data = json.dumps(json_format.MessageToDict(request), separators=(",", ":")).encode("utf-8")
        else:
            data = request.SerializeToString()
        resp = self.client.call_unary(f"{SERVICE}/{method}", data)
        msg = response_cls()
        if self.codec == "json":
            json_format.Parse(resp.message.decode("utf-8"), msg, ignore_unknown_fields=True)
        else:
            msg.ParseFromString(resp.message)
        return msg


def text(value):
    return value.decode("utf-8", errors="replace")


def run(kv):
    """Runs the script; returns True when every step had the expected outcome."""
    ok = True

    kv.call("Put", kv_pb2.PutRequest(key="greeting", value=b"hello"), kv_pb2.PutResponse)
    print("put greeting ok")

    r = kv.call("Get", kv_pb2.GetRequest(key="greeting"), kv_pb2.GetResponse)
    print(f"get greeting found={str(r.found).lower()} value={text(r.value)}")
    ok &= r.found and r.value == b"hello"

    d = kv.call("Delete", kv_pb2.DeleteRequest(key="greeting"), kv_pb2.DeleteResponse)
    print(f"delete greeting existed={str(d.existed).lower()}")
    ok &= d.existed

    r = kv.call("Get", kv_pb2.GetRequest(key="greeting"), kv_pb2.GetResponse)
    print(f"get greeting found={str(r.found).lower()}")
    ok &= not r.found

    try:
        r = kv.call("Get", kv_pb2.GetRequest(key=""), kv_pb2.GetResponse)
    except RPCError as e:
        print(f"get <empty> error={e.code.wire_name} message={e.message}")
        ok &= e.code is Code.INVALID_ARGUMENT and e.message == "key must not be empty"
    else:
        print(f"get <empty> found={str(r.found).lower()}")
        ok = False
    sys.stdout.flush()
    return bool(ok)


def main(argv=None):
    parser = argparse.ArgumentParser(description="connectplugin KV example client (Python)")
    parser.add_argument("--url", required=True, help="http://host:port or unix:///path/to.sock")
    parser.add_argument("--codec", choices=["proto", "json"], default="proto")
    parser.add_argument("--http", choices=["1.1", "2"], default="2")
    args = parser.parse_args(argv)

    try:
        with connectplugin.Client(args.url, codec=args.codec, http_version=args.http) as client:
            ok = run(KVClient(client, args.codec))
    except connectplugin.ConnectPluginError as e:
        sys.stdout.flush()
        print(f"error: {e.code.wire_name}: {e.message}", file=sys.stderr)
        return 1
    except (json_format.ParseError, DecodeError, ValueError) as e:  # an undecodable response
        sys.stdout.flush()
        print(f"error: {Code.INTERNAL.wire_name}: could not decode the response: {e}", file=sys.stderr)
        return 1
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
