#!/usr/bin/env python3
"""Host-language overhead: the same sequential unary round trip from C, Go, Python and Swift clients
(one C handler), and C, Go and Python handlers (one C client), with client and server costs apart.

    hosts.py BINDIR LIBDIR

BINDIR holds what bench/run.sh built: unary_bench, bench_server, go-bench-client, go-bench-server
and, when the Swift package bench/swift was built, SwiftBenchClient. Every client speaks the stdio
protocol of unary_bench.c --stdio: BENCH_WARMUP calls, "warm", wait for a line, BENCH_N timed calls,
"result median_us=X p99_us=Y client_cpu_us=A client_ctxsw=C" (client costs from its own getrusage).
The server's costs over exactly the timed calls come from /proc/PID (as in bench_util.h: the sum
over its threads of schedstat run time and of voluntary + nonvoluntary context switches). Each pair
runs BENCH_REPEATS times over TCP loopback, HTTP/2, Connect; medians are printed, one line each:

    bench: host_client_LANG median_us=X p99_us=Y client_cpu_us=A server_cpu_us=B client_ctxsw=C server_ctxsw=D ratio=R cpu_ratio=Q
    bench: host_handler_LANG ...

ratio = median / the C pair's median; cpu_ratio = (client + server CPU) / the C pair's. Then a table.
"""
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
FIELDS = ("median_us", "p99_us", "client_cpu_us", "server_cpu_us", "client_ctxsw", "server_ctxsw")


def proc_sample(pid):
    """(cpu_ns, ctxsw, tids) summed over the threads of pid."""
    cpu = ctx = 0
    tids = set()
    base = f"/proc/{pid}/task"
    for tid in os.listdir(base):
        try:
            with open(f"{base}/{tid}/schedstat") as f:
                cpu += int(f.read().split()[0])
            with open(f"{base}/{tid}/status") as f:
                for line in f:
                    if line.startswith(("voluntary_ctxt_switches:", "nonvoluntary_ctxt_switches:")):
                        ctx += int(line.split()[1])
        except (OSError, ValueError, IndexError):
            continue
        tids.add(tid)
    return cpu, ctx, tids


def start_server(cmd, env):
    p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, env=env, text=True)
    addr = None
    deadline = time.time() + 60
    while time.time() < deadline:
        line = p.stdout.readline()
        if not line:
            break
        line = line.strip()
        if line.startswith("tcp "):
            addr = line[4:]
        if line == "ready":
            break
    if addr is None:
        p.kill()
        raise SystemExit(f"hosts.py: server {cmd} did not start")
    return p, addr


def stop_server(p):
    p.terminate()
    try:
        p.wait(timeout=15)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()


def run_client(cmd, env, server_pid):
    p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, text=True)
    line = p.stdout.readline().strip()
    if line != "warm":
        p.kill()
        raise SystemExit(f"hosts.py: client {cmd} did not warm up (got {line!r})")
    cpu0, ctx0, tids0 = proc_sample(server_pid)
    p.stdin.write("go\n")
    p.stdin.flush()
    line = p.stdout.readline().strip()
    cpu1, ctx1, tids1 = proc_sample(server_pid)
    p.wait(timeout=60)
    if not line.startswith("result ") or p.returncode != 0:
        raise SystemExit(f"hosts.py: client {cmd} failed (exit {p.returncode}, {line!r})")
    if tids0 - tids1:
        print(f"hosts.py: warning: {len(tids0 - tids1)} server threads exited; server figures undercount",
              file=sys.stderr)
    r = {k: float(v) for k, v in (kv.split("=", 1) for kv in line.split()[1:])}
    n = int(env.get("BENCH_N", "20000"))
    r["server_cpu_us"] = (cpu1 - cpu0) / 1000.0 / n
    r["server_ctxsw"] = (ctx1 - ctx0) / n
    return r


def median_of(runs):
    return {k: statistics.median(r[k] for r in runs) for k in FIELDS}


