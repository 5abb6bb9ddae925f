// SPDX-License-Identifier: MIT
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace gcp::restart_tool {

/// What the command line of gcp-restart says.
struct Options {
  std::string job;
  std::optional<uint64_t> seq;             ///< empty: the latest committed checkpoint
  std::string store;                       ///< empty: the default store
  bool fallback = false;                   ///< take the newest earlier checkpoint that verifies
  bool materialize = false;                ///< read all images back to scratch before restoring
  std::optional<int> callback_timeout_ms;  ///< deadline of post-restart per unit
  std::vector<std::string> place;          ///< "UNIT=NODE": restart the unit there
  bool if_failed = false;                  ///< only the jobs whose units died without a stop through gcp
  std::vector<std::string> more;           ///< --if-failed: further jobs
  std::vector<std::string> spares;         ///< --if-failed: nodes for units whose node is gone
  std::string files = "refuse";            ///< --files: refuse, truncate or keep
  bool check = false;                      ///< only the compatibility verdict; restore nothing
  bool human = false;                      ///< --check: a table instead of JSON
};

/// Restarts the job and prints its Job manifest with the new host PIDs.
void run(const Options& opt);

}  // namespace gcp::restart_tool
