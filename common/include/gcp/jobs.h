// SPDX-License-Identifier: MIT
#pragma once

// What the tools do to jobs, in one call each: the rounds (gcp/checkpoint_round.h,
// gcp/restart_round.h) over this machine's nodes, and the small things that are no
// round (registering processes, killing units, their status).

#include "gcp/cgroup.h"
#include "gcp/grouping.h"
#include "gcp/job_store.h"
#include "gcp/manifest.h"
#include "gcp/rounds.h"
#include "gcp/store.h"

#include <optional>
#include <string>

namespace gcp::jobs {

using rounds::CheckpointOptions;
using rounds::RestartOptions;

/// Registers processes that gcp did not start as a one-unit job (an ad-hoc unit of
/// gcp-checkpoint --pid/--pgid/--sid/--cgroup/--pidns). They must be one process tree:
/// the unit is the whole tree of their common root (the checkpointer dumps trees),
/// owned by the root's user. Its processes move into the freezer cgroup
/// gcp/<job>/<unit>, unless the spec names a freezer cgroup, which is then the unit's.
/// A job that exists already must be the same unit (the same grouping and root), as
/// when cron checkpoints it again; anything else is Error(kUsage). Returns the job name.
std::string adopt(store::Store& store, cgroup::Cgroups& cgroups, std::string job, const std::string& unit,
                  const grouping::Spec& spec);

/// Throws Error(kNotPermitted) unless the caller (caller::uid()) is root or every process
/// of `spec` belongs to the caller and holds no right beyond the caller's; throws
/// Error(kUsage) when the spec finds no process.
void check_processes(const grouping::Spec& spec);

/// The job checkpointer: a checkpoint round over the nodes the job's units run on
/// (rounds::CheckpointRound). Any failure before the commit thaws every unit, delivers
/// abort, removes the staging and throws Error; the previous checkpoint stays the latest.
manifest::Checkpoint checkpoint(store::Store& store, const rounds::Machine& machine, const std::string& job,
                                const CheckpointOptions& options);

/// Restarts a job from a committed checkpoint on the nodes its units go to
/// (rounds::RestartRound), all or nothing. Returns the Job manifest with the new PIDs.
manifest::Job restart(store::Store& store, const rounds::Machine& machine, const std::string& job,
                      const RestartOptions& options);

/// gcp-restart --check: what restart() would find on each node its units go to (the
/// same checkpoint, placement and preparation), each unit's compatibility verdict;
/// restores nothing.
compat::Verdict check_restart(store::Store& store, const rounds::Machine& machine, const std::string& job,
                              const RestartOptions& options);

/// Kills the processes of a job's units (one unit when `unit` is set), here and, through
/// their launchers, on other nodes; removes their cgroups and records them as stopped.
/// Returns the updated Job manifest.
manifest::Job kill(store::Store& store, cgroup::Cgroups& cgroups, const std::string& job,
                   const std::optional<std::string>& unit);

/// How to move units to another node.
struct MigrateOptions {
  std::optional<std::string> unit;  ///< one unit; empty: every running unit of the job
  std::string to;                   ///< the node they go to
  CheckpointOptions checkpoint;
  RestartOptions restart;
};

/// gcp-migrate --check: the verdict of `to` on the units a migration would move, against
/// their latest committed checkpoint (the migration checks again against its own);
/// freezes, checkpoints and restores nothing. Throws Error when they have none.
compat::Verdict check_migrate(store::Store& store, const rounds::Machine& machine, const std::string& job,
                              const MigrateOptions& options);

/// gcp-migrate: checkpoints the units (they stay frozen where they are), restarts them
/// on `to`, and only once they are restored there stops the sources and lets the copies
/// go. If the restart fails, the sources are thawed and the job keeps running where it
/// was (Error). Returns the Job manifest with the units on their new node.
manifest::Job migrate(store::Store& store, const rounds::Machine& machine, const std::string& job,
                      const MigrateOptions& options);

/// Records a unit that runs on this node although its record says it does not (a
/// restart killed after the checkpointer restored it and before the record was
/// written) as running, with its root's pid from its cgroup and a warning. Does nothing while a round holds the job's
/// lock. checkpoint(), restart() and status() call it first.
void reconcile(store::Store& store, cgroup::Cgroups& cgroups, const std::string& job);

/// The Job manifest with each unit's state read from the system now.
manifest::Job status(store::Store& store, cgroup::Cgroups& cgroups, const std::string& job);

}  // namespace gcp::jobs
