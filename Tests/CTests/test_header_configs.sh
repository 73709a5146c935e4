#!/bin/sh
# include/connectplugin.h must parse in every configuration a consumer may use, and mark every
# function with CONNECTPLUGIN_API:
#   test_header_configs.sh [HEADER] [LIBRARY]
# Defaults: <repo>/include/connectplugin.h and <repo>/.build/debug/libconnectplugin.so.
#  - C (c99 and c11, -pedantic -Werror), for the shared library and with -DCONNECTPLUGIN_STATIC;
#  - C++ (c++11 and c++17), both ways, with CXX or the first of c++, clang++, g++ found (reported as
#    "skip", never as passed, when there is none);
#  - CONNECTPLUGIN_API expands to the default-visibility attribute for the shared library and to
#    nothing with CONNECTPLUGIN_STATIC, and every prototype carries it;
#  - a C++ program (extern "C" linkage) links against the library and calls it.
# Last line: "c-tests: N passed, M failed".
set -u
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
header=${1:-"$repo/include/connectplugin.h"}
lib=${2:-"$repo/.build/debug/libconnectplugin.so"}
CC=${CC:-cc}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM

passed=0
failed=0
pass() { passed=$((passed + 1)); echo "ok   - $1"; }
fail() { failed=$((failed + 1)); echo "FAIL - $1"; }

if [ ! -f "$header" ]; then
    fail "header exists ($header)"
    echo "c-tests: $passed passed, $failed failed"
    exit 1
fi
incdir=$(cd "$(dirname "$header")" && pwd)
name=$(basename "$header")

# A translation unit that includes the header and uses a few declarations, so that the compiler sees
# more than the bare declarations.
cat >"$tmp/use.c" <<EOF
#include <$name>
#include <stddef.h>
typedef const char *(*version_fn)(void);
int connectplugin_header_probe(void);
int connectplugin_header_probe(void) {
    version_fn f = connectplugin_version;
    const connectplugin_client_stream *s = NULL;
    return (f != NULL) + (connectplugin_client_stream_headers(s) == NULL) + (CONNECTPLUGIN_OK == 0);
}
EOF

# C: both configurations, strict.
for std in c99 c11; do
    for cfg in shared static; do
        def=""
        [ "$cfg" = static ] && def="-DCONNECTPLUGIN_STATIC"
        # shellcheck disable=SC2086
        if "$CC" -std=$std -pedantic -Wall -Wextra -Werror $def -I"$incdir" -fsyntax-only "$tmp/use.c" 2>"$tmp/err"; then
            pass "C ($std, $cfg) parses the header"
        else
            fail "C ($std, $cfg) parses the header:"
            sed 's/^/    /' "$tmp/err"
        fi
    done
done

# C++: the first compiler found.
CXXBIN=${CXX:-}
if [ -z "$CXXBIN" ]; then
    for c in c++ clang++ g++; do
        if command -v "$c" >/dev/null 2>&1; then
            CXXBIN=$c
            break
        fi
    done
fi
if [ -z "$CXXBIN" ] || ! command -v "$CXXBIN" >/dev/null 2>&1; then
    echo "skip - no C++ compiler (set CXX, or install g++ or clang++): C++ configurations not checked"
else
    for std in c++11 c++17; do
        for cfg in shared static; do
            def=""
            [ "$cfg" = static ] && def="-DCONNECTPLUGIN_STATIC"
            # shellcheck disable=SC2086
            if "$CXXBIN" -std=$std -pedantic -Wall -Wextra -Werror $def -I"$incdir" -fsyntax-only -x c++ "$tmp/use.c" \
                2>"$tmp/err"; then
                pass "C++ ($CXXBIN, $std, $cfg) parses the header"
            else
                fail "C++ ($CXXBIN, $std, $cfg) parses the header:"
                sed 's/^/    /' "$tmp/err"
            fi
        done
    done
fi

