#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Several test nodes on this one machine, for end-to-end tests of multi-node jobs. Node i
# (gcpn1..gcpn8) has a network, UTS and mount namespace of its own: eth0 with 10.77.0.(10+i)/24
# on the host's bridge gcpbr0 (10.77.0.1), hostname gcpnI, a private tmpfs on /run/gcp, and an
# sshd for root (key only). Everything else is the host's: the file system (the store directory
# is a shared bind mount, so file systems mounted under it later show up in the nodes too), the
# cgroup file systems, the PID namespace.
#
#   scripts/nodes.sh up N STOREDIR     create gcpn1..gcpnN (N <= 8); STOREDIR becomes a shared bind mount first
#   scripts/nodes.sh down              tear everything down (idempotent, also after a half-failed up)
#   scripts/nodes.sh status            exit 0 when every node answers over ssh
#   scripts/nodes.sh kill NODE         the node dies: its sshd and every process in its namespaces are
#                                      killed (units with namespaces of their own are the caller's to kill)
#   scripts/nodes.sh exec NODE CMD...  run CMD in the namespaces of NODE (gcpnI or I), stdio passed through
#   scripts/nodes.sh ssh-config        print the path of the ssh client configuration: ssh -F "$(...)" gcpn2 CMD
#
# State lives in /run/gcp-nodes. KEY=VALUE lines in /run/gcp-nodes/node-env are exported to
# commands run over ssh or with 'exec' (scripts/slurm.sh puts SLURM_CONF there). Quiet on
# success; on failure one line on stderr naming the step and the log. Run as root.
#
# A fork costs about 13 ms on the VMs this runs on, so the script tests mounts and processes
# with shell builtins and hands ip(8) batches instead of one command per step.
set -euo pipefail

prog=nodes.sh
state=/run/gcp-nodes
log=$state/nodes.log
die() { printf '%s: error: %s (log: %s)\n' "$prog" "$1" "$log" >&2; exit 1; }
set -o errtrace
trap 'die "unexpected failure of \"$BASH_COMMAND\" (line $LINENO)"' ERR
say() { printf '%s: %s\n' "$prog" "$*" >&2; }

max_nodes=8
bridge=gcpbr0
subnet=10.77.0
nsdir=$state/ns # a private bind mount: persistent namespace files can only live on one
ssh_cfg=$state/ssh_config
key=$state/id_ed25519
node_env=$state/node-env
bashrc=$state/bashrc
pkgs=(openssh-server openssh-client iproute2 util-linux)
fw_tag=gcp-nodes # comment on the iptables rules this script adds

# Installing openssh-server would start (and enable) the host's own sshd on port 22 of every
# address; the nodes run their own sshd.
# shellcheck source=scripts/pkgs-lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/pkgs-lib.sh"

