// SPDX-License-Identifier: MIT
#pragma once

#include "gcp/cgroup.h"
#include "gcp/deps.h"
#include "gcp/events.h"
#include "gcp/manifest.h"
#include "gcp/store.h"

#include <chrono>
#include <functional>
#include <optional>
#include <string>

namespace gcp::jobs {

/// Loads a job, checking that the caller may touch it: throws Error(kUsage) when the
/// store has no such job and Error(kNotPermitted) when it belongs to another user.
manifest::Job load(store::Store& store, const std::string& job);

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

/// The Job manifest with each unit's state read from the system now.
manifest::Job status(store::Store& store, cgroup::Cgroups& cgroups, const std::string& job);

}  // namespace gcp::jobs
