"""A connectplugin server (through the in-tree Python binding) with the handlers the conformance
regression tests need (test_conformance_regressions.py); not a KV server.

    python3 conformance_server.py --listen 127.0.0.1:0

Prints `listening on ADDR`, serves Connect, gRPC and gRPC-Web on HTTP/1.1 and HTTP/2, exits 0 on
SIGTERM. Methods of `conformance.v1.ConformanceService` (raw bytes, any codec: the handlers never
decode the request):

* `HeadersOnly` (server streaming): sets the response header `x-custom-header: custom-value` and the
  trailer `x-custom-trailer: trailer-value`, sends no message and ends OK.
* `HeadersThenError` (server streaming): the same header and trailer, no message, then fails with
  failed_precondition `headers then error`.
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent.parent / "bindings" / "python" / "src"))

import connectplugin  # noqa: E402
from connectplugin import Code, MethodKind, RPCError  # noqa: E402

SERVICE = "/conformance.v1.ConformanceService"
HEADER = ("x-custom-header", "custom-value")
TRAILER = ("x-custom-trailer", "trailer-value")
ERROR_MESSAGE = "headers then error"


def headers_only(stream):
    stream.receive()
    stream.add_response_header(*HEADER)
    stream.add_response_trailer(*TRAILER)
    return None


def headers_then_error(stream):
    stream.receive()
    stream.add_response_header(*HEADER)
    stream.add_response_trailer(*TRAILER)
    raise RPCError(Code.FAILED_PRECONDITION, ERROR_MESSAGE)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--listen", required=True, metavar="HOST:PORT")
    args = parser.parse_args(argv)
    stop_signals = {signal.SIGTERM, signal.SIGINT}
    signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
    server = connectplugin.Server()
    try:
        server.register_stream(SERVICE + "/HeadersOnly", MethodKind.SERVER_STREAM, headers_only)
        server.register_stream(SERVICE + "/HeadersThenError", MethodKind.SERVER_STREAM, headers_then_error)
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
