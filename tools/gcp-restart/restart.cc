// SPDX-License-Identifier: MIT
#include "restart.h"

#include "gcp/cgroup.h"
#include "gcp/jobs.h"
#include "gcp/main.h"
#include "gcp/store.h"

#include <spdlog/spdlog.h>

namespace gcp::restart_tool {

void run(const Options& opt) {
  auto store = store::open(opt.store);
  auto cgroups = cgroup::system_cgroups();
  jobs::RestartOptions options{opt.seq, opt.fallback, opt.materialize, {}};
  if (opt.callback_timeout_ms) options.callback_timeout = std::chrono::milliseconds(*opt.callback_timeout_ms);
  auto job = jobs::restart(*store, *cgroups, opt.job, options);
  std::string pids;
  for (const auto& u : job.units) pids += (pids.empty() ? "" : ", ") + u.name + "=" + std::to_string(u.pid.value_or(0));
  spdlog::info("job '{}' restarted from checkpoint {} (host pids: {})", job.name,
               job.units.empty() ? 0 : job.units.front().restored_from.value_or(0), pids);
  print_json(manifest::to_json(job).dump(2));
}

}  // namespace gcp::restart_tool
