// SPDX-License-Identifier: MIT
#pragma once

#include "gcp/grouping_cli.h"

#include <cstdint>
#include <optional>
#include <string>

namespace gcp::checkpoint_tool {

/// What the command line of gcp-checkpoint says.
struct Options {
  std::string job;
  std::string store;  ///< empty: the default store
  bool stop = false;
  int freeze_timeout_ms = 10000;
  int max_frozen_s = 900;         ///< the watchdog thaws the units after this
  std::optional<int> callback_timeout_ms;  ///< deadline of each callback event per unit
  std::optional<uint64_t> keep;   ///< overrides the job's policy.keep
  std::optional<long> level;      ///< zstd level of new chunks
  bool force = false;             ///< checkpoint even when the unit's ties say it breaks
  bool uncoordinated = false;     ///< this node's units on their own
  grouping::CliOptions grouping;  ///< an ad-hoc unit, registered as job `job`
  std::string unit = "main";      ///< the name of the ad-hoc unit
};

/// Checkpoints the job, prints the Checkpoint manifest and a summary on stderr.
void run(const Options& opt);

}  // namespace gcp::checkpoint_tool
