// SPDX-License-Identifier: MIT
#pragma once

#include "gcp/grouping_cli.h"
#include "gcp/round_cli.h"

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace gcp::checkpoint_tool {

/// What the command line of gcp-checkpoint says.
struct Options {
  std::string job;
  std::string store;  ///< empty: the default store
  bool stop = false;
  rounds::CliOptions round;       ///< freeze timeout, max frozen, callback timeout, force
  std::optional<uint64_t> keep;   ///< overrides the job's policy.keep
  std::optional<long> level;      ///< zstd level of new chunks
  bool uncoordinated = false;     ///< this node's units on their own
  grouping::CliOptions grouping;  ///< an ad-hoc unit, registered as job `job`
  std::string unit = "main";      ///< the name of the ad-hoc unit
  bool if_due = false;            ///< only the jobs whose policy says they are due
  std::vector<std::string> more;  ///< --if-due: further jobs
  bool estimate = false;          ///< print how long a checkpoint of `job` takes
};

/// Checkpoints the job, prints the Checkpoint manifest and a summary on stderr.
void run(const Options& opt);

}  // namespace gcp::checkpoint_tool
