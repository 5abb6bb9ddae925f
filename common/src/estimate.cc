// SPDX-License-Identifier: MIT
#include "gcp/estimate.h"

#include "gcp/error.h"
#include "gcp/job_store.h"

#include <algorithm>
#include <cmath>

namespace gcp::estimate {

manifest::json Estimate::to_json() const {
  manifest::json seen = manifest::json::array();
  for (const auto& s : recent) seen.push_back({{"seq", s.seq}, {"totalS", s.total_s}, {"rawMiB", s.raw_mib}});
  return {{"job", job}, {"recent", seen}, {"maxS", max_s}, {"meanS", mean_s}, {"advisedS", advised_s}};
}

Estimate from(const std::string& job, const std::vector<manifest::Checkpoint>& checkpoints) {
  Estimate e;
  e.job = job;
  for (const auto& cp : checkpoints) {
    // A committed manifest has the time of each phase (the total ends with the commit,
    // after the manifest is written): their sum, a little more than the wall time, as
    // the phases of different nodes overlap.
    double ms = 0;
    bool any = false;
    for (const char* phase :
         {"preCheckpointMs", "depsMs", "freezeBarrierMs", "dumpMs", "thawMs", "postCheckpointMs", "storeMs"}) {
      auto it = cp.timings.find(phase);
      if (it == cp.timings.end() || !it->is_number()) continue;
      double v = it->get<double>();
      if (!std::isfinite(v) || v < 0 || v > 86400e3) continue;
      ms += v;
      any = true;
    }
    if (!any) continue;
    e.recent.push_back({cp.seq, ms / 1000.0, cp.bytes.value("raw", 0.0) / (1024.0 * 1024.0)});
  }
  std::sort(e.recent.begin(), e.recent.end(), [](const auto& a, const auto& b) { return a.seq > b.seq; });
  if (e.recent.size() > kRecent) e.recent.resize(kRecent);
  if (e.recent.empty()) return e;
  double sum = 0;
  for (const auto& s : e.recent) {
    e.max_s = std::max(e.max_s, s.total_s);
    sum += s.total_s;
  }
  e.mean_s = sum / static_cast<double>(e.recent.size());
  e.advised_s = std::ceil(2 * e.max_s + 10);
  return e;
}

Estimate of(store::Store& store, const std::string& job) {
  jobs::load(store, job);  // it exists, and the caller may look at it
  auto all = store.checkpoints(job);
  std::vector<manifest::Checkpoint> newest;
  // A checkpoint whose manifest cannot be read says nothing about the time; the next older does.
  for (auto it = all.rbegin(); it != all.rend() && newest.size() < kRecent; ++it) {
    if (auto cp = jobs::readable_metadata(store, job, *it)) newest.push_back(std::move(*cp));
  }
  auto e = from(job, newest);
  if (e.recent.empty()) {
    throw Error(Exit::kUsage, "job '" + job + "' has no checkpoint to estimate from",
                "checkpoint it once while it runs ('gcp-checkpoint " + job + "'), then ask again");
  }
  return e;
}

}  // namespace gcp::estimate
