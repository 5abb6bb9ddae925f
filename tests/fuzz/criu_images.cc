// SPDX-License-Identifier: MIT
// Any bytes as what the criu translib reads from CRIU: byte 0 chooses the reader, the
// rest is its input.
//   0: a files.img (images.h: tcp_connections, which locks and unlocks connections)
//   1: an image-streamer request on CRIU's socket (relay.h: streamer_filename)
//   2: a restore log (ports.h: bind_failure, and what the translib says of it)
// The translib refuses bad input with std::runtime_error (it does not link libgcp, so
// gcp::Error is not its refusal); anything else is a bug.
#include "fuzz.h"

#include "../../translibs/criu/images.h"
#include "../../translibs/criu/ports.h"
#include "../../translibs/criu/relay.h"

#include <span>
#include <stdexcept>
#include <string>

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  gcp::fuzz::quiet();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  std::span<const uint8_t> rest(data + 1, size - 1);
  try {
    switch (data[0] % 3) {
      case 0:
        for (const auto& c : gcp::criu::tcp_connections(rest)) {
          if (c.family != "ipv4" && c.family != "ipv6") std::abort();
        }
        break;
      case 1:
        (void)gcp::criu::streamer_filename(rest);
        break;
      default: {
        std::string log(reinterpret_cast<const char*>(rest.data()), rest.size());
        auto b = gcp::criu::bind_failure(log);
        if (b.port > 65535) std::abort();
        break;
      }
    }
  } catch (const std::runtime_error&) {
    // refused
  }
  return 0;
}
