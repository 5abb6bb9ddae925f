#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Memory a parent shares copy-on-write with its children stays shared across a restart:
# the restored processes' proportional set size (PSS) is what the original's was, not
# three private copies; and copy-on-write still separates them (a child's own page stays
# its own, the others keep the parent's pattern).
source "$(dirname "$0")/lib.sh"
requires root criu freezer

mib=48
st=$work/cow.state
start_job cow main "$workloads/cow" "$st" "$mib"
wait_for "the workload to run" 30 count_at_least "$st" 5

# unit_kib FIELD: the sum of FIELD (Pss, Rss) in KiB over the unit's processes
unit_kib() {
  local p sum=0 v
  for p in $(cat /sys/fs/cgroup/freezer/gcp/cow/main/cgroup.procs); do
    v=$(awk -v f="$1:" '$1 == f { print $2 }' "/proc/$p/smaps_rollup" 2>/dev/null) || continue
    sum=$((sum + ${v:-0}))
  done
  echo "$sum"
}
pss_before=$(unit_kib Pss)
rss_before=$(unit_kib Rss)
# Three processes map the region: their RSS counts it three times, their PSS once.
[ "$rss_before" -ge $((mib * 1024 * 5 / 2)) ] || fail "the children do not map the region (RSS $rss_before KiB)"
[ "$pss_before" -le $((mib * 1024 * 3 / 2)) ] || fail "the region is not shared before the checkpoint (PSS $pss_before KiB)"

run_tool "$work/cp.json" "$work/cp.err" gcp-checkpoint cow --stop || fail "checkpoint failed: $(cat "$work/cp.err")"
killed=$(state "$st" count)
run_tool "$work/r.json" "$work/r.err" gcp-restart cow || fail "restart failed: $(cat "$work/r.err")"
wait_for "the restored workload to run" 30 count_at_least "$st" $((killed + 5))
expect_ok "$st"
pss_after=$(unit_kib Pss)
rss_after=$(unit_kib Rss)
say "PSS ${pss_before} KiB before, ${pss_after} KiB after the restart (RSS ${rss_before} / ${rss_after} KiB)"
[ "$rss_after" -ge $((mib * 1024 * 5 / 2)) ] || fail "the restored children do not map the region (RSS $rss_after KiB)"
# Lost sharing would make it about three times the region; allow 10% and 2 MiB of noise.
[ "$pss_after" -le $((pss_before * 11 / 10 + 2048)) ] ||
  fail "copy-on-write sharing was lost: PSS ${pss_after} KiB after the restart, ${pss_before} KiB before"
# The children keep checking their copies: a page that leaked between them would fail it.
checks=$(state "$st" checks)
wait_for "more checks after the restart" 30 checks_at_least "$st" $((checks + 10))
expect_ok "$st"
