#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# What gcp-deps finds changes the checkpoint: a TCP pair inside one unit is dumped
# with the option its tie needs (--tcp-established, recorded in the manifest), killed
# and restarted, and its connection goes on with no byte lost or duplicated in either
# direction. A session that gcp did not start is registered as an ad-hoc unit
# (gcp-checkpoint --sid), stopped, and restarted with its own PIDs.
source "$(dirname "$0")/lib.sh"
requires root criu freezer python3

st=$work/pair.state
# On the node's network: gcp locks its connections there itself (a unit with a network
# namespace of its own gets it back from CRIU, which locks them inside).
run_opts=(--share net)
start_job tcpjob main "$workloads/tcppair" "$st" pair
wait_for "the TCP pair to exchange numbers" 20 count_at_least "$st" 5000
started=$(state "$st" started)
run_tool "$work/cp.json" "$work/cp.err" gcp-checkpoint tcpjob || fail "checkpoint failed: $(cat "$work/cp.err")"
[ "$(json "$work/cp.json" 'd["units"][0].get("checkpointerOptions")')" = "['--tcp-established']" ] ||
  fail "the checkpoint does not record --tcp-established: $(json "$work/cp.json" 'd["units"][0].get("checkpointerOptions")')"
[ "$(json "$work/cp.json" '"depsMs" in d["timings"]')" = True ] || fail "the checkpoint has no depsMs timing"
# Both ends of the loopback pair, as CRIU dumped them: the restart locks them again.
conns=$(json "$work/cp.json" '" ".join(sorted(c["src"] + ":" + str(c["srcPort"]) + ">" + c["dst"] + ":" + str(c["dstPort"]) for c in d["units"][0].get("tcpConnections", [])))')
set -- $conns
[ $# = 2 ] && [ "${1%%>*}" = "${2#*>}" ] && [ "${1#*>}" = "${2%%>*}" ] ||
  fail "the checkpoint does not record the pair's two ends as TCP connections: '$conns'"
ports="${1#*:}"; ports="${ports%%>*} ${1##*:}"
at_checkpoint=$(state "$st" count)
wait_for "the pair to go on after the checkpoint" 20 count_at_least "$st" $((at_checkpoint + 5000))
expect_ok "$st"
"$bin/gcp-isolate" kill tcpjob >/dev/null || fail "kill failed"
killed=$(state "$st" count)
# The dump (--leave-running) unlocked the connections when it ended; criu restore must
# find them locked again, with CRIU's own rules (mark 0xc114), or a restored end that
# sends first can be reset by its peer's kernel. A criu that notes the rules at its start:
real_criu=${GCP_CRIU:-$(command -v criu || echo /usr/local/sbin/criu)}
cat >"$work/noting-criu" <<SH
#!/bin/sh
[ "\$1" = restore ] && iptables-save -t filter >"$work/rules-at-restore"
exec "$real_criu" "\$@"
SH
# ... and one whose restores fail at once, unlocking nothing: gcp removes the lock.
cat >"$work/failing-criu" <<SH
#!/bin/sh
[ "\$1" = restore ] && { iptables-save -t filter >"$work/rules-at-failure"; exit 1; }
exec "$real_criu" "\$@"
SH
chmod +x "$work/noting-criu" "$work/failing-criu"
lock_rules() { grep -ci -- "--mark 0xc114.*--sport \($1\|$2\) --dport \($1\|$2\) -j DROP" "$3"; }
# Without a working iptables-restore the restart fails before criu runs, and says why.
mkdir -p "$work/no-iptables"
printf '#!/bin/sh\necho "iptables-restore: cannot run here" >&2\nexit 1\n' >"$work/no-iptables/iptables-restore"
chmod +x "$work/no-iptables/iptables-restore"
PATH="$work/no-iptables:$PATH" GCP_CRIU=$work/noting-criu run_tool "$work/rl.json" "$work/rl.err" gcp-restart tcpjob &&
  fail "a restart that could not lock the connections succeeded"
grep -q "locking the unit's TCP connections for the restore failed: iptables-restore: cannot run here" "$work/rl.err" ||
  fail "no error naming the lock: $(cat "$work/rl.err")"
[ ! -e "$work/rules-at-restore" ] || fail "criu ran although the connections were not locked"
GCP_CRIU=$work/failing-criu run_tool "$work/rf.json" "$work/rf.err" gcp-restart tcpjob &&
  fail "a restart whose criu failed succeeded"
[ "$(lock_rules $ports "$work/rules-at-failure")" -ge 4 ] ||
  fail "criu restore started without the lock of ports $ports: $(grep -i 0xc114 "$work/rules-at-failure")"
iptables-save -t filter >"$work/rules-after-failure"
[ "$(lock_rules $ports "$work/rules-after-failure")" = 0 ] ||
  fail "the failed restart left lock rules: $(grep -i 0xc114 "$work/rules-after-failure")"
# Its last step, reading what CRIU left (iptables-save), fails here: the unit runs, with a
# warning that says what to look at (CRIU itself has unlocked the connections).
mkdir -p "$work/no-iptables-save"
printf '#!/bin/sh\necho "iptables-save: cannot run here" >&2\nexit 1\n' >"$work/no-iptables-save/iptables-save"
chmod +x "$work/no-iptables-save/iptables-save"
sed -i "s|iptables-save -t filter|$(command -v iptables-save) -t filter|" "$work/noting-criu"  # the real one
PATH="$work/no-iptables-save:$PATH" GCP_CRIU=$work/noting-criu run_tool "$work/r.json" "$work/r.err" gcp-restart tcpjob ||
  fail "restart failed: $(cat "$work/r.err")"
grep -q "warning: .*removing the lock of the unit's TCP connections failed: iptables-save" "$work/r.err" ||
  fail "no warning that the lock could not be checked: $(cat "$work/r.err")"
[ "$(lock_rules $ports "$work/rules-at-restore")" -ge 4 ] ||
  fail "criu restore started without the lock of ports $ports: $(grep -i 0xc114 "$work/rules-at-restore")"
iptables-save -t filter >"$work/rules-after"
[ "$(lock_rules $ports "$work/rules-after")" = 0 ] || fail "the restart left lock rules: $(grep -i 0xc114 "$work/rules-after")"
wait_for "the restored pair to exchange numbers past the kill" 30 count_at_least "$st" $((killed + 5000))
expect_ok "$st"
[ "$(state "$st" started)" = "$started" ] || fail "the TCP pair started over"
say "TCP pair checkpointed with --tcp-established; restored with both ends locked (ports $ports), unlocked after; went on past $killed with every echo in order"

# An ad-hoc unit: a session started outside gcp, its own stdio, no other descriptors.
sst=$work/session.state
(
  for fd in $(ls /proc/$BASHPID/fd); do [ "$fd" -gt 2 ] && eval "exec $fd>&-"; done
  exec setsid "$workloads/pipeline" "$sst" </dev/null >"$work/session.out" 2>&1
) &
root=$!
jobs_started+=("sid-$root")
wait_for "the session's pipeline to run" 20 count_at_least "$sst" 50000
sstarted=$(state "$sst" started)
run_tool "$work/acp.json" "$work/acp.err" gcp-checkpoint --sid "$root" --stop || fail "ad-hoc checkpoint failed: $(cat "$work/acp.err")"
grep -q "registered session $root as job 'sid-$root'" "$work/acp.err" || fail "no registration line: $(cat "$work/acp.err")"
[ "$(json "$work/acp.json" 'd["units"][0]["grouping"]')" = sid ] || fail "the checkpoint does not record grouping sid"
grep -q '"event":"adopted".*"root":'"$root"'' "$GCP_STORE/jobs/sid-$root/events.jsonl" ||
  fail "the job's events do not record the adopted root $root: $(cat "$GCP_STORE/jobs/sid-$root/events.jsonl")"
wait "$root" 2>/dev/null || true
killed=$(state "$sst" count)
session_gone() { [ -z "$(ps -o pid= -s "$root" 2>/dev/null)" ]; }
wait_for "PID 1 to reap the stopped session" 60 session_gone
# Registered once: the same ad-hoc spec names the same job again, another does not.
expect_exit 2 gcp-checkpoint "sid-$root" --pid $$
expect_stderr "job 'sid-$root' exists and is not the process tree of pid $$"
run_tool "$work/ar.json" "$work/ar.err" gcp-restart "sid-$root" || fail "restart of the ad-hoc job failed: $(cat "$work/ar.err")"
[ "$(json "$work/ar.json" 'd["units"][0]["pid"]')" = "$root" ] || fail "the session came back with root pid $(json "$work/ar.json" 'd["units"][0]["pid"]'), not $root"
wait_for "the restored pipeline to receive more" 30 count_at_least "$sst" $((killed + 50000))
expect_ok "$sst"
[ "$(state "$sst" started)" = "$sstarted" ] || fail "the session's pipeline started over"
say "ad-hoc session $root registered, stopped and restarted with its own PIDs; pipe intact past $killed"
