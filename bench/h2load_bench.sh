#!/bin/sh
# h2load_bench.sh LIBDIR — unary calls per second under h2load against the C KV server
# (examples/c/kv_server.c built against LIBDIR), beside nghttpd (Debian nghttp2-server) serving a
# static file of the same size as the KV response: the ceiling of an HTTP/2 stack on this machine.
# Prints:
#   bench: h2load_kv_get_proto req_per_s=X baseline_req_per_s=Y ratio=R
# ratio = baseline / ours (lower is better). The baseline answers a GET from a file; ours answers a
# Connect POST (application/proto) through the handler pool. Both: 4 clients x 16 streams, 2 threads.
# Environment: BENCH_H2LOAD_N (default 100000 requests).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
libdir=$(cd "$1" && pwd)
n=${BENCH_H2LOAD_N:-100000}
CC=${CC:-cc}
for tool in h2load nghttpd curl; do
    command -v "$tool" >/dev/null 2>&1 || { echo "h2load_bench: $tool is missing (run scripts/setup.sh)" >&2; exit 1; }
done
tmp=$(mktemp -d)
cleanup() {
    [ -n "${spid:-}" ] && kill "$spid" 2>/dev/null || true
    [ -n "${npid:-}" ] && kill "$npid" 2>/dev/null || true
    rm -rf "$tmp"
}
trap cleanup EXIT INT TERM
"$CC" -std=c11 -O2 -Wall -Wextra -I"$repo/include" -o "$tmp/kv-server-c" "$repo/examples/c/kv_server.c" \
    "$repo/examples/c/kv_common.c" -L"$libdir" -lconnectplugin -Wl,-rpath,"$libdir" -pthread

SWIFT_BACKTRACE=enable=no "$tmp/kv-server-c" --listen 127.0.0.1:0 >"$tmp/server.out" 2>&1 &
spid=$!
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

rate() { sed -n 's/^finished in [^,]*, \([0-9.]*\) req\/s.*/\1/p' "$1"; }
check() {
    if ! grep -q "succeeded, 0 failed, 0 errored" "$1" || ! grep -q "status codes: $n 2xx" "$1"; then
        echo "h2load_bench: $2 had failures:" >&2
        cat "$1" >&2
        exit 1
    fi
}
h2load -n "$n" -c 4 -m 16 -t 2 -d "$tmp/get.bin" -H 'content-type: application/proto' "$url/Get" >"$tmp/ours.txt" 2>&1
check "$tmp/ours.txt" "connectplugin"

mkdir -p "$tmp/docs"
cp "$tmp/resp.bin" "$tmp/docs/get"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')
nghttpd --no-tls -d "$tmp/docs" "$port" >"$tmp/nghttpd.out" 2>&1 &
npid=$!
for _ in $(seq 1 100); do curl -sf --http2-prior-knowledge "http://127.0.0.1:$port/get" -o /dev/null && break; sleep 0.05; done
h2load -n "$n" -c 4 -m 16 -t 2 "http://127.0.0.1:$port/get" >"$tmp/base.txt" 2>&1
check "$tmp/base.txt" "nghttpd"

ours=$(rate "$tmp/ours.txt")
base=$(rate "$tmp/base.txt")
echo "bench: h2load_kv_get_proto req_per_s=$ours baseline_req_per_s=$base ratio=$(awk "BEGIN{printf \"%.2f\", $base/$ours}") response_bytes=$size"
