#!/bin/sh
# Builds and runs the C tests with plain cc against a SwiftPM-built libconnectplugin.so (`make test`):
#   Tests/CTests/run.sh [LIBDIR]      (default LIBDIR: <repo>/.build/debug)
# Suites: test_header_symbols.sh, test_header_configs.sh (the header in C and C++, shared and static),
# test_kv_codec.c, test_abi.c and test_interceptor.c (their framework: test_support.h), test_stream.c
# (streaming, protocols, GET, TLS; needs openssl), test_statuses.c (the documented @retval statuses
# and codes), test_examples.sh (the C example), bench/test_quick.sh (make bench in quick mode).
# CMake builds the same sources and registers them with ctest. Last line: "c-tests: N passed, M failed"
# (summed over the suites); exit status 1 on any failure.
set -u
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
libdir=${1:-"$repo/.build/debug"}
if [ ! -f "$libdir/libconnectplugin.so" ]; then
    echo "run.sh: $libdir/libconnectplugin.so not found (run swift build first)" >&2
    echo "c-tests: 0 passed, 1 failed"
    exit 1
fi
libdir=$(cd "$libdir" && pwd)
CC=${CC:-cc}
CFLAGS=${CFLAGS:-"-O1 -g"}
export SWIFT_BACKTRACE=${SWIFT_BACKTRACE:-enable=no}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM

passed=0
failed=0
# suite NAME COMMAND...: runs a suite and adds up its "c-tests: N passed, M failed" line (a suite that
# prints none, or exits non-zero without failures counted, counts as one failure).
# CTESTS_SKIP_SUITES (comma-separated names) leaves suites out; each is printed as skipped and counts
# neither as passed nor as failed (the sanitizer stage uses it for suites it cannot run).
suite() {
    name=$1
    shift
    case ",${CTESTS_SKIP_SUITES:-}," in
    *",$name,"*)
        echo "== $name: skipped (CTESTS_SKIP_SUITES)"
        return
        ;;
    esac
    echo "== $name"
    "$@" >"$tmp/suite.out" 2>&1
    rc=$?
    cat "$tmp/suite.out"
    line=$(grep '^c-tests: [0-9]* passed, [0-9]* failed$' "$tmp/suite.out" | tail -n 1)
    if [ -z "$line" ]; then
        echo "== $name: no summary line (exit $rc)"
        failed=$((failed + 1))
        return
    fi
    p=$(echo "$line" | sed 's/^c-tests: \([0-9]*\) passed.*/\1/')
    f=$(echo "$line" | sed 's/.* \([0-9]*\) failed$/\1/')
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
    passed=$((passed + p))
    failed=$((failed + f))
}

# build OUTPUT SOURCES...: compiles against the header and the library; a failure counts as a failed test.
build() {
    out=$1
    shift
    # shellcheck disable=SC2086
    if ! $CC -std=c11 $CFLAGS -Wall -Wextra -Werror -I"$repo/include" -I"$repo/examples/c" -o "$out" "$@" \
        -L"$libdir" -lconnectplugin -Wl,-rpath,"$libdir" -pthread; then
        echo "== build of $out failed"
        failed=$((failed + 1))
        return 1
    fi
}

suite header_symbols sh "$here/test_header_symbols.sh" "$libdir/libconnectplugin.so" "$repo/include/connectplugin.h"
suite header_configs sh "$here/test_header_configs.sh" "$repo/include/connectplugin.h" "$libdir/libconnectplugin.so"
build "$tmp/test_kv_codec" "$here/test_kv_codec.c" "$repo/examples/c/kv_common.c" &&
    suite kv_codec "$tmp/test_kv_codec"
build "$tmp/test_abi" "$here/test_abi.c" && suite abi "$tmp/test_abi"
build "$tmp/test_stream" "$here/test_stream.c" && suite stream "$tmp/test_stream"
build "$tmp/test_statuses" "$here/test_statuses.c" && suite statuses "$tmp/test_statuses"
build "$tmp/test_interceptor" "$here/test_interceptor.c" && suite interceptor "$tmp/test_interceptor"
build "$tmp/kv-server-c" "$repo/examples/c/kv_server.c" "$repo/examples/c/kv_common.c" &&
    build "$tmp/kv-client-c" "$repo/examples/c/kv_client.c" "$repo/examples/c/kv_common.c" &&
    suite examples sh "$here/test_examples.sh" "$tmp/kv-server-c" "$tmp/kv-client-c"
suite bench_quick sh "$repo/bench/test_quick.sh" "$libdir"

echo "c-tests: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
