#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# A job of three units on three test nodes (scripts/nodes.sh: own network, hostname and
# mount namespace each, reached over real ssh), exchanging numbered messages over TCP in a
# ring (tests/workloads/ring: any byte lost or repeated on any connection fails it):
#  - started with gcp-isolate run --node through the ssh launcher of $GCP_CONFIG;
#  - a coordinated checkpoint: one Checkpoint manifest, every unit with its node and
#    --tcp-established (the dependency check knows the other units' addresses), per-phase
#    timings; the ring runs on;
#  - one unit's dump fails (a criu that refuses, on node 2 only): the round aborts, all three
#    are thawed and still exchanging, nothing is committed, no staging is left;
#  - the job checkpointer is killed (SIGKILL) while the units are frozen: every node thaws
#    its units at once, the ring runs on, gc collects the abandoned staging;
#  - everything is killed and the job restarted: each unit on its node, the ring resumes with
#    no message lost or repeated;
#  - a unit whose connections use its node's address cannot move to node 3 (the restore
#    fails there): it keeps running on node 1, and so does the ring;
#  - a unit with no connections cannot move to a node whose store is not mounted (it keeps
#    running), and moves to another node (gcp-migrate) and runs on there;
#  - uncoordinated: two units checkpointed each on its own node at different times restart
#    each from its own latest checkpoint, with a warning; a restart with the store missing
#    on node 2 fails naming u2 and leaves no unit running.
source "$(dirname "$0")/lib.sh"
requires root criu freezer python3

start_nodes 3
start_ring ring 7000 10
[ "$(json "$work/run3.json" '[u["node"] for u in d["units"]]')" = "['gcpn1', 'gcpn2', 'gcpn3']" ] ||
  fail "the Job manifest does not put r1..r3 on gcpn1..gcpn3: $(cat "$work/run3.json")"

thawed_all() { for i in 1 2 3; do [ "$(freezer_state ring "r$i")" = THAWED ] || return 1; done; }
frozen_any() { for i in 1 2 3; do [ "$(freezer_state ring "r$i")" = FROZEN ] && return 0; done; return 1; }
wait_for "the ring to exchange 100 messages on every connection" 60 ring_at_least 100

# A coordinated checkpoint of the three nodes (--level reaches every node: 3 is the default).
run_tool "$work/cp1.json" "$work/cp1.err" gcp-checkpoint ring --level 7 || fail "checkpoint failed: $(cat "$work/cp1.err")"
[ "$(json "$work/cp1.json" '[u.get("zstdLevel") for u in d["units"]]')" = "[7, 7, 7]" ] ||
  fail "--level 7 did not reach every node: $(json "$work/cp1.json" '[u.get("zstdLevel") for u in d["units"]]')"
[ "$(json "$work/cp1.json" 'd["mode"]')" = coordinated ] || fail "the checkpoint is not coordinated"
[ "$(json "$work/cp1.json" '[(u["name"], u["node"]) for u in d["units"]]')" = "[('r1', 'gcpn1'), ('r2', 'gcpn2'), ('r3', 'gcpn3')]" ] ||
  fail "the Checkpoint manifest's units and nodes: $(json "$work/cp1.json" '[(u["name"], u["node"]) for u in d["units"]]')"
[ "$(json "$work/cp1.json" 'all("--tcp-established" in u["checkpointerOptions"] for u in d["units"])')" = True ] ||
  fail "not every unit was dumped with --tcp-established"
for t in freezeBarrierMs dumpMs thawMs downtimeMs storeMs commitMs totalMs; do
  [ "$(json "$work/cp1.json" "d['timings']['$t'] > 0")" = True ] || fail "timings.$t missing or zero: $(json "$work/cp1.json" 'd["timings"]')"
done
[ "$(json "$work/cp1.json" 'all(u["timings"]["dumpMs"] > 0 and u["timings"]["freezeMs"] >= 0 for u in d["units"])')" = True ] ||
  fail "per-unit timings missing"
