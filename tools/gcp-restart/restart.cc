// SPDX-License-Identifier: MIT
#include "restart.h"

#include "gcp/cgroup.h"
#include "gcp/error.h"
#include "gcp/jobs.h"
#include "gcp/main.h"
#include "gcp/store.h"

#include <spdlog/spdlog.h>

namespace gcp::restart_tool {

void run(const Options& opt) {
  auto store = store::open(opt.store);
  auto cgroups = cgroup::system_cgroups();
  if (opt.job.empty()) throw Error(Exit::kUsage, "no job given", "name the JOB to restart");
  jobs::RestartOptions options;
  options.seq = opt.seq;
  options.fallback = opt.fallback;
  options.materialize = opt.materialize;
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
  auto job = jobs::restart(*store, rounds::system_machine(*cgroups), opt.job, options);
  std::string pids;
  for (const auto& u : job.units) pids += (pids.empty() ? "" : ", ") + u.name + "=" + std::to_string(u.pid.value_or(0));
  spdlog::info("job '{}' restarted from checkpoint {} (host pids: {})", job.name,
               job.units.empty() ? 0 : job.units.front().restored_from.value_or(0), pids);
  print_json(gcp::manifest::dump(manifest::to_json(job)));
}

}  // namespace gcp::restart_tool
