#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The example application of gcp-callbacks(7) (tests/workloads/tcp-seq-client.c) keeps a
# TCP connection to a server outside its unit and sends numbered messages. It drains and
# closes the connection in pre-checkpoint and reconnects in post-checkpoint and
# post-restart, so CRIU never sees an established connection (no --tcp-established).
# Across a checkpoint, a kill and a restart from that checkpoint, the server receives
# every number exactly once, in order: none lost, none twice.
source "$(dirname "$0")/lib.sh"
requires root criu freezer python3

port_file=$work/port status=$work/server.status st=$work/client.state job=cb-tcp-$$
# The server: one connection at a time; "hello N" -> "ack M" (the next number it expects);
# then "seq X" lines, each must be M, M+1, ...; it closes its side on the client's EOF.
python3 - "$port_file" "$status" <<'PY' &
import os, socket, sys
port_file, status = sys.argv[1], sys.argv[2]
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", 0)); s.listen(4)
open(port_file, "w").write(str(s.getsockname()[1]))
expected, conns, received, errors, closed_at = 1, 0, 0, [], []
def save():
    with open(status + ".tmp", "w") as f:
        f.write(f"expected={expected}\nconnections={conns}\nreceived={received}\nerrors={len(errors)}\nfirst_error={errors[0] if errors else ''}\nclosed_at={' '.join(map(str, closed_at))}\n")
    os.rename(status + ".tmp", status)
save()
while True:
    c, _ = s.accept()
    f = c.makefile("rwb")
    try:
        hello = f.readline().split()
        if hello[:1] != [b"hello"]: errors.append(f"bad hello {hello}")
        f.write(b"ack %d\n" % expected); f.flush()
        for line in f:
            if not line.endswith(b"\n"): break  # cut by a kill: never counted, so never lost
            x = int(line.split()[1])
            if x != expected: errors.append(f"got {x}, expected {expected}")
            expected, received = max(expected, x + 1), received + 1
            save()
    except (ConnectionError, ValueError, IndexError) as e:
        errors.append(f"connection {conns}: {e}")
    conns += 1
    closed_at.append(expected)
    save()
    try:
        c.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    f.close(); c.close()
PY
server=$!
trap 'kill $server 2>/dev/null || true; cleanup' EXIT
wait_for "the server" 10 test -s "$port_file"
at_least() { local v; v=$(state "$status" "$1"); [ -n "$v" ] && [ "$v" -ge "$2" ]; }

# On the node's network: its server runs outside the unit, on the node's loopback.
run_opts=(--share net)
start_job "$job" main "$workloads/tcp-seq-client" "$st" "$(cat "$port_file")"
wait_for "messages at the server" 20 at_least expected 30
run_tool "$work/cp.json" "$work/cp.err" gcp-checkpoint "$job" || fail "checkpoint failed: $(cat "$work/cp.err")"
[ "$(json "$work/cp.json" 'd["units"][0]["callbacks"]')" = socket ] || fail "pre-checkpoint did not go through the socket"
wait_for "the reconnect after post-checkpoint" 10 at_least connections 1
wait_for "messages after the checkpoint" 20 at_least expected $(($(state "$status" expected) + 30))

"$bin/gcp-isolate" kill "$job" >/dev/null
wait_for "the server to see the killed connection end" 10 at_least connections 2
at_kill=$(state "$status" expected)
run_tool "$work/r.json" "$work/r.err" gcp-restart "$job" || fail "restart failed: $(cat "$work/r.err")"
grep -q warning "$work/r.err" && fail "restart warned: $(cat "$work/r.err")"
wait_for "messages after the restart" 20 at_least expected $((at_kill + 30))
wait_for "the client's state" 10 bash -c "[ \"\$(sed -n 's/^connected=//p' '$st')\" = 1 ]"
expect_ok "$st"

[ "$(state "$status" errors)" = 0 ] || fail "the server saw numbers out of order: $(state "$status" first_error)"
conns=$(state "$status" connections)
[ "$conns" -ge 2 ] || fail "the server saw $conns closed connections, expected the drained one and the killed one"
# The client drained at D (the first connection's end) and was killed with the server at K:
# restored at D, it was told K and sent nothing of D..K-1 again.
read -r drained killed _ <<<"$(state "$status" closed_at)"
skipped=$(state "$st" skipped)
[ "$skipped" -eq $((killed - drained)) ] ||
  fail "the restored client skipped $skipped numbers; drained at $drained and killed at $killed it should skip $((killed - drained))"
cp "$status" "$work/snapshot"  # one consistent reading of the live file
received=$(state "$work/snapshot" received) expected=$(state "$work/snapshot" expected)
[ "$received" -eq $((expected - 1)) ] || fail "the server received $received messages for numbers 1..$((expected - 1))"
say "numbers 1..$((expected - 1)) each received once over $((conns + 1)) connections; drained for the checkpoint at $drained, killed at $killed, the restored client went on at the server's ack ($skipped not resent)"
