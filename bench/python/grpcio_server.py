#!/usr/bin/env python3
"""The grpcio peer of bench/h2load_bench.sh: grpcio (gRPC C-core) serving /bench.v1.BenchService/Unary
with raw bytes (no protobuf decoding, like bench_server cp), answering a 64-byte request with a
64-byte response.

    grpcio_server.py --tcp HOST:PORT [--workers N]    prints "tcp ADDR" and "ready"; runs until SIGTERM/SIGINT
"""
import argparse
import signal
import sys
import threading
from concurrent import futures

import grpc

RESPONSE = bytes([0x0A, 62]) + b"r" * 62


def unary(request, context):
    if len(request) != 64:
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, "want 64 bytes")
    return RESPONSE


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tcp", default="127.0.0.1:0")
    ap.add_argument("--workers", type=int, default=16)
    args = ap.parse_args()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=args.workers))
    handler = grpc.method_handlers_generic_handler(
        "bench.v1.BenchService", {"Unary": grpc.unary_unary_rpc_method_handler(unary)})
    server.add_generic_rpc_handlers((handler,))
    host, _, port = args.tcp.rpartition(":")
    bound = server.add_insecure_port(f"{host}:{port}")
    server.start()
    print(f"tcp {host}:{bound}\nready", flush=True)
    done = threading.Event()
    for s in (signal.SIGTERM, signal.SIGINT):
        signal.signal(s, lambda *_: done.set())
    while not done.wait(1.0):
        pass
    server.stop(1).wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
