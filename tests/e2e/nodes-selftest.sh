#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The test nodes of scripts/nodes.sh, which the multi-node tests stand on: three nodes come up
# on a store under $work; over ssh each has its own hostname, address and /run/gcp and the host's
# cgroup file systems and PID namespace; a file written on either side of the store is seen on
# the other, also on a file system mounted under the store after the nodes came up; node 1
# reaches node 3 and the host by TCP; 'exec' passes stdio and the exit code through; 'down'
# leaves nothing behind.
source "$(dirname "$0")/lib.sh"
requires root python3

nodes=$top/scripts/nodes.sh
store=$work/store
[ ! -e /run/gcp-nodes/nodes ] || skip "test nodes are up already (scripts/nodes.sh down takes them down)"
on_exit "$nodes" down

# now_ms: wall-clock milliseconds; secs MS: MS as seconds with two decimals.
now_ms() { local t=${EPOCHREALTIME/[.,]/}; echo $((t / 1000)); }
secs() { printf '%d.%02d' $(($1 / 1000)) $(($1 % 1000 / 10)); }

t0=$(now_ms)
"$nodes" up 3 "$store" || skip "the test nodes did not come up (scripts/nodes.sh up; log /run/gcp-nodes/nodes.log)"
up_ms=$(($(now_ms) - t0))
"$nodes" status || fail "nodes.sh status fails right after up"
cfg=$("$nodes" ssh-config)
on() { ssh -F "$cfg" "$@"; }

host_cgroups=$(findmnt -n -l -R -o TARGET /sys/fs/cgroup | sort | tr '\n' ' ')
host_pidns=$(readlink /proc/self/ns/pid)
best=999999
for i in 1 2 3; do
  t0=$(now_ms)
  out=$(on "gcpn$i" hostname) || fail "ssh to gcpn$i failed"
  t=$(($(now_ms) - t0))
  if [ $t -lt $best ]; then best=$t; fi
  [ "$out" = "gcpn$i" ] || fail "hostname over ssh to gcpn$i says '$out'"
  addr=$(on "gcpn$i" ip -4 -o addr show dev eth0 | awk '{print $4}')
  [ "$addr" = "10.77.0.$((10 + i))/24" ] || fail "eth0 of gcpn$i has '$addr', expected 10.77.0.$((10 + i))/24"
  src=$(on "gcpn$i" findmnt -n -o SOURCE --mountpoint /run/gcp) || fail "gcpn$i has no mount on /run/gcp"
  [ "$src" = "gcp-gcpn$i" ] || fail "/run/gcp in gcpn$i is '$src', not the node's own tmpfs"
  cg=$(on "gcpn$i" "findmnt -n -l -R -o TARGET /sys/fs/cgroup | sort | tr '\n' ' '")
  [ "$cg" = "$host_cgroups" ] || fail "gcpn$i sees the cgroup file systems '$cg', the host '$host_cgroups'"
  [ "$(on "gcpn$i" readlink /proc/self/ns/pid)" = "$host_pidns" ] || fail "gcpn$i has a PID namespace of its own"
done
# Root's shell start-up on the host may be heavy (1.3 s here with pyenv): the nodes skip it.
[ $best -le 1000 ] || fail "the fastest of three ssh commands took $(secs $best) s"

# The store, both ways, and a file system mounted under it after the nodes came up.
echo host >"$store/from-host"
for i in 1 2 3; do
  [ "$(on "gcpn$i" cat "$store/from-host")" = host ] || fail "gcpn$i does not see the host's file in the store"
  on "gcpn$i" "echo gcpn$i >$store/from-gcpn$i" || fail "gcpn$i cannot write to the store"
  [ "$(cat "$store/from-gcpn$i" 2>/dev/null)" = "gcpn$i" ] || fail "the host does not see the file gcpn$i wrote to the store"
done
mkdir "$store/late"
unmount_late() { if findmnt -n --mountpoint "$store/late" >/dev/null; then umount -l "$store/late"; fi; }
on_exit unmount_late
mount -t tmpfs gcp-selftest "$store/late" || fail "mounting a tmpfs under the store failed"
echo late >"$store/late/file"
[ "$(on gcpn2 cat "$store/late/file")" = late ] || fail "gcpn2 does not see a file system mounted under the store after it came up"
umount "$store/late"
[ -z "$(on gcpn2 findmnt -n --mountpoint "$store/late")" ] || fail "gcpn2 still has the store's submount after the host unmounted it"

# TCP from node 1 to node 3 and to the host. The listener takes one connection and writes what
# it read into the store; the sender retries until the listener is there.
listen() { # ADDR PORT OUTFILE
  timeout 20 python3 -c '
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2]))); s.listen(1)
c, a = s.accept(); open(sys.argv[3], "w").write(c.recv(100).decode() + " from " + a[0] + "\n")' "$@"
}
send() { # NODE ADDR PORT TEXT
  on "$1" "for i in \$(seq 50); do (echo -n '$4' >/dev/tcp/$2/$3) 2>/dev/null && exit 0; sleep 0.1; done; exit 1"
}
export -f listen
"$nodes" exec gcpn3 bash -c "listen 10.77.0.13 7101 $work/tcp-n3" &
n3=$!
listen 10.77.0.1 7102 "$work/tcp-host" &
hl=$!
send gcpn1 10.77.0.13 7101 hello-n3 || fail "gcpn1 cannot connect to gcpn3 by TCP"
send gcpn1 10.77.0.1 7102 hello-host || fail "gcpn1 cannot connect to the host by TCP"
wait $n3 || fail "the listener on gcpn3 got nothing"
wait $hl || fail "the listener on the host got nothing"
[ "$(cat "$work/tcp-n3")" = "hello-n3 from 10.77.0.11" ] || fail "gcpn3 read '$(cat "$work/tcp-n3")'"
[ "$(cat "$work/tcp-host")" = "hello-host from 10.77.0.11" ] || fail "the host read '$(cat "$work/tcp-host")'"

# exec: stdio and exit code pass through; GCP_* variables pass over ssh.
[ "$(echo in | "$nodes" exec gcpn2 sh -c 'echo "$(hostname) $(cat)"')" = "gcpn2 in" ] || fail "nodes.sh exec gcpn2 does not pass stdio"
rc=0 && "$nodes" exec 2 sh -c 'exit 7' || rc=$?
[ $rc -eq 7 ] || fail "nodes.sh exec passed exit code $rc instead of 7"
[ "$(GCP_SELFTEST=passed on gcpn1 'echo $GCP_SELFTEST')" = passed ] || fail "a GCP_* variable did not pass over ssh"

t0=$(now_ms)
"$nodes" down || fail "nodes.sh down failed"
down_ms=$(($(now_ms) - t0))
"$nodes" down || fail "a second nodes.sh down failed"
! "$nodes" status 2>/dev/null || fail "nodes.sh status succeeds after down"
ls /run/netns/gcpn* >/dev/null 2>&1 && fail "network namespaces left: $(ls /run/netns)"
[ ! -e /sys/class/net/gcpbr0 ] || fail "the bridge gcpbr0 was left"
[ ! -e /run/gcp-nodes ] || fail "/run/gcp-nodes was left"
[ -z "$(findmnt -n --mountpoint "$store")" ] || fail "the store's bind mount was left"
say "3 nodes up in $(secs $up_ms) s, down in $(secs $down_ms) s; an ssh command takes $(secs $best) s"
