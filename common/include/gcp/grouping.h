// SPDX-License-Identifier: MIT
#pragma once

#include <sys/types.h>

#include <map>
#include <optional>
#include <string>
#include <vector>

// How a unit's processes are found: one code path for gcp-deps, gcp-isolate and
// gcp-checkpoint. Everything is read from /proc (and cgroup.procs) at one moment; a
// process that changed its group or session after it started is found where it is now.
namespace gcp::grouping {

/// One process as /proc/PID/stat and /proc/PID/status show it.
struct Process {
  pid_t pid = 0;
  pid_t ppid = 0;
  pid_t pgid = 0;
  pid_t sid = 0;
  unsigned tty_nr = 0;      ///< controlling tty (device number), 0 for none
  uid_t uid = 0;            ///< real uid
  std::string comm;         ///< the kernel's short command name
  char state = 'R';         ///< its state letter in /proc/PID/stat: 'T' stopped, 't' traced, ...
  unsigned long pidns = 0;  ///< inode of its PID namespace
  unsigned long netns = 0;  ///< inode of its network namespace
};

/// Every process of the system now, by host PID. Zombies are left out.
std::map<pid_t, Process> snapshot();

/// The kinds of grouping, as Job manifests spell them.
enum class Kind {
  kTree,    ///< a process and all its descendants
  kPgid,    ///< the members of a process group
  kSid,     ///< the members of a session
  kCgroup,  ///< the processes in a cgroup (v1 or v2)
  kPidns,   ///< every process in the PID namespace of an init (and namespaces below it)
};

/// "tree", "pgid", "sid", "cgroup", "pidns".
std::string name(Kind kind);
/// The kind spelled `text`; nullopt when there is none.
std::optional<Kind> parse(const std::string& text);

/// What to resolve: a kind and its value (a PID, or a cgroup path for kCgroup).
struct Spec {
  Kind kind = Kind::kTree;
  pid_t pid = 0;       ///< root, process group id, session id, or init
  std::string cgroup;  ///< kCgroup: an absolute directory or a path relative to a hierarchy
};

/// The processes of a unit.
struct Members {
  std::vector<pid_t> pids;                   ///< sorted; parents before children
  std::map<pid_t, std::vector<pid_t>> tids;  ///< threads of each process (the process itself first)
  /// The one member every other member descends from; nullopt when the members are
  /// not one tree (CRIU dumps one tree: see tops).
  std::optional<pid_t> root;
  std::vector<pid_t> tops;  ///< members whose parent is not a member
  size_t threads() const;
};

/// Resolves a spec against a snapshot. Throws Error(kUsage) when there is nothing to
/// resolve: no such process, an empty group or session, a cgroup that does not exist.
Members resolve(const Spec& spec, const std::map<pid_t, Process>& processes);

/// The cgroup.procs file of a cgroup given as an absolute directory or relative to a
/// hierarchy (freezer first, then the unified one, then the other v1 controllers);
/// nullopt when there is no such cgroup.
std::optional<std::string> cgroup_procs_file(const std::string& cgroup);

/// A spec in words for messages: "the process tree of pid 12", "process group 7".
std::string describe(const Spec& spec);

}  // namespace gcp::grouping
