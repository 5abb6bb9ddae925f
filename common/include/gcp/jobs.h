// SPDX-License-Identifier: MIT
#pragma once

#include "gcp/cgroup.h"
#include "gcp/deps.h"
#include "gcp/events.h"
#include "gcp/manifest.h"
#include "gcp/store.h"

#include <chrono>
#include <functional>
#include <map>
#include <optional>
#include <string>

namespace gcp::jobs {

/// Loads a job, checking that the caller may touch it: throws Error(kUsage) when the
/// store has no such job and Error(kNotPermitted) when it belongs to another user.
manifest::Job load(store::Store& store, const std::string& job);

/// What the rest of a job checkpointer's round does while this process checkpoints
/// the units of one node (gcp-checkpoint --agent). checkpoint() calls it between the
/// phases and waits for it; an Error it throws aborts this node's part: its units are
/// thawed and told abort, nothing of it is committed.
class NodeRound {
 public:
  virtual ~NodeRound() = default;
  /// This node's units are frozen (`report`: per unit freezeMs and checkpointer
  /// options); returns once every unit of the job is (the freeze barrier).
  virtual void frozen(const manifest::json& report) = 0;
  /// This node's units are dumped; returns once every unit is: true to thaw them, false
  /// to keep them frozen (the job is stopped or migrated once the checkpoint commits).
  virtual bool dumped(const manifest::json& report) = 0;
  /// Thawed and told post-checkpoint (or kept frozen); the images are about to be stored.
  virtual void resumed(const manifest::json& report) = 0;
  /// The images of this node's units are stored (`part` has them); returns once the
  /// job checkpointer has committed the checkpoint.
  virtual void stored(const manifest::Checkpoint& part) = 0;
  /// Units kept frozen after the commit: true to stop them, false to thaw them (a
  /// migration whose restart failed). Its end of input means thaw.
  virtual bool release() = 0;
  /// What to undo if this process must end at once before the commit (its job
  /// checkpointer is gone): the thaw watchdog thaws the units, this unlocks their network.
  virtual void on_abandon(std::function<void()> cleanup) = 0;
};

/// How to checkpoint a job.
struct CheckpointOptions {
  bool stop = false;  ///< kill the units once the checkpoint is committed
  std::chrono::milliseconds freeze_timeout{10000};  ///< per unit
  /// Longest the units may stay frozen: if gcp-checkpoint dies or hangs, a watchdog
  /// thaws them after this (at once when it dies). Longer than the longest dump.
  std::chrono::seconds max_frozen{900};
  /// Deadline of each callback event (pre-checkpoint, post-checkpoint, abort) per unit;
  /// empty: the job's policy.callbackTimeoutMs, else events::kDefaultDeadline.
  std::optional<std::chrono::milliseconds> callback_timeout{};
  /// Committed checkpoints to keep after this one (overrides the job's policy.keep);
  /// the older ones are removed once this one is committed. Empty: the job's policy.
  std::optional<uint64_t> keep;
  /// Checkpoint a unit even when its ties say it would restart broken (gcp-deps).
  bool force = false;
  /// Builds the dependency graph of the units about to be frozen; empty: deps::build
  /// on this machine's /proc. A seam for tests.
  std::function<deps::Graph(const std::string& job, const std::vector<deps::UnitSpec>&)> graph;
  /// Checkpoint each unit on its own (gcp-checkpoint --uncoordinated or the job's
  /// policy): a tie between two units then breaks the checkpoint.
  bool uncoordinated = false;

  // Set only for one node's part of a job checkpointer's round (gcp-checkpoint --agent):
  NodeRound* round = nullptr;   ///< the rest of the round; the job lock is the job checkpointer's
  uint64_t seq = 0;             ///< the checkpoint the job checkpointer began
  std::vector<std::string> units;  ///< this node's units in the round
  std::map<std::string, std::string> peers;  ///< addresses of the job's units elsewhere (deps::Context)
};

/// What the rest of a job's restart does while this process restores the units of one
/// node (gcp-restart --agent).
class RestartRound {
 public:
  virtual ~RestartRound() = default;
  /// This node's units run (`report`: per unit its host pid); returns once every unit of
  /// the job does. An Error it throws stops this node's restored units again.
  virtual void restored(const manifest::json& report) = 0;
  /// Post-restart was delivered to this node's units (`event`: the callbacks' results).
  virtual void done(const manifest::json& event) = 0;
};

/// How to restart a job.
struct RestartOptions {
  std::optional<uint64_t> seq;  ///< the checkpoint to restart; empty: the latest
  /// When the chosen checkpoint does not verify, take the newest earlier one that does.
  bool fallback = false;
  /// Read every image back into scratch before restoring anything, even where the
  /// checkpointer could read them as a stream from the store.
  bool materialize = false;
  /// Deadline of the post-restart callback per unit; empty: as for CheckpointOptions.
  std::optional<std::chrono::milliseconds> callback_timeout{};
  /// Where units go, by name: another node than the one they ran on (--place U=N).
  std::map<std::string, std::string> place;

