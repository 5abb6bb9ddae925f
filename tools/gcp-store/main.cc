// SPDX-License-Identifier: MIT
#include "gcp/main.h"
#include "gcp/names.h"
#include "store_tool.h"

int main(int argc, char** argv) {
  CLI::App app{"Look after the checkpoint store: list, show, verify, collect garbage, remove"};
  app.require_subcommand(1);
  gcp::store_tool::Options opt;
  app.add_option(gcp::names::kOptStore, opt.store, gcp::names::kStoreHelp);
  app.add_flag("--human", opt.human, "A readable table instead of JSON (the default on a terminal)");

  auto* ls = app.add_subcommand("ls", "List the jobs, or the checkpoints of JOB, with sizes and ratios");
  ls->add_option("job", opt.job, "Job name");
  auto* show = app.add_subcommand("show", "Print a Checkpoint manifest of JOB");
  show->add_option("job", opt.job, "Job name")->required();
  show->add_option(gcp::names::kOptSeq, opt.seq, "Checkpoint sequence number (default: the latest)")
      ->check(gcp::kSeqNumber);
  show->add_flag("--chunks", opt.chunks, "Include each image's chunk list");
  auto* verify = app.add_subcommand("verify", "Read back and check every chunk of a checkpoint, a job or the store");
  verify->add_option("job", opt.job, "Job name (default: every job)");
  verify->add_option(gcp::names::kOptSeq, opt.seq, "Only this checkpoint (default: all of the job's)")
      ->check(gcp::kSeqNumber);
  auto* gc = app.add_subcommand("gc", "Remove unreferenced chunks and abandoned staging");
  gc->add_option("--wait", opt.wait_s, "Seconds to wait for checkpoints being written")
      ->default_val(300)
      ->check(CLI::NonNegativeNumber);
  auto* rm = app.add_subcommand("rm", "Remove checkpoint SEQ of JOB, or a stopped JOB with all its checkpoints");
  rm->add_option("job", opt.job, "Job name")->required();
  rm->add_option(gcp::names::kOptSeq, opt.seq, "Only this checkpoint")->check(gcp::kSeqNumber);
  auto* du = app.add_subcommand("du", "Bytes per owner, with dedup and compression ratios");
  auto* policy = app.add_subcommand(
      "policy", "The checkpoint policy of JOB: cost, MTBF, interval, next due time, failures, and why (gcp-policy(7))");
  policy->add_option("job", opt.job, "Job name")->required();
  policy->add_option("--set", opt.set_policy,
                     "Change the policy first: adaptive | daly | young | fixed,interval=10m, with deadline=, "
                     "max-restarts=, spares=, cost=, mtbf=");
  policy->add_option("--plot", opt.plot, "Write an SVG of the job's checkpoints and failures over time to FILE");

  return gcp::run_main("gcp-store", app, argc, argv, [&] {
    if (*ls)
      gcp::store_tool::ls(opt);
    else if (*show)
      gcp::store_tool::show(opt);
    else if (*verify)
      gcp::store_tool::verify(opt);
    else if (*gc)
      gcp::store_tool::gc(opt);
    else if (*rm)
      gcp::store_tool::rm(opt);
    else if (*du)
      gcp::store_tool::du(opt);
    else if (*policy)
      gcp::store_tool::policy(opt);
  });
}
