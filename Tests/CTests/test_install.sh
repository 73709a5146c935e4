#!/bin/sh
# The install rules of the CMake build: installs BUILD_DIR into a temporary prefix, then builds and
# runs a C program against it through pkg-config (connectplugin.pc) and through find_package
# (connectpluginConfig.cmake, SameMajorVersion), and checks the installed library's RUNPATH.
#   test_install.sh BUILD_DIR
# Last line: "c-tests: N passed, M failed".
set -u
build=${1:?usage: test_install.sh BUILD_DIR}
CC=${CC:-cc}
CMAKE=${CMAKE:-cmake}
tmp=$(mktemp -d)
# The version the installed library must report: CONNECTPLUGIN_VERSION of the header (its one place).
want_version=$(sed -n 's/^#define CONNECTPLUGIN_VERSION "\(.*\)"$/\1/p' "$(dirname "$0")/../../include/connectplugin.h")
trap 'rm -rf "$tmp"' EXIT INT TERM
prefix="$tmp/prefix"

passed=0
failed=0
pass() { passed=$((passed + 1)); echo "ok   - $1"; }
fail() { failed=$((failed + 1)); echo "FAIL - $1"; }
finish() {
    echo "c-tests: $passed passed, $failed failed"
    [ "$failed" -eq 0 ]
    exit $?
}

if "$CMAKE" --install "$build" --prefix "$prefix" >"$tmp/install.log" 2>&1; then
    pass "cmake --install"
else
    fail "cmake --install"
    cat "$tmp/install.log"
    finish
fi

lib=$(find "$prefix" -name 'libconnectplugin.so.1' | head -n 1)
pc=$(find "$prefix" -name 'connectplugin.pc' | head -n 1)
config=$(find "$prefix" -name 'connectpluginConfig.cmake' | head -n 1)
for f in "$lib" "$pc" "$config" "$prefix/include/connectplugin.h"; do
    if [ -n "$f" ] && [ -f "$f" ]; then pass "installed ${f#"$prefix"/}"; else fail "installed file missing (${f:-?})"; fi
done
[ -n "$lib" ] && [ -n "$pc" ] && [ -n "$config" ] || finish
libdir=$(dirname "$lib")
if [ -f "$(dirname "$config")/connectpluginConfigVersion.cmake" ] && [ -L "$libdir/libconnectplugin.so" ]; then
    pass "installed ConfigVersion and the libconnectplugin.so link"
else
    fail "installed ConfigVersion and the libconnectplugin.so link"
fi

# The installed library must not point into the build tree.
runpath=$(readelf -d "$lib" | sed -n 's/.*R\(UN\)\{0,1\}PATH.*\[\(.*\)\]/\2/p')
case "$runpath" in
*"$build"*) fail "RUNPATH of the installed library ($runpath) does not name the build tree" ;;
*) pass "RUNPATH of the installed library: '${runpath}'" ;;
esac
soname=$(readelf -d "$lib" | sed -n 's/.*SONAME.*\[\(.*\)\]/\1/p')
if [ "$soname" = "libconnectplugin.so.1" ]; then pass "SONAME $soname"; else fail "SONAME is '$soname'"; fi

cat >"$tmp/main.c" <<'C'
#include <connectplugin.h>
#include <stdio.h>
#include <string.h>
int main(void) {
    if (connectplugin_abi_version() != CONNECTPLUGIN_ABI_VERSION) return 1;
    connectplugin_server *server = NULL;
    connectplugin_error *error = NULL;
    if (connectplugin_server_new(NULL, &server, &error) != CONNECTPLUGIN_OK) return 2;
    connectplugin_server_free(server);
    printf("%s\n", connectplugin_version());
    return strcmp(connectplugin_version(), CONNECTPLUGIN_VERSION) != 0;
}
C

# pkg-config (--define-prefix: the .pc names the configured prefix, here it was installed elsewhere).
flags=$(PKG_CONFIG_PATH="$(dirname "$pc")" pkg-config --define-prefix --cflags --libs connectplugin 2>&1)
# shellcheck disable=SC2086
if "$CC" -std=c11 -Wall -Wextra -Werror -o "$tmp/pc-app" "$tmp/main.c" $flags -Wl,-rpath,"$libdir" &&
    [ "$("$tmp/pc-app")" = "$want_version" ]; then
    pass "pkg-config consumer builds and runs ($flags)"
else
    fail "pkg-config consumer builds and runs ($flags)"
fi

# find_package: a C-only consumer project, no Swift toolchain involved.
mkdir -p "$tmp/consumer"
cp "$tmp/main.c" "$tmp/consumer/main.c"
cat >"$tmp/consumer/CMakeLists.txt" <<'CM'
cmake_minimum_required(VERSION 3.25)
project(consumer LANGUAGES C)
find_package(connectplugin ${WANT_VERSION} REQUIRED)
add_executable(app main.c)
target_link_libraries(app PRIVATE connectplugin::connectplugin)
CM
if "$CMAKE" -S "$tmp/consumer" -B "$tmp/consumer-build" -DCMAKE_PREFIX_PATH="$prefix" -DWANT_VERSION=0.1 \
    -DCMAKE_C_COMPILER="$CC" >"$tmp/consumer.log" 2>&1 &&
    "$CMAKE" --build "$tmp/consumer-build" >>"$tmp/consumer.log" 2>&1 &&
    [ "$("$tmp/consumer-build/app")" = "$want_version" ]; then
    pass "find_package(connectplugin 0.1) consumer builds and runs"
else
    fail "find_package(connectplugin 0.1) consumer builds and runs"
    sed 's/^/    /' "$tmp/consumer.log"
fi
if "$CMAKE" -S "$tmp/consumer" -B "$tmp/consumer-build-1" -DCMAKE_PREFIX_PATH="$prefix" -DWANT_VERSION=1.0 \
    -DCMAKE_C_COMPILER="$CC" >"$tmp/consumer1.log" 2>&1; then
    fail "find_package(connectplugin 1.0) is refused (SameMajorVersion)"
else
    pass "find_package(connectplugin 1.0) is refused (SameMajorVersion)"
fi
finish
