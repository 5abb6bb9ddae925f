// SPDX-License-Identifier: MIT
#pragma once

#include <signal.h>
#include <sys/types.h>

#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace gcp::process {

/// How to run an external program.
struct Spec {
  std::vector<std::string> argv;                     ///< program and arguments; argv[0] is looked up in PATH
  std::optional<std::string> input;                  ///< written to its stdin, then closed; /dev/null when absent
  std::vector<std::string> env;                      ///< extra "NAME=value" entries on top of ours
  std::vector<std::string> join_cgroups;             ///< cgroup.procs files the child joins before exec
  std::optional<std::chrono::milliseconds> timeout;  ///< killed (SIGKILL) when it runs longer
  /// Start it in a process group of its own; a timeout then kills the whole group
  /// (what a script started in the background too).
  bool own_process_group = false;
  /// Run as this user and group (no supplementary groups) instead of ours; needs root.
  std::optional<std::pair<uid_t, gid_t>> run_as;
  /// A network namespace file (e.g. a unit's /run/gcp/netns/<job>/<unit>) the child
  /// enters with setns() before exec; needs root. Not `ip netns exec`, which also
  /// remounts /sys.
  std::optional<std::string> netns;
};

/// What an external program did.
struct Result {
  int exit_code = -1;      ///< its exit status, or -1 when killed by a signal
  int signal = 0;          ///< the signal that ended it, 0 when it exited
  bool timed_out = false;  ///< killed because it ran past Spec::timeout
  std::string out;         ///< everything it wrote to stdout
  std::string err;         ///< everything it wrote to stderr

  /// True when it exited with status 0.
  bool ok() const { return exit_code == 0; }
  /// "exit status 3", "killed by signal 9" or "timed out after ..." for messages.
  std::string describe() const;
};

/// Runs a program to completion: no shell, stdout and stderr captured, the child
/// reaped on every path and killed (SIGKILL) when this process dies first. Throws
/// Error when the program cannot be started.
Result run(const Spec& spec);

/// write(2) to a pipe whose reader may have gone: fails with EPIPE instead of raising
/// SIGPIPE (which would kill the caller).
ssize_t write_quietly(int fd, std::string_view data);

/// Holds SIGINT, SIGTERM and SIGHUP for the calling thread and the threads it starts
/// while it lives, so that an operator's Ctrl-C lands once what must not be interrupted
/// (a frozen job, applications told to quiesce) is over.
class DeferSignals {
 public:
  DeferSignals();
  ~DeferSignals();
  DeferSignals(const DeferSignals&) = delete;
  DeferSignals& operator=(const DeferSignals&) = delete;

 private:
  sigset_t old_;
};

/// Looks a program up in PATH; nullopt when not found or not executable.
std::optional<std::string> find_in_path(const std::string& name);

/// The directory of the running executable (/proc/self/exe).
std::string self_dir();

}  // namespace gcp::process
