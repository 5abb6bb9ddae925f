// SPDX-License-Identifier: MIT
#pragma once

#include "gcp/compat.h"
#include "gcp/error.h"
#include "gcp/main.h"
#include "gcp/names.h"
#include "gcp/rounds.h"

#include <CLI/CLI.hpp>

#include <unistd.h>

#include <optional>
#include <string>

namespace gcp::rounds {

/// The options of a checkpoint round, the same in gcp-checkpoint and gcp-migrate:
/// --freeze-timeout, --max-frozen, --callback-timeout, --force.
struct CliOptions {
  long freeze_timeout_ms = names::kDefaultFreezeTimeout.count();
  long max_frozen_s = names::kDefaultMaxFrozen.count();
  std::optional<long> callback_timeout_ms;
  bool force = false;

  /// Adds the options to `app`; `what` names what is frozen ("the units", "the sources").
  void add(CLI::App& app, const std::string& what) {
    app.add_option(names::kOptFreezeTimeout, freeze_timeout_ms, "Milliseconds to wait for a unit to freeze")
        ->default_val(freeze_timeout_ms)
        ->check(CLI::PositiveNumber);
    app.add_option(names::kOptMaxFrozen, max_frozen_s,
                   "Seconds after which a watchdog thaws " + what + " if the tool hangs (at once if it dies)")
        ->default_val(max_frozen_s)
        ->check(CLI::PositiveNumber);
    app.add_option(names::kOptCallbackTimeout, callback_timeout_ms,
                   "Milliseconds each unit has to answer a callback event (default: the job's policy, else " +
                       std::to_string(names::kDefaultCallbackDeadline.count()) + ")")
        ->check(CLI::Range(1, 86400000));
    app.add_flag(names::kOptForce, force, "Checkpoint even a unit whose ties (gcp-deps) say it would restart broken");
  }

  /// Puts them into the round's options.
  void apply(CheckpointOptions& options) const {
    options.freeze_timeout = std::chrono::milliseconds(freeze_timeout_ms);
    options.max_frozen = std::chrono::seconds(max_frozen_s);
    if (callback_timeout_ms) options.callback_timeout = std::chrono::milliseconds(*callback_timeout_ms);
    options.force = force;
  }
};

/// --check of gcp-restart and gcp-migrate: prints the verdict on stdout (JSON, or a
/// table with --human or on a terminal) and throws the Error of its first refusal.
inline void print_verdict(const compat::Verdict& verdict, bool human) {
  if (human || ::isatty(STDOUT_FILENO) == 1) {
    print_table(compat::table(verdict));
  } else {
    print_json(manifest::dump(compat::to_json(verdict)));
  }
  if (auto no = compat::first_refusal(verdict)) {
    throw Error(compat::refusal_code(*no), compat::line(*no),
                (no->hint.empty() ? "" : no->hint + "; ") + "nothing was restored; every check is on stdout");
  }
}

}  // namespace gcp::rounds
