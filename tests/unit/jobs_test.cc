// SPDX-License-Identifier: MIT
#include "gcp/jobs.h"

#include "fake_cgroups.h"
#include "gcp/fs.h"
#include "gcp/names.h"
#include "gcp/proc.h"
#include "store_decorator.h"
#include "testing.h"

#include <doctest/doctest.h>

#include <fcntl.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>

using gcp::Exit;
using gcp::cgroup::FreezeState;
using gcp::manifest::json;
using gcp::testing::error_from;
using gcp::testing::FakeCgroups;
using gcp::testing::ScopedEnv;
using gcp::testing::TempDir;
namespace jobs = gcp::jobs;
namespace manifest = gcp::manifest;
namespace stdfs = std::filesystem;
using namespace std::chrono_literals;

namespace {

// A real child that only waits, so the units' pid is one that may be signalled
// safely; killed and reaped on destruction. It holds nothing of the test's: a checkpoint
// records the files a unit has open for writing, and the test's output may be a file
// that grows (tests/run-all.sh writes it to a log).
class Sleeper {
 public:
  Sleeper() {
    pid_ = ::fork();
    REQUIRE(pid_ >= 0);
    if (pid_ == 0) {
      int null = ::open("/dev/null", O_RDWR);
      if (null < 0 || ::dup2(null, 0) < 0 || ::dup2(null, 1) < 0 || ::dup2(null, 2) < 0) ::_exit(1);
      ::syscall(SYS_close_range, 3U, ~0U, 0U);
      for (;;) ::pause();
    }
  }
  ~Sleeper() {
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
  }
  Sleeper(const Sleeper&) = delete;
  Sleeper& operator=(const Sleeper&) = delete;
  pid_t pid() const { return pid_; }

 private:
  pid_t pid_;
};

// Job "j" with running units on this node, checkpointed by the echo translib into a
// temporary store, with cgroups in memory.
struct JobFixture {
  explicit JobFixture(std::vector<std::string> unit_names = {"a", "b"}) {
    REQUIRE(stdfs::exists(gcp::testing::fake_translib_dir() + "/echo.so"));
    job.name = "j";
    job.owner = ::geteuid();
    job.created = manifest::now_rfc3339();
    for (const auto& name : unit_names) {
      manifest::Unit u;
      u.name = name;
      u.node = gcp::proc::node_name();
      u.grouping = "pidns";
      u.cgroup = gcp::cgroup::unit_path("j", name);
      u.translib = "echo";
      u.command = {"sleep", "1000"};
      u.pid = sleeper.pid();
      cgroups.add_pid(u.cgroup, sleeper.pid());
      job.units.push_back(u);
    }
    store->save_job(job);
    // The units' ties as a test says they are, instead of this machine's /proc.
    machine.ties = [this](const std::string& name, const std::vector<gcp::deps::UnitSpec>& specs,
                          const gcp::deps::Context&) {
      gcp::deps::Graph g;
      g.job = name;
      for (const auto& s : specs) g.units.push_back({s.name, s.spec, {}});
      g.ties = ties;
      return g;
    };
  }

  // A tie of unit `unit` (its index) with the given verdict.
  void tie(size_t unit, gcp::deps::Verdict verdict, const std::string& need = "") {
    gcp::deps::Tie t;
    t.kind = verdict == gcp::deps::Verdict::kBreaks ? "pipe" : "tcp";
    t.object = "pipe:[42]";
    t.ends = {{sleeper.pid(), 1, "w", unit}, {1, 0, "r", std::nullopt}};
    t.scope = gcp::deps::Scope::kExternal;
    t.verdict = verdict;
    t.need = need;
    t.advice = "widen the unit to take in pid 1 (init)";
    ties.push_back(t);
  }

  manifest::Job stored_job() {
    auto loaded = store->load_job("j");
    REQUIRE(loaded.has_value());
    return *loaded;
  }

  std::vector<stdfs::path> staging_dirs() {
    std::vector<stdfs::path> dirs;
    std::error_code ec;
    for (const auto& e : stdfs::directory_iterator(store->job_dir("j") / "staging", ec)) {
      dirs.push_back(e.path());
    }
    return dirs;
  }

  std::vector<json> events() {
    std::vector<json> out;
    std::ifstream in(store->job_dir("j") / "events.jsonl");
    std::string line;
    while (std::getline(in, line)) out.push_back(json::parse(line));
    return out;
  }

  bool called(const std::string& call) {
    return std::find(cgroups.calls.begin(), cgroups.calls.end(), call) != cgroups.calls.end();
  }

  // Index of a call in the fake's log; calls.size() when it never happened.
  size_t when(const std::string& call) {
    return static_cast<size_t>(std::find(cgroups.calls.begin(), cgroups.calls.end(), call) - cgroups.calls.begin());
  }

  ScopedEnv translib_path{gcp::names::kEnvTranslibPath, gcp::testing::fake_translib_dir()};
  ScopedEnv no_failure{"FAKE_TRANSLIB_FAIL", std::nullopt};
  TempDir tmp;
  ScopedEnv scratch{"GCP_SCRATCH", (tmp.path() / "scratch").string()};
  std::unique_ptr<gcp::store::Store> store = gcp::store::open(tmp.path().string());
  FakeCgroups cgroups;
  gcp::rounds::Machine machine{cgroups, {}};
  Sleeper sleeper;
  manifest::Job job;
  jobs::CheckpointOptions options;
  std::vector<gcp::deps::Tie> ties;
};

}  // namespace

