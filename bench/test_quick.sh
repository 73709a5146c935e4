#!/bin/sh
# test_quick.sh LIBDIR — the smoke test of `make bench` (run by Tests/CTests/run.sh in make test-c):
# runs bench/run.sh with BENCH_QUICK=1 (tiny sizes, no Swift build) against LIBDIR and checks that it
# exits 0 and prints every figure with its cost fields as numbers. No timing is asserted.
# Last line: "c-tests: N passed, M failed".
set -u
here=$(cd "$(dirname "$0")" && pwd)
libdir=$1
out=$(mktemp)
trap 'rm -f "$out"' EXIT INT TERM
unset BENCH_PARTS BENCH_PEERS
passed=0
failed=0
ok() { passed=$((passed + 1)); echo "ok   $1"; }
bad() { failed=$((failed + 1)); echo "FAIL $1"; }
if BENCH_QUICK=1 sh "$here/run.sh" "$libdir" >"$out" 2>&1; then ok "bench/run.sh BENCH_QUICK=1 exits 0"; else
    bad "bench/run.sh BENCH_QUICK=1 exits 0"; tail -n 40 "$out"
fi
num='[0-9][0-9.]*'
cost="client_cpu_us=$num server_cpu_us=$num client_ctxsw=$num server_ctxsw=$num"
# expect NAME REGEX: one "bench: NAME ..." line matching REGEX.
expect() {
    if grep -Eq "^bench: $1 $2" "$out"; then ok "$1"; else bad "$1: no line matching 'bench: $1 $2'"; fi
}
for t in unix tcp; do
    expect "unary_h2c_${t}_baseline" "median_us=$num p99_us=$num $cost\$"
    expect "unary_h2c_$t" "median_us=$num p99_us=$num $cost baseline_median_us=$num ratio=$num cpu_ratio=$num\$"
    expect "unary_h2c_${t}_inline" "median_us=$num p99_us=$num $cost baseline_median_us=$num ratio=$num cpu_ratio=$num\$"
done
expect unary_grpc_h2c_tcp "median_us=$num p99_us=$num $cost\$"
for p in connect grpc; do
    expect "allocs_unary_${p}_unix" "median_us=$num p99_us=$num $cost client_allocs=$num server_allocs=$num\$"
done
# The counters really count: a server that answered calls used CPU and allocated memory.
nonzero() { # NAME FIELD
    v=$(grep "^bench: $1 " "$out" | sed -n "s/.* $2=\([0-9.]*\).*/\1/p" | head -n 1)
    if [ -n "$v" ] && awk "BEGIN{exit !($v > 0)}"; then ok "$1 $2=$v > 0"; else bad "$1 $2='$v' is not > 0"; fi
}
for f in client_cpu_us server_cpu_us client_ctxsw server_ctxsw; do nonzero unary_h2c_tcp $f; done
for f in client_allocs server_allocs; do nonzero allocs_unary_connect_unix $f; done
if command -v valgrind >/dev/null 2>&1; then
    expect instr_unary_connect_unix "client_instr_per_call=$num server_instr_per_call=$num calls=$num\$"
    nonzero instr_unary_connect_unix client_instr_per_call
    nonzero instr_unary_connect_unix server_instr_per_call
    if grep -q '^allocation sources (server' "$out"; then ok "allocation sources printed"; else bad "allocation sources printed"; fi
fi
for s in 64B 64KiB; do
    expect "stream_$s" "msgs_per_s=$num .* ratio=$num cpu_us_per_mib=$num ctxsw_per_mib=$num baseline_cpu_us_per_mib=$num baseline_ctxsw_per_mib=$num\$"
done
for c in 1 8; do expect scale_callers "callers=$c conns=1 req_per_s=$num p50_us=$num p99_us=$num $cost\$"; done
for k in 1 10; do expect scale_conns "callers=$k conns=$k req_per_s=$num p50_us=$num p99_us=$num $cost rss_per_conn_kb=-?$num\$"; done
for l in c go python; do
    expect "host_client_$l" "median_us=$num p99_us=$num $cost ratio=$num cpu_ratio=$num\$"
    expect "host_handler_$l" "median_us=$num p99_us=$num $cost ratio=$num cpu_ratio=$num\$"
done
expect plugin_raw_baseline "median_us=$num p99_us=$num $cost\$"
for l in c go python; do
    expect "plugin_unary_$l" "median_us=$num p99_us=$num $cost baseline_median_us=$num ratio=$num plain_median_us=$num plain_ratio=$num plain_cpu_us=$num plain_ctxsw=$num cpu_ratio=$num\$"
    expect "plugin_launch_$l" "median_us=$num max_us=$num runs=$num\$"
done
nonzero plugin_unary_c server_cpu_us
expect h2load_kv_get_proto "req_per_s=$num baseline_req_per_s=$num ratio=$num server_cpu_us_per_req=$num baseline_server_cpu_us_per_req=$num response_bytes=$num\$"
for p in connectplugin_c connectplugin_go grpcgo grpcio nghttpd; do
    expect "h2load_grpc_unary_$p" "req_per_s=$num server_cpu_us_per_req=$num server_ctxsw_per_req=$num rate_vs_connectplugin=$num\$"
done
for t in 'scale table' 'host-language table' 'plugin table' 'peer table'; do
    if grep -q "^$t" "$out"; then ok "$t printed"; else bad "$t printed"; fi
done
if [ "$failed" -ne 0 ]; then echo "--- bench output"; cat "$out"; fi
echo "c-tests: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
