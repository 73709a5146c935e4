#!/usr/bin/env bash
# Runs kv-client-go against kv-server-go over TCP and a Unix socket, both codecs, HTTP/1.1 and 2,
# plus malformed requests with curl; checks the exact output lines and that SIGTERM exits 0.
#   examples/go/test.sh [LIBDIR]      (builds first with build.sh)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
"$here/build.sh" "$@"
server="$root/examples/bin/kv-server-go"
client="$root/examples/bin/kv-client-go"
work="$(mktemp -d)"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

expected='put greeting ok
get greeting found=true value=hello
delete greeting existed=true
get greeting found=false
get <empty> error=invalid_argument message=key must not be empty'

failures=0
fail() { echo "FAIL: $*" >&2; failures=$((failures + 1)); }

# start_server LISTEN -> sets SERVER_PID and BOUND
start_server() {
  local out="$work/server.$RANDOM.out"
  "$server" --listen "$1" >"$out" 2>"$out.err" &
  SERVER_PID=$!
  pids+=("$SERVER_PID")
  for _ in $(seq 1 100); do
    if grep -q '^listening on ' "$out"; then break; fi
    sleep 0.1
  done
  local line
  line="$(head -n1 "$out")"
  case "$line" in
    "listening on "*) BOUND="${line#listening on }" ;;
    *) echo "server did not announce its address: '$line' $(cat "$out.err")" >&2; exit 1 ;;
  esac
  [ "$(wc -l <"$out")" = 1 ] || fail "server printed more than one line"
}

stop_server() {
  kill -TERM "$SERVER_PID"
  local rc=0
  wait "$SERVER_PID" || rc=$?
  [ "$rc" = 0 ] || fail "server exited $rc after SIGTERM"
}

run_matrix() { # URL
  for codec in proto json; do
    for http in 1.1 2; do
      local got rc=0
      got="$("$client" --url "$1" --codec "$codec" --http "$http" 2>"$work/client.err")" || rc=$?
      if [ "$rc" != 0 ] || [ "$got" != "$expected" ]; then
        fail "client --url $1 --codec $codec --http $http: exit $rc, output:"$'\n'"$got"$'\n'"stderr: $(cat "$work/client.err")"
      else
        echo "ok: $1 codec=$codec http=$http"
      fi
    done
  done
}

# TCP
start_server 127.0.0.1:0
case "$BOUND" in 127.0.0.1:[1-9]*) ;; *) fail "bound TCP address '$BOUND'" ;; esac
run_matrix "http://$BOUND"
# Malformed requests are invalid_argument (connect unary over curl).
if command -v curl >/dev/null; then
  body="$(curl -s --http2-prior-knowledge -H 'content-type: application/proto' \
    --data-binary $'\x0a\x05ab' "http://$BOUND/connectplugin.examples.kv.v1.KVService/Get")"
  case "$body" in *'"invalid_argument"'*) echo "ok: malformed proto -> invalid_argument" ;; *) fail "malformed proto: $body" ;; esac
  body="$(curl -s -H 'content-type: application/json' --data-binary '{"key":1}' \
    "http://$BOUND/connectplugin.examples.kv.v1.KVService/Get")"
  case "$body" in *'"invalid_argument"'*) echo "ok: malformed json -> invalid_argument" ;; *) fail "malformed json: $body" ;; esac
  body="$(curl -s -H 'content-type: application/json' --data-binary '{"key":"k","value":"aGk="}' \
    "http://$BOUND/connectplugin.examples.kv.v1.KVService/Put")"
  [ "$body" = "{}" ] || fail "json Put response '$body', want {}"
  body="$(curl -s -H 'content-type: application/json' --data-binary '{"key":"k"}' \
    "http://$BOUND/connectplugin.examples.kv.v1.KVService/Get")"
  [ "$body" = '{"value":"aGk=","found":true}' ] || fail "json Get response '$body'"
fi
stop_server

# Unix socket
sock="$work/kv.sock"
start_server "unix:$sock"
[ "$BOUND" = "unix:$sock" ] || fail "bound unix address '$BOUND', want 'unix:$sock'"
run_matrix "unix://$sock"
stop_server

# SIGINT also stops gracefully with exit 0.
start_server 127.0.0.1:0
kill -INT "$SERVER_PID"
rc=0; wait "$SERVER_PID" || rc=$?
[ "$rc" = 0 ] || fail "server exited $rc after SIGINT"

if [ "$failures" != 0 ]; then
  echo "$failures failure(s)" >&2
  exit 1
fi
echo "all Go example checks passed"
