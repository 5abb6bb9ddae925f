#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Two users who are not root, in group gcp, with a job each in one store, through gcp-user
# installed setuid root by 'make install' (into a prefix of this test's). Each starts a unit,
# whose processes run as that user; checkpoints, kills and restarts it (the counter goes on
# from the checkpoint); moves a unit from one test node to another; removes its jobs. Neither
# can list, show, verify, checkpoint, restore, move, kill or remove the other's job (one error
# line, exit 3), nor list the store or the scratch, nor read the other's packs. What only root
# may do is refused (a store of one's choosing, --address, --agent, gc); GCP_CRIU,
# GCP_TRANSLIB_PATH, GCP_CONFIG, GCP_INIT, GCP_SCRATCH and LD_PRELOAD in a user's environment
# never reach root; a unit holding a setuid program is not checkpointed for its user.
source "$(dirname "$0")/lib.sh"
requires root criu freezer python3
for c in useradd userdel groupadd groupdel setpriv cc make; do command -v "$c" >/dev/null || skip "needs $c"; done
chmod 755 "$work"
store=$GCP_STORE

# ---- gcp installed as a site installs it, and two users in group gcp
drop_gcp_group() { if getent group gcp >/dev/null; then groupdel gcp; fi; }
getent group gcp >/dev/null || on_exit drop_gcp_group
prefix=$work/prefix
make -C "$top" --no-print-directory BUILD="$BUILD" PREFIX="$prefix" install >"$work/install.log" 2>&1 ||
  fail "make install failed: $(tail -n 5 "$work/install.log")"
helper=$prefix/libexec/gcp/gcp-user
[ "$(stat -c '%U:%G %a' "$helper")" = "root:gcp 4750" ] || fail "make install left gcp-user $(stat -c '%U:%G %a' "$helper")"

users=(gcp-e2e-a gcp-e2e-b)
for u in "${users[@]}"; do
  if id "$u" >/dev/null 2>&1; then userdel -f "$u" || fail "user '$u' is left from an earlier run and cannot be removed"; fi
done
for u in "${users[@]}"; do
  on_exit userdel -f "$u"
  useradd -M -G gcp -s /bin/sh "$u" || fail "useradd $u failed"
  mkdir -m 700 "$work/$u"
  chown "$u:$u" "$work/$u"
done
a=gcp-e2e-a b=gcp-e2e-b
uid_a=$(id -u $a) uid_b=$(id -u $b)
site_config "{\"stores\": [\"$store\"]}"

# as USER TOOL ARGS...: the installed TOOL run by USER in its own directory, with a plain
# environment and USER_ENV on top; stdout in $work/last.out, stderr in $work/last.err.
USER_ENV=()
as() {
  local u=$1 tool=$2; shift 2
  local rc=0
  (cd "$work/$u" && setpriv --reuid="$u" --regid="$u" --init-groups \
    env -i PATH=/usr/bin:/bin HOME="$work/$u" "${USER_ENV[@]}" "$prefix/bin/$tool" "$@") \
    >"$work/last.out" 2>"$work/last.err" || rc=$?
  return $rc
}
ok_as() { as "$@" || fail "$2 ${*:3} as $1 failed: $(cat "$work/last.err")"; }
# refused_as CODE USER TOOL ARGS...: one error line, nothing on stdout
refused_as() {
  local want=$1 rc=0; shift
  as "$@" || rc=$?
  [ "$rc" -eq "$want" ] || fail "$2 ${*:3} as $1 exited $rc, expected $want: $(cat "$work/last.err")"
  [ "$(grep -c ': error: ' "$work/last.err")" -eq 1 ] || fail "$2 ${*:3} as $1 did not print one error line: $(cat "$work/last.err")"
  [ ! -s "$work/last.out" ] || fail "$2 ${*:3} as $1 printed data although it was refused: $(cat "$work/last.out")"
}
# runs_as JOB UNIT UID [CGROUP]: every process of the unit (its gcp-init too) has UID for
# all four of its uids and no capability; CGROUP is the unit's (gcp/JOB/UNIT)
runs_as() {
  local f=/sys/fs/cgroup/freezer/${4:-gcp/$1/$2}/cgroup.procs p n=0 t=$'\t'
  for p in $(cat "$f"); do
    n=$((n + 1))
    grep -qx "Uid:$t$3$t$3$t$3$t$3" "/proc/$p/status" ||
      fail "pid $p of unit $1/$2 does not run as uid $3: $(grep '^Uid:' "/proc/$p/status")"
    grep -qx "CapPrm:${t}0000000000000000" "/proc/$p/status" || fail "pid $p of unit $1/$2 holds capabilities"
  done
  [ "$n" -ge 2 ] || fail "unit $1/$2 has $n processes, expected gcp-init and the counter"
}
# setuid_running JOB UID: a process of the unit runs with uid 0 as its effective uid
setuid_running() {
  local p t=$'\t'
  for p in $(cat "/sys/fs/cgroup/freezer/gcp/$1/main/cgroup.procs"); do
    grep -qx "Uid:$t$2${t}0${t}0${t}0" "/proc/$p/status" 2>/dev/null && return 0
  done
  return 1
}

