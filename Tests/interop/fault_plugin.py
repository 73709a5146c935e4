#!/usr/bin/env python3
"""A plugin that misbehaves on purpose, for test_plugin_faults.py. The mode is FAULT_MODE:

  crash     serves (connectplugin's Python serve, cookie FAULT_PLUGIN=faulty, plugin "fault");
            /fault.v1.Fault/Crash answers nothing and exits the process with status 3 after 200 ms;
            /fault.v1.Fault/Echo echoes
  flood     serves like crash, and floods stdout and stderr from a thread from the start
  silent    never prints the handshake line (sleeps)
  junk      prints 40 lines of junk on stdout, then sleeps
  exit      writes two lines on stderr and exits with status 7 at once
  stubborn  prints a valid handshake line for a Unix socket that it listens on but never answers,
            ignores SIGTERM and does not watch its parent: only SIGKILL or the parent-death signal
            ends it
"""
from __future__ import annotations

import os
import signal
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

MODE = os.environ.get("FAULT_MODE", "")


def serve(flood: bool) -> int:
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bindings" / "python" / "src"))
    import connectplugin

    server = connectplugin.Server()

    def crash(call_or_req, *rest):
        def die():
            time.sleep(0.2)
            os._exit(3)
        threading.Thread(target=die, daemon=True).start()
        time.sleep(10)
        return b""

    def echo(req, *rest):
        return req if isinstance(req, (bytes, bytearray)) else b""

    server.register_unary("/fault.v1.Fault/Crash", crash)
    server.register_unary("/fault.v1.Fault/Echo", echo)
    if flood:
        def pour() -> None:
            line = b"x" * 1000 + b"\n"
            chunk = line * 64
            while True:
                try:
                    os.write(1, chunk)
                    os.write(2, chunk)
                except OSError:
                    time.sleep(0.01)
        # After the handshake line: serve prints it before the handlers run; start pouring a moment later.
        threading.Timer(0.5, pour).start()
    return server.serve_plugin("FAULT_PLUGIN", "faulty", {1: ["fault"]})


def stubborn() -> int:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    d = tempfile.mkdtemp(prefix="fault-")
    path = os.path.join(d, "s")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(path)
    s.listen(16)
    print(f"1|1|unix|{path}|grpc|", flush=True)
    while True:
        time.sleep(3600)


def main() -> int:
    if MODE in ("crash", "flood"):
        return serve(MODE == "flood")
    if MODE == "silent":
        time.sleep(3600)
        return 0
    if MODE == "junk":
        for i in range(40):
            print(f"JUNK-{i} this is not a handshake", flush=True)
        time.sleep(3600)
        return 0
    if MODE == "exit":
        sys.stderr.write("fault plugin: loading config\nfault plugin: fatal: no config file\n")
        sys.stderr.flush()
        return 7
    if MODE == "stubborn":
        return stubborn()
    sys.stderr.write(f"fault_plugin.py: unknown FAULT_MODE {MODE!r}\n")
    return 2


if __name__ == "__main__":
    sys.exit(main())
