#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Runs the unit tests and every end-to-end test; prints one line per test and a
# closing "N passed, N failed" line. Exit 0 only when nothing failed (and, under
# CI=true, nothing was skipped). --e2e-only skips the unit tests.
set -uo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
BUILD=${BUILD:-build}
export BUILD
logs=$BUILD/tests/logs
mkdir -p "$logs"
passed=0 failed=0 skipped=0
failures=()

if [ "${1:-}" != --e2e-only ]; then
  echo "== unit tests"
  out=$logs/unit.log
  if (cd "$BUILD/tests" && ./unit-tests) >"$out" 2>&1; then ok=1; else ok=0; fi
  summary=$(grep -E '^\[doctest\] test cases:' "$out" | tail -n1)
  # "[doctest] test cases: 40 | 38 passed | 0 failed | 2 skipped"; a test case skipped
  # for a missing requirement (skip_unless) also left "[doctest] skipped: <test>: <why>"
  up=$(sed -nE 's/.*\| *([0-9]+) passed.*/\1/p' <<<"$summary")
  uf=$(sed -nE 's/.*\| *([0-9]+) failed.*/\1/p' <<<"$summary")
  us=$(sed -nE 's/.*\| *([0-9]+) skipped.*/\1/p' <<<"$summary")
  passed=$((passed + ${up:-0})) failed=$((failed + ${uf:-0})) skipped=$((skipped + ${us:-0}))
  echo "$summary"
  sed -nE 's/^\[doctest\] skipped: (.*)/SKIP unit: \1/p' "$out"
  if [ "$ok" -ne 1 ]; then
    [ "${uf:-0}" -gt 0 ] || failed=$((failed + 1))
    failures+=(unit-tests)
    grep -B2 -A8 -E 'ERROR|FATAL|error:' "$out" | head -n 60
  fi
fi

echo "== end-to-end tests (real CRIU)"
for t in tests/e2e/*.sh; do
  name=$(basename "$t" .sh)
  [ "$name" = lib ] && continue
  start=$SECONDS
  timeout 600 bash "$t" >"$logs/$name.log" 2>&1
  rc=$?
  secs=$((SECONDS - start))
  case $rc in
    0) passed=$((passed + 1)); printf 'PASS %-32s %3ds  %s\n' "$name" "$secs" "$(tail -n1 "$logs/$name.log" | sed "s/^$name: //")" ;;
    77) skipped=$((skipped + 1)); printf 'SKIP %-32s %s\n' "$name" "$(tail -n1 "$logs/$name.log")" ;;
    *) failed=$((failed + 1)); failures+=("$name")
       printf 'FAIL %-32s %3ds (exit %d)\n' "$name" "$secs" "$rc"
       sed 's/^/    /' "$logs/$name.log" | tail -n 25 ;;
  esac
done

echo
[ ${#failures[@]} -eq 0 ] || echo "failed: ${failures[*]} (logs in $logs/)"
if [ "$skipped" -gt 0 ]; then
  echo "$passed passed, $failed failed, $skipped skipped"
else
  echo "$passed passed, $failed failed"
fi
[ "$failed" -eq 0 ] || exit 1
if [ "$skipped" -gt 0 ] && [ "${CI:-}" = true ]; then
  echo "CI=true: a skipped test is a failure (its requirement is missing on this machine)"
  exit 1
fi
exit 0
