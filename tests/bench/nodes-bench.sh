#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Benchmark (a report, not a timed test): what coordinating costs. On three test nodes
# (scripts/nodes.sh, reached over ssh), for K = 1, 2, 4 and 8 units of MIB MiB each
# (memhog: random memory, idle between checkpoints), placed round-robin on min(K, 3) nodes:
#  - each unit alone: K one-unit jobs with the same placement, each checkpointed by itself
#    (through the same launcher and node command): the slowest of them is what the job
#    cannot be faster than on an idle machine;
#  - the same K one-unit jobs checkpointed all at the same time, each by its own
#    gcp-checkpoint (no coordination): the slowest of them is what each node's own work
#    costs while the other nodes' work shares this machine's 2 cores and disk, as it does
#    during the job's round;
#  - the K units as one job: a coordinated checkpoint (freeze barrier, dump, thaw, store,
#    commit), its wall time against the slowest single unit, and the per-phase breakdown.
# Each is the median of RUNS rounds, and every measured checkpoint is a full one: the
# checkpoints taken before are removed and the store collected first (otherwise a round
# would find every chunk of the unchanged memory stored already); the report shows the
# new bytes each round wrote. The per-unit constant is fitted by least squares to
#   T(job of K) - 1.3 x T(slowest unit) = c x K.
# The units are idle between checkpoints on purpose: the three test nodes share this
# machine's 2 cores, and units that compute (a counter re-reads its whole memory every
# second) would take from the other nodes' checkpoint work what real nodes do not share.
#   RUNS=3 MIB=128 KS="1 2 4 8" KIND=random tests/bench/nodes-bench.sh
# Writes $BUILD/bench/nodes-bench.md.
set -euo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${BUILD:-build}
case $BUILD in /*) ;; *) BUILD=$top/$BUILD ;; esac
bin=$BUILD/bin runs=${RUNS:-3} mib=${MIB:-128} ks=${KS:-1 2 4 8} kind=${KIND:-random}
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

# start JOB UNIT NODE: $mib MiB of $kind memory.
start() {
  "$bin/gcp-isolate" run --job "$1" --unit "$2" --node "$3" -- "$BUILD/tests/workloads/memhog" "$work/$1-$2.state" "$mib" "$kind" >/dev/null 2>&1
  started+=("$1")
}
# full JOB...: removes the jobs' checkpoints and collects their chunks, so that the next
# checkpoint of each stores all of its memory again.
full() {
  local j seq
  for j in "$@"; do
    for seq in $("$bin/gcp-store" ls "$j" | python3 -c 'import json, sys; [print(c["seq"]) for c in json.load(sys.stdin)]'); do
      "$bin/gcp-store" rm "$j" --seq "$seq" >/dev/null 2>&1 || { echo "bench: cannot remove checkpoint $seq of $j" >&2; exit 1; }
    done
  done
  "$bin/gcp-store" gc >/dev/null
}
counting() { local c; c=$(sed -n 's/^count=//p' "$1" 2>/dev/null); [ -n "$c" ] && [ "$c" -ge 3 ]; }
wait_counting() {
  local f
  for f in "$@"; do
    for _ in $(seq 600); do counting "$f" && break; sleep 0.1; done
  done
}

for k in $ks; do
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
    ones=()
    for u in $(seq 1 "$k"); do ones+=("one$k-$u"); done
    for u in $(seq 1 "$k"); do
      full "one$k-$u"
      "$bin/gcp-checkpoint" "one$k-$u" --keep 1 >"$work/one$k-$u.$r.json" 2>/dev/null
    done
    # The same units checkpointed at the same time, each by its own checkpointer (no
    # coordination): what K nodes' own checkpoints cost when they share this machine.
    full "${ones[@]}"
    pids=()
    for u in $(seq 1 "$k"); do
      "$bin/gcp-checkpoint" "one$k-$u" --keep 1 >"$work/one$k-$u.$r.par.json" 2>/dev/null &
      pids+=($!)
    done
    for p in "${pids[@]}"; do wait "$p"; done
    full "job$k"
    "$bin/gcp-checkpoint" "job$k" --keep 1 >"$work/job$k.$r.json" 2>"$work/job$k.$r.err"
  done
  for u in $(seq 1 "$k"); do "$bin/gcp-isolate" kill "one$k-$u" >/dev/null 2>&1; done
  "$bin/gcp-isolate" kill "job$k" >/dev/null 2>&1
done

python3 - "$work" "$runs" "$mib" "$kind" "$ks" >"$BUILD/bench/nodes-bench.md" <<'PY'
import json, statistics, sys
work, runs, mib, kind = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
ks = [int(k) for k in sys.argv[5].split()]
def load(name, r): return json.load(open(f"{work}/{name}.{r}.json"))
def med(vals): return statistics.median(vals)
rows, fit, fresh = [], [], []
for k in ks:
    n = min(k, 3)
    # The slowest single unit of each round, then the median over rounds.
    slowest = med([max(load(f"one{k}-{u}", r)["timings"]["totalMs"] for u in range(1, k + 1)) for r in range(1, runs + 1)])
    slowest_down = med([max(load(f"one{k}-{u}", r)["timings"]["downtimeMs"] for u in range(1, k + 1)) for r in range(1, runs + 1)])
    # What the units cost one after the other: where the nodes share the machine's cores,
    # the job cannot take less.
    summed = med([sum(load(f"one{k}-{u}", r)["timings"]["totalMs"] for u in range(1, k + 1)) for r in range(1, runs + 1)])
    # The slowest of the units checkpointed at the same time by independent checkpointers.
    at_once = med([max(load(f"one{k}-{u}", f"{r}.par")["timings"]["totalMs"] for u in range(1, k + 1)) for r in range(1, runs + 1)])
    job = [load(f"job{k}", r)["timings"] for r in range(1, runs + 1)]
    total = med([t["totalMs"] for t in job])
    phase = {p: med([t.get(p, 0) for t in job]) for p in ("freezeBarrierMs", "dumpMs", "thawMs", "downtimeMs", "storeMs", "commitMs")}
    # Every measured checkpoint stored its memory anew (the least new/raw of them all).
    cps = [load(f"job{k}", r) for r in range(1, runs + 1)] + \
          [load(f"one{k}-{u}", s) for r in range(1, runs + 1) for u in range(1, k + 1) for s in (r, f"{r}.par")]
    fresh.append(min(c["bytes"]["new"] / c["bytes"]["raw"] for c in cps))
    rows.append((k, n, slowest, total, phase, slowest_down, summed, at_once))
    fit.append((k, total - 1.3 * slowest, total - 1.3 * at_once))
def lsq(i): return sum(f[0] * f[i] for f in fit) / sum(f[0] * f[0] for f in fit)
c, c_at_once = lsq(1), lsq(2)
print(f"# Coordinated checkpoint across test nodes\n\n{runs} rounds each (medians, ms); units of {mib} MiB ({kind} memory, idle between checkpoints), "
      "round-robin on the nodes; every checkpoint a full one. 'Slowest unit alone' = the slowest of the same units "
      "checkpointed one by one as one-unit jobs (through the same launcher); 'all at once' = the slowest of them "
      "when all K are checkpointed at the same time, each by its own gcp-checkpoint.\n")
print("| units | nodes | slowest unit alone | slowest unit, all at once | job | job / slowest alone | job / slowest at once | units one by one | job / one by one | freeze barrier | dump | thaw | store | commit | downtime (job) | downtime (slowest unit) |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
for k, n, slowest, total, p, sd, summed, at_once in rows:
    print(f"| {k} | {n} | {slowest:.0f} | {at_once:.0f} | {total:.0f} | {total / slowest:.2f}x | {total / at_once:.2f}x | "
          f"{summed:.0f} | {total / summed:.2f}x | "
          f"{p['freezeBarrierMs']:.0f} | {p['dumpMs']:.0f} | {p['thawMs']:.0f} | {p['storeMs']:.0f} | {p['commitMs']:.0f} | "
          f"{p['downtimeMs']:.0f} | {sd:.0f} |")
print(f"\nEvery measured checkpoint was a full one: each wrote at least {100 * min(fresh):.1f}% of its raw bytes as new chunks.")
print(f"\nTarget: T(job of K) <= 1.3 x T(slowest unit) + c x K. Least-squares per-unit constant against the slowest "
      f"unit alone: c = {c:.0f} ms (T - 1.3 x slowest per K: " + ", ".join(f"K={f[0]}: {f[1]:.0f}" for f in fit) + "); "
      f"against the slowest unit checkpointed while the others are too: c = {c_at_once:.0f} ms ("
      + ", ".join(f"K={f[0]}: {f[2]:.0f}" for f in fit) + ").")
print("\nThe machine has 2 cores and one disk for all test nodes: K units dumped, hashed and compressed at once "
      "share them, so a unit checkpointed alone is faster here than it is while the other units are checkpointed "
      "too (on real nodes each has its own cores and disks, and a unit's checkpoint does not slow down with K). "
      "'Slowest unit, all at once' is the slowest of the K units checkpointed at the same time by K independent "
      "checkpointers: what the nodes' own checkpoints cost on this machine; the job against it is what "
      "coordinating adds.")
PY
cat "$BUILD/bench/nodes-bench.md"
