#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# gcp-deps resolves each kind of grouping to the right processes and threads: a tree,
# a process group and a session (with members that moved to another group or session
# after they started), a cgroup, and a PID namespace (a unit of gcp-isolate).
source "$(dirname "$0")/lib.sh"
requires root freezer python3

# root (2 threads) -> stay (same group), mover (own group, same session), leaver (own
# session); each child writes its pid to a file once it has moved.
cat >"$work/family.py" <<'PY'
import os, sys, threading, time
out = sys.argv[1]
def child(kind):
    pid = os.fork()
    if pid == 0:
        if kind == "mover": os.setpgid(0, 0)
        if kind == "leaver": os.setsid()
        open(f"{out}/{kind}", "w").write(str(os.getpid()))
        time.sleep(1000)
        os._exit(0)
    return pid
threading.Thread(target=lambda: time.sleep(1000), daemon=True).start()
for k in ("stay", "mover", "leaver"): child(k)
open(f"{out}/root", "w").write(str(os.getpid()))
time.sleep(1000)
PY
setsid python3 "$work/family.py" "$work" </dev/null >/dev/null 2>&1 &
disown  # its death at cleanup is expected, not news
for f in root stay mover leaver; do wait_for "the $f process" 20 test -s "$work/$f"; done
root=$(cat "$work/root") stay=$(cat "$work/stay") mover=$(cat "$work/mover") leaver=$(cat "$work/leaver")
cleanup_family() { kill -9 "$root" "$stay" "$mover" "$leaver" 2>/dev/null || true; }
trap 'cleanup_family; cleanup' EXIT
sorted() { tr ' ' '\n' <<<"$*" | sort -n | tr '\n' ' '; }

# expect_members WHAT PIDS... -- GCP-DEPS ARGS...
expect_members() {
  local what=$1; shift
  local want=()
  while [ "$1" != -- ]; do want+=("$1"); shift; done
  shift
  run_tool "$work/g.json" "$work/g.err" gcp-deps "$@" || fail "gcp-deps $* failed: $(cat "$work/g.err")"
  local got
  got=$(json "$work/g.json" '" ".join(str(p) for p in sorted(d["units"][0]["processes"]))')
  [ "$(sorted $got)" = "$(sorted "${want[@]}")" ] || fail "$what: expected processes ${want[*]}, got $got"
}

expect_members "tree" "$root" "$stay" "$mover" "$leaver" -- --pid "$root" --tree
[ "$(json "$work/g.json" 'd["units"][0]["threads"]')" -eq 5 ] || fail "the tree has 4 processes and 5 threads, gcp-deps counts $(json "$work/g.json" 'd["units"][0]["threads"]') threads"
[ "$(json "$work/g.json" '[len(p["threads"]) for p in d["processes"] if p["pid"] == '"$root"'][0]')" -eq 2 ] ||
  fail "the root's two threads are not listed"
[ "$(json "$work/g.json" 'd["units"][0]["root"]')" = "$root" ] || fail "the tree's root is not $root"
expect_members "process group of the root" "$root" "$stay" -- --pgid "$root"
expect_members "process group of the mover" "$mover" -- --pgid "$mover"
expect_members "session of the root" "$root" "$stay" "$mover" -- --sid "$root"
expect_members "session of the leaver" "$leaver" -- --sid "$leaver"

cg=/sys/fs/cgroup/freezer/gcp-e2e-grouping
mkdir -p "$cg"
trap 'cleanup_family; rmdir '"$cg"' 2>/dev/null || true; cleanup' EXIT
echo "$stay" >"$cg/cgroup.procs"
echo "$leaver" >"$cg/cgroup.procs"
expect_members "cgroup by directory" "$stay" "$leaver" -- --cgroup "$cg"
expect_members "cgroup by relative path" "$stay" "$leaver" -- --cgroup gcp-e2e-grouping
[ "$(json "$work/g.json" 'd["units"][0]["root"]')" = None ] || fail "two unrelated processes are not one tree"
echo "$stay" >/sys/fs/cgroup/freezer/cgroup.procs
echo "$leaver" >/sys/fs/cgroup/freezer/cgroup.procs

expect_exit 2 gcp-deps --pgid 999999999
expect_stderr "process group 999999999 has no process"
expect_exit 2 gcp-deps --cgroup no/such/cgroup
expect_stderr "no cgroup 'no/such/cgroup'"

# A PID namespace: gcp-init and what it runs, from gcp-isolate.
start_job grp main sh -c 'sleep 1000 & sleep 1000 & wait'
init=$(json "$work/grp.job.json" 'd["units"][0]["pid"]')
wait_for "the unit's two sleeps" 20 bash -c "[ \$(pgrep -P \$(pgrep -P $init) -x sleep | wc -l) -eq 2 ]"
run_tool "$work/ns.json" "$work/ns.err" gcp-deps grp || fail "gcp-deps grp failed: $(cat "$work/ns.err")"
[ "$(json "$work/ns.json" 'len(d["units"][0]["processes"])')" -eq 4 ] || fail "the unit's PID namespace holds gcp-init, sh and two sleeps, gcp-deps found $(json "$work/ns.json" 'd["units"][0]["processes"]')"
[ "$(json "$work/ns.json" 'd["units"][0]["grouping"]')" = pidns ] || fail "grouping is not pidns"
expect_members "--pidns of the unit's init" $(json "$work/ns.json" '" ".join(map(str, d["units"][0]["processes"]))') -- --pidns "$init"
say "tree, process group, session, cgroup and PID namespace resolve to the right processes and threads"
