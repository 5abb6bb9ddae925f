// SPDX-License-Identifier: MIT
#include "gcp/policy.h"

#include "testing.h"

#include <doctest/doctest.h>

using gcp::Exit;
using gcp::testing::error_from;
namespace manifest = gcp::manifest;
namespace policy = gcp::policy;
using manifest::json;

namespace {

// 2026-12-07T12:00:00Z
constexpr double kT0 = 1796644800;

manifest::Job running_job() {
  manifest::Job job;
  job.name = "j";
  job.created = manifest::rfc3339(kT0);
  manifest::Unit u;
  u.name = "a";
  u.node = "n1";
  u.cgroup = "gcp/j/a";
  job.units.push_back(u);
  job.history.running_since = manifest::rfc3339(kT0);
  return job;
}

}  // namespace

TEST_CASE("Young's interval is sqrt(2 delta M)") {
  // sqrt(2 * 50 * 10000) = sqrt(1e6) = 1000
  CHECK(policy::young(50, 10000) == doctest::Approx(1000));
  // sqrt(2 * 60 * 7200) = sqrt(864000) = 929.52
  CHECK(policy::young(60, 7200) == doctest::Approx(929.516).epsilon(1e-5));
}

TEST_CASE("Daly's interval adds the higher-order terms and subtracts the cost") {
  // delta/2M = 50/20000 = 1/400: 1000 * (1 + (1/20)/3 + (1/400)/9) - 50 = 1000 + 16.667 + 0.278 - 50
  CHECK(policy::daly(50, 10000) == doctest::Approx(966.944).epsilon(1e-5));
  // delta = 60 s, M = 2 h: 929.516 * (1 + 0.064550/3 + 0.0041667/9) - 60 = 889.95
  CHECK(policy::daly(60, 7200) == doctest::Approx(889.95).epsilon(1e-4));
}

TEST_CASE("Daly's interval is M once the cost reaches twice the MTBF") {
  CHECK(policy::daly(60, 30) == doctest::Approx(30));
  CHECK(policy::daly(100, 20) == doctest::Approx(20));
  // Just below the edge the formula holds (and is not continuous there): r = 59.9/60,
  // sqrt(3594) * (1 + 0.99917/3 + 0.99833/9) - 59.9 = 59.950 * 1.44398 - 59.9
  CHECK(policy::daly(59.9, 30) == doctest::Approx(26.667).epsilon(1e-3));
}

TEST_CASE("with no failure the MTBF is the exposure plus the site's prior") {
  manifest::History h;
  h.exposure_s = 3600;
  policy::Site site;  // prior 1 day, weight 1
  auto m = policy::estimate_mtbf(h, site, kT0);
  CHECK(m.failures == 0);
  CHECK(m.mtbf_s == doctest::Approx(3600 + 86400));
}

TEST_CASE("the MTBF estimate on a synthetic history of four failures") {
  manifest::History h;
  h.exposure_s = 10000;
  h.failures = 4;
  policy::Site site;
  // prior weight 1 / (1 + 4)^2 = 0.04: (10000 + 0.04 * 86400) / 4.04 = 13456 / 4.04
  auto m = policy::estimate_mtbf(h, site, kT0);
  CHECK(m.prior_weight == doctest::Approx(0.04));
  CHECK(m.mtbf_s == doctest::Approx(3330.693).epsilon(1e-5));
}

TEST_CASE("planned stops are not failures and their downtime is no exposure") {
  manifest::History h;
  policy::Site site;
  policy::record_running(h, kT0);
  policy::record_stop(h, "unit-died", "unit 'a'", true, kT0 + 1000);
  policy::record_running(h, kT0 + 5000);  // 4000 s stopped: not exposure
  policy::record_stop(h, "kill", "gcp-isolate kill", false, kT0 + 6000);
  policy::record_running(h, kT0 + 7000);
  policy::record_stop(h, "preempted", "", false, kT0 + 8000);
  CHECK(h.failures == 1);
  CHECK(h.exposure_s == doctest::Approx(3000));
  CHECK(h.stops.size() == 3);
  CHECK_FALSE(h.stops[1].failure);
  // exposure 3000, one failure, prior weight 1/4: (3000 + 21600) / 1.25
  auto m = policy::estimate_mtbf(h, site, kT0 + 9000);
  CHECK(m.mtbf_s == doctest::Approx(19680));
}

TEST_CASE("the cost is a moving average of what each checkpoint cost") {
  manifest::History h;
  policy::Site site;  // alpha 0.3
  policy::record_checkpoint(h, 1, 10, kT0, site);
  CHECK(*h.cost_s == doctest::Approx(10));
  policy::record_checkpoint(h, 2, 20, kT0 + 100, site);
  CHECK(*h.cost_s == doctest::Approx(13));  // 0.3 * 20 + 0.7 * 10
  CHECK(h.checkpoints == 2);
  CHECK(h.recent.back().seq == 2);
}

