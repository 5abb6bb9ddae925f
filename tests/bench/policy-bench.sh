#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# What one pass of `gcp-checkpoint --if-due` and `gcp-restart --if-failed` costs over a
# store of 500 running jobs that are not due and have not failed (the every-minute case):
# wall time of each pass, per job. The jobs are one real unit each (a sleeping process in its
# own PID namespace and cgroup, started by gcp-isolate).
# Writes $BUILD/bench/policy-bench.md.
set -euo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${BUILD:-build}
case $BUILD in /*) ;; *) BUILD=$top/$BUILD ;; esac
bin=$BUILD/bin
n=${JOBS_N:-500}
work=$(mktemp -d /tmp/gcp-policy-bench.XXXXXX)
export GCP_STORE=$work/store
cleanup() {
  for i in $(seq -w 1 "$n"); do "$bin/gcp-isolate" kill "j$i" >/dev/null 2>&1 || true; done
  rm -rf "$work"
}
trap cleanup EXIT

for i in $(seq -w 1 "$n"); do
  "$bin/gcp-isolate" run --job "j$i" --policy fixed,interval=1d -- sleep 100000 >/dev/null 2>&1 ||
    { echo "starting job j$i failed" >&2; exit 1; }
done
time_of() {
  local s e
  s=$(date +%s.%N)
  "$@" >"$work/out.json" 2>"$work/err" || { cat "$work/err" >&2; exit 1; }
  e=$(date +%s.%N)
  echo "$e - $s" | bc
}
due=$(time_of "$bin/gcp-checkpoint" --if-due)
checked=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(sum(1 for j in d if j["action"] == "none"))' "$work/out.json")
failed=$(time_of "$bin/gcp-restart" --if-failed)
ok=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(sum(1 for j in d if j["action"] == "none"))' "$work/out.json")
mkdir -p "$BUILD/bench"
{
  echo "## --if-due and --if-failed over $n jobs ($(date -u +%Y-%m-%d), $(nproc) cores, $(uname -r))"
  echo
  echo "Command: \`tests/bench/policy-bench.sh\`. Every job runs, is not due and has not failed."
  echo
  echo "| pass | jobs looked at | wall time | per job |"
  echo "| --- | --- | --- | --- |"
  printf '| gcp-checkpoint --if-due | %s not due | %.2f s | %.1f ms |\n' "$checked" "$due" "$(echo "$due * 1000 / $n" | bc -l)"
  printf '| gcp-restart --if-failed | %s running | %.2f s | %.1f ms |\n' "$ok" "$failed" "$(echo "$failed * 1000 / $n" | bc -l)"
} | tee "$BUILD/bench/policy-bench.md"
