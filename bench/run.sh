#!/bin/sh
# `make bench`: builds the benchmarks with -O2 against the release libconnectplugin.so and runs them,
# each beside a baseline or peers measured in the same run. Servers run in processes of their own, so
# every figure comes with the stable costs — CPU µs and context switches (voluntary + involuntary)
# per call, client and server apart (client: getrusage; server: /proc/PID, see bench_util.h) — which
# are the primary figures on a shared machine, where wall-clock times swing:
#   unary_bench.c    sequential unary round trip (h2c, Unix and TCP) vs a raw-socket ping-pong with
#                    bench_server raw; then allocations per call (malloc_count.c preloaded into both);
#   instr.py         instructions per call, client and server, and the biggest allocation sources,
#                    under valgrind's callgrind (on a copy of the library stripped of debug info);
#   stream_bench.c   one-stream throughput, 64-byte and 64 KiB messages, vs raw TCP throughput;
#   scale_bench.c    throughput and p99 at 1/8/64/256 callers and 1/100/1000 connections, RSS per connection;
#   hosts.py         the same round trip from C, Go, Python and Swift clients, and C, Go, Python handlers;
#   plugins.py       the unary round trip host -> plugin (Unix socket) from the C, Go, Python and Swift
#                    plugin host APIs beside the raw ping-pong and the plain client, and launch-to-first-call;
#   h2load_bench.sh  calls/s under h2load: the C KV server vs nghttpd, and gRPC unary against
#                    connectplugin's C and Go handlers, grpc-go and grpcio, with server CPU per request.
#   bench/run.sh [LIBDIR]      (default LIBDIR: <repo>/.build/release; build it with swift build -c release)
# Prints "bench: NAME key=value ..." lines (ratio = ours / baseline cost; lower is better) and tables.
# Sizes: BENCH_N, BENCH_WARMUP, BENCH_REPEATS, BENCH_ALLOC_N, BENCH_INSTR_N, BENCH_STREAM_BYTES(_SMALL),
# BENCH_H2LOAD_N, BENCH_PEER_N, BENCH_PEERS, BENCH_SCALE_CALLERS, BENCH_SCALE_CONNS, BENCH_SCALE_CALLS.
# Parts: BENCH_PARTS (default "unary allocs instr stream scale hosts plugin h2load"). BENCH_SWIFT=0 skips the
# Swift client's build (a release build of the package bench/swift, a few minutes the first time).
# BENCH_QUICK=1: tiny sizes and no Swift build, a smoke test of every part (bench/test_quick.sh, run
# by make test-c). No figure is asserted: the machine is shared; read the CPU and ctxsw figures first.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
libdir=${1:-"$repo/.build/release"}
if [ ! -f "$libdir/libconnectplugin.so" ]; then
    echo "bench/run.sh: $libdir/libconnectplugin.so not found (run swift build -c release first)" >&2
    exit 1
fi
libdir=$(cd "$libdir" && pwd)
if [ "${BENCH_QUICK:-0}" = 1 ]; then
    : "${BENCH_N:=200}" "${BENCH_WARMUP:=50}" "${BENCH_REPEATS:=1}" "${BENCH_ALLOC_N:=200}"
    : "${BENCH_STREAM_BYTES:=1048576}" "${BENCH_STREAM_BYTES_SMALL:=65536}" "${BENCH_H2LOAD_N:=1000}" "${BENCH_PEER_N:=1000}"
    : "${BENCH_INSTR_N:=50}" "${BENCH_SCALE_CALLERS:=1 8}" "${BENCH_SCALE_CONNS:=1 10}" "${BENCH_SCALE_CALLS:=200}" "${BENCH_SWIFT:=0}"
fi
: "${BENCH_N:=20000}" "${BENCH_WARMUP:=2000}" "${BENCH_REPEATS:=3}" "${BENCH_ALLOC_N:=2000}" "${BENCH_SWIFT:=1}"
: "${BENCH_PARTS:=unary allocs instr stream scale hosts plugin h2load}"
export BENCH_N BENCH_WARMUP BENCH_REPEATS
for v in BENCH_INSTR_N BENCH_STREAM_BYTES BENCH_STREAM_BYTES_SMALL BENCH_H2LOAD_N BENCH_PEER_N BENCH_SCALE_CALLERS BENCH_SCALE_CONNS BENCH_SCALE_CALLS; do
    eval "[ -n \"\${$v:-}\" ] && export $v" || true
