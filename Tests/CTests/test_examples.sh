#!/bin/sh
# Smoke test of the C key-value example (examples/README.md):
#   test_examples.sh SERVER CLIENT
# Starts SERVER on TCP and on a Unix socket, runs CLIENT with every codec and HTTP version against it
# and compares its output with the README's script; checks server answers to curl (a foreign Connect
# client, both codecs, bad input), and the graceful exit on SIGTERM/SIGINT.
# Last line: "c-tests: N passed, M failed".
set -u
server_bin=${1:?usage: test_examples.sh SERVER CLIENT}
client_bin=${2:?usage: test_examples.sh SERVER CLIENT}
tmp=$(mktemp -d)
server_pid=
cleanup() {
    if [ -n "$server_pid" ]; then kill -9 "$server_pid" 2>/dev/null; fi
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

passed=0
failed=0
pass() { passed=$((passed + 1)); echo "ok   - $1"; }
fail() { failed=$((failed + 1)); echo "FAIL - $1"; }

cat >"$tmp/expected" <<'OUT'
put greeting ok
get greeting found=true value=hello
delete greeting existed=true
get greeting found=false
get <empty> error=invalid_argument message=key must not be empty
OUT

# start_server ADDR: starts the server, sets server_pid and address (the bound one it printed).
start_server() {
    : >"$tmp/server.out"
    "$server_bin" --listen "$1" >"$tmp/server.out" 2>"$tmp/server.err" &
    server_pid=$!
    address=
    i=0
    while [ $i -lt 100 ]; do
        line=$(head -n 1 "$tmp/server.out")
        case "$line" in
        "listening on "*)
            address=${line#listening on }
            break
            ;;
        esac
        kill -0 "$server_pid" 2>/dev/null || break
        sleep 0.1
        i=$((i + 1))
    done
    if [ -n "$address" ]; then
        pass "server --listen $1 prints 'listening on $address'"
    else
        fail "server --listen $1 did not print 'listening on ADDR' (stdout: $(cat "$tmp/server.out"), stderr: $(cat "$tmp/server.err"))"
    fi
}

# stop_server SIGNAL: the server exits 0 within 10 s.
stop_server() {
    kill "-$1" "$server_pid"
    i=0
    while kill -0 "$server_pid" 2>/dev/null && [ $i -lt 100 ]; do
        sleep 0.1
        i=$((i + 1))
    done
    if kill -0 "$server_pid" 2>/dev/null; then
        fail "server exits after SIG$1"
        kill -9 "$server_pid"
        wait "$server_pid" 2>/dev/null
    else
        wait "$server_pid"
        rc=$?
        if [ $rc -eq 0 ]; then pass "server exits 0 after SIG$1"; else fail "server exits 0 after SIG$1 (exit $rc)"; fi
    fi
    server_pid=
}

# run_clients URL: the client script with both codecs and both HTTP versions.
run_clients() {
    for codec in proto json; do
        for http in 2 1.1; do
            "$client_bin" --url "$1" --codec "$codec" --http "$http" >"$tmp/client.out" 2>"$tmp/client.err"
            rc=$?
            if [ $rc -eq 0 ] && cmp -s "$tmp/expected" "$tmp/client.out"; then
                pass "client --url $1 --codec $codec --http $http"
            else
                fail "client --url $1 --codec $codec --http $http (exit $rc)"
                diff "$tmp/expected" "$tmp/client.out" | sed 's/^/    /'
                sed 's/^/    stderr: /' "$tmp/client.err"
            fi
        done
    done
}

# curl_check NAME EXPECTED_BODY_SUBSTRING CURL_ARGS...: a request from curl; the body must contain the string.
curl_check() {
    name=$1
    want=$2
    shift 2
    body=$(curl -sS --max-time 10 "$@" 2>&1)
    case "$body" in
    *"$want"*) pass "curl: $name" ;;
    *) fail "curl: $name: got '$body', want '$want'" ;;
    esac
}

proc=/connectplugin.examples.kv.v1.KVService

# ---- TCP
start_server 127.0.0.1:0
if [ -n "$address" ]; then
    run_clients "http://$address"
    if command -v curl >/dev/null 2>&1; then
        base="http://$address$proc"
        json='content-type: application/json'
        curl_check "json Put" '{}' -H "$json" -d '{"key":"c","value":"aGk="}' "$base/Put"
        curl_check "json Get" '"found":true' -H "$json" -d ' { "key" : "c" , "other": [1, {"x": null}] } ' "$base/Get"
        curl_check "json Get value" '"value":"aGk="' -H "$json" -d '{"key":"c"}' "$base/Get"
        curl_check "json Get over h2c" '"found":true' --http2-prior-knowledge -H "$json" -d '{"key":"c"}' "$base/Get"
        curl_check "json Delete" '{"existed":true}' -H "$json" -d '{"key":"c"}' "$base/Delete"
        curl_check "json Get absent" '{}' -H "$json" -d '{"key":"c"}' "$base/Get"
        curl_check "json empty key" 'invalid_argument' -H "$json" -d '{}' "$base/Get"
        curl_check "json bad input" 'invalid_argument' -H "$json" -d '{"key":' "$base/Get"
        printf '\n\005c' >"$tmp/bad.bin" # key of 5 bytes, 1 present: truncated
        curl_check "proto bad input" 'invalid_argument' -H 'content-type: application/proto' \
            --data-binary "@$tmp/bad.bin" "$base/Get"
        printf '\n\001c\022\002hi' >"$tmp/put.bin"
        curl -sS --max-time 10 -H 'content-type: application/proto' --data-binary "@$tmp/put.bin" \
            -o "$tmp/put.out" "$base/Put"
        printf '\n\001c' >"$tmp/get.bin"
        curl -sS --max-time 10 -H 'content-type: application/proto' --data-binary "@$tmp/get.bin" \
            -o "$tmp/get.out" "$base/Get"
        printf '\n\002hi\020\001' >"$tmp/get.want"
        if cmp -s "$tmp/get.out" "$tmp/get.want" && [ ! -s "$tmp/put.out" ]; then
            pass "curl: proto Put and Get"
        else
            fail "curl: proto Put and Get (got $(od -An -tx1 "$tmp/get.out"))"
        fi
    else
        fail "curl is installed (scripts/setup.sh installs it)"
    fi
    stop_server TERM
fi

# ---- Unix socket
sock="$tmp/kv.sock"
start_server "unix:$sock"
if [ -n "$address" ]; then
    if [ "$address" = "unix:$sock" ]; then pass "unix address reads back"; else fail "unix address reads back ($address)"; fi
    run_clients "unix://$sock"
    stop_server INT
    if [ -e "$sock" ]; then fail "socket file removed on exit"; else pass "socket file removed on exit"; fi
fi

# ---- Bad usage and an unreachable server
"$server_bin" >/dev/null 2>&1
rc=$?
if [ $rc -ne 0 ]; then pass "server without --listen fails"; else fail "server without --listen fails"; fi
"$client_bin" --url "unix://$tmp/missing.sock" >"$tmp/client.out" 2>"$tmp/client.err"
rc=$?
if [ $rc -eq 1 ] && grep -q '^error: unavailable: ' "$tmp/client.err"; then
    pass "client against no server exits 1 with 'error: unavailable: ...'"
else
    fail "client against no server exits 1 with 'error: unavailable: ...' (exit $rc, stderr: $(head -n 1 "$tmp/client.err"))"
fi

echo "c-tests: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