grep -q 'freeze barrier .* ms, dump .* ms' "$work/cp1.err" || fail "no phase summary on stderr: $(cat "$work/cp1.err")"
thawed_all || fail "units left frozen after the checkpoint"
ring_runs_on 50 20 "after the checkpoint"

# One unit's dump fails: the round aborts on every node.
real_criu=${GCP_CRIU:-$(command -v criu || echo /usr/local/sbin/criu)}
cat >"$work/refusing-criu" <<SH
#!/bin/sh
if [ "\$1" = dump ]; then echo "Error (criu/cr-dump.c:1): refusing to dump on \$(hostname)" >&2; exit 1; fi
exec "$real_criu" "\$@"
SH
chmod +x "$work/refusing-criu"
# criu_on FILE NODE CRIU: a configuration in which NODE's commands use CRIU.
criu_on() {
  cat >"$1" <<JSON
{"launcher": {"kind": "ssh", "command": ["ssh", "-F", "$ssh_config", "{node}"]},
 "nodes": {"$2": {"launcher": {"kind": "ssh", "command": ["ssh", "-F", "$ssh_config", "$2", "GCP_CRIU=$3"]}}}}
JSON
}
criu_on "$work/gcp-bad2.json" gcpn2 "$work/refusing-criu"
GCP_CONFIG=$work/gcp-bad2.json expect_exit 1 gcp-checkpoint ring
expect_stderr "node 'gcpn2' (unit 'r2')"
expect_stderr "refusing to dump"
wait_for "every unit to be thawed after the failed round" 10 thawed_all
ring_runs_on 50 20 "after the failed round"
[ "$(ls "$GCP_STORE/jobs/ring/checkpoints")" = 1 ] || fail "checkpoints after the failed round: $(ls "$GCP_STORE/jobs/ring/checkpoints")"
[ -z "$(ls "$GCP_STORE/jobs/ring/staging" 2>/dev/null)" ] || fail "staging left after the failed round: $(ls "$GCP_STORE/jobs/ring/staging")"

# A node without a usable checkpointer: the round fails with that node's status (4) and
# says what to do there.
criu_on "$work/gcp-bad3.json" gcpn3 "$work/no-such-criu"
GCP_CONFIG=$work/gcp-bad3.json expect_exit 4 gcp-checkpoint ring
expect_stderr "node 'gcpn3' (unit 'r3')"
expect_stderr "hint: on node 'gcpn3': run scripts/install-deps.sh"
wait_for "every unit to be thawed after the round without a checkpointer" 10 thawed_all
[ "$(ls "$GCP_STORE/jobs/ring/checkpoints")" = 1 ] || fail "checkpoints after the round without a checkpointer: $(ls "$GCP_STORE/jobs/ring/checkpoints")"

# The job checkpointer dies while the units are frozen: each node thaws its units.
slow_criu
GCP_CRIU=$work/slow-criu "$bin/gcp-checkpoint" ring >"$work/cp2.json" 2>"$work/cp2.err" &
tool=$!
wait_for "gcp-checkpoint to freeze the units" 30 frozen_any
sleep 0.5
kill -KILL "$tool"
wait "$tool" 2>/dev/null || true
killed_at=$SECONDS
wait_for "every node to thaw its units after the job checkpointer was killed" 15 thawed_all
say "units thawed $((SECONDS - killed_at)) s after the job checkpointer was killed"
ring_runs_on 50 20 "after the job checkpointer was killed"
for i in 1 2 3; do "$nodes" exec "gcpn$i" pkill -f "$work/slow-hook" 2>/dev/null || true; done
[ "$(ls "$GCP_STORE/jobs/ring/checkpoints")" = 1 ] || fail "a killed round committed something: $(ls "$GCP_STORE/jobs/ring/checkpoints")"
[ -n "$(ls "$GCP_STORE/jobs/ring/staging" 2>/dev/null)" ] || fail "the killed round left no staging (expected one for gc)"
run_tool "$work/gc.json" "$work/gc.err" gcp-store gc || fail "gc failed: $(cat "$work/gc.err")"
[ -z "$(ls "$GCP_STORE/jobs/ring/staging" 2>/dev/null | grep -v '\.lock$')" ] || fail "gc left the staging: $(ls "$GCP_STORE/jobs/ring/staging")"

