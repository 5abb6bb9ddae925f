#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# A unit with a network namespace and address of its own keeps its TCP connection to a
# unit of another job across a stop and a restart: the server unit A (10.78.0.2) is
# checkpointed with --stop, comes back in a fresh namespace with the same address and
# MAC, and the client unit B (10.78.0.3), which ran on meanwhile, goes on talking to it
# with no sequence number lost or repeated in either direction. Also: an address that
# is taken is refused, a plain checkpoint of such a unit is refused (it would run ahead
# of its checkpoint), a stale namespace is replaced, and a restart on a node without
# the parent device fails with one line and leaves nothing behind.
source "$(dirname "$0")/lib.sh"
requires root criu freezer python3
command -v ip >/dev/null && command -v nsenter >/dev/null || skip "needs ip (iproute2) and nsenter (util-linux)"

# The parent device: one end of a veth pair (this kernel has no dummy driver), whose
# macvlans in bridge mode reach each other.
dev=gcpnt0
! ip link show "$dev" >/dev/null 2>&1 || fail "device $dev exists already (another run of this test?)"
ip link add "$dev" type veth peer name "${dev}p" || skip "cannot create a veth pair"
on_exit ip link del "$dev"
ip link set "${dev}p" up && ip link set "$dev" up

ja=nt-netns-a jb=nt-netns-b jc=nt-netns-c
jobs_started+=("$ja" "$jb" "$jc")
nsa=/run/gcp/netns/$ja/srv nsb=/run/gcp/netns/$jb/cli
mac_a=02:67:0a:4e:00:02
in_ns() { local ns=$1; shift; nsenter --net="$ns" "$@"; }
link_of() { in_ns "$1" ip -br link show eth0 | awk '{print $3}'; }

"$bin/gcp-isolate" run --job "$ja" --unit srv --address 10.78.0.2/24 --via "$dev" -- \
  "$workloads/tcppair" "$work/a.state" server 7000 10.78.0.2 >"$work/a.job.json" || fail "gcp-isolate run --address of A failed"
[ "$(json "$work/a.job.json" 'd["units"][0]["network"]')" = "{'address': '10.78.0.2/24', 'parent': '$dev', 'mac': '$mac_a'}" ] ||
  fail "A's Job manifest has network $(json "$work/a.job.json" 'd["units"][0].get("network")')"
in_ns "$nsa" ip -br addr show eth0 | grep -q ' 10.78.0.2/24' || fail "A's namespace lacks its address: $(in_ns "$nsa" ip -br addr)"
[ "$(link_of "$nsa")" = "$mac_a" ] || fail "A's eth0 has MAC $(link_of "$nsa"), not $mac_a"
has_port() { [ -n "$(state "$1" port)" ]; }
wait_for "the server in unit A" 20 has_port "$work/a.state"
"$bin/gcp-isolate" run --job "$jb" --unit cli --address 10.78.0.3/24 --via "$dev" -- \
  "$workloads/tcppair" "$work/b.state" client 7000 10.78.0.2 >"$work/b.job.json" || fail "gcp-isolate run --address of B failed"
wait_for "B to exchange numbers with A" 20 count_at_least "$work/b.state" 5000
wait_for "A to receive numbers from B" 20 count_at_least "$work/a.state" 5000
started_a=$(state "$work/a.state" started) started_b=$(state "$work/b.state" started)

# A malformed address or a lone --via is bad usage.
expect_exit 2 gcp-isolate run --job "$jc" --address 10.78.0.9 --via "$dev" -- sleep 100
expect_stderr "address '10.78.0.9' is not an IPv4 address with a prefix length"
expect_exit 2 gcp-isolate run --job "$jc" --via "$dev" -- sleep 100
expect_stderr "via requires --address"
# An address that another unit has is refused, and nothing is left of the new job.
expect_exit 1 gcp-isolate run --job "$jc" --address 10.78.0.2/24 --via "$dev" -- sleep 100
expect_stderr "address 10.78.0.2 is used on this node by unit 'srv' of job '$ja'"
[ ! -e "/run/gcp/netns/$jc" ] && [ ! -d "$GCP_STORE/jobs/$jc" ] || fail "a refused run left its namespace or job behind"

