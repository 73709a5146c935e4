#!/usr/bin/env bash
# Runs every test stage of `make test` against the one build, keeps going after a failure, prints a
# table of stages and exits non-zero if any failed.
set -u
cd "$(dirname "$0")/.."
stages=(test-swift test-c test-python test-go test-cmake test-interop test-tsan test-asan)
declare -A result
failed=0
for s in "${stages[@]}"; do
  echo "==================== $s ===================="
  start=$(date +%s)
  if make --no-print-directory "$s"; then result[$s]="passed"; else result[$s]="FAILED"; failed=$((failed+1)); fi
  result[$s]="${result[$s]} ($(( $(date +%s) - start ))s)"
done
echo "==================== summary ===================="
for s in "${stages[@]}"; do printf '%-14s %s\n' "$s" "${result[$s]}"; done
passed=$(( ${#stages[@]} - failed ))
echo "stages: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