# Everything killed, then the whole job restarted on its nodes from checkpoint 1.
"$bin/gcp-isolate" kill ring >/dev/null || fail "gcp-isolate kill of the job on three nodes failed"
for i in 1 2 3; do [ "$(cgroup_procs ring "r$i")" -eq 0 ] || fail "processes of r$i left after kill"; done
for i in 1 2 3; do killed[$i]=$(state "$work/r$i.state" count); done
run_tool "$work/r.json" "$work/r.err" gcp-restart ring || fail "restart failed: $(cat "$work/r.err")"
[ "$(json "$work/r.json" '[(u["name"], u["node"], u["state"]) for u in d["units"]]')" = "[('r1', 'gcpn1', 'running'), ('r2', 'gcpn2', 'running'), ('r3', 'gcpn3', 'running')]" ] ||
  fail "restart did not put every unit back on its node: $(json "$work/r.json" '[(u["name"], u["node"], u["state"]) for u in d["units"]]')"
restarted() { for i in 1 2 3; do [ "$(state "$work/r$i.state" count)" != "${killed[$i]}" ] || return 1; done; }
wait_for "every restored unit to write its state" 30 restarted
ring_runs_on 100 30 "after the restart"
for i in 1 2 3; do
  [ "$(state "$work/r$i.state" count)" -lt "${killed[$i]}" ] || continue
  say "r$i resumed below the count it was killed at (${killed[$i]}): from the checkpoint, as it should"
done

# r1 talks over its node's own address, which gcpn3 does not have: moving it there fails
# at the restore, and it keeps running on gcpn1 with the ring.
expect_exit 1 gcp-migrate ring --unit r1 --to gcpn3
expect_stderr "node 'gcpn3' (unit 'r1')"
expect_stderr "keep running where they were"
wait_for "r1 to be thawed on gcpn1 after the failed move" 10 thawed_all
ring_runs_on 50 20 "after the failed move"
[ "$(json "$GCP_STORE/jobs/ring/job.json" '[u["node"] for u in d["units"] if u["name"] == "r1"][0]')" = gcpn1 ] ||
  fail "the Job manifest moved r1 although the move failed"
"$bin/gcp-isolate" kill ring >/dev/null

# A unit with no connections: a move to a node whose store is not mounted (an empty
# directory there instead) fails and the unit counts on where it was; a move to gcpn2 works.
st=$work/mover.state
run_tool "$work/mv-run.json" "$work/mv-run.err" gcp-isolate run --job mover --unit m --node gcpn1 -- "$workloads/counter" "$st" 32 ||
  fail "starting the counter on gcpn1 failed: $(cat "$work/mv-run.err")"
