// SPDX-License-Identifier: MIT
#pragma once

#include <CLI/CLI.hpp>

#include <functional>
#include <string>
#include <vector>

namespace gcp {

/// The release of gcp, also passed to translibs.
inline constexpr const char* kVersion = "0.1.0";

/// The one entry path of every tool: run by a user who may use gcp-user, re-execs the
/// tool through it (caller::reexec_through_helper); takes whom it acts for from the
/// environment (caller::adopt_environment); parses argv with `app` (to which it adds -v
/// and --version), sets up logging on stderr, calls `body`, catches once and maps
/// errors to the exit codes of DESIGN.md. CLI11 parse errors map to 2. A tool that only
/// runs the others (gcp-slurm) passes via_helper = false: they go through gcp-user.
int run_main(const std::string& tool, CLI::App& app, int argc, char** argv, const std::function<void()>& body,
             bool via_helper = true);

/// Accepts a checkpoint number as a user writes one: digits only, 1 or more ("-1"
/// would otherwise read as 2^64-1).
inline const CLI::Validator kSeqNumber(
    [](std::string& text) -> std::string {
      bool digits = !text.empty() && text.size() <= 19 && text.find_first_not_of("0123456789") == std::string::npos;
      if (!digits || std::stoull(text) == 0) return "'" + text + "' is not a checkpoint number (1, 2, ...)";
      return "";
    },
    "SEQ");

/// Writes one JSON document followed by a newline to stdout (the only data a tool prints).
void print_json(const std::string& json_text);
/// Writes rows to stdout as left-aligned columns (--human); the first row is the header.
void print_table(const std::vector<std::vector<std::string>>& rows);

}  // namespace gcp
