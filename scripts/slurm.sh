#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# A Slurm cluster on the test nodes of scripts/nodes.sh: slurmctld on the host (10.77.0.1), one
# slurmd per node inside that node's namespaces (NodeName=gcpnI), a munged of its own, one
# partition 'gcp' with every node.
#
#   scripts/slurm.sh up      needs the nodes up; installs slurmctld, slurmd, slurm-client and munge if missing
#   scripts/slurm.sh down    stops the daemons and removes the cluster's state
#   scripts/slurm.sh status  exit 0 when sinfo shows every node idle
#   scripts/slurm.sh conf    print the path of slurm.conf (clients need SLURM_CONF set to it)
#
# Commands run in a node (over ssh or 'nodes.sh exec') get SLURM_CONF from the nodes' environment
# file. Idempotent. Quiet on success; on failure one line on stderr naming the step and a log.
# Run as root.
#
# Why the controller runs on the host rather than in gcpn1: the host is the head node the tests
# drive, and a test that stops or re-creates a node (everything in a node's namespaces is killed
# then) does not take the controller with it.
set -euo pipefail

prog=slurm.sh
nodes_state=/run/gcp-nodes
state=$nodes_state/slurm
log=$state/slurm.log
die() { printf '%s: error: %s (log: %s)\n' "$prog" "$1" "$log" >&2; exit 1; }
set -o errtrace
trap 'die "unexpected failure of \"$BASH_COMMAND\" (line $LINENO)"' ERR
say() { printf '%s: %s\n' "$prog" "$*" >&2; }

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
nodes=$here/nodes.sh
conf=$state/slurm.conf
munge_dir=$state/munge
munge_sock=$munge_dir/munge.socket
node_env=$nodes_state/node-env
subnet=10.77.0
# Not Slurm's default ports (6817, 6818): another Slurm on this machine keeps its own.
ctld_port=6917
slurmd_port=6918
pkgs=(slurmctld slurmd slurm-client munge)

# The packages would start munged, slurmctld and slurmd with Debian's configuration; this
# script starts its own.
# shellcheck source=scripts/pkgs-lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/pkgs-lib.sh"
pid_of() { local p=''; read -r p 2>/dev/null <"$1" || true; echo "$p"; }

# stop PIDFILE NAME: SIGTERM, up to 5 s, then SIGKILL.
stop() {
  local pid t
  pid=$(pid_of "$1")
  if alive "$pid" "$2"; then
    kill "$pid" 2>/dev/null || true
    for ((t = 0; t < 50; t++)); do alive "$pid" "$2" || break; sleep 0.1; done
    if alive "$pid" "$2"; then kill -9 "$pid" 2>/dev/null || true; fi
  fi
  rm -f "$1"
}

lock() {
  [ "$(id -u)" -eq 0 ] || { printf '%s: error: must run as root\n' "$prog" >&2; exit 1; }
  exec 9>/run/gcp-slurm.lock
  flock -w 300 9 || { printf '%s: error: another %s has held /run/gcp-slurm.lock for 5 minutes\n' "$prog" "$prog" >&2; exit 1; }
}

node_count() { local n=''; read -r n 2>/dev/null <"$nodes_state/nodes" || true; echo "$n"; }

# Every node idle in sinfo (and as many nodes as the nodes script made).
all_idle() {
  local n=$1 out
  # One line per node: sinfo -N lists a node once per partition.
  out=$(SLURM_CONF=$conf timeout 10 sinfo -h -N -p gcp -o '%N %T' 2>/dev/null) || return 1
  [ "$(grep -c ' idle$' <<<"$out")" -eq "$n" ] && [ "$(wc -l <<<"$out")" -eq "$n" ]
}

write_conf() {
  local n=$1 host
  host=$(hostname -s)
  cat >"$conf.tmp" <<EOF
# Slurm cluster of the test nodes (scripts/slurm.sh); clients: export SLURM_CONF=$conf
ClusterName=gcptest
# slurmctld checks that this name is its host's.
SlurmctldHost=$host($subnet.1)
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$munge_sock
StateSaveLocation=$state/ctld
SlurmctldPidFile=$state/slurmctld.pid
SlurmctldLogFile=$state/slurmctld.log
SlurmdSpoolDir=$state/%n/spool
SlurmdPidFile=$state/%n/slurmd.pid
SlurmdLogFile=$state/%n/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
# Not proctrack/cgroup or task/cgroup: gcp puts each job unit into cgroups of its own
# (gcp/<job>/<unit>) and freezes them for a checkpoint; Slurm's cgroup plugins would put the same
# processes into Slurm's hierarchy, and the two would move them back and forth. linuxproc finds a
# step's processes by their parent chain in /proc (pgid would lose a unit that starts a session
# of its own, as gcp-isolate's do).
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SwitchType=switch/none
MailProg=/bin/true
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
# Every node offers 8 CPUs although the machine has fewer: several test jobs share a node.
SlurmdParameters=config_overrides
ReturnToService=2
SlurmctldTimeout=10
SlurmdTimeout=10
MessageTimeout=10
InactiveLimit=0
KillWait=2
Waittime=0
MinJobAge=300
NodeName=gcpn[1-$n] NodeAddr=$subnet.[11-$((10 + n))] CPUs=8 Boards=1 SocketsPerBoard=1 CoresPerSocket=8 ThreadsPerCore=1 RealMemory=1024 State=UNKNOWN
# Preemption (gcp-slurm(7)): a job of gcphigh that needs a node preempts the gcplow jobs on it;
# they get SIGTERM, GraceTime seconds to checkpoint, then are requeued. Jobs of gcp are never
# preempted.
PreemptType=preempt/partition_prio
PreemptMode=REQUEUE
# A preempted job whose batch script asked for a signal (--signal=B:USR1@T) gets it at once,
# not only T seconds before its time limit: without this, Slurm 22.05 signals nothing before
# the grace time is over (then SIGTERM, and SIGKILL KillWait seconds later).
SlurmctldParameters=preempt_send_user_signal
PartitionName=gcp Nodes=ALL Default=YES MaxTime=INFINITE State=UP PriorityTier=1 PreemptMode=OFF
PartitionName=gcplow Nodes=ALL MaxTime=INFINITE State=UP PriorityTier=1 PreemptMode=REQUEUE GraceTime=${GCP_SLURM_GRACE:-60}
PartitionName=gcphigh Nodes=ALL MaxTime=INFINITE State=UP PriorityTier=2 PreemptMode=OFF
EOF
  mv "$conf.tmp" "$conf"
}

