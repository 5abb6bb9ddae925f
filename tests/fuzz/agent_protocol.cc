// SPDX-License-Identifier: MIT
// Any bytes as the input of a node's part of a round (gcp-checkpoint --agent, the
// protocol of common/src/wire.h): read line by line as the agent does, each line parsed
// as a message and read as the request, instruction or answer its op or phase names.
#include "fuzz.h"

#include "../../common/src/wire.h"
#include "gcp/rounds.h"

#include <sstream>
#include <string>

namespace manifest = gcp::manifest;
namespace rounds = gcp::rounds;
namespace wire = gcp::rounds::wire;

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  gcp::fuzz::quiet();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::istringstream in(std::string(gcp::fuzz::text(data, size)));
  gcp::fuzz::refusing([&] {
    std::string line;
    // A small bound, so that the fuzzer meets it.
    while (wire::read_line(in, line, 4096)) {
      if (line.empty()) continue;
      gcp::fuzz::refusing([&] {
        auto m = wire::parse_message(line, "the job checkpointer");
        std::string op = wire::text_field(m, "op", "");
        (void)wire::text_field(m, "reason", "no reason given");
        (void)wire::int_field(m, "protocol", 1);
        (void)wire::flag_field(m, "thaw", true);
        (void)wire::flag_field(m, "stop", false);
        if (op == "checkpoint") {
          auto r = rounds::checkpoint_request_from_json(m);
          (void)rounds::checkpoint_request_from_json(rounds::to_json(r));
        } else if (op == "restart") {
          auto r = rounds::restart_request_from_json(m);
          (void)rounds::restart_request_from_json(rounds::to_json(r));
        }
        // What the job checkpointer reads of a node's answers.
        std::string phase = wire::text_field(m, "phase", "");
        if (phase == "store" && m.contains("checkpoint")) {
          auto part = wire::part_from_wire(m["checkpoint"], "node 'n'");
          (void)wire::part_from_wire(wire::part_to_wire(part), "again");
        } else if (phase == "restore" && m.contains("units") && m["units"].is_array()) {
          for (const auto& u : m["units"]) (void)rounds::restored_from_json(u);
        }
      });
    }
  });
  return 0;
}
