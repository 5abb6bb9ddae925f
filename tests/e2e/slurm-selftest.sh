#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The Slurm cluster of scripts/slurm.sh on three test nodes: every node is idle; srun reaches
# each node (its own hostname); a batch job runs; a step started from outside a running job lands
# on the node it names although the job's own step holds that node's CPUs (the way gcp's srun
# launcher reaches a unit: srun --jobid=J -w NODE -N1 -n1 --overlap); srun works from inside a
# node too; 'down' leaves no daemon behind.
source "$(dirname "$0")/lib.sh"
requires root

nodes=$top/scripts/nodes.sh
slurm=$top/scripts/slurm.sh
[ ! -e /run/gcp-nodes/nodes ] || skip "test nodes are up already (scripts/nodes.sh down takes them down)"
on_exit "$nodes" down
on_exit "$slurm" down

"$nodes" up 3 "$work/store" || skip "the test nodes did not come up (scripts/nodes.sh up; log /run/gcp-nodes/nodes.log)"
t0=${EPOCHREALTIME/[.,]/}
"$slurm" up || skip "Slurm did not come up (scripts/slurm.sh up; log /run/gcp-nodes/slurm/slurm.log)"
up_ms=$(((${EPOCHREALTIME/[.,]/} - t0) / 1000))
"$slurm" status || fail "slurm.sh status fails right after up"
SLURM_CONF=$("$slurm" conf)
export SLURM_CONF
cfg=$("$nodes" ssh-config)

out=$(timeout 30 srun -N3 hostname | sort | tr '\n' ' ') || fail "srun -N3 hostname failed"
[ "$out" = "gcpn1 gcpn2 gcpn3 " ] || fail "srun -N3 hostname printed '$out'"
for i in 1 2 3; do
  out=$(timeout 30 srun -N1 -w "gcpn$i" sh -c 'echo $(hostname) $SLURMD_NODENAME') || fail "srun on gcpn$i failed"
  [ "$out" = "gcpn$i gcpn$i" ] || fail "srun -w gcpn$i ran on '$out'"
done

# A batch job runs on its first node and writes its output there.
job=$(sbatch --parsable -N2 -o "$work/batch-%j.out" --wrap hostname) || fail "sbatch failed"
wait_for "batch job $job to end" 30 bash -c "[ -z \"\$(squeue -h -j $job 2>/dev/null)\" ]"
batch_host=$(scontrol show job -o "$job" | sed -n 's/.* BatchHost=\([^ ]*\).*/\1/p')
[ -n "$batch_host" ] && [ "$(cat "$work/batch-$job.out" 2>/dev/null)" = "$batch_host" ] ||
  fail "batch job $job on '$batch_host' wrote '$(cat "$work/batch-$job.out" 2>/dev/null)'"

# A step into a running job whose own step holds every CPU it was given: only --overlap gets in.
job=$(sbatch --parsable -N2 -o /dev/null --wrap 'srun sleep 60') || fail "sbatch of the long job failed"
wait_for "the long job's step to run" 30 bash -c "squeue -h -s -j $job -o %i | grep -q '^$job\.0$'"
last=$(scontrol show hostnames "$(squeue -h -j "$job" -o %N)" | tail -n1)
out=$(timeout 30 srun --jobid="$job" -w "$last" -N1 -n1 --overlap hostname) || fail "srun --overlap into job $job failed"
[ "$out" = "$last" ] || fail "srun --jobid=$job -w $last ran on '$out'"
! timeout 3 srun --jobid="$job" -w "$last" -N1 -n1 hostname >/dev/null 2>&1 ||
  fail "a step without --overlap got into job $job although its CPUs are taken (the launcher's flags may be more than needed)"
# From inside a node (SLURM_CONF comes from the nodes' environment file).
out=$(ssh -F "$cfg" gcpn3 "srun --jobid=$job -w $last -N1 -n1 --overlap hostname") || fail "srun from gcpn3 failed"
[ "$out" = "$last" ] || fail "srun from gcpn3 ran on '$out'"
scancel "$job"

"$slurm" down || fail "slurm.sh down failed"
! "$slurm" status 2>/dev/null || fail "slurm.sh status succeeds after down"
for d in slurmctld slurmd munged; do
  for p in $(pgrep -x "$d" || true); do
    case $(readlink "/proc/$p/exe" 2>/dev/null; tr '\0' ' ' 2>/dev/null <"/proc/$p/cmdline") in
      *gcp-nodes*) fail "$d (pid $p) was left running" ;;
    esac
  done
done
say "Slurm up in $((up_ms / 1000)).$((up_ms % 1000 / 100)) s on 3 nodes; srun, sbatch and srun --jobid -w --overlap work"
