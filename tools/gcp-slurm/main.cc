// SPDX-License-Identifier: MIT
#include "slurm_tool.h"

#include "gcp/main.h"
#include "gcp/names.h"

#include <cstdlib>

int main(int argc, char** argv) {
  CLI::App app{
      "Run a job from a Slurm batch script so that preemption, time limits and requeues continue it "
      "from its checkpoint (gcp-slurm(7))"};
  app.require_subcommand(1);
  gcp::slurm_tool::Options opt;
  app.add_option(gcp::names::kOptStore, opt.store, gcp::names::kStoreHelp);
  auto* run = app.add_subcommand(
      "run",
      "Start COMMAND as a unit, or restart the job from its checkpoint when Slurm starts the script again; "
      "on SIGUSR1 or SIGTERM checkpoint, stop and requeue it");
  run->add_option(gcp::names::kOptJob, opt.job, "Job name (default: slurm-$SLURM_JOB_ID, the same after a requeue)");
  run->add_option(gcp::names::kOptUnit, opt.unit, "Unit name (default: main)");
  run->add_option(gcp::names::kOptKeep, opt.keep, "Keep this many committed checkpoints of the job (policy.keep)")
      ->check(CLI::PositiveNumber);
  run->add_option(gcp::names::kOptFiles, opt.files, gcp::names::kFilesHelp)
      ->check(CLI::IsMember({"refuse", "truncate", "keep"}));
  run->add_flag("--fallback", opt.fallback, "At a restart, take an older checkpoint when the latest is damaged");
  run->add_flag("--start-over", opt.start_over,
                "At a restart that fails, start COMMAND from the beginning instead of failing the batch job");
  run->add_flag("--no-requeue{false}", opt.requeue,
                "On a signal, checkpoint and stop the job but do not requeue the Slurm job");
  run->add_option("--if-due-every", opt.if_due_every,
                  "Seconds between asking the job's policy whether a checkpoint is due (gcp-policy(7)); 0: never")
      ->check(CLI::NonNegativeNumber);
  run->add_option("command", opt.command, "Command and arguments, after --")->required();
  int rc = 0;
  // Not through gcp-user: gcp-slurm runs the other tools, which go through it themselves.
  int status = gcp::run_main(
      "gcp-slurm", app, argc, argv, [&] { rc = gcp::slurm_tool::run(opt); }, false);
  return status != 0 ? status : rc;
}
