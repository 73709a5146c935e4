#!/bin/sh
# h2load_bench.sh LIBDIR BINDIR — unary calls per second under h2load, with the server's CPU time per
# request read from /proc (procstat: the sum over its threads of schedstat run time), for
#   1. the C KV server (examples/c/kv_server.c built against LIBDIR), Connect Get in application/proto,
#      beside nghttpd (Debian nghttp2-server) serving a static file of the same size as the KV
#      response: the ceiling of an HTTP/2 stack on this machine:
#        bench: h2load_kv_get_proto req_per_s=X baseline_req_per_s=Y ratio=R server_cpu_us_per_req=A
#               baseline_server_cpu_us_per_req=B response_bytes=N
#      ratio = baseline / ours (lower is better);
#   2. peers under the same gRPC unary load (/bench.v1.BenchService/Unary, 64-byte messages in the
#      5-byte gRPC prefix, te: trailers): connectplugin's C handler (BINDIR/bench_server cp), its Go
#      handler (BINDIR/go-bench-server), Debian's grpc-go (BINDIR/grpcgo-bench-server) and grpcio
#      (bench/python/grpcio_server.py), then nghttpd's static file again as the ceiling:
#        bench: h2load_grpc_unary_NAME req_per_s=X server_cpu_us_per_req=A server_ctxsw_per_req=C
#               rate_vs_connectplugin=R
#      Each peer's answer is checked for grpc-status 0 with nghttp -v before its run (h2load counts
#      only HTTP statuses). A table follows.
# All runs: h2load -c 4 -m 16 -t 2. Environment: BENCH_H2LOAD_N (100000 requests for the KV pair),
# BENCH_PEER_N (50000 per peer), BENCH_PEERS (default "connectplugin_c connectplugin_go grpcgo grpcio nghttpd").
set -eu
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
libdir=$(cd "$1" && pwd)
bindir=$(cd "$2" && pwd)
n=${BENCH_H2LOAD_N:-100000}
peer_n=${BENCH_PEER_N:-50000}
peers=${BENCH_PEERS:-"connectplugin_c connectplugin_go grpcgo grpcio nghttpd"}
CC=${CC:-cc}
for tool in h2load nghttpd nghttp curl; do
    command -v "$tool" >/dev/null 2>&1 || { echo "h2load_bench: $tool is missing (run scripts/setup.sh)" >&2; exit 1; }
done
tmp=$(mktemp -d)
pids=""
cleanup() {
    for p in $pids; do kill "$p" 2>/dev/null || true; done
    rm -rf "$tmp"
}
trap cleanup EXIT INT TERM
"$CC" -std=c11 -O2 -Wall -Wextra -I"$repo/include" -o "$tmp/kv-server-c" "$repo/examples/c/kv_server.c" \
    "$repo/examples/c/kv_common.c" -L"$libdir" -lconnectplugin -Wl,-rpath,"$libdir" -pthread

# cpu_ns PID: CPU ns of PID so far; ctxsw PID: its context switches.
cpu_ns() { "$bindir/procstat" "$1" | cut -d' ' -f1; }
ctxsw() { "$bindir/procstat" "$1" | cut -d' ' -f2; }
per_req() { awk "BEGIN{printf \"%.1f\", ($2 - $1) / 1000 / $3}"; }
rate() { sed -n 's/^finished in [^,]*, \([0-9.]*\) req\/s.*/\1/p' "$1"; }
check() { # FILE NAME COUNT
    if ! grep -q "succeeded, 0 failed, 0 errored" "$1" || ! grep -q "status codes: $3 2xx" "$1"; then
        echo "h2load_bench: $2 had failures:" >&2
        cat "$1" >&2
        exit 1
    fi
}
# wait_ready OUTFILE: waits for a "ready" line; prints the "tcp ADDR" address.
wait_ready() {
    for _ in $(seq 1 600); do grep -q '^ready' "$1" 2>/dev/null && break; sleep 0.05; done
    sed -n 's/^tcp //p' "$1"
}
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }

# ---- 1. the C KV server beside nghttpd
SWIFT_BACKTRACE=enable=no "$tmp/kv-server-c" --listen 127.0.0.1:0 >"$tmp/server.out" 2>&1 &
spid=$!
pids="$pids $spid"
for _ in $(seq 1 100); do grep -q 'listening on' "$tmp/server.out" 2>/dev/null && break; sleep 0.05; done
addr=$(sed -n 's/^listening on //p' "$tmp/server.out")
[ -n "$addr" ] || { echo "h2load_bench: the C KV server did not start" >&2; cat "$tmp/server.out" >&2; exit 1; }
url="http://$addr/connectplugin.examples.kv.v1.KVService"
# A 64-byte value under key "bench"; GetRequest{key: "bench"} = 0a 05 "bench".
value=$(head -c 48 /dev/zero | tr '\0' 'v' | base64 -w0)
curl -sf --http2-prior-knowledge -H 'content-type: application/json' \
    -d "{\"key\":\"bench\",\"value\":\"$value\"}" "$url/Put" >/dev/null
