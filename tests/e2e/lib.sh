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

say() { printf '%s: %s\n' "$test_name" "$*" >&2; }
fail() { say "FAIL: $*"; exit 1; }
skip() {
  if [ "${CI:-}" = true ]; then fail "requirement missing under CI: $*"; fi
  say "SKIP: $*"; exit 77
}

exit_hooks=()

# on_exit CMD ARGS...: runs CMD when the test exits, after its jobs are killed and before $work
# goes; the hook registered last runs first. A failing hook does not change the test's result.
on_exit() {
  local c
  printf -v c '%q ' "$@"
  exit_hooks=("$c" "${exit_hooks[@]}")
}

cleanup() {
  local rc=$? h
  for j in "${jobs_started[@]}"; do "$bin/gcp-isolate" kill "$j" >/dev/null 2>&1 || true; done
  for h in "${exit_hooks[@]}"; do eval "$h" || say "cleanup step failed: $h"; done
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

# slow_criu [SECONDS]: writes $work/slow-criu, a criu whose dumps wait SECONDS (30) in their pre-dump action
# ($work/slow-hook), i.e. once gcp has frozen the unit and let CRIU through its gate, and
# before CRIU has seized anything: long enough to kill gcp-checkpoint in the middle.
# (A wait before CRIU starts would come before the freeze.) `pkill -f "$work/slow-hook"`
# ends such dumps.
slow_criu() {
  local real=${GCP_CRIU:-$(command -v criu || echo /usr/local/sbin/criu)}
  cat >"$work/slow-hook" <<SH
#!/bin/sh
[ "\$CRTOOLS_SCRIPT_ACTION" = pre-dump ] && sleep ${1:-30}
exit 0
SH
  # Given before gcp's own --action-script, CRIU runs it after gcp's gate.
  cat >"$work/slow-criu" <<SH
#!/bin/sh
if [ "\$1" = dump ]; then shift; exec "$real" dump --action-script "$work/slow-hook" "\$@"; fi
exec "$real" "\$@"
SH
  chmod +x "$work/slow-hook" "$work/slow-criu"
}

# site_config JSON: writes /etc/gcp/gcp.json, the configuration that the tools read in user
# mode (through gcp-user, where GCP_CONFIG does not count); what was there before comes back
# when the test exits.
site_config() {
  local f=/etc/gcp/gcp.json
  if [ -z "${site_config_kept:-}" ]; then
    site_config_kept=1
    if [ -e "$f" ]; then
      cp -p "$f" "$work/site-gcp.json"
      on_exit cp -p "$work/site-gcp.json" "$f"
    else
      [ -d /etc/gcp ] || { mkdir /etc/gcp; on_exit rmdir /etc/gcp; }
      on_exit rm -f "$f"
    fi
  fi
  printf '%s\n' "$1" >"$f"
}

# start_job JOB UNIT CMD... : gcp-isolate run; the Job manifest goes to $work/JOB.job.json.
# Options of run in the array run_opts, e.g. run_opts=(--share net) for a unit on the
# node's network.
run_opts=()
start_job() {
  local job=$1 unit=$2; shift 2
  jobs_started+=("$job")
  "$bin/gcp-isolate" run --job "$job" --unit "$unit" "${run_opts[@]}" -- "$@" >"$work/$job.job.json" ||
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

# live_criu: "PID STAT ARGS" of every criu process that has not exited. An exited one
# whose parent was killed stays a zombie until PID 1 reaps it, which here can take seconds.
live_criu() {
  local p line
  for p in $(pgrep -x criu); do
    line=$(ps -o pid=,stat=,args= -p "$p" 2>/dev/null) || continue
    case $(echo "$line" | awk '{print $2}') in Z*) ;; *) echo "$line" ;; esac
  done
}
no_criu_left() {
  [ -z "$(live_criu)" ] || fail "a criu process was left running: $(live_criu)"
}

# start_nodes N: test nodes gcpn1..gcpnN (scripts/nodes.sh) seeing $GCP_STORE, taken down
# when the test exits; $GCP_CONFIG reaches them over ssh. Sets $nodes (the script) and
# $ssh_config.
start_nodes() {
  nodes=$top/scripts/nodes.sh
  [ ! -e /run/gcp-nodes/nodes ] || skip "test nodes are up already (scripts/nodes.sh down takes them down)"
  on_exit "$nodes" down
  "$nodes" up "$1" "$GCP_STORE" || skip "the test nodes did not come up (scripts/nodes.sh up; log /run/gcp-nodes/nodes.log)"
  ssh_config=$("$nodes" ssh-config)
  export GCP_CONFIG=$work/gcp.json
  printf '{"launcher": {"kind": "ssh", "command": ["ssh", "-F", "%s", "{node}"]}}\n' "$ssh_config" >"$GCP_CONFIG"
}

# start_slurm N: test nodes gcpn1..gcpnN with the Slurm cluster of scripts/slurm.sh on them,
# taken down when the test ends; SLURM_CONF exported for the clients.
start_slurm() {
  slurm=$top/scripts/slurm.sh
  start_nodes "$1"
  on_exit "$slurm" down
  "$slurm" up || skip "Slurm did not come up (scripts/slurm.sh up; log /run/gcp-nodes/slurm/slurm.log)"
  SLURM_CONF=$("$slurm" conf)
  export SLURM_CONF
}

# Numbered messages in a ring of units r1..r3 (tests/workloads/ring), state in $work/rI.state.
# start_ring JOB PORT BASE [own]: rI on gcpnI listens on PORT+I and sends to the next unit at
# 10.77.0.(BASE+next): the nodes' own addresses (BASE 10) or, with `own`, the units' own
# (gcp-isolate run --address 10.77.0.(BASE+I)/24).
start_ring() {
  local job=$1 port=$2 base=$3 own=${4:-} i next
  for i in 1 2 3; do
    next=$((i % 3 + 1))
    local extra=(--share net)
    [ -z "$own" ] || extra=(--address "10.77.0.$((base + i))/24")
    run_tool "$work/run$i.json" "$work/run$i.err" gcp-isolate run --job "$job" --unit "r$i" --node "gcpn$i" "${extra[@]}" \
      -- "$workloads/ring" "$work/r$i.state" $((port + i)) "10.77.0.$((base + next))" $((port + next)) ||
      fail "starting unit r$i on gcpn$i failed: $(cat "$work/run$i.err")"
  done
  jobs_started+=("$job")
}
ring_at_least() { for i in 1 2 3; do count_at_least "$work/r$i.state" "$1" || return 1; done; }
ring_ok() { for i in 1 2 3; do expect_ok "$work/r$i.state"; done; }
# ring_runs_on N SECS WHEN: every connection of the ring carries N more messages within SECS
# seconds, all in order ("the ring to run on WHEN").
ring_runs_on() {
  local c
  c=$(ring_lowest)
  wait_for "the ring to run on $3" "$2" ring_at_least $((c + $1))
  ring_ok
}
ring_lowest() {
  local m=-1 c i
  for i in 1 2 3; do c=$(state "$work/r$i.state" count); if [ $m -lt 0 ] || [ "$c" -lt $m ]; then m=$c; fi; done
  echo $m
}
