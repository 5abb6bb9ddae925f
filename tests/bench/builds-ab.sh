#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Benchmark (a report, not a timed test): two builds of gcp side by side in one run, e.g.
# the current tree against a build from before a refactoring, to show that a checkpoint or
# a restart got no slower. Each run takes, with each build in turn (alternating which goes
# first), a memhog of MIB MiB: a first checkpoint, a second one after memhog rewrote 5% of
# its pages, then a restart from the second; median of RUNS per step and the ratio B/A.
#   BUILD_A=/path/to/old/build [BUILD_B=build] MIB=256 RUNS=6 tests/bench/builds-ab.sh
# RUN_OPTS_A / RUN_OPTS_B: options for that build's `gcp-isolate run` (e.g. RUN_OPTS_B="--share
# ipc,uts,net", to compare with a build from before units had namespaces of their own).
# Writes $BUILD_B/bench/builds-ab.{tsv,md}. Both builds must have been built with
# 'make all build/tests/workloads/memhog' (the workload of build B is used on both sides).
set -euo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
abs() { case $1 in /*) printf '%s\n' "$1" ;; *) printf '%s\n' "$top/$1" ;; esac; }
[ -n "${BUILD_A:-}" ] || { echo "bench: set BUILD_A to the build directory to compare against" >&2; exit 2; }
build_a=$(abs "$BUILD_A")
build_b=$(abs "${BUILD_B:-build}")
mib=${MIB:-256}
runs=${RUNS:-6}
[[ $mib =~ ^[1-9][0-9]*$ ]] || { echo "bench: MIB: '$mib' is not a size in MiB" >&2; exit 2; }
[[ $runs =~ ^[1-9][0-9]*$ ]] || { echo "bench: RUNS: '$runs' is not a count" >&2; exit 2; }
[ "$(id -u)" -eq 0 ] || { echo "bench: needs root" >&2; exit 1; }
memhog=$build_b/tests/workloads/memhog
for b in "$build_a" "$build_b"; do
  for t in gcp-isolate gcp-checkpoint gcp-restart; do
    [ -x "$b/bin/$t" ] || { echo "bench: no $b/bin/$t; build it with 'make all'" >&2; exit 1; }
  done
done
[ -x "$memhog" ] || { echo "bench: no $memhog; build it with 'make $memhog'" >&2; exit 1; }
work=$(mktemp -d /tmp/gcp-ab.XXXXXX)
report=$build_b/bench
mkdir -p "$report"
results=$work/results.tsv
: >"$results"
retakes=0

# CRIU must see only the workload's own descriptors.
for fd in /proc/$$/fd/*; do fd=${fd##*/}; [ "$fd" -gt 2 ] && eval "exec $fd>&-" 2>/dev/null || true; done

say() { printf 'bench: %s\n' "$*" >&2; }
now() { date +%s.%N; }
settle() { sync; echo 3 >/proc/sys/vm/drop_caches; }
elapsed_ms() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", (b - a) * 1000 }'; }
key_of() { sed -n "s/^$2=//p" "$1" 2>/dev/null | head -n1 || true; }
wait_key() {  # FILE KEY MIN WHAT
  for _ in $(seq 1 1200); do
    v=$(key_of "$1" "$2"); [ -n "$v" ] && [ "$v" -ge "$3" ] && return 0; sleep 0.05
  done
  echo "bench: $4 (no $2=$3 in $1 after 60 s)" >&2; exit 1
}
field() { python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2], {"d": d}))' "$1" "$2"; }
rec() { printf '%s\t%s\t%s\t%s\n' "$side" "$run" "$1" "$2" >>"$results"; }
fail() { echo "bench: $1 failed with build $side:" >&2; tail -n 20 "$2" >&2; exit 1; }
cleanup() {
  for s in A B; do
    [ -x "$build_a/bin/gcp-isolate" ] || continue
    GCP_STORE=$work/store-$s GCP_SCRATCH=$work/scratch-$s "$build_a/bin/gcp-isolate" kill "ab-$s" >/dev/null 2>&1 || true
    GCP_STORE=$work/store-$s GCP_SCRATCH=$work/scratch-$s "$build_b/bin/gcp-isolate" kill "ab-$s" >/dev/null 2>&1 || true
  done
  rm -rf "$work"
}
trap cleanup EXIT

