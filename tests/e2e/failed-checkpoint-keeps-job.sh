#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# A unit that holds a TCP connection to a peer outside the job is refused before
# anything is frozen; forced, CRIU cannot take it, and that aborts the whole round: every unit is thawed and keeps running, no staging
# is left, and the previous checkpoint stays the latest, whole and restartable.
source "$(dirname "$0")/lib.sh"
requires root criu freezer python3

st=$work/c.state go=$work/go port_file=$work/port
# A listener outside the job that accepts one connection and holds it.
python3 - "$port_file" <<'PY' &
import socket, sys, time
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(1)
open(sys.argv[1], "w").write(str(s.getsockname()[1]))
c, _ = s.accept()
time.sleep(120)
PY
listener=$!
trap 'kill $listener 2>/dev/null || true; cleanup' EXIT
wait_for "the listener" 10 test -s "$port_file"
port=$(cat "$port_file")

start_job flaky counter "$workloads/counter" "$st" 8
# The second unit connects out only once told to, so that a first checkpoint succeeds.
run_opts=(--share net)  # its peer listens on the node's loopback
start_job flaky client bash -c "while [ ! -e $go ]; do sleep 0.1; done; exec 3<>/dev/tcp/127.0.0.1/$port; touch $go.connected; while :; do sleep 0.1; done"
wait_for "the counter" 30 count_at_least "$st" 5
run_tool "$work/cp1.json" "$work/cp1.err" gcp-checkpoint flaky || fail "first checkpoint failed: $(cat "$work/cp1.err")"

touch "$go"
wait_for "the client to connect out" 10 test -e "$go.connected"
expect_exit 1 gcp-checkpoint flaky
expect_stderr "unit 'client' of job 'flaky' would restart broken: tcp 127.0.0.1:[0-9]* -> 127.0.0.1:$port"
expect_stderr "nothing was checkpointed"
[ -z "$(ls -A "$GCP_STORE/jobs/flaky/staging")" ] || fail "a refused checkpoint left staging: $(ls "$GCP_STORE/jobs/flaky/staging")"
expect_exit 1 gcp-checkpoint flaky --force
expect_stderr "checkpoint of job 'flaky' aborted: unit 'client'"
expect_stderr "criu dump of pid [0-9]* failed: .*TCP"
expect_stderr "log: $GCP_STORE/jobs/flaky/logs/failed-3-client-dump.log"
grep -q "Connected TCP socket" "$GCP_STORE/jobs/flaky/logs/failed-3-client-dump.log" || fail "the CRIU log of the failure was not kept"
for u in counter client; do
  [ "$(freezer_state flaky $u)" = THAWED ] || fail "unit $u left $(freezer_state flaky $u) after the failed checkpoint"
done
c=$(state "$st" count)
wait_for "the counter to keep running after the failure" 10 count_at_least "$st" $((c + 5))
[ -z "$(ls -A "$GCP_STORE/jobs/flaky/staging")" ] || fail "staging left behind: $(ls "$GCP_STORE/jobs/flaky/staging")"
[ "$(ls "$GCP_STORE/jobs/flaky/checkpoints")" = 1 ] || fail "checkpoints are now: $(ls "$GCP_STORE/jobs/flaky/checkpoints")"
grep -q '"event":"checkpoint-failed"' "$GCP_STORE/jobs/flaky/events.jsonl" || fail "no checkpoint-failed event recorded"

# The previous checkpoint is whole: it restarts.
"$bin/gcp-isolate" kill flaky >/dev/null
run_tool "$work/r.json" "$work/r.err" gcp-restart flaky || fail "restart of checkpoint 1 failed: $(cat "$work/r.err")"
[ "$(json "$work/r.json" 'd["units"][0]["restoredFrom"]')" = 1 ] || fail "not restored from checkpoint 1"
c=$(state "$st" count)
wait_for "the restored counter" 20 count_at_least "$st" $((c + 3))
expect_ok "$st"
say "failed round left the job running and checkpoint 1 the latest"
