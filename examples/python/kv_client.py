#!/usr/bin/env python3
"""The KV example client (see examples/README.md and examples/proto/README.md), on the connectplugin
Python binding.

    kv-client-python --url http://127.0.0.1:43127 [--codec proto|json] [--http 1.1|2]
    kv-client-python --url URL --scenario stream [--protocol connect|grpc|grpcweb] [--codec proto|json]
                     [--http 1.1|2] [--compression identity|gzip]
                     [--tls-ca CA.pem [--cert CERT.pem --key KEY.pem]]

`--scenario unary` (the default) runs the five unary steps of examples/README.md; `--scenario stream`
runs the 18-step streaming scenario of examples/proto/README.md. Exit status: 0 when every line is
the expected one, 1 otherwise (an unexpected error is printed on stderr), 2 for a usage error or an
unsupported flag value.
"""

import argparse
import json
import sys

from google.protobuf import json_format
from google.protobuf.message import DecodeError

import connectplugin
from connectplugin import Code, MethodKind, RPCError
from kv.v1 import kv_pb2

SERVICE = "/connectplugin.examples.kv.v1.KVService"

ERROR_KEY = "__error__"
SLOW_KEY = "__slow__"
SLOW_DEADLINE_MS = 200
RESERVED_ERROR = ("error=failed_precondition message=key is reserved detail=google.rpc.ErrorInfo "
                  "reason=RESERVED_KEY domain=kv.examples.connectplugin key=__error__")

UNARY_LINES = [
    "put greeting ok",
    "get greeting found=true value=hello",
    "delete greeting existed=true",
    "get greeting found=false",
    "get <empty> error=invalid_argument message=key must not be empty",
]


def stream_lines(http):
    """The exact lines of the streaming scenario (examples/proto/README.md)."""
    live = ("watch-live s/a events=4 s/a1=x s/a2=y s/a3=w s/a3=<deleted>" if http == "2"
            else "watch-live skipped (full-duplex bidi needs HTTP/2)")
    return UNARY_LINES + [
        f"get __error__ {RESERVED_ERROR}",
        "get __slow__ error=deadline_exceeded",
        "putmany count=3",
        "putmany <none> count=0",
        "putmany <empty> error=invalid_argument message=key must not be empty",
        "list s/a count=2 s/a1=x s/a2=y",
        "list s/none count=0",
        f"list __error__ {RESERVED_ERROR}",
        "watch s/a,s/b events=3 s/a1=x s/a2=y s/b1=z",
        f"watch s/a,__error__ events=2 s/a1=x s/a2=y {RESERVED_ERROR}",
        live,
        "cleanup deleted=3",
        "list s/ count=0",
    ]


class Unexpected(Exception):
    pass


# ---------------------------------------------------------------------------------------------------
# The typed KV client over connectplugin.Client
# ---------------------------------------------------------------------------------------------------


class KVClient:
    def __init__(self, client, codec):
        self.client = client
        self.codec = codec

    def encode(self, msg):
        if self.codec == "json":
            return json.dumps(json_format.MessageToDict(msg), separators=(",", ":")).encode("utf-8")
        return msg.SerializeToString()

    def decode(self, data, cls):
        msg = cls()
        if self.codec == "json":
            json_format.Parse(data.decode("utf-8"), msg, ignore_unknown_fields=True)
        else:
            msg.ParseFromString(data)
        return msg

    def call(self, method, request, response_cls, timeout_ms=None):
        resp = self.client.call_unary(f"{SERVICE}/{method}", self.encode(request), timeout_ms=timeout_ms)
        return self.decode(resp.message, response_cls)

    # Streaming

    def list(self, prefix, received):
        """List{prefix}: appends every item, formatted KEY=VALUE, to `received` (so that an error
        after some messages still shows them) and returns it."""
        req = self.encode(kv_pb2.ListRequest(prefix=prefix))
        with self.client.server_stream(f"{SERVICE}/List", req) as s:
            for data in s:
                item = self.decode(data, kv_pb2.ListResponse)
                received.append(f"{item.key}={text(item.value)}")
        return received

    def put_many(self, items):
        reqs = (self.encode(kv_pb2.PutRequest(key=k, value=v)) for k, v in items)
        resp = self.client.client_stream(f"{SERVICE}/PutMany", reqs)
        return self.decode(resp, kv_pb2.PutManyResponse).count

    def watch(self):
        return self.client.stream(f"{SERVICE}/Watch", MethodKind.BIDI_STREAM)


# ---------------------------------------------------------------------------------------------------
# Formatting
# ---------------------------------------------------------------------------------------------------


def text(value):
    return value.decode("utf-8", errors="replace")


def _fields(b):
    """(field number, bytes) of the length-delimited fields of a protobuf message."""
    i = 0

    def varint():
        nonlocal i
        shift = n = 0
        while True:
            c = b[i]
            i += 1
            n |= (c & 0x7F) << shift
            if c < 0x80:
                return n
            shift += 7

    while i < len(b):
        tag = varint()
        if tag & 7 == 2:
            n = varint()
            yield tag >> 3, b[i:i + n]
            i += n
        elif tag & 7 == 0:
            varint()
        else:
            raise ValueError(f"unexpected wire type {tag & 7}")


