#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Benchmark (a report, not a timed test): how long gcp-deps takes to build the
# dependency graph of one unit of PROCS processes holding FDS descriptors (pipes, unix
# socket pairs, eventfds), against `ss -anp` on the same machine in the same run
# (which also walks every process's descriptors to name socket owners). Median of RUNS.
# Writes $BUILD/bench/deps-bench.{json,md}.
#   SIZES="100:1000 1000:10000" RUNS=5 tests/bench/deps-bench.sh
# Target: 1,000 processes with 10,000 descriptors well under a second.
set -euo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${BUILD:-build}
case $BUILD in /*) ;; *) BUILD=$top/$BUILD ;; esac
bin=$BUILD/bin
fanout=$BUILD/bench/fanout
sizes=${SIZES:-100:1000 1000:10000}
runs=${RUNS:-5}
report=$BUILD/bench
work=$(mktemp -d /tmp/gcp-deps-bench.XXXXXX)
root=
trap '[ -n "$root" ] && kill -9 "$root" 2>/dev/null; rm -rf "$work"' EXIT
[ -x "$fanout" ] || { echo "deps-bench: no $fanout; build it with 'make $fanout'" >&2; exit 1; }
[ -x "$bin/gcp-deps" ] || { echo "deps-bench: no $bin/gcp-deps; run make" >&2; exit 1; }

now() { date +%s%N; }
ms() { local t; t=$(date +%s%N); awk -v a="$1" -v b="$t" 'BEGIN {printf "%.1f", (b - a) / 1e6}'; }
median() { tr ' ' '\n' <<<"$*" | sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }

rows=()
for size in $sizes; do
  procs=${size%%:*} fds=${size##*:}
  rm -f "$work/ready"
  "$fanout" "$work/ready" "$procs" "$fds" &
  root=$!
  for _ in $(seq 600); do [ -s "$work/ready" ] && break; sleep 0.1; done
  [ -s "$work/ready" ] || { echo "deps-bench: fanout $procs $fds did not get ready" >&2; exit 1; }
  build=() wall=() ss=()
  for r in $(seq "$runs"); do
    t=$(now)
    "$bin/gcp-deps" --pid "$root" >"$work/g.json"
    wall+=("$(ms "$t")")
    build+=("$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["summary"]["buildMs"])' "$work/g.json")")
    t=$(now)
    ss -anp >/dev/null 2>&1
    ss+=("$(ms "$t")")
  done
  got=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(len(d["units"][0]["processes"]), d["summary"]["descriptors"], d["summary"]["ties"])' "$work/g.json")
  read -r nprocs ndesc nties <<<"$got"
  mb=$(median "${build[@]}") mw=$(median "${wall[@]}") ms_ss=$(median "${ss[@]}")
  ratio=$(python3 -c "print(round($mw / $ms_ss, 2))")
  rows+=("$procs|$fds|$nprocs|$ndesc|$nties|$mb|$mw|$ms_ss|$ratio")
  echo "deps-bench: $nprocs processes, $ndesc descriptors, $nties ties: graph $mb ms (gcp-deps end to end $mw ms), ss -anp $ms_ss ms" >&2
  kill -9 "$root" 2>/dev/null || true
  wait "$root" 2>/dev/null || true
  root=
done

{
  echo "# gcp-deps: building the dependency graph"
  echo
  echo "$(date -u +%FT%TZ), $(nproc) cores, kernel $(uname -r), $(ps -e --no-headers | wc -l) processes on the node; median of $runs runs."
  echo "Target: 1,000 processes with 10,000 descriptors well under a second (graph build)."
  echo
  echo "| processes | descriptors | ties | graph build | gcp-deps end to end | ss -anp | end to end / ss |"
  echo "|---|---|---|---|---|---|---|"
  for row in "${rows[@]}"; do
    IFS='|' read -r _ _ np nd nt mb mw mss ratio <<<"$row"
    echo "| $np | $nd | $nt | $mb ms | $mw ms | $mss ms | ${ratio}x |"
  done
} >"$report/deps-bench.md"
python3 - "$report/deps-bench.json" "$runs" "${rows[@]}" <<'PY'
import json, sys
out, runs, rows = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
keys = ["procsAsked", "fdsAsked", "processes", "descriptors", "ties", "buildMs", "endToEndMs", "ssMs", "ratioToSs"]
data = [dict(zip(keys, [float(v) for v in r.split("|")])) for r in rows]
json.dump({"benchmark": "deps", "runs": runs, "results": data, "targetBuildMs": 1000}, open(out, "w"), indent=2)
PY
cat "$report/deps-bench.md"