# What the macro expands to.
printf '#include <%s>\nCONNECTPLUGIN_API_IS: CONNECTPLUGIN_API\n' "$name" >"$tmp/macro.c"
shared_exp=$("$CC" -E -P -I"$incdir" "$tmp/macro.c" | sed -n 's/^CONNECTPLUGIN_API_IS: *//p' | tr -d ' ')
static_exp=$("$CC" -E -P -DCONNECTPLUGIN_STATIC -I"$incdir" "$tmp/macro.c" | sed -n 's/^CONNECTPLUGIN_API_IS: *//p' | tr -d ' ')
if [ "$shared_exp" = '__attribute__((visibility("default")))' ]; then
    pass "CONNECTPLUGIN_API is the default-visibility attribute for the shared library"
else
    fail "CONNECTPLUGIN_API is the default-visibility attribute for the shared library (got '$shared_exp')"
fi
if [ -z "$static_exp" ]; then
    pass "CONNECTPLUGIN_API is empty with CONNECTPLUGIN_STATIC"
else
    fail "CONNECTPLUGIN_API is empty with CONNECTPLUGIN_STATIC (got '$static_exp')"
fi

# Every prototype carries the macro: in the preprocessed header (no comments), each declaration
# that declares a connectplugin_ function (not a typedef) starts with the attribute.
"$CC" -E -P -x c "$header" | tr '\n' ' ' | tr ';' '\n' |
    grep 'connectplugin_[A-Za-z0-9_]*[[:space:]]*(' | grep -v 'typedef' |
    sed 's/^[[:space:]]*//; s/^}[[:space:]]*//; s/^extern "C" {[[:space:]]*//' >"$tmp/decls"
total=$(wc -l <"$tmp/decls" | tr -d ' ')
grep -v '^__attribute__((visibility("default")))' "$tmp/decls" >"$tmp/unmarked" || true
if [ "$total" -ge 60 ] && [ ! -s "$tmp/unmarked" ]; then
    pass "all $total prototypes carry CONNECTPLUGIN_API"
else
    fail "all prototypes carry CONNECTPLUGIN_API ($total found; without it:)"
    sed 's/^/    /' "$tmp/unmarked"
fi

# A C++ program calls the shared library (extern "C" names, no mangling).
if [ -n "$CXXBIN" ] && command -v "$CXXBIN" >/dev/null 2>&1; then
    if [ -f "$lib" ]; then
        libdir=$(cd "$(dirname "$lib")" && pwd)
        cat >"$tmp/main.cpp" <<EOF
#include <$name>
#include <cstdio>
#include <cstring>
int main() {
    connectplugin_metadata *m = connectplugin_metadata_new();
    connectplugin_error *err = nullptr;
    const uint8_t v[] = {'x'};
    if (connectplugin_metadata_add(m, "k", v, 1, &err) != CONNECTPLUGIN_OK) return 1;
    const connectplugin_metadata *cm = m;
    if (connectplugin_metadata_count(cm) != 1) return 2;
    if (connectplugin_metadata_add(nullptr, "k", v, 1, &err) != CONNECTPLUGIN_ERR_INVALID_ARGUMENT) return 3;
    if (connectplugin_error_code(err) != CONNECTPLUGIN_CODE_INVALID_ARGUMENT) return 4;
    connectplugin_error_free(err);
    connectplugin_metadata_free(m);
    if (std::strcmp(connectplugin_version(), CONNECTPLUGIN_VERSION) != 0) return 5;
    std::printf("C++ program: libconnectplugin %s\n", connectplugin_version());
    return 0;
}
EOF
        # shellcheck disable=SC2086  # CXXFLAGS: the sanitizer stage passes -fsanitize=... here
        if "$CXXBIN" -std=c++11 -Wall -Wextra -Werror ${CXXFLAGS:-} -I"$incdir" -o "$tmp/main" "$tmp/main.cpp" \
            -L"$libdir" -lconnectplugin -Wl,-rpath,"$libdir" 2>"$tmp/err" && "$tmp/main"; then
            pass "a C++ program links against the library and calls it"
        else
            fail "a C++ program links against the library and calls it (exit $?):"
            sed 's/^/    /' "$tmp/err"
        fi
    else
        fail "library exists for the C++ link test ($lib)"
    fi
fi

echo "c-tests: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
