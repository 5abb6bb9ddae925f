#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The demo of `make demo`: starts a sample job in isolation, checkpoints it into the
# default local store, kills it, restarts it from the checkpoint and shows that it
# continued from where it was. Human lines on stderr; the tools' JSON is kept in a
# temporary directory that the last line names.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-build}
case $BUILD in /*) ;; *) BUILD=$top/$BUILD ;; esac
bin=$BUILD/bin
job=${GCP_DEMO_JOB:-gcp-demo}
out=$(mktemp -d /tmp/gcp-demo.XXXXXX)
st=$out/counter.state

say() { printf 'demo: %s\n' "$*" >&2; }
die() { printf 'demo: error: %s\n' "$*" >&2; exit 1; }
value() { sed -n "s/^$1=//p" "$st" 2>/dev/null | head -n1 || true; }
wait_count() {  # wait_count N: until the counter has counted to at least N
  for _ in $(seq 1 300); do
    c=$(value count)
    [ -n "$c" ] && [ "$c" -ge "$1" ] && return 0
    sleep 0.1
  done
  die "the counter did not reach $1 (state: $(tr '\n' ' ' <"$st" 2>/dev/null))"
}
field() { python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2], {"d": d}))' "$1" "$2"; }

[ "$(id -u)" -eq 0 ] || die "the demo needs root (namespaces, cgroups, CRIU): run 'sudo make demo'"
store=${GCP_STORE:-/var/lib/gcp}
"$bin/gcp-isolate" kill "$job" >/dev/null 2>&1 || true

say "starting job '$job': a counter with 64 MiB of patterned memory, isolated in its own PID namespace"
"$bin/gcp-isolate" run --job "$job" -- "$BUILD/tests/workloads/counter" "$st" 64 >"$out/job.json" 2>/dev/null
wait_count 30
say "the counter is at $(value count) (in-namespace pid $(value pid))"

before=$(value count)
"$bin/gcp-checkpoint" "$job" >"$out/checkpoint.json" 2>"$out/checkpoint.err" ||
  die "checkpoint failed: $(cat "$out/checkpoint.err")"
seq=$(field "$out/checkpoint.json" 'd["seq"]')
at=$(value count)
say "checkpoint $seq committed in $store: $(field "$out/checkpoint.json" 'round(d["bytes"]["raw"]/1048576)') MiB, job frozen for $(field "$out/checkpoint.json" 'd["timings"]["downtimeMs"]') ms, at a count between $before and $at"

wait_count $((at + 15))
"$bin/gcp-isolate" kill "$job" >/dev/null 2>&1
killed=$(value count)
started=$(value started)
say "killed the job at count $killed"

"$bin/gcp-restart" "$job" >"$out/restart.json" 2>"$out/restart.err" || die "restart failed: $(cat "$out/restart.err")"
say "restarted from checkpoint $seq (new host pid $(field "$out/restart.json" 'd["units"][0]["pid"]'))"
for _ in $(seq 1 100); do [ "$(value count)" != "$killed" ] && break; sleep 0.1; done
resumed=$(value count)
[ "$(value status)" = ok ] || die "the restored counter reports: $(tr '\n' ' ' <"$st")"
[ "$(value started)" = "$started" ] || die "the counter started over instead of continuing"
checks=$(value checks)
for _ in $(seq 1 300); do [ "$(value checks)" -gt "$checks" ] && break; sleep 0.1; done
[ "$(value checks)" -gt "$checks" ] && [ "$(value status)" = ok ] || die "the restored memory did not verify"
say "the restarted counter resumed at $resumed: it had reached $killed when killed, and was between $before and $at when checkpointed"
say "it continued from the checkpoint, not from 0, and its 64 MiB of memory verified after the restart"
"$bin/gcp-isolate" kill "$job" >/dev/null 2>&1
say "done; the job is stopped again, its checkpoints stay in $store/jobs/$job, the tools' JSON is in $out"
