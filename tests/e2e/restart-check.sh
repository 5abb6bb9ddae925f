#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The compatibility check before a restart: a checkpoint records CRIU's cpuinfo image,
# and `gcp-restart --check` passes on this node and restores nothing. A checkpoint whose
# recorded cpuinfo needs a CPU feature this CPU lacks (an xfeatures bit set by a criu
# wrapper as `criu cpuinfo dump` wrote the image) is refused by --check and by a plain
# restart, in one line naming the CPU check, with nothing started; so is a recorded mount
# point this node lacks.
source "$(dirname "$0")/lib.sh"
requires root criu freezer python3

criu_bin=${GCP_CRIU:-$(command -v criu || echo /usr/local/sbin/criu)}
st=$work/counter.state
start_job compat main "$workloads/counter" "$st" 16
wait_for "the counter to count" 30 count_at_least "$st" 5

run_tool "$work/cp1.json" "$work/cp1.err" gcp-checkpoint --stop compat || fail "checkpoint failed: $(cat "$work/cp1.err")"
[ "$(json "$work/cp1.json" 'd["units"][0]["target"]["checkImages"]')" = "['cpuinfo.img']" ] ||
  fail "the checkpoint does not record cpuinfo.img: $(json "$work/cp1.json" 'd["units"][0].get("target")')"
[ "$(json "$work/cp1.json" 'd["units"][0]["target"]["kernel"]')" = "$(uname -r)" ] || fail "the checkpoint records another kernel"
[ "$(cgroup_procs compat main)" -eq 0 ] || fail "processes left after checkpoint --stop"
stopped_at=$(state "$st" count)

# --check passes, prints the verdict, and starts nothing.
run_tool "$work/c1.json" "$work/c1.err" gcp-restart compat --check || fail "--check refused: $(cat "$work/c1.err")"
[ "$(json "$work/c1.json" 'd["ok"]')" = True ] || fail "--check says not ok: $(cat "$work/c1.json")"
[ "$(json "$work/c1.json" '[c["status"] for c in d["checks"] if c["check"] == "cpu"]')" = "['ok']" ] ||
  fail "--check has no passed cpu check: $(cat "$work/c1.json")"
for c in kernel checkpointer address mount; do
  [ "$(json "$work/c1.json" "len([c for c in d['checks'] if c['check'] == '$c'])")" = 1 ] || fail "--check has no $c check"
done
run_tool "$work/c1.txt" "$work/c1t.err" gcp-restart compat --check --human || fail "--check --human refused"
grep -q "^main .* cpu .* ok " "$work/c1.txt" || fail "--check --human has no cpu row: $(cat "$work/c1.txt")"
[ "$(cgroup_procs compat main)" -eq 0 ] || fail "--check started processes in the unit's cgroup"
[ ! -e "$GCP_STORE/jobs/compat/logs/restore-1-main" ] || fail "--check ran a restore"
sleep 0.5
[ "$(state "$st" count)" = "$stopped_at" ] || fail "the counter went on after --check"

# A plain restart passes the same check and the job goes on.
run_tool "$work/r1.json" "$work/r1.err" gcp-restart compat || fail "restart failed: $(cat "$work/r1.err")"
wait_for "the restored counter to count on" 20 count_at_least "$st" $((stopped_at + 3))

# The next checkpoint's cpuinfo.img needs an xfeatures bit (all of them) that this CPU lacks.
cat >"$work/needy-cpu.py" <<'PY'
import struct, sys
def varint(b, i):
    v = s = 0
    while True:
        c = b[i]; i += 1; v |= (c & 0x7f) << s; s += 7
        if c < 0x80: return v, i
def enc(v):
    out = bytearray()
    while True:
        c = v & 0x7f; v >>= 7
        if v: out.append(c | 0x80)
        else: out.append(c); return bytes(out)
def fields(b):
    i, out = 0, []
    while i < len(b):
        key, i = varint(b, i)
        if key & 7 == 0: v, j = varint(b, i); out.append((key, b[i:j])); i = j
        elif key & 7 == 2: n, j = varint(b, i); out.append((key, b[i:j + n])); i = j + n
        else: sys.exit("unexpected wire type in cpuinfo.img")
    return out
