#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The target's compatibility check before a migration: a ring of three units on three test
# nodes, each with its own address. `gcp-migrate --check` asks gcpn3 about r1 against the
# latest checkpoint and passes, moving nothing; once gcpn3 holds r1's address itself,
# --check and a plain migration are refused in one line naming the address and the node,
# and r1 keeps running on gcpn1 with the ring going on.
source "$(dirname "$0")/lib.sh"
requires root criu freezer python3

start_nodes 3
start_ring cring 7200 110 own
wait_for "the ring to exchange 20 messages on every connection" 60 ring_at_least 20
run_tool "$work/cp.json" "$work/cp.err" gcp-checkpoint cring || fail "checkpoint failed: $(cat "$work/cp.err")"

run_tool "$work/c1.json" "$work/c1.err" gcp-migrate cring --unit r1 --to gcpn3 --check ||
  fail "migrate --check refused: $(cat "$work/c1.err")"
[ "$(json "$work/c1.json" 'd["ok"]')" = True ] || fail "migrate --check says not ok: $(cat "$work/c1.json")"
[ "$(json "$work/c1.json" '[(c["node"], c["status"], c["reason"]) for c in d["checks"] if c["check"] == "address"]')" = \
  "[('gcpn3', 'ok', 'address 10.77.0.111 is free')]" ] || fail "no passed address check on gcpn3: $(cat "$work/c1.json")"
[ "$(json "$work/c1.json" '[c["status"] for c in d["checks"] if c["check"] == "cpu"]')" = "['ok']" ] ||
  fail "no passed cpu check on gcpn3: $(cat "$work/c1.json")"
[ "$(cgroup_procs cring r1)" -gt 0 ] || fail "r1 stopped running on gcpn1 after --check"
[ "$(freezer_state cring r1)" = THAWED ] || fail "--check left r1 $(freezer_state cring r1)"

# gcpn3 takes r1's address for itself.
"$nodes" exec gcpn3 ip addr add 10.77.0.111/32 dev lo || fail "could not add 10.77.0.111 on gcpn3"
on_exit "$nodes" exec gcpn3 ip addr del 10.77.0.111/32 dev lo
run_tool "$work/c2.json" "$work/c2.err" gcp-migrate cring --unit r1 --to gcpn3 --check &&
  fail "migrate --check passed although gcpn3 holds r1's address"
[ "$(json "$work/c2.json" '[c["status"] for c in d["checks"] if c["check"] == "address"]')" = "['refuse']" ] ||
  fail "the address check did not refuse: $(cat "$work/c2.json")"
[ "$(grep -c ': error: ' "$work/c2.err")" -eq 1 ] || fail "--check printed other than one error line: $(cat "$work/c2.err")"
grep -q "error: unit 'r1' on node 'gcpn3': address: address 10.77.0.111 is used on this node by this node's own network namespace (device 'lo')" \
  "$work/c2.err" || fail "--check's error does not name the address: $(cat "$work/c2.err")"

c=$(ring_lowest)
expect_exit 1 gcp-migrate cring --unit r1 --to gcpn3
expect_stderr "moving unit 'r1' of job 'cring' to 'gcpn3' failed: .*unit 'r1' on node 'gcpn3': address: address 10.77.0.111 is used"
[ "$(json <("$bin/gcp-isolate" status cring) '[u["node"] for u in d["units"] if u["name"] == "r1"][0]')" = gcpn1 ] ||
  fail "r1 is not recorded on gcpn1 after the refused move"
[ "$(freezer_state cring r1)" = THAWED ] || fail "the refused move left r1 $(freezer_state cring r1)"
wait_for "the ring to exchange 20 more messages after the refused move" 60 ring_at_least $((c + 20))
ring_ok
say "ok: gcpn3 passed r1 (--check), then refused it while holding 10.77.0.111 (--check and the move); r1 ran on"