jobs_started+=(mover)
wait_for "the counter on gcpn1" 30 count_at_least "$st" 10
started=$(state "$st" started)
"$nodes" exec gcpn3 mount -t tmpfs -o mode=0755 gcp-nostore "$GCP_STORE" || fail "hiding the store on gcpn3 failed"
expect_exit 1 gcp-migrate mover --to gcpn3
expect_stderr "node 'gcpn3' (unit 'm')"
expect_stderr "is not in store"
expect_stderr "keep running where they were"
[ "$(freezer_state mover m)" = THAWED ] || fail "the unit was left $(freezer_state mover m) after the failed move"
c=$(state "$st" count)
wait_for "the counter to count on gcpn1 after the failed move" 20 count_at_least "$st" $((c + 5))
[ "$(json "$GCP_STORE/jobs/mover/job.json" 'd["units"][0]["node"]')" = gcpn1 ] || fail "the failed move changed the Job manifest"
run_tool "$work/mv.json" "$work/mv.err" gcp-migrate mover --to gcpn2 || fail "gcp-migrate failed: $(cat "$work/mv.err")"
[ "$(json "$work/mv.json" 'd["units"][0]["node"]')" = gcpn2 ] || fail "the unit is not recorded on gcpn2 after the move"
[ "$(json "$work/mv.json" 'd["units"][0]["state"]')" = running ] || fail "the moved unit is not recorded running"
c=$(state "$st" count)
wait_for "the moved counter to count on" 20 count_at_least "$st" $((c + 5))
expect_ok "$st"
[ "$(state "$st" started)" = "$started" ] || fail "the moved counter started over"
[ "$(cgroup_procs mover m)" -eq 0 ] || fail "the source of the moved unit still has processes"
# A move of the whole job is a checkpoint of the whole job: a plain restart takes it.
last=$(ls "$GCP_STORE/jobs/mover/checkpoints" | sort -n | tail -n1)
[ "$(json "$GCP_STORE/jobs/mover/checkpoints/$last/manifest.json" 'd.get("partial", False)')" = False ] ||
  fail "the move of the whole job left a partial checkpoint, which a plain restart would skip"
"$bin/gcp-isolate" kill mover >/dev/null

# Uncoordinated: two units on two nodes, each checkpointed on its own node (as cron would),
# at different times; the job restarts each unit from its own latest checkpoint.
for i in 1 2; do
  run_tool "$work/u$i.json" "$work/u$i.err" gcp-isolate run --job unco --unit "u$i" --node "gcpn$i" --uncoordinated -- \
    "$workloads/counter" "$work/u$i.state" 16 || fail "starting u$i failed: $(cat "$work/u$i.err")"
done
jobs_started+=(unco)
[ "$(json "$work/u2.json" 'd["policy"]["mode"]')" = uncoordinated ] || fail "policy.mode is not uncoordinated"
wait_for "u1 to count" 30 count_at_least "$work/u1.state" 5
wait_for "u2 to count" 30 count_at_least "$work/u2.state" 5
on_node() { local n=$1; shift; ssh -F "$ssh_config" "$n" env GCP_STORE="$GCP_STORE" "$@"; }
on_node gcpn1 "$bin/gcp-checkpoint" unco >"$work/uc1.json" 2>"$work/uc1.err" || fail "checkpoint on gcpn1 failed: $(cat "$work/uc1.err")"
[ "$(json "$work/uc1.json" '(d["mode"], [u["name"] for u in d["units"]])')" = "('uncoordinated', ['u1'])" ] ||
  fail "gcpn1's checkpoint is not u1 alone, uncoordinated: $(json "$work/uc1.json" '(d["mode"], [u["name"] for u in d["units"]])')"
