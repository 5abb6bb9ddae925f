// SPDX-License-Identifier: MIT
#include "checkpoint.h"

#include "gcp/cgroup.h"
#include "gcp/jobs.h"
#include "gcp/main.h"
#include "gcp/store.h"

#include <spdlog/spdlog.h>

namespace gcp::checkpoint_tool {

void run(const Options& opt) {
  auto store = store::open(opt.store);
  auto cgroups = cgroup::system_cgroups();
  jobs::CheckpointOptions options;
  options.stop = opt.stop;
  options.freeze_timeout = std::chrono::milliseconds(opt.freeze_timeout_ms);
  auto cp = jobs::checkpoint(*store, *cgroups, opt.job, options);
  double mib = cp.bytes.value("raw", 0.0) / (1024.0 * 1024.0);
  spdlog::info("checkpoint {} of job '{}' committed: {} unit(s), {:.1f} MiB, downtime {} ms, total {} ms{}",
               cp.seq, cp.job, cp.units.size(), mib, cp.timings.value("downtimeMs", 0.0),
               cp.timings.value("totalMs", 0.0), opt.stop ? "; job stopped" : "");
  print_json(manifest::to_json(cp).dump(2));
}

}  // namespace gcp::checkpoint_tool