start_munged() {
  alive "$(pid_of "$munge_dir/munged.pid")" munged && return 0
  # Directories on the socket's and the key's path must not be writable by others, and the
  # socket's directory must be searchable by all (munged checks both).
  mkdir -p "$munge_dir" && chmod 755 "$munge_dir"
  if [ ! -s "$munge_dir/munge.key" ]; then
    run mungekey --create --keyfile="$munge_dir/munge.key" || die "creating a munge key failed"
  fi
  run munged --socket="$munge_sock" --key-file="$munge_dir/munge.key" --pid-file="$munge_dir/munged.pid" \
    --log-file="$munge_dir/munged.log" --seed-file="$munge_dir/munged.seed" ||
    die "starting munged failed; see $munge_dir/munged.log"
}

start_slurmctld() {
  alive "$(pid_of "$state/slurmctld.pid")" slurmctld && return 0
  rm -rf "$state/ctld" && mkdir -p "$state/ctld"
  run slurmctld -f "$conf" || die "starting slurmctld failed; see $state/slurmctld.log"
}

start_slurmd() {
  local n=gcpn$1
  alive "$(pid_of "$state/$n/slurmd.pid")" slurmd && return 0
  mkdir -p "$state/$n/spool"
  run "$nodes" exec "$n" /usr/sbin/slurmd -f "$conf" -N "$n" || die "starting slurmd in $n failed; see $state/$n/slurmd.log"
}

# set_node_env [VALUE]: SLURM_CONF in the nodes' environment file (none without VALUE).
set_node_env() {
  [ -f "$node_env" ] || return 0
  { grep -v '^SLURM_CONF=' "$node_env" || true; if [ $# -gt 0 ]; then echo "SLURM_CONF=$1"; fi; } >"$node_env.tmp"
  mv "$node_env.tmp" "$node_env"
}

stop_all() {
  local d
  if [ -f "$conf" ] && alive "$(pid_of "$state/slurmctld.pid")" slurmctld; then
    # Jobs end first (their steps stop within KillWait), so no slurmstepd is left behind.
    local jobs t
    jobs=$(SLURM_CONF=$conf timeout 10 squeue -h -o %i 2>/dev/null | tr '\n' ' ') || jobs=
    if [ -n "${jobs// /}" ]; then
      # shellcheck disable=SC2086
      SLURM_CONF=$conf run timeout 10 scancel $jobs || true
      for ((t = 0; t < 100; t++)); do
        [ -z "$(SLURM_CONF=$conf timeout 10 squeue -h -o %i 2>/dev/null)" ] && break
        sleep 0.1
      done
    fi
  fi
  for d in "$state"/gcpn*/; do
    [ -d "$d" ] || continue
    stop "$d/slurmd.pid" slurmd
  done
  stop "$state/slurmctld.pid" slurmctld
  stop "$munge_dir/munged.pid" munged
}

up() {
  local n i t
  lock
  n=$(node_count)
  [ -n "$n" ] && "$nodes" status || {
    printf '%s: error: the test nodes are not up (run scripts/nodes.sh up N STOREDIR first)\n' "$prog" >&2
    exit 1
  }
  mkdir -p "$state"
  if [ -f "$conf" ] && all_idle "$n"; then return 0; fi
  : >>"$log"
  install_pkgs
  # A configuration for another number of nodes: start over.
  if [ -f "$conf" ] && ! grep -q "^NodeName=gcpn\[1-$n\] " "$conf"; then stop_all; fi
  write_conf "$n"
  start_munged
  start_slurmctld
  for ((i = 1; i <= n; i++)); do start_slurmd "$i"; done
  set_node_env "$conf"
  for ((t = 0; t < 300; t++)); do
    all_idle "$n" && return 0
    sleep 0.1
  done
  SLURM_CONF=$conf run sinfo -N || true
  die "not every node became idle within 30 s; see $state/slurmctld.log and $state/gcpnI/slurmd.log"
}

down() {
  lock
  [ -d "$state" ] || return 0
  stop_all
  set_node_env
  rm -rf "$state"
}

status() {
  local n
  n=$(node_count)
  [ -n "$n" ] && [ -f "$conf" ] && all_idle "$n" || exit 1
}

usage() {
  printf 'usage: %s up|down|status|conf\n' "$0" >&2
  exit 2
}

[ $# -eq 1 ] || usage
# The daemons start from here and must not keep a test's directory busy.
cd /
case $1 in
up) up ;;
down) down ;;
status) status ;;
conf) printf '%s\n' "$conf" ;;
*) usage ;;
esac
