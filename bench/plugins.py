#!/usr/bin/env python3
"""The plugin part of `make bench`: the sequential unary round trip host -> plugin over the default
Unix socket, from each host language's plugin API, beside the raw-socket baseline and the plain client
of the same run, and the plugin's launch-to-first-call time.

    plugins.py BINDIR LIBDIR CP_SOCK CP_PID RAW_SOCK RAW_PID

The plugin is `bench_server plugin` (the C handler of the other parts, served by
connectplugin_plugin_serve: go-plugin's handshake, gRPC over an owner-only Unix socket). Each host
(unary_bench --stdio, go-bench-client, bench/python/client.py, SwiftBenchClient when bench/run.sh
built it) is run with `plugin:PATH`: it launches
the plugin through its binding's plugin host API, dispenses "bench", makes the first call (the time
from the launch to its answer is launch_us), warms up, and reports BENCH_N timed calls; the plugin
process's CPU and context switches come from /proc (bench/hosts.py). The plain client is the same
host program with a plain gRPC client over a Unix socket to `bench_server cp` (CP_SOCK), the
baseline a raw 64-byte ping-pong over a Unix socket (RAW_SOCK; unary_bench). Medians over
BENCH_REPEATS runs, one line each:

    bench: plugin_raw_baseline median_us=X p99_us=Y client_cpu_us=A server_cpu_us=B client_ctxsw=C server_ctxsw=D
    bench: plugin_unary_LANG median_us=X p99_us=Y client_cpu_us=A server_cpu_us=B client_ctxsw=C server_ctxsw=D baseline_median_us=Z ratio=R plain_median_us=P plain_ratio=Q plain_cpu_us=U plain_ctxsw=W cpu_ratio=S
    bench: plugin_launch_LANG median_us=X max_us=Y runs=N

ratio = median / the raw baseline's; plain_ratio = median / the plain client's; cpu_ratio = (client +
plugin CPU per call) / the plain pair's (plain_cpu_us, client + server; plain_ctxsw likewise).
"""
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from hosts import FIELDS, REPO, median_of, proc_sample, run_client  # noqa: E402


def run_plugin_host(cmd, env):
    """run_client for plugin:PATH: the server is the plugin the client launched (pid on the warm line)."""
    p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, text=True)
    warm = p.stdout.readline().split()
    if not warm or warm[0] != "warm":
        p.kill()
        raise SystemExit(f"plugins.py: host {cmd} did not warm up (got {warm!r})")
    kv = dict(w.split("=", 1) for w in warm[1:])
    pid, launch = int(kv["pid"]), float(kv["launch_us"])
    cpu0, ctx0, _ = proc_sample(pid)
    p.stdin.write("go\n")
    p.stdin.flush()
    line = p.stdout.readline().strip()
    cpu1, ctx1, _ = proc_sample(pid)
    p.wait(timeout=60)
    if not line.startswith("result ") or p.returncode != 0:
        raise SystemExit(f"plugins.py: host {cmd} failed (exit {p.returncode}, {line!r})")
    r = {k: float(v) for k, v in (w.split("=", 1) for w in line.split()[1:])}
    n = int(env.get("BENCH_N", "20000"))
    r["server_cpu_us"] = (cpu1 - cpu0) / 1000.0 / n
    r["server_ctxsw"] = (ctx1 - ctx0) / n
    return r, launch


def costs(m):
    return (f"median_us={m['median_us']:.1f} p99_us={m['p99_us']:.1f} client_cpu_us={m['client_cpu_us']:.1f} "
            f"server_cpu_us={m['server_cpu_us']:.1f} client_ctxsw={m['client_ctxsw']:.2f} "
            f"server_ctxsw={m['server_ctxsw']:.2f}")


def raw_baseline(bindir, env, cp_sock, cp_pid, raw_sock, raw_pid):
    """unary_bench's raw ping-pong over the Unix socket, measured in this run."""
    out = subprocess.run([os.path.join(bindir, "unary_bench"), "plugin_raw", f"unix://{cp_sock}", str(cp_pid),
                          f"unix:{raw_sock}", str(raw_pid)], env=env, capture_output=True, text=True, timeout=600)
    for line in out.stdout.splitlines():
        if line.startswith("bench: plugin_raw_baseline "):
            return {k: float(v) for k, v in (w.split("=", 1) for w in line.split()[2:]) if k in FIELDS}
    raise SystemExit(f"plugins.py: no raw baseline from unary_bench (exit {out.returncode}): {out.stderr[-500:]}")


