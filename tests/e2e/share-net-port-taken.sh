#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# A unit that shares the node's network (--share net) listens on a port; while it is
# checkpointed and stopped, another process takes that port. The restart fails at once
# with one line naming the address, the port and the process that holds it, and leaves
# nothing running; once the port is free, the same checkpoint restarts and listens again.
source "$(dirname "$0")/lib.sh"
requires root criu freezer

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
listen="import socket,time; s=socket.socket(); s.bind(('127.0.0.1', $port)); s.listen(); time.sleep(100000)"
run_opts=(--share net)
start_job lst main python3 -c "$listen"
listening() { [ -n "$(ss -Hltn "sport = :$port")" ]; }
wait_for "the unit to listen on port $port" 30 listening
run_tool "$work/cp.json" "$work/cp.err" gcp-checkpoint lst --stop || fail "checkpoint failed: $(cat "$work/cp.err")"

python3 -c "$listen" &
holder=$!
on_exit bash -c "kill $holder 2>/dev/null || true"
wait_for "another process to hold port $port" 30 listening
expect_exit 1 gcp-restart lst
expect_stderr "127.0.0.1:$port/tcp, held by pid $holder 'python3'"
expect_stderr "hint: .*stop what holds 127.0.0.1:$port/tcp"
[ "$(cgroup_procs lst main)" -eq 0 ] || fail "the failed restart left processes in the unit's cgroup"

kill $holder
wait $holder 2>/dev/null || true
run_tool "$work/r.json" "$work/r.err" gcp-restart lst || fail "restart with the port free failed: $(cat "$work/r.err")"
wait_for "the restored unit to listen on port $port again" 30 listening
say "port $port taken: refused naming pid $holder; free: restarted and listening"
