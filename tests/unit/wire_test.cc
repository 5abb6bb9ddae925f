// SPDX-License-Identifier: MIT
// The line protocol between a job checkpointer and its nodes (common/src/wire.h), read as
// hostile input: bounded lines, bounded nesting, fields of the wrong type or range.
#include "../../common/src/wire.h"

#include "gcp/rounds.h"
#include "testing.h"

#include <doctest/doctest.h>

#include <sstream>

using gcp::Exit;
using gcp::manifest::json;
using gcp::testing::error_from;
namespace rounds = gcp::rounds;
namespace wire = gcp::rounds::wire;

namespace {

// The message of the error `fn` throws; "(no error)" when it throws none.
template <typename F>
std::string why(F&& fn) {
  auto e = error_from(fn);
  return e ? e->what() : "(no error)";
}

}  // namespace

TEST_CASE("read_line reads lines up to the bound and refuses a longer one") {
  std::istringstream in("{\"op\":\"freeze\"}\n" + std::string(100, 'x') + "\nlast without newline");
  std::string line;
  REQUIRE(wire::read_line(in, line, 100));
  CHECK(line == "{\"op\":\"freeze\"}");
  REQUIRE(wire::read_line(in, line, 100));
  CHECK(line.size() == 100);
  CHECK_FALSE(wire::read_line(in, line, 100));
  std::istringstream longer(std::string(101, 'x') + "\n");
  auto e = error_from([&] { wire::read_line(longer, line, 100); });
  REQUIRE(e.has_value());
  CHECK(e->code() == Exit::kUsage);
  CHECK_CONTAINS(e->what(), "longer than 100 bytes");
}

TEST_CASE("a message nested 100,000 deep or not an object is one error, not a crash") {
  auto e = error_from([] { wire::parse_message(std::string(100000, '[') + std::string(100000, ']'), "node 'n'"); });
  REQUIRE(e.has_value());
  CHECK(e->code() == Exit::kUsage);
  CHECK_CONTAINS(e->what(), "node 'n' sent something that is not JSON (it nests deeper than 64 levels");
  e = error_from([] { wire::parse_message("[1]", "node 'n'"); });
  REQUIRE(e.has_value());
  CHECK_CONTAINS(e->what(), "not a JSON object");
  CHECK(wire::parse_message("{\"op\":\"dump\"}", "x")["op"] == "dump");
}

TEST_CASE("fields of a message of the wrong type or range are refused naming the field") {
  json m = json::parse(R"({"op": 7, "protocol": 1e300, "thaw": "yes", "big": 4294967296})");
  CHECK_CONTAINS(why([&] { wire::text_field(m, "op", ""); }), "field 'op' is not a string");
  CHECK_CONTAINS(why([&] { wire::int_field(m, "protocol", 1); }), "field 'protocol' is not an integer in range");
  CHECK_CONTAINS(why([&] { wire::int_field(m, "big", 1); }), "field 'big' is not an integer in range");
  CHECK_CONTAINS(why([&] { wire::flag_field(m, "thaw", true); }), "field 'thaw' is not true or false");
  CHECK(wire::text_field(m, "absent", "x") == "x");
  CHECK(wire::int_field(json::parse(R"({"protocol": -2})"), "protocol", 1) == -2);
  CHECK(wire::flag_field(json::array(), "thaw", true));
}

TEST_CASE("a request whose integers are floats, negative or out of range is refused, not cast") {
  json restart = {{"job", "j"}, {"units", {{"a", 1.5}}}};
  auto e = error_from([&] { rounds::restart_request_from_json(restart); });
  REQUIRE(e.has_value());
  CHECK(e->code() == Exit::kUsage);
  CHECK_CONTAINS(e->what(), "field 'a': not an integer in range");
  restart["units"] = {{"a", 3}};
  CHECK(rounds::restart_request_from_json(restart).units.at("a") == 3);
  json restored = {{"unit", "a"}, {"seq", 1}, {"node", "n"}, {"pid", 1e300}, {"cgroup", "gcp/j/a"}};
  CHECK_CONTAINS(why([&] { rounds::restored_from_json(restored); }), "field 'pid'");
  restored["pid"] = 4294967296ull;
  CHECK_CONTAINS(why([&] { rounds::restored_from_json(restored); }), "field 'pid'");
  json checkpoint = {{"job", "j"}, {"seq", -1}, {"units", json::array()}};
  CHECK_CONTAINS(why([&] { rounds::checkpoint_request_from_json(checkpoint); }), "field 'seq'");
}