# ---- each user starts a unit: it runs as that user, with no trace of gcp-user
for u in a b; do
  user=${!u}
  jobs_started+=("j$u")
  ok_as "$user" gcp-isolate --store "$store" run --job "j$u" -- "$workloads/counter" "$work/$user/c.state" 16
  [ "$(json "$work/last.out" 'd["owner"]["uid"]')" = "$(id -u "$user")" ] || fail "job j$u is not recorded as $user's"
done
for u in a b; do
  user=${!u}
  wait_for "the counter of $user" 30 count_at_least "$work/$user/c.state" 3
  runs_as "j$u" main "$(id -u "$user")"
done
# The counter's host pid (its state file has the one inside its namespace).
counter_a=$(for p in $(cat /sys/fs/cgroup/freezer/gcp/ja/main/cgroup.procs); do
  [ "$(cat "/proc/$p/comm")" = counter ] && echo "$p"; done)
[ -n "$counter_a" ] || fail "no counter process in a's unit"
env_a=$(tr '\0' '\n' <"/proc/$counter_a/environ")
grep -qx "USER=$a" <<<"$env_a" || fail "the unit of $a lacks USER=$a: $env_a"
! grep -q "GCP_CALLER_UID" <<<"$env_a" || fail "GCP_CALLER_UID reached the unit: $env_a"

# ---- each sees its own job only
for u in a b; do
  user=${!u} other=$([ $u = a ] && echo b || echo a)
  ok_as "$user" gcp-isolate --store "$store" list
  [ "$(json "$work/last.out" '[j["job"] for j in d]')" = "['j$u']" ] || fail "gcp-isolate list as $user: $(cat "$work/last.out")"
  ok_as "$user" gcp-store --store "$store" ls
  [ "$(json "$work/last.out" '[j["job"] for j in d]')" = "['j$u']" ] || fail "gcp-store ls as $user: $(cat "$work/last.out")"
  refused_as 3 "$user" gcp-isolate --store "$store" status "j$other"
  grep -q "job 'j$other' belongs to another user, not to you (uid $(id -u "$user"))" "$work/last.err" ||
    fail "no word on whose job it is: $(cat "$work/last.err")"
  ! grep -q "uid $(id -u "${!other}")" "$work/last.err" || fail "the refusal names the other user: $(cat "$work/last.err")"
done

# ---- a checkpoints, kills and restarts its job; it goes on from the checkpoint, as a
before=$(state "$work/$a/c.state" count)
started=$(state "$work/$a/c.state" started)
checksum=$(state "$work/$a/c.state" checksum)
ok_as $a gcp-checkpoint --store "$store" ja
[ "$(json "$work/last.out" 'd["seq"]')" = 1 ] || fail "a's checkpoint is not number 1: $(cat "$work/last.out")"

