// SPDX-License-Identifier: MIT
// Any bytes as a checkpoint's chunks.bin. The first bytes choose the images of the
// manifest it belongs to and whether its checksums are made to match (a fuzzer cannot
// forge SHA-256, and the digests are copied only past that check); the rest is the file.
//   byte 0: bit 0: checksums match; bits 1-2: 0-3 images
//   per image: 2 bytes size (little-endian), 1 byte chunk size / 16 (0 means 1)
#include "fuzz.h"

#include "gcp/chunks.h"
#include "gcp/manifest.h"
#include "gcp/store.h"

#include <string>

namespace manifest = gcp::manifest;

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  gcp::fuzz::quiet();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const bool matching = data[0] & 1;
  const size_t images = (data[0] >> 1) & 3;
  size_t at = 1;
  if (size < at + 3 * images) return 0;
  manifest::Checkpoint cp;
  cp.job = "j";
  cp.seq = 1;
  manifest::CheckpointUnit unit;
  unit.name = "u";
  uint64_t count = 0;
  for (size_t i = 0; i < images; ++i, at += 3) {
    manifest::ImageFile image;
    image.path = "i" + std::to_string(i);
    image.size = data[at] | data[at + 1] << 8;
    image.chunk_size = data[at + 2] ? data[at + 2] * 16u : 1u;
    count += image.chunk_count();
    unit.images.push_back(image);
  }
  cp.units.push_back(unit);
  std::string list(reinterpret_cast<const char*>(data + at), size - at);
  std::string sha(64, '0');
  if (matching && list.size() >= 32) {
    auto sum = gcp::chunks::hash_of({reinterpret_cast<const uint8_t*>(list.data()), list.size() - 32});
    list.replace(list.size() - 32, 32, reinterpret_cast<const char*>(sum.bytes.data()), 32);
    sha = sum.hex();
  }
  cp.chunk_list = {{"path", "chunks.bin"}, {"count", count}, {"sha256", sha}};
  gcp::fuzz::refusing([&] {
    if (!gcp::store::apply_chunk_list(list, cp)) {
      // Applied: every image has exactly its chunks' digests.
      for (const auto& image : cp.units[0].images) {
        if (image.digests.size() != image.chunk_count() * manifest::ImageFile::kDigestBytes) std::abort();
        if (image.chunk_count()) (void)image.digest_hex(image.chunk_count() - 1);
      }
    }
  });
  return 0;
}
