#!/usr/bin/env python3
"""Instructions per sequential unary call, client and server, counted by valgrind's callgrind.

    instr.py BINDIR LIBDIR

valgrind 3.19 cannot read the Swift DWARF 5 debug info, so both processes load a copy of the library
stripped of it (LD_LIBRARY_PATH overrides the binaries' RUNPATH). The server (bench_server cp on a
Unix socket) and the client (unary_bench --stdio, whose callgrind counters are zeroed before and
dumped after its timed calls) both run under callgrind; after the client's warm-up the server's
counters are zeroed with callgrind_control -z, and dumped with -d after the timed calls. Prints

    bench: instr_unary_connect_unix client_instr_per_call=A server_instr_per_call=B calls=N

and the biggest allocation sources per call on each side: from the same dumps, the calls into
malloc, calloc, realloc and the memalign family, charged to the first calling function that is not
library code (the Swift standard library and runtime, glibc internals hand their charge up to their
callers in proportion to the calls: see alloc_sources), so each line names the project code that
asked for the memory (Swift names demangled with swift-demangle when it is on PATH).

Environment: BENCH_INSTR_N (200 timed calls), BENCH_INSTR_WARMUP (50), BENCH_INSTR_KEEP=DIR (copy the
two callgrind dumps there, for callgrind_annotate). Slow under valgrind (tens of
seconds); skipped with a message when valgrind is missing.
"""
import os
import shutil
import subprocess
import sys
import tempfile
import time


def totals(path):
    """The event total of a callgrind dump (the explicit dump, PATH.1: the timed calls after the zero)."""
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(("summary:", "totals:")):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


ALLOCATORS = {"malloc", "calloc", "realloc", "memalign", "posix_memalign", "aligned_alloc", "valloc",
              "swift_slowAlloc", "swift_allocObject", "swift_allocBox", "swift_allocEmptyBox",
              "_Znwm", "_Znam", "operator new(unsigned long)", "nghttp2_mem_malloc", "nghttp2_mem_calloc",
              "nghttp2_mem_realloc", "CRYPTO_malloc", "CRYPTO_zalloc", "CRYPTO_realloc"}


def _is_passthrough(fn):
    """Allocators and library code that allocates on behalf of its caller: the Swift standard library
    ($ss..., its specializations too), the Swift runtime, glibc internals and unnamed code."""
    base = fn.split("'")[0]
    return (base in ALLOCATORS or base.startswith(("$ss", "$sS", "_ZN5swift", "swift::", "swift_", "_swift", "_mid_", "0x", "__libc", "_int_"))
            or base.startswith("_dl_"))


def alloc_sources(path):
    """{function: allocator calls per dump} attributed to the first caller that is not library code.

    Callgrind records caller -> callee edges with call counts, not whole stacks: the calls into an
    allocator made by library code (pass-through functions) are handed up to that code's callers in
    proportion to how often each called it (an approximation where one callee serves several callers)."""
    names, edges = {}, {}
    fn = cfn = None

    def name(kind_line):
        # "fn=(12) name" defines id 12; "fn=(12)" refers to it; uncompressed "fn=name" also allowed.
        v = kind_line.split("=", 1)[1].strip()
        if v.startswith("("):
            ident, _, rest = v.partition(")")
            rest = rest.strip()
            if rest:
                names[ident] = rest
            return names.get(ident, ident)
        return v

    with open(path) as f:
        for line in f:
            if line.startswith("fn="):
                fn = name(line)
            elif line.startswith("cfn="):
                cfn = name(line)
            elif line.startswith("calls=") and cfn is not None:
                if fn is not None:
                    edges.setdefault(fn, {})
                    edges[fn][cfn] = edges[fn].get(cfn, 0) + int(line.split()[0][6:])
                cfn = None
    callers = {}
    for a, outs in edges.items():
        for b, c in outs.items():
            if a != b:
                callers.setdefault(b, {})[a] = c
    # Allocations charged to each function: its direct calls into a base allocator.
    base = {"malloc", "calloc", "realloc", "memalign", "posix_memalign", "aligned_alloc", "valloc"}
    charge = {}
    for a, outs in edges.items():
        n = sum(c for b, c in outs.items() if b.split("'")[0] in base)
        if n and a.split("'")[0] not in base:
            charge[a] = charge.get(a, 0) + n
    # Hand pass-through charges up, a few rounds (call chains through the library are short).
    for _ in range(12):
        moved = False
        for f_ in [f_ for f_ in charge if _is_passthrough(f_) and callers.get(f_)]:
            amount = charge.pop(f_)
            ups = {a: c for a, c in callers[f_].items()}
            total = sum(ups.values())
            for a, c in ups.items():
                charge[a] = charge.get(a, 0) + amount * c / total
            moved = True
        if not moved:
            break
    return charge