TEST_CASE("a job with no history is checkpointed soon, to measure its cost") {
  auto job = running_job();
  policy::Site site;
  auto d = policy::decide(job, site, kT0 + 30);
  CHECK_FALSE(d.due);
  CHECK(d.interval_s == doctest::Approx(60));
  CHECK(*d.due_s == doctest::Approx(kT0 + 60));
  CHECK(policy::decide(job, site, kT0 + 61).due);
}

TEST_CASE("an adaptive job is due one Daly interval after its last checkpoint") {
  auto job = running_job();
  policy::Site site;
  site.mtbf_prior_s = 10000;
  policy::record_checkpoint(job.history, 1, 50, kT0, site);
  // no failure, exposure 0 at kT0: M = prior = 10000, delta = 50: 966.944 s
  auto d = policy::decide(job, site, kT0 + 10);
  CHECK(d.kind == "adaptive");
  CHECK(d.interval_s == doctest::Approx(policy::daly(50, 10000 + 10)));
  CHECK_FALSE(d.due);
  CHECK(policy::decide(job, site, kT0 + 1100).due);
}

TEST_CASE("a fixed policy is due every interval, and young uses a given cost and MTBF") {
  auto job = running_job();
  policy::Site site;
  job.checkpoint_policy = policy::parse_spec("fixed,interval=10m", {}, kT0);
  auto d = policy::decide(job, site, kT0 + 599);
  CHECK(d.interval_s == 600);
  CHECK_FALSE(d.due);
  CHECK(policy::decide(job, site, kT0 + 600).due);
  job.checkpoint_policy = policy::parse_spec("young,cost=50,mtbf=10000s", {}, kT0);
  CHECK(policy::decide(job, site, kT0).interval_s == doctest::Approx(1000));
}

TEST_CASE("the next checkpoint is moved before a known deadline, and none comes after the last") {
  auto job = running_job();
  policy::Site site;
  job.checkpoint_policy = policy::parse_spec("fixed,interval=1h,deadline=+30m", {}, kT0);
  policy::record_checkpoint(job.history, 1, 20, kT0, site);
  auto d = policy::decide(job, site, kT0 + 60);
  // deadline kT0 + 1800, cost 20, margin 60: due at kT0 + 1720
  REQUIRE(d.due_s);
  CHECK(*d.due_s == doctest::Approx(kT0 + 1720));
  CHECK_FALSE(d.notes.empty());
  policy::record_checkpoint(job.history, 2, 20, kT0 + 1725, site);
  auto after = policy::decide(job, site, kT0 + 1730);
  CHECK_FALSE(after.due);
  CHECK_FALSE(after.due_s);
  CHECK_FALSE(policy::decide(job, site, kT0 + 4000).due);
}

TEST_CASE("a deadline from a Slurm allocation that has passed is ignored; one given by hand is not") {
  auto job = running_job();
  policy::Site site;
  job.checkpoint_policy = policy::parse_spec("fixed,interval=1h,deadline=+30m", {}, kT0);
  policy::record_checkpoint(job.history, 1, 20, kT0, site);
  CHECK_FALSE(policy::decide(job, site, kT0 + 4000).due);  // by hand: past it, no more checkpoints
  job.checkpoint_policy->extra["deadlineFrom"] = "slurm job 42";
  auto d = policy::decide(job, site, kT0 + 4000);  // requeued, runs on in another allocation
  CHECK(d.due);
  REQUIRE(d.due_s);
  CHECK(*d.due_s == doctest::Approx(kT0 + 3600));
  CHECK(d.notes.back().find("slurm job 42's time limit) has passed") != std::string::npos);
  // Before it, it clamps as any deadline does.
  auto before = policy::decide(job, site, kT0 + 60);
  REQUIRE(before.due_s);
  CHECK(*before.due_s == doctest::Approx(kT0 + 1720));
}

TEST_CASE("a clock that went back makes the checkpoint due now") {
  auto job = running_job();
  policy::Site site;
  policy::record_checkpoint(job.history, 1, 10, kT0 + 86400, site);  // recorded a day ahead
  auto d = policy::decide(job, site, kT0);
  CHECK(d.due);
  CHECK(d.notes.back().find("clock went back") != std::string::npos);
}

TEST_CASE("a job with no running unit is never due") {
  auto job = running_job();
  job.units[0].state = manifest::UnitState::kStopped;
  auto d = policy::decide(job, policy::Site{}, kT0 + 86400);
  CHECK_FALSE(d.due);
  CHECK_FALSE(d.due_s);
}

