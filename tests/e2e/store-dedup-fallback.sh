#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The chunk store with real CRIU images of a 1 GiB job that rewrites 5% of its memory
# between checkpoints: the second checkpoint stores at most 10% of the first's bytes;
# restart from either gives back the exact memory; a corrupt chunk is refused with a
# clear error and --fallback takes the earlier checkpoint; gcp-checkpoint killed with
# SIGKILL while storing leaves the job running, the previous checkpoint the latest and
# whole, and gc removes what it left.
source "$(dirname "$0")/lib.sh"
requires root criu freezer

st=$work/memhog.state
start_job hog main "$workloads/memhog" "$st" 1024 random
wait_for "memhog to fill 1 GiB" 60 count_at_least "$st" 1
pid=$(json "$work/hog.job.json" 'd["units"][0]["pid"]')

# verify_memory: asks memhog to verify and digest its memory; prints the digest
verify_memory() {
  local n
  n=$(state "$st" verified); n=${n:-0}
  kill -USR2 "$pid"
  wait_for "memhog to verify its memory" 60 bash -c "[ \"\$(sed -n 's/^verified=//p' '$st')\" -gt $n ] 2>/dev/null"
  expect_ok "$st"
  state "$st" digest
}

dirty() {
  local g
  g=$(state "$st" dirtied); g=${g:-0}
  kill -USR1 "$pid"
  wait_for "memhog to rewrite 5% of its pages" 30 bash -c "[ \"\$(sed -n 's/^dirtied=//p' '$st')\" -gt $g ] 2>/dev/null"
}

