// SPDX-License-Identifier: MIT
#pragma once

// The job checkpointer's side of rounds that span nodes (coordinator.cc): jobs.cc
// hands a job over when one of its units runs on another node.

#include "gcp/fs.h"
#include "gcp/jobs.h"

#include <algorithm>
#include <chrono>
#include <functional>

namespace gcp::jobs {

using Clock = std::chrono::steady_clock;

inline double ms_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

/// Milliseconds to one decimal, as manifests record them.
inline double round_ms(double ms) { return static_cast<double>(static_cast<long long>(ms * 10 + 0.5)) / 10; }

/// True when the job's policy.mode is "uncoordinated"; throws Error(kUsage) for a mode
/// that is neither.
bool uncoordinated(const manifest::Job& job);

/// True when `unit` is one of `only`, or `only` is empty (every unit).
inline bool chosen(const std::vector<std::string>& only, const std::string& unit) {
  return only.empty() || std::find(only.begin(), only.end(), unit) != only.end();
}

/// Takes the job's lock or throws Error(kBusy).
fs::FileLock lock_job(store::Store& store, const std::string& job);

/// Removes the oldest committed checkpoints of a job beyond the newest `keep` (none
/// when empty); a failure is a warning.
void apply_retention(store::Store& store, const std::string& job, std::optional<uint64_t> keep);

/// The job's committed checkpoints, ascending; throws Error(kUsage) when there is none.
std::vector<uint64_t> restartable(store::Store& store, const std::string& job);
/// The newest of `all` that holds the whole job: a checkpoint a migration took of some
/// of its units is restarted only by that migration (or with --seq).
uint64_t latest_whole(store::Store& store, const std::string& job, const std::vector<uint64_t>& all);

/// True when a unit of `job` to checkpoint (all, or those named) runs on another node.
bool spans_nodes(const manifest::Job& job, const std::vector<std::string>& only);
/// True when a unit to restart was on, or goes to, another node.
bool restart_spans_nodes(const manifest::Job& job, const std::map<std::string, std::string>& place);

/// What to do with units kept frozen once their checkpoint is committed: true stops
/// them, false thaws them. It may stop them itself earlier by calling its second argument.
using AfterCommit = std::function<bool(const manifest::Checkpoint&, const std::function<void()>& stop)>;

/// A coordinated checkpoint whose units run on several nodes: one unit-level command per
/// node (gcp-checkpoint --agent through the node's launcher), driven phase by phase.
/// With `after_commit` the units stay frozen until it returns. Takes the job lock
/// unless `locked`.
manifest::Checkpoint checkpoint_across(store::Store& store, const std::string& job, const CheckpointOptions& options,
                                       const AfterCommit& after_commit = {}, bool locked = false);

/// A restart of units on several nodes (gcp-restart --agent per node), all or nothing.
/// `before_commit` runs once every unit is restored, before they are let go.
manifest::Job restart_across(store::Store& store, const std::string& job, const RestartOptions& options,
                             bool locked = false, const std::function<void()>& before_commit = {});

}  // namespace gcp::jobs
