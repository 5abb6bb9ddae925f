#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The job is frozen while CRIU dumps it, not while CRIU starts up (its gate, see
# gcp-translib(7)): with a criu that takes 3 s to start, both units of a job run on through
# those 3 s and the downtime stays short; with GCP_DUMP_GATE=0 (freeze first) the same
# start-up is downtime. gcp-checkpoint killed while one unit's CRIU waits at its gate (with
# a child that stopped itself, as CRIU's kernel probes do) and the other's still starts: both
# end with everything they started (criu-reaper), nothing was ever frozen, gc leaves
# nothing. A translib failing before its gate (bad GCP_CRIU_LOG_LEVEL) fails the checkpoint
# the same way.
source "$(dirname "$0")/lib.sh"
requires root criu freezer python3

sa=$work/a.state sb=$work/b.state
start_job gated a "$workloads/counter" "$sa" 32
start_job gated b "$workloads/counter" "$sb" 32
wait_for "both counters" 60 bash -c "$(declare -f state count_at_least); count_at_least '$sa' 3 && count_at_least '$sb' 3"
"$bin/gcp-isolate" status gated >"$work/status.json" || fail "gcp-isolate status failed"
pid_a=$(json "$work/status.json" '[u["pid"] for u in d["units"] if u["name"] == "a"][0]')
pid_b=$(json "$work/status.json" '[u["pid"] for u in d["units"] if u["name"] == "b"][0]')

real=${GCP_CRIU:-$(command -v criu || echo /usr/local/sbin/criu)}
cat >"$work/late-criu" <<SH
#!/bin/sh
[ "\$1" = dump ] && sleep 3
exec "$real" "\$@"
SH
chmod +x "$work/late-criu"
thawed_both() { [ "$(freezer_state gated a)" = THAWED ] && [ "$(freezer_state gated b)" = THAWED ]; }

# Gated: while the criu processes start, both units run.
GCP_CRIU=$work/late-criu "$bin/gcp-checkpoint" gated >"$work/cp1.json" 2>"$work/cp1.err" &
tool=$!
sleep 1
ca=$(state "$sa" count) cb=$(state "$sb" count)
sleep 1.5
thawed_both || fail "a unit was frozen while its criu was starting: a $(freezer_state gated a), b $(freezer_state gated b)"
count_at_least "$sa" $((ca + 1)) && count_at_least "$sb" $((cb + 1)) || fail "a counter stood still while criu was starting"
wait "$tool" || fail "the gated checkpoint failed: $(cat "$work/cp1.err")"
down=$(json "$work/cp1.json" 'd["timings"]["downtimeMs"]')
start=$(json "$work/cp1.json" 'd["timings"]["checkpointerStartMs"]')
python3 -c "import sys; sys.exit(not ($down < 2000 and $start >= 3000))" ||
  fail "gated: downtime $down ms, checkpointer start $start ms (expected the 3 s start outside the downtime)"
say "gated: checkpointer start $start ms while the job ran, downtime $down ms"

# Not gated: the start-up is downtime.
GCP_DUMP_GATE=0 GCP_CRIU=$work/late-criu run_tool "$work/cp2.json" "$work/cp2.err" gcp-checkpoint gated ||
  fail "the checkpoint without gates failed: $(cat "$work/cp2.err")"
down=$(json "$work/cp2.json" 'd["timings"]["downtimeMs"]')
python3 -c "import sys; sys.exit(not ($down >= 3000))" || fail "without gates: downtime $down ms, expected the 3 s start in it"
[ "$(json "$work/cp2.json" 'd["timings"].get("checkpointerStartMs")')" = None ] || fail "without gates the manifest names a checkpointer start"
say "freeze first (GCP_DUMP_GATE=0): downtime $down ms"

