// SPDX-License-Identifier: MIT
#pragma once

// The compatibility verdict before a restart (gcp-restart --check, gcp-migrate --check):
// per unit, whether the node it is to run on offers what its checkpoint recorded (the
// CPU's features, the kernel, the checkpointer's version, free addresses, mount points).
// A list of entries, so that other checks add theirs.

#include "gcp/error.h"
#include "gcp/manifest.h"

#include <functional>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace gcp::compat {

using manifest::json;

/// How one check came out, from best to worst.
enum class Status {
  kOk,       ///< the node offers it
  kUnknown,  ///< not recorded (a checkpoint from before gcp recorded it): not refused
  kWarn,     ///< the restart goes ahead, but may not behave the same
  kRefuse,   ///< the restart would fail or go wrong: it is refused
};

/// "ok", "not-recorded", "warn", "refuse".
const char* name(Status status);
/// Parses name(); nullopt for anything else.
std::optional<Status> status_from(const std::string& text);

/// One finding about one unit on the node it would restart on.
struct Entry {
  std::string check;  ///< "cpu", "kernel", "checkpointer", "address", "mount", ...
  std::string unit;
  std::string node;
  Status status = Status::kOk;
  std::string reason;  ///< what was found; for a refusal, why
  std::string hint;    ///< for a refusal: what to do, when there is something; else empty
};
using Verdict = std::vector<Entry>;

json to_json(const Entry& entry);
/// Parses what to_json wrote (from another node); throws Error(kFailed) naming `where`.
Entry entry_from_json(const json& doc, const std::string& where);
/// {"ok": no refusal, "checks": [entries]}: what --check prints.
json to_json(const Verdict& verdict);
/// The header and one row per entry, for --human.
std::vector<std::vector<std::string>> table(const Verdict& verdict);
/// The first refusal; nullopt when there is none.
std::optional<Entry> first_refusal(const Verdict& verdict);
/// The exit status of a restart it refuses: kNoCheckpointer when this node's
/// checkpointer is too old, else kFailed.
Exit refusal_code(const Entry& refusal);
/// One line for a message: "unit 'U' on node 'N': cpu: REASON".
std::string line(const Entry& entry);

/// "4.2.1" < "4.10", "6.1.0-13-amd64" < "6.18.0": numeric parts compared one by one.
bool version_less(const std::string& a, const std::string& b);

/// What a node offers, as its restart part finds it.
struct Node {
  std::string name;
  std::string kernel;                ///< its kernel release
  std::string checkpointer_version;  ///< the unit's checkpointer installed there; empty: unknown
  /// Who uses an IPv4 address there already; nullopt: nobody.
  std::function<std::optional<std::string>(const std::string& address)> address_user;
  std::set<std::string> mount_points;  ///< its mount points
};

/// The entries of `unit` on `node` that gcp decides (kernel, checkpointer, addresses,
/// mounts); `recorded_kernel` is the unit's target kernel, else its checkpoint's. The
/// translib's own (cpu) come from its check.
Verdict check_unit(const manifest::CheckpointUnit& unit, const std::string& recorded_kernel, const Node& node);

/// The mount points a unit must find where it restarts: of the mounts that hold `paths`
/// (what its processes have open, their working directories, executables and mapped
/// files) in its mount namespace (`unit_mountinfo`, its /proc/PID/mountinfo), those
/// that are also mount points of its node (`node_mountinfo`) with the same file system
/// type, leaving out file systems every node makes its own (proc, sysfs, tmpfs,
/// cgroup, devpts, ...). Sorted, once each.
std::vector<std::string> used_mounts(const std::vector<std::string>& paths, const std::string& unit_mountinfo,
                                     const std::string& node_mountinfo);
/// The paths a process uses: its cwd, exe, open files and mapped files (absolute paths
/// only; sockets, pipes and deleted files left out). Empty when it is gone.
std::vector<std::string> paths_of(pid_t pid);
/// The mount points listed in a mountinfo text.
std::set<std::string> mount_points(const std::string& mountinfo);

}  // namespace gcp::compat
