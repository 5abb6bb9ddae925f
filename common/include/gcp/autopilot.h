// SPDX-License-Identifier: MIT
#pragma once

// What the two cron lines do (gcp-policy(7)): gcp-checkpoint --if-due checkpoints the
// jobs whose policy says they are due; gcp-restart --if-failed restarts the jobs whose
// units died without a stop through gcp.

#include "gcp/error.h"
#include "gcp/manifest.h"
#include "gcp/policy.h"
#include "gcp/rounds.h"
#include "gcp/store.h"

#include <string>
#include <vector>

namespace gcp::autopilot {

using manifest::json;

/// What a pass over the jobs did: one entry per job ({"job", "action", ...}), and an
/// error naming the job for each job that failed (the tool reports them, one line each).
struct Report {
  json jobs = json::array();
  std::vector<Error> errors;
};

/// Logs every error of the report but the last one (one line each, with its hint) and
/// throws the last one; does nothing when there is none.
void raise(const Report& report);

/// Checkpoints each of `jobs` (empty: every job of the store the caller may touch)
/// whose policy says it is due at `now`, one after the other; a job that is not due, is
/// busy (a restart or checkpoint holds its lock), or has a unit that died (left to
/// --if-failed) is skipped with a line on stderr (-v for the ones not due). A job that
/// fails is reported and the others go on.
Report checkpoint_if_due(store::Store& store, const rounds::Machine& machine, const std::vector<std::string>& jobs,
                         const rounds::CheckpointOptions& options, double now);

/// How gcp-restart --if-failed restarts.
struct RestartPolicy {
  std::vector<std::string> spares;  ///< nodes a unit whose node is gone may go to (before the job's and the site's)
  rounds::RestartOptions restart;   ///< callback deadline, materialize
};

/// Finds, among `jobs` (empty: every job the caller may touch), those with a unit that
/// died without a stop through gcp (its init gone, or its node unreachable through its
/// launcher for longer than the site's grace period), records the failure and restarts
/// the job from its latest verified checkpoint, all or nothing; a unit whose node is
/// unreachable goes to a spare node. Under the job's lock in the store: of two copies
/// running at once one restarts, the other says so. A job that fails again before
/// its next checkpoint waits (back-off) and after maxRestarts is left stopped with the
/// reason in its history.
Report restart_if_failed(store::Store& store, const rounds::Machine& machine, const std::vector<std::string>& jobs,
                         const RestartPolicy& options, double now);

}  // namespace gcp::autopilot