# one_side SIDE BIN: a fresh store, two checkpoints and a restart with the tools in BIN
one_side() {
  local bin=$2 job=ab-$1 st=$work/state-$1 t0 t1 n hpid
  side=$1
  export GCP_STORE=$work/store-$1 GCP_SCRATCH=$work/scratch-$1
  rm -rf "$GCP_STORE" "$GCP_SCRATCH" "$st"
  local opts_var=RUN_OPTS_$1
  # shellcheck disable=SC2086
  "$bin/gcp-isolate" run --job "$job" ${!opts_var:-} -- "$memhog" "$st" "$mib" random >"$work/job.json" 2>"$work/err" ||
    fail "gcp-isolate run" "$work/err"
  hpid=$(field "$work/job.json" 'd["units"][0]["pid"]')
  wait_key "$st" count 2 "the workload did not fill its memory"
  for n in 1 2; do
    if [ "$n" = 2 ]; then
      local g; g=$(key_of "$st" dirtied); kill -USR1 "$hpid"
      wait_key "$st" dirtied $((g + 1)) "memhog did not rewrite its pages"
    fi
    settle
    t0=$(now); "$bin/gcp-checkpoint" "$job" >"$work/cp.json" 2>"$work/err" || fail "gcp-checkpoint" "$work/err"; t1=$(now)
    rec "cp$n.wallMs" "$(elapsed_ms "$t0" "$t1")"
    for t in downtimeMs storeMs totalMs; do rec "cp$n.$t" "$(field "$work/cp.json" "d['timings']['$t']")"; done
  done
  "$bin/gcp-isolate" kill "$job" >/dev/null 2>"$work/err" || fail "gcp-isolate kill" "$work/err"
  settle
  t0=$(now)
  if ! "$bin/gcp-restart" --seq 2 "$job" >/dev/null 2>"$work/err"; then
    # The checkpoint froze memhog between creating its state file's .tmp and renaming it: the
    # file CRIU must reopen is gone (no fault of either build). The side is taken again.
    grep -q "state-$1.tmp on restore" "$work/err" || fail "gcp-restart" "$work/err"
    say "build $1: the checkpoint caught memhog writing its state file; taking this side again"
    retakes=$((retakes + 1))
    return 1
  fi
  t1=$(now)
  rec restartMs "$(elapsed_ms "$t0" "$t1")"
  local c; c=$(key_of "$st" count)
  wait_key "$st" count $((c + 1)) "the restarted workload does not run"
  [ "$(key_of "$st" status)" = ok ] || { echo "bench: restarted workload reports: $(key_of "$st" status)" >&2; exit 1; }
  "$bin/gcp-isolate" kill "$job" >/dev/null 2>"$work/err" || fail "gcp-isolate kill" "$work/err"
}

say "A = $build_a ($(git -C "$build_a/.." rev-parse --short HEAD 2>/dev/null || echo '?')), B = $build_b ($(git -C "$top" rev-parse --short HEAD 2>/dev/null || echo '?')), $mib MiB, $runs runs"
for run in $(seq 1 "$runs"); do
  if [ $((run % 2)) = 1 ]; then order="A B"; else order="B A"; fi
  for s in $order; do
    for _ in 1 2 3; do
      if [ "$s" = A ]; then one_side A "$build_a/bin" && break; else one_side B "$build_b/bin" && break; fi
      sed -i "/^$s\t$run\t/d" "$results"
    done
  done
  say "run $run of $runs done ($order)"
done
cp "$results" "$report/builds-ab.tsv"
python3 - "$results" "$mib" "$runs" "$build_a" "$build_b" "$retakes" >"$report/builds-ab.md" <<'PY'
import os, statistics, sys
f, mib, runs, a, b, retakes = sys.argv[1:]
v = {}
for line in open(f):
    side, run, key, x = line.rstrip("\n").split("\t")
    v.setdefault((side, key), []).append(float(x))
print(f"# builds-ab: {mib} MiB memhog, {runs} runs, medians\n")
print(f"A = {a} {os.environ.get('RUN_OPTS_A', '')}, B = {b} {os.environ.get('RUN_OPTS_B', '')}; sides taken again (a checkpoint caught memhog writing its state file): {retakes}\n")
print("| step | A ms | B ms | B/A |")
print("|---|---:|---:|---:|")
for key in [f"cp{n}.{t}" for n in (1, 2) for t in ("downtimeMs", "storeMs", "totalMs", "wallMs")] + ["restartMs"]:
    ma, mb = statistics.median(v[("A", key)]), statistics.median(v[("B", key)])
    print(f"| {key} | {ma:.0f} | {mb:.0f} | {mb / ma:.2f} |")
PY
cat "$report/builds-ab.md"
