#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# A real GlusterFS mount on this one machine, for the end-to-end tests and the benchmark:
# volume 'gcptest', one brick on loopback, mounted over FUSE with POSIX ACLs on.
#
#   scripts/gluster.sh up MOUNTPOINT      install if missing, start glusterd, create and start the volume, mount it
#   scripts/gluster.sh down MOUNTPOINT    unmount, delete the volume and its brick, stop glusterd if this script started it
#   scripts/gluster.sh status MOUNTPOINT  exit 0 when the volume is mounted there and answers
#
# Idempotent. Quiet on success (one line while it installs packages); on failure one line on
# stderr naming the step and the log. Run as root.
set -euo pipefail

prog=gluster.sh
die() { printf '%s: error: %s (log: %s)\n' "$prog" "$1" "$log" >&2; exit 1; }
# Any other failure still ends with one line that says where.
set -o errtrace
trap 'die "unexpected failure of \"$BASH_COMMAND\" (line $LINENO)"' ERR
say() { printf '%s: %s\n' "$prog" "$*" >&2; }

vol=gcptest
brick=/var/lib/gcp-gluster/brick
# The gluster CLI refuses 'localhost' and 127.0.0.1 as a brick host even with 'force', but glusterd
# takes any 127/8 address as itself: 127.0.0.2 keeps everything on loopback with no name to resolve.
brick_host=127.0.0.2
log_dir=${GCP_BUILD_CACHE:-/var/cache/gcp-build}
log=$log_dir/gluster.log
pkgs=(glusterfs-server glusterfs-client acl)
run_dir=/run/gcp-gluster
started=$run_dir/glusterd-started # "systemd" or the pid of the glusterd this script started

# Runs a command with its output appended to the log.
run() { printf '+ [%s] %s\n' "$(date +%T.%3N)" "$*" >>"$log"; "$@" >>"$log" 2>&1 9>&-; }
g() { run timeout 120 gluster --mode=script "$@"; }

missing_pkgs() {
  local p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || printf '%s ' "$p"
  done
}

install_pkgs() {
  local need
  need=$(missing_pkgs "${pkgs[@]}")
  [ -z "$need" ] && return 0
  say "installing ${need% } (about 30 s)"
  export DEBIAN_FRONTEND=noninteractive
  # shellcheck disable=SC2086
  run apt-get install -y -qq --no-install-recommends $need && return 0
  # Update the package lists only when they are missing or stale, then try once more.
  grep -qE 'Unable to locate package|has no installation candidate|is not available|Failed to fetch' "$log" ||
    die "apt-get install ${need% } failed"
  run apt-get update -qq || die "apt-get update failed"
  # shellcheck disable=SC2086
  run apt-get install -y -qq --no-install-recommends $need || die "apt-get install ${need% } failed"
}

glusterd_answers() { timeout 20 gluster --mode=script volume list >/dev/null 2>&1; }

# A live process (not a zombie) whose name is $2.
alive() {
  local pid=$1 name=$2 stat
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  stat=$(cat "/proc/$pid/stat" 2>/dev/null) || return 1
  [[ $stat == "$pid ($name) "* && $stat != "$pid ($name) Z"* ]]
}

wait_glusterd() {
  local i
  for ((i = 0; i < 60; i++)); do
    glusterd_answers && return 0
    sleep 0.5
  done
  return 1
}

start_glusterd() {
  local pid
  glusterd_answers && return 0
  # One already running (maybe still starting) is not ours to start.
  pid=$(cat /run/glusterd.pid 2>/dev/null || true)
  if alive "$pid" glusterd; then
    wait_glusterd || die "glusterd (pid $pid) runs but does not answer; see /var/log/glusterfs/glusterd.log"
    return 0
  fi
  mkdir -p "$run_dir"
  if [ -d /run/systemd/system ] && run systemctl start glusterd; then
    echo systemd >"$started"
  else
    # No systemd as PID 1 (containers, this VM): start the daemon directly; it forks once ready.
    run glusterd -p /run/glusterd.pid || die "starting glusterd failed; see /var/log/glusterfs/glusterd.log"
    cat /run/glusterd.pid >"$started"
  fi
  wait_glusterd || die "glusterd started but does not answer; see /var/log/glusterfs/glusterd.log"
}

stop_glusterd() {
  local how pid i
  how=$(cat "$started" 2>/dev/null || true)
  rm -f "$started"
  if [ "$how" = systemd ]; then
    run systemctl stop glusterd || true
    return 0
  fi
  alive "$how" glusterd || return 0
  kill "$how" 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do
    alive "$how" glusterd || return 0
    sleep 0.1
  done
  kill -9 "$how" 2>/dev/null || true
}

brick_online() {
  timeout 60 gluster --mode=script volume status "$vol" 2>/dev/null |
    grep -qE "^Brick $brick_host:$brick +[^ ]+ +[^ ]+ +Y "
}

vol_info() { timeout 60 gluster --mode=script volume info "$vol" 2>/dev/null; }

