#!/usr/bin/env bash
# The main job: a plugin host launching the KV plugin written in each of the four languages, calling it
# and stopping it. Then KV servers written in different languages, each called by the clients of all four
# languages, through libconnectplugin: unary calls over TCP (HTTP/2 and HTTP/1.1) and a Unix socket;
# the streaming scenario (server, client and bidi streams) over gRPC, gRPC-Web and Connect; and TLS
# with client certificates (mTLS).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=examples/bin
LANGS=(c go python swift)
tmp=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT
failures=0

start_server() { # lang listen-addr [server flags...] -> sets URL (not in a subshell, so the trap sees the pid)
  local lang=$1 listen=$2 out="$tmp/server-$1-$RANDOM.out"
  shift 2
  "$BIN/kv-server-$lang" --listen "$listen" "$@" >"$out" 2>&1 &
  pids+=($!)
  for _ in $(seq 1 100); do
    if grep -q '^listening on ' "$out"; then break; fi
    sleep 0.1
  done
  local addr
  addr=$(sed -n 's/^listening on //p' "$out" | head -1)
  [ -n "$addr" ] || { echo "kv-server-$lang did not start:"; cat "$out"; exit 1; }
  case "$addr" in unix:*) URL="unix://${addr#unix:}" ;; *) URL="http://$addr" ;; esac
  if [ $# -gt 0 ]; then URL="https://$addr"; fi
}

URL=
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

echo "connectplugin $(grep -m1 CONNECTPLUGIN_VERSION include/connectplugin.h | awk '{print $3}' | tr -d '"') demo"
echo
echo "== The main job: a host launching the KV plugin written in each language, calling it, stopping it"
echo "   (kv-host-python; each plugin speaks go-plugin's handshake; its hclog lines come back to the host's"
echo "   logging with the plugin's name: --logs prints them as 'log NAME LEVEL MESSAGE key=value')"
for lang in "${LANGS[@]}"; do
  echo
  echo " kv-host-python --logs --plugin $BIN/kv-plugin-$lang"
  if out=$("$BIN/kv-host-python" --logs --plugin "$BIN/kv-plugin-$lang" 2>&1); then
    echo "$out" | sed 's/^/    /'
  else
    echo "    FAILED"; echo "$out" | sed 's/^/      /'; failures=$((failures+1))
  fi
done
echo
echo "== A host in each language, each loading the plugin of another language (the tests run the whole 4x4)"
hosts=(c go swift python)
plugins=(swift c python go)
for i in "${!hosts[@]}"; do
  echo
  echo " kv-host-${hosts[$i]} --plugin $BIN/kv-plugin-${plugins[$i]}"
  if out=$("$BIN/kv-host-${hosts[$i]}" --plugin "$BIN/kv-plugin-${plugins[$i]}" 2>&1); then
    echo "$out" | sed 's/^/    /'
  else
    echo "    FAILED"; echo "$out" | sed 's/^/      /'; failures=$((failures+1))
  fi
done
echo
echo "== One KV service, servers and clients in C, Go, Python and Swift"
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
run_stream_clients() { # url protocol http [client flags...]
  local url=$1 protocol=$2 http=$3
  shift 3
  for lang in "${LANGS[@]}"; do
    printf '  %-18s' "kv-client-$lang"
    if out=$("$BIN/kv-client-$lang" --url "$url" --scenario stream --protocol "$protocol" --http "$http" "$@" 2>&1); then
      echo "ok: $(echo "$out" | wc -l) steps, e.g. $(echo "$out" | grep -m1 '^watch ')"
    else
      echo "FAILED"; echo "$out" | sed 's/^/      /'; failures=$((failures+1))
    fi
  done
}

echo
echo "Streaming (List: server stream, PutMany: client stream, Watch: bidi):"
for server in "${LANGS[@]}"; do
  start_server "$server" 127.0.0.1:0
  echo "== kv-server-$server at $URL"
  echo " gRPC over HTTP/2:";        run_stream_clients "$URL" grpc 2
  echo " gRPC-Web over HTTP/1.1:";  run_stream_clients "$URL" grpcweb 1.1
  echo " Connect over HTTP/2:";     run_stream_clients "$URL" connect 2
done

echo
echo "TLS with client certificates (a CA, a server and a client certificate made by openssl):"
certs="$tmp/certs"
mkdir -p "$certs"
(
  cd "$certs"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.pem -days 2 \
    -subj "/CN=connectplugin demo CA" 2>/dev/null
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout server.key -out server.csr \
    -subj "/CN=localhost" 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >server.ext
  openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 2 \
    -extfile server.ext 2>/dev/null
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout client.key -out client.csr \
    -subj "/CN=demo client" 2>/dev/null
  printf 'extendedKeyUsage=clientAuth\n' >client.ext
  openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out client.pem -days 2 \
    -extfile client.ext 2>/dev/null
)
for server in go swift; do
  start_server "$server" 127.0.0.1:0 --tls-cert "$certs/server.pem" --tls-key "$certs/server.key" --tls-client-ca "$certs/ca.pem"
  echo "== kv-server-$server at $URL (mTLS)"
  echo " gRPC over HTTP/2 (ALPN h2):"; run_stream_clients "$URL" grpc 2 --tls-ca "$certs/ca.pem" --cert "$certs/client.pem" --key "$certs/client.key"
  echo " Connect over HTTP/1.1 (ALPN http/1.1):"; run_stream_clients "$URL" connect 1.1 --tls-ca "$certs/ca.pem" --cert "$certs/client.pem" --key "$certs/client.key"
done

echo
echo "A client's full output (kv-client-go against kv-server-swift, Unix socket):"
start_server swift "unix:$tmp/kv-swift.sock"
"$BIN/kv-client-go" --url "$URL" | sed 's/^/  /'
echo
echo "A streaming run's full output (kv-client-python against kv-server-c, gRPC over HTTP/2):"
start_server c 127.0.0.1:0
"$BIN/kv-client-python" --url "$URL" --scenario stream --protocol grpc --http 2 | sed 's/^/  /'
echo
if [ "$failures" -eq 0 ]; then echo "demo: every client talked to every server"; else echo "demo: $failures client runs failed"; exit 1; fi
