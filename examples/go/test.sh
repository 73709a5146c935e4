#!/usr/bin/env bash
# Runs kv-client-go against kv-server-go over TCP and a Unix socket, both codecs, HTTP/1.1 and 2,
# plus malformed requests with curl; then the streaming scenario (examples/proto/README.md) for every
# protocol x HTTP version x codec x compression, in plaintext, TLS and mTLS (certificates made with
# openssl). Checks the exact output lines and that SIGTERM exits 0.
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

# The streaming scenario's 18 lines (Tests/interop/kvscenario.py expected_lines(http)).
reserved='error=failed_precondition message=key is reserved detail=google.rpc.ErrorInfo reason=RESERVED_KEY domain=kv.examples.connectplugin key=__error__'
stream_expected() { # HTTP
  local live='watch-live s/a events=4 s/a1=x s/a2=y s/a3=w s/a3=<deleted>'
  [ "$1" = 2 ] || live='watch-live skipped (full-duplex bidi needs HTTP/2)'
  printf '%s\n' "$expected" "get __error__ $reserved" 'get __slow__ error=deadline_exceeded' 'putmany count=3' \
    'putmany <none> count=0' 'putmany <empty> error=invalid_argument message=key must not be empty' \
    'list s/a count=2 s/a1=x s/a2=y' 'list s/none count=0' "list __error__ $reserved" \
    'watch s/a,s/b events=3 s/a1=x s/a2=y s/b1=z' "watch s/a,__error__ events=2 s/a1=x s/a2=y $reserved" \
    "$live" 'cleanup deleted=3' 'list s/ count=0'
}

# start_server LISTEN [SERVER FLAGS...] -> sets SERVER_PID and BOUND
start_server() {
  local out="$work/server.$RANDOM.out"
  "$server" --listen "$@" >"$out" 2>"$out.err" &
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

run_stream_matrix() { # URL [CLIENT FLAGS...]
  local url="$1"; shift
  local n=0
  for protocol in connect grpc grpcweb; do
    for http in 1.1 2; do
      [ "$protocol" = grpc ] && [ "$http" = 1.1 ] && continue
      for codec in proto json; do
        for comp in identity gzip; do
          local got rc=0
          got="$("$client" --url "$url" --scenario stream --protocol "$protocol" --codec "$codec" --http "$http" \
            --compression "$comp" "$@" 2>"$work/client.err")" || rc=$?
          if [ "$rc" != 0 ] || [ "$got" != "$(stream_expected "$http")" ]; then
            fail "stream $url $protocol h$http $codec $comp $*: exit $rc, output:"$'\n'"$got"$'\n'"stderr: $(cat "$work/client.err")"
          else
            n=$((n + 1))
          fi
        done
      done
    done
  done
  echo "ok: $n streaming scenarios against $url $*"
}

# Streaming scenario, plaintext.
start_server 127.0.0.1:0
run_stream_matrix "http://$BOUND"
# Usage errors exit 2.
rc=0; "$client" --url "http://$BOUND" --scenario stream --protocol grpc --http 1.1 >/dev/null 2>&1 || rc=$?
[ "$rc" = 2 ] || fail "gRPC over HTTP/1.1: exit $rc, want 2"
rc=0; "$client" --url "http://$BOUND" --protocol soap >/dev/null 2>&1 || rc=$?
[ "$rc" = 2 ] || fail "unknown protocol: exit $rc, want 2"
stop_server

# TLS and mTLS (P-256, X.509 v3, as Tests/interop/conftest.py makes them).
if command -v openssl >/dev/null; then
  tls="$work/tls"
  mkdir -p "$tls"
  (
    cd "$tls"
    printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n' >server.ext
    printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n' >client.ext
    for n in ca server client; do openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$n.key" 2>/dev/null; done
    openssl req -new -x509 -key ca.key -subj "/CN=kv-go test CA" -days 2 -sha256 -out ca.crt 2>/dev/null
    for n in server client; do
      openssl req -new -key "$n.key" -subj "/CN=kv-go $n" -out "$n.csr" 2>/dev/null
      openssl x509 -req -in "$n.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 -sha256 -extfile "$n.ext" -out "$n.crt" 2>/dev/null
    done
  )
  start_server 127.0.0.1:0 --tls-cert "$tls/server.crt" --tls-key "$tls/server.key"
  run_stream_matrix "https://$BOUND" --tls-ca "$tls/ca.crt"
  got="$("$client" --url "http://$BOUND" --ca "$tls/ca.crt" 2>&1)" || fail "unary over TLS (--ca, http:// URL): $got"
  [ "$got" = "$expected" ] || fail "unary over TLS output: $got"
  rc=0; "$client" --url "https://$BOUND" --scenario stream >/dev/null 2>"$work/client.err" || rc=$?
  [ "$rc" = 1 ] && grep -q 'unknown CA' "$work/client.err" || fail "TLS without our CA: exit $rc, stderr $(cat "$work/client.err")"
  stop_server

  start_server 127.0.0.1:0 --tls-cert "$tls/server.crt" --tls-key "$tls/server.key" --tls-client-ca "$tls/ca.crt"
  run_stream_matrix "https://$BOUND" --tls-ca "$tls/ca.crt" --cert "$tls/client.crt" --key "$tls/client.key"
  rc=0; got="$("$client" --url "https://$BOUND" --scenario stream --tls-ca "$tls/ca.crt" 2>"$work/client.err")" || rc=$?
  if [ "$rc" != 1 ] || [ -n "$got" ] || ! grep -q 'client certificate' "$work/client.err"; then
    fail "mTLS without a client certificate: exit $rc, stdout '$got', stderr $(cat "$work/client.err")"
  else
    echo "ok: mTLS refuses a client without a certificate"
  fi
  stop_server
else
  fail "openssl is missing: TLS checks not run"
fi

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