def demangle(names):
    if not names or not shutil.which("swift-demangle"):
        return names
    r = subprocess.run(["swift-demangle", "--simplified"], input="\n".join(names) + "\n", capture_output=True,
                       text=True)
    lines = r.stdout.splitlines()
    return lines if r.returncode == 0 and len(lines) == len(names) else names


def print_sources(side, path, n, top=10):
    charge = alloc_sources(path)
    src = sorted(charge.items(), key=lambda kv: -kv[1])[:top]
    total = sum(charge.values())
    print(f"allocation sources ({side}, per call; {total / n:.1f} allocations counted by callgrind):")
    for (fn, count), pretty in zip(src, demangle([fn for fn, _ in src])):
        print(f"  {count / n:6.2f}  {pretty[:150]}")


def main():
    bindir, libdir = sys.argv[1], sys.argv[2]
    for tool in ("valgrind", "callgrind_control", "strip"):
        if not shutil.which(tool):
            print(f"bench: instr skipped: {tool} is missing", file=sys.stderr)
            return 0
    n = int(os.environ.get("BENCH_INSTR_N", "200") or 200)
    warm = int(os.environ.get("BENCH_INSTR_WARMUP", "50") or 50)
    tmp = tempfile.mkdtemp(prefix="cp-instr-")
    server = None
    try:
        lib = os.path.join(tmp, "lib")
        os.mkdir(lib)
        subprocess.run(["strip", "--strip-debug", "-o", os.path.join(lib, "libconnectplugin.so"),
                        os.path.join(libdir, "libconnectplugin.so")], check=True)
        env = dict(os.environ, LD_LIBRARY_PATH=lib, BENCH_N=str(n), BENCH_WARMUP=str(warm))
        env.setdefault("SWIFT_BACKTRACE", "enable=no")
        sock = os.path.join(tmp, "s.sock")
        vg = ["valgrind", "--tool=callgrind", "-q"]
        server = subprocess.Popen(vg + [f"--callgrind-out-file={tmp}/server.out", os.path.join(bindir, "bench_server"),
                                        "cp", "--unix", sock], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                  stderr=subprocess.DEVNULL, env=env, text=True)
        deadline = time.time() + 180
        while time.time() < deadline and server.stdout.readline().strip() != "ready":
            if server.poll() is not None:
                raise SystemExit("instr.py: the server did not start under valgrind")
        client = subprocess.Popen(vg + [f"--callgrind-out-file={tmp}/client.out", os.path.join(bindir, "unary_bench"),
                                        "--stdio", f"unix://{sock}"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.DEVNULL, env=env, text=True)
        line = client.stdout.readline().strip()
        if line != "warm":
            raise SystemExit(f"instr.py: the client did not warm up under valgrind ({line!r})")
        ctl = lambda flag: subprocess.run(["callgrind_control", flag, str(server.pid)], check=True,
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        ctl("-z")
        client.stdin.write("go\n")
        client.stdin.flush()
        line = client.stdout.readline().strip()
        ctl("-d")
        client.wait(timeout=180)
        if not line.startswith("result "):
            raise SystemExit(f"instr.py: the client failed under valgrind ({line!r})")
        c = totals(f"{tmp}/client.out.1")
        s = totals(f"{tmp}/server.out.1")
        if c is None or s is None:
            raise SystemExit("instr.py: no callgrind totals found")
        print(f"bench: instr_unary_connect_unix client_instr_per_call={c / n:.0f} "
              f"server_instr_per_call={s / n:.0f} calls={n}", flush=True)
        print_sources("client", f"{tmp}/client.out.1", n)
        print_sources("server", f"{tmp}/server.out.1", n)
        sys.stdout.flush()
    finally:
        if server is not None:
            server.terminate()
            try:
                server.wait(timeout=60)
            except subprocess.TimeoutExpired:
                server.kill()
        keep = os.environ.get("BENCH_INSTR_KEEP")
        if keep:  # the callgrind dumps, for callgrind_annotate
            os.makedirs(keep, exist_ok=True)
            for name in ("client.out.1", "server.out.1"):
                if os.path.exists(os.path.join(tmp, name)):
                    shutil.copy(os.path.join(tmp, name), os.path.join(keep, name))
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
