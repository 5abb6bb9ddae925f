#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Benchmark (a report, not a timed test): what callbacks add to a checkpoint of a unit
# whose program does not use them. Two jobs run the same counter (MIB MiB); job "plain"
# has the callback endpoint every unit gets (nobody listens: one connect attempt per
# event), job "legacy" had it removed from its Job manifest (a job from before
# callbacks: no attempt at all). They are checkpointed alternately RUNS times; the report
# gives the medians of downtime and total, and the callback phases of the round
# (timings.preCheckpointMs, postCheckpointMs) that only "plain" has.
#   RUNS=10 MIB=16 tests/bench/callbacks-checkpoint.sh
# Writes $BUILD/bench/callbacks-checkpoint.md.
set -euo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${BUILD:-build}
case $BUILD in /*) ;; *) BUILD=$top/$BUILD ;; esac
bin=$BUILD/bin runs=${RUNS:-10} mib=${MIB:-16}
[ "$(id -u)" -eq 0 ] || { echo "bench: needs root" >&2; exit 1; }
work=$(mktemp -d /tmp/gcp-bench-callbacks.XXXXXX)
export GCP_STORE=$work/store
trap 'for j in cbb-plain-$$ cbb-legacy-$$; do "$bin/gcp-isolate" kill "$j" >/dev/null 2>&1 || true; done; rm -rf "$work"' EXIT

for kind in plain legacy; do
  "$bin/gcp-isolate" run --job "cbb-$kind-$$" -- "$BUILD/tests/workloads/counter" "$work/$kind.state" "$mib" >/dev/null 2>&1
done
# A job from before callbacks: its units have no endpoint.
python3 - "$GCP_STORE/jobs/cbb-legacy-$$/job.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
for u in d["units"]: u.pop("callbacks", None)
json.dump(d, open(sys.argv[1], "w"), indent=2)
PY
sleep 1
for i in $(seq 1 "$runs"); do
  for kind in plain legacy; do
    "$bin/gcp-checkpoint" "cbb-$kind-$$" --keep 1 >"$work/$kind.$i.json" 2>/dev/null
  done
done
python3 - "$work" "$runs" "$mib" >"$BUILD/bench/callbacks-checkpoint.md" <<'PY'
import json, statistics, sys
work, runs, mib = sys.argv[1], int(sys.argv[2]), sys.argv[3]
def med(kind, key):
    vals = [json.load(open(f"{work}/{kind}.{i}.json"))["timings"].get(key) for i in range(1, runs + 1)]
    vals = [v for v in vals if v is not None]
    return f"{statistics.median(vals):.2f}" if vals else "-"
print(f"# Checkpoint of a unit that does not use callbacks\n\n{runs} checkpoints each, alternating, a counter of {mib} MiB; medians in ms.\n")
print("| job | preCheckpointMs | postCheckpointMs | downtimeMs | totalMs |\n|---|---|---|---|---|")
for kind, what in (("plain", "endpoint, nobody listens"), ("legacy", "no endpoint (before callbacks)")):
    print(f"| {what} | {med(kind, 'preCheckpointMs')} | {med(kind, 'postCheckpointMs')} | {med(kind, 'downtimeMs')} | {med(kind, 'totalMs')} |")
PY
cat "$BUILD/bench/callbacks-checkpoint.md"
