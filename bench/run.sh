#!/bin/sh
# `make bench`: builds bench/unary_bench.c with -O2 against the release libconnectplugin.so and runs it.
#   bench/run.sh [LIBDIR]      (default LIBDIR: <repo>/.build/release; build it with swift build -c release)
# Prints one line per figure: "bench: NAME median_us=X p99_us=Y baseline_median_us=Z ratio=R".
# BENCH_N, BENCH_WARMUP and BENCH_REPEATS override 20000 / 2000 / 3.
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
SWIFT_BACKTRACE=${SWIFT_BACKTRACE:-enable=no} "$tmp/unary_bench"