# mount_at PATH: true when something is mounted at PATH; sets mnt_id, mnt_root, mnt_fs and
# mnt_shared (non-empty for a shared mount) of the topmost mount there.
mount_at() {
  local want=${1//\\/\\134} id root mp rest
  want=${want// /\\040}
  mnt_id='' mnt_root='' mnt_fs='' mnt_shared=''
  while read -r id _ _ root mp rest; do
    [ "$mp" = "$want" ] || continue
    mnt_id=$id mnt_root=$root mnt_shared=''
    [[ " ${rest%% - *} " == *" shared:"* ]] && mnt_shared=1
    rest=${rest#* - } mnt_fs=${rest%% *}
  done </proc/self/mountinfo
  [ -n "$mnt_id" ]
}
is_nsfs() { mount_at "$1" && [ "$mnt_fs" = nsfs ]; }

# Node $1 has all its namespaces and its host-side veth.
node_made() {
  is_nsfs "$nsdir/gcpn$1.uts" && is_nsfs "$nsdir/gcpn$1.mnt" && is_nsfs "/run/netns/gcpn$1" &&
    [ -e "/sys/class/net/gcpn$1-br" ]
}
# Something of node $1 is there.
node_traces() {
  [ -e "/run/netns/gcpn$1" ] || [ -e "/sys/class/net/gcpn$1-br" ] || [ -e "$nsdir/gcpn$1.uts" ] ||
    [ -e "$nsdir/gcpn$1.mnt" ] || [ -e "$state/gcpn$1/sshd.pid" ]
}
# Fixed MAC addresses: a node made again has the same one, so no ARP cache on the bridge goes
# stale (the bridge itself would otherwise take the lowest MAC of its ports, which changes).
# mac KIND N sets $mac: 02:77:00:00:KIND:N (KIND 0 the bridge, 1 a host-side veth, 2 a node's eth0).
mac() { printf -v mac '02:77:00:00:%02x:%02x' "$1" "$2"; }
sshd_pid() { local p=; read -r p 2>/dev/null <"$state/gcpn$1/sshd.pid" || true; echo "$p"; }
sshd_alive() { local p; p=$(sshd_pid "$1"); alive "$p" sshd; }

# Serializes runs of this script (the lock is outside $state, which 'down' removes); checks for root.
lock() {
  [ "$(id -u)" -eq 0 ] || { printf '%s: error: must run as root\n' "$prog" >&2; exit 1; }
  exec 9>/run/gcp-nodes.lock
  flock -w 300 9 || { printf '%s: error: another %s has held /run/gcp-nodes.lock for 5 minutes\n' "$prog" "$prog" >&2; exit 1; }
}

# The store directory becomes a shared bind mount before any node's mount namespace exists: the
# root mount is private here, so a FUSE file system mounted under it later would otherwise stay
# invisible in the nodes (their copies of the mount would not receive it).
share_store() {
  local dir=$1
  mkdir -p "$dir" || die "cannot create the store directory '$dir'"
  if mount_at "$dir" && [ -n "$mnt_shared" ]; then return 0; fi
  if ! mount_at "$dir"; then
    run mount --bind "$dir" "$dir" || die "bind-mounting the store '$dir' onto itself failed"
    # Remember the mount by its id: 'down' unmounts it only if it is still this one.
    mount_at "$dir" && echo "$mnt_id" >"$state/store-bind"
  fi
  run mount --make-shared "$dir" || die "making the store '$dir' a shared mount failed"
}

unshare_store() {
  local dir='' id='' sub
  read -r dir 2>/dev/null <"$state/store" || true
  read -r id 2>/dev/null <"$state/store-bind" || true
  [ -n "$dir" ] && [ -n "$id" ] || return 0
  if mount_at "$dir" && [ "$mnt_id" = "$id" ]; then
    # A file system still mounted below it (a test's GlusterFS) would go with a lazy unmount.
    sub=$(findmnt -n -R -o TARGET --mountpoint "$dir" 2>/dev/null | wc -l)
    if [ "$sub" -gt 1 ]; then
      say "warning: left the store bind mount at '$dir': file systems are still mounted below it"
    else
      run umount "$dir" || run umount -l "$dir" || say "warning: could not unmount the store bind mount at '$dir'"
    fi
  elif grep -q "^$id " /proc/self/mountinfo; then
    say "warning: left the store bind mount at '$dir': another file system is mounted on top of it"
  fi
  rm -f "$state/store-bind"
}

# Persistent namespace files must sit on a private mount (on a shared one the namespace would
# propagate into itself, which the kernel refuses).
private_nsdir() {
  mkdir -p "$nsdir"
  mount_at "$nsdir" && return 0
  run mount --bind "$nsdir" "$nsdir" || die "bind-mounting '$nsdir' onto itself failed"
  run mount --make-private "$nsdir" || die "making '$nsdir' a private mount failed"
}

# sshd without PAM refuses a user whose password field says "locked" ('!'), keys or not.
check_root_login() {
  local name pw rest
  while IFS=: read -r name pw rest; do
    [ "$name" = root ] || continue
    [[ $pw != '!'* ]] && return 0
    die "root's password is locked ('!' in /etc/shadow) and the nodes' sshd runs without PAM, so it would refuse root; unlock it without a password: usermod -p '*' root"
  done </etc/shadow
}

new_key() { # FILE COMMENT
  [ -s "$1" ] && [ -s "$1.pub" ] && return 0
  rm -f "$1" "$1.pub"
  run ssh-keygen -q -t ed25519 -N '' -C "$2" -f "$1" || die "generating the ssh key $1 failed"
}

write_ssh_files() {
  local i
  new_key "$key" gcp-nodes
  cp "$key.pub" "$state/authorized_keys"
  {
    echo "# ssh client configuration for the test nodes of scripts/nodes.sh: ssh -F $ssh_cfg gcpnI CMD"
    for ((i = 1; i <= max_nodes; i++)); do printf 'Host gcpn%d\n  HostName %s.%d\n' "$i" $subnet $((10 + i)); done
    # curve25519: the default sntrup761 hybrid key exchange costs 0.08 s more per connection in
    # this VM (0.25 s for 'ssh gcpn2 true' instead of 0.33 s). No ControlMaster, although a
    # multiplexed command takes 0.09 s: the master outlives the command that started it, in that
    # command's cgroup (a job unit's, where CRIU would meet its TCP connection), and when a node
    # goes away without closing the connection its clients hang until ServerAlive gives up.
    cat <<EOF
Host gcpn*
  User root
  IdentityFile $key
  IdentitiesOnly yes
  BatchMode yes
  StrictHostKeyChecking no
  UserKnownHostsFile /dev/null
  GlobalKnownHostsFile /dev/null
  UpdateHostKeys no
  LogLevel ERROR
  KexAlgorithms curve25519-sha256,curve25519-sha256@libssh.org
  ConnectTimeout 5
  ServerAliveInterval 5
  ServerAliveCountMax 3
  SendEnv GCP_*
EOF
  } >"$ssh_cfg.tmp"
  mv "$ssh_cfg.tmp" "$ssh_cfg"
  # What root's shell reads in a node. bash started by sshd reads ~/.bashrc even when it only
  # runs a command, and root's .bashrc on these machines runs pyenv's init (about 1.2 s per
  # ssh command). Each node's mount namespace has this file bind-mounted over /root/.bashrc, so
  # nothing of root's files on the host changes.
  cat >"$bashrc" <<EOF
# bashrc of root in the test nodes of scripts/nodes.sh (bind-mounted over /root/.bashrc there)
if [ -r $node_env ]; then set -a; . $node_env; set +a; fi
EOF
  touch "$node_env"
}

write_sshd_config() {
  local i=$1 d=$state/gcpn$1
  new_key "$d/ssh_host_ed25519_key" "gcpn$i"
  cat >"$d/sshd_config" <<EOF
# sshd of test node gcpn$i (scripts/nodes.sh)
ListenAddress $subnet.$((10 + i)):22
HostKey $d/ssh_host_ed25519_key
PidFile $d/sshd.pid
AuthorizedKeysFile $state/authorized_keys
PermitRootLogin prohibit-password
AllowUsers root
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
UseDNS no
PrintMotd no
PrintLastLog no
X11Forwarding no
AcceptEnv GCP_*
MaxStartups 64
MaxSessions 64
Subsystem sftp internal-sftp
EOF
}

# firewall add|del: when bridged traffic passes iptables (br_netfilter), rules that let traffic
# on gcpbr0 through whatever the FORWARD and INPUT policies say, and nothing else.
firewall() {
  local rules=("FORWARD -i $bridge -o $bridge" "INPUT -s $subnet.0/24 -i $bridge") have r
  command -v iptables >/dev/null || return 0
  have=$(iptables -w 10 -S 2>/dev/null) || return 0
  for r in "${rules[@]}"; do
    # 'iptables -S' prints the rule as "-A $r -m comment ..." (the options in this order).
    # shellcheck disable=SC2086
    if [ "$1" = add ]; then
      [[ $have == *"-A $r -m comment --comment $fw_tag -j ACCEPT"* ]] ||
        run iptables -w 10 -I $r -m comment --comment $fw_tag -j ACCEPT || die "adding the iptables rule '$r -j ACCEPT' failed"
    elif [[ $have == *"-A $r -m comment --comment $fw_tag -j ACCEPT"* ]]; then
      run iptables -w 10 -D $r -m comment --comment $fw_tag -j ACCEPT || true
    fi
  done
}

# The processes whose network, UTS or mount namespace has one of the inode numbers given.
pids_in_ns() {
  [ $# -gt 0 ] || return 0
  # find fails on processes that exit while it looks.
  { find /proc/[0-9]*/ns -maxdepth 1 \( -name net -o -name uts -o -name mnt \) -printf '%h %l\n' 2>/dev/null || true; } |
    awk -v want=" $* " '{ split($2, a, /[][]/); if (index(want, " " a[2] " ")) { split($1, p, "/"); print p[3] } }' | sort -u
}

# The namespace inode numbers of nodes $@ (those still there): a namespace file's mount has
# "net:[INODE]" as its root.
node_inodes() {
  local i f ino
  for i in "$@"; do
    for f in "/run/netns/gcpn$i" "$nsdir/gcpn$i.uts" "$nsdir/gcpn$i.mnt"; do
      is_nsfs "$f" || continue
      ino=${mnt_root#*[} && echo "${ino%]}"
    done
  done
}

# Stops every process in the namespaces of nodes $@ (their sshd, ssh sessions, slurmd, jobs).
stop_node_procs() {
  local i p pids t left s
  for i in "$@"; do
    p=$(sshd_pid "$i")
    if alive "$p" sshd; then kill "$p" 2>/dev/null || true; fi
  done
  # shellcheck disable=SC2046
  pids=$(pids_in_ns $(node_inodes "$@") | tr '\n' ' ')
  [ -n "$pids" ] || return 0
  # shellcheck disable=SC2086
  kill $pids 2>/dev/null || true
  for ((t = 0; t < 30; t++)); do
    left=
    for p in $pids; do
      read -r s 2>/dev/null <"/proc/$p/stat" || continue
      [[ $s == *") Z "* ]] || { left=1; break; }
    done
    [ -z "$left" ] && return 0
    sleep 0.1
  done
  # shellcheck disable=SC2086
  kill -9 $pids 2>/dev/null || true
}

# Removes what is left of nodes $@: their namespaces, veths and files (processes stopped first).
remove_nodes() {
  local i f batch='' files
  [ $# -gt 0 ] || return 0
  stop_node_procs "$@"
  for i in "$@"; do
    if [ -e "/sys/class/net/gcpn$i-br" ]; then batch+="link del gcpn$i-br"$'\n'; fi
    if [ -e "/run/netns/gcpn$i" ]; then batch+="netns del gcpn$i"$'\n'; fi
  done
  if [ -n "$batch" ]; then printf '%s' "$batch" | run ip -force -batch - || true; fi
  files=()
  for i in "$@"; do
    for f in "$nsdir/gcpn$i.uts" "$nsdir/gcpn$i.mnt"; do if mount_at "$f"; then files+=("$f"); fi; done
  done
  if [ ${#files[@]} -gt 0 ]; then run umount "${files[@]}" || true; fi
  for i in "$@"; do
    for f in "$nsdir/gcpn$i.uts" "$nsdir/gcpn$i.mnt"; do
      while mount_at "$f"; do run umount "$f" || run umount -l "$f" || break; done
      rm -f "$f"
    done
    rm -f "$state/gcpn$i/sshd.pid"
  done
}

# Creates the namespaces of node $1 (its veth and netns exist) and starts its sshd there.
# Propagation 'slave': mounts made on the host under a shared mount (the store) reach the node,
# the node's own mounts stay in the node. Inside: the address, the hostname, the node's own
# /run/gcp, root's minimal .bashrc, and the node's copy of $nsdir goes (it would hold the
# namespaces of the nodes made before this one); then sshd, by its absolute path since it
# re-executes itself for every connection.
make_node() {
  local i=$1 n=gcpn$1 d=$state/gcpn$1
  printf '%s\n' "link set lo up" "addr add $subnet.$((10 + i))/24 dev eth0" "link set eth0 up" \
    "route add default via $subnet.1" >"$d/node.ip"
  touch "$nsdir/$n.uts" "$nsdir/$n.mnt"
  # shellcheck disable=SC2016
  run nsenter --net="/run/netns/$n" unshare --uts="$nsdir/$n.uts" --mount="$nsdir/$n.mnt" --propagation slave \
    sh -euc '
    ip -batch "$2/node.ip"
    hostname "$1"
    # What the host has mounted under /run/gcp (e.g. /run/gcp/netns) goes first: under the
    # tmpfs it would be unreachable, and a unit would carry it into its checkpoint as an
    # external mount that no restore can find.
    awk '"'"'$5 == "/run/gcp" || index($5, "/run/gcp/") == 1 {print $5}'"'"' /proc/self/mountinfo | sort -r |
      while read -r m; do umount -l "$m"; done
    mount -t tmpfs -o mode=0755,size=256m "gcp-$1" /run/gcp
    if [ -f /root/.bashrc ]; then mount --bind "$3" /root/.bashrc; fi
    umount -l "$4"
    exec /usr/sbin/sshd -f "$2/sshd_config" -E "$2/sshd.log"' sh "$n" "$d" "$bashrc" "$nsdir" ||
    die "creating the namespaces of $n and starting its sshd failed; see $d/sshd.log"
}

start_sshd() {
  local n=gcpn$1 d=$state/gcpn$1
  run in_node "$n" /usr/sbin/sshd -f "$d/sshd_config" -E "$d/sshd.log" || die "starting sshd in $n failed; see $d/sshd.log"
}

ssh_ok() { timeout 10 ssh -F "$ssh_cfg" -o ConnectTimeout=3 "gcpn$1" true </dev/null >/dev/null 2>&1; }

# The nodes of 1..$1 that do not answer over ssh (asked in parallel).
silent_nodes() {
  local n=$1 i pids=()
  for ((i = 1; i <= n; i++)); do { ssh_ok "$i" || exit 1; } & pids+=($!); done
  for ((i = 1; i <= n; i++)); do wait "${pids[i - 1]}" || printf 'gcpn%d ' "$i"; done
}
all_answer() { [ -z "$(silent_nodes "$1")" ]; }

up() {
  local n=$1 store=$2 i mac had_n='' had_store='' batch='' make=() pids=() fails=()
  [[ $n =~ ^[1-9][0-9]*$ ]] && [ "$n" -le $max_nodes ] || usage
  lock
  read -r had_n 2>/dev/null <"$state/nodes" || true
  read -r had_store 2>/dev/null <"$state/store" || true
  if [ -n "$had_n" ]; then
    if [ "$had_n" != "$n" ] || [ "$had_store" != "$store" ]; then
      printf '%s: error: %s nodes are up on the store %s; run %s down first\n' "$prog" "$had_n" "$had_store" "$0" >&2
      exit 1
    fi
    for ((i = 1; i <= n; i++)); do node_made "$i" || break; done
    if [ "$i" -gt "$n" ] && all_answer "$n"; then return 0; fi
  fi
  mkdir -p "$state" && chmod 755 "$state"
  : >"$log"
  install_pkgs
  check_root_login
  echo "$store" >"$state/store"
  echo "$n" >"$state/nodes"
  share_store "$store"
  private_nsdir
  mkdir -p /run/gcp /run/netns
  # Debian's sshd wants its privilege separation directory (systemd would create it).
  mkdir -p /run/sshd && chmod 755 /run/sshd
  write_ssh_files
  for ((i = 1; i <= n; i++)); do
    mkdir -p "$state/gcpn$i"
    write_sshd_config "$i"
    if node_made "$i"; then
      sshd_alive "$i" || start_sshd "$i"
    else
      # Half made by a failed run: made again.
      if node_traces "$i"; then remove_nodes "$i"; fi
      make+=("$i")
    fi
  done
  # The host side in one batch: the bridge, and each new node's netns and veth pair.
  if [ ! -e /sys/class/net/$bridge ]; then
    mac 0 1
    batch+="link add $bridge address $mac type bridge forward_delay 0"$'\n'
  fi
  batch+="addr replace $subnet.1/24 dev $bridge"$'\n'"link set $bridge up"$'\n'
  for i in "${make[@]}"; do
    batch+="netns add gcpn$i"$'\n'
    mac 1 "$i"
    batch+="link add gcpn$i-br address $mac type veth peer name eth0 "
    mac 2 "$i"
    batch+="address $mac netns gcpn$i"$'\n'
    batch+="link set gcpn$i-br master $bridge up"$'\n'
  done
  printf '%s' "$batch" >"$state/host.ip"
  run ip -batch "$state/host.ip" || die "creating the bridge $bridge and the nodes' network namespaces failed"
  firewall add
  for i in "${make[@]}"; do
    make_node "$i" 2>"$state/gcpn$i/make.err" &
    pids+=($!)
  done
  for i in "${!pids[@]}"; do wait "${pids[$i]}" || fails+=("${make[$i]}"); done
  if [ ${#fails[@]} -gt 0 ]; then
    head -n1 "$state/gcpn${fails[0]}/make.err" >&2
    exit 1
  fi
  read -ra fails <<<"$(silent_nodes "$n")"
  [ ${#fails[@]} -eq 0 ] || die "no answer over ssh from ${fails[*]}; see $state/${fails[0]}/sshd.log"
}

down() {
  local i nodes=()
  lock
  if [ -d "$state" ]; then : >>"$log"; else log=/dev/null; fi
  # A Slurm cluster on the nodes goes first: its controller and munged run on the host.
  if [ -d "$state/slurm" ]; then
    run "$(dirname "${BASH_SOURCE[0]}")/slurm.sh" down || say "warning: scripts/slurm.sh down failed; see $state/slurm/slurm.log"
  fi
  for ((i = 1; i <= max_nodes; i++)); do
    if node_traces "$i"; then nodes+=("$i"); fi
  done
  remove_nodes "${nodes[@]}"
  while mount_at "$nsdir"; do run umount "$nsdir" || run umount -l "$nsdir" || break; done
  if [ -e /sys/class/net/$bridge ]; then run ip link del $bridge || true; fi
  firewall del
  unshare_store
  [ -d "$state" ] || return 0
  # Nothing may still be mounted below $state before it goes.
  if grep -q " $state/" /proc/self/mountinfo; then
    say "warning: kept $state: something is still mounted below it"
    return 0
  fi
  rm -rf "$state"
}

status() {
  local n=
  read -r n 2>/dev/null <"$state/nodes" || exit 1
  all_answer "$n" || exit 1
}

# exec NODE CMD...: nsenter, not 'ip netns exec', which remounts /sys and hides the cgroup file systems.
node_exec() {
  local node=$1 i vars=() line wd=/
  shift
  i=${node#gcpn}
  [[ $i =~ ^[1-9][0-9]*$ ]] && [ "$i" -le $max_nodes ] || {
    printf "%s: error: unknown node '%s' (nodes are gcpn1..gcpn%d)\n" "$prog" "$node" $max_nodes >&2
    exit 2
  }
  is_nsfs "$nsdir/gcpn$i.mnt" && is_nsfs "$nsdir/gcpn$i.uts" && [ -e "/run/netns/gcpn$i" ] ||
    { printf '%s: error: node gcpn%d is not up\n' "$prog" "$i" >&2; exit 1; }
  [ $# -gt 0 ] || usage
  if [ -f "$node_env" ]; then
    while IFS= read -r line; do if [[ $line =~ ^[A-Za-z_][A-Za-z0-9_]*= ]]; then vars+=("$line"); fi; done <"$node_env"
  fi
  [ -d "$PWD" ] && wd=$PWD
  exec nsenter --net="/run/netns/gcpn$i" --uts="$nsdir/gcpn$i.uts" --mount="$nsdir/gcpn$i.mnt" --wd="$wd" \
    -- env "${vars[@]}" "$@"
}
in_node() { (node_exec "$@"); }

ssh_config() {
  [ -f "$ssh_cfg" ] || { printf '%s: error: the nodes are not up (no %s)\n' "$prog" "$ssh_cfg" >&2; exit 1; }
  printf '%s\n' "$ssh_cfg"
}

usage() {
  printf 'usage: %s up N STOREDIR | down | status | exec NODE CMD... | kill NODE | ssh-config\n' "$0" >&2
  exit 2
}

[ $# -ge 1 ] || usage
case $1 in
up) [ $# -eq 3 ] || usage; up "$2" "$(realpath -m -- "$3")" ;;
down) [ $# -eq 1 ] || usage; down ;;
status) [ $# -eq 1 ] || usage; status ;;
exec) [ $# -ge 3 ] || usage; shift; node_exec "$@" ;;
kill) [ $# -eq 2 ] || usage; n=${2#gcpn}; [[ $n =~ ^[1-8]$ ]] || usage; stop_node_procs "$n" ;;
ssh-config) [ $# -eq 1 ] || usage; ssh_config ;;
*) usage ;;
esac
