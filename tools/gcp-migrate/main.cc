// SPDX-License-Identifier: MIT
// gcp-migrate: move a running job, or one unit of it, to another node.
#include "gcp/main.h"
#include "gcp/cgroup.h"
#include "gcp/error.h"
#include "gcp/jobs.h"
#include "gcp/names.h"
#include "gcp/round_cli.h"
#include "gcp/store.h"

int main(int argc, char** argv) {
  CLI::App app{"Move a running job (or one unit) to another node: checkpoint, restart there, then stop the source"};
  std::string job, store_dir;
  gcp::jobs::MigrateOptions options;
  gcp::rounds::CliOptions round;
  app.add_option("job", job, "Job name")->required();
  app.add_option(gcp::names::kOptUnit, options.unit, "Only this unit (default: every running unit of the job)");
  app.add_option("--to", options.to, "The node to move to (reached through its launcher, gcp-launchers(7))")
      ->required();
  std::string files = "refuse";
  app.add_option(gcp::names::kOptFiles, files, gcp::names::kFilesHelp)
      ->check(CLI::IsMember({"refuse", "truncate", "keep"}));
  app.add_option(gcp::names::kOptStore, store_dir, gcp::names::kStoreHelp);
  round.add(app, "the sources");
  bool check = false, human = false;
  app.add_flag("--check", check,
               "Only say whether the units can restart on the target (checked there against their latest "
               "checkpoint); freeze, checkpoint and move nothing");
  app.add_flag("--human", human, "With --check: a readable table instead of JSON (the default on a terminal)");
  return gcp::run_main("gcp-migrate", app, argc, argv, [&] {
    if (human && !check) {
      throw gcp::Error(gcp::Exit::kUsage, "--human without --check", "add --check, or drop --human");
    }
    auto store = gcp::store::open(store_dir);
    auto cgroups = gcp::cgroup::system_cgroups();
    round.apply(options.checkpoint);
    options.restart.callback_timeout = options.checkpoint.callback_timeout;
    options.restart.files = gcp::files::policy_from(files);
    if (check) {
      gcp::rounds::print_verdict(gcp::jobs::check_migrate(*store, gcp::rounds::system_machine(*cgroups), job, options),
                                 human);
      return;
    }
    auto moved = gcp::jobs::migrate(*store, gcp::rounds::system_machine(*cgroups), job, options);
    gcp::print_json(gcp::manifest::dump(gcp::manifest::to_json(moved)));
  });
}
