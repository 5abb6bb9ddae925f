// SPDX-License-Identifier: MIT
#pragma once

#include "gcp/grouping_cli.h"

#include <optional>
#include <string>

namespace gcp::deps_tool {

/// What gcp-deps was asked.
struct Options {
  std::string job;
  std::string store;  ///< empty: the default store
  std::optional<std::string> unit;
  grouping::CliOptions grouping;
  std::string format = "json";
  bool uncoordinated = false;
};

/// Builds the dependency graph of a job's units (or of one ad-hoc unit) and prints it.
void run(const Options& opt);

}  // namespace gcp::deps_tool
