#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# gcp-restart --if-failed: a job whose unit's init is killed is restarted from its latest
# checkpoint (it continues, it does not start over) by one of two copies run at once (the
# other finds the job's lock taken); the failure is counted, a kill through gcp and a
# command that exits 0 are not. A job that keeps failing right after its restarts is
# backed off, then left stopped with its reason; a restart by hand lets it go on.
source "$(dirname "$0")/lib.sh"
requires root criu freezer python3

export GCP_CONFIG=$work/gcp.json
echo '{"policy": {"backoffS": 6}}' >"$GCP_CONFIG"

pid_of() { json "$GCP_STORE/jobs/$1/job.json" 'd["units"][0]["pid"]'; }
history() { json "$GCP_STORE/jobs/$1/job.json" "d['history']$2"; }

st=$work/sim.state
start_job sim main "$workloads/counter" "$st" 32
wait_for "the counter to count" 30 count_at_least "$st" 5
"$bin/gcp-checkpoint" sim >/dev/null
started=$(state "$st" started)
checksum=$(state "$st" checksum)
before=$(state "$st" count)

# Nothing failed: nothing to do.
run_tool "$work/r.json" "$work/r.err" gcp-restart --if-failed || fail "--if-failed failed: $(cat "$work/r.err")"
[ "$(json "$work/r.json" '[j["action"] for j in d]')" = "['none']" ] || fail "a running job was touched: $(cat "$work/r.json")"

# The unit's init is killed: two copies at once, one restarts.
wait_for "the counter to go on" 10 count_at_least "$st" $((before + 3))
kill -9 "$(pid_of sim)"
wait_for "the unit's cgroup to empty" 10 bash -c "[ \"\$(cat /sys/fs/cgroup/freezer/gcp/sim/main/cgroup.procs 2>/dev/null | wc -l)\" = 0 ]"
killed_at=$(state "$st" count)
"$bin/gcp-restart" --if-failed sim >"$work/r1.json" 2>"$work/r1.err" &
p1=$!
"$bin/gcp-restart" --if-failed sim >"$work/r2.json" 2>"$work/r2.err" &
p2=$!
wait $p1 || fail "the first copy failed: $(cat "$work/r1.err")"
wait $p2 || fail "the second copy failed: $(cat "$work/r2.err")"
actions=$(cat "$work/r1.json" "$work/r2.json" | python3 -c 'import json,sys; t=sys.stdin.read(); d=json.JSONDecoder(); a=[]; i=0
while i < len(t):
    t2=t[i:].lstrip()
    if not t2: break
    o,n=d.raw_decode(t2); a+= [j["action"] for j in o]; i=len(t)-len(t2)+n
print(" ".join(sorted(a)))')
case $actions in
  "busy restarted" | "none restarted") ;;
  *) fail "two copies did: '$actions', expected one restart and one busy (or none): $(cat "$work/r1.err" "$work/r2.err")" ;;
esac
say "two copies of --if-failed: $actions"
expect_counter_resumed "$st" "$started" "$checksum" "$before" "$killed_at"
[ "$(history sim '["failures"]')" = 1 ] || fail "the failure was not counted once: $(history sim '')"
[ "$(history sim '["stops"][-1]["cause"]')" = unit-died ] || fail "the failure's cause is not unit-died"

# A kill through gcp is a planned stop: not restarted, not counted.
"$bin/gcp-isolate" kill sim >/dev/null
run_tool "$work/r.json" "$work/r.err" gcp-restart --if-failed sim || fail "--if-failed failed: $(cat "$work/r.err")"
[ "$(json "$work/r.json" 'd[0]["action"]')" = none ] || fail "a job killed through gcp was restarted: $(cat "$work/r.json")"
[ "$(history sim '["failures"]')" = 1 ] || fail "a planned stop was counted as a failure"
[ "$(history sim '["stops"][-1]["failure"]')" = False ] || fail "the kill is not recorded as a planned stop"

