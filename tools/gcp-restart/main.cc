// SPDX-License-Identifier: MIT
#include "gcp/main.h"
#include "gcp/names.h"
#include "restart.h"

int main(int argc, char** argv) {
  CLI::App app{"Restart a job from its latest (or a given) committed checkpoint"};
  gcp::restart_tool::Options opt;
  app.add_option("job", opt.job, "Job name")->required();
  app.add_option(gcp::names::kOptSeq, opt.seq, "Checkpoint sequence number (default: the latest)");
  app.add_flag("--fallback", opt.fallback,
               "When the checkpoint does not verify, restart the newest earlier one that does");
  app.add_flag("--materialize", opt.materialize,
               "Read every image back into scratch, verified, before restoring anything "
               "(default for jobs of several units; one unit is streamed to criu)");
  app.add_option(gcp::names::kOptCallbackTimeout, opt.callback_timeout_ms,
                 "Milliseconds each unit has to answer post-restart (default: the job's policy, else 10000)")
      ->check(CLI::Range(1, 86400000));
  app.add_option(gcp::names::kOptStore, opt.store, gcp::names::kStoreHelp);
  return gcp::run_main("gcp-restart", app, argc, argv, [&] { gcp::restart_tool::run(opt); });
}
