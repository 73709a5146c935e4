#!/usr/bin/env bash
# Builds the grpc-go interop peers against Debian's grpc-go in GOPATH mode (golang-google-grpc-dev +
# golang-google-protobuf-dev under /usr/share/gocode, Go 1.19): the client Tests/interop/grpcgo/kvclient
# (OUT_DIR/kvclient-grpcgo) and the server Tests/interop/grpcgo/slowserver (OUT_DIR/slowserver-grpcgo).
# Usage: build.sh [OUT_DIR]   (default: a new temp dir); prints the path of the client binary.
# Offline: GOPROXY=off, GOTOOLCHAIN=local; the Makefile's GOFLAGS=-mod=mod is module-mode only.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="${1:-$(mktemp -d /tmp/grpcgo-bin.XXXXXX)}"
mkdir -p "$out"
gocode=/usr/share/gocode
if [ ! -d "$gocode/src/google.golang.org/grpc" ] || [ ! -d "$gocode/src/google.golang.org/protobuf/encoding/protowire" ]; then
  echo "grpcgo/build.sh: $gocode/src/google.golang.org/{grpc,protobuf} missing: run scripts/setup.sh" \
       "(apt: golang-google-grpc-dev golang-google-protobuf-dev)" >&2
  exit 1
fi
unset GOFLAGS
export GOPATH="$gocode" GO111MODULE=off GOTOOLCHAIN=local GOPROXY=off
export GOCACHE="${GOCACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/go-build}"
(cd "$here/slowserver" && go build -o "$out/slowserver-grpcgo" .)
cd "$here/kvclient"
go build -o "$out/kvclient-grpcgo" .
echo "$out/kvclient-grpcgo"
