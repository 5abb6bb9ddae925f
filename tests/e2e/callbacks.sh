#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Application callbacks (gcp-callbacks(7)) with real CRIU: a job of two units, one that
# listens through gcp/callbacks.h and one unchanged program with hook executables, gets
# pre-checkpoint, post-checkpoint and post-restart in order, with the results and
# timings in the Checkpoint manifest. A handler that never answers and one that answers
# an error abort the checkpoint: exit 1, the job thawed and running, abort delivered,
# the application's message in the error line, no checkpoint committed. SIGTERM while gcp
# waits for pre-checkpoint takes effect only after abort was delivered.
source "$(dirname "$0")/lib.sh"
requires root criu freezer python3

tag=$$
app_log=$work/app.log hook_log=$work/hooks.log hooks=$work/hooks
mkdir -m 0755 "$hooks"
for h in 20-second 10-first; do
  printf '#!/bin/sh\necho "$GCP_EVENT $GCP_SEQ $GCP_JOB $GCP_UNIT %s $GCP_DEADLINE_MS" >> %s\n' "$h" "$hook_log" >"$hooks/$h"
  chmod 0755 "$hooks/$h"
done
printf '#!/bin/sh\necho never\n' >"$hooks/30-not-executable"; chmod 0644 "$hooks/30-not-executable"

# 1. Every event in order, through the client API and through hooks.
job=cb-events-$tag
start_job "$job" app "$workloads/callback-app" "$work/app.state" "$app_log" ok
jobs_started+=("$job")
"$bin/gcp-isolate" run --job "$job" --unit plain --hooks "$hooks" -- bash -c 'while :; do sleep 0.1; done' \
  >"$work/plain.json" || fail "gcp-isolate run --hooks failed"
[ "$(json "$work/plain.json" 'd["units"][1]["callbacks"]["hooks"]')" = "$hooks" ] || fail "the Job manifest lacks the unit's hooks"
wait_for "the application" 10 count_at_least "$work/app.state" 3
run_tool "$work/cp.json" "$work/cp.err" gcp-checkpoint "$job" || fail "checkpoint failed: $(cat "$work/cp.err")"
[ "$(json "$work/cp.json" '[u["callbacks"] for u in d["units"]]')" = "['socket', 'hooks']" ] ||
  fail "callback forms in the manifest: $(json "$work/cp.json" '[u.get("callbacks") for u in d["units"]]')"
json "$work/cp.json" 'all(isinstance(u["timings"]["callbacks"][e], float) for u in d["units"] for e in ("pre-checkpoint","post-checkpoint"))' |
  grep -qx True || fail "no per-event callback timings: $(json "$work/cp.json" '[u["timings"] for u in d["units"]]')"
json "$work/cp.json" '"preCheckpointMs" in d["timings"] and "postCheckpointMs" in d["timings"]' | grep -qx True ||
  fail "no callback timings of the round"
"$bin/gcp-store" show "$job" >"$work/stored.json"
[ "$(json "$work/stored.json" 'd["units"][0]["timings"]["callbacks"]["pre-checkpoint"] >= 0')" = True ] ||
  fail "the committed manifest lacks the callback timings"

"$bin/gcp-isolate" kill "$job" >/dev/null
run_tool "$work/r.json" "$work/r.err" gcp-restart "$job" || fail "restart failed: $(cat "$work/r.err")"
wait_for "post-restart at the application" 10 grep -q '^post-restart' "$app_log"
printf 'pre-checkpoint 1 %s app\npost-checkpoint 1 %s app\npost-restart 1 %s app\n' "$job" "$job" "$job" >"$work/want.app"
diff "$work/want.app" "$app_log" >&2 || fail "the application got other events than pre-checkpoint, post-checkpoint, post-restart"
for e in pre-checkpoint post-checkpoint post-restart; do
  for h in 10-first 20-second; do echo "$e 1 $job plain $h"; done
done >"$work/want.hooks"
cut -d' ' -f1-5 "$hook_log" | diff "$work/want.hooks" - >&2 || fail "the hooks ran in another order or for other events"
awk '$6 < 1 || $6 > 10000 { exit 1 }' "$hook_log" || fail "a hook got no deadline: $(cat "$hook_log")"
grep '"event":"restart"' "$GCP_STORE/jobs/$job/events.jsonl" | grep -q '"callbacks":{"app":{"via":"socket"' ||
  fail "the restart event lacks the post-restart results"
c=$(state "$work/app.state" count)
wait_for "the restored application to go on" 10 count_at_least "$work/app.state" $((c + 3))
"$bin/gcp-isolate" kill "$job" >/dev/null

