# SPDX-License-Identifier: MIT
# Shared helpers of the end-to-end tests. A test script sources this file, calls
# `requires ...`, runs real tools on real workloads with real CRIU, and fails with
# `fail "why"`. Exit codes: 0 pass, 1 fail, 77 skipped (a failure under CI=true).
set -euo pipefail

top=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BUILD=${BUILD:-build}
case $BUILD in /*) ;; *) BUILD=$top/$BUILD ;; esac
bin=$BUILD/bin
workloads=$BUILD/tests/workloads
test_name=$(basename "$0" .sh)
work=$(mktemp -d "/tmp/gcp-e2e-$test_name.XXXXXX")
export GCP_STORE=$work/store
jobs_started=()
after_jobs=()  # commands cleanup runs once the jobs are killed, e.g. to delete a test's devices

say() { printf '%s: %s\n' "$test_name" "$*" >&2; }
fail() { say "FAIL: $*"; exit 1; }
skip() {
  if [ "${CI:-}" = true ]; then fail "requirement missing under CI: $*"; fi
  say "SKIP: $*"; exit 77
}

cleanup() {
  local rc=$?
  for j in "${jobs_started[@]}"; do "$bin/gcp-isolate" kill "$j" >/dev/null 2>&1 || true; done
  for c in "${after_jobs[@]}"; do eval "$c" >/dev/null 2>&1 || true; done
  if [ $rc -eq 0 ] || [ $rc -eq 77 ]; then rm -rf "$work"; else say "kept $work for inspection"; fi
}
trap cleanup EXIT

# requires root criu cgroup-freezer ...
requires() {
  local r
  for r in "$@"; do
    case $r in
      root) [ "$(id -u)" -eq 0 ] || skip "needs root" ;;
      criu)
        local c=${GCP_CRIU:-$(command -v criu || echo /usr/local/sbin/criu)}
        [ -x "$c" ] && "$c" check >/dev/null 2>&1 || skip "needs a criu whose 'criu check' passes (scripts/install-deps.sh)" ;;
      freezer) [ -d /sys/fs/cgroup/freezer ] || skip "needs the cgroup v1 freezer at /sys/fs/cgroup/freezer" ;;
      python3) command -v python3 >/dev/null || skip "needs python3" ;;
      *) fail "unknown requirement '$r'" ;;
    esac
  done
  [ -x "$bin/gcp-checkpoint" ] || fail "tools not built in $bin (run make)"
}

# start_job JOB UNIT CMD... : gcp-isolate run; the Job manifest goes to $work/JOB.job.json
start_job() {
  local job=$1 unit=$2; shift 2
  jobs_started+=("$job")
  "$bin/gcp-isolate" run --job "$job" --unit "$unit" -- "$@" >"$work/$job.job.json" ||
    fail "gcp-isolate run of $job/$unit failed"
}

# state FILE KEY: a value of a workload's state file
state() { sed -n "s/^$2=//p" "$1" 2>/dev/null | head -n1; }

# wait_for DESCRIPTION SECONDS COMMAND...: polls until COMMAND succeeds
wait_for() {
  local what=$1 secs=$2; shift 2
  local deadline=$((SECONDS + secs))
  until "$@"; do
    [ $SECONDS -lt $deadline ] || fail "timed out after ${secs}s waiting for $what"
    sleep 0.1
  done
}

count_at_least() { local c; c=$(state "$1" count); [ -n "$c" ] && [ "$c" -ge "$2" ]; }
checks_at_least() { local c; c=$(state "$1" checks); [ -n "$c" ] && [ "$c" -ge "$2" ]; }

# expect_ok FILE: the workload says status=ok
expect_ok() {
  [ "$(state "$1" status)" = ok ] || fail "workload state $1 says: $(tr '\n' ' ' <"$1")"
}

# cgroup_procs JOB UNIT: number of processes in the unit's cgroup
cgroup_procs() {
  local f=/sys/fs/cgroup/freezer/gcp/$1/$2/cgroup.procs
  if [ -f "$f" ]; then wc -l <"$f"; else echo 0; fi
}

freezer_state() { cat "/sys/fs/cgroup/freezer/gcp/$1/$2/freezer.state" 2>/dev/null || echo GONE; }

# json FILE EXPR: a value from a JSON file (python3 is part of the CRIU build deps)
json() { python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2], {"d": d}))' "$1" "$2"; }

# run_tool OUT ERR TOOL ARGS...: runs a gcp tool, keeps stdout/stderr, returns its exit code
run_tool() {
  local out=$1 err=$2 tool=$3; shift 3
  set +e
  "$bin/$tool" "$@" >"$out" 2>"$err"
  local rc=$?
  set -e
  return $rc
}

# expect_exit CODE TOOL ARGS...: runs TOOL, checks its exit code and that stderr has exactly
# one error line (plus optional hint); leaves stderr in $work/last.err
expect_exit() {
  local want=$1; shift
  local rc=0
  run_tool "$work/last.out" "$work/last.err" "$@" || rc=$?
  [ "$rc" -eq "$want" ] || fail "$* exited $rc, expected $want; stderr: $(cat "$work/last.err")"
  local errors
  errors=$(grep -c ': error: ' "$work/last.err" || true)
  [ "$errors" -eq 1 ] || fail "$* printed $errors error lines, expected one: $(cat "$work/last.err")"
  [ ! -s "$work/last.out" ] || fail "$* printed data on stdout although it failed"
}

expect_stderr() {
  grep -q -- "$1" "$work/last.err" || fail "stderr lacks '$1': $(cat "$work/last.err")"
}

# expect_counter_resumed STATE STARTED CHECKSUM BEFORE KILLED_AT: a restored counter
# writes its state again with the same start stamp and memory checksum, a count of at
# least BEFORE (seen before the checkpoint), and passes one more full memory check.
# Sets $after to the count it resumed at.
expect_counter_resumed() {
  local st=$1 started=$2 checksum=$3 before=$4 killed_at=$5 checks
  wait_for "the restored counter to write its state" 20 bash -c "[ \"\$(sed -n 's/^count=//p' '$st')\" != '$killed_at' ]"
  expect_ok "$st"
  [ "$(state "$st" started)" = "$started" ] || fail "the restored counter has another start stamp: it started over"
  [ "$(state "$st" checksum)" = "$checksum" ] || fail "memory checksum changed"
  after=$(state "$st" count)
  [ "$after" -ge "$before" ] || fail "restored count $after is below the count $before seen before the checkpoint"
  checks=$(state "$st" checks)
  wait_for "a full memory verification after restore" 30 checks_at_least "$st" $((checks + 1))
  expect_ok "$st"
}

no_criu_left() {
  ! pgrep -x criu >/dev/null || fail "a criu process was left running: $(pgrep -ax criu)"
}
