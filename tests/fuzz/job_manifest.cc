// SPDX-License-Identifier: MIT
// Any bytes as a job.json: parse, read as a Job, and a Job that reads writes back as a
// document that reads again to the same Job.
#include "fuzz.h"

#include "gcp/manifest.h"

namespace manifest = gcp::manifest;

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  gcp::fuzz::quiet();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  gcp::fuzz::refusing([&] {
    auto doc = manifest::parse(gcp::fuzz::text(data, size), "job.json");
    auto job = manifest::job_from_json(doc, "job.json");
    auto written = manifest::to_json(job);
    auto again = manifest::job_from_json(manifest::parse(manifest::dump(written), "again"), "again");
    if (manifest::to_json(again) != written) std::abort();
  });
  return 0;
}
