#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Job A is checkpointed and killed; job B starts and holds the same in-namespace PIDs;
# A is restarted on the same node. Both run and both verify.
source "$(dirname "$0")/lib.sh"
requires root criu freezer

a=$work/a.state b=$work/b.state
start_job pid-a main "$workloads/counter" "$a" 16
wait_for "job A to count" 30 count_at_least "$a" 10
a_started=$(state "$a" started)
a_pid=$(state "$a" pid)
run_tool "$work/cp.json" "$work/cp.err" gcp-checkpoint pid-a --stop || fail "checkpoint --stop failed: $(cat "$work/cp.err")"
[ "$(cgroup_procs pid-a main)" -eq 0 ] || fail "--stop left job A running"

start_job pid-b main "$workloads/counter" "$b" 16
wait_for "job B to count" 30 count_at_least "$b" 5
[ "$(state "$b" pid)" = "$a_pid" ] || fail "job B's counter has pid $(state "$b" pid), not A's $a_pid: no conflict to test"

run_tool "$work/r.json" "$work/r.err" gcp-restart pid-a || fail "restart of A next to B failed: $(cat "$work/r.err")"
a_count=$(state "$a" count)
wait_for "restored job A to count" 20 count_at_least "$a" $((a_count + 3))
b_count=$(state "$b" count)
wait_for "job B to keep counting" 20 count_at_least "$b" $((b_count + 3))
expect_ok "$a"
expect_ok "$b"
[ "$(state "$a" pid)" = "$a_pid" ] && [ "$(state "$b" pid)" = "$a_pid" ] || fail "the two jobs do not share in-namespace PIDs"
[ "$(state "$a" started)" = "$a_started" ] || fail "job A started over instead of continuing"
a_checks=$(state "$a" checks)
wait_for "a full memory check of restored A" 30 checks_at_least "$a" $((a_checks + 1))
expect_ok "$a"
say "jobs A and B both run with in-namespace pid $a_pid"
