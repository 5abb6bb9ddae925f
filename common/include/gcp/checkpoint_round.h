// SPDX-License-Identifier: MIT
#pragma once

#include "gcp/fs.h"
#include "gcp/process.h"
#include "gcp/rounds.h"
#include "gcp/store.h"

#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace gcp::rounds {

/// Whether a round takes the job's lock itself or runs under its caller's (a migration
/// holds it across its checkpoint and its restart).
enum class JobLock { kTake, kHeldByCaller };

/// A checkpoint of a job: one part per node with units to checkpoint, driven phase by
/// phase (rounds.h). Any failure before commit() aborts every part (the units thaw and
/// keep running, abort is delivered, staging goes), records a checkpoint-failed event
/// and throws Error: the previous checkpoint stays the latest. A round destroyed before
/// commit() is aborted the same way.
class CheckpointRound {
 public:
  CheckpointRound(store::Store& store, Nodes& nodes, std::string job, CheckpointOptions options,
                  JobLock lock = JobLock::kTake);
  ~CheckpointRound();
  CheckpointRound(const CheckpointRound&) = delete;
  CheckpointRound& operator=(const CheckpointRound&) = delete;

  /// Every phase in order, then (--stop) the units are stopped. Returns the committed
  /// checkpoint, with timings.totalMs.
  manifest::Checkpoint run();

  /// The job and its units to checkpoint (uncoordinated: this node's), one part per
  /// node (every node reachable), the staging; each part prepares.
  void prepare();
  /// Pre-checkpoint callbacks and the dependency check on every part.
  void callbacks();
  /// Every unit frozen: the barrier no dump starts before.
  void freeze();
  /// Every unit dumped.
  void dump();
  /// Every unit thawed and told post-checkpoint, unless the round holds them.
  void resume();
  /// Every part's images stored.
  void store();
  /// Renames the manifest into place, records the event, applies retention. Returns
  /// the committed checkpoint.
  const manifest::Checkpoint& commit();
  /// Held units (--stop, a migration): stop kills them and records them stopped; else
  /// they thaw and hear post-checkpoint. Throws Error when stopping fails (the
  /// checkpoint stays committed).
  void release(bool stop);

  /// The job as the round loaded it (after prepare()).
  const manifest::Job& job() const { return job_; }

 private:
  struct Part;
  using PartCall = std::function<void(Part&)>;

  /// Runs `call` on every part at once and waits up to `deadline`; a part that fails
  /// or does not answer fails the phase: throws Error saying which node and why.
  void run_phase(const char* phase, Clock::time_point deadline, const PartCall& call, const std::string& failed_as,
                 const std::string& hint);
  void abort_all(const std::string& reason) noexcept;
  std::string what() const;
  bool spans() const;

  store::Store& store_;
  Nodes& nodes_;
  std::string job_name_;
  CheckpointOptions options_;
  JobLock lock_mode_;
  std::optional<uint64_t> job_ties_;  // ties between units the parts found; nullopt: a part did not say
  std::optional<fs::FileLock> lock_;
  manifest::Job job_;
  std::chrono::milliseconds callback_deadline_{};
  std::vector<std::unique_ptr<Part>> parts_;
  std::optional<store::Staging> staging_;
  manifest::Checkpoint cp_;
  bool partial_ = false;
  bool committed_ = false;
  std::string failure_;  ///< what made the round fail, for its event
  /// SIGINT, SIGTERM and SIGHUP wait from the callbacks until the units resume: an
  /// operator's Ctrl-C lands after the job is thawed and told so.
  std::optional<process::DeferSignals> defer_;
  Clock::time_point t_frozen_start_, t_frozen_, t_dumped_, t_resumed_, t_stored_;
};

}  // namespace gcp::rounds
