#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# gcp-deps classifies real ties: a pipeline inside a unit and one whose reader is
# outside (gcp-checkpoint then refuses without --force, and the job keeps running),
# unix stream and datagram socket pairs, a TCP pair inside a unit, a TCP connection
# between two units of one job, a connection to a server outside on loopback, and
# memory shared with a process outside. The DOT output renders with graphviz.
source "$(dirname "$0")/lib.sh"
requires root criu freezer python3
command -v dot >/dev/null || skip "needs graphviz (dot): scripts/install-deps.sh"

# tie FILE KIND FIELD: FIELD of the first tie of KIND that has an end in a unit
tie() { json "$1" 'next((t.get("'"$3"'") for t in d["ties"] if t["kind"] == "'"$2"'" and any(e["unit"] for e in t["ends"])), "NONE")'; }
deps() { run_tool "$work/$1.json" "$work/$1.err" gcp-deps "${@:2}" || fail "gcp-deps ${*:2} failed: $(cat "$work/$1.err")"; }

# A pipeline inside one unit: nothing crosses.
start_job pipe-in main sh -c 'while :; do echo x; sleep 0.1; done | cat >/dev/null'
wait_for "the pipeline in its unit" 20 bash -c "[ \$(pgrep -P \$(pgrep -P $(json "$work/pipe-in.job.json" 'd["units"][0]["pid"]')) | wc -l) -ge 2 ]"
deps pin pipe-in
[ "$(tie "$work/pin.json" pipe scope)" = inside ] || fail "a pipe between two processes of the unit is not 'inside': $(tie "$work/pin.json" pipe scope)"
[ "$(json "$work/pin.json" '[t["kind"] for t in d["ties"] if t["scope"] in ("job", "external")]')" = "['parent']" ] ||
  fail "the pipeline inside one unit has crossing ties besides its root's parent: $(json "$work/pin.json" '[t["object"] for t in d["ties"] if t["scope"] in ("job", "external")]')"
[ "$(json "$work/pin.json" 'd["units"][0]["consistent"]')" = True ] || fail "the pipeline inside one unit is judged inconsistent"

# The same pipeline with its reader outside: the unit is the writer's tree only.
# Without this script's other descriptors, so that the one pipe is the tie in question.
(
  for fd in $(ls /proc/$BASHPID/fd); do [ "$fd" -gt 2 ] && eval "exec $fd>&-"; done
  exec setsid sh -c 'while :; do echo x; sleep 0.1; done | cat >/dev/null' </dev/null >/dev/null 2>&1
) &
outer=$!
disown  # its death at cleanup is expected, not news
outside=("$outer")
finish() {
  local rc=$?
  for p in "${outside[@]}"; do pkill -9 -s "$p" 2>/dev/null || true; kill -9 "$p" 2>/dev/null || true; done
  rm -f "${shm:-}"
  (exit $rc)
  cleanup
}
trap finish EXIT
wait_for "the outside pipeline" 20 bash -c "[ -n \"\$(pgrep -s $outer -x cat)\" ]"
writer=$(pgrep -s "$outer" -x sh | grep -v "^$outer\$" | head -n1)
[ -n "$writer" ] || writer=$outer
reader=$(pgrep -s "$outer" -x cat)
deps pout --pid "$writer" --tree
to_reader() { json "$work/pout.json" 'next((t.get("'"$1"'") for t in d["ties"] if t["kind"] == "pipe" and '"$reader"' in [e["pid"] for e in t["ends"]]), "NONE")'; }
[ "$(to_reader scope)" = external ] || fail "the pipe to the reader outside is '$(to_reader scope)', not external"
[ "$(to_reader verdict)" = breaks ] || fail "a pipe to a reader outside does not break the checkpoint"
to_reader advice | grep -q "pid $reader (cat)" || fail "the advice does not name the reader: $(to_reader advice)"
expect_exit 1 gcp-checkpoint half --pid "$writer"
expect_stderr "would restart broken: pipe"
expect_stderr "gcp-deps half --format text"
expect_stderr "--force"
[ "$(freezer_state half main)" = THAWED ] || fail "the refused unit is not thawed: $(freezer_state half main)"
kill -0 "$writer" || fail "the refused unit's process is gone"
[ -z "$(ls "$GCP_STORE/jobs/half/checkpoints" 2>/dev/null)" ] || fail "a refused checkpoint left something in the store"
jobs_started+=(half)

# Unix stream and datagram socket pairs inside one unit, and memory shared with a
# process outside (a writable shared mapping of one /dev/shm file).
shm=/dev/shm/gcp-e2e-deps-$$
head -c 65536 /dev/zero >"$shm"
cat >"$work/socks.py" <<'PY'
import mmap, os, socket, sys, time
a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
c, e = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
if os.fork() == 0:
    a.close(); c.close()
    time.sleep(1000)
