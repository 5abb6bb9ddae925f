#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# gcp-checkpoint --if-due driven by a loop (a cron stand-in): an adaptive job is first
# checkpointed soon after its start (to measure its cost), then at its policy's interval;
# a fixed job every interval and never sooner. Not due is exit 0 with the next due time
# under -v. Bad input: a negative or absurd interval, a clock that jumps either way, a
# store that cannot be written (no checkpoint, job untouched, one clear error).
source "$(dirname "$0")/lib.sh"
requires root criu freezer python3

# A short world: the first checkpoint 4 s after the start, intervals of at least 6 s,
# an MTBF prior of 20 s (Daly's interval from a cost of ~0.3 s is then ~3.5 s: 6 s).
export GCP_CONFIG=$work/gcp.json
echo '{"policy": {"firstS": 4, "minIntervalS": 6, "mtbfS": 20}}' >"$GCP_CONFIG"

# Bad policies are refused before anything starts.
expect_exit 2 gcp-isolate run --job bad --policy fixed,interval=-5m -- "$workloads/counter" "$work/bad.state" 1
expect_stderr "interval"
expect_exit 2 gcp-isolate run --job bad --policy fixed,interval=400d -- "$workloads/counter" "$work/bad.state" 1
expect_stderr "over a year"
expect_exit 2 gcp-isolate run --job bad --policy sometimes -- "$workloads/counter" "$work/bad.state" 1
[ ! -e "$GCP_STORE/jobs/bad" ] || fail "a refused policy left job 'bad' in the store"

st=$work/adaptive.state
jobs_started+=(adaptive fixed)
"$bin/gcp-isolate" run --job adaptive --policy adaptive -- "$workloads/counter" "$st" 16 >/dev/null
"$bin/gcp-isolate" run --job fixed --policy fixed,interval=9s -- "$workloads/counter" "$work/fixed.state" 16 >/dev/null
wait_for "the counter to count" 30 count_at_least "$st" 3

# At once: nothing is due; -v says when it will be.
run_tool "$work/d.json" "$work/d.err" gcp-checkpoint -v --if-due || fail "--if-due failed: $(cat "$work/d.err")"
[ "$(json "$work/d.json" '[j["action"] for j in d]')" = "['none', 'none']" ] || fail "a job was due at once: $(cat "$work/d.json")"
grep -q "job 'adaptive': not due: next due" "$work/d.err" || fail "-v does not say when the job is due: $(cat "$work/d.err")"
[ -z "$(ls "$GCP_STORE/jobs/adaptive/checkpoints" 2>/dev/null)" ] || fail "--if-due checkpointed a job that was not due"

# The loop: every second for 32 s.
start=$SECONDS
while [ $((SECONDS - start)) -lt 32 ]; do
  run_tool "$work/d.json" "$work/d.err" gcp-checkpoint --if-due || fail "--if-due failed: $(cat "$work/d.err")"
  sleep 1
done

# What the policy recorded, and when the checkpoints came.
"$bin/gcp-isolate" status adaptive >"$work/a.json"
"$bin/gcp-isolate" status fixed >"$work/f.json"
python3 - "$work/a.json" "$work/f.json" <<'PY' || fail "the checkpoints did not come when the policies said"
import json, sys, datetime
def times(path):
    d = json.load(open(path))
    at = [datetime.datetime.fromisoformat(c["at"].replace("Z", "+00:00")).timestamp() for c in d["history"]["recent"]]
    start = datetime.datetime.fromisoformat(d["created"].replace("Z", "+00:00")).timestamp()
    return d, start, at
a, a0, at = times(sys.argv[1])
f, f0, ft = times(sys.argv[2])
print("adaptive: first after %.1f s, gaps %s, cost %.3f s" % (at[0] - a0, [round(y - x, 1) for x, y in zip(at, at[1:])], a["history"]["costS"]), file=sys.stderr)
print("fixed: first after %.1f s, gaps %s" % (ft[0] - f0, [round(y - x, 1) for x, y in zip(ft, ft[1:])]), file=sys.stderr)
ok = True
# adaptive: first soon after the start (firstS 4, the loop ticks every ~1 s), then every >= 6 s (minIntervalS)
ok &= 4 <= at[0] - a0 <= 9
ok &= all(6 <= y - x <= 11 for x, y in zip(at, at[1:]))
ok &= 3 <= len(at) <= 6 and a["history"]["checkpoints"] == len(at) and a["history"]["costS"] > 0
# gcp-deps counted the ties between its units at each checkpoint: one unit has none
ok &= a["history"].get("jobTies") == 0
# fixed: every 9 s, never sooner
ok &= all(9 <= y - x <= 14 for x, y in zip(ft, ft[1:])) and 2 <= len(ft) <= 4
sys.exit(0 if ok else 1)
PY
n_before=$(ls "$GCP_STORE/jobs/adaptive/checkpoints" | wc -l)