printf '\n\005bench' >"$tmp/get.bin"
curl -sf --http2-prior-knowledge -H 'content-type: application/proto' --data-binary @"$tmp/get.bin" "$url/Get" -o "$tmp/resp.bin"
size=$(wc -c <"$tmp/resp.bin")
h2load -n 2000 -c 4 -m 16 -t 2 -d "$tmp/get.bin" -H 'content-type: application/proto' "$url/Get" >/dev/null 2>&1 || true
c0=$(cpu_ns "$spid")
h2load -n "$n" -c 4 -m 16 -t 2 -d "$tmp/get.bin" -H 'content-type: application/proto' "$url/Get" >"$tmp/ours.txt" 2>&1
c1=$(cpu_ns "$spid")
check "$tmp/ours.txt" "connectplugin" "$n"
kill "$spid"
wait "$spid" 2>/dev/null || true

mkdir -p "$tmp/docs"
cp "$tmp/resp.bin" "$tmp/docs/get"
port=$(free_port)
nghttpd --no-tls -d "$tmp/docs" "$port" >"$tmp/nghttpd.out" 2>&1 &
npid=$!
pids="$pids $npid"
for _ in $(seq 1 100); do curl -sf --http2-prior-knowledge "http://127.0.0.1:$port/get" -o /dev/null && break; sleep 0.05; done
b0=$(cpu_ns "$npid")
h2load -n "$n" -c 4 -m 16 -t 2 "http://127.0.0.1:$port/get" >"$tmp/base.txt" 2>&1
b1=$(cpu_ns "$npid")
check "$tmp/base.txt" "nghttpd" "$n"

ours=$(rate "$tmp/ours.txt")
base=$(rate "$tmp/base.txt")
echo "bench: h2load_kv_get_proto req_per_s=$ours baseline_req_per_s=$base ratio=$(awk "BEGIN{printf \"%.2f\", $base/$ours}") server_cpu_us_per_req=$(per_req "$c0" "$c1" "$n") baseline_server_cpu_us_per_req=$(per_req "$b0" "$b1" "$n") response_bytes=$size"

# ---- 2. peers under the same gRPC unary load
printf '\000\000\000\000\100\012\076' >"$tmp/grpc.bin"
head -c 62 /dev/zero | tr '\0' 'q' >>"$tmp/grpc.bin"
head -c 62 /dev/zero | tr '\0' 'r' >"$tmp/docs/unary"
table=""
ref=""
for peer in $peers; do
    out="$tmp/$peer.out"
    case $peer in
    connectplugin_c) SWIFT_BACKTRACE=enable=no "$bindir/bench_server" cp --tcp 127.0.0.1:0 >"$out" 2>&1 & ;;
    connectplugin_go) SWIFT_BACKTRACE=enable=no "$bindir/go-bench-server" --tcp 127.0.0.1:0 >"$out" 2>&1 & ;;
    grpcgo) "$bindir/grpcgo-bench-server" --tcp 127.0.0.1:0 >"$out" 2>&1 & ;;
    grpcio) python3 "$here/python/grpcio_server.py" --tcp 127.0.0.1:0 >"$out" 2>&1 & ;;
    nghttpd) ;;
    *) echo "h2load_bench: unknown peer $peer" >&2; exit 2 ;;
    esac
    if [ "$peer" = nghttpd ]; then
        pid=$npid
        purl="http://127.0.0.1:$port/unary"
        set --
    else
        pid=$!
        pids="$pids $pid"
        paddr=$(wait_ready "$out")
        [ -n "$paddr" ] || { echo "h2load_bench: $peer did not start" >&2; cat "$out" >&2; exit 1; }
        purl="http://$paddr/bench.v1.BenchService/Unary"
        nghttp -v -H ':method: POST' -H 'content-type: application/grpc' -H 'te: trailers' -d "$tmp/grpc.bin" "$purl" >"$tmp/$peer.check" 2>&1 || true
        if ! grep -q 'grpc-status: 0' "$tmp/$peer.check"; then
            echo "h2load_bench: $peer did not answer the gRPC call with grpc-status 0:" >&2
            cat "$tmp/$peer.check" >&2
            exit 1
        fi
        set -- -d "$tmp/grpc.bin" -H 'content-type: application/grpc' -H 'te: trailers'
    fi
    h2load -n 2000 -c 4 -m 16 -t 2 "$@" "$purl" >/dev/null 2>&1 || true
    c0=$(cpu_ns "$pid")
    x0=$(ctxsw "$pid")
    h2load -n "$peer_n" -c 4 -m 16 -t 2 "$@" "$purl" >"$tmp/$peer.txt" 2>&1
    c1=$(cpu_ns "$pid")
    x1=$(ctxsw "$pid")
    check "$tmp/$peer.txt" "$peer" "$peer_n"
    r=$(rate "$tmp/$peer.txt")
    [ -n "$ref" ] || ref=$r
    cpu=$(per_req "$c0" "$c1" "$peer_n")
    cs=$(awk "BEGIN{printf \"%.2f\", ($x1 - $x0) / $peer_n}")
    vs=$(awk "BEGIN{printf \"%.2f\", $r / $ref}")
    echo "bench: h2load_grpc_unary_$peer req_per_s=$r server_cpu_us_per_req=$cpu server_ctxsw_per_req=$cs rate_vs_connectplugin=$vs"
    table="$table$(printf '  %-18s %10s %14s %14s %10s' "$peer" "$r" "$cpu" "$cs" "$vs")
"
    if [ "$peer" != nghttpd ]; then
        kill "$pid"
        wait "$pid" 2>/dev/null || true
    fi
done
echo "peer table (h2load -c 4 -m 16 -t 2, gRPC unary, 64-byte messages; nghttpd: static file):"
printf '  %-18s %10s %14s %14s %10s\n' server req/s cpu_us/req ctxsw/req rate_vs_cp
printf '%s' "$table"
