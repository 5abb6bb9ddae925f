#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# gcp-isolate's run/list/status/kill, a command that cannot start, and a checkpointer
# that gcp must refuse (missing, too old) with exit 4 and a hint.
source "$(dirname "$0")/lib.sh"
requires root criu freezer

# A command that does not exist: exit 1, one line, nothing left running, no cgroup left.
callbacks_before=$(ls /run/gcp/callbacks 2>/dev/null | sort)
expect_exit 1 gcp-isolate run --job iso --unit nope -- /no/such/program
expect_stderr "cannot run '/no/such/program': No such file or directory"
[ ! -d /sys/fs/cgroup/freezer/gcp/iso/nope ] || fail "the cgroup of a unit that never started was left"
[ ! -e "$GCP_STORE/jobs/iso" ] || fail "a job whose only unit never started was left in the store"
[ ! -d /sys/fs/cgroup/freezer/gcp/iso ] || fail "the job cgroup of a job whose only unit never started was left"
[ "$(ls /run/gcp/callbacks 2>/dev/null | sort)" = "$callbacks_before" ] ||
  fail "the callbacks directory of a unit that never started was left: $(ls /run/gcp/callbacks)"

# The unit is PID 1's child in its own namespace, in its cgroup, with GCP_JOB/GCP_UNIT.
start_job iso main sh -c 'echo "$GCP_JOB/$GCP_UNIT pid $$ init $(cat /proc/1/comm)"; exec sleep 300'
hostpid=$(json "$work/iso.job.json" 'd["units"][0]["pid"]')
[ "$(cgroup_procs iso main)" -eq 2 ] || fail "expected gcp-init and sleep in the cgroup, found $(cgroup_procs iso main)"
nspid=$(awk '/^NSpid/ {print $3}' "/proc/$hostpid/status")
[ "$nspid" = 1 ] || fail "gcp-init is pid '$nspid' in its namespace, expected 1"
[ "$(readlink "/proc/$hostpid/ns/pid")" != "$(readlink /proc/self/ns/pid)" ] || fail "the unit shares our PID namespace"
[ "$(readlink "/proc/$hostpid/ns/mnt")" != "$(readlink /proc/self/ns/mnt)" ] || fail "the unit shares our mount namespace"
# Its /proc is its own PID namespace's: PID 1 there is gcp-init.
wait_for "the unit's output" 5 grep -q "iso/main pid 2 init gcp-init" "$GCP_STORE/jobs/iso/logs/main.out"
[ ! -e "$top/proc.crtools" ] || fail "a proc mount point was left in the unit's working directory"

# A second unit of the same name is refused while the first runs.
expect_exit 2 gcp-isolate run --job iso --unit main -- sleep 1
expect_stderr "unit 'main' of job 'iso' is already running"

# status and list tell the live state; a unit whose command ended is 'exited'.
start_job iso short sh -c 'exit 0'
wait_for "the short unit to end" 10 bash -c "[ \$(wc -l </sys/fs/cgroup/freezer/gcp/iso/short/cgroup.procs) -eq 0 ]"
"$bin/gcp-isolate" status iso >"$work/status.json"
[ "$(json "$work/status.json" '[u["state"] for u in d["units"]]')" = "['running', 'exited']" ] ||
  fail "status says $(json "$work/status.json" '[u["state"] for u in d["units"]]')"
[ "$(json "$work/status.json" '[d["units"][0].get("processes"), d["units"][0].get("threads"), "processes" in d["units"][1]]')" = "[2, 2, False]" ] ||
  fail "status counts gcp-init and sleep (2 processes, 2 threads) for the running unit and nothing for the exited one: $(json "$work/status.json" '[(u.get("processes"), u.get("threads")) for u in d["units"]]')"
"$bin/gcp-isolate" list >"$work/list.json"
[ "$(json "$work/list.json" 'd[0]["units"]["main"]')" = running ] || fail "list does not show iso/main running"

# kill of one unit; of an unknown unit.
expect_exit 2 gcp-isolate kill iso --unit nosuch
"$bin/gcp-isolate" kill iso --unit main >/dev/null
[ "$(cgroup_procs iso main)" -eq 0 ] || fail "kill left processes"
[ ! -d /sys/fs/cgroup/freezer/gcp/iso/main ] || fail "kill left the cgroup"

# Checkpointer refusals: exit 4 with the reason and what to do; the job is untouched.
start_job iso main sleep 300
GCP_CRIU=/no/such/criu expect_exit 4 gcp-checkpoint iso
expect_stderr "GCP_CRIU='/no/such/criu' is not an executable"
expect_stderr "hint: run scripts/install-deps.sh"
printf '#!/bin/sh\necho "Version: 3.17"\n' >"$work/old-criu" && chmod +x "$work/old-criu"
GCP_CRIU=$work/old-criu expect_exit 4 gcp-checkpoint iso
expect_stderr "criu 3.17 at .*old-criu is older than 4.2"
printf '#!/bin/sh\n[ "$1" = --version ] && { echo "Version: 4.2.1"; exit 0; }\necho "Error (criu/cr-check.c:1): vdso: bad" >&2; exit 1\n' >"$work/broken-criu"
chmod +x "$work/broken-criu"
GCP_CRIU=$work/broken-criu expect_exit 4 gcp-checkpoint iso
expect_stderr "check' failed: vdso: bad"
[ "$(freezer_state iso main)" = THAWED ] || fail "a refused checkpoint left the job $(freezer_state iso main)"
[ ! -d "$GCP_STORE/jobs/iso/checkpoints/1" ] || fail "a refused checkpoint committed something"
# A passing `criu check` is remembered per boot and criu binary, with its version: the
# second probe skips the check and `criu --version`, a changed binary is checked again.
real_criu=$(command -v criu || echo /usr/local/sbin/criu)
printf '#!/bin/sh\necho "$1" >>"%s"\nexec "%s" "$@"\n' "$work/criu-calls" "$real_criu" >"$work/counting-criu"
chmod +x "$work/counting-criu"
checks() { grep -cx check "$work/criu-calls" || true; }
versions() { grep -cx -- --version "$work/criu-calls" || true; }
GCP_CRIU=$work/counting-criu "$bin/gcp-checkpoint" iso >/dev/null 2>"$work/c1.err" || fail "checkpoint through the wrapper failed: $(cat "$work/c1.err")"
[ "$(checks)" = 1 ] || fail "the first probe ran criu check $(checks) times"
grep -q "counting-criu" /run/gcp/criu-checked.json || fail "the passing check was not remembered"
GCP_CRIU=$work/counting-criu "$bin/gcp-checkpoint" iso >/dev/null 2>"$work/c2.err" || fail "second checkpoint failed: $(cat "$work/c2.err")"
[ "$(checks)" = 1 ] || fail "the second probe ran criu check again"
[ "$(versions)" = 1 ] || fail "the second probe asked criu --version again ($(versions) times in all)"
touch -d '1 minute ago' "$work/counting-criu"
GCP_CRIU=$work/counting-criu "$bin/gcp-checkpoint" iso >/dev/null 2>"$work/c3.err" || fail "third checkpoint failed: $(cat "$work/c3.err")"
[ "$(checks)" = 2 ] || fail "a changed criu binary was not checked again"
[ "$(versions)" = 2 ] || fail "a changed criu binary was not asked its version again"
say "isolation, states, checkpointer refusals and the remembered criu check as documented"