# A clock that jumps ahead a day: due now. One that goes back a day: the last
# checkpoint lies in the future, so it is due now too, with a note.
GCP_NOW="$(date -u -d '+1 day' +%Y-%m-%dT%H:%M:%SZ)" run_tool "$work/j.json" "$work/j.err" gcp-checkpoint -v --if-due adaptive || true
[ "$(json "$work/j.json" 'd[0]["action"]')" = checkpointed ] || fail "a clock a day ahead did not make the job due: $(cat "$work/j.err")"
GCP_NOW="$(date -u -d '-1 day' +%Y-%m-%dT%H:%M:%SZ)" run_tool "$work/j.json" "$work/j.err" gcp-checkpoint -v --if-due adaptive || true
[ "$(json "$work/j.json" 'd[0]["action"]')" = checkpointed ] || fail "a clock gone back did not make the job due: $(cat "$work/j.err")"
grep -q "clock went back" "$work/j.err" || fail "the clock going back is not mentioned: $(cat "$work/j.err")"

# A unit that died is left to gcp-restart --if-failed, not reported as a failed checkpoint.
st2=$work/victim.state
jobs_started+=(victim)
"$bin/gcp-isolate" run --job victim --policy fixed,interval=10s -- "$workloads/counter" "$st2" 4 >/dev/null
wait_for "the victim to count" 30 count_at_least "$st2" 2
kill -9 "$(json "$GCP_STORE/jobs/victim/job.json" 'd["units"][0]["pid"]')"
GCP_NOW="$(date -u -d '+1 hour' +%Y-%m-%dT%H:%M:%SZ)" run_tool "$work/v.json" "$work/v.err" gcp-checkpoint --if-due victim || fail "--if-due failed on a job whose unit died: $(cat "$work/v.err")"
[ "$(json "$work/v.json" 'd[0]["action"]')" = skipped ] || fail "a dead unit was not skipped: $(cat "$work/v.json")"
grep -q "left to 'gcp-restart --if-failed'" "$work/v.err" || fail "no word of --if-failed: $(cat "$work/v.err")"

# A store that cannot be written (mounted read-only on itself): the due job is not checkpointed, keeps running, and one
# error line says why.
mount --bind "$GCP_STORE" "$GCP_STORE"
on_exit umount "$GCP_STORE"
mount -o remount,ro,bind "$GCP_STORE"
n_before=$(ls "$GCP_STORE/jobs/adaptive/checkpoints" | wc -l)
count=$(state "$st" count)
rc=0
GCP_NOW="$(date -u -d '+2 day' +%Y-%m-%dT%H:%M:%SZ)" run_tool "$work/ro.json" "$work/ro.err" gcp-checkpoint --if-due adaptive || rc=$?
[ $rc -eq 1 ] || fail "--if-due on a read-only store exited $rc, expected 1: $(cat "$work/ro.err")"
[ "$(grep -c ': error: ' "$work/ro.err")" = 1 ] || fail "not one error line: $(cat "$work/ro.err")"
grep -qi "error: job 'adaptive': .*read-only" "$work/ro.err" || fail "the error does not say the store is read-only: $(cat "$work/ro.err")"
[ "$(json "$work/ro.json" 'd[0]["action"]')" = failed ] || fail "the report does not say failed: $(cat "$work/ro.json")"
[ "$(ls "$GCP_STORE/jobs/adaptive/checkpoints" | wc -l)" = "$n_before" ] || fail "a checkpoint appeared in a read-only store"
wait_for "the job to keep counting" 10 count_at_least "$st" $((count + 3))
[ "$(freezer_state adaptive main)" = THAWED ] || fail "the job was left $(freezer_state adaptive main)"
expect_ok "$st"

say "adaptive and fixed jobs checkpointed when due; clock jumps, a dead unit and a read-only store handled"
