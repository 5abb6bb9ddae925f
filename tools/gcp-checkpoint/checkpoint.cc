// SPDX-License-Identifier: MIT
#include "checkpoint.h"

#include "gcp/cgroup.h"
#include "gcp/error.h"
#include "gcp/jobs.h"
#include "gcp/main.h"
#include "gcp/names.h"
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
  auto cgroups = cgroup::system_cgroups();
  jobs::CheckpointOptions options;
  options.stop = opt.stop;
  opt.round.apply(options);
  options.keep = opt.keep;
  options.uncoordinated = opt.uncoordinated;
  std::string job = opt.job;
  if (auto spec = opt.grouping.spec()) {
    job = jobs::adopt(*store, *cgroups, job, opt.unit, *spec);
  } else if (job.empty()) {
    throw Error(Exit::kUsage, "no job given", "name a JOB, or an ad-hoc unit with --pid, --pgid, --sid, --cgroup or --pidns");
  }
  auto cp = jobs::checkpoint(*store, rounds::system_machine(*cgroups), job, options);
  auto mib = [&](const char* key) { return cp.bytes.value(key, 0.0) / (1024.0 * 1024.0); };
  spdlog::info("checkpoint {} of job '{}' committed: {} unit(s), {:.1f} MiB, {:.1f} MiB new, {:.1f} MiB stored; "
               "downtime {} ms, total {} ms{}",
               cp.seq, cp.job, cp.units.size(), mib("raw"), mib("new"), mib("stored"),
               cp.timings.value("downtimeMs", 0.0), cp.timings.value("totalMs", 0.0),
               opt.stop ? "; job stopped" : "");
  // The chunk lists are in the store ('gcp-store show --chunks'); stdout gets the rest.
  print_json(gcp::manifest::dump(manifest::to_json(cp, false)));
}

}  // namespace gcp::checkpoint_tool
