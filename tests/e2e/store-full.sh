#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# A store on a small tmpfs that fills up during a checkpoint: one clear error, the job
# keeps running, the previous checkpoint stays the latest and whole; once there is room
# again (and gc has run), checkpoints work.
source "$(dirname "$0")/lib.sh"
requires root criu freezer

small=$work/small
mkdir -p "$small"
mount -t tmpfs -o size=160m gcp-e2e-full "$small" || skip "cannot mount a tmpfs"
trap 'rc=$?; for j in "${jobs_started[@]}"; do "$bin/gcp-isolate" kill "$j" >/dev/null 2>&1 || true; done; umount -l "$small" 2>/dev/null || true; (exit $rc); cleanup' EXIT
export GCP_STORE=$small/store

st=$work/memhog.state
start_job full main "$workloads/memhog" "$st" 64 random
wait_for "memhog to fill its memory" 30 count_at_least "$st" 1
pid=$(json "$work/full.job.json" 'd["units"][0]["pid"]')
run_tool "$work/cp1.json" "$work/cp1.err" gcp-checkpoint full || fail "checkpoint 1 failed: $(cat "$work/cp1.err")"

# Leave 4 MiB free, then rewrite 3 x 5% of the 64 MiB (about 9 MiB of new chunks).
free_kib=$(df --output=avail -k "$small" | tail -n1)
fallocate -l $(((free_kib - 4096) * 1024)) "$small/filler" || fail "could not fill the tmpfs"
for g in 1 2 3; do
  kill -USR1 "$pid"
  wait_for "memhog to rewrite pages (generation $g)" 30 bash -c "[ \"\$(sed -n 's/^dirtied=//p' '$st')\" = $g ]"
done

expect_exit 1 gcp-checkpoint full
expect_stderr "No space left on device"
expect_stderr "hint: .*free space"
say "the error: $(grep error: "$work/last.err")"
[ "$(freezer_state full main)" = THAWED ] || fail "the job was left $(freezer_state full main)"
c=$(state "$st" count)
wait_for "the job to keep running" 10 count_at_least "$st" $((c + 3))
"$bin/gcp-store" ls full >"$work/ls.json" || fail "gcp-store ls failed"
[ "$(json "$work/ls.json" '[c["seq"] for c in d]')" = "[1]" ] || fail "checkpoints after the full disk: $(cat "$work/ls.json")"
"$bin/gcp-store" verify full >/dev/null || fail "checkpoint 1 does not verify after the full disk"
grep -q checkpoint-failed "$GCP_STORE/jobs/full/events.jsonl" || fail "the failure is not in events.jsonl"

# Room again: gc removes what the failed attempt left, and the next checkpoint commits.
rm -f "$small/filler"
run_tool "$work/gc.json" "$work/gc.err" gcp-store gc || fail "gc failed: $(cat "$work/gc.err")"
run_tool "$work/cp2.json" "$work/cp2.err" gcp-checkpoint full || fail "checkpoint after freeing space failed: $(cat "$work/cp2.err")"
[ "$(json "$work/cp2.json" 'd["seq"]')" -ge 2 ] || fail "no new checkpoint after freeing space"
"$bin/gcp-store" verify full >/dev/null || fail "the store does not verify"
say "a full store failed one checkpoint cleanly; the job ran on and checkpoint 1 stayed whole"
