// SPDX-License-Identifier: MIT
#pragma once

#include <sys/types.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

namespace gcp::cgroup {

/// The cgroup of a job, relative to a hierarchy root: "gcp/<job>".
std::string job_path(const std::string& job);

/// The cgroup of a unit, relative to a hierarchy root: "gcp/<job>/<unit>".
std::string unit_path(const std::string& job, const std::string& unit);

/// Where a cgroup's freezer is.
enum class FreezeState { kThawed, kFreezing, kFrozen };

/// The operating system's cgroups, behind a seam so logic tests need no root.
/// Paths are relative to the hierarchy root ("gcp/j/u").
class Cgroups {
 public:
  virtual ~Cgroups() = default;
  /// Creates the cgroup and its parents; fine when it exists.
  virtual void create(const std::string& path) = 0;
  /// True when the cgroup exists.
  virtual bool exists(const std::string& path) = 0;
  /// Moves a process (all its threads) into the cgroup.
  virtual void attach(const std::string& path, pid_t pid) = 0;
  /// The processes in the cgroup (host PIDs), empty when it does not exist.
  virtual std::vector<pid_t> procs(const std::string& path) = 0;
  /// Asks the freezer to freeze or thaw the cgroup (does not wait).
  virtual void set_frozen(const std::string& path, bool frozen) = 0;
  /// Where the freezer of the cgroup is now.
  virtual FreezeState freeze_state(const std::string& path) = 0;
  /// Removes an empty cgroup; fine when it does not exist.
  virtual void remove(const std::string& path) = 0;
  /// The absolute directory of the cgroup in the freezer hierarchy (for criu --freeze-cgroup).
  virtual std::string freezer_dir(const std::string& path) = 0;
};

/// The real cgroups of this machine through libcgroup (freezer controller). Throws
/// Error with a hint when libcgroup cannot be initialised or no freezer is mounted.
std::unique_ptr<Cgroups> system_cgroups();

/// Freezes a cgroup and waits until the kernel says frozen; on timeout thaws it
/// again and throws Error(kFailed).
void freeze(Cgroups& cgroups, const std::string& path, std::chrono::milliseconds timeout);

/// Thaws a cgroup; never throws (it runs on failure paths), logs a failure.
void thaw_quietly(Cgroups& cgroups, const std::string& path) noexcept;

/// Thaws frozen cgroups when the process that froze them cannot: a child process of
/// its own session (so a signal to the tool's process group does not reach it) waits
/// on a pipe from its creator, and writes THAWED into the freezer.state of each
/// directory when the pipe closes without release() (its creator died, even by
/// SIGKILL) or when `deadline` passes (its creator hangs). Create it before freezing.
class ThawWatchdog {
 public:
  /// Starts the watchdog for these freezer directories (absolute paths). Throws
  /// Error when it cannot be started.
  ThawWatchdog(const std::vector<std::string>& freezer_dirs, std::chrono::seconds deadline);
  /// Closes the pipe: unless released, the watchdog thaws the cgroups (harmless when
  /// they are thawed already) and exits; waits for it.
  ~ThawWatchdog();
  ThawWatchdog(const ThawWatchdog&) = delete;
  ThawWatchdog& operator=(const ThawWatchdog&) = delete;

  /// The cgroups are thawed, or their processes killed, as intended: the watchdog
  /// leaves them as they are and exits.
  void release() noexcept;
  /// The watchdog's PID (for tests).
  pid_t pid() const { return pid_; }

 private:
  pid_t pid_ = -1;
  int fd_ = -1;
};

/// Kills every process of a cgroup (SIGKILL, thawing so the kill lands) and waits
/// until it is empty; throws Error(kFailed) when processes remain after `timeout`.
void kill_all(Cgroups& cgroups, const std::string& path, std::chrono::milliseconds timeout);

}  // namespace gcp::cgroup
