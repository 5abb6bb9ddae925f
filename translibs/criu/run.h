// SPDX-License-Identifier: MIT
#pragma once

#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

// What the CRIU translib needs of processes and files, of its own: a translib sees
// nothing of gcp but translib.h (gcp-translib(7)), so it brings its small spawner.
// Joining the unit's cgroup and entering its network namespace are criu-reaper's
// (translibs/criu/reaper.c), which runs every program started here that needs them.
namespace gcp::criu {

/// How to run a program.
struct Command {
  std::vector<std::string> argv;      ///< program and arguments; argv[0] is looked up in PATH
  std::vector<std::string> env;       ///< extra "NAME=value" entries on top of ours
  std::optional<std::string> input;   ///< written to its stdin, then closed; /dev/null when absent
  std::chrono::milliseconds timeout;  ///< its process group is killed (SIGKILL) when it runs longer
};

/// What a program did.
struct Outcome {
  int exit_code = -1;      ///< its exit status, or -1 when killed by a signal
  int signal = 0;          ///< the signal that ended it, 0 when it exited
  bool timed_out = false;  ///< killed because it ran past Command::timeout
  std::string out;         ///< everything it wrote to stdout
  std::string err;         ///< everything it wrote to stderr

  /// True when it exited with status 0.
  bool ok() const { return exit_code == 0; }
  /// "exit status 3", "killed by signal 9 (Killed)" or "timed out and was killed".
  std::string describe() const;
};

/// Runs a program to completion in a process group of its own (a timeout kills the
/// whole group), stdout and stderr captured, killed (SIGKILL) when this process dies
/// first (PR_SET_PDEATHSIG), reaped on every path. Throws std::runtime_error when it
/// cannot be started.
Outcome run(const Command& command);

/// Looks a program up in PATH (a name with a slash: itself); nullopt when it is not
/// an executable.
std::optional<std::string> find_in_path(const std::string& name);

/// The whole content of a file; nullopt when it does not exist. Throws
/// std::runtime_error on any other error.
std::optional<std::string> read_file(const std::filesystem::path& path);

/// Creates a directory and its missing parents with `mode`. Throws std::runtime_error.
void make_dirs(const std::filesystem::path& path, mode_t mode);

/// Writes a file through a temporary beside it, synced and renamed into place. Throws
/// std::runtime_error.
void write_file_atomic(const std::filesystem::path& path, const std::string& data, mode_t mode);

/// `root` and every descendant (/proc/PID/task/TID/children), parents before children.
std::vector<pid_t> process_tree(pid_t root);

}  // namespace gcp::criu