# A unit that ran on after its checkpoint would get ahead of it: refused...
expect_exit 1 gcp-checkpoint "$ja"
expect_stderr "would restart broken: tcp"
expect_stderr "checkpoint with --stop"
# ...and moved with --stop, which keeps its link down from the freeze to the kill.
run_tool "$work/cp.json" "$work/cp.err" gcp-checkpoint "$ja" --stop || fail "checkpoint --stop of A failed: $(cat "$work/cp.err")"
[ "$(json "$work/cp.json" 'd["units"][0].get("checkpointerOptions")')" = "['--tcp-established']" ] ||
  fail "the checkpoint does not record --tcp-established: $(json "$work/cp.json" 'd["units"][0].get("checkpointerOptions")')"
[ ! -e "$nsa" ] || fail "A's namespace is left after --stop"
[ "$(cgroup_procs "$ja" srv)" -eq 0 ] || fail "A's processes are left after --stop"
"$bin/gcp-isolate" kill "$ja" >/dev/null || fail "gcp-isolate kill of the stopped A failed"
stopped_a=$(state "$work/a.state" count) stopped_b=$(state "$work/b.state" count)
sleep 1
expect_ok "$work/b.state"  # B's kernel retransmits; it got no reset

# What a crash between taking the link down and removing the namespace leaves: the
# namespace with the address, link down. The restart must not reuse it.
mkdir -p "$(dirname "$nsa")" && touch "$nsa" && unshare --net="$nsa" true
ip link add link "$dev" name eth0 netns "$nsa" address 02:67:0a:4e:ff:02 type macvlan mode bridge
in_ns "$nsa" ip addr add 10.78.0.2/24 dev eth0

run_tool "$work/r.json" "$work/r.err" gcp-restart "$ja" || fail "restart of A failed: $(cat "$work/r.err")"
restarted=$SECONDS
[ "$(json "$work/r.json" 'd["units"][0]["network"]["mac"]')" = "$mac_a" ] || fail "the restarted A's manifest has another MAC"
in_ns "$nsa" ip -br addr show eth0 | grep -q ' 10.78.0.2/24' || fail "the restarted A's namespace lacks its address"
[ "$(link_of "$nsa")" = "$mac_a" ] || fail "the restarted A's eth0 has MAC $(link_of "$nsa"), not $mac_a (the stale namespace was reused?)"
in_ns "$nsa" ip -br link show eth0 | grep -q ' UP ' || fail "the restarted A's eth0 is not up"
wait_for "B to get echoes from the restored A" 60 count_at_least "$work/b.state" $((stopped_b + 5000))
wait_for "the restored A to receive more numbers" 20 count_at_least "$work/a.state" $((stopped_a + 5000))
expect_ok "$work/a.state"
expect_ok "$work/b.state"
[ "$(state "$work/a.state" started)" = "$started_a" ] || fail "A started over"
[ "$(state "$work/b.state" started)" = "$started_b" ] || fail "B started over"
in_ns "$nsb" ip neigh show 10.78.0.2 | grep -q "lladdr $mac_a" || fail "B's neighbour entry of A: $(in_ns "$nsb" ip neigh show 10.78.0.2)"
say "A stopped at $stopped_a, restored in a fresh namespace (address and MAC kept); B went on past $stopped_b with every echo in order, resumed within $((SECONDS - restarted))s"

# A node without the parent device: the restart fails with one line, nothing left.
"$bin/gcp-isolate" kill "$ja" >/dev/null || fail "gcp-isolate kill of A failed"
[ ! -e "$nsa" ] || fail "gcp-isolate kill left A's namespace"
printf '{"network": {"parent": "gcpnone0"}}\n' >"$work/gcp.json"
GCP_CONFIG=$work/gcp.json expect_exit 1 gcp-restart "$ja"
expect_stderr "parent device 'gcpnone0' does not exist on this node"
[ ! -e "$nsa" ] && [ ! -d "/run/gcp/netns/$ja" ] || fail "a failed restart left A's namespace behind"
[ "$(cgroup_procs "$ja" srv)" -eq 0 ] || fail "a failed restart left processes"
grep -q '"event":"restart-failed"' "$GCP_STORE/jobs/$ja/events.jsonl" || fail "no restart-failed event"

"$bin/gcp-isolate" kill "$jb" >/dev/null || fail "gcp-isolate kill of B failed"
[ ! -e "$nsb" ] && [ ! -d "/run/gcp/netns/$jb" ] || fail "gcp-isolate kill left B's namespace"
say "taken address refused, plain checkpoint refused, stale namespace replaced, missing parent fails cleanly"