TEST_CASE("a checkpoint of a two-unit job freezes both, commits seq 1 and thaws both") {
  JobFixture f;
  f.cgroups.freeze_after("gcp/j/a", 2);
  auto cp = jobs::checkpoint(*f.store, f.machine, "j", f.options);

  CHECK(cp.job == "j");
  CHECK(cp.seq == 1);
  CHECK(cp.mode == manifest::Mode::kCoordinated);
  CHECK(cp.kernel == gcp::proc::kernel_release());
  CHECK(cp.timings.contains("downtimeMs"));
  REQUIRE(cp.units.size() == 2);
  for (size_t i = 0; i < 2; ++i) {
    CAPTURE(i);
    CHECK(cp.units[i].name == f.job.units[i].name);
    CHECK(cp.units[i].node == gcp::proc::node_name());
    CHECK(cp.units[i].grouping == "pidns");
    CHECK(cp.units[i].translib == "echo");
    CHECK(cp.units[i].translib_version == "0.0.1");
    CHECK(cp.units[i].timings.contains("dumpMs"));
  }

  // Coordinated: every unit is frozen before any is thawed.
  REQUIRE(f.called("freeze gcp/j/a"));
  REQUIRE(f.called("freeze gcp/j/b"));
  CHECK(f.when("freeze gcp/j/b") < f.when("thaw gcp/j/a"));
  CHECK(f.when("freeze gcp/j/a") < f.when("thaw gcp/j/b"));
  CHECK(f.cgroups.group("gcp/j/a").state == FreezeState::kThawed);
  CHECK(f.cgroups.group("gcp/j/b").state == FreezeState::kThawed);

  CHECK(f.store->checkpoints("j") == std::vector<uint64_t>{1});
  CHECK(f.staging_dirs().empty());
  auto stored = f.store->load_checkpoint("j", 1);
  REQUIRE(stored.units.size() == 2);
  CHECK(stored.units[0].name == "a");
  CHECK(stored.units[1].name == "b");
  CHECK(stored.units[0].translib == "echo");
  CHECK(stored.units[1].translib == "echo");

  auto events = f.events();
  REQUIRE_FALSE(events.empty());
  CHECK(events.back()["event"] == "checkpoint");
  CHECK(events.back()["seq"] == 1);

  auto second = jobs::checkpoint(*f.store, f.machine, "j", f.options);
  CHECK(second.seq == 2);
  CHECK(f.store->checkpoints("j") == std::vector<uint64_t>{1, 2});
}

TEST_CASE("a failing dump aborts the round, thaws every unit and keeps the previous checkpoint") {
  JobFixture f;
  jobs::checkpoint(*f.store, f.machine, "j", f.options);
  f.cgroups.calls.clear();

  {
    ScopedEnv fail{"FAKE_TRANSLIB_FAIL", "checkpoint"};
    auto e = error_from([&] { jobs::checkpoint(*f.store, f.machine, "j", f.options); });
    REQUIRE(e.has_value());
    CHECK(e->code() == Exit::kFailed);
    CHECK_CONTAINS(e->what(), "job 'j'");
    CHECK_CONTAINS(e->what(), "unit 'a'");
    CHECK_CONTAINS(e->what(), "the fake checkpointer was told to fail");
    CHECK_CONTAINS(e->hint(), "previous checkpoint");
  }
  CHECK(f.called("freeze gcp/j/a"));
  CHECK(f.called("freeze gcp/j/b"));
  CHECK(f.called("thaw gcp/j/a"));
  CHECK(f.called("thaw gcp/j/b"));
  CHECK(f.cgroups.group("gcp/j/a").state == FreezeState::kThawed);
  CHECK(f.cgroups.group("gcp/j/b").state == FreezeState::kThawed);
  CHECK(f.staging_dirs().empty());
  CHECK(f.store->checkpoints("j") == std::vector<uint64_t>{1});
  CHECK(f.events().back()["event"] == "checkpoint-failed");

  // The lock was released: the next round works.
  CHECK(jobs::checkpoint(*f.store, f.machine, "j", f.options).seq > 1);
}

TEST_CASE("a unit that does not freeze in time aborts the round and the others are thawed") {
  JobFixture f;
  f.cgroups.never_freeze("gcp/j/b");
  f.options.freeze_timeout = 50ms;
  auto e = error_from([&] { jobs::checkpoint(*f.store, f.machine, "j", f.options); });
  REQUIRE(e.has_value());
  CHECK(e->code() == Exit::kFailed);
  CHECK_CONTAINS(e->what(), "unit 'b'");
  CHECK_CONTAINS(e->what(), "not frozen after 50 ms");
  CHECK(f.when("freeze gcp/j/a") < f.when("thaw gcp/j/a"));
  CHECK(f.called("thaw gcp/j/b"));
  CHECK(f.cgroups.group("gcp/j/a").state == FreezeState::kThawed);
  CHECK(f.cgroups.group("gcp/j/b").state == FreezeState::kThawed);
  CHECK(f.staging_dirs().empty());
  CHECK(f.store->checkpoints("j").empty());
}