done
CC=${CC:-cc}
export SWIFT_BACKTRACE=${SWIFT_BACKTRACE:-enable=no}
tmp=$(mktemp -d)
bin="$tmp/bin"
mkdir -p "$bin"
pids=""
cleanup() {
    for p in $pids; do kill "$p" 2>/dev/null || true; done
    rm -rf "$tmp"
}
trap cleanup EXIT INT TERM
has() { case " $BENCH_PARTS " in *" $1 "*) return 0 ;; esac; return 1; }
start=$(date +%s)

# ---- build
cflags="-std=c11 -O2 -Wall -Wextra -Werror -I$repo/include"
for p in bench_server unary_bench stream_bench scale_bench; do
    # shellcheck disable=SC2086
    "$CC" $cflags -o "$bin/$p" "$here/$p.c" -L"$libdir" -lconnectplugin -Wl,-rpath,"$libdir" -pthread
done
# shellcheck disable=SC2086
"$CC" $cflags -o "$bin/procstat" "$here/procstat.c"
"$CC" -O2 -Wall -Wextra -Werror -shared -fPIC -o "$bin/malloc_count.so" "$here/malloc_count.c"
if has hosts || has h2load || has plugin; then
    (cd "$here/go" && CGO_ENABLED=1 CGO_LDFLAGS="-L$libdir -Wl,-rpath,$libdir" GOFLAGS=-mod=mod GOPROXY=off \
        GOTOOLCHAIN=local GOSUMDB=off go build -o "$bin/go-bench-client" ./client &&
        CGO_ENABLED=1 CGO_LDFLAGS="-L$libdir -Wl,-rpath,$libdir" GOFLAGS=-mod=mod GOPROXY=off \
        GOTOOLCHAIN=local GOSUMDB=off go build -o "$bin/go-bench-server" ./server)
    bash "$here/grpcgo/build.sh" "$bin" >/dev/null
fi
if { has hosts || has plugin; } && [ "$BENCH_SWIFT" != 0 ]; then
    if swift build -c release --package-path "$here/swift" >"$tmp/swift-build.log" 2>&1; then
        cp "$here/swift/.build/release/SwiftBenchClient" "$bin/"
    else
        echo "bench/run.sh: the Swift bench client did not build (no Swift row):" >&2
        tail -n 20 "$tmp/swift-build.log" >&2
    fi
fi
echo "bench: built in $(( $(date +%s) - start ))s (libconnectplugin at $libdir)" >&2

# wait_ready OUTFILE PID: waits for the server's "ready" line.
wait_ready() {
    for _ in $(seq 1 600); do
        grep -q '^ready' "$1" 2>/dev/null && return 0
        kill -0 "$2" 2>/dev/null || break
        sleep 0.05
    done
    echo "bench/run.sh: a server did not start:" >&2
    cat "$1" >&2
    exit 1
}

# ---- unary: sequential round trips beside the raw ping-pong, server and baseline in their own processes
if has unary || has scale; then
    "$bin/bench_server" cp --unix "$tmp/cp.sock" --tcp 127.0.0.1:0 >"$tmp/cp.out" 2>&1 &
    cppid=$!
    pids="$pids $cppid"
    "$bin/bench_server" raw --unix "$tmp/raw.sock" --tcp 127.0.0.1:0 >"$tmp/raw.out" 2>&1 &
    rawpid=$!
    pids="$pids $rawpid"
    wait_ready "$tmp/cp.out" "$cppid"
    wait_ready "$tmp/raw.out" "$rawpid"
    cptcp=$(sed -n 's/^tcp //p' "$tmp/cp.out")
    rawtcp=$(sed -n 's/^tcp //p' "$tmp/raw.out")