def decode_error_info(data):
    """google.rpc.ErrorInfo{reason = 1, domain = 2, map<string, string> metadata = 3}, by hand."""
    reason, domain, metadata = "", "", {}
    for num, val in _fields(data):
        if num == 1:
            reason = text(val)
        elif num == 2:
            domain = text(val)
        elif num == 3:
            k = v = ""
            for n2, v2 in _fields(val):
                if n2 == 1:
                    k = text(v2)
                elif n2 == 2:
                    v = text(v2)
            metadata[k] = v
    return reason, domain, metadata


def format_error(e, with_message=True):
    s = f"error={e.code.wire_name}"
    if with_message:
        s += f" message={e.message}"
    for type_name, value in e.details:
        type_name = type_name.rsplit("/", 1)[-1]
        s += f" detail={type_name}"
        if type_name == "google.rpc.ErrorInfo":
            reason, domain, metadata = decode_error_info(value)
            s += f" reason={reason} domain={domain}" + "".join(f" {k}={v}" for k, v in sorted(metadata.items()))
    return s


def format_event(ev):
    return f"{ev.key}=<deleted>" if ev.deleted else f"{ev.key}={text(ev.value)}"


def format_failure(step, e, received, with_message=True):
    prefix = ""
    if received:
        prefix = f"events={len(received)} " + "".join(f"{x} " for x in received)
    return f"{step} {prefix}{format_error(e, with_message)}"


# ---------------------------------------------------------------------------------------------------
# Scenarios
# ---------------------------------------------------------------------------------------------------


def run_unary(kv):
    """The five unary steps; returns True when every step had the expected outcome."""
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


class _Stop(Exception):
    pass


def run_stream(kv, http):
    """The streaming scenario; every line is printed (and flushed) as soon as it is known. Returns
    True when the lines are exactly the expected ones."""
    expected = stream_lines(http)
    lines = []

    def emit(line):
        lines.append(line)
        print(line, flush=True)

    def unexpected(step, e):
        sys.stdout.flush()
        if isinstance(e, connectplugin.ConnectPluginError):
            print(f"error: {step}: {e.code.wire_name}: {e.message}", file=sys.stderr, flush=True)
        else:
            print(f"error: {step}: {Code.INTERNAL.wire_name}: {e}", file=sys.stderr, flush=True)
        raise _Stop

    def expect_failure(step, fn, with_message=True):
        received = []
        try:
            r = fn(received)
        except RPCError as e:
            emit(format_failure(step, e, received, with_message))
            return
        except Exception as e:
            unexpected(step, e)
        emit(f"{step} unexpectedly succeeded: {r!r}")

    def get(key, timeout_ms=None):
        r = kv.call("Get", kv_pb2.GetRequest(key=key), kv_pb2.GetResponse, timeout_ms=timeout_ms)
        return r.found, r.value

    def step(name, fn):
        try:
            return fn()
        except Exception as e:
            unexpected(name, e)

    try:
        # 1-5: the unary scenario.
        step("put greeting", lambda: kv.call("Put", kv_pb2.PutRequest(key="greeting", value=b"hello"),
                                             kv_pb2.PutResponse))
        emit("put greeting ok")
        found, value = step("get greeting", lambda: get("greeting"))
        emit(f"get greeting found={str(found).lower()} value={text(value)}")
        d = step("delete greeting", lambda: kv.call("Delete", kv_pb2.DeleteRequest(key="greeting"),
                                                    kv_pb2.DeleteResponse))
        emit(f"delete greeting existed={str(d.existed).lower()}")
        found, _ = step("get greeting", lambda: get("greeting"))
        emit(f"get greeting found={str(found).lower()}")
        expect_failure("get <empty>", lambda _: get(""))
        # 6-7: error details and deadlines.
        expect_failure("get __error__", lambda _: get(ERROR_KEY))
        expect_failure("get __slow__", lambda _: get(SLOW_KEY, timeout_ms=SLOW_DEADLINE_MS), with_message=False)
        # 8-10: client streaming.
        n = step("putmany", lambda: kv.put_many([("s/a1", b"x"), ("s/a2", b"y"), ("s/b1", b"z")]))
        emit(f"putmany count={n}")
        n = step("putmany <none>", lambda: kv.put_many([]))
        emit(f"putmany <none> count={n}")
        expect_failure("putmany <empty>", lambda _: kv.put_many([("", b"x")]))
        # 11-13: server streaming.
        for prefix in ("s/a", "s/none"):
            items = step(f"list {prefix}", lambda: kv.list(prefix, []))
            emit(f"list {prefix} count={len(items)}" + "".join(f" {x}" for x in items))
        expect_failure("list __error__", lambda received: kv.list(ERROR_KEY, received))
        # 14-15: bidi, half-duplex: send every prefix, half-close, read to the end.
        events = step("watch s/a,s/b", lambda: watch_half_duplex(kv, ["s/a", "s/b"], []))
        emit(f"watch s/a,s/b events={len(events)}" + "".join(f" {x}" for x in events))
        expect_failure("watch s/a,__error__", lambda received: watch_half_duplex(kv, ["s/a", ERROR_KEY], received))
        # 16: bidi, full-duplex (HTTP/2 only).
        if http == "2":
            events = step("watch-live", lambda: watch_live(kv))
            emit(f"watch-live s/a events={len(events)}" + "".join(f" {format_event(x)}" for x in events))
        else:
            emit("watch-live skipped (full-duplex bidi needs HTTP/2)")
        # 17-18: cleanup, so that the scenario can run again on the same server.
        existed = [step("cleanup", lambda k=k: kv.call("Delete", kv_pb2.DeleteRequest(key=k),
                                                         kv_pb2.DeleteResponse).existed)
                   for k in ("s/a1", "s/a2", "s/b1")]
        emit(f"cleanup deleted={sum(existed)}")
        items = step("list s/", lambda: kv.list("s/", []))
        emit(f"list s/ count={len(items)}")
    except _Stop:
        pass
    return lines == expected


