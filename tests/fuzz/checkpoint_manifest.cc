// SPDX-License-Identifier: MIT
// Any bytes as a checkpoint's manifest.json: parse, read as a Checkpoint, print it as
// gcp-store show does, and what was printed reads again to the same document.
#include "fuzz.h"

#include "gcp/manifest.h"

namespace manifest = gcp::manifest;

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  gcp::fuzz::quiet();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  gcp::fuzz::refusing([&] {
    auto doc = manifest::parse(gcp::fuzz::text(data, size), "manifest.json");
    auto cp = manifest::checkpoint_from_json(doc, "manifest.json");
    for (const auto& u : cp.units) {
      for (const auto& image : u.images) {
        // What readers of the store compute from a manifest's numbers.
        if (image.chunk_count() > 0 && image.chunk_length(image.chunk_count() - 1) == 0) std::abort();
        if (!image.digests.empty()) (void)image.digest_hex(image.chunk_count() - 1);
      }
    }
    auto written = manifest::to_json(cp, true);
    (void)manifest::dump(written);
    auto again = manifest::checkpoint_from_json(manifest::parse(manifest::dump(written), "again"), "again");
    if (manifest::to_json(again, true) != written) std::abort();
  });
  return 0;
}
