#!/usr/bin/env bash
# The main job: KV servers written in different languages, each called by the clients of all four
# languages, through libconnectplugin — over TCP (HTTP/2 and HTTP/1.1) and a Unix socket.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=examples/bin
LANGS=(c go python swift)
tmp=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT

start_server() { # lang listen-addr -> sets URL (not run in a subshell, so the trap sees the pid)
  local lang=$1 listen=$2 out="$tmp/server-$1.out"
  "$BIN/kv-server-$lang" --listen "$listen" >"$out" 2>&1 &
  pids+=($!)
  for _ in $(seq 1 100); do
    if grep -q '^listening on ' "$out"; then break; fi
    sleep 0.1
  done
  local addr
  addr=$(sed -n 's/^listening on //p' "$out" | head -1)
  [ -n "$addr" ] || { echo "kv-server-$lang did not start:"; cat "$out"; exit 1; }
  case "$addr" in unix:*) URL="unix://${addr#unix:}" ;; *) URL="http://$addr" ;; esac
}

URL=
failures=0
run_clients() { # url codec http
  for lang in "${LANGS[@]}"; do
    printf '  %-18s' "kv-client-$lang"
    if out=$("$BIN/kv-client-$lang" --url "$1" --codec "$2" --http "$3" 2>&1); then
      echo "ok: $(echo "$out" | sed -n 2p)"
    else
      echo "FAILED"; echo "$out" | sed 's/^/      /'; failures=$((failures+1))
    fi
  done
}

echo "connectplugin $(grep -m1 CONNECTPLUGIN_VERSION include/connectplugin.h | awk '{print $3}') demo: one KV service, servers and clients in C, Go, Python and Swift"
for server in "${LANGS[@]}"; do
  start_server "$server" 127.0.0.1:0
  echo
  echo "== kv-server-$server at $URL"
  echo " proto over HTTP/2 (h2c):"; run_clients "$URL" proto 2
  echo " JSON over HTTP/1.1:";      run_clients "$URL" json 1.1
done
start_server python "unix:$tmp/kv.sock"
echo
echo "== kv-server-python at $URL (Unix socket)"
run_clients "$URL" proto 2
echo
echo "A client's full output (kv-client-go against kv-server-swift, Unix socket):"
start_server swift "unix:$tmp/kv-swift.sock"
"$BIN/kv-client-go" --url "$URL" | sed 's/^/  /'
echo
if [ "$failures" -eq 0 ]; then echo "demo: every client talked to every server"; else echo "demo: $failures client runs failed"; exit 1; fi