TEST_CASE("bad policy specs are refused naming the key") {
  auto spec_error = [](const std::string& spec) {
    auto e = error_from([&] { policy::parse_spec(spec, {}, kT0); });
    REQUIRE(e);
    CHECK(e->code() == Exit::kUsage);
    return std::string(e->what());
  };
  CHECK(spec_error("fixed,interval=-5m").find("interval") != std::string::npos);
  CHECK(spec_error("fixed,interval=400d").find("over a year") != std::string::npos);
  CHECK(spec_error("fixed").find("intervalS") != std::string::npos);
  CHECK(spec_error("sometimes").find("sometimes") != std::string::npos);
  CHECK(spec_error("adaptive,colour=red").find("colour") != std::string::npos);
  CHECK(spec_error("adaptive,deadline=tomorrow").find("deadline") != std::string::npos);
  CHECK(spec_error("fixed,interval=abc").find("duration") != std::string::npos);
}

TEST_CASE("a policy and a history survive the Job manifest, and a hostile one is refused") {
  auto job = running_job();
  job.owner = 0;
  job.checkpoint_policy = policy::parse_spec("daly,cost=30s,mtbf=6h,max-restarts=2,spares=n2+n3", {}, kT0);
  policy::record_checkpoint(job.history, 3, 12.5, kT0 + 100, policy::Site{});
  policy::record_stop(job.history, "unit-died", "unit 'a'", true, kT0 + 200);
  auto back = manifest::job_from_json(manifest::to_json(job), "test");
  REQUIRE(back.checkpoint_policy);
  CHECK(back.checkpoint_policy->kind == "daly");
  CHECK(*back.checkpoint_policy->mtbf_s == 21600);
  CHECK(back.checkpoint_policy->spares == std::vector<std::string>{"n2", "n3"});
  CHECK(back.history.failures == 1);
  CHECK(*back.history.cost_s == doctest::Approx(12.5));
  CHECK(back.history.exposure_s == doctest::Approx(200));
  CHECK(back.history.recent.at(0).seq == 3);

  json doc = manifest::to_json(job);
  doc["policy"]["checkpoint"]["intervalS"] = -1;
  doc["policy"]["checkpoint"]["kind"] = "fixed";
  auto e = error_from([&] { manifest::job_from_json(doc, "test"); });
  REQUIRE(e);
  CHECK(std::string(e->what()).find("policy.checkpoint.intervalS") != std::string::npos);
  doc["policy"]["checkpoint"]["intervalS"] = "soon";
  CHECK(error_from([&] { manifest::job_from_json(doc, "test"); }));
}

TEST_CASE("RFC 3339 times parse with fractions and offsets, and wrong ones do not") {
  CHECK(*manifest::parse_rfc3339("2026-12-07T12:00:00Z") == kT0);
  CHECK(*manifest::parse_rfc3339("2026-12-07T12:00:00.500Z") == kT0 + 0.5);
  CHECK(*manifest::parse_rfc3339("2026-12-07T13:00:00+01:00") == kT0);
  CHECK(manifest::rfc3339(kT0 + 1.25) == "2026-12-07T12:00:01.250Z");
  CHECK_FALSE(manifest::parse_rfc3339("yesterday"));
  CHECK_FALSE(manifest::parse_rfc3339("2026-13-07T12:00:00Z"));
  CHECK_FALSE(manifest::parse_rfc3339("2026-12-07T12:00:00"));
}

TEST_CASE("the site's settings are read and wrong ones refused") {
  json cfg = {{"policy", {{"mtbfS", 3600}, {"priorWeight", 2}, {"spares", {"n9"}}}}};
  auto site = policy::site_from_json(cfg, "gcp.json");
  CHECK(site.mtbf_prior_s == 3600);
  CHECK(site.prior_weight == 2);
  CHECK(site.spares == std::vector<std::string>{"n9"});
  cfg["policy"]["mtbfS"] = -3;
  CHECK(error_from([&] { policy::site_from_json(cfg, "gcp.json"); }));
  cfg["policy"]["mtbfS"] = 3600;
  cfg["policy"]["kind"] = "fixed";
  CHECK(error_from([&] { policy::site_from_json(cfg, "gcp.json"); }));
}

TEST_CASE("the strategy follows the nodes and the ties between units, and says why") {
  auto job = running_job();
  policy::Site site;
  auto one = policy::decide(job, site, kT0);
  CHECK(one.strategy == "coordinated");
  CHECK(one.strategy_why.find("one node") != std::string::npos);
  manifest::Unit b = job.units[0];
  b.name = "b";
  b.node = "n2";
  job.units.push_back(b);
  CHECK(policy::decide(job, site, kT0).strategy_why.find("not known yet") != std::string::npos);
  job.history.job_ties = 2;
  auto tied = policy::decide(job, site, kT0);
  CHECK(tied.strategy == "coordinated");
  CHECK(tied.strategy_why.find("2 tie(s)") != std::string::npos);
  job.history.job_ties = 0;
  CHECK(policy::decide(job, site, kT0).strategy == "uncoordinated");
  job.checkpoint_policy = policy::parse_spec("fixed,interval=1h", {}, kT0);
  CHECK(policy::decide(job, site, kT0).strategy == "coordinated");  // only adaptive chooses
}
