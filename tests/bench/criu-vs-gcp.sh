#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Benchmark (a report, not a timed test): checkpoint and restart of one workload through
# gcp against plain `criu dump` / `criu restore` of the same workload, side by side in one
# run, alternating, median of RUNS. Writes $BUILD/bench/criu-vs-gcp.{json,md}.
#   MIB=1024 RUNS=3 tests/bench/criu-vs-gcp.sh
set -euo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${BUILD:-build}
case $BUILD in /*) ;; *) BUILD=$top/$BUILD ;; esac
bin=$BUILD/bin
mib=${MIB:-1024}
runs=${RUNS:-3}
criu=${GCP_CRIU:-$(command -v criu || echo /usr/local/sbin/criu)}
work=$(mktemp -d /tmp/gcp-bench.XXXXXX)
export GCP_STORE=$work/store
report=$BUILD/bench
mkdir -p "$report"
[ "$(id -u)" -eq 0 ] || { echo "bench: needs root" >&2; exit 1; }

# CRIU must see only the workload's own descriptors.
for fd in $(ls /proc/$$/fd); do [ "$fd" -gt 2 ] && eval "exec $fd>&-" 2>/dev/null || true; done

say() { printf 'bench: %s\n' "$*" >&2; }
now() { date +%s.%N; }
# Both sides start each measured step from the same page cache: empty. (In this VM,
# writing into a page cache that must grow costs several times more than reusing it.)
settle() { sync; echo 3 >/proc/sys/vm/drop_caches; }
elapsed_ms() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", (b - a) * 1000 }'; }
count_of() { sed -n 's/^count=//p' "$1" 2>/dev/null | head -n1 || true; }
wait_counting() {  # until the workload has counted past its fill phase
  for _ in $(seq 1 600); do c=$(count_of "$1"); [ -n "$c" ] && [ "$c" -ge "$2" ] && return 0; sleep 0.1; done
  echo "bench: workload $1 did not start" >&2; exit 1
}
field() { python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2], {"d": d}))' "$1" "$2"; }
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
cleanup() {
  "$bin/gcp-isolate" kill bench >/dev/null 2>&1 || true
  pkill -9 -f "$work/plain.state" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

gcp_ck=() gcp_down=() gcp_dump=() gcp_rs=() plain_ck=() plain_sync=() plain_rs=() raw_bytes=0
for run in $(seq 1 "$runs"); do
  # --- through gcp
  st=$work/gcp.state
  rm -f "$st"
  "$bin/gcp-isolate" run --job bench -- "$BUILD/tests/workloads/counter" "$st" "$mib" >/dev/null 2>&1
  wait_counting "$st" 3
  settle
  t0=$(now); "$bin/gcp-checkpoint" bench >"$work/cp.json" 2>/dev/null; t1=$(now)
  gcp_ck+=("$(elapsed_ms "$t0" "$t1")")
  gcp_down+=("$(field "$work/cp.json" 'd["timings"]["downtimeMs"]')")
  gcp_dump+=("$(field "$work/cp.json" 'd["timings"]["dumpMs"]')")
  raw_bytes=$(field "$work/cp.json" 'd["bytes"]["raw"]')
  [ "$raw_bytes" -ge $((mib << 20)) ] || { echo "bench: image of $raw_bytes bytes is smaller than the workload" >&2; exit 1; }
  "$bin/gcp-isolate" kill bench >/dev/null 2>&1
  settle
  t0=$(now); "$bin/gcp-restart" bench >/dev/null 2>&1; t1=$(now)
  gcp_rs+=("$(elapsed_ms "$t0" "$t1")")
  c=$(count_of "$st"); wait_counting "$st" $((c + 1))
  "$bin/gcp-isolate" kill bench >/dev/null 2>&1
  rm -rf "$GCP_STORE/jobs/bench/checkpoints"

  # --- plain CRIU, same workload in the same kind of namespace
  st=$work/plain.state img=$work/plain-img
  rm -rf "$img" "$st"; mkdir -p "$img"
  setsid unshare --pid --mount --fork --propagation slave \
    sh -c "exec setsid '$BUILD/tests/workloads/counter' '$st' '$mib' >'$work/plain.out' 2>&1 </dev/null" \
    </dev/null >/dev/null 2>&1 &
  wait_counting "$st" 3
  pid=$(pgrep -f "counter $st" | while read -r p; do [ "$(awk '/^NSpid/ {print $3}' /proc/$p/status)" = 1 ] && echo "$p"; done | head -n1)
  settle
  t0=$(now)
  "$criu" dump -t "$pid" -D "$img" -o dump.log --ext-mount-map auto --enable-external-masters --leave-running
  t1=$(now)
  sync -f "$img"  # criu does not sync its images; gcp's commit does
  t2=$(now)
  plain_ck+=("$(elapsed_ms "$t0" "$t1")")
  plain_sync+=("$(elapsed_ms "$t0" "$t2")")
  pkill -9 -f "counter $st"; sleep 0.5
  settle
  t0=$(now)
  "$criu" restore -D "$img" -o restore.log --ext-mount-map auto --enable-external-masters --root / \
    --restore-detached --manage-cgroups=ignore
  t1=$(now)
  plain_rs+=("$(elapsed_ms "$t0" "$t1")")
  c=$(count_of "$st"); wait_counting "$st" $((c + 1))
  pkill -9 -f "counter $st" || true
  rm -rf "$img"
  sleep 0.5
  say "run $run: gcp checkpoint ${gcp_ck[-1]} ms (downtime ${gcp_down[-1]}), restart ${gcp_rs[-1]} ms; criu dump ${plain_ck[-1]} ms (+sync ${plain_sync[-1]}), restore ${plain_rs[-1]} ms"
done

g_ck=$(median "${gcp_ck[@]}") g_down=$(median "${gcp_down[@]}") g_dump=$(median "${gcp_dump[@]}") g_rs=$(median "${gcp_rs[@]}")
p_ck=$(median "${plain_ck[@]}") p_sync=$(median "${plain_sync[@]}") p_rs=$(median "${plain_rs[@]}")
python3 - "$report" "$mib" "$runs" "$raw_bytes" "$g_ck" "$g_down" "$g_dump" "$g_rs" "$p_ck" "$p_sync" "$p_rs" "$($criu --version | sed -n 's/Version: //p')" <<'PY'
import json, sys
out, mib, runs, raw, g_ck, g_down, g_dump, g_rs, p_ck, p_sync, p_rs, criu = sys.argv[1:]
mib, runs, raw = int(mib), int(runs), int(raw)
g_ck, g_down, g_dump, g_rs, p_ck, p_sync, p_rs = map(float, (g_ck, g_down, g_dump, g_rs, p_ck, p_sync, p_rs))
r = {
  "workload": f"counter, {mib} MiB patterned memory, own PID + mount namespace",
  "runs": runs, "criu": criu, "imageBytes": raw,
  "gcp": {"checkpointMs": g_ck, "downtimeMs": g_down, "dumpMs": g_dump, "restartMs": g_rs,
          "dumpMiBps": round(raw / 1048576 / (g_dump / 1000), 1)},
  "criu": {"dumpMs": p_ck, "dumpAndSyncMs": p_sync, "restoreMs": p_rs, "dumpMiBps": round(raw / 1048576 / (p_ck / 1000), 1)},
  "ratios": {"checkpoint": round(g_ck / p_ck, 2), "checkpointDurable": round(g_ck / p_sync, 2), "downtime": round(g_down / p_ck, 2),
             "restart": round(g_rs / p_rs, 2)},
}
json.dump(r, open(f"{out}/criu-vs-gcp.json", "w"), indent=2)
md = f"""# gcp vs plain CRIU ({r['workload']}; median of {runs}; criu {criu})

| | gcp | plain criu | ratio gcp/criu |
|---|---|---|---|
| checkpoint, end to end | {g_ck:.0f} ms | {p_ck:.0f} ms (dump) | {r['ratios']['checkpoint']} |
| checkpoint, on disk | {g_ck:.0f} ms | {p_sync:.0f} ms (dump + sync) | {r['ratios']['checkpointDurable']} |
| job frozen (downtime) | {g_down:.0f} ms | {p_ck:.0f} ms | {r['ratios']['downtime']} |
| dump throughput | {r['gcp']['dumpMiBps']} MiB/s | {r['criu']['dumpMiBps']} MiB/s | |
| restart | {g_rs:.0f} ms | {p_rs:.0f} ms (restore) | {r['ratios']['restart']} |

Image: {raw / 1048576:.0f} MiB. Page cache dropped before every measured step, on both sides. gcp's checkpoint adds freezing the cgroup, hashing (SHA-256) and
fsyncing every image file and the atomic commit; its restart adds verifying every hash first.
"""
open(f"{out}/criu-vs-gcp.md", "w").write(md)
print(md)
PY
