#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Hostile store content gets one error line, never a hang, a crash or a lost report: job.json
# files nested 100,000 deep, FIFOs, links to /dev/zero, too large, with 1e999 or a uid of 2^32;
# manifests with bytes that are not UTF-8. One bad job hides no other. No CRIU needed: the
# store is written by hand, as someone who damaged it would.
source "$(dirname "$0")/lib.sh"
requires root python3

store=$GCP_STORE
mkdir -p "$store"/jobs
job_json() {  # NAME [UID]
  printf '{"apiVersion":"gcp/v1","kind":"Job","name":"%s","owner":{"uid":%s},"units":[{"name":"u","node":"n","cgroup":"gcp/%s/u"}]}\n' \
    "$1" "${2:-0}" "$1"
}
for j in good deep fifo zero big huge-number uid-2-32; do mkdir -p "$store/jobs/$j"; done
job_json good >"$store/jobs/good/job.json"
python3 -c 'import sys; sys.stdout.write("[" * 100000 + "]" * 100000)' >"$store/jobs/deep/job.json"
mkfifo "$store/jobs/fifo/job.json"
ln -s /dev/zero "$store/jobs/zero/job.json"
head -c $((17 << 20)) /dev/zero | tr '\0' ' ' >"$store/jobs/big/job.json"
job_json huge-number 1e999 >"$store/jobs/huge-number/job.json"
job_json uid-2-32 4294967296 >"$store/jobs/uid-2-32/job.json"

# Checkpoints of the good job: a manifest with a byte that is not UTF-8, a FIFO, a link.
for s in 1 2 3; do mkdir -p "$store/jobs/good/checkpoints/$s"; done
printf '{"apiVersion":"gcp/v1","kind":"Checkpoint","job":"good\xff","seq":1,"units":[]}' \
  >"$store/jobs/good/checkpoints/1/manifest.json"
mkfifo "$store/jobs/good/checkpoints/2/manifest.json"
ln -s /dev/zero "$store/jobs/good/checkpoints/3/manifest.json"

# Listing: within seconds, the good job listed, each bad one warned about once.
rc=0
timeout 60 "$bin/gcp-store" ls >"$work/ls.json" 2>"$work/ls.err" || rc=$?
[ "$rc" -eq 0 ] || fail "gcp-store ls exited $rc (124: it hung): $(cat "$work/ls.err")"
python3 -c 'import json,sys; jobs=[j["job"] for j in json.load(open(sys.argv[1]))]; assert jobs == ["good"], jobs' \
  "$work/ls.json" || fail "gcp-store ls did not list exactly the good job: $(cat "$work/ls.json")"
for why in "jobs/deep/job.json': not valid JSON (it nests deeper than 64 levels" \
           "jobs/fifo/job.json': it is not a regular file" \
           "jobs/zero/job.json' is a symbolic link" \
           "jobs/big/job.json': it is larger than 16777216 bytes" \
           "number overflow parsing '1e999'" \
           "field 'owner.uid' is out of range"; do
  grep -qF -- "$why" "$work/ls.err" || fail "gcp-store ls did not warn '$why': $(cat "$work/ls.err")"
done

# Verify: a report that stays valid JSON, one error line, exit 1.
expect_verify() {
  rc=0
  timeout 60 "$bin/gcp-store" verify good >"$work/verify.json" 2>"$work/verify.err" || rc=$?
  [ "$rc" -eq 1 ] || fail "gcp-store verify exited $rc, expected 1 (124: it hung): $(cat "$work/verify.err")"
  [ "$(grep -c ': error: ' "$work/verify.err")" -eq 1 ] || fail "verify printed not one error line: $(cat "$work/verify.err")"
  python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); assert not r["ok"] and len(r["checkpoints"]) == 3, r' \
    "$work/verify.json" || fail "gcp-store verify's report is not valid JSON: $(cat "$work/verify.json")"
}
expect_verify
grep -q '\\xff' "$work/verify.json" || fail "the byte that is not UTF-8 is not shown as \\xff: $(cat "$work/verify.json")"
grep -q "$(printf '\xff')" "$work/verify.json" "$work/verify.err" && fail "a byte that is not UTF-8 reached the output raw"

# Show names the problem in one line, with the exit code of bad input.
expect_exit 2 gcp-store show good --seq 2
expect_stderr "manifest.json': it is not a regular file"
expect_exit 2 gcp-store ls deep
expect_stderr "nests deeper than 64 levels"
say "PASS"