# A command that ends by itself with status 0 has finished: not a failure.
start_job done main /bin/true
wait_for "the command to end" 10 bash -c "[ \"\$(cat /sys/fs/cgroup/freezer/gcp/done/main/cgroup.procs 2>/dev/null | wc -l)\" = 0 ]"
run_tool "$work/r.json" "$work/r.err" gcp-restart --if-failed done || fail "--if-failed failed: $(cat "$work/r.err")"
[ "$(json "$work/r.json" 'd[0]["action"]')" = finished ] || fail "a finished command was not seen as finished: $(cat "$work/r.json")"
[ "$(history done '["failures"]')" = 0 ] || fail "a finished command was counted as a failure"

# A job that fails right after each restart: restarted, backed off, restarted, given up.
st=$work/crash.state
jobs_started+=(crash)
"$bin/gcp-isolate" run --job crash --policy adaptive,max-restarts=2 -- "$workloads/counter" "$st" 4 >/dev/null
wait_for "the counter to count" 30 count_at_least "$st" 2
"$bin/gcp-checkpoint" crash >/dev/null
kill_unit() {
  kill -9 "$(pid_of crash)"
  wait_for "the unit's cgroup to empty" 10 bash -c "[ \"\$(cat /sys/fs/cgroup/freezer/gcp/crash/main/cgroup.procs 2>/dev/null | wc -l)\" = 0 ]"
}
kill_unit
run_tool "$work/r.json" "$work/r.err" gcp-restart --if-failed crash || fail "first restart failed: $(cat "$work/r.err")"
[ "$(json "$work/r.json" 'd[0]["action"]')" = restarted ] || fail "not restarted: $(cat "$work/r.json")"
kill_unit
run_tool "$work/r.json" "$work/r.err" gcp-restart --if-failed crash || fail "--if-failed failed: $(cat "$work/r.err")"
[ "$(json "$work/r.json" 'd[0]["action"]')" = backing-off ] || fail "a job that failed right after its restart was not backed off: $(cat "$work/r.json")"
[ -z "$(cat /sys/fs/cgroup/freezer/gcp/crash/main/cgroup.procs 2>/dev/null)" ] || fail "a backed-off job runs"
sleep 7
run_tool "$work/r.json" "$work/r.err" gcp-restart --if-failed crash || fail "restart after the back-off failed: $(cat "$work/r.err")"
[ "$(json "$work/r.json" 'd[0]["action"]')" = restarted ] || fail "not restarted after the back-off: $(cat "$work/r.json")"
kill_unit
rc=0
run_tool "$work/r.json" "$work/r.err" gcp-restart --if-failed crash || rc=$?
[ $rc -eq 1 ] || fail "giving a job up exited $rc, expected 1: $(cat "$work/r.err")"
[ "$(grep -c ': error: ' "$work/r.err")" = 1 ] || fail "not one error line: $(cat "$work/r.err")"
grep -q "error: job 'crash': left stopped: failed 3 times" "$work/r.err" || fail "the error does not say why: $(cat "$work/r.err")"
[ "$(json "$work/r.json" 'd[0]["action"]')" = given-up ] || fail "the report does not say given-up: $(cat "$work/r.json")"
[ "$(history crash '["failures"]')" = 3 ] || fail "three failures were not counted: $(history crash '')"
"$bin/gcp-store" policy crash >"$work/p.json"
python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); sys.exit(0 if "maxRestarts 2" in d["givenUp"] and d["failures"] == 3 else 1)' "$work/p.json" ||
  fail "gcp-store policy does not say why the job was given up: $(cat "$work/p.json")"
run_tool "$work/r.json" "$work/r.err" gcp-restart --if-failed crash || true
[ "$(json "$work/r.json" 'd[0]["action"]')" = given-up ] || fail "a given-up job was restarted: $(cat "$work/r.json")"
# By hand it restarts, and the automatic restarts may go on.
"$bin/gcp-restart" crash >/dev/null || fail "a restart by hand failed"
[ "$(history crash '.get("givenUp", "")')" = "" ] || fail "a restart by hand left the job given up"
expect_ok "$st"

say "restarted from its checkpoint by one of two copies; planned stops and a finished command not counted; back-off and give-up"
