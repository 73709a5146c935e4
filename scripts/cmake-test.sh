#!/usr/bin/env bash
# Builds the library and the C examples with CMake (Ninja), runs ctest, and installs into a staging
# prefix to check the installed header, library and pkg-config file.
set -euo pipefail
cd "$(dirname "$0")/.."
build=build-cmake
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Debug -DCMAKE_INSTALL_PREFIX="$stage" >/dev/null
cmake --build "$build"
(cd "$build" && ctest --output-on-failure)
cmake --install "$build" >/dev/null
test -f "$stage/include/connectplugin.h"
ls "$stage"/lib*/libconnectplugin.so* >/dev/null
pc=$(ls "$stage"/lib*/pkgconfig/connectplugin.pc)
PKG_CONFIG_PATH=$(dirname "$pc") pkg-config --cflags --libs connectplugin
# A program built against the installed copy only.
cc -Wall -Werror -o "$stage/version" -x c - $(PKG_CONFIG_PATH=$(dirname "$pc") pkg-config --cflags --libs connectplugin) \
   -Wl,-rpath,"$(dirname "$(ls "$stage"/lib*/libconnectplugin.so | head -1)")" <<'C'
#include <connectplugin.h>
#include <stdio.h>
#include <string.h>
int main(void) {
  if (connectplugin_abi_version() != CONNECTPLUGIN_ABI_VERSION) return 1;
  if (strcmp(connectplugin_version(), CONNECTPLUGIN_VERSION) != 0) return 1;
  printf("installed libconnectplugin %s works\n", connectplugin_version());
  return 0;
}
C
"$stage/version"
