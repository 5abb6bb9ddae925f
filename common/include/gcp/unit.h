// SPDX-License-Identifier: MIT
#pragma once

#include "gcp/caller.h"
#include "gcp/cgroup.h"
#include "gcp/manifest.h"

#include <sys/types.h>

#include <optional>
#include <string>
#include <vector>

namespace gcp::unit {

/// What it takes to start one unit in isolation.
struct LaunchSpec {
  std::string job;
  std::string unit;
  std::vector<std::string> command;  ///< program and arguments, looked up in PATH
  std::string cgroup;                ///< relative cgroup path ("gcp/<job>/<unit>")
  std::string output;                ///< file that gets the unit's stdout and stderr (appended)
  std::string callback_socket;       ///< set as $GCP_CALLBACK_SOCKET in the unit; empty: not set
  std::string netns;                 ///< network namespace file the unit joins; empty: see `share`
  /// Namespaces the unit shares with the caller (of manifest::kShareable); the others
  /// are its own: IPC, UTS (with the caller's host name), and, without `netns`, a
  /// network namespace where only loopback is up.
  std::vector<std::string> share;
  /// The user the unit's processes run as (gcp-init too, once the namespaces are made),
  /// with an environment of its own: PATH and the settings above, and HOME, USER,
  /// LOGNAME and SHELL of the account. Empty: as the caller, with its environment.
  std::optional<caller::Account> as;
};

/// The gcp-init helper: $GCP_INIT, else <exe dir>/../libexec/gcp/gcp-init.
std::string init_path();

/// Starts a unit: gcp-init as PID 1 of a new PID and mount namespace (propagation
/// private; in the network namespace `spec.netns` when given, without the namespace
/// files of netns::kDir), with IPC, UTS and network namespaces as `spec.share` says,
/// session leader, in the unit's cgroup, stdin from /dev/null and stdout and
/// stderr to `output`, no other descriptors; gcp-init then becomes `spec.as` (when set)
/// and runs the command. Returns
/// once the command has been exec'd, with the host PID of gcp-init. Throws Error (and
/// leaves nothing running) when the namespace, the cgroup or the exec fails.
pid_t launch(cgroup::Cgroups& cgroups, const LaunchSpec& spec);

/// The root of the unit's processes in its cgroup (the one whose parent is outside
/// it: gcp-init, or the restored root); nullopt when the cgroup is empty.
std::optional<pid_t> root_in_cgroup(cgroup::Cgroups& cgroups, const manifest::Unit& unit);

/// The live state of a unit: running, frozen, stopped (killed or checkpointed with
/// --stop) or exited (its processes ended by themselves).
manifest::UnitState live_state(cgroup::Cgroups& cgroups, const manifest::Unit& unit);

}  // namespace gcp::unit