def line(name, m, ref):
    cpu = m["client_cpu_us"] + m["server_cpu_us"]
    rcpu = ref["client_cpu_us"] + ref["server_cpu_us"]
    return (f"bench: {name} median_us={m['median_us']:.1f} p99_us={m['p99_us']:.1f} "
            f"client_cpu_us={m['client_cpu_us']:.1f} server_cpu_us={m['server_cpu_us']:.1f} "
            f"client_ctxsw={m['client_ctxsw']:.2f} server_ctxsw={m['server_ctxsw']:.2f} "
            f"ratio={m['median_us'] / ref['median_us']:.2f} cpu_ratio={cpu / rcpu if rcpu else 0:.2f}")


def main():
    if len(sys.argv) != 3:
        print("usage: hosts.py BINDIR LIBDIR", file=sys.stderr)
        return 2
    bindir, libdir = sys.argv[1], sys.argv[2]
    env = dict(os.environ)
    env.setdefault("BENCH_N", "20000")
    env.setdefault("BENCH_WARMUP", "2000")
    env["CONNECTPLUGIN_LIBRARY"] = os.path.join(libdir, "libconnectplugin.so")
    env["PYTHONPATH"] = os.path.join(REPO, "bindings/python/src") + (
        ":" + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.setdefault("SWIFT_BACKTRACE", "enable=no")
    repeats = int(env.get("BENCH_REPEATS", "3") or 3)

    clients = [("c", [os.path.join(bindir, "unary_bench"), "--stdio"]),
               ("go", [os.path.join(bindir, "go-bench-client")]),
               ("python", [sys.executable, os.path.join(HERE, "python/client.py")])]
    swift = os.path.join(bindir, "SwiftBenchClient")
    if os.path.exists(swift):
        clients.append(("swift", [swift]))
    else:
        print("hosts.py: SwiftBenchClient not built (BENCH_SWIFT=0 or its build failed): no Swift row",
              file=sys.stderr)
    servers = [("c", [os.path.join(bindir, "bench_server"), "cp", "--tcp", "127.0.0.1:0"]),
               ("go", [os.path.join(bindir, "go-bench-server"), "--tcp", "127.0.0.1:0"]),
               ("python", [sys.executable, os.path.join(HERE, "python/server.py"), "--tcp", "127.0.0.1:0"])]

    rows = []
    # Clients: every language against the C handler, interleaved per repeat.
    p, addr = start_server(servers[0][1], env)
    try:
        runs = {lang: [] for lang, _ in clients}
        for _ in range(repeats):
            for lang, cmd in clients:
                runs[lang].append(run_client(cmd + [f"http://{addr}"], env, p.pid))
    finally:
        stop_server(p)
    ref = median_of(runs["c"])
    for lang, _ in clients:
        m = median_of(runs[lang])
        print(line(f"host_client_{lang}", m, ref), flush=True)
        rows.append((f"{lang} client -> c handler", m, ref))

    # Handlers: the C client against every language's handler.
    href = None
    for lang, cmd in servers:
        p, addr = start_server(cmd, env)
        try:
            hr = [run_client(clients[0][1] + [f"http://{addr}"], env, p.pid) for _ in range(repeats)]
        finally:
            stop_server(p)
        m = median_of(hr)
        href = href or m
        print(line(f"host_handler_{lang}", m, href), flush=True)
        rows.append((f"c client -> {lang} handler", m, href))

    print("host-language table (sequential unary over TCP, h2c, Connect; per call):")
    print(f"  {'pair':26} {'median_us':>9} {'p99_us':>8} {'client_cpu':>10} {'server_cpu':>10} "
          f"{'client_cs':>9} {'server_cs':>9} {'ratio':>6} {'cpu_ratio':>9}")
    for name, m, r in rows:
        cpu = m["client_cpu_us"] + m["server_cpu_us"]
        rcpu = r["client_cpu_us"] + r["server_cpu_us"]
        print(f"  {name:26} {m['median_us']:9.1f} {m['p99_us']:8.1f} {m['client_cpu_us']:10.1f} "
              f"{m['server_cpu_us']:10.1f} {m['client_ctxsw']:9.2f} {m['server_ctxsw']:9.2f} "
              f"{m['median_us'] / r['median_us']:6.2f} {cpu / rcpu if rcpu else 0:9.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