fi
if has unary; then
    "$bin/unary_bench" unary_h2c_unix "unix://$tmp/cp.sock" "$cppid" "unix:$tmp/raw.sock" "$rawpid"
    "$bin/unary_bench" unary_h2c_tcp "http://$cptcp" "$cppid" "tcp:$rawtcp" "$rawpid"
    BENCH_PROTOCOL=grpc "$bin/unary_bench" unary_grpc_h2c_tcp "http://$cptcp" "$cppid"
    # The same handler registered inline (connectplugin_server_register_unary_inline): it runs on
    # the server's I/O thread, so the server side has no thread hand-off.
    "$bin/bench_server" cp --inline --unix "$tmp/cpi.sock" --tcp 127.0.0.1:0 >"$tmp/cpi.out" 2>&1 &
    cpipid=$!
    pids="$pids $cpipid"
    wait_ready "$tmp/cpi.out" "$cpipid"
    cpitcp=$(sed -n 's/^tcp //p' "$tmp/cpi.out")
    "$bin/unary_bench" unary_h2c_unix_inline "unix://$tmp/cpi.sock" "$cpipid" "unix:$tmp/raw.sock" "$rawpid"
    "$bin/unary_bench" unary_h2c_tcp_inline "http://$cpitcp" "$cpipid" "tcp:$rawtcp" "$rawpid"
fi

# ---- allocations per call: the malloc counter preloaded into a fresh server and into the client
if has allocs; then
    LD_PRELOAD="$bin/malloc_count.so" BENCH_MALLOC_COUNT_FILE="$tmp/server.cnt" \
        "$bin/bench_server" cp --unix "$tmp/alloc.sock" >"$tmp/alloc.out" 2>&1 &
    apid=$!
    pids="$pids $apid"
    wait_ready "$tmp/alloc.out" "$apid"
    for proto in connect grpc; do
        BENCH_N=$BENCH_ALLOC_N BENCH_WARMUP=$((BENCH_ALLOC_N / 4 + 1)) BENCH_REPEATS=1 BENCH_PROTOCOL=$proto \
            LD_PRELOAD="$bin/malloc_count.so" BENCH_MALLOC_COUNT_FILE="$tmp/client.cnt" \
            BENCH_ALLOC_SERVER_FILE="$tmp/server.cnt" \
            "$bin/unary_bench" "allocs_unary_${proto}_unix" "unix://$tmp/alloc.sock" "$apid"
    done
    kill "$apid"
fi

# ---- instructions per call and allocation sources (valgrind)
if has instr; then
    if command -v valgrind >/dev/null 2>&1; then python3 "$here/instr.py" "$bin" "$libdir"
    else echo "bench: instr skipped: valgrind is missing (apt: valgrind)" >&2; fi
fi

# ---- one-stream throughput (client and server in one process)
if has stream; then "$bin/stream_bench"; fi

# ---- scaling with callers and connections
if has scale; then "$bin/scale_bench" "http://$cptcp" "$cppid"; fi

# ---- host languages
if has hosts; then python3 "$here/hosts.py" "$bin" "$libdir"; fi

# ---- plugins: host -> plugin round trip from each host language's plugin API, and launch time
if has plugin; then
    "$bin/bench_server" cp --unix "$tmp/pcp.sock" >"$tmp/pcp.out" 2>&1 &
    pcppid=$!
    pids="$pids $pcppid"
    "$bin/bench_server" raw --unix "$tmp/praw.sock" >"$tmp/praw.out" 2>&1 &
    prawpid=$!
    pids="$pids $prawpid"
    wait_ready "$tmp/pcp.out" "$pcppid"
    wait_ready "$tmp/praw.out" "$prawpid"
    python3 "$here/plugins.py" "$bin" "$libdir" "$tmp/pcp.sock" "$pcppid" "$tmp/praw.sock" "$prawpid"
    kill "$pcppid" "$prawpid"
fi

# ---- h2load: the C KV server vs nghttpd, and the gRPC peers
if has h2load; then sh "$here/h2load_bench.sh" "$libdir" "$bin"; fi
echo "bench: done in $(( $(date +%s) - start ))s" >&2
