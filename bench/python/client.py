#!/usr/bin/env python3
"""The Python bench client: sequential unary calls of /bench.v1.BenchService/Unary through the Python
binding (ctypes), speaking the stdio protocol of bench/hosts.py (see unary_bench.c --stdio):

    client.py URL   BENCH_WARMUP calls, print "warm", wait for a line on stdin, BENCH_N timed calls,
                    print "result median_us=X p99_us=Y client_cpu_us=A client_ctxsw=C"
    client.py plugin:PATH   the same through a plugin host: PluginClient([PATH]) (bench_server plugin),
                    dispense("bench"); "warm pid=P launch_us=L" (launch to the first call's answer)

BENCH_PROTOCOL (connect, grpc) picks the plain client's protocol.

Needs bindings/python/src on PYTHONPATH and CONNECTPLUGIN_LIBRARY (bench/hosts.py sets both).
"""
import os
import resource
import sys
import time

import connectplugin


def env_int(name, default):
    try:
        n = int(os.environ.get(name, ""))
    except ValueError:
        return default
    return n if n > 0 else default


def usage():
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime, ru.ru_nvcsw + ru.ru_nivcsw


def main():
    if len(sys.argv) != 2:
        print("usage: client.py URL", file=sys.stderr)
        return 2
    n, warmup = env_int("BENCH_N", 20000), env_int("BENCH_WARMUP", 2000)
    req = bytes([0x0A, 62]) + b"q" * 62
    proc = "/bench.v1.BenchService/Unary"
    plugin = None
    warm = "warm"
    if sys.argv[1].startswith("plugin:"):
        t0 = time.perf_counter_ns()
        plugin = connectplugin.PluginClient([sys.argv[1][len("plugin:"):]], cookie=("BENCH_PLUGIN", "connectplugin-bench"),
                                            plugins={1: ["bench"]})
        client = plugin.dispense("bench")
        client.call_unary(proc, req)
        warm = f"warm pid={plugin.pid} launch_us={(time.perf_counter_ns() - t0) / 1000:.1f}"
    else:
        client = connectplugin.Client(sys.argv[1], http_version="2", protocol=os.environ.get("BENCH_PROTOCOL") or "connect")

    def call():
        if len(client.call_unary(proc, req).message) != 64:
            raise SystemExit("python client: response is not 64 bytes")

    for _ in range(warmup):
        call()
    print(warm, flush=True)
    if not sys.stdin.readline():
        return 1
    samples = [0] * n
    clock = time.perf_counter_ns
    cpu0, cs0 = usage()
    for i in range(n):
        t0 = clock()
        call()
        samples[i] = clock() - t0
    cpu1, cs1 = usage()
    samples.sort()
    p99 = max(0, int(n * 0.99 + 0.5) - 1)
    print(f"result median_us={samples[n // 2] / 1000:.2f} p99_us={samples[p99] / 1000:.2f} "
          f"client_cpu_us={(cpu1 - cpu0) * 1e6 / n:.2f} client_ctxsw={(cs1 - cs0) / n:.3f}", flush=True)
    client.close()
    if plugin is not None:
        plugin.kill()
    return 0


if __name__ == "__main__":
    sys.exit(main())
