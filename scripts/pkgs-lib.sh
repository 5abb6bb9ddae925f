# SPDX-License-Identifier: MIT
# Shared by scripts/nodes.sh and scripts/slurm.sh (sourced, not run): logging of commands,
# package installs that start no daemon, and a liveness check. The caller sets $log and
# $pkgs and defines die and say.

# Runs a command with its output appended to the log.
run() { printf '+ [%(%T)T.%s] %s\n' -1 "${EPOCHREALTIME:(-6):3}" "$*" >>"$log"; "$@" >>"$log" 2>&1 9>&-; }

missing_pkgs() {
  local p installed
  installed=" $(dpkg-query -W -f='${Package}=${Status}\n' "$@" 2>/dev/null | sed -n 's/=install ok installed$//p' | tr '\n' ' ') " || true
  for p in "$@"; do [[ $installed == *" $p "* ]] || printf '%s ' "$p"; done
}

# Installs packages with a policy-rc.d that says "no", so that their daemons do not start
# with Debian's configuration (the callers start their own).
apt_install() {
  local rc=0 policy=/usr/sbin/policy-rc.d ours=
  export DEBIAN_FRONTEND=noninteractive
  if [ ! -e $policy ]; then printf '#!/bin/sh\nexit 101\n' >$policy && chmod 755 $policy && ours=1; fi
  run apt-get install -y -qq --no-install-recommends "$@" || rc=$?
  if [ -n "$ours" ]; then rm -f $policy; fi
  return $rc
}

install_pkgs() {
  local need
  need=$(missing_pkgs "${pkgs[@]}")
  [ -z "$need" ] && return 0
  say "installing ${need% } (about 20 s)"
  # shellcheck disable=SC2086
  apt_install $need && return 0
  # Update the package lists only when they are missing or stale, then try once more.
  grep -qE 'Unable to locate package|has no installation candidate|is not available|Failed to fetch' "$log" ||
    die "apt-get install ${need% } failed"
  run apt-get update -qq || die "apt-get update failed"
  # shellcheck disable=SC2086
  apt_install $need || die "apt-get install ${need% } failed"
}

# A live process (not a zombie) whose name is $2.
alive() {
  local pid=$1 name=$2 stat
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  read -r stat 2>/dev/null <"/proc/$pid/stat" || return 1
  [[ $stat == "$pid ($name) "* && $stat != "$pid ($name) Z"* ]]
}
