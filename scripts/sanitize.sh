#!/usr/bin/env bash
# The sanitizer stages of `make test` (make test-tsan, make test-asan):
#   scripts/sanitize.sh thread    ThreadSanitizer over the Swift tests
#   scripts/sanitize.sh address   AddressSanitizer and LeakSanitizer over the Swift tests, the C tests
#                                 (Tests/CTests) and a short load on the C KV server (examples/c)
#   scripts/sanitize.sh MODE STEP...   only these steps (build, swift, c, load), e.g. to rerun one
# Each sanitizer has its own debug build (asserts on) in its own scratch path, .build-tsan or
# .build-asan, built once with --build-tests. CONNECTPLUGIN_SANITIZER tells Package.swift to link
# libconnectplugin.so without `-z defs`: the sanitizer runtime lives in the executable that loads it.
# Any sanitizer report fails the stage: TSan exits 66 at the end of a run with reports, ASan aborts on
# the first error, LeakSanitizer fails a process that leaked at exit (the forked C tests check
# themselves before _exit). No suppressions are needed (see "Leak suppressions" below).
# Exit status 0 when every step passed; the last line is "sanitize-MODE: passed" or "... FAILED (steps)".
set -u
cd "$(dirname "$0")/.."
repo=$(pwd)
mode=${1:-}
shift
steps=" ${*:-build swift c load} "
want() { case "$steps" in *" $1 "*) return 0 ;; *) return 1 ;; esac; }
case "$mode" in
thread) scratch=.build-tsan ;;
address) scratch=.build-asan ;;
*)
    echo "usage: scripts/sanitize.sh thread|address" >&2
    exit 2
    ;;
esac
export CONNECTPLUGIN_SANITIZER=$mode
export SWIFT_BACKTRACE=enable=no
libdir=$repo/$scratch/debug
# TSan: report every race, exit 66 at the end if there was one.
export TSAN_OPTIONS="halt_on_error=0 second_deadlock_stack=1 ${TSAN_OPTIONS:-}"
# ASan: stop at the first error; LeakSanitizer on (the default on Linux, stated here).
# Leak suppressions: none. The Swift runtime's one-time allocations (metadata caches, the shared
# event loops and thread pool) stay reachable from globals, so LeakSanitizer does not report them.
# XCTest's own objects leak at the end of an XCTest run; the tests are Swift Testing only, so
# `swift test --disable-xctest` skips that run instead of suppressing libXCTest.
export ASAN_OPTIONS="detect_leaks=1 abort_on_error=0 ${ASAN_OPTIONS:-}"

failed=()
# step NAME COMMAND...: runs one step, prints its time, remembers a failure.
step() {
    local name=$1 start rc
    shift
    echo "---- sanitize-$mode: $name"
    start=$(date +%s)
    "$@"
    rc=$?
    echo "---- sanitize-$mode: $name: $([ $rc -eq 0 ] && echo passed || echo "FAILED (exit $rc)") in $(($(date +%s) - start)) s"
    [ $rc -eq 0 ] || failed+=("$name")
    return $rc
}

build() { swift build --build-tests --scratch-path "$scratch" --sanitize="$mode"; }
# Swift Testing runs the suites in parallel, which is what TSan needs to see.
swift_tests() { swift test --skip-build --scratch-path "$scratch" --sanitize="$mode" --disable-xctest; }

# The C tests with clang (the toolchain's, whose sanitizer runtime matches the library's) and the
# sanitizer linked into each test program. Skipped under ASan: the volume and memory-bound tests
# (1 GiB through one stream, an RSS bound that ASan's shadow memory and quarantine break, 62 MiB
# floods per combination) that take minutes in a debug ASan build; the same code paths run in the
# smaller stream tests.
c_tests() {
    # bench_quick is left out: it builds the benchmarks with plain cc (which cannot link a sanitized
    # library) and preloads a malloc counter; it runs in test-c against the ordinary build.
    CC=clang CFLAGS="-O1 -g -fno-omit-frame-pointer -fsanitize=$mode -fuse-ld=lld" \
        CXX=clang++ CXXFLAGS="-fsanitize=$mode -fuse-ld=lld" CTESTS_SKIP_SUITES=bench_quick \
        CTESTS_SKIP=many_messages,big_stream_memory,backpressure_slow_reader,backpressure_slow_handler \
        CTESTS_TIMEOUT=180 sh Tests/CTests/run.sh "$libdir"
}

