#!/bin/sh
# The exports of libconnectplugin.so must be exactly the functions declared in include/connectplugin.h.
#   test_header_symbols.sh [LIBRARY] [HEADER]
# Defaults: <repo>/.build/debug/libconnectplugin.so and <repo>/include/connectplugin.h.
# Fails on a declared function that is not exported, and on any exported (defined, dynamic) symbol
# that the header does not declare as a function. Last line: "c-tests: N passed, M failed".
set -eu
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
lib=${1:-"$repo/.build/debug/libconnectplugin.so"}
header=${2:-"$repo/include/connectplugin.h"}
CC=${CC:-cc}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM

passed=0
failed=0
pass() { passed=$((passed + 1)); echo "ok   - $1"; }
fail() { failed=$((failed + 1)); echo "FAIL - $1"; }

if [ ! -f "$lib" ] || [ ! -f "$header" ]; then
    fail "inputs exist ($lib, $header)"
    echo "c-tests: $passed passed, $failed failed"
    exit 1
fi

# Declared functions: the preprocessed header (no comments) has "connectplugin_name(" for each
# prototype; function pointer typedefs read "(*connectplugin_name)(" and do not match.
"$CC" -E -P -x c "$header" | tr '\n' ' ' |
    grep -o 'connectplugin_[A-Za-z0-9_]*[[:space:]]*(' | sed 's/[[:space:]]*($//' | sort -u >"$tmp/declared"
# Exported symbols: every defined global, weak or unique symbol in .dynsym, with its type letter.
# Lower-case letters other than u/v/w/i are local symbols: gold leaves some of those in .dynsym (as
# LOCAL PROTECTED after a version script's "local: *"), where nothing can bind to them.
nm -D --defined-only "$lib" |
    awk 'NF >= 3 && $2 ~ /^[A-Zuvwi]$/ { sub(/@.*/, "", $3); print $3, $2 }' | sort -u >"$tmp/exported_typed"
cut -d' ' -f1 "$tmp/exported_typed" | sort -u >"$tmp/exported"

declared_count=$(wc -l <"$tmp/declared" | tr -d ' ')
exported_count=$(wc -l <"$tmp/exported" | tr -d ' ')
echo "header-symbols: $declared_count functions declared in $header, $exported_count symbols exported by $lib"

if [ "$declared_count" -gt 0 ]; then pass "the header declares functions"; else fail "the header declares functions"; fi

comm -23 "$tmp/declared" "$tmp/exported" >"$tmp/missing"
if [ -s "$tmp/missing" ]; then
    fail "every declared function is exported; missing:"
    sed 's/^/    /' "$tmp/missing"
else
    pass "every declared function is exported"
fi

comm -13 "$tmp/declared" "$tmp/exported" >"$tmp/extra"
if [ -s "$tmp/extra" ]; then
    fail "nothing else is exported; exported but not declared:"
    sed 's/^/    /' "$tmp/extra"
else
    pass "nothing else is exported"
fi

# Exported declared names must be functions (T), not data or weak objects.
awk 'NR == FNR { d[$1] = 1; next } ($1 in d) && $2 != "T" { print $1 " (type " $2 ")" }' \
    "$tmp/declared" "$tmp/exported_typed" >"$tmp/nonfunc"
if [ -s "$tmp/nonfunc" ]; then
    fail "declared names are exported as functions; not functions:"
    sed 's/^/    /' "$tmp/nonfunc"
else
    pass "declared names are exported as functions"
fi

echo "c-tests: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