TEST_CASE("a unit on a node no launcher reaches is refused before anything is frozen") {
  JobFixture f;
  f.job.units[1].node = "elsewhere.example";
  f.store->save_job(f.job);
  setenv("GCP_CONFIG", (f.store->root() / "no-such-gcp.json").c_str(), 1);
  auto e = error_from([&] { jobs::checkpoint(*f.store, f.machine, "j", f.options); });
  unsetenv("GCP_CONFIG");
  REQUIRE(e.has_value());
  CHECK(e->code() == Exit::kUsage);
  CHECK_CONTAINS(e->what(), "unit 'b'");
  CHECK_CONTAINS(e->what(), "'elsewhere.example'");
  CHECK_CONTAINS(e->what(), "no launcher");
  CHECK(f.cgroups.calls.empty());
  CHECK(f.store->checkpoints("j").empty());
  CHECK(f.staging_dirs().empty());
}

TEST_CASE("a unit whose processes have ended is left out of the checkpoint with a warning") {
  JobFixture f;
  gcp::testing::CapturedLog log;
  f.cgroups.clear_pids("gcp/j/b");
  auto cp = jobs::checkpoint(*f.store, f.machine, "j", f.options);
  REQUIRE(cp.units.size() == 1);
  CHECK(cp.units[0].name == "a");
  CHECK_FALSE(f.called("freeze gcp/j/b"));
  CHECK_CONTAINS(log.text(), "warning: unit 'b' of job 'j' is exited");
}

TEST_CASE("a job with no running unit is refused: nothing to checkpoint") {
  JobFixture f;
  gcp::testing::CapturedLog log;
  f.cgroups.clear_pids("gcp/j/a");
  f.cgroups.clear_pids("gcp/j/b");
  auto e = error_from([&] { jobs::checkpoint(*f.store, f.machine, "j", f.options); });
  REQUIRE(e.has_value());
  CHECK(e->code() == Exit::kFailed);
  CHECK_CONTAINS(e->what(), "job 'j'");
  CHECK_CONTAINS(e->what(), "nothing to checkpoint");
  CHECK(f.cgroups.calls.empty());
  CHECK(f.staging_dirs().empty());
  CHECK(f.store->checkpoints("j").empty());
}

TEST_CASE("a unit frozen by someone else is refused") {
  JobFixture f;
  f.cgroups.set_frozen("gcp/j/b", true);
  f.cgroups.calls.clear();
  auto e = error_from([&] { jobs::checkpoint(*f.store, f.machine, "j", f.options); });
  REQUIRE(e.has_value());
  CHECK(e->code() == Exit::kFailed);
  CHECK_CONTAINS(e->what(), "unit 'b'");
  CHECK_CONTAINS(e->what(), "frozen");
  CHECK_CONTAINS(e->hint(), "/fake/freezer/gcp/j/b");
  CHECK(f.cgroups.calls.empty());
}

TEST_CASE("a checkpoint is refused as busy while another holds the job's lock") {
  JobFixture f;
  auto held = f.store->try_lock_job("j");
  REQUIRE(held.has_value());
  auto e = error_from([&] { jobs::checkpoint(*f.store, f.machine, "j", f.options); });
  REQUIRE(e.has_value());
  CHECK(e->code() == Exit::kBusy);
  CHECK(f.cgroups.calls.empty());
}

TEST_CASE("a checkpoint with a translib that is not installed freezes nothing") {
  JobFixture f;
  f.job.units[0].translib = "no-such-translib";
  f.store->save_job(f.job);
  auto e = error_from([&] { jobs::checkpoint(*f.store, f.machine, "j", f.options); });
  REQUIRE(e.has_value());
  CHECK(e->code() == Exit::kNoCheckpointer);
  CHECK(f.cgroups.calls.empty());
  CHECK(f.staging_dirs().empty());
}

TEST_CASE("restart restores every unit of the latest checkpoint and records the new pids") {
  JobFixture f;
  jobs::checkpoint(*f.store, f.machine, "j", f.options);
  f.cgroups.clear_pids("gcp/j/a");
  f.cgroups.clear_pids("gcp/j/b");
  jobs::kill(*f.store, f.cgroups, "j", std::nullopt);
  f.cgroups.calls.clear();

  auto job = jobs::restart(*f.store, f.machine, "j", {});
  CHECK(f.called("create gcp/j/a"));
  CHECK(f.called("create gcp/j/b"));
  for (const auto& u : {job, f.stored_job()}) {
    REQUIRE(u.units.size() == 2);
    for (const auto& unit : u.units) {
      CAPTURE(unit.name);
      CHECK(unit.state == manifest::UnitState::kRunning);
      CHECK(unit.pid == 1);  // what the echo translib answers
      CHECK(unit.restored_from == 1u);
    }
  }
  CHECK(f.events().back()["event"] == "restart");
}

