#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# A producer | consumer tree joined by a pipe, and a program that daemonizes itself
# (double fork), in one job: both survive checkpoint, kill and restart with no data
# lost or duplicated on the pipe (the consumer checks every sequence number).
source "$(dirname "$0")/lib.sh"
requires root criu freezer

p=$work/pipe.state d=$work/daemon.state
start_job pipes pipeline "$workloads/pipeline" "$p"
start_job pipes daemon "$workloads/daemon" "$d"
wait_for "the consumer to receive" 30 count_at_least "$p" 100000
wait_for "the daemon to count" 30 count_at_least "$d" 10
# The daemon's parent exited: gcp-init keeps the unit alive and adopted the daemon.
[ "$(cgroup_procs pipes daemon)" -ge 2 ] || fail "the daemonized unit has $(cgroup_procs pipes daemon) processes, expected init + daemon"
d_started=$(state "$d" started) p_started=$(state "$p" started)

run_tool "$work/cp.json" "$work/cp.err" gcp-checkpoint pipes || fail "checkpoint failed: $(cat "$work/cp.err")"
[ "$(json "$work/cp.json" 'len(d["units"])')" = 2 ] || fail "the checkpoint does not hold both units"
"$bin/gcp-isolate" kill pipes >/dev/null
p_killed=$(state "$p" count) d_killed=$(state "$d" count)

run_tool "$work/r.json" "$work/r.err" gcp-restart pipes || fail "restart failed: $(cat "$work/r.err")"
wait_for "the restored consumer to receive more" 30 count_at_least "$p" $((p_killed + 100000))
wait_for "the restored daemon to count on" 30 count_at_least "$d" $((d_killed + 5))
expect_ok "$p"
expect_ok "$d"
[ "$(state "$p" started)" = "$p_started" ] || fail "the pipeline started over"
[ "$(state "$d" started)" = "$d_started" ] || fail "the daemon started over"
say "pipe continued past sequence $p_killed with no gap or repeat; daemon continued"
