// SPDX-License-Identifier: MIT
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>
#include <vector>

namespace gcp::proc {

/// True when a process with this (host) PID exists and is not a zombie.
bool alive(pid_t pid);

/// The PIDs of `pid` as seen from each nested PID namespace (NSpid line), outermost first.
std::vector<pid_t> ns_pids(pid_t pid);

/// The parent PID (PPid) of a process; nullopt when it is gone.
std::optional<pid_t> parent(pid_t pid);

/// Every process (not thread) whose parent is `pid`.
std::vector<pid_t> children(pid_t pid);

/// `pid` and all its descendants, parents before children.
std::vector<pid_t> tree(pid_t pid);

/// The inode of a namespace of `pid` ("pid", "mnt", "net", ...); nullopt when gone.
std::optional<unsigned long> ns_inode(pid_t pid, const std::string& ns);

/// What a process may do, as /proc/PID/status shows it.
struct Credentials {
  std::string name;                ///< its command name
  std::vector<uid_t> uids;         ///< real, effective, saved, file system
  std::vector<gid_t> gids;         ///< the same for groups
  std::vector<gid_t> groups;       ///< supplementary groups
  unsigned long long cap_prm = 0;  ///< permitted capabilities
};

/// Parses the text of a /proc/PID/status file; fields it lacks stay empty.
Credentials parse_credentials(const std::string& status);

/// The credentials of a process; nullopt when it is gone.
std::optional<Credentials> credentials(pid_t pid);

/// The command line of a process, arguments joined by spaces.
std::string cmdline(pid_t pid);

/// The kernel release (uname -r).
std::string kernel_release();

/// The node name (uname -n).
std::string node_name();

/// This node's IP addresses in the caller's network namespace, loopback left out:
/// "10.0.0.5", or "[fd00::5]" for IPv6 (as deps writes TCP ends).
std::vector<std::string> node_addresses();

}  // namespace gcp::proc