path = sys.argv[1]
img = open(path, "rb").read()
head, (size,) = img[:8], struct.unpack("<I", img[8:12])
outer = b""
for key, val in fields(img[12:12 + size]):
    if key == (1 << 3 | 2):  # the x86 entry: xfeatures_mask (field 8) gets every bit
        n, j = varint(val, 0)
        inner = b"".join(enc(k) + v for k, v in fields(val[j:]) if k != (8 << 3)) + enc(8 << 3) + enc(2**63 - 1)
        val = enc(len(inner)) + inner
    outer += enc(key) + val
open(path, "wb").write(head + struct.pack("<I", len(outer)) + outer + img[12 + size:])
PY
cat >"$work/needy-criu" <<SH
#!/bin/sh
"$criu_bin" "\$@" || exit \$?
[ "\$1 \$2" = "cpuinfo dump" ] && exec python3 "$work/needy-cpu.py" "\$4/cpuinfo.img"
exit 0
SH
chmod +x "$work/needy-criu"
GCP_CRIU=$work/needy-criu run_tool "$work/cp2.json" "$work/cp2.err" gcp-checkpoint --stop compat ||
  fail "second checkpoint failed: $(cat "$work/cp2.err")"
[ "$(json "$work/cp2.json" 'd["seq"]')" = 2 ] || fail "the second checkpoint is not seq 2"
stopped_at=$(state "$st" count)

run_tool "$work/c2.json" "$work/c2.err" gcp-restart compat --check && fail "--check passed a checkpoint that needs a missing CPU feature"
[ "$(json "$work/c2.json" 'd["ok"]')" = False ] || fail "--check says ok: $(cat "$work/c2.json")"
reason=$(json "$work/c2.json" '[c["reason"] for c in d["checks"] if c["check"] == "cpu" and c["status"] == "refuse"][0]')
case $reason in *xfeatures*) ;; *) fail "the cpu refusal does not give CRIU's reason: $reason" ;; esac
[ "$(grep -c ': error: ' "$work/c2.err")" -eq 1 ] || fail "--check printed other than one error line: $(cat "$work/c2.err")"
grep -q "error: unit 'main' on node '.*': cpu: " "$work/c2.err" || fail "--check's error does not name the cpu check: $(cat "$work/c2.err")"

expect_exit 1 gcp-restart compat
expect_stderr "restarting checkpoint 2 of job 'compat': unit 'main' on node '.*': cpu: this node's CPU lacks"
[ "$(cgroup_procs compat main)" -eq 0 ] || fail "the refused restart started processes"
[ ! -e "$GCP_STORE/jobs/compat/logs/restore-2-main" ] || fail "the refused restart ran criu restore"
[ "$(json <("$bin/gcp-isolate" list compat 2>/dev/null || echo '{}') 'd.get("units", [{}])[0].get("state", "stopped")')" = stopped ] ||
  fail "the job is not recorded stopped after the refused restart"
sleep 0.5
[ "$(state "$st" count)" = "$stopped_at" ] || fail "the counter went on after the refused restart"

# The earlier checkpoint still passes.
run_tool "$work/c3.json" "$work/c3.err" gcp-restart compat --seq 1 --check || fail "--seq 1 --check refused: $(cat "$work/c3.err")"

# A mount point the unit used that this node lacks (written into checkpoint 1's record) is refused by name.
manifest=$GCP_STORE/jobs/compat/checkpoints/1/manifest.json
python3 -c 'import json,sys; p=sys.argv[1]; d=json.load(open(p)); d["units"][0]["target"]["mounts"].append("/gcp-no-such-mount"); json.dump(d, open(p, "w"))' "$manifest"
run_tool "$work/c4.json" "$work/c4.err" gcp-restart compat --seq 1 --check && fail "--check passed a missing mount point"
grep -q "error: unit 'main' on node '.*': mount: the unit uses '/gcp-no-such-mount', which is not a mount point on this node" \
  "$work/c4.err" || fail "--check's error does not name the missing mount point: $(cat "$work/c4.err")"
[ "$(cgroup_procs compat main)" -eq 0 ] || fail "the refused --check started processes"
say "--check passed and restored nothing; a recorded CPU need this CPU lacks was refused by --check and by the restart: $reason"
