#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Runs libFuzzer harnesses one after the other: run.sh SECONDS HARNESS...
# Each starts from its committed corpus (tests/fuzz/corpus/<harness>, which holds the
# inputs of crashes found and fixed: a run replays them first) and what earlier runs
# found ($FUZZ_DIR/corpus/<harness>), nice'd (FUZZ_NICE, 19 by default: builds beside it keep a
# core; 0 gives the fuzzer its share on a busy machine). Prints
# one line per harness (runs, CPU seconds, coverage, corpus) and stops at the first
# crash, whose input is left as $FUZZ_DIR/crash-<harness>-* (with FUZZ_KEEP_GOING=1 it
# goes on with the next harness and fails at the end).
set -euo pipefail
prog=fuzz
dir=${FUZZ_DIR:-build/fuzz}
seconds=$1
shift
here=$(cd "$(dirname "$0")" && pwd)
for h in "$@"; do
  [ -x "$dir/$h" ] || { echo "$prog: error: no harness '$dir/$h'" >&2; echo "$prog: hint: make fuzz-build" >&2; exit 1; }
  mkdir -p "$dir/corpus/$h"
  log=$dir/$h.log
  rc=0
  # -rss_limit_mb: a reader that allocates what a hostile length says fails here.
  # The CPU time (user + system) is what the run cost, whatever the machine's load.
  cpu_file=$dir/$h.cpu
  nice -n "${FUZZ_NICE:-19}" /usr/bin/time -o "$cpu_file" -f '%U %S' \
    "$dir/$h" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
    -artifact_prefix="$dir/crash-$h-" -print_final_stats=1 \
    "$dir/corpus/$h" "$here/corpus/$h" >"$log" 2>&1 || rc=$?
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n1)
  cov=$(grep -oE 'cov: [0-9]+ ft: [0-9]+' "$log" | tail -n1 || true)
  cpu=$(awk 'END { printf "%.0f", $1 + $2 }' "$cpu_file" 2>/dev/null || echo '?')
  corpus=$(find "$dir/corpus/$h" -type f | wc -l)
  printf '%s: %-20s %4ss wall %5ss cpu %10s runs  %-22s corpus %s\n' "$prog" "$h" "$seconds" "$cpu" "${runs:-?}" \
    "${cov:-cov: ?}" "$corpus" >&2
  if [ "$rc" -ne 0 ]; then
    grep -E '^(==[0-9]+==ERROR|SUMMARY|.*runtime error)' "$log" | head -n 5 >&2 || true
    echo "$prog: error: harness '$h' failed (exit $rc); log: $log, input: $(ls "$dir"/crash-"$h"-* 2>/dev/null | head -n1)" >&2
    echo "$prog: hint: reproduce with '$dir/$h <input>'; fix it and commit the input to tests/fuzz/corpus/$h" >&2
    [ "${FUZZ_KEEP_GOING:-}" = 1 ] || exit 1
    failed=1
  fi
done
exit "${failed:-0}"
