#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Benchmark (a report, not a timed test): gcp with its deduplicating chunk store against
# plain `criu dump` to a directory and `criu restore` from it, side by side in one run,
# alternating gcp and plain (and which goes first), median of RUNS, for each workload size and kind of memory
# (memhog, random or compressible). Per workload, both sides take a first checkpoint,
# let memhog rewrite 5% of its pages, take a second one and restart from it. Also measures
# the store's file system (dd with fsync) and zstd on the same pages, so that gcp's ingest
# speed can be put against them. Writes $BUILD/bench/store-bench.{json,md}. (Its per-workload
# tables hold what criu-vs-gcp.sh reported for the counter: checkpoint end to end and on disk,
# downtime, dump throughput and restart, each against plain CRIU.) Also records, on both
# sides, the time CRIU itself holds the job (its stats-dump: freezing + frozen), and takes a
# third checkpoint the old way (GCP_DUMP_GATE=0: frozen before CRIU starts) to show what the
# dump gate saves.
#   MIBS="256 1024" KINDS="random compressible" RUNS=4 tests/bench/store-bench.sh
# Targets: downtime within 1.1x of plain criu dump; a second checkpoint (5% rewritten)
# stores at most 10% of a full one; compressible memory is stored in at most a third of
# its raw size; restart within 1.3x of plain criu restore.
set -euo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${BUILD:-build}
case $BUILD in /*) ;; *) BUILD=$top/$BUILD ;; esac
bin=$BUILD/bin
memhog=$BUILD/tests/workloads/memhog
mibs=${MIBS:-256 1024}
kinds=${KINDS:-random compressible}
runs=${RUNS:-4}  # even: as many runs with gcp first as with plain CRIU first
criu=${GCP_CRIU:-$(command -v criu || echo /usr/local/sbin/criu)}
job=store-bench
work=$(mktemp -d /tmp/gcp-bench.XXXXXX)
export GCP_STORE=$work/store
# gcp's local scratch (where CRIU dumps and restores) of its own, on the same file system as
# the plain dumps, out of reach of other runs' gc.
export GCP_SCRATCH=${GCP_SCRATCH:-$work/scratch}
report=$BUILD/bench
mkdir -p "$report"
[ "$(id -u)" -eq 0 ] || { echo "bench: needs root" >&2; exit 1; }
[ -x "$memhog" ] || { echo "bench: no $memhog; build it with 'make $BUILD/tests/workloads/memhog'" >&2; exit 1; }
command -v zstd >/dev/null || { echo "bench: needs zstd (apt-get install zstd)" >&2; exit 1; }
for m in $mibs; do [[ $m =~ ^[1-9][0-9]*$ ]] || { echo "bench: MIBS: '$m' is not a size in MiB" >&2; exit 2; }; done
for k in $kinds; do [[ $k =~ ^(random|compressible)$ ]] || { echo "bench: KINDS: '$k' is not random or compressible" >&2; exit 2; }; done

# CRIU must see only the workload's own descriptors.
for fd in /proc/$$/fd/*; do fd=${fd##*/}; [ "$fd" -gt 2 ] && eval "exec $fd>&-" 2>/dev/null || true; done

