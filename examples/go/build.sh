#!/usr/bin/env bash
# Builds the Go KV example into examples/bin/kv-server-go, kv-client-go, kv-plugin-go and kv-host-go.
#   examples/go/build.sh [LIBDIR]
# LIBDIR holds libconnectplugin.so (default: <repo>/.build/debug); the binaries get an rpath to it.
# Offline: no module proxy is used (the binding is the only dependency, via a replace directive).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
libdir="${1:-$root/.build/debug}"
if [ ! -f "$libdir/libconnectplugin.so" ]; then
  echo "build.sh: $libdir/libconnectplugin.so not found (pass the library directory as \$1)" >&2
  exit 1
fi
libdir="$(cd "$libdir" && pwd)"
bindir="$root/examples/bin"
mkdir -p "$bindir"

export CGO_ENABLED=1
export CGO_LDFLAGS="-L$libdir -Wl,-rpath,$libdir${CGO_LDFLAGS:+ $CGO_LDFLAGS}"
export GOFLAGS=-mod=mod GOPROXY=off GOTOOLCHAIN=local GOSUMDB=off

cd "$here"
go build -o "$bindir/kv-server-go" ./kv-server
go build -o "$bindir/kv-client-go" ./kv-client
# kv-plugin-go: the server's handlers served as a go-plugin compatible plugin (build tag kvplugin).
go build -tags kvplugin -o "$bindir/kv-plugin-go" ./kv-server
go build -o "$bindir/kv-host-go" ./kv-host
echo "built $bindir/kv-server-go $bindir/kv-client-go $bindir/kv-plugin-go $bindir/kv-host-go (rpath $libdir)"
