#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# gcp-restart --if-failed after a node dies: a job of two units on test nodes gcpn1 and
# gcpn2 is checkpointed; gcpn2 dies (its sshd and the unit's processes killed). Within the
# grace period --if-failed waits (the node may come back); after it, it restarts the whole
# job from its checkpoint, the unit of gcpn2 on the spare gcpn3 and the other where it was,
# records a node failure, and both units continue from the checkpoint.
source "$(dirname "$0")/lib.sh"
requires root criu freezer python3

start_nodes 3
# A short grace period (graceS) for the test; the launcher of start_nodes.
python3 -c 'import json,sys; c=json.load(open(sys.argv[1])); c["policy"]={"graceS": 4}; json.dump(c, open(sys.argv[1], "w"))' "$GCP_CONFIG"

jobs_started+=(two)
for u in 1 2; do
  run_tool "$work/run$u.json" "$work/run$u.err" gcp-isolate run --job two --unit "u$u" --node "gcpn$u" \
    -- "$workloads/counter" "$work/u$u.state" 16 || fail "starting u$u on gcpn$u failed: $(cat "$work/run$u.err")"
done
both_count() { count_at_least "$work/u1.state" 5 && count_at_least "$work/u2.state" 5; }
wait_for "both counters to count" 30 both_count
run_tool "$work/cp.json" "$work/cp.err" gcp-checkpoint two || fail "checkpoint failed: $(cat "$work/cp.err")"
declare -A started checksum before
for u in 1 2; do
  started[$u]=$(state "$work/u$u.state" started)
  checksum[$u]=$(state "$work/u$u.state" checksum)
  before[$u]=$(state "$work/u$u.state" count)
done

u1_pid=$(json "$GCP_STORE/jobs/two/job.json" '[u["pid"] for u in d["units"] if u["name"] == "u1"][0]')
# gcpn2 dies: nothing of it answers, its unit's processes are gone.
"$nodes" kill gcpn2
kill -9 $(cat /sys/fs/cgroup/freezer/gcp/two/u2/cgroup.procs) 2>/dev/null || true
u2_gone() { [ "$(cgroup_procs two u2)" -eq 0 ]; }
wait_for "u2's processes to end" 10 u2_gone
killed_at=$(state "$work/u2.state" count)

run_tool "$work/r1.json" "$work/r1.err" gcp-restart --if-failed two --spare gcpn3 || fail "--if-failed failed: $(cat "$work/r1.err")"
[ "$(json "$work/r1.json" 'd[0]["action"]')" = none ] || fail "restarted within the grace period: $(cat "$work/r1.json")"
grep -q "node 'gcpn2' is unreachable" "$work/r1.err" || fail "no warning that gcpn2 is unreachable: $(cat "$work/r1.err")"
sleep 5
run_tool "$work/r2.json" "$work/r2.err" gcp-restart --if-failed two --spare gcpn3 || fail "--if-failed after the grace failed: $(cat "$work/r2.err")"
[ "$(json "$work/r2.json" 'd[0]["action"]')" = restarted ] || fail "not restarted after the grace period: $(cat "$work/r2.json") $(cat "$work/r2.err")"
job=$GCP_STORE/jobs/two/job.json
[ "$(json "$job" '[(u["name"], u["node"], u["state"]) for u in d["units"]]')" = "[('u1', 'gcpn1', 'running'), ('u2', 'gcpn3', 'running')]" ] ||
  fail "units not where expected: $(json "$job" '[(u["name"], u["node"], u["state"]) for u in d["units"]]')"
[ "$(json "$job" 'd["history"]["stops"][-1]["cause"]')" = node-unreachable ] ||
  fail "the failure is not recorded as a node's: $(json "$job" 'd["history"]["stops"][-1]')"
[ "$(json "$job" 'd["history"]["failures"]')" = 1 ] || fail "the node failure was not counted once"
expect_counter_resumed "$work/u2.state" "${started[2]}" "${checksum[2]}" "${before[2]}" "$killed_at"
# u1 was stopped and restored from the same checkpoint (all or nothing).
[ "$(json "$job" '[u["pid"] for u in d["units"] if u["name"] == "u1"][0]')" != "$u1_pid" ] ||
  fail "u1 was not restarted with u2 (its pid is still $u1_pid)"
expect_counter_resumed "$work/u1.state" "${started[1]}" "${checksum[1]}" "${before[1]}" none
say "gcpn2 died: waited out the grace period, then restarted u2 on gcpn3 and u1 on gcpn1 from checkpoint 1"
