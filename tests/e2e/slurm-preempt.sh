#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# gcp-slurm run in a batch script, on the Slurm cluster of scripts/slurm.sh (partition gcplow
# preemptable with REQUEUE, gcphigh preempting it, SlurmctldParameters=preempt_send_user_signal):
# - preemption: a gcphigh job that wants gcpn1 whole preempts the counter's batch job there; Slurm
#   sends it SIGUSR1 (--signal=B:USR1@...), gcp-slurm checkpoints and stops the job and requeues
#   it; started again (SLURM_RESTART_COUNT=1) on gcpn2, the only free node, it restarts the job
#   from that checkpoint: the counter goes on from where it was, with its memory;
# - time limit: a batch job with -t 1 and --signal=B:USR1@50 gets SIGUSR1 before its limit, is
#   checkpointed and requeued, and continues;
# - gcp-checkpoint --estimate says how long the job's checkpoints took;
# - scancel (SIGTERM) stops the job without a checkpoint and without a requeue.
# Slurm holds a requeued job for about two minutes (BeginTime); the test moves its start to now.
source "$(dirname "$0")/lib.sh"
requires root criu freezer python3

start_slurm 2

# requeued SLURMJOB COUNT: Slurm shows the job requeued (pending, or started again) COUNT times.
restarts() { scontrol show job "$1" 2>/dev/null | sed -n 's/.*Restarts=\([0-9]*\).*/\1/p'; }
requeued() { [ "$(restarts "$1")" = "$2" ]; }
running_on() { [ "$(squeue --noheader --jobs="$1" --format='%T %N' 2>/dev/null)" = "RUNNING $2" ]; }
log_has() { grep -q "$2" "$1"; }
gone() { [ -z "$(squeue --noheader --jobs="$1" 2>/dev/null)" ]; }
# start_now SLURMJOB: the requeued job, pending for its BeginTime, starts at once: 3 s after
# its requeue, not sooner. Slurm revokes the job's credential at the requeue, and a launch in
# the same second is refused ("Killing non-startable batch JobId=N: Job credential revoked":
# FAILED, exit code 1); its own two minutes of BeginTime never meet that. Asked again until it
# runs: an update made while the requeue settles is overwritten by it.
start_now() {
  local t pending=0
  for ((t = 0; t < 60; t++)); do
    case "$(squeue --noheader --jobs="$1" --format=%T 2>/dev/null)" in
      RUNNING) return 0 ;;
      PENDING)
        pending=$((pending + 1))
        [ "$pending" -lt 3 ] || scontrol update JobId="$1" StartTime=now 2>/dev/null || true
        ;;
    esac
    sleep 1
  done
  fail "requeued Slurm job $1 did not start within 60 s: $(scontrol show job "$1" | grep -E 'JobState|Restarts|Time=')" \
    "$(grep -h "job $1\|JobId=$1\|\[$1\." /run/gcp-nodes/slurm/*/slurmd.log /run/gcp-nodes/slurm/slurmctld.log | tail -n 12)"
}

# --- preemption -----------------------------------------------------------------------------
st=$work/p.state
cat >"$work/p.sh" <<EOF
#!/bin/bash
exec '$bin/gcp-slurm' run --job sp -- '$workloads/counter' '$st' 32
EOF
low=$(sbatch --parsable -p gcplow --requeue --signal=B:USR1@30 -o "$work/p.out" --open-mode=append "$work/p.sh") ||
  fail "sbatch of the low-priority job failed"
jobs_started+=(sp)
wait_for "the batch job's unit to count" 60 count_at_least "$st" 5
[ "$(json "$GCP_STORE/jobs/sp/job.json" 'd["units"][0]["node"]')" = gcpn1 ] ||
  fail "the unit does not run on gcpn1: $(cat "$work/p.out")"
started=$(state "$st" started)
high=$(sbatch --parsable -p gcphigh -w gcpn1 --exclusive -o /dev/null --wrap 'sleep 600') || fail "sbatch of the preemptor failed"
on_exit scancel "$high"
wait_for "Slurm to requeue the preempted job" 60 requeued "$low" 1
log_has "$work/p.out" "SIGUSR1: checkpointing job 'sp' and stopping it, then requeueing Slurm job $low" ||
  fail "gcp-slurm did not checkpoint on SIGUSR1: $(cat "$work/p.out")"
