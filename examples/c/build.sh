#!/bin/sh
# Builds the C key-value example with plain cc against a SwiftPM-built libconnectplugin.so:
#   examples/c/build.sh [LIBDIR]     (default LIBDIR: <repo>/.build/debug)
# Output: <repo>/examples/bin/kv-server-c, kv-client-c, kv-plugin-c and kv-host-c, with LIBDIR in their RPATH.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
libdir=${1:-"$repo/.build/debug"}
if [ ! -f "$libdir/libconnectplugin.so" ]; then
    echo "build.sh: $libdir/libconnectplugin.so not found (run swift build first)" >&2
    exit 1
fi
libdir=$(cd "$libdir" && pwd)
CC=${CC:-cc}
CFLAGS=${CFLAGS:-"-O2 -g"}
mkdir -p "$repo/examples/bin"
for prog in server client; do
    # shellcheck disable=SC2086
    $CC -std=c11 $CFLAGS -Wall -Wextra -Werror -I"$repo/include" \
        -o "$repo/examples/bin/kv-$prog-c" "$here/kv_$prog.c" "$here/kv_common.c" \
        -L"$libdir" -lconnectplugin -Wl,-rpath,"$libdir" -pthread
    echo "built $repo/examples/bin/kv-$prog-c"
done
# kv-plugin-c: the same server code served as a go-plugin compatible plugin (-DKV_PLUGIN).
# shellcheck disable=SC2086
$CC -std=c11 $CFLAGS -Wall -Wextra -Werror -DKV_PLUGIN -I"$repo/include" \
    -o "$repo/examples/bin/kv-plugin-c" "$here/kv_server.c" "$here/kv_common.c" \
    -L"$libdir" -lconnectplugin -Wl,-rpath,"$libdir" -pthread
echo "built $repo/examples/bin/kv-plugin-c"
# kv-host-c: a plugin host that launches a KV plugin and calls it (with kv_server.c's handlers
# linked in, -DKV_NO_MAIN, for --in-process).
# shellcheck disable=SC2086
$CC -std=c11 $CFLAGS -Wall -Wextra -Werror -DKV_NO_MAIN -I"$repo/include" \
    -o "$repo/examples/bin/kv-host-c" "$here/kv_host.c" "$here/kv_server.c" "$here/kv_common.c" \
    -L"$libdir" -lconnectplugin -Wl,-rpath,"$libdir" -pthread
echo "built $repo/examples/bin/kv-host-c"
