// SPDX-License-Identifier: MIT
// gcp-migrate: move a running job, or one unit of it, to another node.
#include "gcp/jobs.h"
#include "gcp/main.h"
#include "gcp/names.h"
#include "gcp/store.h"

#include <spdlog/spdlog.h>

int main(int argc, char** argv) {
  CLI::App app{"Move a running job (or one unit) to another node: checkpoint, restart there, then stop the source"};
  std::string job, store_dir;
  gcp::jobs::MigrateOptions options;
  int freeze_timeout_ms = 10000, max_frozen_s = 900;
  std::optional<int> callback_timeout_ms;
  app.add_option("job", job, "Job name")->required();
  app.add_option(gcp::names::kOptUnit, options.unit, "Only this unit (default: every running unit of the job)");
  app.add_option("--to", options.to, "The node to move to (reached through its launcher, gcp-launchers(7))")->required();
  app.add_option(gcp::names::kOptStore, store_dir, gcp::names::kStoreHelp);
  app.add_option("--freeze-timeout", freeze_timeout_ms, "Milliseconds to wait for a unit to freeze")
      ->default_val(10000)
      ->check(CLI::PositiveNumber);
  app.add_option("--max-frozen", max_frozen_s,
                 "Seconds after which the sources thaw if gcp-migrate hangs (at once if it dies)")
      ->default_val(900)
      ->check(CLI::PositiveNumber);
  app.add_option(gcp::names::kOptCallbackTimeout, callback_timeout_ms,
                 "Milliseconds each unit has to answer a callback event (default: the job's policy, else 10000)")
      ->check(CLI::Range(1, 86400000));
  app.add_flag("--force", options.checkpoint.force, "Move even a unit whose ties (gcp-deps) say it would restart broken");
  return gcp::run_main("gcp-migrate", app, argc, argv, [&] {
    auto store = gcp::store::open(store_dir);
    auto cgroups = gcp::cgroup::system_cgroups();
    options.checkpoint.freeze_timeout = std::chrono::milliseconds(freeze_timeout_ms);
    options.checkpoint.max_frozen = std::chrono::seconds(max_frozen_s);
    if (callback_timeout_ms) {
      options.checkpoint.callback_timeout = std::chrono::milliseconds(*callback_timeout_ms);
      options.restart.callback_timeout = options.checkpoint.callback_timeout;
    }
    auto moved = gcp::jobs::migrate(*store, gcp::rounds::system_machine(*cgroups), job, options);
    gcp::print_json(gcp::manifest::to_json(moved).dump(2));
  });
}
