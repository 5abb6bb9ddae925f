// SPDX-License-Identifier: MIT
#include "checkpoint.h"

#include <spdlog/spdlog.h>

#include <cstdlib>
#include "gcp/agent.h"
#include "gcp/main.h"
#include "gcp/names.h"

int main(int argc, char** argv) {
  CLI::App app{"Checkpoint every unit of a job consistently (freeze all, dump all, commit, thaw)"};
  gcp::checkpoint_tool::Options opt;
  app.add_option("job", opt.job, "Job name (with an ad-hoc unit: the name to register it as; default e.g. pid-1234)");
  app.add_option("more", opt.more, "With --if-due: further jobs");
  app.add_flag("--if-due", opt.if_due,
               "Checkpoint the given jobs (default: every job) whose policy says they are due, and nothing else "
               "(for cron, every minute; gcp-policy(7))");
  app.add_flag("--estimate", opt.estimate,
               "Print how long a checkpoint of JOB takes, from its newest checkpoints, and the signal lead time "
               "or grace time to give it (gcp-slurm(7)); checkpoints nothing");
  app.add_option(gcp::names::kOptStore, opt.store, gcp::names::kStoreHelp);
  app.add_flag("--stop", opt.stop, "Kill the job once the checkpoint is committed");
  opt.round.add(app, "the units");
  app.add_option(gcp::names::kOptKeep, opt.keep,
                 "Keep this many committed checkpoints (default: the job's policy, else all)")
      ->check(CLI::PositiveNumber);
  app.add_option("--level", opt.level,
                 "zstd level of new chunks, 1 to 19 or -7 to -1 (default: $GCP_ZSTD_LEVEL, else 3)");
  app.add_flag(gcp::names::kOptUncoordinated, opt.uncoordinated,
               "Checkpoint the job's units on this node on their own, not in a round with the other nodes "
               "(default: the job's policy.mode)");
  opt.grouping.add(app);
  app.add_option(gcp::names::kOptUnit, opt.unit, "The name of the ad-hoc unit")->default_val("main");
  bool agent = false;
  app.add_flag(gcp::names::kOptAgent, agent,
               "Checkpoint this node's units for a job checkpointer on another node: JSON requests on stdin, "
               "answers on stdout (gcp-launchers(7))");
  return gcp::run_main("gcp-checkpoint", app, argc, argv, [&] {
    if (agent) std::exit(gcp::rounds::serve_agent("gcp-checkpoint", spdlog::get_level() <= spdlog::level::debug));
    gcp::checkpoint_tool::run(opt);
  });
}