TEST_CASE("a damaged newest manifest does not block restarting the older checkpoints") {
  JobFixture f;
  jobs::checkpoint(*f.store, f.machine, "j", f.options);
  jobs::checkpoint(*f.store, f.machine, "j", f.options);
  f.cgroups.clear_pids("gcp/j/a");
  f.cgroups.clear_pids("gcp/j/b");
  jobs::kill(*f.store, f.cgroups, "j", std::nullopt);
  std::ofstream(f.store->job_dir("j") / "checkpoints/2/manifest.json") << "{\"apiVersion\": \"gcp/v1\", \"kind";
  auto e = error_from([&] { jobs::restart(*f.store, f.machine, "j", {}); });
  REQUIRE(e.has_value());
  CHECK(e->code() == Exit::kUsage);  // the manifest is bad input
  CHECK_CONTAINS(e->what(), "checkpoints/2/manifest.json");
  CHECK_CONTAINS(e->hint(), "checkpoint 1 is older: restart it with '--seq 1', or pass --fallback");
  jobs::RestartOptions one;
  one.seq = 1;
  CHECK(jobs::restart(*f.store, f.machine, "j", one).units[0].restored_from == 1u);
  jobs::kill(*f.store, f.cgroups, "j", std::nullopt);
  f.cgroups.clear_pids("gcp/j/a");
  f.cgroups.clear_pids("gcp/j/b");
  jobs::RestartOptions fallback;
  fallback.fallback = true;
  CHECK(jobs::restart(*f.store, f.machine, "j", fallback).units[0].restored_from == 1u);
}

TEST_CASE("a unit left running by an interrupted restart is recorded again from its cgroup") {
  JobFixture f;
  jobs::checkpoint(*f.store, f.machine, "j", f.options);
  f.cgroups.clear_pids("gcp/j/a");
  f.cgroups.clear_pids("gcp/j/b");
  jobs::kill(*f.store, f.cgroups, "j", std::nullopt);
  // The checkpointer restored unit a, and the restart died before it recorded it.
  f.cgroups.add_pid("gcp/j/a", f.sleeper.pid());
  auto job = jobs::status(*f.store, f.cgroups, "j");
  CHECK(job.find_unit("a")->state == manifest::UnitState::kRunning);
  CHECK(job.find_unit("a")->pid == f.sleeper.pid());
  CHECK(f.stored_job().find_unit("a")->pid == f.sleeper.pid());
  CHECK(f.stored_job().find_unit("b")->state == manifest::UnitState::kStopped);
  // A restart now refuses it as running, instead of restoring it a second time.
  auto e = error_from([&] { jobs::restart(*f.store, f.machine, "j", {}); });
  REQUIRE(e.has_value());
  CHECK_CONTAINS(e->what(), "unit 'a' is still running");
}

TEST_CASE("a failing restart names the unit and leaves no unit marked running") {
  JobFixture f;
  jobs::checkpoint(*f.store, f.machine, "j", f.options);
  f.cgroups.clear_pids("gcp/j/a");
  f.cgroups.clear_pids("gcp/j/b");
  jobs::kill(*f.store, f.cgroups, "j", std::nullopt);

  SUBCASE("when the translib fails") {
    ScopedEnv fail{"FAKE_TRANSLIB_FAIL", "restart"};
    auto e = error_from([&] { jobs::restart(*f.store, f.machine, "j", {}); });
    REQUIRE(e.has_value());
    CHECK(e->code() == Exit::kFailed);
    CHECK_CONTAINS(e->what(), "checkpoint 1 of job 'j'");
    CHECK_CONTAINS(e->what(), "unit 'a'");
    CHECK_CONTAINS(e->what(), "the fake checkpointer was told to fail");
  }
  SUBCASE("when a later unit fails after the first was restored") {
    f.cgroups.fail_create("gcp/j/b");
    auto e = error_from([&] { jobs::restart(*f.store, f.machine, "j", {}); });
    REQUIRE(e.has_value());
    CHECK(e->code() == Exit::kFailed);
    CHECK_CONTAINS(e->what(), "unit 'b'");
    CHECK(f.called("create gcp/j/a"));
  }
  for (const auto& u : f.stored_job().units) {
    CAPTURE(u.name);
    CHECK(u.state != manifest::UnitState::kRunning);
    CHECK_FALSE(u.pid.has_value());
  }
  CHECK(f.events().back()["event"] == "restart-failed");
}

TEST_CASE("restart is refused while a unit still runs") {
  JobFixture f;
  jobs::checkpoint(*f.store, f.machine, "j", f.options);
  f.cgroups.calls.clear();
  auto e = error_from([&] { jobs::restart(*f.store, f.machine, "j", {}); });
  REQUIRE(e.has_value());
  CHECK(e->code() == Exit::kFailed);
  CHECK_CONTAINS(e->what(), "unit 'a' is still running");
  CHECK(f.cgroups.calls.empty());
}

TEST_CASE("restart of a job without a checkpoint is refused") {
  JobFixture f;
  auto e = error_from([&] { jobs::restart(*f.store, f.machine, "j", {}); });
  REQUIRE(e.has_value());
  CHECK(e->code() == Exit::kUsage);
  CHECK_CONTAINS(e->what(), "job 'j' has no committed checkpoint");
  CHECK(f.cgroups.calls.empty());
}

TEST_CASE("restart of a checkpoint that does not exist is refused") {
  JobFixture f;
  jobs::checkpoint(*f.store, f.machine, "j", f.options);
  jobs::RestartOptions seven;
  seven.seq = 7;
  auto e = error_from([&] { jobs::restart(*f.store, f.machine, "j", seven); });
  REQUIRE(e.has_value());
  CHECK_CONTAINS(e->what(), "no checkpoint 7");
}

