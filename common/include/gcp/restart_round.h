// SPDX-License-Identifier: MIT
#pragma once

#include "gcp/checkpoint_round.h"
#include "gcp/compat.h"
#include "gcp/fs.h"
#include "gcp/rounds.h"
#include "gcp/store.h"

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace gcp::rounds {

/// A restart of a job from a committed checkpoint (the latest whole one unless told;
/// for an uncoordinated job, each unit from its own latest): one part per node its
/// units go to (rounds.h), all or nothing. A checkpoint that does not verify is refused
/// naming the newest earlier one that does, or (fallback) that one is restarted. A round
/// destroyed before resume() kills every unit it restored.
class RestartRound {
 public:
  RestartRound(store::Store& store, Nodes& nodes, std::string job, RestartOptions options,
               JobLock lock = JobLock::kTake);
  ~RestartRound();
  RestartRound(const RestartRound&) = delete;
  RestartRound& operator=(const RestartRound&) = delete;

  /// Every phase in order, falling back to earlier checkpoints when told. Returns the
  /// Job manifest with the units as they run now.
  manifest::Job run();

  /// The checkpoint(s) to restart and which unit goes to which node.
  void verify();
  /// One part per node, each prepared (checkpoints loaded, checkpointers probed).
  void place();
  /// Every node's verdict on its units (gcp-restart --check); restores nothing.
  compat::Verdict check();
  /// Throws Error naming the first refusal of `verdict` (nothing is restored), after
  /// recording it; warns of each warning.
  void refuse(const compat::Verdict& verdict);
  /// Every unit restored; throws store::Corrupt when a chunk does not verify.
  void restore();
  /// The units go on; the Job manifest records where they run.
  void resume();
  /// Post-restart to every unit; records the restart event.
  void callbacks();

  /// The Job manifest as the round has it (after resume(): the units as they run).
  const manifest::Job& job() const { return job_; }

 private:
  struct Part;
  using PartCall = std::function<void(Part&)>;

  void run_phase(const char* phase, Clock::time_point deadline, const PartCall& call, bool as_is);
  void abort_all(const std::string& reason) noexcept;
  /// Refuses a checkpoint that does not verify (throws), or returns with the fallback
  /// planned (--fallback) for the caller to place and restore again.
  void refuse_corrupt(const store::Corrupt& bad);
  std::string what() const;
  bool spans() const;

  store::Store& store_;
  Nodes& nodes_;
  std::string job_name_;
  RestartOptions options_;
  JobLock lock_mode_;
  std::optional<fs::FileLock> lock_;
  manifest::Job job_;
  std::vector<uint64_t> all_;                 // the job's committed checkpoints
  std::optional<uint64_t> seq_;               // the checkpoint, unless units come from their own
  std::optional<uint64_t> refused_;           // the first checkpoint that did not verify
  std::map<std::string, uint64_t> from_;      // unit -> the checkpoint it comes from
  std::map<std::string, std::string> where_;  // unit -> node
  std::vector<std::unique_ptr<Part>> parts_;
  bool resumed_ = false;
  Clock::time_point t_start_, t_restored_;
};

/// Whether a network namespace's nftables ruleset, as CRIU saves it (nft text in
/// nftables-N.img), holds anything but CRIU's own network lock (its chain CRIU and the
/// jumps to it): CRIU restores that image only from a file, not through --stream.
bool nftables_beyond_criu_lock(std::string_view ruleset);

}  // namespace gcp::rounds