# A short load on the C KV server built against the sanitized library: h2load over Connect (HTTP/2 and
# HTTP/1.1) and gRPC, the C client's stream scenario (every call shape, every protocol), requests the
# HTTP/1.1 parser rejects, then SIGTERM: the server must stop and exit 0 with no sanitizer report
# (LeakSanitizer checks at exit).
load() {
    local tmp pid address port url proc ok=0 i p h
    tmp=$(mktemp -d)
    for prog in server client; do
        clang -std=c11 -O1 -g -fno-omit-frame-pointer -fsanitize="$mode" -fuse-ld=lld -Wall -Wextra -Werror \
            -I"$repo/include" -o "$tmp/kv-$prog-c" "$repo/examples/c/kv_$prog.c" "$repo/examples/c/kv_common.c" \
            -L"$libdir" -lconnectplugin -Wl,-rpath,"$libdir" -pthread || { rm -rf "$tmp"; return 1; }
    done
    "$tmp/kv-server-c" --listen 127.0.0.1:0 >"$tmp/server.out" 2>"$tmp/server.err" &
    pid=$!
    address=
    for i in $(seq 1 300); do
        case "$(head -n 1 "$tmp/server.out")" in "listening on "*) address=$(head -n 1 "$tmp/server.out") ;; esac
        [ -n "$address" ] && break
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    address=${address#listening on }
    if [ -z "$address" ]; then
        echo "load: the server did not start"
        cat "$tmp/server.err"
        kill -9 "$pid" 2>/dev/null
        rm -rf "$tmp"
        return 1
    fi
    port=${address##*:}
    url=http://$address
    proc=/connectplugin.examples.kv.v1.KVService
    printf '\n\001k\022\005value' >"$tmp/put.bin"
    printf '\n\001k' >"$tmp/get.bin"
    printf '\000\000\000\000\003\n\001k' >"$tmp/get.grpc"
    # h2load_run NAME ARGS...: every request answered with 2xx, none failed.
    h2load_run() {
        local name=$1 out
        shift
        out=$(h2load "$@" 2>&1)
        local succeeded failed2xx
        succeeded=$(echo "$out" | sed -n 's/^requests: .* \([0-9]*\) succeeded, \([0-9]*\) failed, \([0-9]*\) errored.*/\1 \2 \3/p')
        failed2xx=$(echo "$out" | sed -n 's/^status codes: \([0-9]*\) 2xx, \([0-9]*\) 3xx, \([0-9]*\) 4xx, \([0-9]*\) 5xx/\1 \2 \3 \4/p')
        echo "load: $name: requests ok/failed/errored: $succeeded; status 2xx/3xx/4xx/5xx: $failed2xx"
        set -- $succeeded $failed2xx
        if [ $# -ne 7 ] || [ "$1" -eq 0 ] || [ "$2" -ne 0 ] || [ "$3" -ne 0 ] || [ "$4" -ne "$1" ]; then
            echo "$out" | tail -n 12
            ok=1
        fi
    }
    h2load_run "Connect Put, HTTP/2, 4 connections x 16 streams, 3 s" -D 3 -c 4 -m 16 -d "$tmp/put.bin" \
        -H 'content-type: application/proto' "$url$proc/Put"
    h2load_run "Connect Get, HTTP/1.1, 4 connections, 2 s" --h1 -D 2 -c 4 -d "$tmp/get.bin" \
        -H 'content-type: application/proto' "$url$proc/Get"
    h2load_run "gRPC Get, HTTP/2, 2 connections x 8 streams, 2 s" -D 2 -c 2 -m 8 -d "$tmp/get.grpc" \
        -H 'content-type: application/grpc' -H 'te: trailers' "$url$proc/Get"
    for p in connect grpc grpcweb; do
        for h in 2 1.1; do
            [ "$p" = grpc ] && [ "$h" = 1.1 ] && continue
            if "$tmp/kv-client-c" --url "$url" --scenario stream --protocol "$p" --http "$h" >"$tmp/client.out" 2>"$tmp/client.err"; then
                echo "load: kv-client-c --scenario stream --protocol $p --http $h: ok"
            else
                echo "load: kv-client-c --scenario stream --protocol $p --http $h: FAILED"
                tail -n 5 "$tmp/client.out" "$tmp/client.err"
                ok=1
            fi
        done
    done
    # Requests the HTTP/1.1 parser rejects, and a gRPC-Web request whose first message is announced
    # over the size limit: both answered early, then the server closes (this reads until then).
    for i in $(seq 1 10); do
        for req in 'THIS IS NOT HTTP\r\n\r\n' 'GET / HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n' \
            "POST $proc/Get HTTP/1.1\\r\\nHost: x\\r\\nContent-Type: application/grpc-web+proto\\r\\nContent-Length: 99999999\\r\\n\\r\\n\\000\\177\\377\\377\\377"; do
            if exec 3<>"/dev/tcp/127.0.0.1/$port"; then
                printf "$req" >&3
                timeout 10 cat <&3 >>"$tmp/rejected.out"
                exec 3<&-
            fi
        done
    done
    i=$(grep -c '^HTTP/1.1 400 ' "$tmp/rejected.out")
    p=$(grep -ci '^grpc-status: 8' "$tmp/rejected.out")
    echo "load: 30 requests answered early: $i x 400 (malformed), $p x grpc-status 8 (too large)"
    [ "$i" -eq 20 ] && [ "$p" -eq 10 ] || ok=1
    kill -TERM "$pid"
    local rc=
    for i in $(seq 1 600); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        echo "load: the server did not exit within 60 s of SIGTERM"
        kill -9 "$pid"
        ok=1
    fi
    wait "$pid"
    rc=$?
    if [ "$rc" -ne 0 ] || grep -q 'Sanitizer' "$tmp/server.err"; then
        echo "load: the server exited $rc; its stderr:"
        cat "$tmp/server.err"
        ok=1
    else
        echo "load: the server exited 0 with no sanitizer report"
    fi
    rm -rf "$tmp"
    return $ok
}

total_start=$(date +%s)
if ! want build || step build build; then
    want swift && step "swift tests" swift_tests
    if [ "$mode" = address ]; then
        want c && step "C tests" c_tests
        want load && step "load on the C KV server" load
    fi
fi
echo "---- sanitize-$mode: $(($(date +%s) - total_start)) s in all"
if [ ${#failed[@]} -eq 0 ]; then
    echo "sanitize-$mode: passed"
else
    echo "sanitize-$mode: FAILED (${failed[*]})"
    exit 1
fi
