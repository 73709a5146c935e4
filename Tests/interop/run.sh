#!/usr/bin/env bash
# Runs the interop suite from the repo root against the real peers: the example binaries in
# examples/bin/ (build them with `make examples`), connect-python, curl and raw sockets.
# Extra arguments go to pytest, e.g. `Tests/interop/run.sh -k "server-swift"` or `-x -v`.
# Exits non-zero on any failure; a missing binary is a failure, never a skip.
set -uo pipefail
cd "$(dirname "$0")/../.."
log="$(mktemp /tmp/interop-run.XXXXXX.log)"
python3 -m pytest Tests/interop -q -rfE -p no:cacheprovider "$@" 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
echo
echo "interop: exit $rc; $(tail -n 1 "$log" | tr -d '=' | sed 's/^ *//') (full log: $log)"
exit "$rc"
