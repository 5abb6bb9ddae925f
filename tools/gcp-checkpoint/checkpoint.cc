// SPDX-License-Identifier: MIT
#include "checkpoint.h"

#include "gcp/autopilot.h"
#include "gcp/cgroup.h"
#include "gcp/error.h"
#include "gcp/estimate.h"
#include "gcp/jobs.h"
#include "gcp/main.h"
#include "gcp/names.h"
#include "gcp/policy.h"
#include "gcp/store.h"

#include <spdlog/spdlog.h>

#include <cstdlib>

namespace gcp::checkpoint_tool {

void run(const Options& opt) {
  std::optional<store::Options> store_options;
  if (opt.level) {
    store_options = store::Options{};
    store_options->level = store::check_level(*opt.level, "--level");
    // The units' nodes store their own images: node commands get GCP_* settings forwarded.
    ::setenv(names::kEnvZstdLevel, std::to_string(store_options->level).c_str(), 1);
  }
  // An ad-hoc unit may be the first job of a new store.
  auto store = store::open(opt.store, store_options,
                           opt.grouping.spec() ? store::IfMissing::kCreate : store::IfMissing::kRefuse);
  if (opt.estimate) {
    if (opt.job.empty() || !opt.more.empty() || opt.if_due || opt.grouping.spec() || opt.stop) {
      throw Error(Exit::kUsage, "--estimate takes one registered job and nothing else",
                  "gcp-checkpoint --estimate JOB");
    }
    auto e = estimate::of(*store, opt.job);
    spdlog::info(
        "a checkpoint of job '{}' took {:.1f} s at most, {:.1f} s on average (its newest {}); give it {:.0f} s "
        "(a GraceTime of that many seconds, or sbatch --signal=B:USR1@{:.0f}: Slurm may signal up to 30 s late)",
        opt.job, e.max_s, e.mean_s, e.recent.size(), e.advised_s, e.advised_s + 30);
    print_json(e.to_json().dump(2));
    return;
  }
  auto cgroups = cgroup::system_cgroups();
  jobs::CheckpointOptions options;
  options.stop = opt.stop;
  opt.round.apply(options);
  options.keep = opt.keep;
  options.uncoordinated = opt.uncoordinated;
  if (opt.if_due) {
    if (opt.grouping.spec() || opt.stop) {
      throw Error(Exit::kUsage, "--if-due checkpoints registered jobs and keeps them running",
                  "drop --pid/--pgid/--sid/--cgroup/--pidns and --stop");
    }
    std::vector<std::string> named = opt.more;
    if (!opt.job.empty()) named.insert(named.begin(), opt.job);
    auto report = autopilot::checkpoint_if_due(*store, rounds::system_machine(*cgroups), named, options, policy::now());
    print_json(report.jobs.dump(2));
    autopilot::raise(report);
    return;
  }
  if (!opt.more.empty())
    throw Error(Exit::kUsage, "several jobs are given", "one job per checkpoint; --if-due takes several");
  std::string job = opt.job;
  if (auto spec = opt.grouping.spec()) {
    job = jobs::adopt(*store, *cgroups, job, opt.unit, *spec);
  } else if (job.empty()) {
    throw Error(Exit::kUsage, "no job given",
                "name a JOB, or an ad-hoc unit with --pid, --pgid, --sid, --cgroup or --pidns");
  }
  auto cp = jobs::checkpoint(*store, rounds::system_machine(*cgroups), job, options);
  auto mib = [&](const char* key) { return cp.bytes.value(key, 0.0) / (1024.0 * 1024.0); };
  spdlog::info(
      "checkpoint {} of job '{}' committed: {} unit(s), {:.1f} MiB, {:.1f} MiB new, {:.1f} MiB stored; "
      "downtime {} ms, total {} ms{}",
      cp.seq, cp.job, cp.units.size(), mib("raw"), mib("new"), mib("stored"), cp.timings.value("downtimeMs", 0.0),
      cp.timings.value("totalMs", 0.0), opt.stop ? "; job stopped" : "");
  // The chunk lists are in the store ('gcp-store show --chunks'); stdout gets the rest.
  print_json(gcp::manifest::dump(manifest::to_json(cp, false)));
}

}  // namespace gcp::checkpoint_tool
