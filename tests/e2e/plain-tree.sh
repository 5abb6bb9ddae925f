#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# A plain process tree that gcp did not start (no namespaces of its own), registered
# by a hand-written Job manifest with "grouping": "tree", is checkpointed, stopped and
# restarted with its original PIDs; the pipe between its processes loses nothing.
source "$(dirname "$0")/lib.sh"
requires root criu freezer python3

st=$work/tree.state
# Its own session, stdio and no other descriptors, as a batch system would start it.
# This script stays its parent and reaps it: a plain tree restores only with its own
# PIDs, so they must be free again once it is stopped.
(
  for fd in $(ls /proc/$BASHPID/fd); do [ "$fd" -gt 2 ] && eval "exec $fd>&-"; done
  exec setsid "$workloads/pipeline" "$st" </dev/null >"$work/tree.out" 2>&1
) &
root=$!
jobs_started+=(treejob)
wait_for "the pipeline to run" 20 count_at_least "$st" 50000
cg=/sys/fs/cgroup/freezer/gcp/treejob/main
mkdir -p "$cg"
for p in $(ps -o pid= -s "$root"); do echo "$p" >"$cg/cgroup.procs"; done
[ "$(cgroup_procs treejob main)" -eq 3 ] || fail "expected 3 processes of the tree in its cgroup, found $(cgroup_procs treejob main)"
mkdir -p "$GCP_STORE/jobs/treejob"
cat >"$GCP_STORE/jobs/treejob/job.json" <<JSON
{"apiVersion": "gcp/v1", "kind": "Job", "name": "treejob", "owner": {"uid": 0},
 "units": [{"name": "main", "node": "$(uname -n)", "grouping": "tree", "cgroup": "gcp/treejob/main",
            "pid": $root, "state": "running"}]}
JSON
started=$(state "$st" started)

run_tool "$work/cp.json" "$work/cp.err" gcp-checkpoint treejob --stop || fail "checkpoint failed: $(cat "$work/cp.err")"
[ "$(json "$work/cp.json" 'd["units"][0]["grouping"]')" = tree ] || fail "the checkpoint does not record grouping tree"
[ "$(cgroup_procs treejob main)" -eq 0 ] || fail "--stop left the tree running"
wait "$root" 2>/dev/null || true
[ ! -d "/proc/$root" ] || fail "the tree's root survived --stop"
killed=$(state "$st" count)

# The tree's children were orphaned by the kill and wait, as zombies, for this machine's
# PID 1 to reap them (it does so slowly); until then they hold the root's PID as their
# session id and CRIU cannot have it back.
session_gone() { [ -z "$(ps -o pid= -s "$root" 2>/dev/null)" ]; }
wait_for "PID 1 to reap the stopped tree" 60 session_gone
run_tool "$work/r.json" "$work/r.err" gcp-restart treejob || fail "restart failed: $(cat "$work/r.err")"
[ "$(json "$work/r.json" 'd["units"][0]["pid"]')" = "$root" ] || fail "a plain tree comes back with its own PIDs; got $(json "$work/r.json" 'd["units"][0]["pid"]'), not $root"
[ "$(cgroup_procs treejob main)" -eq 3 ] || fail "the restored tree is not in its cgroup ($(cgroup_procs treejob main) processes)"
wait_for "the restored consumer to receive more" 30 count_at_least "$st" $((killed + 50000))
expect_ok "$st"
[ "$(state "$st" started)" = "$started" ] || fail "the pipeline started over"
say "plain tree restored with root pid $root, pipe intact past $killed"
