#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# A unit has IPC, UTS and network namespaces of its own, and gets them back on restart:
# - a unit that sets its host name leaves the node's alone, and keeps its own across a
#   checkpoint with --stop and a restart;
# - a unit with System V shared memory (attached in two processes), a semaphore and a
#   message queue checkpoints and restarts with all three intact, and none of them
#   shows on the node;
# - two jobs that create IPC objects under the same key (exclusively) both run, and
#   both come back when restarted on one node;
# - a launcher and three ranks over loopback TCP on a fixed port are checkpointed with
#   --stop and restarted 20 times in a row, each time going on with no number lost,
#   while the node itself holds the same port;
# - --share ipc,uts,net gives the node's namespaces instead.
source "$(dirname "$0")/lib.sh"
requires root criu freezer python3
command -v nsenter >/dev/null || skip "needs nsenter (util-linux)"

node_host=$(hostname)
ns_of() { readlink "/proc/$1/ns/$2"; }
pid_of() { json "$work/$1.job.json" 'd["units"][0]["pid"]'; }
# The PID of the unit's first process below gcp-init (its command).
command_pid() { pgrep -P "$(pid_of "$1")" | head -n1; }
restart() {
  run_tool "$work/$1.job.json" "$work/$1.r.err" gcp-restart "$1" || fail "restart of $1 failed: $(cat "$work/$1.r.err")"
}
stop_checkpoint() {
  run_tool "$work/$1.cp.json" "$work/$1.cp.err" gcp-checkpoint --stop "$1" ||
    fail "checkpoint --stop of $1 failed: $(cat "$work/$1.cp.err")"
}

# --- host name ----------------------------------------------------------------------
start_job nt-uts main sh -c 'hostname nt-unit-host && exec sleep 1000'
wait_for "the unit to set its host name" 10 bash -c "[ \"\$(nsenter -u -t $(pid_of nt-uts) hostname)\" = nt-unit-host ]"
[ "$(hostname)" = "$node_host" ] || fail "the unit changed the node's host name to $(hostname)"
for ns in uts ipc net; do
  [ "$(ns_of "$(pid_of nt-uts)" $ns)" != "$(ns_of $$ $ns)" ] || fail "the unit shares the node's $ns namespace"
done
stop_checkpoint nt-uts
restart nt-uts
[ "$(nsenter -u -t "$(pid_of nt-uts)" hostname)" = nt-unit-host ] || fail "the restarted unit lost its host name"
[ "$(hostname)" = "$node_host" ] || fail "the restart changed the node's host name to $(hostname)"
"$bin/gcp-isolate" kill nt-uts >/dev/null

# --- System V IPC, and two jobs with one key ------------------------------------------
key=$((0x6763 + RANDOM))
ipcs_before=$(ipcs | grep -ci "$(printf '0x%08x' $key)" || true)
[ "$ipcs_before" -eq 0 ] || fail "the node has IPC objects with key $key already"
start_job nt-ipc-a main "$workloads/sysvipc" "$work/a.state" $key
start_job nt-ipc-b main "$workloads/sysvipc" "$work/b.state" $key
for j in a b; do wait_for "sysvipc $j to run" 15 count_at_least "$work/$j.state" 3; expect_ok "$work/$j.state"; done
[ "$(ipcs | grep -ci "$(printf '0x%08x' $key)" || true)" -eq 0 ] || fail "the units' IPC objects show on the node: $(ipcs)"
for j in a b; do stop_checkpoint nt-ipc-$j; done
for j in a b; do
  before=$(state "$work/$j.state" count)
  restart nt-ipc-$j
  wait_for "sysvipc $j to go on after its restart" 15 count_at_least "$work/$j.state" $((before + 3))
  expect_ok "$work/$j.state"
done
[ "$(ipcs | grep -ci "$(printf '0x%08x' $key)" || true)" -eq 0 ] || fail "the restored IPC objects show on the node: $(ipcs)"
say "two jobs with IPC key $key restarted side by side"

# --- loopback TCP, restarted 20 times -----------------------------------------------
port=$((20000 + RANDOM % 20000))
# The node holds the very port on its own loopback all along: a unit that shared it
# could neither start nor come back.
python3 -c 'import socket,sys,time; s=socket.socket(); s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(); time.sleep(600)' $port >/dev/null 2>&1 &
holder=$!
on_exit kill $holder
start_job nt-tcp main "$workloads/tcpstar" "$work/tcp.state" $port 3
wait_for "the ranks to talk" 15 count_at_least "$work/tcp.state" 100
rounds=${NT_TCP_ROUNDS:-20}
t0=$SECONDS
for i in $(seq "$rounds"); do
  stop_checkpoint nt-tcp
  before=$(state "$work/tcp.state" count)
  restart nt-tcp
  wait_for "the ranks to talk after restart $i" 15 count_at_least "$work/tcp.state" $((before + 100))
  expect_ok "$work/tcp.state"
done
say "launcher and 3 ranks on 127.0.0.1:$port restarted $rounds times in a row in $((SECONDS - t0))s"

# --- --share ---------------------------------------------------------------------------
"$bin/gcp-isolate" run --job nt-share --unit main --share ipc,uts,net -- sleep 1000 >"$work/nt-share.job.json" ||
  fail "gcp-isolate run --share ipc,uts,net failed"
jobs_started+=(nt-share)
for ns in uts ipc net; do
  [ "$(ns_of "$(pid_of nt-share)" $ns)" = "$(ns_of $$ $ns)" ] || fail "--share $ns: the unit has a $ns namespace of its own"
done
[ "$(json "$work/nt-share.job.json" 'd["units"][0]["share"]')" = "['ipc', 'net', 'uts']" ] ||
  fail "the Job manifest does not record the shared namespaces"
expect_exit 2 gcp-isolate run --job nt-bad --share pid -- true
expect_exit 2 gcp-isolate run --job nt-bad --share net --address 10.79.0.2/24 -- true
say "PASS"