# 2. A handler that never answers: aborted at the deadline, thawed, running, abort delivered.
job=cb-hang-$tag
start_job "$job" main "$workloads/callback-app" "$work/hang.state" "$work/hang.log" hang
wait_for "the application" 10 count_at_least "$work/hang.state" 3
t0=$(date +%s%N)
expect_exit 1 gcp-checkpoint "$job" --callback-timeout 1000
took=$((($(date +%s%N) - t0) / 1000000))
expect_stderr "checkpoint of job '$job' aborted: unit 'main': no answer to pre-checkpoint within its deadline of 1000 ms"
expect_stderr "hint: the job keeps running and was told to resume (abort)"
[ "$took" -ge 1000 ] || fail "gcp-checkpoint gave up after $took ms, before the deadline"
[ "$(freezer_state "$job" main)" = THAWED ] || fail "unit left $(freezer_state "$job" main)"
wait_for "abort at the application" 10 grep -q "^abort 1 $job main" "$work/hang.log"
c=$(state "$work/hang.state" count)
wait_for "the application to keep running" 10 count_at_least "$work/hang.state" $((c + 3))
[ -z "$(ls -A "$GCP_STORE/jobs/$job/checkpoints" 2>/dev/null)" ] || fail "a checkpoint was committed: $(ls "$GCP_STORE/jobs/$job/checkpoints")"
[ -z "$(ls -A "$GCP_STORE/jobs/$job/staging" 2>/dev/null)" ] || fail "staging left behind"
grep -q '"event":"checkpoint-failed"' "$GCP_STORE/jobs/$job/events.jsonl" || fail "no checkpoint-failed event"

# SIGTERM (or Ctrl-C) while gcp waits for pre-checkpoint is held until abort was delivered.
"$bin/gcp-checkpoint" "$job" --callback-timeout 2000 >/dev/null 2>"$work/int.err" &
cp_pid=$!
wait_for "the second pre-checkpoint" 10 bash -c "[ \$(grep -c '^pre-checkpoint' '$work/hang.log') -ge 2 ]"
kill -TERM $cp_pid
rc=0; wait $cp_pid || rc=$?
[ "$rc" -eq 143 ] || fail "gcp-checkpoint interrupted during pre-checkpoint exited $rc, expected death by SIGTERM (143)"
[ "$(grep -c "^abort" "$work/hang.log")" -ge 2 ] || fail "no abort after the interrupted round: $(cat "$work/hang.log")"
[ "$(freezer_state "$job" main)" = THAWED ] || fail "unit left $(freezer_state "$job" main)"

# 3. A handler that answers an error: its message in gcp's error line; the rest as above.
job=cb-error-$tag
start_job "$job" main "$workloads/callback-app" "$work/err.state" "$work/err.log" "error:queue 7 \"cannot\" drain"
wait_for "the application" 10 count_at_least "$work/err.state" 3
expect_exit 1 gcp-checkpoint "$job"
expect_stderr "checkpoint of job '$job' aborted: unit 'main': the application answered pre-checkpoint with an error: queue 7 \"cannot\" drain"
[ "$(freezer_state "$job" main)" = THAWED ] || fail "unit left $(freezer_state "$job" main)"
printf 'pre-checkpoint 1 %s main\nabort 1 %s main\n' "$job" "$job" | diff - "$work/err.log" >&2 || fail "events after an error answer"
c=$(state "$work/err.state" count)
wait_for "the application to keep running" 10 count_at_least "$work/err.state" $((c + 3))
[ -z "$(ls -A "$GCP_STORE/jobs/$job/checkpoints" 2>/dev/null)" ] || fail "a checkpoint was committed"

# 4. A failing hook: its last stderr line in the error line.
job=cb-hookfail-$tag bad=$work/bad-hooks
mkdir -m 0755 "$bad"
printf '#!/bin/sh\necho "some noise" >&2\necho "license server unreachable" >&2\nexit 3\n' >"$bad/10-check"
chmod 0755 "$bad/10-check"
jobs_started+=("$job")
"$bin/gcp-isolate" run --job "$job" --unit main --hooks "$bad" -- sleep 600 >/dev/null || fail "gcp-isolate run failed"
expect_exit 1 gcp-checkpoint "$job"
expect_stderr "unit 'main': hook '$bad/10-check' failed (exit status 3): license server unreachable"
[ "$(cgroup_procs "$job" main)" -ge 1 ] || fail "the unit is gone"

# 5. Bad input: a hooks directory others may write to is refused before anything starts.
chmod 0777 "$bad"
expect_exit 2 gcp-isolate run --job "cb-badhooks-$tag" --hooks "$bad" -- sleep 1
expect_stderr "hooks directory '$bad' may be written by others"
[ ! -e "$GCP_STORE/jobs/cb-badhooks-$tag" ] || fail "a refused job was left in the store"
say "events in order through socket and hooks; never-answering, error and failing-hook rounds aborted, job running"
