#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# A counter with 256 MiB of patterned memory is checkpointed, killed and restarted:
# it continues from its count (not from the start) and its memory verifies.
source "$(dirname "$0")/lib.sh"
requires root criu freezer

st=$work/counter.state
start_job counter main "$workloads/counter" "$st" 256
wait_for "the counter to count" 30 count_at_least "$st" 20
started=$(state "$st" started)
checksum=$(state "$st" checksum)
before=$(state "$st" count)

run_tool "$work/cp.json" "$work/cp.err" gcp-checkpoint counter || fail "checkpoint failed: $(cat "$work/cp.err")"
[ "$(json "$work/cp.json" 'd["kind"]')" = Checkpoint ] || fail "no Checkpoint manifest on stdout"
[ "$(json "$work/cp.json" 'd["seq"]')" = 1 ] || fail "first checkpoint is not seq 1"
[ "$(freezer_state counter main)" = THAWED ] || fail "the job was left $(freezer_state counter main) after the checkpoint"
pages=$(json "$work/cp.json" 'd["units"][0]["stats"]["pagesWritten"]')
[ "$pages" -ge 65536 ] || fail "criu wrote $pages pages, fewer than the 256 MiB workload has"
raw=$(json "$work/cp.json" 'd["bytes"]["raw"]')
[ "$raw" -ge $((256 << 20)) ] || fail "checkpoint holds $raw bytes, less than 256 MiB"

# Still running after the checkpoint, then killed.
wait_for "the counter to keep counting after the checkpoint" 10 count_at_least "$st" $((before + 5))
"$bin/gcp-isolate" kill counter >/dev/null
[ "$(cgroup_procs counter main)" -eq 0 ] || fail "processes left after kill"
killed_at=$(state "$st" count)

run_tool "$work/r.json" "$work/r.err" gcp-restart counter || fail "restart failed: $(cat "$work/r.err")"
[ "$(json "$work/r.json" 'd["units"][0]["restoredFrom"]')" = 1 ] || fail "restart does not say restoredFrom 1"
newpid=$(json "$work/r.json" 'd["units"][0]["pid"]')
[ -d "/proc/$newpid" ] || fail "restarted unit's host pid $newpid does not exist"

expect_counter_resumed "$st" "$started" "$checksum" "$before" "$killed_at"
say "count before checkpoint $before, after restart $after; memory verified"
