// SPDX-License-Identifier: MIT
#pragma once

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
  std::optional<int> callback_timeout_ms;  ///< deadline of each callback event per unit
  std::optional<uint64_t> keep;   ///< overrides the job's policy.keep
  std::optional<long> level;      ///< zstd level of new chunks
};

/// Checkpoints the job, prints the Checkpoint manifest and a summary on stderr.
void run(const Options& opt);

}  // namespace gcp::checkpoint_tool