setup_volume() {
  local info
  info=$(vol_info) || info=
  # Reuse an existing volume only if it is this one brick and the brick is still there.
  if [ -n "$info" ] && ! { grep -qx "Number of Bricks: 1" <<<"$info" &&
    grep -qx "Brick1: $brick_host:$brick" <<<"$info" && [ -d "$brick/.glusterfs" ]; }; then
    g volume stop "$vol" force || true
    g volume delete "$vol" || die "deleting the stale volume '$vol' failed"
    info=
  fi
  if [ -z "$info" ]; then
    # A brick left by an earlier volume carries its volume-id and would be refused: start clean.
    rm -rf "$brick" && mkdir -p "$brick"
    # 'force': the brick is on the root file system.
    g volume create "$vol" "$brick_host:$brick" force || die "creating volume '$vol' on '$brick' failed"
    info=$(vol_info) || die "volume '$vol' was created but 'gluster volume info' does not show it"
  fi
  if ! grep -qx "Status: Started" <<<"$info"; then
    g volume start "$vol" || die "starting volume '$vol' failed; see /var/log/glusterfs/bricks/"
  fi
  local i
  for ((i = 0; i < 30; i++)); do
    brick_online && return 0
    # Started but its brick process is gone (killed, or glusterd restarted): 'start force' restarts it.
    # glusterd may still take a killed brick for alive for a moment (an unreaped zombie), so retry.
    if ((i % 10 == 0)); then g volume start "$vol" force || true; fi
    sleep 0.5
  done
  die "the brick of volume '$vol' does not come online; see /var/log/glusterfs/bricks/"
}

# The source of what is mounted exactly at $1 (empty when nothing is), and its type.
mount_source() { findmnt -n -o SOURCE --mountpoint "$1" 2>/dev/null | tail -n1 || true; }
mount_fstype() { findmnt -n -o FSTYPE --mountpoint "$1" 2>/dev/null | tail -n1 || true; }
ours() { [[ $(mount_fstype "$1") == fuse.glusterfs && $(mount_source "$1") == *":/$vol" ]]; }
healthy() { ours "$1" && timeout 10 stat -f "$1" >/dev/null 2>&1 && timeout 10 ls "$1" >/dev/null 2>&1; }

# Every mount point of the volume.
volume_mounts() {
  { findmnt -n -l -t fuse.glusterfs -o SOURCE,TARGET 2>/dev/null || true; } |
    awk -v s=":/$vol" 'substr($1, length($1) - length(s) + 1) == s { print $2 }'
}

mount_volume() {
  local mnt=$1
  if ours "$mnt"; then
    # Ours but dead (its client or brick went away): drop it and mount again.
    run umount -l "$mnt" || true
  elif [ -n "$(mount_source "$mnt")" ]; then
    die "'$mnt' already has a $(mount_fstype "$mnt") mount of '$(mount_source "$mnt")'"
  fi
  mkdir -p "$mnt" || die "cannot create the mount point '$mnt'"
  # Without 'acl' the FUSE mount answers setfacl with EOPNOTSUPP and enforces no ACL.
  run mount -t glusterfs -o acl "127.0.0.1:/$vol" "$mnt" ||
    die "mounting '$vol' at '$mnt' failed; see /var/log/glusterfs/$(echo "${mnt#/}" | tr / -).log"
  healthy "$mnt" || die "'$mnt' is mounted but does not answer"
}

# Serializes runs of this script; also checks for root.
lock() {
  [ "$(id -u)" -eq 0 ] || die "must run as root"
  mkdir -p "$run_dir" "$log_dir"
  exec 9>"$run_dir/lock"
  flock -w 300 9 || die "another '$prog' has held $run_dir/lock for 5 minutes"
}

up() {
  local mnt=$1
  lock
  healthy "$mnt" && return 0
  : >"$log"
  install_pkgs
  [ -e /dev/fuse ] || run modprobe fuse || die "no /dev/fuse: FUSE is not available on this machine"
  start_glusterd
  setup_volume
  mount_volume "$mnt"
}

down() {
  local mnt=$1 m pid
  lock
  : >"$log"
  # Every mount of the volume, not only this one: the volume is going away.
  for m in "$mnt" $(volume_mounts); do
    ours "$m" || continue
    run umount "$m" || run umount -l "$m" || die "unmounting '$m' failed"
  done
  if command -v gluster >/dev/null && glusterd_answers; then
    if vol_info >/dev/null; then
      g volume stop "$vol" force || true
      g volume delete "$vol" || die "deleting volume '$vol' failed"
    fi
  elif [ -d "/var/lib/glusterd/vols/$vol" ]; then
    # glusterd is down: stop a brick it left behind and drop the volume from its store.
    for pid in $(cat /var/run/gluster/vols/"$vol"/*.pid 2>/dev/null || true); do
      if alive "$pid" glusterfsd; then kill "$pid" 2>/dev/null || true; fi
    done
    rm -rf "/var/lib/glusterd/vols/$vol"
  fi
  stop_glusterd
  rm -rf "$brick"
}

status() { healthy "$1" || exit 1; }

usage() {
  printf 'usage: %s up|down|status MOUNTPOINT\n' "$0" >&2
  exit 2
}

[ $# -eq 2 ] || usage
mnt=$(realpath -m -- "$2")
case $1 in
up) up "$mnt" ;;
down) down "$mnt" ;;
status) status "$mnt" ;;
*) usage ;;
esac