b.close(); e.close()
f = open(sys.argv[1], "r+b"); m = mmap.mmap(f.fileno(), 65536)
open(sys.argv[2], "w").write("ready")
time.sleep(1000)
PY
start_job socks main python3 "$work/socks.py" "$shm" "$work/socks.ready"
python3 -c 'import mmap,sys,time; f=open(sys.argv[1],"r+b"); m=mmap.mmap(f.fileno(),65536); time.sleep(1000)' "$shm" &
mapper=$!
disown  # its death at cleanup is expected, not news
outside+=("$mapper")
wait_for "the socket pairs" 20 test -s "$work/socks.ready"
sleep 0.3
deps socks socks
for kind in unix-stream unix-dgram; do
  [ "$(tie "$work/socks.json" $kind scope)" = inside ] || fail "a $kind pair inside the unit is '$(tie "$work/socks.json" $kind scope)', not inside"
  [ "$(tie "$work/socks.json" $kind verdict)" = harmless ] || fail "a $kind pair inside the unit is not harmless"
done
[ "$(tie "$work/socks.json" posix-shm scope)" = external ] || fail "memory shared with pid $mapper outside is not reported: $(json "$work/socks.json" '[t["kind"] for t in d["ties"]]')"
[ "$(tie "$work/socks.json" posix-shm verdict)" = breaks ] || fail "memory shared with a process outside does not break the checkpoint"
tie "$work/socks.json" posix-shm advice | grep -q "pid $mapper" || fail "the advice does not name pid $mapper"

# TCP: a pair inside one unit, a connection between two units of one job, and a
# client whose server is outside every unit.
start_job tcp-in main "$workloads/tcppair" "$work/pair.state" pair
wait_for "the TCP pair" 20 count_at_least "$work/pair.state" 1000
deps tin tcp-in
[ "$(tie "$work/tin.json" tcp scope)" = inside ] || fail "a TCP pair inside one unit is '$(tie "$work/tin.json" tcp scope)'"
[ "$(tie "$work/tin.json" tcp need)" = tcp-established ] || fail "a TCP pair inside one unit does not need tcp-established: $(tie "$work/tin.json" tcp need)"
[ "$(json "$work/tin.json" '"tcp-established" in d["units"][0]["needs"]')" = True ] ||
  fail "the unit does not list tcp-established among its needs: $(json "$work/tin.json" 'd["units"][0]')"

# Units that talk to each other, or to the node, over loopback share the node's network.
run_opts=(--share net)
start_job tcp-job server "$workloads/tcppair" "$work/server.state" server 0
has_port() { [ -n "$(state "$1" port)" ]; }
wait_for "the server in unit 'server'" 20 has_port "$work/server.state"
port=$(state "$work/server.state" port)
"$bin/gcp-isolate" run --job tcp-job --unit client --share net -- "$workloads/tcppair" "$work/client.state" client "$port" >/dev/null
wait_for "the client in unit 'client'" 20 count_at_least "$work/client.state" 1000
deps tjob tcp-job
[ "$(tie "$work/tjob.json" tcp scope)" = job ] || fail "a TCP connection between two units is '$(tie "$work/tjob.json" tcp scope)', not job"
[ "$(tie "$work/tjob.json" tcp verdict)" = needs ] || fail "a TCP connection between two units of a coordinated job does not just need something of the checkpointer"
[ "$(tie "$work/tjob.json" tcp need)" = tcp-established ] || fail "a TCP connection between two units does not need tcp-established"
deps tjobu tcp-job --uncoordinated
[ "$(tie "$work/tjobu.json" tcp verdict)" = breaks ] || fail "a TCP connection between two units checkpointed one by one does not break"

"$workloads/tcppair" "$work/ext.state" server 0 >/dev/null 2>&1 &
ext=$!
disown  # its death at cleanup is expected, not news
outside+=("$ext")
wait_for "the outside server" 20 has_port "$work/ext.state"
start_job tcp-ext main "$workloads/tcppair" "$work/extc.state" client "$(state "$work/ext.state" port)"
wait_for "the client of the outside server" 20 count_at_least "$work/extc.state" 1000
deps text tcp-ext
[ "$(tie "$work/text.json" tcp scope)" = external ] || fail "a connection to a server outside is '$(tie "$work/text.json" tcp scope)', not external"
[ "$(tie "$work/text.json" tcp verdict)" = breaks ] || fail "a connection to a server outside does not break the checkpoint"
tie "$work/text.json" tcp advice | grep -q "pid $ext (tcppair)" || fail "the advice does not name the outside server: $(tie "$work/text.json" tcp advice)"
expect_exit 1 gcp-checkpoint tcp-ext
expect_stderr "would restart broken: tcp"
expect_ok "$work/extc.state"

# Graphviz renders the whole job, with clusters and crossing edges.
run_tool "$work/job.dot" "$work/dot.err" gcp-deps tcp-job --format dot || fail "gcp-deps --format dot failed: $(cat "$work/dot.err")"
dot -Tsvg "$work/job.dot" >"$work/job.svg" 2>"$work/dot.msgs" || fail "dot -Tsvg failed: $(cat "$work/dot.msgs")"
[ ! -s "$work/dot.msgs" ] || fail "dot complained: $(cat "$work/dot.msgs")"
grep -q 'cluster_1' "$work/job.dot" || fail "the DOT output has no cluster per unit"
grep -q '<svg' "$work/job.svg" || fail "dot wrote no SVG"
run_tool "$work/text.txt" "$work/text.err" gcp-deps tcp-ext --format text || fail "gcp-deps --format text failed"
grep -q "BREAKS: tcp" "$work/text.txt" || fail "the text summary does not say what breaks: $(cat "$work/text.txt")"
say "pipes, unix pairs, TCP inside/between units/outside and shared memory classified; DOT renders"
