// SPDX-License-Identifier: MIT
#include "restart.h"

#include "gcp/autopilot.h"
#include "gcp/cgroup.h"
#include "gcp/error.h"
#include "gcp/jobs.h"
#include "gcp/main.h"
#include "gcp/policy.h"
#include "gcp/round_cli.h"
#include "gcp/store.h"

#include <spdlog/spdlog.h>

namespace gcp::restart_tool {

void run(const Options& opt) {
  if (opt.human && !opt.check) throw Error(Exit::kUsage, "--human without --check", "add --check, or drop --human");
  auto store = store::open(opt.store);
  auto cgroups = cgroup::system_cgroups();
  if (opt.if_failed) {
    if (opt.check) throw Error(Exit::kUsage, "--check with --if-failed", "check one job: 'gcp-restart JOB --check'");
    if (opt.seq || !opt.place.empty()) {
      throw Error(Exit::kUsage, "--if-failed restarts from the latest verified checkpoint where the policy says",
                  "drop --seq and --place (--spare names nodes for units whose node is gone)");
    }
    std::vector<std::string> named = opt.more;
    if (!opt.job.empty()) named.insert(named.begin(), opt.job);
    autopilot::RestartPolicy how;
    for (const auto& n : opt.spares) manifest::check_name("node", n);
    how.spares = opt.spares;
    how.restart.materialize = opt.materialize;
    how.restart.files = files::policy_from(opt.files);
    if (opt.callback_timeout_ms) how.restart.callback_timeout = std::chrono::milliseconds(*opt.callback_timeout_ms);
    auto report = autopilot::restart_if_failed(*store, rounds::system_machine(*cgroups), named, how, policy::now());
    print_json(report.jobs.dump(2));
    autopilot::raise(report);
    return;
  }
  if (!opt.more.empty() || !opt.spares.empty()) {
    throw Error(Exit::kUsage, "several jobs or --spare without --if-failed",
                "restart one job at a time; --place U=N moves a unit");
  }
  if (opt.job.empty()) throw Error(Exit::kUsage, "no job given", "name the JOB to restart");
  jobs::RestartOptions options;
  options.seq = opt.seq;
  options.fallback = opt.fallback;
  options.materialize = opt.materialize;
  options.files = files::policy_from(opt.files);
  if (opt.callback_timeout_ms) options.callback_timeout = std::chrono::milliseconds(*opt.callback_timeout_ms);
  for (const auto& p : opt.place) {
    auto eq = p.find('=');
    if (eq == std::string::npos || eq == 0 || eq + 1 == p.size()) {
      throw Error(Exit::kUsage, "--place '" + p + "': not UNIT=NODE", "e.g. --place worker=node3");
    }
    manifest::check_name("unit", p.substr(0, eq));
    manifest::check_name("node", p.substr(eq + 1));
    options.place[p.substr(0, eq)] = p.substr(eq + 1);
  }
  if (opt.check) {
    rounds::print_verdict(jobs::check_restart(*store, rounds::system_machine(*cgroups), opt.job, options), opt.human);
    return;
  }
  auto job = jobs::restart(*store, rounds::system_machine(*cgroups), opt.job, options);
  std::string pids;
  for (const auto& u : job.units) pids += (pids.empty() ? "" : ", ") + u.name + "=" + std::to_string(u.pid.value_or(0));
  spdlog::info("job '{}' restarted from checkpoint {} (host pids: {})", job.name,
               job.units.empty() ? 0 : job.units.front().restored_from.value_or(0), pids);
  print_json(gcp::manifest::dump(manifest::to_json(job)));
}

}  // namespace gcp::restart_tool
