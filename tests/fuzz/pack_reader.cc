// SPDX-License-Identifier: MIT
// Any bytes as a pack file, read through index entries that are just as hostile (a
// damaged or forged .idx passes its checksum once someone rewrote it):
//   bytes 0-31: two entries of 16 bytes: frame offset (u32), frame length (u32), chunk
//               offset in the frame (u32), chunk length (u32), little-endian
//   the rest:   the pack
// Each chunk is read twice (the second time from the reader's frame cache).
#include "fuzz.h"

#include "gcp/chunks.h"

#include <fcntl.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

namespace chunks = gcp::chunks;
namespace stdfs = std::filesystem;

namespace {

stdfs::path dir;

uint32_t u32(const uint8_t* p) { return p[0] | p[1] << 8 | p[2] << 16 | static_cast<uint32_t>(p[3]) << 24; }

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  gcp::fuzz::quiet();
  char tmpl[] = "/tmp/gcp-fuzz-pack-XXXXXX";
  if (!::mkdtemp(tmpl)) std::abort();
  dir = tmpl;
  // libFuzzer ends a bounded run with exit(): the scratch directory goes with it.
  std::atexit([] {
    std::error_code ec;
    stdfs::remove_all(dir, ec);
  });
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 32) return 0;
  auto pack = dir / "p.pack";
  int fd = ::open(pack.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0 || ::write(fd, data + 32, size - 32) != static_cast<ssize_t>(size - 32)) std::abort();
  ::close(fd);
  gcp::fuzz::refusing([&] {
    auto index = chunks::Index::load(dir, dir / "no-index");
    uint32_t p = index.add_pack("p");
    std::vector<chunks::Hash> hashes;
    std::vector<uint32_t> lengths;
    for (int e = 0; e < 2; ++e) {
      const uint8_t* at = data + 16 * e;
      chunks::Location loc;
      loc.pack = p;
      loc.frame_offset = u32(at);
      loc.frame_length = u32(at + 4);
      loc.offset = u32(at + 8);
      loc.length = u32(at + 12) & 0x1fffff;  // a chunk is at most 1 MiB; out is sized by it
      chunks::Hash h;
      std::memcpy(h.bytes.data(), at, 16);
      h.bytes[31] = static_cast<uint8_t>(e);
      index.add(h, loc);
      hashes.push_back(h);
      lengths.push_back(loc.length);
    }
    chunks::ChunkReader reader(index);
    for (int round = 0; round < 2; ++round) {
      for (size_t i = 0; i < hashes.size(); ++i) {
        std::vector<uint8_t> out(lengths[i]);
        std::string why;
        auto r = reader.read(hashes[i], out, why);
        if (r != chunks::ChunkReader::Result::kOk && why.empty()) std::abort();
      }
    }
  });
  return 0;
}
