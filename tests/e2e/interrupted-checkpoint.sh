#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# gcp-checkpoint is sent SIGTERM while the job is held for its dump: the signal waits until every
# unit is thawed, the tool then dies without committing, the job keeps running and the
# previous checkpoint stays the latest and restartable. Killed with SIGKILL while the job
# is frozen, killed with its whole cgroup (as a batch system ends a step), or hanging
# (SIGSTOP) past --max-frozen, its watchdog thaws the job.
source "$(dirname "$0")/lib.sh"
requires root criu freezer

st=$work/c.state
start_job interrupted main "$workloads/counter" "$st" 512
wait_for "the counter" 60 count_at_least "$st" 5
run_tool "$work/cp1.json" "$work/cp1.err" gcp-checkpoint interrupted || fail "first checkpoint failed: $(cat "$work/cp1.err")"

# A criu that waits 2 s once gcp has frozen the unit: SIGTERM arrives during the freeze.
slow_criu 2
frozen() { [ "$(freezer_state interrupted main)" = FROZEN ]; }
thawed() { [ "$(freezer_state interrupted main)" = THAWED ]; }
GCP_CRIU=$work/slow-criu "$bin/gcp-checkpoint" interrupted >"$work/cp2.json" 2>"$work/cp2.err" &
tool=$!
wait_for "gcp-checkpoint to freeze the job" 20 frozen
kill -TERM "$tool"
rc=0
wait "$tool" || rc=$?
[ "$rc" -eq 143 ] || fail "gcp-checkpoint ended with $rc, expected death by SIGTERM (143) once the job was thawed"
[ "$(freezer_state interrupted main)" = THAWED ] || fail "the job was left $(freezer_state interrupted main)"
[ ! -s "$work/cp2.json" ] || fail "an interrupted checkpoint printed a manifest"
c=$(state "$st" count)
wait_for "the counter to keep running" 20 count_at_least "$st" $((c + 5))
[ "$(ls "$GCP_STORE/jobs/interrupted/checkpoints")" = 1 ] || fail "checkpoints are now: $(ls "$GCP_STORE/jobs/interrupted/checkpoints")"
no_criu_left

# A criu that waits 30 s before it dumps keeps the unit frozen by gcp (and not yet seized
# by criu) long enough to kill gcp-checkpoint in the middle.
slow_criu

GCP_CRIU=$work/slow-criu "$bin/gcp-checkpoint" interrupted >"$work/cp3.json" 2>"$work/cp3.err" &
tool=$!
wait_for "gcp-checkpoint to freeze the job" 20 frozen
kill -KILL "$tool"
wait "$tool" 2>/dev/null || true
wait_for "the watchdog to thaw the job of a killed gcp-checkpoint" 10 thawed
c=$(state "$st" count)
wait_for "the counter to run on after gcp-checkpoint was killed" 20 count_at_least "$st" $((c + 5))

# A batch system ends a job step by killing every process of the step's cgroup: the
# tool and anything it started, its watchdog included unless that left the cgroup.
step=/sys/fs/cgroup/unified/gcp-test-step-$$
mkdir "$step"
GCP_CRIU=$work/slow-criu sh -c 'echo $$ > "$1/cgroup.procs"; exec "$2" interrupted' sh "$step" "$bin/gcp-checkpoint" \
  >"$work/cp5.json" 2>"$work/cp5.err" &
tool=$!
wait_for "gcp-checkpoint in its step to freeze the job" 20 frozen
echo 1 >"$step/cgroup.kill"
wait "$tool" 2>/dev/null || true
wait_for "the step's cgroup to empty" 10 bash -c "[ -z \"\$(cat $step/cgroup.procs)\" ]"
rmdir "$step"
wait_for "the watchdog, out of the killed step's cgroup, to thaw the job" 10 thawed
c=$(state "$st" count)
wait_for "the counter to run on after the step was killed" 20 count_at_least "$st" $((c + 5))

GCP_CRIU=$work/slow-criu "$bin/gcp-checkpoint" interrupted --max-frozen 2 >"$work/cp4.json" 2>"$work/cp4.err" &
tool=$!
wait_for "gcp-checkpoint to freeze the job again" 20 frozen
kill -STOP "$tool"
wait_for "the watchdog to thaw the job of a hanging gcp-checkpoint after 2 s" 15 thawed
c=$(state "$st" count)
wait_for "the counter to run on while gcp-checkpoint hangs" 20 count_at_least "$st" $((c + 5))
kill -KILL "$tool"
kill -CONT "$tool" 2>/dev/null || true
wait "$tool" 2>/dev/null || true
pkill -f "$work/slow-hook" 2>/dev/null || true
[ "$(ls "$GCP_STORE/jobs/interrupted/checkpoints")" = 1 ] || fail "checkpoints are now: $(ls "$GCP_STORE/jobs/interrupted/checkpoints")"

"$bin/gcp-isolate" kill interrupted >/dev/null
run_tool "$work/r.json" "$work/r.err" gcp-restart interrupted || fail "restart of checkpoint 1 failed: $(cat "$work/r.err")"
c=$(state "$st" count)
wait_for "the restored counter" 30 count_at_least "$st" $((c + 3))
expect_ok "$st"
say "SIGTERM during the freeze: job thawed first; SIGKILL, a killed cgroup and a hang: thawed by the watchdog; nothing committed, checkpoint 1 intact"
