#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# A job appends to an output file outside the store and saves state by tmp+rename. It
# is checkpointed, goes on writing, and is killed: a plain restart is refused naming the
# file (nothing starts); --files truncate cuts the output back and the job goes on with
# no line missing or twice, its renamed-away tmp file recreated; an output changed
# before its checkpointed size is refused by --files truncate; --files keep goes on
# with the file as it is.
source "$(dirname "$0")/lib.sh"
requires root criu freezer

st=$work/appender.state
out=$work/out.log
snap=$work/snap
start_job files main "$workloads/appender" "$st" "$out" "$snap"

# SNAP.tmp is opened at counts 1, 151, 301, ... and renamed away 100 ticks later.
phase() { local c; c=$(state "$st" count); [ -n "$c" ] && [ $((c % 150)) -ge "$1" ] && [ $((c % 150)) -le "$2" ]; }
gone() { [ ! -e "$1" ]; }
# lines_at MANIFEST: the job's count at that checkpoint, from the size recorded of OUT
lines_at() {
  python3 - "$1" "$out" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
size = [w for w in d["units"][0]["writtenFiles"] if w["path"] == sys.argv[2]][0]["size"]
print(open(sys.argv[2]).read()[:size].split()[-1])
EOF
}
# consecutive FROM: OUT holds FROM, FROM+1, ... with nothing missing or twice
consecutive() {
  python3 - "$out" "$1" <<'EOF' || fail "$out is not one line per count from $1: $(tr '\n' ' ' <"$out" | cut -c1-300)"
import sys
lines = [int(x) for x in open(sys.argv[1]).read().split()]
start = int(sys.argv[2])
assert lines == list(range(start, start + len(lines))), lines
EOF
}

wait_for "the job to open snap.tmp" 30 phase 2 20
run_tool "$work/cp1.json" "$work/cp1.err" gcp-checkpoint files || fail "checkpoint failed: $(cat "$work/cp1.err")"
python3 - "$work/cp1.json" "$out" "$snap.tmp" <<'EOF' || fail "the checkpoint does not record the files: $(cat "$work/cp1.json")"
import json, sys
files = {w["path"]: w for w in json.load(open(sys.argv[1]))["units"][0]["writtenFiles"]}
out, tmp = files[sys.argv[2]], files[sys.argv[3]]
assert out["append"] and out["writeOnly"] and len(out["sha256"]) == 64
assert tmp["kept"].startswith("gcp-files/") and not tmp["append"]
EOF
c1=$(lines_at "$work/cp1.json")
size1=$(json "$work/cp1.json" "[w['size'] for w in d['units'][0]['writtenFiles'] if w['path'] == '$out'][0]")
wait_for "the job to rename snap.tmp away" 30 gone "$snap.tmp"
"$bin/gcp-isolate" kill files >/dev/null
[ "$(cgroup_procs files main)" -eq 0 ] || fail "processes left after kill"
size_killed=$(stat -c %s "$out")
[ "$size_killed" -gt "$size1" ] || fail "the output did not grow after the checkpoint"

# The default: refused, naming the file and its sizes; nothing started or changed.
expect_exit 1 gcp-restart files
expect_stderr "gcp-restart: error: .*$out changed since checkpoint 1 (size $size1 -> $size_killed)"
expect_stderr "gcp-restart: hint: '--files truncate' cuts it back"
expect_stderr "'--files keep'"
[ "$(cgroup_procs files main)" -eq 0 ] || fail "a refused restart left processes"
[ "$(stat -c %s "$out")" -eq "$size_killed" ] || fail "a refused restart changed $out"
[ ! -e "$snap.tmp" ] || fail "a refused restart recreated snap.tmp"

# --check shows the files among the node's checks and changes nothing, with --files
# truncate too: refused without it, passed with it, the output as long as it was.
rc=0
run_tool "$work/chk.json" "$work/chk.err" gcp-restart files --check || rc=$?
[ $rc -eq 1 ] || fail "--check with a changed file exited $rc, expected 1: $(cat "$work/chk.err")"
python3 - "$work/chk.json" "$out" <<'EOF' || fail "--check does not refuse the changed file: $(cat "$work/chk.json")"
import json, sys
d = json.load(open(sys.argv[1]))
files = [c for c in d["checks"] if c["check"] == "file" and sys.argv[2] in c["reason"]]
assert not d["ok"] and files and files[0]["status"] == "refuse", d
EOF
run_tool "$work/chk2.json" "$work/chk2.err" gcp-restart files --check --files truncate ||
  fail "--check --files truncate refused: $(cat "$work/chk2.err")"