# Killed while unit a's criu waits at its gate and unit b's criu still starts. Unit a's
# criu has a child that stopped itself: killed with criu, CRIU's kernel probes can leave
# such a child stopped for ever (a ptrace stop turns into a group stop once criu is gone).
# In a session of its own, the kernel's SIGHUP and SIGCONT to an orphaned process group
# do not reach it either: only criu-reaper ends it.
cat >"$work/stalling-criu" <<SH
#!/bin/sh
case " \$* " in *" -t $pid_b "*) exec sleep 29.9 ;; esac
[ "\$1" = dump ] && setsid sh -c 'echo \$\$ >"\$1"; kill -STOP \$\$' sh "$work/probe.pid" </dev/null >/dev/null 2>&1 &
exec "$real" "\$@"
SH
chmod +x "$work/stalling-criu"
GCP_CRIU=$work/stalling-criu "$bin/gcp-checkpoint" gated >"$work/cp3.json" 2>"$work/cp3.err" &
tool=$!
# The gate process itself: criu's own command line names criu-gate from its start, while
# CRIU still probes the kernel.
at_gate() { pgrep -x criu-gate >/dev/null; }
wait_for "unit a's criu to wait at its gate" 20 at_gate
thawed_both || fail "a unit was frozen before every criu was at its gate"
probe_stopped() { [ -s "$work/probe.pid" ] && ps -o stat= -p "$(cat "$work/probe.pid")" | grep -q '^T'; }
wait_for "unit a's criu's child to stop itself" 10 probe_stopped
kill -KILL "$tool"
wait "$tool" 2>/dev/null || true
# Left: "PID STAT ARGS" of unit a's criu, its stopped child and unit b's "criu", while they run.
left() {
  live_criu
  ps -o pid=,stat=,args= -p "$(cat "$work/probe.pid")" | grep -v ' Z' || true
  pgrep -a -f "^sleep 29.9$" || true
}
deadline=$((SECONDS + 10))
until [ -z "$(left)" ]; do
  [ $SECONDS -lt $deadline ] || fail "left running 10 s after gcp-checkpoint's end: $(left)"
  sleep 0.1
done
thawed_both || fail "a unit was left $(freezer_state gated a)/$(freezer_state gated b)"
ca=$(state "$sa" count) cb=$(state "$sb" count)
wait_for "both counters to run on" 20 bash -c "$(declare -f state count_at_least); count_at_least '$sa' $((ca + 2)) && count_at_least '$sb' $((cb + 2))"
[ "$(ls "$GCP_STORE/jobs/gated/checkpoints")" = "$(printf '1\n2')" ] || fail "checkpoints are now: $(ls "$GCP_STORE/jobs/gated/checkpoints")"
run_tool "$work/gc.json" "$work/gc.err" gcp-store gc || fail "gc failed: $(cat "$work/gc.err")"
[ -z "$(ls "$GCP_STORE/jobs/gated/staging" 2>/dev/null | grep -v '\.lock$')" ] || fail "gc left the staging: $(ls "$GCP_STORE/jobs/gated/staging")"
say "killed at the gate: both criu ended with all they had started, nothing frozen, nothing committed, gc cleaned up"

# A translib that fails before its gate (a bad CRIU log level): one error line, nothing
# frozen, nothing committed, no criu left.
GCP_CRIU_LOG_LEVEL=9 expect_exit 1 gcp-checkpoint gated
expect_stderr "bad GCP_CRIU_LOG_LEVEL '9': not one of 0 to 4"
thawed_both || fail "a unit was left $(freezer_state gated a)/$(freezer_state gated b)"
[ "$(ls "$GCP_STORE/jobs/gated/checkpoints")" = "$(printf '1\n2')" ] || fail "checkpoints are now: $(ls "$GCP_STORE/jobs/gated/checkpoints")"
no_criu_left

# The gated checkpoint restores: both counters continue.
"$bin/gcp-isolate" kill gated >/dev/null
run_tool "$work/r.json" "$work/r.err" gcp-restart gated --seq 1 || fail "restart of the gated checkpoint failed: $(cat "$work/r.err")"
ca=$(state "$sa" count) cb=$(state "$sb" count)
wait_for "both restored counters" 30 bash -c "$(declare -f state count_at_least); count_at_least '$sa' $((ca + 2)) && count_at_least '$sb' $((cb + 2))"
expect_ok "$sa"
expect_ok "$sb"
say "restarted from the gated checkpoint"
