#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# CRIU's own ZDTM static tests as gcp's peer suite. Builds them from CRIU's source (the
# tarball scripts/install-deps.sh fetches) with CRIU's Makefiles, then runs each selected
# test twice, as ZDTM's ns flavour would, and compares:
#   criu  plain CRIU: the test in a fresh PID, mount, IPC, UTS and network namespace
#         (unshare, loopback up, gcp-init as PID 1), criu dump, criu restore -d;
#   gcp   gcp-isolate run, gcp-checkpoint --stop, gcp-restart;
# then SIGTERM to the restored test and PASS or FAIL from its output file (as zdtm.py).
# One line per test, then a summary. A test that plain CRIU passes and gcp fails fails the
# suite (exit 1) unless tests/zdtm/known-differences names it; one that both fail is
# "criu-fails-here".
#
# usage: tests/zdtm/run.sh [--list FILE] [NAME...]   (neither: every static test)
# Environment: BUILD (build), ZDTM_DIR ($BUILD/zdtm: CRIU's source, logs, store),
# GCP_TESTS_LOCK (/tmp/gcp-tests.lock: held per test, so other CRIU tests interleave).
set -uo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
here=$top/tests/zdtm
# criu_want, criu_tarball, apt_install, zdtm_pkgs, criu_build_pkgs
# shellcheck source=scripts/install-deps.sh
source "$top/scripts/install-deps.sh"
set +e
prog=zdtm
cd "$top" || exit 1
BUILD=${BUILD:-build}
case $BUILD in /*) ;; *) BUILD=$top/$BUILD ;; esac
bin=$BUILD/bin
gcp_init=$BUILD/libexec/gcp/gcp-init
zdir=${ZDTM_DIR:-$BUILD/zdtm}
lock=${GCP_TESTS_LOCK:-/tmp/gcp-tests.lock}
criu=${GCP_CRIU:-$(command -v criu || echo /usr/local/sbin/criu)}
# As zdtm.py runs a test that is not 'suid': as this user, with these groups.
zdtm_ids=(ZDTM_UID=18943 ZDTM_GID=58467 "ZDTM_GROUPS=27495 48244")
# What gcp's translib gives a namespace dump and restore, so that only gcp differs.
ns_opts=(--ext-mount-map auto --enable-external-masters)
# A dump or restore that hangs ends the run, not the suite (KILL 10 s after TERM: a criu
# waiting on a task ignores TERM).
cr_timeout=${ZDTM_CR_TIMEOUT:-180}

list='' names=()
while [ $# -gt 0 ]; do
  case $1 in
    --list) [ $# -ge 2 ] || die "--list needs a file" "usage: tests/zdtm/run.sh [--list FILE] [NAME...]"
      list=$2; shift 2 ;;
    -h | --help) sed -n '3,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) printf '%s: error: unknown option %s\n%s: hint: usage: tests/zdtm/run.sh [--list FILE] [NAME...]\n' \
          "$prog" "$1" "$prog" >&2; exit 2 ;;
    *) names+=("$1"); shift ;;
  esac
done
[ "$(id -u)" -eq 0 ] || die "the ZDTM suite needs root (CRIU, namespaces)" "run it as root: sudo make zdtm"
[ -x "$bin/gcp-isolate" ] && [ -x "$gcp_init" ] || die "gcp is not built in $BUILD" "run: make -j2 all"
[ -x "$criu" ] || die "no criu at '$criu'" "run: sudo scripts/install-deps.sh"

# --- CRIU's source and the tests, built with CRIU's Makefiles ---------------------------
apt_install "${criu_build_pkgs[@]}" "${zdtm_pkgs[@]}"
src=$zdir/criu-$criu_want
static=$src/test/zdtm/static
if [ ! -e "$src/.unpacked" ]; then
  tarball=$(criu_tarball) || exit 1
  rm -rf "$src" && mkdir -p "$src" && tar -xf "$tarball" -C "$src" --strip-components=1 ||
    die "unpacking $tarball failed" "remove $src and try again"
  touch "$src/.unpacked"
fi
mkdir -p "$zdir/logs"
make -s -C "$src/test/zdtm/lib" >"$zdir/logs/build-lib.log" 2>&1 ||
  die "building ZDTM's library failed (log: $zdir/logs/build-lib.log)" "read the end of that log"
all_tests() { make -s -C "$static" -f Makefile -f <(printf 'gcp-print-tests:\n\t@echo $(TST)\n') gcp-print-tests; }
if [ -n "$list" ]; then
  mapfile -t names < <(sed -e 's/#.*//' -e 's/[[:space:]]//g' -e '/^$/d' "$list")