grep -q "cut back to its $size1 bytes at the checkpoint (--files truncate)" "$work/chk2.json" ||
  fail "--check --files truncate does not say what the restart would do: $(cat "$work/chk2.json")"
[ "$(stat -c %s "$out")" -eq "$size_killed" ] || fail "--check --files truncate changed $out"
[ ! -e "$snap.tmp" ] || fail "--check recreated snap.tmp"
[ "$(cgroup_procs files main)" -eq 0 ] || fail "--check started processes"

# --files truncate: cut back, snap.tmp recreated, and the job goes on without a gap.
run_tool "$work/r1.json" "$work/r1.err" gcp-restart files --files truncate ||
  fail "restart --files truncate failed: $(cat "$work/r1.err")"
grep -q "out.log' cut back to its $size1 bytes" "$work/r1.err" || fail "no word of the truncation: $(cat "$work/r1.err")"
grep -q "snap.tmp' was missing: recreated" "$work/r1.err" || fail "no word of snap.tmp: $(cat "$work/r1.err")"
wait_for "the restored job to rename its snap.tmp" 30 phase 103 149
expect_ok "$st"
[ "$(cat "$snap")" = "count=$(state "$st" snap)" ] || fail "snap holds '$(cat "$snap")'"
consecutive 1

# An output changed before its checkpointed size: --files truncate cannot restore it.
wait_for "snap.tmp to be closed" 30 phase 103 120
run_tool "$work/cp2.json" "$work/cp2.err" gcp-checkpoint files || fail "checkpoint 2 failed: $(cat "$work/cp2.err")"
c2=$(lines_at "$work/cp2.json")
size2=$(json "$work/cp2.json" "[w['size'] for w in d['units'][0]['writtenFiles'] if w['path'] == '$out'][0]")
wait_for "more output" 10 count_at_least "$st" $((c2 + 5))
"$bin/gcp-isolate" kill files >/dev/null
killed=$(tail -n1 "$out")
size_killed=$(stat -c %s "$out")
printf 9 | dd of="$out" bs=1 seek=0 conv=notrunc status=none
expect_exit 1 gcp-restart files --files truncate
expect_stderr "$out changed since checkpoint 2 (size $size2 -> $size_killed, and its first $size2 bytes changed; truncating cannot restore it)"
[ "$(cgroup_procs files main)" -eq 0 ] || fail "a refused restart left processes"
[ "$(stat -c %s "$out")" -eq "$size_killed" ] || fail "a refused truncation changed $out"
printf 1 | dd of="$out" bs=1 seek=0 conv=notrunc status=none

# --files keep: the output stays as it is; the job appends after what it wrote last time.
run_tool "$work/r2.json" "$work/r2.err" gcp-restart files --files keep ||
  fail "restart --files keep failed: $(cat "$work/r2.err")"
grep -q "changed since checkpoint 2 (size $size2 -> $size_killed): restarting with it as it is" "$work/r2.err" ||
  fail "no warning naming the kept file: $(cat "$work/r2.err")"
wait_for "the job to go on" 10 count_at_least "$st" $((c2 + 10))
expect_ok "$st"
python3 - "$out" "$killed" "$c2" <<'EOF' || fail "$out is not 1..$killed then $((c2 + 1)).. : $(tr '\n' ' ' <"$out" | cut -c1-400)"
import sys
lines = [int(x) for x in open(sys.argv[1]).read().split()]
killed, c2 = int(sys.argv[2]), int(sys.argv[3])
assert lines[:killed] == list(range(1, killed + 1))
rest = lines[killed:]
assert rest and rest == list(range(c2 + 1, c2 + 1 + len(rest))), rest
EOF
say "truncate: cut back to $size1 bytes, on from count $c1 without a gap, snap.tmp recreated; keep: lines $((c2 + 1))-$killed twice, as asked"
