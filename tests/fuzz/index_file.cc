// SPDX-License-Identifier: MIT
// Any bytes as an index file (index/<uid>/<id>.idx) of a pack that exists: read alone
// (read_index_file) and loaded into an owner's index (Index::load, which maps it), then
// looked up. Byte 0's bit 0 makes the trailing SHA-256 match (a fuzzer cannot forge it;
// the entries are read only past that check); the rest is the file.
#include "fuzz.h"

#include "gcp/chunks.h"

#include <fcntl.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <string>

namespace chunks = gcp::chunks;
namespace stdfs = std::filesystem;

namespace {

stdfs::path dir;

void put(const stdfs::path& path, const std::string& content) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0 || ::write(fd, content.data(), content.size()) != static_cast<ssize_t>(content.size())) std::abort();
  ::close(fd);
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  gcp::fuzz::quiet();
  char tmpl[] = "/tmp/gcp-fuzz-index-XXXXXX";
  if (!::mkdtemp(tmpl)) std::abort();
  dir = tmpl;
  // libFuzzer ends a bounded run with exit(): the scratch directory goes with it.
  std::atexit([] {
    std::error_code ec;
    stdfs::remove_all(dir, ec);
  });
  stdfs::create_directories(dir / "packs");
  stdfs::create_directories(dir / "index");
  put(dir / "packs/p.pack", "GCPPACK1");
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  std::string file(reinterpret_cast<const char*>(data + 1), size - 1);
  if ((data[0] & 1) && file.size() >= 32) {
    auto sum = chunks::hash_of({reinterpret_cast<const uint8_t*>(file.data()), file.size() - 32});
    file.replace(file.size() - 32, 32, reinterpret_cast<const char*>(sum.bytes.data()), 32);
  }
  put(dir / "index/p.idx", file);
  gcp::fuzz::refusing([&] {
    auto entries = chunks::read_index_file(dir / "index/p.idx");
    auto index = chunks::Index::load(dir / "packs", dir / "index");
    // Every entry read alone is found in the loaded index, where the file says.
    if (index.size() > entries.size()) std::abort();
    for (const auto& e : entries) {
      auto loc = index.find(e.hash);
      if (!loc) std::abort();
    }
    chunks::Hash absent;
    absent.bytes.fill(0xee);
    (void)index.find(absent);
  });
  return 0;
}