elif [ ${#names[@]} -eq 0 ]; then
  read -ra names <<<"$(all_tests)"
fi
[ ${#names[@]} -gt 0 ] || die "no tests selected" "name tests, or give a list file"
say "building ${#names[@]} ZDTM static tests (log: $zdir/logs/build.log)"
# -k: a test that does not build here is skipped, not the suite.
make -k -j"${JOBS:-2}" -C "$static" "${names[@]}" >"$zdir/logs/build.log" 2>&1
# zdtm.py lets the tests, which drop root, write their .pid and .out files there.
chmod a+w "$static"

# --- one run ------------------------------------------------------------------------------
d_flavor='' d_flags='' d_opts='' d_dopts='' d_ropts='' d_arch='' d_feature='' d_timeout=30
# read_desc NAME: the test's .desc fields as d_flavor, d_flags, d_opts, d_dopts, d_ropts,
# d_arch, d_feature, d_timeout (a Python literal, read as one: never executed).
read_desc() {
  python3 - "$static/$1.desc" <<'PY'
import ast, shlex, sys
try:
    text = open(sys.argv[1]).read()
except FileNotFoundError:
    text = ""
d = ast.literal_eval(text) if text.strip() else {}
defaults = {"flavor": "h ns uns", "timeout": "30"}
for k in ("flavor", "flags", "opts", "dopts", "ropts", "arch", "feature", "timeout"):
    print("d_%s=%s" % (k, shlex.quote(str(d.get(k, defaults.get(k, ""))))))
PY
}

# skip_reason NAME: why the test does not run here (nothing when it runs).
skip_reason() {
  local t=$1 f
  [ -x "$static/$t" ] || { echo "did not build here (log: $zdir/logs/build.log)"; return; }
  [[ " $d_flavor " == *" ns "* ]] || { echo "not in the ns flavour (flavor: $d_flavor)"; return; }
  [[ " $d_flags " == *" noauto "* ]] && { echo "manual run only (noauto)"; return; }
  [[ " $d_flags " == *" crfail "* ]] && { echo "CRIU is meant to refuse it (crfail)"; return; }
  [ -z "$d_arch" ] || [ "$d_arch" = "$(uname -m)" ] || { echo "for $d_arch only"; return; }
  for f in $d_feature; do
    "$criu" check --feature "$f" >/dev/null 2>&1 || { echo "CRIU lacks feature '$f' here"; return; }
  done
  if [ -x "$static/$t.checkskip" ]; then
    (cd "$static" && "./$t.checkskip") >/dev/null 2>&1 || { echo "its checkskip says no"; return; }
  fi
}

clean_test_files() {
  local t=$1
  (cd "$static" && rm -rf -- "$t.pid" "$t".out* "$t.test" "$t".*.test "$t.test".* .zdtm.pidfile.*)
}

# start_argv NAME: the command line of the test as CRIU's Makefile starts it (its NAME.pid rule).
start_argv() {
  local line
  line=$(make -s -n -C "$static" "$1.pid" 2>/dev/null | tail -n1)
  read -ra argv <<<"$line"
  [ "${argv[0]:-}" = "./$1" ]
}

# The environment zdtm.py gives a test.
test_env() {
  tenv=(PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin TMPDIR=/tmp HOME=/root)
  [[ " $d_flags " == *" suid "* ]] || tenv+=("${zdtm_ids[@]}")
}

# wait_pidfile NAME SECONDS: the test wrote its pidfile (it is up); prints its PID.
wait_pidfile() {
  local f=$static/$1.pid deadline=$((SECONDS + $2)) p
  while [ $SECONDS -lt "$deadline" ]; do
    p=$(cat "$f" 2>/dev/null)
    if [[ $p =~ ^[0-9]+$ ]]; then echo "$p"; return 0; fi
    sleep 0.1
  done
  return 1
}

# host_pid INIT NSPID: the host PID of process NSPID of the PID namespace whose init is INIT.
# Builtins only: a fork per process of a busy node took 5 s.
host_pid() {
  local p key rest
  for p in /proc/[0-9]*; do
    [ "$p/ns/pid" -ef "/proc/$1/ns/pid" ] || continue
    while read -r key rest; do
      [ "$key" = NSpid: ] || continue
      [ "${rest##*[[:space:]]}" = "$2" ] && { echo "${p#/proc/}"; return 0; }
      break
    done <"$p/status" 2>/dev/null
  done
  return 1
}

gone() { local s; s=$(cut -d' ' -f3 "/proc/$1/stat" 2>/dev/null) || return 0; [ "$s" = Z ]; }

# check_result NAME INIT NSPID LOGDIR: SIGTERM to the restored test; prints PASS, or FAIL and why.
check_result() {
  local t=$1 hp deadline
  hp=$(host_pid "$2" "$3") || { echo "FAIL the restored test is not running"; return; }
  kill -TERM "$hp"
  deadline=$((SECONDS + d_timeout))
  until gone "$hp"; do
    [ $SECONDS -lt $deadline ] || { echo "FAIL it did not end within ${d_timeout}s of SIGTERM"; return; }
    sleep 0.1
  done
  cp "$static/$t.out" "$4/test.out" 2>/dev/null || cp "$static/$t.out.inprogress" "$4/test.out" 2>/dev/null
  if tail -n1 "$static/$t.out" 2>/dev/null | tr -s ' \t' '\n\n' | grep -qx PASS; then
    echo PASS
  else
    echo "FAIL its check: $(grep -m1 -iE 'fail|error' "$4/test.out" 2>/dev/null | cut -c1-120)"
  fi
}

close_fds() {
  local fd
  for fd in /proc/$BASHPID/fd/*; do
    fd=${fd##*/}
    [ "$fd" -le 2 ] || eval "exec $fd>&-"
  done
}

# criu_error LOG: CRIU's first error line (without root's harmless want of CAP_SYS_RESOURCE).
criu_error() { grep 'Error' "$1" 2>/dev/null | grep -v RLIMIT_NOFILE | head -n1 | cut -c1-200; }

# run_plain NAME LOGDIR: dump and restore with plain CRIU in a fresh set of namespaces.
run_plain() {
  local t=$1 log=$2 ushare init nspid rinit r
  local imgs=$log/images
  mkdir -p "$imgs"
  # Its stdio is opened inside its mount namespace: CRIU dumps no file of a mount outside.
  # No other descriptor goes in (the lock, make's jobserver).
  (close_fds && cd "$static" && exec env -i "${tenv[@]}" unshare --pid --mount --ipc --uts --net --fork --mount-proc \
    sh -c 'out=$1; shift; ip link set lo up && exec setsid "$0" -- "$@" </dev/null >>"$out" 2>&1' \
    "$gcp_init" "$log/unit.out" "${argv[@]}" </dev/null >>"$log/unit.out" 2>&1) &
  ushare=$!
  if ! nspid=$(wait_pidfile "$t" "$d_timeout"); then
    kill -KILL $(pgrep -P $ushare) $ushare 2>/dev/null
    cp "$static/$t.out.inprogress" "$log/test.out" 2>/dev/null
    echo "FAIL start: no pidfile within ${d_timeout}s"
    return
  fi
  init=$(pgrep -P $ushare | head -n1)
  # shellcheck disable=SC2086
  # With gcp's criu-rlimits.so, as gcp dumps: without CAP_SYS_RESOURCE (as on the test VM)
  # plain CRIU cannot read the limits of a test that runs as a user, and every such dump fails.
  if ! LD_PRELOAD=$BUILD/libexec/gcp/criu-rlimits.so timeout -k 10 "$cr_timeout" "$criu" dump -t "$init" -D "$imgs" -o dump.log -v4 "${ns_opts[@]}" $d_opts $d_dopts >"$log/dump.err" 2>&1; then
    kill -KILL "$init" 2>/dev/null
    echo "FAIL dump: $(criu_error "$imgs/dump.log")"
    return
  fi
  wait $ushare 2>/dev/null
  # shellcheck disable=SC2086
  if ! (cd "$static" && timeout -k 10 "$cr_timeout" "$criu" restore -D "$imgs" -o restore.log -v4 --restore-detached --pidfile "$imgs/init.pid" \
    "${ns_opts[@]}" --root / $d_opts $d_ropts >"$log/restore.err" 2>&1); then
    echo "FAIL restore: $(criu_error "$imgs/restore.log")"
    return
  fi
  rinit=$(cat "$imgs/init.pid")
  r=$(check_result "$t" "$rinit" "$nspid" "$log")
  kill -KILL "$rinit" 2>/dev/null
  echo "$r"
}

# run_gcp NAME LOGDIR: gcp-isolate run, gcp-checkpoint --stop, gcp-restart.
run_gcp() {
  local t=$1 log=$2 job=zdtm-$1 nspid rinit r
  job=${job//_/-}
  export GCP_STORE=$zdir/store
  if ! (cd "$static" && env -i "${tenv[@]}" GCP_STORE="$GCP_STORE" "$bin/gcp-isolate" run --job "$job" --unit main \
    -- "${argv[@]}" >"$log/run.json" 2>"$log/run.err"); then
    echo "FAIL gcp-isolate run: $(grep -m1 'error:' "$log/run.err")"
    return
  fi
  nspid=$(wait_pidfile "$t" "$d_timeout") || { gcp_cleanup "$job"; echo "FAIL start: no pidfile within ${d_timeout}s"; return; }
  if ! timeout -k 10 "$cr_timeout" "$bin/gcp-checkpoint" --stop "$job" >"$log/checkpoint.json" 2>"$log/checkpoint.err"; then
    gcp_cleanup "$job"
    echo "FAIL checkpoint: $(grep -m1 'error:' "$log/checkpoint.err" | sed 's/^gcp-checkpoint: error: //' | cut -c1-200)"
    return
  fi
  if ! timeout -k 10 "$cr_timeout" "$bin/gcp-restart" "$job" >"$log/restart.json" 2>"$log/restart.err"; then
    gcp_cleanup "$job"
    echo "FAIL restart: $(grep -m1 'error:' "$log/restart.err" | sed 's/^gcp-restart: error: //' | cut -c1-200)"
    return
  fi
  rinit=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["units"][0]["pid"])' "$log/restart.json")
  r=$(check_result "$t" "$rinit" "$nspid" "$log")
  gcp_cleanup "$job"
  echo "$r"
}

# gcp_cleanup JOB: kills the job and removes it from the store, keeping its unit's output
# and, on a start that failed, the test's own.
gcp_cleanup() {
  cp "$GCP_STORE/jobs/$1/logs/main.out" "$log/unit.out" 2>/dev/null
  [ -e "$log/test.out" ] || cp "$static/$t.out.inprogress" "$log/test.out" 2>/dev/null
  "$bin/gcp-isolate" kill "$1" >/dev/null 2>&1
  "$bin/gcp-store" rm "$1" >/dev/null 2>&1
}

trim() { local v=$1; v=${v#"${v%%[![:space:]]*}"}; printf '%s' "${v%"${v##*[![:space:]]}"}"; }

# known_difference NAME GCP_RESULT: tests/zdtm/known-differences names the test and gcp
# failed with the text it expects; sets $known to the reason.
known_difference() {
  local name text why
  while IFS='|' read -r name text why; do
    name=$(trim "$name") text=$(trim "$text") why=$(trim "$why")
    [ "$name" = "$1" ] && [ -n "$text" ] && [[ $2 == *"$text"* ]] && { known=$why; return 0; }
  done < <(grep -v '^#' "$here/known-differences")
  return 1
}

# run_test NAME: both runs, one line; sets $verdict.
run_test() {
  local t=$1 log=$zdir/logs/$1 plain gcp
  rm -rf "$log" && mkdir -p "$log/criu" "$log/gcp"
  test_env
  # First: a .pid file left by a run that was killed would make its Makefile rule up to date.
  clean_test_files "$t"
  start_argv "$t" || { verdict=skip; printf '%-28s SKIP (no start rule in its Makefile)\n' "$t"; return; }
  plain=$(run_plain "$t" "$log/criu")
  clean_test_files "$t"
  gcp=$(run_gcp "$t" "$log/gcp")
  clean_test_files "$t"
  printf '%s\n' "$plain" >"$log/criu/result"
  printf '%s\n' "$gcp" >"$log/gcp/result"
  case "${plain%% *}/${gcp%% *}" in
    PASS/PASS) verdict=pass ;;
    FAIL/FAIL) verdict="criu-fails-here" ;;
    FAIL/PASS) verdict="gcp-only" ;;
    *) verdict="gcp-fails"
       known_difference "$t" "$gcp" && verdict=known ;;
  esac
  printf '%-28s criu: %-5s gcp: %-5s %s\n' "$t" "${plain%% *}" "${gcp%% *}" "$verdict"
  [ "${plain%% *}" = PASS ] || printf '    criu: %s\n' "${plain#FAIL }"
  [ "${gcp%% *}" = PASS ] || printf '    gcp:  %s\n' "${gcp#FAIL }"
  [ "$verdict" != known ] || printf '    known difference: %s\n' "$known"
}

main() {
  local t why verdict known
  declare -A count=()
  skips=() gcp_failed=()
  for t in "${names[@]}"; do
    eval "$(read_desc "$t")" || { skips+=("$t: its .desc does not parse"); continue; }
    why=$(skip_reason "$t")
    if [ -n "$why" ]; then
      skips+=("$t: $why")
      printf '%-28s SKIP %s\n' "$t" "$why"
      continue
    fi
    verdict=
    { flock 9; run_test "$t"; } 9>"$lock"
    count[$verdict]=$((${count[$verdict]:-0} + 1))
    [ "$verdict" != gcp-fails ] || gcp_failed+=("$t")
  done

  echo
  printf 'zdtm: %d selected: %d pass under both, %d gcp fails where CRIU passes, %d known differences, %d criu-fails-here, %d pass through gcp only, %d skipped\n' \
    ${#names[@]} "${count[pass]:-0}" "${count[gcp-fails]:-0}" "${count[known]:-0}" "${count[criu-fails-here]:-0}" \
    "${count[gcp-only]:-0}" $((${#skips[@]} + ${count[skip]:-0}))
  if [ ${#skips[@]} -gt 0 ]; then
    echo "skipped, by reason:"
    printf '%s\n' "${skips[@]}" | sed 's/^[^:]*: //; s/ (log: .*//; s/(flavor: .*)/(flavor: ...)/' | sort | uniq -c | sort -rn
  fi
  echo "logs: $zdir/logs/NAME/{criu,gcp}/"
  if [ ${#gcp_failed[@]} -gt 0 ]; then
    echo "FAIL: gcp fails where plain CRIU passes: ${gcp_failed[*]}"
    exit 1
  fi
  exit 0
}

# On one line with exit: bash reads a script as it runs it, and this one may be edited meanwhile.
main; exit $?
