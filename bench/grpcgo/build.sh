#!/usr/bin/env bash
# Builds bench/grpcgo (the grpc-go peer server of bench/h2load_bench.sh) against Debian's grpc-go in
# GOPATH mode, as Tests/interop/grpcgo/build.sh does. Usage: build.sh OUT_DIR; prints the binary's path.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="$1"
mkdir -p "$out"
gocode=/usr/share/gocode
if [ ! -d "$gocode/src/google.golang.org/grpc" ]; then
  echo "bench/grpcgo/build.sh: $gocode/src/google.golang.org/grpc missing: run scripts/setup.sh" \
       "(apt: golang-google-grpc-dev golang-google-protobuf-dev)" >&2
  exit 1
fi
unset GOFLAGS
export GOPATH="$gocode" GO111MODULE=off GOTOOLCHAIN=local GOPROXY=off
export GOCACHE="${GOCACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/go-build}"
cd "$here"
go build -o "$out/grpcgo-bench-server" .
echo "$out/grpcgo-bench-server"
