// SPDX-License-Identifier: MIT
#include "checkpoint.h"
#include "gcp/main.h"
#include "gcp/names.h"

int main(int argc, char** argv) {
  CLI::App app{"Checkpoint every unit of a job consistently (freeze all, dump all, commit, thaw)"};
  gcp::checkpoint_tool::Options opt;
  app.add_option("job", opt.job, "Job name")->required();
  app.add_option(gcp::names::kOptStore, opt.store, gcp::names::kStoreHelp);
  app.add_flag("--stop", opt.stop, "Kill the job once the checkpoint is committed");
  app.add_option("--freeze-timeout", opt.freeze_timeout_ms, "Milliseconds to wait for a unit to freeze")
      ->default_val(10000)
      ->check(CLI::PositiveNumber);
  app.add_option(gcp::names::kOptCallbackTimeout, opt.callback_timeout_ms,
                 "Milliseconds each unit has to answer a callback event (default: the job's policy, else 10000)")
      ->check(CLI::Range(1, 86400000));
  app.add_option("--keep", opt.keep, "Keep this many committed checkpoints (default: the job's policy, else all)")
      ->check(CLI::PositiveNumber);
  app.add_option("--level", opt.level, "zstd level of new chunks, 1 to 19 or -7 to -1 (default: $GCP_ZSTD_LEVEL, else 3)");
  return gcp::run_main("gcp-checkpoint", app, argc, argv, [&] { gcp::checkpoint_tool::run(opt); });
}
