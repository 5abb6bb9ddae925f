// SPDX-License-Identifier: MIT
// How long a checkpoint of a job takes, from the job's own recent checkpoints in the
// store: what a batch script's signal lead time and a partition's GraceTime must cover
// (gcp-checkpoint --estimate, gcp-slurm(7)).
#pragma once

#include "gcp/manifest.h"
#include "gcp/store.h"

#include <cstdint>
#include <string>
#include <vector>

namespace gcp::estimate {

/// The newest checkpoints looked at.
inline constexpr size_t kRecent = 5;

struct Estimate {
  std::string job;
  struct Seen {
    uint64_t seq = 0;
    double total_s = 0;  ///< the sum of its phases: callbacks, deps, freeze, dump, thaw, store
    double raw_mib = 0;  ///< the job's memory and files as dumped
  };
  std::vector<Seen> recent;  ///< newest first
  double max_s = 0;          ///< the longest of them
  double mean_s = 0;
  /// What to give a checkpoint that stops the job: twice the longest plus 10 s (a job
  /// grows, a shared store slows down under a preemption that hits many jobs at once).
  double advised_s = 0;

  manifest::json to_json() const;
};

/// The estimate from checkpoint manifests (any order); empty `recent` when none has
/// the time of a phase.
Estimate from(const std::string& job, const std::vector<manifest::Checkpoint>& checkpoints);

/// The estimate from the newest kRecent readable checkpoints of `job`; Error(kUsage)
/// when it has none.
Estimate of(store::Store& store, const std::string& job);

}  // namespace gcp::estimate