TEST_CASE("loading a job that is not in the store is a usage error") {
  JobFixture f;
  auto e = error_from([&] { jobs::load(*f.store, "unknown"); });
  REQUIRE(e.has_value());
  CHECK(e->code() == Exit::kUsage);
  CHECK_CONTAINS(e->what(), "job 'unknown'");
  CHECK_CONTAINS(e->what(), f.tmp.path().string());
  CHECK_FALSE(e->hint().empty());

  auto bad = error_from([&] { jobs::load(*f.store, "../j"); });
  REQUIRE(bad.has_value());
  CHECK(bad->code() == Exit::kUsage);
  CHECK(jobs::load(*f.store, "j").units.size() == 2);
}

TEST_CASE("kill records the units as stopped and removes their cgroups") {
  JobFixture f;
  f.cgroups.clear_pids("gcp/j/a");
  f.cgroups.clear_pids("gcp/j/b");
  auto job = jobs::kill(*f.store, f.cgroups, "j", std::string("b"));
  CHECK(f.called("remove gcp/j/b"));
  CHECK_FALSE(f.called("remove gcp/j/a"));
  CHECK(f.stored_job().find_unit("b")->state == manifest::UnitState::kStopped);
  CHECK(f.stored_job().find_unit("a")->state == manifest::UnitState::kRunning);
  auto e = error_from([&] { jobs::kill(*f.store, f.cgroups, "j", std::string("zz")); });
  REQUIRE(e.has_value());
  CHECK(e->code() == Exit::kUsage);
  CHECK_CONTAINS(e->what(), "no unit 'zz'");
}

TEST_CASE("status reads each unit's state from the cgroups") {
  JobFixture f;
  f.cgroups.clear_pids("gcp/j/b");
  auto job = jobs::status(*f.store, f.cgroups, "j");
  CHECK(job.find_unit("a")->state == manifest::UnitState::kRunning);
  CHECK(job.find_unit("a")->pid == f.sleeper.pid());
  CHECK(job.find_unit("b")->state == manifest::UnitState::kExited);
  CHECK_FALSE(job.find_unit("b")->pid.has_value());
}

TEST_CASE("a checkpoint or restart of an unknown or malformed job name leaves nothing in the store") {
  JobFixture f;
  for (const std::string& name : {std::string("unknown"), std::string("x/../../escape")}) {
    CAPTURE(name);
    auto ck = error_from([&] { jobs::checkpoint(*f.store, f.machine, name, f.options); });
    REQUIRE(ck.has_value());
    CHECK(ck->code() == Exit::kUsage);
    auto rs = error_from([&] { jobs::restart(*f.store, f.machine, name, {}); });
    REQUIRE(rs.has_value());
    CHECK(rs->code() == Exit::kUsage);
  }
  CHECK_FALSE(stdfs::exists(f.tmp.path() / "jobs" / "unknown"));
  CHECK_FALSE(stdfs::exists(f.tmp.path() / "escape"));
}

TEST_CASE("the committed manifest holds the round's timings") {
  JobFixture f;
  auto printed = jobs::checkpoint(*f.store, f.machine, "j", f.options);
  auto stored = f.store->load_checkpoint("j", 1);
  for (const char* key : {"freezeMs", "dumpMs", "thawMs", "downtimeMs", "storeMs"}) {
    CAPTURE(key);
    CHECK(stored.timings.contains(key));
    CHECK(stored.timings[key] == printed.timings[key]);
  }
  CHECK(printed.timings.contains("totalMs"));
}

TEST_CASE("restart refuses a checkpoint written by a newer checkpointer than this node has") {
  JobFixture f;
  jobs::checkpoint(*f.store, f.machine, "j", f.options);
  // Rewrite the manifest as if a newer fake checkpointer (the probe says 1.0) wrote it.
  auto dir = f.store->job_dir("j") / "checkpoints" / "1";
  auto doc = json::parse(gcp::fs::read_file(dir / "manifest.json"));
  for (auto& u : doc["units"]) u["checkpointer"] = {{"name", "fake"}, {"version", "1.10"}};
  gcp::fs::write_file_atomic(dir / "manifest.json", doc.dump());
  f.cgroups.clear_pids("gcp/j/a");
  f.cgroups.clear_pids("gcp/j/b");
  auto e = error_from([&] { jobs::restart(*f.store, f.machine, "j", {}); });
  REQUIRE(e.has_value());
  CHECK(e->code() == Exit::kNoCheckpointer);
  CHECK_CONTAINS(e->what(), "checkpointer: was written by fake 1.10, this node has fake 1.0");
  CHECK_CONTAINS(e->hint(), "install fake 1.10 or newer");
  CHECK_NOT_CONTAINS(e->hint(), "GCP_CRIU");
  CHECK_FALSE(f.called("create gcp/j/a"));
}

TEST_CASE("restart records the node it restored the units on") {
  JobFixture f;
  jobs::checkpoint(*f.store, f.machine, "j", f.options);
  auto job = f.stored_job();
  for (auto& u : job.units) u.node = "elsewhere";
  f.store->save_job(job);
  f.cgroups.clear_pids("gcp/j/a");
  f.cgroups.clear_pids("gcp/j/b");
  // Placed here: a unit restarts where --place puts it, and the manifest says so.
  jobs::RestartOptions here;
  for (const auto& u : job.units) here.place[u.name] = gcp::proc::node_name();
  auto restored = jobs::restart(*f.store, f.machine, "j", here);
  for (const auto& u : restored.units) CHECK(u.node == gcp::proc::node_name());
}

