#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# A unit moves to another node while its TCP connections run: a ring of three units on three
# test nodes, each with its own network namespace and address (gcp-isolate run --address),
# exchanging numbered messages (tests/workloads/ring fails on any byte lost or repeated).
# gcp-migrate moves r1 from gcpn1 to gcpn3: its address and MAC go with it, its source is
# stopped only once it runs on gcpn3, and the ring goes on with nothing lost or repeated.
source "$(dirname "$0")/lib.sh"
requires root criu freezer python3

start_nodes 3
start_ring mring 7100 100 own
wait_for "the ring to exchange 100 messages on every connection" 60 ring_at_least 100

run_tool "$work/mv.json" "$work/mv.err" gcp-migrate mring --unit r1 --to gcpn3 || fail "gcp-migrate failed: $(cat "$work/mv.err")"
[ "$(json "$work/mv.json" '[(u["node"], u["state"]) for u in d["units"] if u["name"] == "r1"][0]')" = "('gcpn3', 'running')" ] ||
  fail "r1 is not recorded running on gcpn3: $(json "$work/mv.json" '[(u["name"], u["node"], u["state"]) for u in d["units"]]')"
grep -q "moved unit 'r1' of job 'mring' to 'gcpn3'" "$work/mv.err" || fail "no summary of the move on stderr: $(cat "$work/mv.err")"
[ "$(cgroup_procs mring r1)" -eq 0 ] || fail "the source of r1 on gcpn1 still has processes"
shown=$("$nodes" exec gcpn3 nsenter --net=/run/gcp/netns/mring/r1 ip -4 -o addr show dev eth0 2>&1) || true
[ "$(awk '{print $4}' <<<"$shown")" = 10.77.0.101/24 ] ||
  fail "r1's network namespace on gcpn3 lacks its address 10.77.0.101/24: $shown"
c=$(ring_lowest)
wait_for "the ring to exchange 100 more messages on every connection after the move" 60 ring_at_least $((c + 100))
ring_ok
say "ok: r1 moved from gcpn1 to gcpn3 with its address; the ring went on from $c with nothing lost or repeated"
