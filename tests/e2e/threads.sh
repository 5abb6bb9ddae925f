#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# A multithreaded workload keeps all its threads and their memory across a restart.
source "$(dirname "$0")/lib.sh"
requires root criu freezer

st=$work/threads.state
start_job threads main "$workloads/threads" "$st" 4
wait_for "the threads to run" 30 count_at_least "$st" 20
started=$(state "$st" started)
run_tool "$work/cp.json" "$work/cp.err" gcp-checkpoint threads --stop || fail "checkpoint failed: $(cat "$work/cp.err")"
killed=$(state "$st" count)
run_tool "$work/r.json" "$work/r.err" gcp-restart threads || fail "restart failed: $(cat "$work/r.err")"
wait_for "every restored thread to make progress" 30 count_at_least "$st" $((killed + 20))
expect_ok "$st"
[ "$(state "$st" tids)" = 5 ] || fail "restored process has $(state "$st" tids) tasks, expected 5"
[ "$(state "$st" started)" = "$started" ] || fail "the workload started over"
checks=$(state "$st" checks)
wait_for "full buffer checks in every thread" 30 checks_at_least "$st" $((checks + 1))
expect_ok "$st"
say "4 threads continued from count $killed"
