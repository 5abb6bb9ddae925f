// SPDX-License-Identifier: MIT
#pragma once

#include "gcp/manifest.h"

#include <sys/types.h>

#include <chrono>
#include <optional>
#include <string>
#include <vector>

// How the job checkpointer reaches the node a unit runs on (DESIGN.md, Coordinated
// checkpoint): it runs gcp's own unit-level commands there through a launcher and
// talks JSON with them on their stdin and stdout. No daemon runs on the nodes.
namespace gcp::launcher {

using manifest::json;

/// A way to run a command on a node (kind, command template, Slurm allocation).
using Launcher = manifest::Launcher;

/// The default templates: ssh -o BatchMode=yes {node}, and srun into the allocation.
std::vector<std::string> default_command(const std::string& kind);

/// The launcher with its kind's default template when it names no command.
Launcher with_default_command(Launcher launcher);

/// Parses a launcher object (manifest::launcher_from_json) and fills in the default
/// template; throws Error(kUsage) naming `where` (e.g. "/etc/gcp/gcp.json: nodes.n1.launcher") when it is wrong.
Launcher parse(const json& doc, const std::string& where);

/// The site configuration: $GCP_CONFIG, else (and always in user mode, caller.h)
/// /etc/gcp/gcp.json; an empty object when the file does not exist. Throws
/// Error(kUsage) naming the file when it is not JSON. Documented in gcp-launchers(7).
json config();
/// Where config() read from, for messages.
std::string config_path();

/// How to reach `node` for `job`: this node runs locally; otherwise the job's own
/// launcher (the Job manifest's "launcher"), else the configuration's per-node one
/// (nodes.<node>.launcher), else its default ("launcher"). Throws Error(kUsage) saying
/// what to configure when none is set.
Launcher for_node(const manifest::Job& job, const std::string& node, const json& config);

/// The full command that runs `argv` on `node` through `launcher`. For ssh, `env`
/// entries ("NAME=value") are put in front with env(1), since ssh passes no
/// environment; locally and under srun the child inherits them.
std::vector<std::string> command_for(const Launcher& launcher, const std::string& node,
                                     const std::vector<std::string>& argv, const std::vector<std::string>& env = {});

/// Quotes a word for a POSIX shell ('...' with embedded quotes escaped).
std::string shell_quote(const std::string& word);

/// The path of one of gcp's tools on the nodes: the configuration's "bin" directory,
/// else the directory of the running tool (nodes of one cluster share an install).
std::string tool_path(const std::string& tool, const json& config);

/// The GCP_* settings a unit-level command on another node must see as they are here
/// (store, checkpointer, translib path, scratch, progress), as "NAME=value".
std::vector<std::string> forwarded_env();

/// A command running through a launcher, with JSON lines going to its stdin and
/// coming from its stdout; its stderr goes to ours (its lines name their node). It
/// runs in a process group of its own: a Ctrl-C at the terminal reaches only the job
/// checkpointer. Closing its input (or this process dying) tells a unit-level command
/// to abort: before the commit it ends at once and its node's watchdog thaws its units.
class Channel {
 public:
  /// Starts `argv`; `label` (e.g. "node n1") names it in messages. Throws Error when
  /// it cannot be started.
  Channel(const std::vector<std::string>& argv, std::string label);
  ~Channel();  // closes its input, waits a little, then kills it
  Channel(const Channel&) = delete;
  Channel& operator=(const Channel&) = delete;

  /// Writes one JSON line; false when the command has gone (its input is closed).
  bool send(const json& message);
  /// The next JSON line, or nullopt at end of output or when `deadline` passes (then
  /// timed_out() is true). A line that is not JSON is an Error naming the command.
  std::optional<json> receive(std::chrono::steady_clock::time_point deadline);
  bool timed_out() const { return timed_out_; }
  /// Closes its input: a unit-level command takes that as abort.
  void close_input();
  /// Waits up to `grace` for it to exit, then kills its process group; returns how it
  /// ended ("exit status 0", "killed by signal 9").
  std::string finish(std::chrono::milliseconds grace);
  const std::string& label() const { return label_; }
  /// Kills its process group at once (a node that does not answer): a receive() on
  /// another thread then sees the end of output. Safe to call from any thread.
  void kill() noexcept;

 private:
  std::string label_;
  pid_t pid_ = -1;
  int in_ = -1, out_ = -1;
  std::string buffer_;
  bool timed_out_ = false;
  std::optional<int> status_;
};

}  // namespace gcp::launcher
