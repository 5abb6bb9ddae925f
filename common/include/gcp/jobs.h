// SPDX-License-Identifier: MIT
#pragma once

#include "gcp/cgroup.h"
#include "gcp/manifest.h"
#include "gcp/store.h"

#include <chrono>
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
};

/// The job checkpointer on one node: freeze every unit, dump all in parallel, thaw,
/// store and commit one Checkpoint manifest. Any failure thaws every unit, removes
/// the staging directory and throws; the previous checkpoint stays the latest.
manifest::Checkpoint checkpoint(store::Store& store, cgroup::Cgroups& cgroups,
                                const std::string& job, const CheckpointOptions& options);

/// Restarts every unit of a committed checkpoint (the latest when `seq` is empty) in a
/// fresh PID namespace and its cgroup; all or nothing: when one unit fails, the units
/// already restored are killed. Returns the Job manifest with the new host PIDs.
manifest::Job restart(store::Store& store, cgroup::Cgroups& cgroups, const std::string& job,
                      std::optional<uint64_t> seq);

/// Kills the processes of a job's units (one unit when `unit` is set), removes their
/// cgroups and records them as stopped. Returns the updated Job manifest.
manifest::Job kill(store::Store& store, cgroup::Cgroups& cgroups, const std::string& job,
                   const std::optional<std::string>& unit);

/// The Job manifest with each unit's state read from the system now.
manifest::Job status(store::Store& store, cgroup::Cgroups& cgroups, const std::string& job);

}  // namespace gcp::jobs