log_has "$work/p.out" "job 'sp' checkpointed and stopped" || fail "the checkpoint did not commit: $(cat "$work/p.out")"
at_stop=$(state "$st" count)
[ "$(cgroup_procs sp main)" -eq 0 ] || fail "the preempted job's unit still runs on gcpn1"
start_now "$low"
wait_for "the requeued job to start on gcpn2" 60 running_on "$low" gcpn2
wait_for "the requeued job to restart the unit" 60 log_has "$work/p.out" "job 'sp' restarted from checkpoint 1 on gcpn2"
[ "$(json "$GCP_STORE/jobs/sp/job.json" 'd["units"][0]["node"]')" = gcpn2 ] || fail "the restarted unit is not on gcpn2"
wait_for "the restarted counter to go on" 30 count_at_least "$st" $((at_stop + 5))
expect_ok "$st"
[ "$(state "$st" started)" = "$started" ] || fail "the counter started over after the preemption"
grep -q "started from the beginning\|starting it from the beginning" "$work/p.out" &&
  fail "gcp-slurm started the job over: $(cat "$work/p.out")"
say "ok: preempted at count $at_stop, requeued, restarted on gcpn2 from checkpoint 1 and counting on"

run_tool "$work/est.json" "$work/est.err" gcp-checkpoint --estimate sp || fail "gcp-checkpoint --estimate failed: $(cat "$work/est.err")"
python3 - "$work/est.json" <<'EOF' || fail "the estimate is not what the checkpoint took: $(cat "$work/est.json")"
import json, sys
d = json.load(open(sys.argv[1]))
assert d["job"] == "sp" and [r["seq"] for r in d["recent"]] == [1], d
assert 0 < d["maxS"] < 120 and d["advisedS"] == __import__("math").ceil(2 * d["maxS"] + 10), d
EOF
# Its unit killed, the batch job ends by itself.
"$bin/gcp-isolate" kill sp >/dev/null || fail "gcp-isolate kill sp failed"
wait_for "the batch job to end with its unit" 30 gone "$low"
log_has "$work/p.out" "job 'sp': every unit has exited" || fail "gcp-slurm did not see the unit end: $(cat "$work/p.out")"
scancel "$high"

# --- time limit -----------------------------------------------------------------------------
st=$work/t.state
cat >"$work/t.sh" <<EOF
#!/bin/bash
exec '$bin/gcp-slurm' run --job st -- '$workloads/counter' '$st' 16
EOF
tl=$(sbatch --parsable -p gcp -t 1 --requeue --signal=B:USR1@50 -w gcpn2 -o "$work/t.out" --open-mode=append "$work/t.sh") ||
  fail "sbatch of the time-limited job failed"
jobs_started+=(st)
wait_for "the time-limited job's unit to count" 60 count_at_least "$st" 3
started=$(state "$st" started)
wait_for "Slurm's signal ahead of the time limit, and the requeue" 90 requeued "$tl" 1
log_has "$work/t.out" "job 'st' checkpointed and stopped" || fail "no checkpoint ahead of the time limit: $(cat "$work/t.out")"
at_stop=$(state "$st" count)
start_now "$tl"
wait_for "the requeued job to restart the unit" 60 log_has "$work/t.out" "job 'st' restarted from checkpoint 1 on gcpn2"
wait_for "the restarted counter to go on" 30 count_at_least "$st" $((at_stop + 5))
expect_ok "$st"
[ "$(state "$st" started)" = "$started" ] || fail "the counter started over after its time limit"
say "ok: checkpointed ahead of its time limit at count $at_stop, requeued, restarted and counting on"

# --- scancel: the user ends the job (SIGTERM); it is stopped, not checkpointed, not requeued ---
checkpoints() { "$bin/gcp-store" ls st | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))'; }
n=$(checkpoints)
r=$(restarts "$tl")
scancel "$tl"
wait_for "the cancelled batch job to end" 30 gone "$tl"
log_has "$work/t.out" "SIGTERM (scancel, or Slurm ending job $tl without SIGUSR1 first): stopping job 'st' without a checkpoint" ||
  fail "gcp-slurm did not take scancel for a cancel: $(cat "$work/t.out")"
[ "$(restarts "$tl")" = "" ] || [ "$(restarts "$tl")" = "$r" ] || fail "the cancelled job was requeued"
[ "$(cgroup_procs st main)" -eq 0 ] || fail "the cancelled job's unit still runs"
[ "$(json "$GCP_STORE/jobs/st/job.json" 'len(d["units"])')" = 1 ] || fail "job st lost its unit"
[ "$(checkpoints)" = "$n" ] || fail "scancel made a checkpoint of job st"
say "ok: scancel stopped the job without a checkpoint or a requeue"
