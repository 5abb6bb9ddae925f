#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# File locks and stopped processes:
# - a unit that holds an flock, a POSIX lock and an OFD lock, each on a file of its
#   own, needs file-locks (gcp-deps), is checkpointed with --stop and restarted, and
#   holds all three again (a process outside cannot take them) and goes on;
# - a unit that shares a lock on a file with a process outside it is refused at once,
#   naming the file and the process, and keeps running;
# - a unit with a stopped process, and one with a process another of its processes
#   traces (ptrace, as a debugger does), are refused at once (not after criu's
#   timeout) and keep running.
source "$(dirname "$0")/lib.sh"
requires root criu freezer python3
command -v flock >/dev/null || skip "needs flock (util-linux)"

cat >"$work/locker.py" <<'PY'
import fcntl, os, struct, sys, time
state, flk, posix, ofd = sys.argv[1:5]
a = open(flk, "w"); fcntl.flock(a, fcntl.LOCK_EX | fcntl.LOCK_NB)
b = open(posix, "w"); fcntl.lockf(b, fcntl.LOCK_EX | fcntl.LOCK_NB)
c = os.open(ofd, os.O_RDWR | os.O_CREAT, 0o600)
fcntl.fcntl(c, fcntl.F_OFD_SETLK, struct.pack("hhqqi4x", fcntl.F_WRLCK, 0, 0, 0, 0))
count = 0
while True:
    count += 1
    with open(state + ".tmp", "w") as f:
        f.write("status=ok\ncount=%d\n" % count)
    os.rename(state + ".tmp", state)
    time.sleep(0.1)
PY
flk=$work/flock.lck posix=$work/posix.lck ofd=$work/ofd.lck
# Whether a process outside can take the lock (0: it can, the unit does not hold it).
free_flock() { flock -n "$flk" true; }
free_posix() { python3 -c 'import fcntl,sys; fcntl.lockf(open(sys.argv[1],"w"), fcntl.LOCK_EX|fcntl.LOCK_NB)' "$posix" 2>/dev/null; }
free_ofd() {
  python3 -c 'import fcntl,os,struct,sys; fd=os.open(sys.argv[1],os.O_RDWR); fcntl.fcntl(fd, fcntl.F_OFD_SETLK, struct.pack("hhqqi4x", fcntl.F_WRLCK, 0, 0, 0, 0))' "$ofd" 2>/dev/null
}
held_all() { ! free_flock && ! free_posix && ! free_ofd; }
# expect_refused JOB TEXT...: gcp-checkpoint JOB fails within 20 s with one error line
# that says every TEXT, and leaves the unit thawed.
expect_refused() {
  local job=$1 t0=$SECONDS text; shift
  expect_exit 1 gcp-checkpoint "$job"
  for text in "$@"; do expect_stderr "$text"; done
  [ $((SECONDS - t0)) -lt 20 ] || fail "refusing $job took $((SECONDS - t0))s"
  [ "$(freezer_state "$job" main)" = THAWED ] || fail "the unit of $job was left $(freezer_state "$job" main)"
}

start_job lk-held main python3 "$work/locker.py" "$work/lk.state" "$flk" "$posix" "$ofd"
wait_for "the locker to take its locks" 15 count_at_least "$work/lk.state" 2
held_all || fail "the unit does not hold its three locks before the checkpoint"
run_tool "$work/deps.json" "$work/deps.err" gcp-deps lk-held || fail "gcp-deps failed: $(cat "$work/deps.err")"
[ "$(json "$work/deps.json" '"file-locks" in d["units"][0]["needs"]')" = True ] ||
  fail "gcp-deps does not say the unit needs file-locks: $(json "$work/deps.json" 'd["units"][0]')"
for kind in "flock write" "posix write" "ofd write"; do
  json "$work/deps.json" '[t["object"] for t in d["ties"] if t["kind"] == "file-lock"]' | grep -q "$kind" ||
    fail "gcp-deps shows no '$kind' lock: $(json "$work/deps.json" '[t for t in d["ties"] if t["kind"] == "file-lock"]')"
done
run_tool "$work/cp.json" "$work/cp.err" gcp-checkpoint --stop lk-held || fail "checkpoint of the locker failed: $(cat "$work/cp.err")"
! held_all || fail "the locks are still held after the unit was stopped"
before=$(state "$work/lk.state" count)
run_tool "$work/r.json" "$work/r.err" gcp-restart lk-held || fail "restart of the locker failed: $(cat "$work/r.err")"
wait_for "the restored locker to go on" 15 count_at_least "$work/lk.state" $((before + 3))
held_all || fail "the restored unit does not hold its three locks (flock free: $(free_flock && echo yes || echo no))"
say "flock, POSIX and OFD locks held again after the restart"
"$bin/gcp-isolate" kill lk-held >/dev/null

# A lock shared with a process outside every unit.
shared=$work/shared.lck
flock -s "$shared" sleep 1000 >/dev/null 2>&1 &
outside=$!
# flock and its sleep, by PID.
stop_outside() { kill $(pgrep -P $outside) $outside 2>/dev/null || true; }
on_exit stop_outside
outside_locked() { ! flock -n -x "$shared" true; }
wait_for "the process outside to take its shared lock" 10 outside_locked
start_job lk-shared main flock -s "$shared" sleep 1000
unit_locked() { "$bin/gcp-deps" lk-shared 2>/dev/null | grep -q '"file-lock"'; }
wait_for "the unit to take its shared lock" 10 unit_locked
expect_refused lk-shared "would restart broken: file-lock $shared" "outside the unit"

# A stopped process.
start_job lk-stopped main sh -c 'sleep 1000 & kill -STOP $!; wait'
stopped_in_unit() { grep -l '^State:.*T (stopped)' $(sed 's|^|/proc/|; s|$|/status|' "/sys/fs/cgroup/freezer/gcp/lk-stopped/main/cgroup.procs") >/dev/null 2>&1; }
wait_for "the unit's child to stop" 10 stopped_in_unit
expect_refused lk-stopped "would restart broken: stopped pid" "kill -CONT"
[ "$(cgroup_procs lk-stopped main)" -ge 3 ] || fail "the refused unit did not keep running"

# A traced process: the unit's python forks a child and attaches to it (PTRACE_ATTACH),
# then lets it run on, traced.
cat >"$work/tracer.py" <<'PY'
import ctypes, os, time
child = os.fork()
if child == 0:
    while True:
        time.sleep(1)
libc = ctypes.CDLL(None, use_errno=True)
if libc.ptrace(16, child, None, None) != 0:  # PTRACE_ATTACH
    raise SystemExit("ptrace attach: %s" % os.strerror(ctypes.get_errno()))
os.waitpid(child, 0)
libc.ptrace(7, child, None, None)  # PTRACE_CONT
time.sleep(100000)
PY
start_job lk-traced main python3 "$work/tracer.py"
traced_in_unit() { grep -l '^TracerPid:[[:space:]]*[1-9]' $(sed 's|^|/proc/|; s|$|/status|' "/sys/fs/cgroup/freezer/gcp/lk-traced/main/cgroup.procs") >/dev/null 2>&1; }
wait_for "the unit's child to be traced" 10 traced_in_unit
expect_refused lk-traced "would restart broken: traced pid" "detach the tracer"
[ "$(cgroup_procs lk-traced main)" -ge 3 ] || fail "the refused traced unit did not keep running"
say "PASS"
