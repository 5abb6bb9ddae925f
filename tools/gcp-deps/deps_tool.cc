// SPDX-License-Identifier: MIT
#include "deps_tool.h"

#include "gcp/cgroup.h"
#include "gcp/deps.h"
#include "gcp/jobs.h"
#include "gcp/main.h"
#include "gcp/store.h"

#include <spdlog/spdlog.h>

#include <iostream>

namespace gcp::deps_tool {

void run(const Options& opt) {
  std::vector<deps::UnitSpec> units;
  std::string job = opt.job;
  if (auto spec = opt.grouping.spec()) {
    jobs::check_processes(*spec);  // a user sees into its own processes only
    units.push_back(deps::UnitSpec{opt.unit.value_or("main"), *spec});
  } else {
    if (job.empty()) {
      throw Error(Exit::kUsage, "no unit given",
                  "name a JOB, or an ad-hoc unit with --pid, --pgid, --sid, --cgroup or --pidns");
    }
    auto store = store::open(opt.store);
    auto cgroups = cgroup::system_cgroups();
    auto loaded = jobs::status(*store, *cgroups, job);  // states read from the system now
    for (const auto& u : loaded.units) {
      if (opt.unit && u.name != *opt.unit) continue;
      if (u.state != manifest::UnitState::kRunning && u.state != manifest::UnitState::kFrozen) {
        spdlog::info("unit '{}' of job '{}' is {}: left out", u.name, job, manifest::name(u.state));
        continue;
      }
      units.push_back(deps::UnitSpec{u.name, deps::spec_of(u), u.network.has_value()});
    }
    if (opt.unit && units.empty() && !loaded.find_unit(*opt.unit)) {
      throw Error(Exit::kUsage, "job '" + job + "' has no unit '" + *opt.unit + "'",
                  "'gcp-isolate status " + job + "' lists its units");
    }
    if (units.empty()) {
      throw Error(Exit::kFailed, "job '" + job + "' has no running unit", "restart it with 'gcp-restart " + job + "'");
    }
  }
  auto graph = deps::build(job, units, {.coordinated = !opt.uncoordinated});
  if (opt.format == "dot") {
    std::cout << deps::to_dot(graph) << std::flush;
  } else if (opt.format == "text") {
    std::cout << deps::to_text(graph) << std::flush;
  } else {
    print_json(gcp::manifest::dump(deps::to_json(graph)));
  }
}

}  // namespace gcp::deps_tool
