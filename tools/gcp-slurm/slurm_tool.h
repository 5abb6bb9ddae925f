// SPDX-License-Identifier: MIT
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace gcp::slurm_tool {

/// What the command line of gcp-slurm run says.
struct Options {
  std::string job;  ///< empty: slurm-$SLURM_JOB_ID (the same across requeues)
  std::string unit = "main";
  std::string store;  ///< empty: the default store
  std::optional<uint64_t> keep;
  std::string files;         ///< gcp-restart --files
  bool fallback = false;     ///< gcp-restart --fallback
  bool start_over = false;   ///< no checkpoint restores: start COMMAND from the beginning
  bool requeue = true;       ///< scontrol requeue once the job is checkpointed on a signal
  double if_due_every = 60;  ///< seconds between gcp-checkpoint --if-due; 0: never
  std::vector<std::string> command;
};

/// gcp-slurm run: starts the unit (or restarts it from the job's latest checkpoint when
/// the job has one), checkpoints it when the job's policy says so, on SIGUSR1 (time limit
/// ahead, preemption) checkpoints and stops it and requeues the Slurm job, on SIGINT or
/// SIGHUP checkpoints and stops it, on SIGTERM (scancel) stops it. Returns the exit
/// status once the units have exited or the job is stopped.
int run(const Options& opt);

}  // namespace gcp::slurm_tool
