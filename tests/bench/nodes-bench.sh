#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Benchmark (a report, not a timed test): what coordinating costs. On three test nodes
# (scripts/nodes.sh, reached over ssh), for K = 1, 2, 4 and 8 units of MIB MiB each
# (counters), placed round-robin on min(K, 3) nodes:
#  - each unit alone: K one-unit jobs with the same placement, each checkpointed by itself
#    (through the same launcher and node command): the slowest of them is what the job
#    cannot be faster than;
#  - the K units as one job: a coordinated checkpoint (freeze barrier, dump, thaw, store,
#    commit), its wall time against the slowest single unit, and the per-phase breakdown.
# Each is the median of RUNS rounds (every round is a first, full checkpoint: --keep 1 and
# fresh memory between rounds would not change what a round writes, as each unit's memory
# differs). The per-unit constant is fitted by least squares to
#   T(job of K) - 1.3 x T(slowest unit) = c x K.
#   RUNS=3 MIB=128 tests/bench/nodes-bench.sh
# Writes $BUILD/bench/nodes-bench.md.
set -euo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${BUILD:-build}
case $BUILD in /*) ;; *) BUILD=$top/$BUILD ;; esac
bin=$BUILD/bin runs=${RUNS:-3} mib=${MIB:-128}
[ "$(id -u)" -eq 0 ] || { echo "bench: needs root" >&2; exit 1; }
nodes=$top/scripts/nodes.sh
[ ! -e /run/gcp-nodes/nodes ] || { echo "bench: test nodes are up already (scripts/nodes.sh down)" >&2; exit 1; }
work=$(mktemp -d /tmp/gcp-bench-nodes.XXXXXX)
export GCP_STORE=$work/store GCP_CONFIG=$work/gcp.json
mkdir -p "$GCP_STORE" "$BUILD/bench"
started=()
cleanup() {
  for j in "${started[@]}"; do "$bin/gcp-isolate" kill "$j" >/dev/null 2>&1 || true; done
  "$nodes" down || true
  rm -rf "$work"
}
trap cleanup EXIT
"$nodes" up 3 "$GCP_STORE"
printf '{"launcher": {"kind": "ssh", "command": ["ssh", "-F", "%s", "{node}"]}}\n' "$("$nodes" ssh-config)" >"$GCP_CONFIG"

# start JOB UNIT NODE: a counter of $mib MiB.
start() {
  "$bin/gcp-isolate" run --job "$1" --unit "$2" --node "$3" -- "$BUILD/tests/workloads/counter" "$work/$1-$2.state" "$mib" >/dev/null 2>&1
  started+=("$1")
}
counting() { local c; c=$(sed -n 's/^count=//p' "$1" 2>/dev/null); [ -n "$c" ] && [ "$c" -ge 3 ]; }
wait_counting() {
  local f
  for f in "$@"; do
    for _ in $(seq 600); do counting "$f" && break; sleep 0.1; done
  done
}

for k in 1 2 4 8; do
  n=$((k < 3 ? k : 3))
  states=()
  for u in $(seq 1 "$k"); do
    node=gcpn$(((u - 1) % n + 1))
    start "job$k" "u$u" "$node"
    start "one$k-$u" main "$node"
    states+=("$work/job$k-u$u.state" "$work/one$k-$u-main.state")
  done
  wait_counting "${states[@]}"
  for r in $(seq 1 "$runs"); do
    for u in $(seq 1 "$k"); do
      "$bin/gcp-checkpoint" "one$k-$u" --keep 1 >"$work/one$k-$u.$r.json" 2>/dev/null
    done
    "$bin/gcp-checkpoint" "job$k" --keep 1 >"$work/job$k.$r.json" 2>"$work/job$k.$r.err"
  done
  for u in $(seq 1 "$k"); do "$bin/gcp-isolate" kill "one$k-$u" >/dev/null 2>&1; done
  "$bin/gcp-isolate" kill "job$k" >/dev/null 2>&1
done

python3 - "$work" "$runs" "$mib" >"$BUILD/bench/nodes-bench.md" <<'PY'
import json, statistics, sys
work, runs, mib = sys.argv[1], int(sys.argv[2]), sys.argv[3]
def load(name, r): return json.load(open(f"{work}/{name}.{r}.json"))
def med(vals): return statistics.median(vals)
rows, fit = [], []
for k in (1, 2, 4, 8):
    n = min(k, 3)
    # The slowest single unit of each round, then the median over rounds.
    slowest = med([max(load(f"one{k}-{u}", r)["timings"]["totalMs"] for u in range(1, k + 1)) for r in range(1, runs + 1)])
    slowest_down = med([max(load(f"one{k}-{u}", r)["timings"]["downtimeMs"] for u in range(1, k + 1)) for r in range(1, runs + 1)])
    # What the units cost one after the other: where the nodes share the machine's cores,
    # the job cannot take less.
    summed = med([sum(load(f"one{k}-{u}", r)["timings"]["totalMs"] for u in range(1, k + 1)) for r in range(1, runs + 1)])
    job = [load(f"job{k}", r)["timings"] for r in range(1, runs + 1)]
    total = med([t["totalMs"] for t in job])
    phase = {p: med([t.get(p, 0) for t in job]) for p in ("freezeBarrierMs", "dumpMs", "thawMs", "downtimeMs", "storeMs", "commitMs")}
    rows.append((k, n, slowest, total, phase, slowest_down, summed))
    fit.append((k, total - 1.3 * slowest))
c = sum(k * y for k, y in fit) / sum(k * k for k, _ in fit)
print(f"# Coordinated checkpoint across test nodes\n\n{runs} rounds each (medians, ms); units of {mib} MiB (counters), "
      "round-robin on the nodes; every checkpoint a full one. 'slowest unit' = the slowest of the same units "
      "checkpointed one by one as one-unit jobs (through the same launcher).\n")
print("| units | nodes | slowest unit | job | job / slowest | units one by one | job / one by one | freeze barrier | dump | thaw | store | commit | downtime (job) | downtime (slowest unit) |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
for k, n, slowest, total, p, sd, summed in rows:
    print(f"| {k} | {n} | {slowest:.0f} | {total:.0f} | {total / slowest:.2f}x | {summed:.0f} | {total / summed:.2f}x | "
          f"{p['freezeBarrierMs']:.0f} | {p['dumpMs']:.0f} | {p['thawMs']:.0f} | {p['storeMs']:.0f} | {p['commitMs']:.0f} | "
          f"{p['downtimeMs']:.0f} | {sd:.0f} |")
print(f"\nTarget: T(job of K) <= 1.3 x T(slowest unit) + c x K. Least-squares per-unit constant c = {c:.0f} ms "
      f"(T - 1.3 x slowest per K: " + ", ".join(f"K={k}: {y:.0f}" for k, y in fit) + ").")
print("\nThe machine has 2 cores: K units dumped, hashed and compressed at once share them, so the store phase "
      "grows with K on this machine (on real nodes each node has its own cores and disks).")
PY
cat "$BUILD/bench/nodes-bench.md"