TEST_CASE("a unit whose recorded pid is not in its cgroup is refused before anything is frozen") {
  JobFixture f;
  auto job = f.stored_job();
  job.units[1].pid = 1;  // e.g. an edited manifest pointing at a process of someone else
  f.store->save_job(job);
  auto e = error_from([&] { jobs::checkpoint(*f.store, f.machine, "j", f.options); });
  REQUIRE(e.has_value());
  CHECK(e->code() == Exit::kFailed);
  CHECK_CONTAINS(e->what(), "unit 'b' of job 'j': its recorded pid 1 is not in its cgroup 'gcp/j/b'");
  CHECK_FALSE(f.called("freeze gcp/j/a"));
  CHECK(f.store->checkpoints("j").empty());
}

TEST_CASE("retention keeps the last N checkpoints: --keep, else the job's policy") {
  JobFixture f;
  for (int i = 0; i < 3; ++i) jobs::checkpoint(*f.store, f.machine, "j", f.options);
  CHECK(f.store->checkpoints("j") == std::vector<uint64_t>{1, 2, 3});  // no policy: all kept

  auto job = f.stored_job();
  job.keep = 2;
  f.store->save_job(job);
  jobs::checkpoint(*f.store, f.machine, "j", f.options);
  CHECK(f.store->checkpoints("j") == std::vector<uint64_t>{3, 4});
  CHECK(f.events().back()["event"] == "checkpoint-removed");

  f.options.keep = 1;  // the option wins over the policy
  jobs::checkpoint(*f.store, f.machine, "j", f.options);
  CHECK(f.store->checkpoints("j") == std::vector<uint64_t>{5});
  // Removed numbers are not handed out again.
  f.store->remove_checkpoint("j", 5);
  CHECK(jobs::checkpoint(*f.store, f.machine, "j", f.options).seq == 6);
}

TEST_CASE("a store failure that is not a gcp::Error still thaws a job kept frozen for --stop") {
  JobFixture f;
  jobs::checkpoint(*f.store, f.machine, "j", f.options);
  // The store's disk goes away between storing the chunks and renaming the manifest.
  struct FailingCommit : gcp::testing::StoreDecorator {
    using StoreDecorator::StoreDecorator;
    void publish(gcp::store::Staging&, manifest::Checkpoint&) override {
      throw std::runtime_error("the store's disk went away");
    }
  };
  f.store = std::make_unique<FailingCommit>(gcp::store::open(f.tmp.path().string()));
  f.options.stop = true;
  auto e = error_from([&] { jobs::checkpoint(*f.store, f.machine, "j", f.options); });
  REQUIRE(e.has_value());
  CHECK(e->code() == Exit::kFailed);
  CHECK_CONTAINS(e->what(), "checkpoint 2 of job 'j' not committed: the store's disk went away");
  CHECK_CONTAINS(e->hint(), "the job keeps running");
  CHECK(f.cgroups.group("gcp/j/a").state == FreezeState::kThawed);
  CHECK(f.cgroups.group("gcp/j/b").state == FreezeState::kThawed);
  CHECK(f.staging_dirs().empty());
  CHECK(f.store->checkpoints("j") == std::vector<uint64_t>{1});
  CHECK(f.events().back()["event"] == "checkpoint-failed");
  CHECK(f.stored_job().units[0].state == manifest::UnitState::kRunning);  // not marked stopped
}

TEST_CASE("a unit whose ties would break its restart is refused before anything is frozen") {
  JobFixture f;
  f.tie(1, gcp::deps::Verdict::kBreaks);
  try {
    jobs::checkpoint(*f.store, f.machine, "j", f.options);
    FAIL("the checkpoint was not refused");
  } catch (const gcp::Error& e) {
    CHECK(e.code() == gcp::Exit::kFailed);
    std::string what = e.what();
    CHECK(what.find("unit 'b' of job 'j' would restart broken: pipe pipe:[42]") != std::string::npos);
    CHECK(what.find("widen the unit") != std::string::npos);
    CHECK(e.hint().find("gcp-deps j") != std::string::npos);
    CHECK(e.hint().find("--force") != std::string::npos);
  }
  CHECK_FALSE(f.called("freeze gcp/j/a"));
  CHECK_FALSE(f.called("freeze gcp/j/b"));
  CHECK(f.store->checkpoints("j").empty());
  CHECK(f.staging_dirs().empty());

  CHECK(f.events().back()["event"] == "checkpoint-failed");

  f.options.force = true;
  auto cp = jobs::checkpoint(*f.store, f.machine, "j", f.options);
  CHECK(cp.seq == 2);  // the refused attempt had its number (its pre-checkpoint callbacks carry it)
  CHECK(f.called("freeze gcp/j/b"));
}