sleep 1
u2_at=$(state "$work/u2.state" count)  # before the checkpoint: the restored count is at least this
on_node gcpn2 "$bin/gcp-checkpoint" unco >"$work/uc2.json" 2>"$work/uc2.err" || fail "checkpoint on gcpn2 failed: $(cat "$work/uc2.err")"
sleep 1
u1_at=$(state "$work/u1.state" count)
on_node gcpn1 "$bin/gcp-checkpoint" unco >"$work/uc3.json" 2>"$work/uc3.err" || fail "second checkpoint on gcpn1 failed: $(cat "$work/uc3.err")"
seq2=$(json "$work/uc2.json" 'd["seq"]') seq3=$(json "$work/uc3.json" 'd["seq"]')
"$bin/gcp-isolate" kill unco >/dev/null || fail "killing the uncoordinated job failed"
u1_killed=$(state "$work/u1.state" count) u2_killed=$(state "$work/u2.state" count)
# gcpn2 restores u2 3 s late: u1, restored already, waits for it stopped (state T).
cat >"$work/slow-restore-criu" <<SH
#!/bin/sh
[ "\$1" = restore ] && sleep 3
exec "$real_criu" "\$@"
SH
chmod +x "$work/slow-restore-criu"
criu_on "$work/gcp-slow2.json" gcpn2 "$work/slow-restore-criu"
GCP_CONFIG=$work/gcp-slow2.json "$bin/gcp-restart" unco >"$work/ur.json" 2>"$work/ur.err" &
restart_pid=$!
# all_stopped JOB UNIT: the unit has processes, and every one of them is stopped.
all_stopped() {
  local p n=0
  for p in $(cat "/sys/fs/cgroup/freezer/gcp/$1/$2/cgroup.procs" 2>/dev/null); do
    [ "$(sed 's/.*) //' "/proc/$p/stat" 2>/dev/null | cut -d' ' -f1)" = T ] || return 1
    n=$((n + 1))
  done
  [ "$n" -gt 0 ]
}
u1_waits() { all_stopped unco u1 && kill -0 "$restart_pid" 2>/dev/null; }
wait_for "u1 to wait, stopped, while u2 is not restored yet" 20 u1_waits
wait "$restart_pid" || fail "restart of the uncoordinated job failed: $(cat "$work/ur.err")"
[ "$(json "$work/ur.json" '[(u["name"], u["node"], u["restoredFrom"]) for u in d["units"]]')" = "[('u1', 'gcpn1', $seq3), ('u2', 'gcpn2', $seq2)]" ] ||
  fail "units did not restart from their own latest checkpoints ($seq3, $seq2): $(json "$work/ur.json" '[(u["name"], u["node"], u.get("restoredFrom")) for u in d["units"]]')"
grep -q "restart from their own latest checkpoints" "$work/ur.err" || fail "no warning that the units restart from different checkpoints: $(cat "$work/ur.err")"
# All or nothing (units without connections: a restored TCP connection that is stopped again
# lingers in the kernel and may block a retry for a while): with the store hidden on gcpn2,
# u2 cannot be restored; the error names it and u1, restored meanwhile, is stopped again.
"$bin/gcp-isolate" kill unco >/dev/null
"$nodes" exec gcpn2 mount -t tmpfs -o mode=0755 gcp-nostore "$GCP_STORE" || fail "hiding the store on gcpn2 failed"
expect_exit 1 gcp-restart unco
expect_stderr "node 'gcpn2' (unit 'u2')"
expect_stderr "no unit of the job was left running"
for i in 1 2; do [ "$(cgroup_procs unco "u$i")" -eq 0 ] || fail "u$i was left running after the failed restart"; done
"$nodes" exec gcpn2 umount "$GCP_STORE" || fail "showing the store on gcpn2 again failed"
[ "$(json "$GCP_STORE/jobs/unco/job.json" '[u["state"] for u in d["units"]]')" = "['stopped', 'stopped']" ] ||
  fail "the failed restart changed the Job manifest"
u1_killed=$(state "$work/u1.state" count) u2_killed=$(state "$work/u2.state" count)
run_tool "$work/ur2.json" "$work/ur2.err" gcp-restart unco || fail "restart of the uncoordinated job failed: $(cat "$work/ur2.err")"
wait_for "u1 to count on from its checkpoint" 30 bash -c "[ \"\$(sed -n 's/^count=//p' '$work/u1.state')\" != '$u1_killed' ]"
wait_for "u2 to count on from its checkpoint" 30 bash -c "[ \"\$(sed -n 's/^count=//p' '$work/u2.state')\" != '$u2_killed' ]"
[ "$(state "$work/u1.state" count)" -ge "$u1_at" ] && [ "$(state "$work/u2.state" count)" -ge "$u2_at" ] ||
  fail "a unit resumed below the count it had at its checkpoint"
expect_ok "$work/u1.state"
expect_ok "$work/u2.state"
say "ok: 3-node ring checkpointed, failed and killed rounds left it running, restarted with no loss; units moved (or not) as they should; uncoordinated units restarted from their own checkpoints"
