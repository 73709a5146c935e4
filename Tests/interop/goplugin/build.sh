#!/usr/bin/env bash
# Builds the go-plugin compatibility peers against Debian's HashiCorp go-plugin 1.0.1
# (golang-github-hashicorp-go-plugin-dev) and grpc-go in GOPATH mode, offline:
#   OUT_DIR/goplugin-host        an unmodified go-plugin host that launches a KV plugin and calls it;
#   OUT_DIR/goplugin-kv-plugin   an unmodified go-plugin KV plugin for connectplugin hosts to launch.
# Usage: build.sh OUT_DIR
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="${1:?usage: build.sh OUT_DIR}"
mkdir -p "$out"
gocode=/usr/share/gocode
if [ ! -d "$gocode/src/github.com/hashicorp/go-plugin" ]; then
  echo "goplugin/build.sh: $gocode/src/github.com/hashicorp/go-plugin is missing: run scripts/setup.sh" \
       "(apt: golang-github-hashicorp-go-plugin-dev)" >&2
  exit 1
fi
unset GOFLAGS
export GOPATH="$gocode" GO111MODULE=off GOTOOLCHAIN=local GOPROXY=off
export GOCACHE="${GOCACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/go-build}"
(cd "$here/host" && go build -o "$out/goplugin-host" .)
(cd "$here/plugin" && go build -o "$out/goplugin-kv-plugin" .)