TEST_CASE("what the ties need goes to the checkpointer; the options it used go into the manifest and to the restart") {
  JobFixture f;
  TempDir tmp;
  auto requests = tmp.path() / "requests";
  ScopedEnv log{"FAKE_TRANSLIB_REQUESTS", requests.string()};
  f.tie(0, gcp::deps::Verdict::kNeeds, "tcp-established");
  f.tie(0, gcp::deps::Verdict::kNeeds, "leader-outside");
  f.tie(0, gcp::deps::Verdict::kNeeds, "tcp-established");
  auto cp = jobs::checkpoint(*f.store, f.machine, "j", f.options);
  // What the echo translib was asked: needs in gcp's words, no checkpointer options, and
  // no gate (its descriptor does not say GCP_CAP_DUMP_GATE).
  auto asked = [&](const std::string& call) {
    std::map<std::string, json> by_unit;
    std::ifstream in(requests);
    for (std::string line; std::getline(in, line);) {
      if (line.rfind(call + " ", 0) != 0) continue;
      json r = json::parse(line.substr(call.size() + 1));
      by_unit[stdfs::path(r.at("imagesDir").get<std::string>()).filename()] = r;
    }
    return by_unit;
  };
  auto dumped = asked("checkpoint");
  REQUIRE(dumped.size() == 2);
  CHECK(dumped["a"]["needs"] == json::array({"leader-outside", "tcp-established"}));
  CHECK(dumped["b"]["needs"] == json::array());
  for (const auto& [unit, r] : dumped) {
    CHECK_FALSE(r.contains("options"));
    CHECK_FALSE(r.contains("gate"));
  }
  // The echo translib says it used its needs as its options: those are recorded.
  const auto* a = cp.find_unit("a");
  const auto* b = cp.find_unit("b");
  REQUIRE(a);
  REQUIRE(b);
  CHECK(a->options == std::vector<std::string>{"leader-outside", "tcp-established"});
  CHECK(b->options.empty());
  CHECK(cp.timings.contains("depsMs"));
  auto doc = manifest::to_json(cp);
  CHECK(doc["units"][0]["checkpointerOptions"] == json::array({"leader-outside", "tcp-established"}));
  CHECK_FALSE(doc["units"][1].contains("checkpointerOptions"));
  auto back = manifest::checkpoint_from_json(doc, "test");
  CHECK(back.units[0].options == a->options);

  // The restart gives them back verbatim, from the stored manifest, and no image source
  // (its descriptor does not say GCP_CAP_IMAGE_SOURCE): the images are in imagesDir.
  f.cgroups.clear_pids("gcp/j/a");
  f.cgroups.clear_pids("gcp/j/b");
  jobs::kill(*f.store, f.cgroups, "j", std::nullopt);
  jobs::restart(*f.store, f.machine, "j", {});
  auto restored = asked("restart");
  REQUIRE(restored.size() == 2);
  CHECK(restored["a"]["options"] == json::array({"leader-outside", "tcp-established"}));
  CHECK(restored["b"]["options"] == json::array());
  for (const auto& [unit, r] : restored) CHECK_FALSE(r.contains("imageSource"));

  // A manifest carries only words into a checkpointer (which runs as root, and checks
  // them itself: gcp-translib(7)).
  for (const auto& bad : {json("--action-script /tmp/x"), json(""), json(7), json(std::string(129, 'o')),
                          json("--tcp-established\n--action-script")}) {
    CAPTURE(bad.dump());
    doc["units"][0]["checkpointerOptions"] = json::array({bad});
    CHECK_THROWS_WITH_AS(manifest::checkpoint_from_json(doc, "test"), doctest::Contains("units[0].checkpointerOptions"),
                         gcp::Error);
  }
}

namespace {

// Gives every unit of the fixture a hooks directory whose one hook logs
// "EVENT SEQ UNIT" to `log` and fails `event` for the units in `failing`.
void add_hooks(JobFixture& f, const stdfs::path& log, const std::string& failing = "",
               const std::string& event = "pre-checkpoint") {
  auto dir = f.tmp.path() / "hooks";
  stdfs::create_directories(dir);
  std::ofstream(dir / "10-log") << "#!/bin/sh\necho \"$GCP_EVENT $GCP_SEQ $GCP_UNIT\" >> " << log.string()
                                << "\ncase \" " << failing << " \" in *\" $GCP_UNIT \"*) [ \"$GCP_EVENT\" = " << event
                                << " ] && "
                                << "{ echo \"unit $GCP_UNIT is busy\" >&2; exit 1; };; esac\nexit 0\n";
  stdfs::permissions(dir / "10-log", stdfs::perms(0755));
  for (auto& u : f.job.units) u.callbacks.hooks = dir.string();
  f.store->save_job(f.job);
}

std::vector<std::string> lines_of(const stdfs::path& path) {
  std::vector<std::string> out;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);) out.push_back(line);
  std::sort(out.begin(), out.end());  // units run at once: their order is free
  return out;
}

}  // namespace

TEST_CASE("callbacks: pre-checkpoint and post-checkpoint reach every unit, with timings in the manifest") {
  JobFixture f;
  auto log = f.tmp.path() / "events.log";
  add_hooks(f, log);
  auto cp = jobs::checkpoint(*f.store, f.machine, "j", f.options);
  CHECK(lines_of(log) == std::vector<std::string>{"post-checkpoint 1 a", "post-checkpoint 1 b", "pre-checkpoint 1 a",
                                                  "pre-checkpoint 1 b"});
  for (const auto& u : cp.units) {
    CHECK(u.callbacks == "hooks");
    CHECK(u.timings["callbacks"]["pre-checkpoint"].get<double>() > 0);
    CHECK(u.timings["callbacks"]["post-checkpoint"].get<double>() > 0);
  }
  CHECK(cp.timings.contains("preCheckpointMs"));
  auto stored = f.store->load_checkpoint("j", 1);
  CHECK(stored.units[0].callbacks == "hooks");
}

