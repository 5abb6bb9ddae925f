#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The store on a real shared file system: GlusterFS (one brick on loopback, FUSE), brought
# up by scripts/gluster.sh and torn down after. A job is checkpointed twice into it, killed
# and restarted from it; the store verifies and gc runs on it. (The job's own state file
# stays on local disk: it writes it as temp + rename, and a dump that catches the temp file
# open cannot be restored once it has been renamed; FUSE widens that window. Files are not
# part of a checkpoint: see gcp-criu(7).)
source "$(dirname "$0")/lib.sh"
requires root criu freezer

mnt=$work/gluster
"$top/scripts/gluster.sh" up "$mnt" || skip "GlusterFS did not come up (scripts/gluster.sh up)"
on_exit "$top/scripts/gluster.sh" down "$mnt"
export GCP_STORE=$mnt/store

st=$work/counter.state
start_job shared main "$workloads/counter" "$st" 128
wait_for "the counter to count" 30 count_at_least "$st" 10
started=$(state "$st" started)
checksum=$(state "$st" checksum)
run_tool "$work/cp1.json" "$work/cp1.err" gcp-checkpoint shared || fail "checkpoint 1 on GlusterFS failed: $(cat "$work/cp1.err")"
wait_for "the counter to go on" 10 count_at_least "$st" $(($(state "$st" count) + 5))
before=$(state "$st" count)
run_tool "$work/cp2.json" "$work/cp2.err" gcp-checkpoint shared || fail "checkpoint 2 on GlusterFS failed: $(cat "$work/cp2.err")"
raw=$(json "$work/cp2.json" 'd["bytes"]["raw"]')
new=$(json "$work/cp2.json" 'd["bytes"]["new"]')
[ $((new * 10)) -le "$raw" ] || fail "checkpoint 2 on GlusterFS stored $new new bytes of $raw"

"$bin/gcp-isolate" kill shared >/dev/null
killed_at=$(state "$st" count)
run_tool "$work/r.json" "$work/r.err" gcp-restart shared || fail "restart from GlusterFS failed: $(cat "$work/r.err")"
expect_counter_resumed "$st" "$started" "$checksum" "$before" "$killed_at"

"$bin/gcp-store" verify shared >/dev/null || fail "the store on GlusterFS does not verify"
"$bin/gcp-store" rm shared --seq 1 >/dev/null || fail "gcp-store rm on GlusterFS failed"
run_tool "$work/gc.json" "$work/gc.err" gcp-store gc || fail "gc on GlusterFS failed: $(cat "$work/gc.err")"
"$bin/gcp-store" verify shared >/dev/null || fail "the store on GlusterFS does not verify after gc"
say "checkpoints on GlusterFS: $raw bytes raw, second one $new new; restart from it continued at $after"
