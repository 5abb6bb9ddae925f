#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The srun launcher, on the Slurm cluster of scripts/slurm.sh over three test nodes: a batch
# job (sbatch -N2) starts a unit on its first node with gcp-isolate run --launcher srun, which
# records the allocation; gcp-migrate, run from the head node, reaches both nodes through srun
# steps into that allocation, moves the unit to the job's second node, and the unit counts on
# there with its memory, after the steps have ended. The batch job's time limit (-t) is the
# job's checkpoint deadline (its last checkpoint lands before it).
source "$(dirname "$0")/lib.sh"
requires root criu freezer python3

start_slurm 3
# The ssh launcher of $GCP_CONFIG must not be what reaches the nodes here.
printf '{}\n' >"$GCP_CONFIG"

st=$work/sj.state
batch=$(sbatch --parsable -N2 -t 30 -w gcpn1,gcpn2 -o "$work/batch.out" \
  --wrap "'$bin/gcp-isolate' run --job sj --unit main --launcher srun -- '$workloads/counter' '$st' 32 && sleep 600") ||
  fail "sbatch failed"
jobs_started+=(sj)
wait_for "the unit started by the batch job to count" 60 count_at_least "$st" 5
[ "$(json "$GCP_STORE/jobs/sj/job.json" 'd["units"][0]["node"]')" = gcpn1 ] || fail "the unit does not run on gcpn1: $(cat "$work/batch.out")"
[ "$(json "$GCP_STORE/jobs/sj/job.json" 'd["launcher"]')" = "{'kind': 'srun', 'slurmJob': '$batch'}" ] ||
  fail "the Job manifest's launcher is $(json "$GCP_STORE/jobs/sj/job.json" 'd.get("launcher")'), not srun in allocation $batch"
started=$(state "$st" started)
end=$(squeue --noheader --jobs="$batch" --format=%e)
deadline=$(json "$GCP_STORE/jobs/sj/job.json" 'd["policy"]["checkpoint"]["deadline"]')
[ "$(date -d "$deadline" +%s)" = "$(date -d "$end" +%s)" ] ||
  fail "the job's deadline is $deadline, not the batch job's end $end"
[ "$(json "$GCP_STORE/jobs/sj/job.json" 'd["policy"]["checkpoint"]["deadlineFrom"]')" = "slurm job $batch" ] ||
  fail "the Job manifest does not say where its deadline came from"

run_tool "$work/mv.json" "$work/mv.err" gcp-migrate sj --to gcpn2 || fail "gcp-migrate through srun failed: $(cat "$work/mv.err")"
[ "$(json "$work/mv.json" '(d["units"][0]["node"], d["units"][0]["state"])')" = "('gcpn2', 'running')" ] ||
  fail "the unit is not recorded running on gcpn2"
c=$(state "$st" count)
wait_for "the moved unit to count on gcpn2" 30 count_at_least "$st" $((c + 5))
sleep 3  # every step of the move has ended: the unit must outlive them
c=$(state "$st" count)
wait_for "the moved unit to go on counting after the steps ended" 30 count_at_least "$st" $((c + 5))
expect_ok "$st"
[ "$(state "$st" started)" = "$started" ] || fail "the moved unit started over"
[ "$(cgroup_procs sj main)" -eq 0 ] || fail "the source on gcpn1 still has processes"
say "ok: a unit of batch job $batch moved from gcpn1 to gcpn2 through srun steps and counts on"