TEST_CASE("callbacks: a failed pre-checkpoint aborts before anything is frozen and every unit gets abort") {
  JobFixture f;
  jobs::checkpoint(*f.store, f.machine, "j", f.options);
  f.cgroups.calls.clear();
  auto log = f.tmp.path() / "events.log";
  add_hooks(f, log, "b");
  auto e = error_from([&] { jobs::checkpoint(*f.store, f.machine, "j", f.options); });
  REQUIRE(e.has_value());
  CHECK(e->code() == Exit::kFailed);
  CHECK_CONTAINS(e->what(), "checkpoint of job 'j' aborted: unit 'b': hook '");
  CHECK_CONTAINS(e->what(), "failed (exit status 1): unit b is busy");
  CHECK_CONTAINS(e->hint(), "told to resume (abort)");
  CHECK_FALSE(f.called("freeze gcp/j/a"));
  CHECK_FALSE(f.called("freeze gcp/j/b"));
  CHECK(lines_of(log) ==
        std::vector<std::string>{"abort 2 a", "abort 2 b", "pre-checkpoint 2 a", "pre-checkpoint 2 b"});
  CHECK(f.store->checkpoints("j") == std::vector<uint64_t>{1});
  CHECK(f.staging_dirs().empty());
  CHECK(f.events().back()["event"] == "checkpoint-failed");
}

TEST_CASE("callbacks: a failed dump thaws, then sends abort instead of post-checkpoint") {
  JobFixture f;
  auto log = f.tmp.path() / "events.log";
  add_hooks(f, log);
  ScopedEnv fail{"FAKE_TRANSLIB_FAIL", "checkpoint"};
  CHECK(error_from([&] { jobs::checkpoint(*f.store, f.machine, "j", f.options); }));
  CHECK(f.cgroups.group("gcp/j/a").state == FreezeState::kThawed);
  CHECK(lines_of(log) ==
        std::vector<std::string>{"abort 1 a", "abort 1 b", "pre-checkpoint 1 a", "pre-checkpoint 1 b"});
}

TEST_CASE("callbacks: with --stop there is no post-checkpoint: the job is killed") {
  JobFixture f;
  auto log = f.tmp.path() / "events.log";
  add_hooks(f, log);
  auto options = f.options;
  options.stop = true;
  // The fake cgroups cannot kill the sleeper, so stopping itself fails after the commit.
  error_from([&] { jobs::checkpoint(*f.store, f.machine, "j", options); });
  REQUIRE(f.store->checkpoints("j") == std::vector<uint64_t>{1});
  CHECK(lines_of(log) == std::vector<std::string>{"pre-checkpoint 1 a", "pre-checkpoint 1 b"});
  CHECK_FALSE(f.store->load_checkpoint("j", 1).units[0].timings["callbacks"].contains("post-checkpoint"));
}

TEST_CASE("callbacks: a job from before callbacks has none and no callback timings") {
  JobFixture f;
  auto cp = jobs::checkpoint(*f.store, f.machine, "j", f.options);
  CHECK(cp.units[0].callbacks.empty());
  CHECK_FALSE(cp.units[0].timings.contains("callbacks"));
  CHECK_FALSE(cp.timings.contains("preCheckpointMs"));
}

TEST_CASE("callbacks: post-restart reaches every restored unit; a failed one is a warning, the units run") {
  JobFixture f;
  auto log = f.tmp.path() / "events.log";
  add_hooks(f, log, "a", "post-restart");
  jobs::checkpoint(*f.store, f.machine, "j", f.options);
  f.cgroups.clear_pids("gcp/j/a");
  f.cgroups.clear_pids("gcp/j/b");
  jobs::kill(*f.store, f.cgroups, "j", std::nullopt);
  stdfs::remove(log);
  gcp::testing::CapturedLog captured;
  auto job = jobs::restart(*f.store, f.machine, "j", {});
  CHECK(lines_of(log) == std::vector<std::string>{"post-restart 1 a", "post-restart 1 b"});
  for (const auto& u : job.units) CHECK(u.state == manifest::UnitState::kRunning);
  CHECK_CONTAINS(
      captured.text(),
      "warning: restarting checkpoint 1 of job 'j': the job runs, but post-restart failed: unit 'a': hook '");
  auto event = f.events().back();
  CHECK(event["event"] == "restart");
  CHECK(event["callbacks"]["b"]["via"] == "hooks");
  CHECK_CONTAINS(event["callbacks"]["a"]["error"].get<std::string>(), "unit a is busy");
}

TEST_CASE("callbacks: the job's policy.callbackTimeoutMs is the deadline unless the option overrides it") {
  JobFixture f({"a"});
  auto dir = f.tmp.path() / "slow";
  stdfs::create_directories(dir);
  std::ofstream(dir / "10-slow") << "#!/bin/sh\n[ \"$GCP_EVENT\" = pre-checkpoint ] && sleep 1\nexit 0\n";
  stdfs::permissions(dir / "10-slow", stdfs::perms(0755));
  f.job.units[0].callbacks.hooks = dir.string();
  f.job.callback_timeout_ms = 200;
  f.store->save_job(f.job);
  auto e = error_from([&] { jobs::checkpoint(*f.store, f.machine, "j", f.options); });
  REQUIRE(e.has_value());
  CHECK_CONTAINS(e->what(), "no answer to pre-checkpoint within its deadline of 200 ms");
  auto options = f.options;
  options.callback_timeout = std::chrono::milliseconds(5000);
  CHECK(jobs::checkpoint(*f.store, f.machine, "j", options).seq == 2);
}
