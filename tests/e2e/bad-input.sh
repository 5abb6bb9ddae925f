#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Bad input gets one error line, the documented exit code, and leaves no process behind:
# a job without checkpoint, a removed, truncated or damaged pack, a wrong apiVersion.
source "$(dirname "$0")/lib.sh"
requires root criu freezer

st=$work/c.state
start_job bad main "$workloads/counter" "$st" 8
wait_for "the counter" 30 count_at_least "$st" 3

# No checkpoint yet: exit 2 (bad input), the job keeps running.
"$bin/gcp-isolate" kill bad >/dev/null
expect_exit 2 gcp-restart bad
expect_stderr "has no committed checkpoint"
expect_stderr "hint: take one with 'gcp-checkpoint bad'"
[ "$(cgroup_procs bad main)" -eq 0 ] || fail "a failed restart left processes"

# Unknown job and unknown sequence number.
expect_exit 2 gcp-checkpoint no-such-job
expect_stderr "job 'no-such-job' is not in store"
expect_exit 2 gcp-checkpoint 'bad/../x'
expect_stderr "job name 'bad/../x' contains '/'"

# A good checkpoint to damage, with the job stopped.
start_job bad main "$workloads/counter" "$st" 8
wait_for "the counter" 30 count_at_least "$st" 3
run_tool "$work/cp.json" "$work/cp.err" gcp-checkpoint bad --stop || fail "checkpoint failed: $(cat "$work/cp.err")"
cpdir=$GCP_STORE/jobs/bad/checkpoints/1
expect_exit 2 gcp-restart bad --seq 7
expect_stderr "job 'bad' has no checkpoint 7"
expect_exit 2 gcp-restart bad --seq -1
expect_stderr "'-1' is not a checkpoint number"
# A mistyped store is not made: nothing appears at that path.
expect_exit 2 gcp-restart bad --store "$work/no-such-store"
expect_stderr "no store at '$work/no-such-store'"
[ ! -e "$work/no-such-store" ] || fail "a mistyped --store was made"
# A name with control characters is refused without echoing them to the terminal.
expect_exit 2 gcp-restart "$(printf 'x\033[31my')"
expect_stderr 'job name .x\\x1b\[31my. contains .\\x1b.'
grep -q "$(printf '\033')" "$work/last.err" && fail "a control character reached stderr raw"

# The chunks live in pack files; damage the one pack of this checkpoint.
pack=$(ls "$GCP_STORE"/packs/0/*.pack | head -n1)
[ -f "$pack" ] || fail "no pack file in $GCP_STORE/packs/0"

# A removed pack.
mv "$pack" "$work/pack"
expect_exit 1 gcp-restart bad
expect_stderr "checkpoint 1 of job 'bad', unit 'main', file '.*': chunk 0 (.*) is missing (no pack holds it)"
[ "$(cgroup_procs bad main)" -eq 0 ] || fail "a failed restart left processes"
no_criu_left

# A truncated pack.
cp "$work/pack" "$pack"
truncate -s -4096 "$pack"
expect_exit 1 gcp-restart bad
expect_stderr "is unreadable (reading pack .* ends early (truncated?))"
[ "$(cgroup_procs bad main)" -eq 0 ] || fail "a failed restart left processes"

# A flipped byte of the same size.
cp "$work/pack" "$pack"
printf '\x5a' | dd of="$pack" bs=1 seek=100 conv=notrunc status=none
expect_exit 1 gcp-restart bad
expect_stderr "file '.*': chunk [0-9]* (.*) is \(corrupt\|unreadable\)"
expect_stderr "hint: the job has no earlier checkpoint"
cp "$work/pack" "$pack"
"$bin/gcp-store" verify bad >/dev/null || fail "the repaired checkpoint does not verify"

# A manifest with a wrong apiVersion.
cp "$cpdir/manifest.json" "$work/manifest.json"
sed -i 's#"apiVersion": "gcp/v1"#"apiVersion": "gcp/v2"#' "$cpdir/manifest.json"
expect_exit 2 gcp-restart bad
expect_stderr "apiVersion 'gcp/v2' is not supported (this gcp reads 'gcp/v1')"
cp "$work/manifest.json" "$cpdir/manifest.json"

# A manifest with a missing field names the field and the file.
python3 -c 'import json,sys; p=sys.argv[1]; d=json.load(open(p)); del d["units"][0]["name"]; json.dump(d, open(p,"w"))' "$cpdir/manifest.json"
expect_exit 2 gcp-restart bad
expect_stderr "field 'units\[0\].name' is missing"
expect_stderr "$cpdir/manifest.json"
cp "$work/manifest.json" "$cpdir/manifest.json"
[ "$(cgroup_procs bad main)" -eq 0 ] || fail "a failed restart left processes"
no_criu_left

# Undamaged again, the same checkpoint restarts.
run_tool "$work/r.json" "$work/r.err" gcp-restart bad || fail "restart of the repaired checkpoint failed: $(cat "$work/r.err")"
c=$(state "$st" count)
wait_for "the restored counter" 20 count_at_least "$st" $((c + 3))
expect_ok "$st"
say "every bad input gave one error line and its exit code"
