#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# A job of another user (uid 65534, 'nobody'), started for it by root as gcp-user would
# (GCP_CALLER_UID, in a store /etc/gcp/gcp.json lists): its unit runs as 65534; its owner,
# as itself (no gcp-user), can list, show and verify its checkpoints and read its packs
# through POSIX ACLs, but list no directory of the store; a third user sees nothing of it;
# identical data of two owners is stored twice (no deduplication across owners).
# Also gcp-store's table, rm (refused while the job runs) and gc, and --level.
source "$(dirname "$0")/lib.sh"
requires root criu freezer
command -v setpriv >/dev/null || skip "needs setpriv (util-linux)"
chmod 755 "$work"

site_config "{\"stores\": [\"$GCP_STORE\"]}"
mkdir -m 700 "$work/theirs"
chown 65534:65534 "$work/theirs"
st=$work/theirs/c.state
jobs_started+=(theirs)
GCP_CALLER_UID=65534 run_tool "$work/theirs.json" "$work/theirs.err" gcp-isolate --store "$GCP_STORE" run --job theirs \
  -- "$workloads/counter" "$st" 16 || fail "starting the job of uid 65534 failed: $(cat "$work/theirs.err")"
[ "$(json "$work/theirs.json" 'd["owner"]["uid"]')" = 65534 ] || fail "the job is not recorded as uid 65534's"
wait_for "the counter" 30 count_at_least "$st" 3
run_tool "$work/cp.json" "$work/cp.err" gcp-checkpoint theirs || fail "checkpoint failed: $(cat "$work/cp.err")"
[ -n "$(ls "$GCP_STORE"/packs/65534/*.pack)" ] || fail "no pack in packs/65534"
"$bin/gcp-isolate" kill theirs >/dev/null  # rewrites the Job manifest, with the owner's ACLs

as() { local uid=$1; shift; setpriv --reuid="$uid" --regid="$uid" --clear-groups "$@"; }
for cmd in "ls theirs" "show theirs" "verify theirs"; do
  # shellcheck disable=SC2086
  as 65534 "$bin/gcp-store" $cmd >"$work/o.json" 2>"$work/o.err" || fail "the owner cannot run 'gcp-store $cmd': $(cat "$work/o.err")"
done
as 65534 cat "$GCP_STORE"/packs/65534/*.pack >/dev/null || fail "the owner cannot read its packs"
as 65534 "$bin/gcp-store" du >"$work/du.json" || fail "gcp-store du as the owner failed"
[ "$(json "$work/du.json" 'd[0]["chunks"] > 0')" = True ] || fail "du as the owner counts no chunks: $(cat "$work/du.json")"
# No user lists the store's job names or uids, its owner neither: it reaches its own by name.
for d in jobs packs index locks; do
  [ "$(stat -c %a "$GCP_STORE/$d")" = 711 ] || fail "$d/ of the store is $(stat -c %a "$GCP_STORE/$d"), not 711"
  ! as 65534 ls "$GCP_STORE/$d" >/dev/null 2>&1 || fail "a user can list $d/ of the store"
done

# A third user: nothing to see, nothing to read.
as 1234 "$bin/gcp-store" ls >"$work/ls.json" || fail "gcp-store ls as a third user failed"
[ "$(cat "$work/ls.json")" = "[]" ] || fail "a third user sees jobs: $(cat "$work/ls.json")"
! as 1234 cat "$GCP_STORE"/packs/65534/*.pack >/dev/null 2>&1 || fail "a third user can read the owner's packs"
! as 1234 cat "$GCP_STORE/jobs/theirs/checkpoints/1/manifest.json" >/dev/null 2>&1 || fail "a third user can read the manifest"
as 1234 "$bin/gcp-store" verify theirs >/dev/null 2>&1 && fail "a third user could verify the job"

# The same memory checkpointed as root's job: stored again, not deduplicated against uid 65534's chunks.
start_job mine main "$workloads/counter" "$st.2" 16
wait_for "the second counter" 30 count_at_least "$st.2" 3
run_tool "$work/cp2.json" "$work/cp2.err" gcp-checkpoint mine || fail "checkpoint of root's job failed: $(cat "$work/cp2.err")"
new=$(json "$work/cp2.json" 'd["bytes"]["new"]')
raw=$(json "$work/cp2.json" 'd["bytes"]["raw"]')
[ "$new" -ge $((raw * 9 / 10)) ] || fail "root's job found $((raw - new)) of $raw bytes in another owner's chunks"

# The store tool on root's running job: --level, the table, rm refused while it runs.
expect_exit 2 gcp-checkpoint mine --level 0
expect_stderr "zstd level 0 is out of range"
run_tool "$work/cp3.json" "$work/cp3.err" gcp-checkpoint mine --level 19 || fail "checkpoint at level 19 failed: $(cat "$work/cp3.err")"
"$bin/gcp-store" ls mine --human >"$work/table" || fail "gcp-store ls --human failed"
head -n1 "$work/table" | grep -q "^SEQ  *CREATED .* DEDUP  *COMPRESSION" || fail "no table header: $(cat "$work/table")"
[ "$(wc -l <"$work/table")" -eq 3 ] || fail "the table does not have two checkpoints: $(cat "$work/table")"
expect_exit 1 gcp-store rm mine
expect_stderr "job 'mine' still runs"
"$bin/gcp-isolate" kill mine >/dev/null
run_tool "$work/rm.json" "$work/rm.err" gcp-store rm mine || fail "gcp-store rm of the stopped job failed: $(cat "$work/rm.err")"
[ ! -e "$GCP_STORE/jobs/mine" ] || fail "gcp-store rm left the job's directory"
run_tool "$work/gc.json" "$work/gc.err" gcp-store gc || fail "gc failed: $(cat "$work/gc.err")"
[ "$(json "$work/gc.json" 'd["packsRemoved"]')" -ge 1 ] || fail "gc removed no pack of the removed job: $(cat "$work/gc.json")"
"$bin/gcp-store" verify >/dev/null || fail "the store does not verify after rm and gc"
say "owner reads its checkpoints through ACLs, a third user sees nothing, no dedup across owners; --level, table, rm, gc"