say() { printf 'bench: %s\n' "$*" >&2; }
now() { date +%s.%N; }
# Both sides start each measured step from the same page cache: empty. (In this VM,
# writing into a page cache that must grow costs several times more than reusing it.)
settle() { sync; echo 3 >/proc/sys/vm/drop_caches; }
elapsed_ms() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", (b - a) * 1000 }'; }
key_of() { sed -n "s/^$2=//p" "$1" 2>/dev/null | head -n1 || true; }
wait_key() {  # FILE KEY MIN WHAT: until KEY in the state file is at least MIN
  for _ in $(seq 1 1200); do
    v=$(key_of "$1" "$2"); [ -n "$v" ] && [ "$v" -ge "$3" ] && return 0; sleep 0.05
  done
  echo "bench: $4 (no $2=$3 in $1 after 60 s)" >&2; exit 1
}
running() {  # STATE: memhog keeps counting, and found nothing wrong
  local c; c=$(key_of "$1" count)
  wait_key "$1" count $((c + 1)) "the workload does not run"
  [ "$(key_of "$1" status)" = ok ] || { echo "bench: workload reports: $(key_of "$1" status)" >&2; exit 1; }
}
dirty() {  # STATE PID: memhog rewrites 5% of its pages
  local g; g=$(key_of "$1" dirtied)
  kill -USR1 "$2"
  wait_key "$1" dirtied $((g + 1)) "memhog did not rewrite its pages"
}
field() { python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2], {"d": d}))' "$1" "$2"; }
bytes_in() { find "$1" -type f -printf '%s\n' | awk '{ s += $1 } END { print s + 0 }'; }
# The host pid of the plain workload: the memhog on STATE that is PID 1 of its namespace.
plain_pid() {
  local p
  for p in $(pgrep -f "memhog $1 " || true); do
    [ "$(awk '/^NSpid/ {print $3}' "/proc/$p/status" 2>/dev/null)" = 1 ] && { echo "$p"; return 0; }
  done
  return 0
}
kill_plain() {  # STATE: kills the plain workload by its pid, waits until it is gone
  local p; p=$(plain_pid "$1")
  [ -n "$p" ] || return 0
  kill -9 "$p" 2>/dev/null || true
  for _ in $(seq 1 100); do [ -d "/proc/$p" ] || return 0; sleep 0.05; done
}
results=$work/results.tsv
: >"$results"
# quiesce: waits (up to a minute) for the machine to be idle, as other work on it skews
# every number here; records the idle share it started from.
cpu_idle_pct() {
  local a b
  read -ra a </proc/stat; sleep 1; read -ra b </proc/stat
  awk -v t0="${a[*]:1:8}" -v t1="${b[*]:1:8}" 'BEGIN {
    n = split(t0, x, " "); split(t1, y, " ")
    for (i = 1; i <= n; i++) d += y[i] - x[i]
    idle = (y[4] - x[4]) + (y[5] - x[5])
    printf "%d", (d > 0 ? idle * 100 / d : 100) }'
}
quiesce() {
  local idle
  for _ in $(seq 1 60); do idle=$(cpu_idle_pct); [ "$idle" -ge 85 ] && break; done
  [ "$idle" -ge 85 ] || say "the machine is busy (CPU ${idle}% idle): the numbers of this run are skewed"
  rec host.idlePct "$idle"
}
# quiet CMD...: runs CMD with its output kept aside; shows it if CMD fails
quiet() { "$@" >"$work/quiet.out" 2>&1 || { local rc=$?; echo "bench: failed ($rc): $*" >&2; tail -n 20 "$work/quiet.out" >&2; return $rc; }; }
rec() { printf '%s\t%s\t%s\t%s\t%s\n' "$mib" "$kind" "$run" "$1" "$2" >>"$results"; }
cleanup() {
  "$bin/gcp-isolate" kill "$job" >/dev/null 2>&1 || true
  kill_plain "$work/plain.state" 2>/dev/null || true
  rm -f "$GCP_STORE/dd.bin" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
trap 'echo "bench: line $LINENO: \"$BASH_COMMAND\" failed" >&2' ERR

# gcp_checkpoint N: one measured checkpoint through gcp; records its manifest's numbers
gcp_checkpoint() {
  local n=$1 cp=$work/cp$1.json t0 t1
  settle
  t0=$(now); "$bin/gcp-checkpoint" -v "$job" >"$cp" 2>"$work/cp.err" || { cat "$work/cp.err" >&2; exit 1; }; t1=$(now)
  rec "gcp.cp$n.wallMs" "$(elapsed_ms "$t0" "$t1")"
  for t in freezeMs dumpMs thawMs downtimeMs storeMs totalMs; do rec "gcp.cp$n.$t" "$(field "$cp" "d['timings']['$t']")"; done
  for b in raw new stored; do rec "gcp.cp$n.$b" "$(field "$cp" "d['bytes']['$b']")"; done
  rec "gcp.cp$n.checkpointerStartMs" "$(field "$cp" "d['timings'].get('checkpointerStartMs', 0)")"
  rec "gcp.cp$n.criuFrozenMs" "$(field "$cp" "round((d['units'][0]['stats']['freezingUs'] + d['units'][0]['stats']['frozenUs']) / 1000, 1)")"
  # storeMs in parts, from the debug lines (when there are such lines)
  python3 - "$work/cp.err" "$n" <<'PY' | while read -r k v; do rec "$k" "$v"; done
import re, sys
err, n = open(sys.argv[1]).read(), sys.argv[2]
m = re.search(r"stored \d+ bytes in [\d.]+ ms \(chunks in ([\d.]+) ms, last pack ([\d.]+) ms\)", err)
if m:
    print(f"gcp.cp{n}.chunksMs", m[1])
    print(f"gcp.cp{n}.lastPackMs", m[2])
m = re.search(r"manifest written in ([\d.]+) ms", err)
if m:
    print(f"gcp.cp{n}.manifestMs", m[1])
PY
}
# criu_frozen_ms STATS: how long CRIU itself held the job (freezing + frozen, from its
# stats-dump: u32 magic x2, u32 size, then dump_stats_entry as field 1)
criu_frozen_ms() {
  python3 - "$1" <<'PY'
import sys
b = open(sys.argv[1], "rb").read()[12:]
def varint(b, i):
    v = s = 0
    while True:
        c = b[i]; i += 1; v |= (c & 0x7f) << s; s += 7
        if not c & 0x80: return v, i
assert b[0] == 0x0a
n, i = varint(b, 1)
f, end = {}, i + n
while i < end:
    k, i = varint(b, i)
    v, i = varint(b, i)
    f[k >> 3] = v
print(round((f.get(1, 0) + f.get(2, 0)) / 1000, 1))
PY
}
# plain_dump N IMG: one measured plain criu dump of the running plain workload
plain_dump() {
  local n=$1 img=$2 t0 t1 t2
  rm -rf "$img"; mkdir -p "$img"
  settle
  t0=$(now)
  "$criu" dump -t "$pid" -D "$img" -o dump.log --ext-mount-map auto --enable-external-masters --leave-running ||
    { echo "bench: criu dump failed:" >&2; tail -n 20 "$img/dump.log" >&2; exit 1; }
  t1=$(now)
  sync -f "$img"  # criu does not sync its images; gcp's store does
  t2=$(now)
  rec "criu.cp$n.dumpMs" "$(elapsed_ms "$t0" "$t1")"
  rec "criu.cp$n.frozenMs" "$(criu_frozen_ms "$img/stats-dump")"
  rec "criu.cp$n.dumpSyncMs" "$(elapsed_ms "$t0" "$t2")"
  rec "criu.cp$n.bytes" "$(bytes_in "$img")"
}

# summary: one line on the run just measured
summary() {
  python3 - "$results" "$mib" "$kind" "$run" <<'PY'
import sys
f, mib, kind, run = sys.argv[1:]
v = {k: float(x) for m, kd, r, k, x in (l.rstrip("\n").split("\t") for l in open(f)) if (m, kd, r) == (mib, kind, run)}
print(f"gcp downtime {v['gcp.cp1.downtimeMs']:.0f}/{v['gcp.cp2.downtimeMs']:.0f} ms (no gate {v['gcp.cp3.downtimeMs']:.0f}), total {v['gcp.cp1.wallMs']:.0f}/{v['gcp.cp2.wallMs']:.0f} ms, "
      f"stored {v['gcp.cp1.stored'] / 2**20:.1f}/{v['gcp.cp2.stored'] / 2**20:.1f} MiB, restart {v['gcp.restartMs']:.0f} ms; "
      f"criu dump {v['criu.cp1.dumpMs']:.0f}/{v['criu.cp2.dumpMs']:.0f} ms, restore {v['criu.restoreMs']:.0f} ms")
PY
}

# gcp_side / plain_side: one workload through gcp, and the same through plain CRIU. A
# run does both, alternating which goes first (the VM's first touch of memory is dear,
# and the side that runs second may reuse what the first freed).
gcp_side() {
  # --- through gcp, into a store of its own (a first checkpoint deduplicates against nothing)
  st=$work/gcp.state
  rm -rf "$GCP_STORE" "$st"
  "$bin/gcp-isolate" run --job "$job" -- "$memhog" "$st" "$mib" "$kind" >"$work/job.json" 2>"$work/run.err" ||
    { cat "$work/run.err" >&2; exit 1; }
  hpid=$(field "$work/job.json" 'd["units"][0]["pid"]')
  wait_key "$st" count 2 "the gcp workload did not fill its memory"
  gcp_checkpoint 1
  dirty "$st" "$hpid"
  gcp_checkpoint 2
  # The same dump with the unit frozen before CRIU starts (no gate): what the gate saves.
  GCP_DUMP_GATE=0 gcp_checkpoint 3
  quiet "$bin/gcp-isolate" kill "$job"
  settle
  t0=$(now); "$bin/gcp-restart" -v --seq 2 "$job" >/dev/null 2>"$work/restart.err" || { cat "$work/restart.err" >&2; exit 1; }; t1=$(now)
  rec gcp.restartMs "$(elapsed_ms "$t0" "$t1")"
  # The phases, from the debug lines' clock: start to the images, materializing them, criu restore.
  python3 - "$work/restart.err" <<'PY' | while read -r k v; do rec "$k" "$v"; done
import re, sys
t = {}
for line in open(sys.argv[1]):
    m = re.match(r"\[(\d+):(\d+):(\d+\.\d+), gcp-restart", line)
    if not m: continue
    s = int(m[1]) * 3600 + int(m[2]) * 60 + float(m[3])
    t.setdefault("start", s)
    if "reading the images" in line: t.setdefault("read", s)
    elif "restoring unit" in line: t.setdefault("restore", s)
    t["end"] = s
t.setdefault("read", t.get("restore"))  # images streamed to criu: nothing read beforehand
if {"start", "read", "restore", "end"} <= t.keys():
    print("gcp.restart.setupMs", round((t["read"] - t["start"]) * 1000, 1))
    print("gcp.restart.materializeMs", round((t["restore"] - t["read"]) * 1000, 1))
    print("gcp.restart.criuRestoreMs", round((t["end"] - t["restore"]) * 1000, 1))
PY
  running "$st"
  quiet "$bin/gcp-isolate" kill "$job"
}
plain_side() {
  # --- plain CRIU, the same workload in the same kind of namespace
  st=$work/plain.state img1=$work/plain-img1 img2=$work/plain-img2
  rm -rf "$img1" "$img2" "$st"
  setsid unshare --pid --mount --fork --propagation slave \
    sh -c "exec setsid '$memhog' '$st' '$mib' '$kind' >'$work/plain.out' 2>&1 </dev/null" \
    </dev/null >/dev/null 2>&1 &
  wait_key "$st" count 2 "the plain workload did not fill its memory"
  pid=$(plain_pid "$st")
  [ -n "$pid" ] || { echo "bench: cannot find the plain workload" >&2; exit 1; }
  plain_dump 1 "$img1"
  # zstd on the same data: the page image of the first dump, read from the page cache.
  pages=$(ls -S "$img1"/pages-*.img | head -n1)
  cat "$pages" >/dev/null
  t0=$(now); zstd -3 -T0 -q -c "$pages" >/dev/null; t1=$(now)
  rec zstd.bytes "$(stat -c %s "$pages")"
  rec zstd.ms "$(elapsed_ms "$t0" "$t1")"
  rec zstd.out "$(zstd -3 -T0 -q -c "$pages" | wc -c)"
  # The disk: as many bytes as the image, written to the store's file system and fsynced.
  mkdir -p "$GCP_STORE"
  n4m=$(( ($(bytes_in "$img1") + (4 << 20) - 1) >> 22 ))
  settle
  t0=$(now); dd if=/dev/zero of="$GCP_STORE/dd.bin" bs=4M count="$n4m" conv=fsync status=none; t1=$(now)
  rm -f "$GCP_STORE/dd.bin"
  rec dd.bytes $((n4m << 22))
  rec dd.ms "$(elapsed_ms "$t0" "$t1")"
  dirty "$st" "$pid"
  plain_dump 2 "$img2"
  kill_plain "$st"
  sleep 0.5
  settle
  t0=$(now)
  "$criu" restore -D "$img2" -o restore.log --ext-mount-map auto --enable-external-masters --root / \
    --restore-detached --manage-cgroups=ignore ||
    { echo "bench: criu restore failed:" >&2; tail -n 20 "$img2/restore.log" >&2; exit 1; }
  t1=$(now)
  rec criu.restoreMs "$(elapsed_ms "$t0" "$t1")"
  running "$st"
  kill_plain "$st"
  rm -rf "$img1" "$img2"
  sleep 0.5
}

rev=$(git -C "$top" describe --always --dirty 2>/dev/null || echo unknown)  # of the sources, at the start
t_start=$(now)
for mib in $mibs; do
  for kind in $kinds; do
    for run in $(seq 1 "$runs"); do
      quiesce
      if [ $((run % 2)) -eq 1 ]; then gcp_side; plain_side; else plain_side; gcp_side; fi
      say "$mib MiB $kind, run $run: $(summary)"
    done
  done
done
t_end=$(now)

python3 - "$report" "$results" "$runs" "$($criu --version | sed -n 's/Version: //p')" "$(zstd -q -V)" "$(nproc)" \
  "$(elapsed_ms "$t_start" "$t_end")" "$(df --output=source,fstype "$work" | awk 'END { print $1 " (" $2 ")" }')" "$(uname -r)" \
  "$rev" <<'PY'
import json, statistics, sys
out, results, runs, criu, zstd, cpus, elapsed_ms, fs, kernel, rev = sys.argv[1:]
runs = int(runs)
MiB = 1 << 20
vals = {}
for line in open(results):
    mib, kind, run, key, v = line.rstrip("\n").split("\t")
    vals.setdefault((int(mib), kind), {}).setdefault(key, []).append(float(v))

def med(c, key):
    xs = vals[c].get(key)
    return statistics.median_low(xs) if xs else None

def r2(x):
    return None if x is None else round(x, 2)

configs, targets = [], []
def target(name, workload, value, limit, unit="x"):
    targets.append({"target": name, "workload": workload, "value": None if value is None else round(value, 2 if unit else 4),
                    "limit": limit, "unit": unit,
                    "pass": value is not None and value <= limit})

for (mib, kind) in vals:
    c = (mib, kind)
    m = lambda k: med(c, k)
    w = f"{mib} MiB {kind}"
    g = {}
    for n in (1, 2):
        p = f"gcp.cp{n}."
        raw, stored = m(p + "raw"), m(p + "stored")
        g[f"checkpoint{n}"] = {
            "downtimeMs": m(p + "downtimeMs"), "wallMs": m(p + "wallMs"), "totalMs": m(p + "totalMs"),
            "freezeMs": m(p + "freezeMs"), "dumpMs": m(p + "dumpMs"), "thawMs": m(p + "thawMs"), "storeMs": m(p + "storeMs"),
            "chunksMs": m(p + "chunksMs"), "lastPackMs": m(p + "lastPackMs"), "manifestMs": m(p + "manifestMs"),
            "checkpointerStartMs": m(p + "checkpointerStartMs"), "criuFrozenMs": m(p + "criuFrozenMs"),
            "bytes": {"raw": int(raw), "new": int(m(p + "new")), "stored": int(stored)},
            "dumpMiBps": round(raw / MiB / (m(p + "dumpMs") / 1000), 1),
            "ingestMiBps": round(raw / MiB / (m(p + "storeMs") / 1000), 1),
        }
    g["noGate"] = {"downtimeMs": m("gcp.cp3.downtimeMs"), "dumpMs": m("gcp.cp3.dumpMs")}
    g["restart"] = {"ms": m("gcp.restartMs"), "setupMs": m("gcp.restart.setupMs"),
                    "materializeMs": m("gcp.restart.materializeMs"), "criuRestoreMs": m("gcp.restart.criuRestoreMs")}
    p = {}
    for n in (1, 2):
        q = f"criu.cp{n}."
        p[f"dump{n}"] = {"dumpMs": m(q + "dumpMs"), "dumpAndSyncMs": m(q + "dumpSyncMs"), "imageBytes": int(m(q + "bytes")),
                         "frozenMs": m(q + "frozenMs"),
                         "dumpMiBps": round(m(q + "bytes") / MiB / (m(q + "dumpMs") / 1000), 1)}
    p["restoreMs"] = m("criu.restoreMs")
    dd = round(m("dd.bytes") / MiB / (m("dd.ms") / 1000), 1)
    zs = {"inputBytes": int(m("zstd.bytes")), "MiBps": round(m("zstd.bytes") / MiB / (m("zstd.ms") / 1000), 1),
          "ratio": round(m("zstd.bytes") / m("zstd.out"), 2)}
    g1, g2 = g["checkpoint1"], g["checkpoint2"]
    ratios = {}
    for n in (1, 2):
        gc, pc = g[f"checkpoint{n}"], p[f"dump{n}"]
        ratios[f"downtime{n}"] = r2(gc["downtimeMs"] / pc["dumpMs"])
        ratios[f"checkpoint{n}"] = r2(gc["wallMs"] / pc["dumpMs"])
        ratios[f"downtime{n}OfCriuFrozen"] = r2(gc["downtimeMs"] / pc["frozenMs"])
        ratios[f"checkpoint{n}Durable"] = r2(gc["wallMs"] / pc["dumpAndSyncMs"])
    ratios["noGateDowntime"] = r2(g["noGate"]["downtimeMs"] / p["dump2"]["dumpMs"])
    ratios["stored1OfRaw"] = round(g1["bytes"]["stored"] / g1["bytes"]["raw"], 4)
    ratios["stored1OfCriuImage"] = round(g1["bytes"]["stored"] / p["dump1"]["imageBytes"], 3)
    ratios["stored2OfStored1"] = round(g2["bytes"]["stored"] / g1["bytes"]["stored"], 4)
    ratios["stored2OfRaw"] = round(g2["bytes"]["stored"] / g2["bytes"]["raw"], 4)
    ratios["restart"] = r2(g["restart"]["ms"] / p["restoreMs"])
    ratios["ingestOfDisk"] = r2(g1["ingestMiBps"] / dd)
    ratios["ingestOfZstd"] = r2(g1["ingestMiBps"] / zs["MiBps"])
    configs.append({"mib": mib, "kind": kind, "gcp": g, "criu": p, "disk": {"ddFsyncMiBps": dd}, "zstd": zs,
                    "ratios": ratios, "idlePctMin": min(vals[c].get("host.idlePct", [100])), "samples": vals[c]})
    target("downtime, 1st checkpoint / criu dump", w, ratios["downtime1"], 1.1)
    target("downtime, 2nd checkpoint / criu dump", w, ratios["downtime2"], 1.1)
    target("stored, 2nd checkpoint / 1st (full)", w, ratios["stored2OfStored1"], 0.10, "")
    if kind == "compressible":
        target("stored / raw, compressible memory", w, ratios["stored1OfRaw"], round(1 / 3, 3), "")
    target("restart / criu restore", w, ratios["restart"], 1.3)

r = {"workload": "memhog: random or compressible anonymous memory, own PID + mount namespace; 5% of its pages rewritten between checkpoints",
     "runs": runs, "criu": criu, "zstd": zstd, "zstdLevel": "gcp's default (3)", "cpus": int(cpus), "kernel": kernel,
     "storeFs": fs, "gcpRevision": rev, "elapsedS": round(float(elapsed_ms) / 1000), "targets": targets, "configs": configs}
json.dump(r, open(f"{out}/store-bench.json", "w"), indent=2)

def ms(x): return f"{x:.0f} ms"
def mb(x): return f"{x / MiB:.1f} MiB"
def fmt_value(t):
    if t["value"] is None: return "n/a"
    return f"{t['value']:.2f}x" if t["unit"] == "x" else f"{t['value'] * 100:.2f}%"
def fmt_limit(t):
    return f"≤ {t['limit']}x" if t["unit"] == "x" else f"≤ {t['limit'] * 100:.1f}%"

md = [f"# gcp chunk store vs plain CRIU (memhog; median of {runs}; gcp {rev}; criu {criu}; zstd {zstd}; {cpus} CPUs; store on {fs})", "",
      "## Targets", "", "| target | workload | measured | limit | |", "|---|---|---|---|---|"]
for t in targets:
    md.append(f"| {t['target']} | {t['workload']} | {fmt_value(t)} | {fmt_limit(t)} | {'PASS' if t['pass'] else 'MISS'} |")
passed = sum(t["pass"] for t in targets)
md += ["", f"{passed} of {len(targets)} targets met."]
for cf in configs:
    g, p, ra = cf["gcp"], cf["criu"], cf["ratios"]
    g1, g2, rs = g["checkpoint1"], g["checkpoint2"], g["restart"]
    md += ["", f"## {cf['mib']} MiB {cf['kind']} (CRIU image {mb(p['dump1']['imageBytes'])})", "",
           "| | gcp | plain criu | gcp/criu |", "|---|---|---|---|"]
    for n, gc in ((1, g1), (2, g2)):
        pc = p[f"dump{n}"]
        what = "1st checkpoint" if n == 1 else "2nd checkpoint (5% rewritten)"
        md += [f"| {what}: job frozen | {ms(gc['downtimeMs'])} | {ms(pc['dumpMs'])} (dump) | {ra[f'downtime{n}']} |",
               f"| {what}: job frozen, as CRIU's stats count it | {ms(gc['downtimeMs'])} (gcp's; CRIU's own {ms(gc['criuFrozenMs'])}) "
               f"| {ms(pc['frozenMs'])} (freezing + frozen) | {ra[f'downtime{n}OfCriuFrozen']} |",
               f"| {what}: end to end | {ms(gc['wallMs'])} | {ms(pc['dumpMs'])} (dump) | {ra[f'checkpoint{n}']} |",
               f"| {what}: on disk | {ms(gc['wallMs'])} | {ms(pc['dumpAndSyncMs'])} (dump + sync) | {ra[f'checkpoint{n}Durable']} |",
               f"| {what}: bytes written | {mb(gc['bytes']['stored'])} stored ({mb(gc['bytes']['new'])} new of {mb(gc['bytes']['raw'])}) "
               f"| {mb(pc['imageBytes'])} | {gc['bytes']['stored'] / pc['imageBytes']:.3f} |"]
    md += [f"| 2nd checkpoint again, frozen before CRIU starts (GCP_DUMP_GATE=0): job frozen | {ms(g['noGate']['downtimeMs'])} "
           f"| {ms(p['dump2']['dumpMs'])} (dump) | {ra['noGateDowntime']} |"]
    md += [f"| dump throughput (1st) | {g1['dumpMiBps']} MiB/s | {p['dump1']['dumpMiBps']} MiB/s | |",
           f"| restart (from the 2nd) | {ms(rs['ms'])} | {ms(p['restoreMs'])} (restore) | {ra['restart']} |",
           f"| store ingest (raw / storeMs, 1st) | {g1['ingestMiBps']} MiB/s | disk (dd, fsync): {cf['disk']['ddFsyncMiBps']} MiB/s | {ra['ingestOfDisk']} |",
           f"| | | zstd -3 -T0 on the page image: {cf['zstd']['MiBps']} MiB/s (ratio {cf['zstd']['ratio']}) | {ra['ingestOfZstd']} |"]
    def phases(gc):
        other = gc["wallMs"] - gc["totalMs"]
        store = f"store {gc['storeMs']:.0f}"
        if gc.get("chunksMs") is not None:
            store += f" (reading, hashing, compressing and writing {gc['chunksMs']:.0f}, last pack {gc['lastPackMs']:.0f})"
        if gc.get("manifestMs") is not None:
            store += f", manifest {gc['manifestMs']:.0f}"
        return (f"CRIU's start-up while the job runs {gc['checkpointerStartMs']:.0f}, "
                f"freeze {gc['freezeMs']:.0f}, dump {gc['dumpMs']:.0f}, thaw {gc['thawMs']:.0f}, {store}, "
                f"before the freeze and after the commit {other:.0f} ms")
    md += ["", f"Where gcp's time goes: 1st checkpoint: {phases(g1)}; 2nd: {phases(g2)}."]
    if rs["materializeMs"] is not None:
        md[-1] += (f" Restart: start up (lock, manifest, chunk list, index, probe) {rs['setupMs']:.0f}, reading the "
                   f"images back before restoring {rs['materializeMs']:.0f} (0: streamed to criu), criu restore "
                   f"and the rest {rs['criuRestoreMs']:.0f} ms.")
md += ["", "Page cache dropped before every measured step, on both sides (zstd reads its input from the page cache). "
       "gcp's checkpoint adds freezing the cgroup, chunking (SHA-256 per 4 KiB), deduplicating, compressing, writing "
       "and fsyncing the packs and the atomic commit; plain criu dump neither syncs nor compresses. Its restart reads "
       "every chunk back from the packs and verifies its hash as it streams the images to criu restore --stream. "
       "Each run starts from an empty store; odd runs measure gcp first, even runs plain CRIU first.",
       "", f"Total time of the benchmark: {float(elapsed_ms) / 60000:.1f} min. CPU idle before the runs (other work on "
       f"the machine skews every number): at least {min(cf['idlePctMin'] for cf in configs):.0f}%."]
text = "\n".join(md) + "\n"
open(f"{out}/store-bench.md", "w").write(text)
print(text)
PY