# b can do nothing with a's job, and a's job does not notice
for cmd in "gcp-isolate status ja" "gcp-isolate kill ja" "gcp-store ls ja" "gcp-store show ja" "gcp-store verify ja" \
  "gcp-store rm ja" "gcp-store rm ja --seq 1" "gcp-checkpoint ja" "gcp-restart ja" "gcp-deps ja" \
  "gcp-migrate ja --to gcpn2" "gcp-checkpoint --pid $counter_a bs" "gcp-deps --pid $counter_a"; do
  # shellcheck disable=SC2086
  refused_as 3 $b ${cmd%% *} --store "$store" ${cmd#* }
done
[ "$(freezer_state ja main)" = THAWED ] || fail "a's unit is $(freezer_state ja main) after b's attempts"
[ -e "$store/jobs/ja/checkpoints/1/manifest.json" ] || fail "a's checkpoint went"
# nor list the store or the scratch, nor read a's packs (which a reads through its ACL)
packs_a=("$store"/packs/"$uid_a"/*.pack)
[ -e "${packs_a[0]}" ] || fail "no pack of $a in the store"
setpriv --reuid=$a --regid=$a --init-groups cat "${packs_a[@]}" >/dev/null || fail "$a cannot read its own packs"
for path in "$store/jobs" "$store/packs" "$store/index" /var/tmp/gcp; do
  ! setpriv --reuid=$b --regid=$b --init-groups ls "$path" >/dev/null 2>&1 || fail "$b can list $path"
done
! setpriv --reuid=$b --regid=$b --init-groups cat "${packs_a[@]}" >/dev/null 2>&1 || fail "$b can read a's packs"
! setpriv --reuid=$b --regid=$b --init-groups cat "$store/jobs/ja/job.json" >/dev/null 2>&1 || fail "$b can read a's job.json"
setpriv --reuid=$a --regid=$a --init-groups cat "$store/jobs/ja/logs/main.out" >/dev/null || fail "$a cannot read its unit's output"
! setpriv --reuid=$b --regid=$b --init-groups cat "$store/jobs/ja/logs/main.out" >/dev/null 2>&1 || fail "$b can read a's output"
# Images pass through scratch while a checkpoint or restart is in flight: root's alone.
[ "$(stat -c '%U %a' /var/tmp/gcp)" = "root 700" ] || fail "scratch /var/tmp/gcp is $(stat -c '%U %a' /var/tmp/gcp)"

killed_at=$(state "$work/$a/c.state" count)
ok_as $a gcp-isolate --store "$store" kill ja
[ "$(cgroup_procs ja main)" -eq 0 ] || fail "a's unit still has processes after kill"
killed_at=$(state "$work/$a/c.state" count)
ok_as $a gcp-restart --store "$store" ja
expect_counter_resumed "$work/$a/c.state" "$started" "$checksum" "$before" "$killed_at"
runs_as ja main "$uid_a"

# ---- a user's environment never reaches root
evil=$work/$a/evil
mkdir -p "$evil/translibs" "$evil/store"
cat >"$evil/mark.c" <<'C'
#include <fcntl.h>
#include <unistd.h>
__attribute__((constructor)) static void mark(void) {
  if (geteuid() == 0) close(open(MARK, O_WRONLY | O_CREAT, 0644));
}
C
cc -shared -fPIC -DMARK="\"$evil/translib-loaded\"" -o "$evil/translibs/criu.so" "$evil/mark.c"
cc -shared -fPIC -DMARK="\"$evil/preloaded\"" -o "$evil/preload.so" "$evil/mark.c"
for prog in criu init; do
  printf '#!/bin/sh\ntouch %s/%s-ran\nexit 1\n' "$evil" "$prog" >"$evil/$prog"
  chmod 755 "$evil/$prog"
done
echo "{\"stores\": [\"$evil/store\"]}" >"$evil/gcp.json"
chown -R $a:$a "$evil"
USER_ENV=(GCP_CRIU="$evil/criu" GCP_TRANSLIB_PATH="$evil/translibs" GCP_CONFIG="$evil/gcp.json" GCP_INIT="$evil/init"
  GCP_SCRATCH="$evil/scratch" LD_PRELOAD="$evil/preload.so")
ok_as $a gcp-checkpoint --store "$store" ja
[ "$(json "$work/last.out" 'd["seq"]')" = 2 ] || fail "a's second checkpoint is not number 2"
ok_as $a gcp-isolate --store "$store" run --job ja --unit second -- "$workloads/counter" "$work/$a/second.state" 4
refused_as 3 $a gcp-isolate --store "$evil/store" list
for m in translib-loaded preloaded criu-ran init-ran scratch; do
  [ ! -e "$evil/$m" ] || fail "the user's environment reached root: $evil/$m exists"
done
USER_ENV=()
ok_as $a gcp-isolate --store "$store" kill ja --unit second

# ---- what only root may do
refused_as 3 $a gcp-isolate --store "$work/$a/mine" run --job jx -- /bin/true
[ ! -e "$work/$a/mine" ] || fail "a store was made where the user said"
grep -q "is not one that gcp-user opens for users" "$work/last.err" || fail "no word on the store: $(cat "$work/last.err")"
refused_as 3 $a gcp-isolate --store "$store" run --job jx --address 10.77.0.200/24 -- /bin/true
grep -q "hint: root starts units with a network of their own" "$work/last.err" || fail "no hint for --address: $(cat "$work/last.err")"
[ ! -e "$store/jobs/jx" ] || fail "a refused run left job jx"
refused_as 3 $a gcp-store --store "$store" gc
refused_as 3 $a gcp-checkpoint --agent
refused_as 3 $a gcp-restart --agent

# ---- a unit holding a setuid program is not checkpointed for its user
cp /bin/sleep "$work/setuid-sleep"
chmod 4755 "$work/setuid-sleep"
jobs_started+=(jsuid)
ok_as $b gcp-isolate --store "$store" run --job jsuid -- "$work/setuid-sleep" 600
wait_for "the setuid program to run" 10 setuid_running jsuid "$uid_b"
refused_as 3 $b gcp-checkpoint --store "$store" jsuid
grep -q "runs as uid 0, a right uid $uid_b does not have; nothing was checkpointed" "$work/last.err" ||
  fail "no word on the setuid program: $(cat "$work/last.err")"
[ -z "$(ls "$store/jobs/jsuid/checkpoints" 2>/dev/null)" ] || fail "a checkpoint of the setuid program was kept"
[ "$(freezer_state jsuid main)" = THAWED ] || fail "the refused unit was left $(freezer_state jsuid main)"
ok_as $b gcp-isolate --store "$store" kill jsuid
ok_as $b gcp-store --store "$store" rm jsuid

# ---- a user moves a unit from one test node to another
start_nodes 2
site_config "{\"stores\": [\"$store\"], \"launcher\": {\"kind\": \"ssh\", \"command\": [\"ssh\", \"-F\", \"$ssh_config\", \"{node}\"]}}"
# A node name goes into root's ssh command line: one that is an option never gets there.
refused_as 2 $a gcp-isolate --store "$store" run --job jx "--node=-oProxyCommand=touch $evil/proxy-ran" -- /bin/true
grep -q "error: node name '-oProxyCommand=touch " "$work/last.err" || fail "no word on the node name: $(cat "$work/last.err")"
refused_as 2 $a gcp-migrate --store "$store" ja --to=-oProxyCommand=touch\ "$evil/proxy-ran"
[ ! -e "$evil/proxy-ran" ] || fail "a user's node name ran a command as root through ssh"
jobs_started+=(jm)
ok_as $a gcp-isolate --store "$store" run --job jm --node gcpn1 -- "$workloads/counter" "$work/$a/m.state" 16
wait_for "the counter on gcpn1" 30 count_at_least "$work/$a/m.state" 3
runs_as jm main "$uid_a"
refused_as 3 $b gcp-migrate --store "$store" jm --to gcpn2
before=$(state "$work/$a/m.state" count)
started=$(state "$work/$a/m.state" started)
checksum=$(state "$work/$a/m.state" checksum)
ok_as $a gcp-migrate --store "$store" jm --to gcpn2
[ "$(json "$work/last.out" '[u["node"] for u in d["units"]]')" = "['gcpn2']" ] || fail "jm is not recorded on gcpn2: $(cat "$work/last.out")"
# The source is stopped by now: what changes the state file from here is the copy.
expect_counter_resumed "$work/$a/m.state" "$started" "$checksum" "$before" "$(state "$work/$a/m.state" count)"
moved_cg=$(json "$work/last.out" 'd["units"][0]["cgroup"]')
runs_as jm main "$uid_a" "$moved_cg"
refused_as 3 $b gcp-isolate --store "$store" kill jm
ok_as $a gcp-isolate --store "$store" kill jm
procs=/sys/fs/cgroup/freezer/$moved_cg/cgroup.procs
[ ! -s "$procs" ] || fail "jm on gcpn2 still has processes after a's kill: $(cat "$procs")"

# ---- each removes its jobs
ok_as $a gcp-isolate --store "$store" kill ja
ok_as $b gcp-isolate --store "$store" kill jb
ok_as $a gcp-store --store "$store" rm ja
ok_as $a gcp-store --store "$store" rm jm
refused_as 3 $a gcp-store --store "$store" rm jb
ok_as $b gcp-store --store "$store" rm jb
[ -z "$(ls "$store/jobs")" ] || fail "jobs are left in the store: $(ls "$store/jobs")"
say "ok: two users ran, checkpointed, restarted, moved and removed their own jobs through gcp-user, as themselves; neither reached the other's, root's store options, or root through its environment"