d1=$(verify_memory)
run_tool "$work/cp1.json" "$work/cp1.err" gcp-checkpoint hog || fail "checkpoint 1 failed: $(cat "$work/cp1.err")"
packs_after_1=$(ls "$GCP_STORE"/packs/0/*.pack)
dirty
d2=$(verify_memory)
[ "$d1" != "$d2" ] || fail "rewriting 5% of the pages did not change the digest"
run_tool "$work/cp2.json" "$work/cp2.err" gcp-checkpoint hog || fail "checkpoint 2 failed: $(cat "$work/cp2.err")"

raw1=$(json "$work/cp1.json" 'd["bytes"]["raw"]')
new1=$(json "$work/cp1.json" 'd["bytes"]["new"]')
raw2=$(json "$work/cp2.json" 'd["bytes"]["raw"]')
new2=$(json "$work/cp2.json" 'd["bytes"]["new"]')
stored2=$(json "$work/cp2.json" 'd["bytes"]["stored"]')
[ "$raw1" -ge $((1 << 30)) ] || fail "checkpoint 1 holds $raw1 bytes, less than 1 GiB"
[ "$new1" -ge $((raw1 * 9 / 10)) ] || fail "checkpoint 1 of random memory found $new1 of $raw1 bytes already stored"
[ $((new2 * 10)) -le "$raw1" ] || fail "checkpoint 2 wrote $new2 new bytes, more than 10% of checkpoint 1's $raw1"
[ "$stored2" -le $((raw1 / 10)) ] || fail "checkpoint 2 stored $stored2 bytes, more than 10% of $raw1"
say "checkpoint 1: $raw1 raw, $new1 new; checkpoint 2: $raw2 raw, $new2 new ($((new2 * 1000 / raw1))‰), $stored2 stored"

# restart_from ARGS...: kills the job, restarts it with ARGS and waits for memhog
restart_from() {
  "$bin/gcp-isolate" kill hog >/dev/null
  run_tool "$work/r.json" "$work/r.err" gcp-restart hog "$@" || fail "gcp-restart hog $* failed: $(cat "$work/r.err")"
  pid=$(json "$work/r.json" 'd["units"][0]["pid"]')
}

# A job of one unit is streamed to criu; --materialize reads it into scratch first.
restart_from --seq 1 -v
grep -q "restoring unit 'main', its images streamed from the store" "$work/r.err" ||
  fail "the restart of one unit was not streamed: $(cat "$work/r.err")"
[ "$(verify_memory)" = "$d1" ] || fail "memory restored from checkpoint 1 differs from what was dumped"
restart_from --seq 2 --materialize -v
grep -q "reading the images of unit 'main'" "$work/r.err" || fail "--materialize did not read the images first: $(cat "$work/r.err")"
! grep -q "streamed" "$work/r.err" || fail "--materialize streamed: $(cat "$work/r.err")"
[ "$(verify_memory)" = "$d2" ] || fail "memory restored from checkpoint 2 differs from what was dumped"
restart_from --seq 2
[ "$(verify_memory)" = "$d2" ] || fail "memory streamed from checkpoint 2 differs from what was dumped"

# A flipped byte in a pack that only checkpoint 2 uses: refused, 1 is offered.
"$bin/gcp-isolate" kill hog >/dev/null
victim=
for p in "$GCP_STORE"/packs/0/*.pack; do
  grep -qxF "$p" <<<"$packs_after_1" || victim=$p
done
[ -n "$victim" ] || fail "checkpoint 2 wrote no pack of its own"
cp "$victim" "$work/victim.pack"
size=$(stat -c %s "$victim")
printf '\xff\x00\xff' | dd of="$victim" bs=1 seek=$((size / 2)) conv=notrunc status=none
# Streamed: criu gets the pages up to the bad chunk, and its restore fails before the
# restored process runs. Materialized: nothing is restored at all.
for how in "" --materialize; do
  expect_exit 1 gcp-restart hog $how
  expect_stderr "checkpoint 2 of job 'hog', unit 'main', file 'pages-[0-9]*.img': chunk [0-9]* (.*) is \(corrupt\|unreadable\)"
  expect_stderr "hint: checkpoint 1 verifies: restart it with '--seq 1', or pass --fallback"
  [ "$(cgroup_procs hog main)" -eq 0 ] || fail "a refused restart ${how:-(streamed)} left processes"
  [ "$(grep -c '"restart-refused"' "$GCP_STORE/jobs/hog/events.jsonl")" -ge 1 ] || fail "no restart-refused event"
done
run_tool "$work/v.json" "$work/last.err" gcp-store verify hog --seq 2 && fail "verify of the damaged checkpoint passed"
expect_stderr "checkpoint 2 of job .hog.: unit .main.*is \\(corrupt\\|unreadable\\)"
run_tool "$work/r.json" "$work/r.err" gcp-restart hog --fallback || fail "restart --fallback failed: $(cat "$work/r.err")"
grep -q "restarted checkpoint 1, the newest that does" "$work/r.err" || fail "--fallback did not say what it took: $(cat "$work/r.err")"
[ "$(json "$work/r.json" 'd["units"][0]["restoredFrom"]')" = 1 ] || fail "--fallback did not restore checkpoint 1"
pid=$(json "$work/r.json" 'd["units"][0]["pid"]')
[ "$(verify_memory)" = "$d1" ] || fail "memory after --fallback differs from checkpoint 1"
cp "$work/victim.pack" "$victim"
"$bin/gcp-store" verify hog >/dev/null || fail "the store does not verify after the pack was repaired"

# SIGKILL while the images are being stored (the job is already thawed then).
"$bin/gcp-checkpoint" hog >"$work/cp3.json" 2>"$work/cp3.err" &
cpid=$!
wait_for "gcp-checkpoint to start writing a pack" 60 bash -c "ls '$GCP_STORE'/packs/0/.tmp-*.pack >/dev/null 2>&1"
kill -9 $cpid
wait $cpid 2>/dev/null || true
[ "$(freezer_state hog main)" = THAWED ] || fail "the job was left $(freezer_state hog main) by the killed checkpoint"
c=$(state "$st" count)
wait_for "the job to keep running" 10 count_at_least "$st" $((c + 3))
latest=$("$bin/gcp-store" ls hog | python3 -c 'import json,sys; print(json.load(sys.stdin)[-1]["seq"])')
[ "$latest" = 2 ] || fail "after the killed checkpoint the latest is $latest, not 2"
"$bin/gcp-store" verify hog --seq 2 >/dev/null || fail "checkpoint 2 does not verify after the killed checkpoint"
run_tool "$work/gc.json" "$work/gc.err" gcp-store gc || fail "gc failed: $(cat "$work/gc.err")"
removed=$(json "$work/gc.json" 'd["stagingRemoved"]')
[ "$removed" -ge 1 ] || fail "gc removed no staging after the killed checkpoint: $(cat "$work/gc.json")"
! ls "$GCP_STORE"/jobs/hog/staging/[0-9]* >/dev/null 2>&1 || fail "staging left after gc: $(ls "$GCP_STORE"/jobs/hog/staging)"
! ls "$GCP_STORE"/packs/0/.tmp-* >/dev/null 2>&1 || fail "temporary packs left after gc"
"$bin/gcp-store" verify hog >/dev/null || fail "the store does not verify after gc"
# And a checkpoint after all that works and restarts.
run_tool "$work/cp4.json" "$work/cp4.err" gcp-checkpoint hog || fail "checkpoint after gc failed: $(cat "$work/cp4.err")"
d4=$(verify_memory)
# On a terminal, reading 1 GiB back shows progress (bytes, MiB/s, time left) on stderr;
# GCP_PROGRESS_DELAY_MS=0 draws it at once (a warm page cache reads 1 GiB in under a second).
# (The images are 1 GiB of memory plus CRIU's other files and log: 1025-1026 MiB.)
"$bin/gcp-isolate" kill hog >/dev/null
script -qec "GCP_PROGRESS_DELAY_MS=0 '$bin/gcp-restart' hog >'$work/r.json'" "$work/restart.tty" >/dev/null ||
  fail "restart on a terminal failed: $(cat "$work/restart.tty")"
grep -q "reading unit 'main' of checkpoint 4 of job 'hog': [0-9]* of 102[4-9] MiB, [0-9]* MiB/s, [0-9]* s left" "$work/restart.tty" ||
  fail "no progress line on the terminal: $(tr '\r' '\n' <"$work/restart.tty")"
pid=$(json "$work/r.json" 'd["units"][0]["pid"]')
[ "$(verify_memory)" = "$d4" ] || fail "memory restored from the last checkpoint differs"
say "dedup, verified restarts, fallback, SIGKILL during store and gc all held"