def main():
    if len(sys.argv) != 7:
        print("usage: plugins.py BINDIR LIBDIR CP_SOCK CP_PID RAW_SOCK RAW_PID", file=sys.stderr)
        return 2
    bindir, libdir, cp_sock, cp_pid, raw_sock, raw_pid = sys.argv[1:]
    env = dict(os.environ)
    env.setdefault("BENCH_N", "20000")
    env.setdefault("BENCH_WARMUP", "2000")
    env["BENCH_PROTOCOL"] = "grpc"  # what a dispensed plugin client speaks
    env["CONNECTPLUGIN_LIBRARY"] = os.path.join(libdir, "libconnectplugin.so")
    env["PYTHONPATH"] = os.path.join(REPO, "bindings/python/src") + (
        ":" + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    repeats = int(env.get("BENCH_REPEATS", "3") or 3)
    plugin = os.path.join(bindir, "bench_server")
    hosts = [("c", [os.path.join(bindir, "unary_bench"), "--stdio"]),
             ("go", [os.path.join(bindir, "go-bench-client")]),
             ("python", [sys.executable, os.path.join(HERE, "python/client.py")])]
    swift = os.path.join(bindir, "SwiftBenchClient")
    if os.path.exists(swift):
        hosts.append(("swift", [swift]))
    else:
        print("plugins.py: SwiftBenchClient not built (BENCH_SWIFT=0 or its build failed): no Swift row", file=sys.stderr)

    base = raw_baseline(bindir, env, cp_sock, cp_pid, raw_sock, raw_pid)
    print(f"bench: plugin_raw_baseline {costs(base)}", flush=True)
    rows = []
    for lang, cmd in hosts:
        plain, ours, launches = [], [], []
        for _ in range(repeats):
            plain.append(run_client(cmd + [f"unix://{cp_sock}"], env, int(cp_pid)))
            r, launch = run_plugin_host(cmd + [f"plugin:{plugin}"], env)
            ours.append(r)
            launches.append(launch)
        m, pm = median_of(ours), median_of(plain)
        cpu, pcpu = m["client_cpu_us"] + m["server_cpu_us"], pm["client_cpu_us"] + pm["server_cpu_us"]
        print(f"bench: plugin_unary_{lang} {costs(m)} baseline_median_us={base['median_us']:.1f} "
              f"ratio={m['median_us'] / base['median_us']:.2f} plain_median_us={pm['median_us']:.1f} "
              f"plain_ratio={m['median_us'] / pm['median_us']:.2f} plain_cpu_us={pcpu:.1f} "
              f"plain_ctxsw={pm['client_ctxsw'] + pm['server_ctxsw']:.2f} cpu_ratio={cpu / pcpu if pcpu else 0:.2f}",
              flush=True)
        print(f"bench: plugin_launch_{lang} median_us={statistics.median(launches):.1f} max_us={max(launches):.1f} "
              f"runs={len(launches)}", flush=True)
        rows.append((lang, m, pm, statistics.median(launches)))
    print("plugin table (sequential unary host -> plugin, gRPC over a Unix socket; per call):")
    print(f"  {'host':8} {'median_us':>9} {'p99_us':>8} {'cpu_us':>7} {'ctxsw':>6} {'plain_us':>8} {'plain_cpu':>9} "
          f"{'raw_us':>7} {'launch_ms':>9}")
    for lang, m, pm, launch in rows:
        print(f"  {lang:8} {m['median_us']:9.1f} {m['p99_us']:8.1f} {m['client_cpu_us'] + m['server_cpu_us']:7.1f} "
              f"{m['client_ctxsw'] + m['server_ctxsw']:6.2f} {pm['median_us']:8.1f} "
              f"{pm['client_cpu_us'] + pm['server_cpu_us']:9.1f} {base['median_us']:7.1f} {launch / 1000:9.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