def watch_half_duplex(kv, prefixes, received):
    """Watch: sends every prefix, half-closes, reads to the end. The events go to `received`
    (formatted) as they arrive, so that a failure after some of them still shows them."""
    with kv.watch() as call:
        try:
            for p in prefixes:
                call.send(kv.encode(kv_pb2.WatchRequest(prefix=p)))
            call.close_send()
        except RPCError:
            pass  # the call can take no more requests; receiving tells how it ended
        for data in call:
            received.append(format_event(kv.decode(data, kv_pb2.WatchEvent)))
    return received


def watch_live(kv):
    """Watch s/a; read the 2 replayed events; Put s/a3 (another call) and read its event; Delete s/a3
    and read its event; half-close; the stream must end OK with no more events."""
    events = []
    with kv.watch() as call:
        def recv_one():
            data = call.receive()
            if data is None:
                raise Unexpected(f"the watch stream ended early after {len(events)} events")
            events.append(kv.decode(data, kv_pb2.WatchEvent))

        call.send(kv.encode(kv_pb2.WatchRequest(prefix="s/a")))
        recv_one()
        recv_one()
        kv.call("Put", kv_pb2.PutRequest(key="s/a3", value=b"w"), kv_pb2.PutResponse)
        recv_one()
        kv.call("Delete", kv_pb2.DeleteRequest(key="s/a3"), kv_pb2.DeleteResponse)
        recv_one()
        call.close_send()
        extra = call.receive()
        if extra is not None:
            raise Unexpected(f"unexpected event after half-close: {format_event(kv.decode(extra, kv_pb2.WatchEvent))}")
    return events


# ---------------------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------------------


def main(argv=None):
    parser = argparse.ArgumentParser(description="connectplugin KV example client (Python)")
    parser.add_argument("--url", required=True, help="http://host:port, https://host:port or unix:///path/to.sock")
    parser.add_argument("--scenario", choices=["unary", "stream"], default="unary")
    parser.add_argument("--protocol", choices=["connect", "grpc", "grpcweb"], default="connect")
    parser.add_argument("--codec", choices=["proto", "json"], default="proto")
    parser.add_argument("--http", choices=["1.1", "2"], default="2")
    parser.add_argument("--compression", choices=["identity", "gzip"], default="identity",
                        help="request compression (gzip responses are always accepted)")
    parser.add_argument("--tls-ca", "--ca", dest="tls_ca", metavar="CA.pem",
                        help="verify the server with this CA (implies TLS)")
    parser.add_argument("--cert", metavar="CERT.pem", help="client certificate (mTLS)")
    parser.add_argument("--key", metavar="KEY.pem", help="private key of --cert")
    args = parser.parse_args(argv)
    if bool(args.cert) != bool(args.key):
        parser.error("--cert and --key go together")

    url = args.url
    if args.tls_ca and url.startswith("http://"):
        url = "https://" + url[len("http://"):]
    if url.startswith("unix:") and (args.tls_ca or args.cert):
        parser.error("TLS needs a host:port URL")
    if args.protocol == "grpc" and args.http != "2":
        print("error: gRPC needs HTTP/2 (use --http 2, or --protocol connect|grpcweb over HTTP/1.1)", file=sys.stderr)
        return 2

    try:
        client = connectplugin.Client(
            url,
            codec=args.codec,
            http_version=args.http,
            compression=args.compression,
            protocol=args.protocol,
            tls_ca_file=args.tls_ca,
            tls_cert_file=args.cert,
            tls_key_file=args.key,
        )
    except connectplugin.ConnectPluginError as e:
        # No connection is made yet: the flags (URL, protocol, TLS files, …) are what is wrong.
        print(f"error: {e.code.wire_name}: {e.message}", file=sys.stderr)
        return 2
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    with client:
        kv = KVClient(client, args.codec)
        if args.scenario == "stream":
            return 0 if run_stream(kv, args.http) else 1
        try:
            ok = run_unary(kv)
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
