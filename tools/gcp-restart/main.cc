// SPDX-License-Identifier: MIT
#include "gcp/main.h"
#include "gcp/agent.h"
#include "gcp/names.h"
#include "restart.h"

#include <spdlog/spdlog.h>

#include <cstdlib>

int main(int argc, char** argv) {
  CLI::App app{"Restart a job from its latest (or a given) committed checkpoint"};
  gcp::restart_tool::Options opt;
  app.add_option("job", opt.job, "Job name")->required();
  app.add_option(gcp::names::kOptSeq, opt.seq, "Checkpoint sequence number (default: the latest)")
      ->check(gcp::kSeqNumber);
  app.add_flag("--fallback", opt.fallback,
               "When the checkpoint does not verify, restart the newest earlier one that does");
  app.add_flag("--materialize", opt.materialize,
               "Read every image back into scratch, verified, before restoring anything "
               "(default for jobs of several units; one unit is streamed to criu)");
  app.add_option(gcp::names::kOptCallbackTimeout, opt.callback_timeout_ms,
                 "Milliseconds each unit has to answer post-restart (default: the job's policy, else 10000)")
      ->check(CLI::Range(1, 86400000));
  app.add_option(gcp::names::kOptFiles, opt.files, gcp::names::kFilesHelp)
      ->check(CLI::IsMember({"refuse", "truncate", "keep"}));
  app.add_option(gcp::names::kOptStore, opt.store, gcp::names::kStoreHelp);
  app.add_option("--place", opt.place,
                 "Restart unit U on node N instead of where it ran (U=N; repeatable; gcp-launchers(7))")
      ->delimiter(',');
  app.add_option("more", opt.more, "With --if-failed: further jobs");
  app.add_flag("--if-failed", opt.if_failed,
               "Restart the given jobs (default: every job) whose units died without a stop through gcp, from their "
               "latest verified checkpoint (for cron, every minute; gcp-policy(7))");
  app.add_option("--spare", opt.spares, "With --if-failed: a node for units whose node is gone (repeatable)")
      ->delimiter(',');
  app.add_flag("--check", opt.check,
               "Only say whether each unit can restart where it goes (CPU, kernel, checkpointer, addresses, "
               "mounts), checked on that node; restore nothing");
  app.add_flag("--human", opt.human, "With --check: a readable table instead of JSON (the default on a terminal)");
  bool agent = false;
  app.add_flag(gcp::names::kOptAgent, agent,
               "Restore this node's units for a job restart on another node: JSON requests on stdin, answers "
               "on stdout (gcp-launchers(7))");
  app.get_option("job")->required(false);
  return gcp::run_main("gcp-restart", app, argc, argv, [&] {
    if (agent) std::exit(gcp::rounds::serve_agent("gcp-restart", spdlog::get_level() <= spdlog::level::debug));
    gcp::restart_tool::run(opt);
  });
}
