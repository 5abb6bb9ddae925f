#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Failure injection: a 2-unit job runs for a few minutes under gcp-checkpoint --if-due and
# gcp-restart --if-failed, both run every second at once by a loop (a cron stand-in),
# while the init of one of its units, chosen from a seeded trace, is killed at seeded
# random times. Every restart takes the latest checkpoint (the job never starts over:
# each counter keeps its start stamp and its memory verifies), the work lost per failure
# is within one interval (plus the loop's tick and a checkpoint's time), every kill is
# counted once, and the job runs at the end. SEED and SECONDS_TO_RUN change the run.
source "$(dirname "$0")/lib.sh"
requires root criu freezer python3

seed=${SEED:-18}
run_for=${SECONDS_TO_RUN:-150}
interval=8
export GCP_CONFIG=$work/gcp.json
echo "{\"policy\": {\"firstS\": 4, \"minIntervalS\": $interval, \"maxIntervalS\": $interval, \"backoffS\": 1, \"maxRestarts\": 50}}" >"$GCP_CONFIG"

jobs_started+=(inj)
for u in a b; do
  "$bin/gcp-isolate" run --job inj --unit $u -- "$workloads/counter" "$work/$u.state" 16 >/dev/null
done
wait_for "both counters to count" 30 bash -c "[ -n \"\$(sed -n 's/^count=//p' '$work/a.state' 2>/dev/null)\" ] && [ -n \"\$(sed -n 's/^count=//p' '$work/b.state' 2>/dev/null)\" ]"
started_a=$(state "$work/a.state" started)
started_b=$(state "$work/b.state" started)

pid_of() { json "$GCP_STORE/jobs/inj/job.json" "[u['pid'] for u in d['units'] if u['name'] == '$1'][0]"; }
alive() { local p; p=$(pid_of "$1" 2>/dev/null) && [ -n "$p" ] && [ "$p" != None ] && kill -0 "$p" 2>/dev/null; }
latest() { ls "$GCP_STORE/jobs/inj/checkpoints" 2>/dev/null | sort -n | tail -1; }

RANDOM=$seed
next_kill=$((SECONDS + 10 + RANDOM % 10))
ref=$SECONDS  # the job's state is that of this moment: its last checkpoint or restart
kills=0 restarts=0 checkpoints=0 max_lost=0
start=$SECONDS
while [ $((SECONDS - start)) -lt "$run_for" ]; do
  if [ $SECONDS -ge $next_kill ] && alive a && alive b; then
    victim=$([ $((RANDOM % 2)) = 0 ] && echo a || echo b)
    lost=$((SECONDS - ref))
    [ $lost -gt $max_lost ] && max_lost=$lost
    [ $lost -le $((interval + 6)) ] || fail "a failure lost ${lost}s of work, more than one interval (${interval}s) and the loop's slack"
    kill -9 "$(pid_of $victim)"
    kills=$((kills + 1))
    want=$(latest)
    say "kill $kills: unit $victim, ${lost}s after the last checkpoint or restart; latest checkpoint $want"
    next_kill=$((SECONDS + 6 + RANDOM % 15))
  fi
  # Both cron lines at once, as two crontab entries would run them.
  "$bin/gcp-checkpoint" --if-due inj >"$work/due.json" 2>"$work/due.err" &
  due_pid=$!
  "$bin/gcp-restart" --if-failed inj >"$work/failed.json" 2>"$work/failed.err" || fail "--if-failed failed: $(cat "$work/failed.err")"
  wait $due_pid || fail "--if-due failed: $(cat "$work/due.err")"
  case $(json "$work/due.json" 'd[0]["action"]') in
    checkpointed) ref=$SECONDS; checkpoints=$((checkpoints + 1)) ;;
    none | busy | skipped) ;;
    *) fail "--if-due did: $(cat "$work/due.json")" ;;
  esac
  case $(json "$work/failed.json" 'd[0]["action"]') in
    restarted)
      ref=$SECONDS
      restarts=$((restarts + 1))
      seq=$(json "$work/failed.json" 'd[0]["seq"]')
      [ "$seq" = "$want" ] || fail "restart $restarts took checkpoint $seq, not the latest ($want)"
      ;;
    none | busy) ;;
    *) fail "--if-failed did: $(cat "$work/failed.json") $(cat "$work/failed.err")" ;;
  esac
  sleep 1
done

# The last kill is restarted too.
for _ in 1 2 3 4 5; do
  alive a && alive b && break
  "$bin/gcp-restart" --if-failed inj >"$work/failed.json" 2>"$work/failed.err" || fail "--if-failed failed: $(cat "$work/failed.err")"
  [ "$(json "$work/failed.json" 'd[0]["action"]')" = restarted ] && restarts=$((restarts + 1))
  sleep 1
done
alive a && alive b || fail "the job does not run at the end"
[ $kills -ge 5 ] || fail "only $kills kills in ${run_for}s: the trace is too sparse to say anything"
[ $restarts = $kills ] || fail "$kills kills but $restarts restarts"
failures=$(json "$GCP_STORE/jobs/inj/job.json" 'd["history"]["failures"]')
[ "$failures" = $kills ] || fail "$kills kills but $failures failures counted"
for u in a b; do
  st=$work/$u.state
  want_started=$([ $u = a ] && echo "$started_a" || echo "$started_b")
  [ "$(state "$st" started)" = "$want_started" ] || fail "unit $u started over"
  checks=$(state "$st" checks)
  wait_for "unit $u to verify its memory" 30 checks_at_least "$st" $((checks + 1))
  expect_ok "$st"
done
say "seed $seed, ${run_for}s: $kills kills, $restarts restarts each from the latest checkpoint, $checkpoints checkpoints by --if-due; most work lost at a failure ${max_lost}s (interval ${interval}s)"