  /// Each unit from a checkpoint of its own (an uncoordinated job): set by restart().
  std::map<std::string, uint64_t> per_unit;

  // Set only for one node's part of a job's restart (gcp-restart --agent):
  RestartRound* round = nullptr;   ///< the rest of the restart; the job lock is its coordinator's
  std::vector<std::string> units;  ///< this node's units
};

/// Registers processes that gcp did not start as a one-unit job (an ad-hoc unit of
/// gcp-checkpoint --pid/--pgid/--sid/--cgroup/--pidns). They must be one process tree:
/// the unit is the whole tree of their common root (the checkpointer dumps trees),
/// owned by the root's user. Its processes move into the freezer cgroup
/// gcp/<job>/<unit>, unless the spec names a freezer cgroup, which is then the unit's.
/// A job that exists already must be the same unit (the same grouping and root), as
/// when cron checkpoints it again; anything else is Error(kUsage). Returns the job name.
std::string adopt(store::Store& store, cgroup::Cgroups& cgroups, std::string job,
                  const std::string& unit, const grouping::Spec& spec);

/// The job checkpointer on one node: deliver pre-checkpoint to every unit (all at once),
/// freeze every unit, dump all in parallel, thaw, deliver post-checkpoint, store and
/// commit one Checkpoint manifest. Any failure before the commit (a callback's error or
/// missed deadline included) thaws every unit, delivers abort, removes the staging
/// directory and throws Error(kFailed); the previous checkpoint stays the latest. A
/// failed post-checkpoint is a warning: the checkpoint is good.
manifest::Checkpoint checkpoint(store::Store& store, cgroup::Cgroups& cgroups,
                                const std::string& job, const CheckpointOptions& options);

/// Restarts every unit of a committed checkpoint (the latest when no seq is given) in
/// a fresh PID namespace and its cgroup. Every image is read back and verified before
/// any unit is restored; a checkpoint that does not verify is refused with the newest
/// earlier one that does named in the hint (or taken, with `fallback`). All or
/// nothing: when one unit fails, the units already restored are killed. Once all run,
/// each gets post-restart; a failed one is a warning (the unit runs; the application
/// decides whether it can go on). Returns the Job manifest with the new host PIDs.
manifest::Job restart(store::Store& store, cgroup::Cgroups& cgroups, const std::string& job,
                      const RestartOptions& options);

/// Kills the processes of a job's units (one unit when `unit` is set), removes their
/// cgroups and records them as stopped. Returns the updated Job manifest.
manifest::Job kill(store::Store& store, cgroup::Cgroups& cgroups, const std::string& job,
                   const std::optional<std::string>& unit);

/// How to move units to another node.
struct MigrateOptions {
  std::optional<std::string> unit;  ///< one unit; empty: every running unit of the job
  std::string to;                   ///< the node they go to
  CheckpointOptions checkpoint;
  RestartOptions restart;
};

/// gcp-migrate: checkpoints the units (they stay frozen where they are), restarts them
/// on `to`, and only once they run there stops the sources. If the restart fails, the
/// sources are thawed and the job keeps running where it was (Error(kFailed)).
/// Returns the Job manifest with the units on their new node.
manifest::Job migrate(store::Store& store, const std::string& job, const MigrateOptions& options);

/// One node's part of a round (gcp-checkpoint --agent, gcp-restart --agent): reads the
/// job checkpointer's request from stdin, checkpoints or restores this node's units
/// phase by phase and answers each phase as a JSON line on stdout (coordinator.cc).
/// Logs go to stderr as "<tool>@<node>". Returns the exit code.
int serve_agent(const std::string& tool, bool verbose);

/// The Job manifest with each unit's state read from the system now.
manifest::Job status(store::Store& store, cgroup::Cgroups& cgroups, const std::string& job);

}  // namespace gcp::jobs
