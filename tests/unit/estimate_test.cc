// SPDX-License-Identifier: MIT
#include "gcp/estimate.h"

#include <doctest/doctest.h>

#include <cmath>
#include <limits>

namespace manifest = gcp::manifest;
namespace estimate = gcp::estimate;

namespace {

manifest::Checkpoint taking(uint64_t seq, double dump_ms, double store_ms) {
  manifest::Checkpoint cp;
  cp.seq = seq;
  cp.timings = {{"freezeBarrierMs", 50.0},
                {"dumpMs", dump_ms},
                {"thawMs", 1.0},
                {"storeMs", store_ms},
                {"downtimeMs", dump_ms + 51}};
  cp.bytes = {{"raw", 64.0 * 1024 * 1024}};
  return cp;
}

}  // namespace

TEST_CASE("an estimate sums a checkpoint's phases, takes the newest five and advises twice the longest plus 10 s") {
  std::vector<manifest::Checkpoint> cps;
  for (uint64_t seq = 1; seq <= 7; ++seq) cps.push_back(taking(seq, 1000.0 * seq, 500));
  std::swap(cps[0], cps[6]);  // any order
  auto e = estimate::from("j", cps);
  REQUIRE(e.recent.size() == estimate::kRecent);
  CHECK(e.recent.front().seq == 7);
  CHECK(e.recent.back().seq == 3);
  // 50 + 7000 + 1 + 500 ms; downtimeMs overlaps the others and is not added.
  CHECK(e.recent.front().total_s == doctest::Approx(7.551));
  CHECK(e.recent.front().raw_mib == doctest::Approx(64.0));
  CHECK(e.max_s == doctest::Approx(7.551));
  CHECK(e.mean_s == doctest::Approx(((3 + 4 + 5 + 6 + 7) + 5 * 0.551) / 5));
  CHECK(e.advised_s == std::ceil(2 * 7.551 + 10));
  auto j = e.to_json();
  CHECK(j["advisedS"] == 26.0);
  CHECK(j["recent"].size() == estimate::kRecent);
}

TEST_CASE("an estimate ignores timings that are not times and checkpoints without any") {
  auto odd = taking(2, 1000, 0);
  odd.timings["dumpMs"] = "slow";
  odd.timings["storeMs"] = -5.0;
  odd.timings["thawMs"] = 1e12;  // beyond a day: not a time this checkpoint took
  manifest::Checkpoint none;
  none.seq = 3;
  auto e = estimate::from("j", {odd, none});
  REQUIRE(e.recent.size() == 1);
  CHECK(e.recent[0].seq == 2);
  CHECK(e.recent[0].total_s == doctest::Approx(0.05));
  CHECK(estimate::from("j", {none}).recent.empty());
  CHECK(estimate::from("j", {}).advised_s == 0);
}
