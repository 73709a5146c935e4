#!/usr/bin/env python3
"""The Python bench handler: /bench.v1.BenchService/Unary through the Python binding, answering a
64-byte request with a 64-byte response, like bench_server cp (bench_server.c).

    server.py --tcp HOST:PORT    prints "tcp ADDR" and "ready"; runs until SIGTERM/SIGINT
"""
import argparse
import signal
import sys
import threading

import connectplugin
from connectplugin import Code, RPCError

RESPONSE = bytes([0x0A, 62]) + b"r" * 62


def unary(request, ctx):
    if len(request) != 64:
        raise RPCError(Code.INVALID_ARGUMENT, "want 64 bytes")
    return RESPONSE


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tcp", default="127.0.0.1:0")
    args = ap.parse_args()
    server = connectplugin.Server()
    server.register_unary("/bench.v1.BenchService/Unary", unary)
    addr = server.listen_tcp(args.tcp)
    server.start()
    print(f"tcp {addr}\nready", flush=True)
    done = threading.Event()
    for s in (signal.SIGTERM, signal.SIGINT):
        signal.signal(s, lambda *_: done.set())
    while not done.wait(1.0):
        pass
    server.stop(1000)
    return 0


if __name__ == "__main__":
    sys.exit(main())
