#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Installs what gcp needs to build and test: Debian packages and a working CRIU (>= 4.2);
# with --bench also what the benchmarks need, with --zdtm what CRIU's ZDTM tests need to
# build (tests/zdtm/run.sh). Sourced (by tests/zdtm/run.sh), it only defines its functions.
# Idempotent and quiet when everything is there. Run as root (or it says what is missing).
set -euo pipefail

prog=install-deps
die() { printf '%s: error: %s\n' "$prog" "$1" >&2; [ $# -gt 1 ] && printf '%s: hint: %s\n' "$prog" "$2" >&2; exit 1; }
say() { printf '%s: %s\n' "$prog" "$*" >&2; }

criu_want=4.2.1
build_dir=${GCP_BUILD_CACHE:-/var/cache/gcp-build}

build_pkgs=(g++ make pkg-config libcli11-dev nlohmann-json3-dev libspdlog-dev libfmt-dev doctest-dev
  libcgroup-dev libssl-dev libzstd-dev libacl1-dev zstd iproute2 graphviz util-linux procps xz-utils python3
  clang-14 libclang-rt-14-dev llvm-14 time)  # clang, libFuzzer, llvm-symbolizer, time: make fuzz (tests/fuzz)
criu_build_pkgs=(libprotobuf-c-dev protobuf-c-compiler libprotobuf-dev protobuf-compiler python3-protobuf
  libnl-3-dev libnet1-dev libcap-dev libaio-dev libbsd-dev libgnutls28-dev libnftables-dev uuid-dev
  pkg-config gcc make iptables dpkg-dev)
# Only for 'make bench': the hashes tests/bench/hash-speed.cc measures against SHA-256.
bench_pkgs=(libb2-dev libsodium-dev libxxhash-dev)
# Only for 'make zdtm': what CRIU's test/zdtm needs beyond CRIU's own build (netns_sub_veth
# links libnl-route; aio00 libaio and jobctl00 libutil come with the packages above and libc).
zdtm_pkgs=(libnl-route-3-dev libaio-dev libcap-dev)
criu_run_pkgs=(libprotobuf-c1 libnl-3-200 libnet1 libcap2 libaio1 libbsd0 libgnutls30 libnftables1 libuuid1 iptables)

missing_pkgs() {
  local p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || printf '%s\n' "$p"
  done
}

apt_updated=
apt_install() {
  local need
  need=$(missing_pkgs "$@")
  [ -z "$need" ] && return 0
  [ "$(id -u)" -eq 0 ] || die "missing packages: $(echo $need)" "run: sudo scripts/install-deps.sh"
  say "installing $(echo $need)"
  export DEBIAN_FRONTEND=noninteractive
  mkdir -p "$build_dir"
  local log=$build_dir/apt.log
  if [ -z "$apt_updated" ]; then
    apt-get update -qq >"$log" 2>&1 || die "apt-get update failed (log: $log)" "check the apt sources"
    apt_updated=1
  fi
  # shellcheck disable=SC2086
  apt-get install -y -qq --no-install-recommends $need >>"$log" 2>&1 ||
    die "apt-get install failed for: $(echo $need) (log: $log)" "run 'apt-get install $(echo $need)' to see why"
}

# Prints the version of a criu binary (e.g. 4.2.1), nothing if it is not runnable.
criu_version() { "$1" --version 2>/dev/null | sed -n 's/^Version: *\([0-9.]*\).*/\1/p' | head -n1; }

version_ge() { [ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n1)" = "$2" ]; }

# A criu is usable when it is at least 4.2 and 'criu check' passes.
criu_usable() {
  local bin=$1 v
  [ -x "$bin" ] || return 1
  v=$(criu_version "$bin")
  [ -n "$v" ] && version_ge "$v" 4.2 || return 1
  "$bin" check >/dev/null 2>&1
}

find_usable_criu() {
  local c
  for c in ${GCP_CRIU:-} $(command -v criu 2>/dev/null) /usr/local/sbin/criu /usr/local/bin/criu; do
    criu_usable "$c" && { printf '%s\n' "$c"; return 0; }
  done
  return 1
}

# The Debian archive URI the machine already uses (never hard-coded here).
debian_mirror() {
  local uri
  uri=$(grep -hsE '^[[:space:]]*URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null |
    awk '{print $2}' | grep -vE 'security|nodesource|google' | head -n1)
  if [ -z "$uri" ]; then
    uri=$(grep -hsE '^[[:space:]]*deb[[:space:]]' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
      sed -E 's/\[[^]]*\]//' | awk '{print $2}' | grep -vE 'security' | grep -E 'debian' | head -n1)
  fi
  printf '%s\n' "$uri"
}

# Prints the path of CRIU's orig tarball in $build_dir, fetching it from Debian's unstable
# suite first when it is not there.
criu_tarball() {
  local mirror aptdir tarball
  tarball=$(ls "$build_dir"/criu_"$criu_want".orig.tar.* 2>/dev/null | head -n1 || true)
  if [ -n "$tarball" ]; then printf '%s\n' "$tarball"; return 0; fi
  mirror=$(debian_mirror)
  [ -n "$mirror" ] || die "cannot find a Debian mirror in the apt sources to fetch CRIU $criu_want" \
    "install criu >= 4.2 yourself and set GCP_CRIU to its path"
  mkdir -p "$build_dir"
  aptdir=$build_dir/apt
  mkdir -p "$aptdir/lists/partial" "$aptdir/archives/partial" "$aptdir/sources.list.d"
  printf 'deb-src %s unstable main\n' "$mirror" >"$aptdir/sources.list"
  local aptopts=(-o "Dir::Etc::SourceList=$aptdir/sources.list" -o "Dir::Etc::SourceParts=$aptdir/sources.list.d"
    -o "Dir::State::Lists=$aptdir/lists" -o "Dir::Cache::Archives=$aptdir/archives" -o "APT::Sandbox::User=root")
  say "fetching the CRIU $criu_want source from Debian's unstable suite"
  apt-get "${aptopts[@]}" update -qq >/dev/null 2>&1 ||
    die "apt-get update of the private unstable source list failed" "check network access to the Debian mirror"
  # The Debian diff may be missing on the mirror; the orig tarball is all we need, so tolerate its failure.
  (cd "$build_dir" && apt-get "${aptopts[@]}" source --download-only -qq "criu=$criu_want"* >/dev/null 2>&1) || true
  tarball=$(ls "$build_dir"/criu_"$criu_want".orig.tar.* 2>/dev/null | head -n1 || true)
  if [ -z "$tarball" ]; then
    (cd "$build_dir" && apt-get "${aptopts[@]}" source --download-only -qq criu >/dev/null 2>&1) || true
    tarball=$(ls "$build_dir"/criu_*.orig.tar.* 2>/dev/null | sort -V | tail -n1 || true)
  fi
  [ -n "$tarball" ] || die "could not download the CRIU source package from Debian unstable" \
    "install criu >= 4.2 yourself and set GCP_CRIU to its path"
  printf '%s\n' "$tarball"
}

build_criu() {
  local src tarball
  apt_install "${criu_build_pkgs[@]}"
  tarball=$(criu_tarball) || exit 1
  src=$build_dir/src
  rm -rf "$src" && mkdir -p "$src"
  tar -xf "$tarball" -C "$src" --strip-components=1
  say "building CRIU from $(basename "$tarball") (about a minute)"
  make -C "$src" -j"$(nproc)" criu >"$build_dir/criu-build.log" 2>&1 ||
    die "building CRIU failed (log: $build_dir/criu-build.log)" "read the end of that log for the missing piece"
  install -D -m 0755 "$src/criu/criu" /usr/local/sbin/criu
  hash -r
}

main() {
  apt_install "${build_pkgs[@]}"
  if [ "${1:-}" = --bench ]; then apt_install "${bench_pkgs[@]}"; fi
  if [ "${1:-}" = --zdtm ]; then apt_install "${criu_build_pkgs[@]}" "${zdtm_pkgs[@]}"; fi
  if find_usable_criu >/dev/null; then
    apt_install "${criu_run_pkgs[@]}"
    return 0
  fi
  [ "$(id -u)" -eq 0 ] || die "no usable criu (>= 4.2, 'criu check' passing) and not root to build one" \
    "run: sudo scripts/install-deps.sh"
  build_criu
  local c
  c=$(find_usable_criu) || {
    /usr/local/sbin/criu check >&2 || true
    die "the CRIU that was built does not pass 'criu check'" "see the output above; gcp needs a kernel CRIU supports"
  }
  say "criu $(criu_version "$c") is ready at $c"
}

# Sourced, it only defines the above.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then main "$@"; fi
