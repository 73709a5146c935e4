#!/bin/sh
# `make bench`: builds the benchmarks with -O2 against the release libconnectplugin.so and runs them,
# each beside a baseline measured in the same run:
#   unary_bench.c    unary round-trip latency (h2c, Unix and TCP) vs a raw-socket ping-pong;
#   stream_bench.c   one-stream throughput, 64-byte and 64 KiB messages, vs raw TCP throughput;
#   h2load_bench.sh  unary calls/s under h2load against the C KV server vs nghttpd serving a file.
#   bench/run.sh [LIBDIR]      (default LIBDIR: <repo>/.build/release; build it with swift build -c release)
# Prints one line per figure, "bench: NAME ... ratio=R" (ratio = ours / baseline cost; lower is better).
# BENCH_N, BENCH_WARMUP, BENCH_REPEATS, BENCH_STREAM_BYTES, BENCH_H2LOAD_N override the sizes.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
libdir=${1:-"$repo/.build/release"}
if [ ! -f "$libdir/libconnectplugin.so" ]; then
    echo "bench/run.sh: $libdir/libconnectplugin.so not found (run swift build -c release first)" >&2
    exit 1
fi
libdir=$(cd "$libdir" && pwd)
CC=${CC:-cc}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM
"$CC" -std=c11 -O2 -Wall -Wextra -Werror -I"$repo/include" -o "$tmp/unary_bench" "$here/unary_bench.c" \
    -L"$libdir" -lconnectplugin -Wl,-rpath,"$libdir" -pthread
"$CC" -std=c11 -O2 -Wall -Wextra -Werror -I"$repo/include" -o "$tmp/stream_bench" "$here/stream_bench.c" \
    -L"$libdir" -lconnectplugin -Wl,-rpath,"$libdir" -pthread
export SWIFT_BACKTRACE=${SWIFT_BACKTRACE:-enable=no}
"$tmp/unary_bench"
"$tmp/stream_bench"
sh "$here/h2load_bench.sh" "$libdir"
