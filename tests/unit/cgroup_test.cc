// SPDX-License-Identifier: MIT
#include "gcp/cgroup.h"

#include "fake_cgroups.h"
#include "testing.h"

#include <doctest/doctest.h>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

using gcp::Exit;
using gcp::cgroup::FreezeState;
using gcp::testing::error_from;
using gcp::testing::FakeCgroups;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

TEST_CASE("unit_path puts a unit under its job below gcp/") {
  CHECK(gcp::cgroup::job_path("j") == "gcp/j");
  CHECK(gcp::cgroup::unit_path("j", "u") == "gcp/j/u");
  CHECK(error_from([] { gcp::cgroup::unit_path("j", "../u"); }).has_value());
  CHECK(error_from([] { gcp::cgroup::unit_path("../j", "u"); }).has_value());
}

TEST_CASE("freeze waits through FREEZING until the cgroup is FROZEN") {
  FakeCgroups cgroups;
  cgroups.add_pid("gcp/j/u", 4242);
  cgroups.freeze_after("gcp/j/u", 3);
  gcp::cgroup::freeze(cgroups, "gcp/j/u", 5s);
  auto g = cgroups.group("gcp/j/u");
  CHECK(g.state == FreezeState::kFrozen);
  CHECK(g.polls == 4);

  gcp::cgroup::thaw_quietly(cgroups, "gcp/j/u");
  CHECK(cgroups.group("gcp/j/u").state == FreezeState::kThawed);
}

TEST_CASE("freeze of a cgroup stuck in FREEZING gives up after the timeout and thaws it") {
  FakeCgroups cgroups;
  cgroups.add_pid("gcp/j/u", 4242);
  cgroups.never_freeze("gcp/j/u");
  auto start = Clock::now();
  auto e = error_from([&] { gcp::cgroup::freeze(cgroups, "gcp/j/u", 50ms); });
  auto took = Clock::now() - start;
  REQUIRE(e.has_value());
  CHECK(e->code() == Exit::kFailed);
  CHECK_CONTAINS(e->what(), "freezing cgroup 'gcp/j/u'");
  CHECK_CONTAINS(e->what(), "50 ms");
  CHECK_FALSE(e->hint().empty());
  CHECK(took >= 50ms);
  CHECK(took < 2s);
  CHECK(cgroups.group("gcp/j/u").state == FreezeState::kThawed);
}

TEST_CASE("thaw_quietly does not throw when thawing fails") {
  gcp::testing::CapturedLog log;
  FakeCgroups cgroups;
  gcp::cgroup::thaw_quietly(cgroups, "gcp/j/missing");
  CHECK_FALSE(cgroups.exists("gcp/j/missing"));
  CHECK_CONTAINS(log.text(), "warning: thawing cgroup 'gcp/j/missing'");
}

TEST_CASE("kill_all on an empty cgroup returns at once") {
  FakeCgroups cgroups;
  cgroups.create("gcp/j/u");
  auto start = Clock::now();
  gcp::cgroup::kill_all(cgroups, "gcp/j/u", 10s);
  CHECK(Clock::now() - start < 1s);
  gcp::cgroup::kill_all(cgroups, "gcp/j/never-created", 10s);
  CHECK(Clock::now() - start < 1s);
}

TEST_CASE("the fake cgroups record what was created, attached, frozen and removed") {
  FakeCgroups cgroups;
  cgroups.create("gcp/j/u");
  cgroups.attach("gcp/j/u", 4242);
  CHECK(cgroups.procs("gcp/j/u") == std::vector<pid_t>{4242});
  cgroups.set_frozen("gcp/j/u", true);
  cgroups.set_frozen("gcp/j/u", false);
  CHECK(cgroups.freezer_dir("gcp/j/u") == "/fake/freezer/gcp/j/u");
  cgroups.remove("gcp/j/u");
  CHECK_FALSE(cgroups.exists("gcp/j/u"));
  CHECK(cgroups.procs("gcp/j/u").empty());
  CHECK(cgroups.calls == std::vector<std::string>{"create gcp/j/u", "attach gcp/j/u 4242", "freeze gcp/j/u",
                                                  "thaw gcp/j/u", "remove gcp/j/u"});
}

namespace {

// A stand-in for a freezer directory: freezer.state holds FROZEN until someone writes.
std::string frozen_dir(const std::filesystem::path& root, const std::string& name) {
  auto dir = root / name;
  std::filesystem::create_directories(dir);
  std::ofstream(dir / "freezer.state") << "FROZEN\n";
  return dir.string();
}

std::string state_of(const std::string& dir) {
  std::ifstream in(dir + "/freezer.state");
  std::string s;
  in >> s;
  return s;
}

// Polls (up to 10 s) until the state is THAWED.
bool thawed_soon(const std::string& dir) {
  for (int i = 0; i < 1000; ++i) {
    if (state_of(dir) == "THAWED") return true;
    std::this_thread::sleep_for(10ms);
  }
  return false;
}

}  // namespace

TEST_CASE("the thaw watchdog thaws when its creator dies, even by SIGKILL, and not when released") {
  gcp::testing::TempDir tmp;
  auto a = frozen_dir(tmp.path(), "a"), b = frozen_dir(tmp.path(), "b");
  pid_t creator = ::fork();
  REQUIRE(creator >= 0);
  if (creator == 0) {
    gcp::cgroup::ThawWatchdog w({a, b}, 600s);
    ::kill(::getpid(), SIGKILL);
    ::_exit(1);
  }
  ::waitpid(creator, nullptr, 0);
  CHECK(thawed_soon(a));
  CHECK(thawed_soon(b));

  auto c = frozen_dir(tmp.path(), "c");
  {
    gcp::cgroup::ThawWatchdog w({c}, 600s);
    w.release();
  }
  CHECK(state_of(c) == "FROZEN");

  // Destroyed without release (an aborted round): it thaws too.
  auto d = frozen_dir(tmp.path(), "d");
  { gcp::cgroup::ThawWatchdog w({d}, 600s); }
  CHECK(state_of(d) == "THAWED");
}

TEST_CASE("the thaw watchdog thaws at its deadline while its creator hangs") {
  gcp::testing::TempDir tmp;
  auto a = frozen_dir(tmp.path(), "a");
  gcp::cgroup::ThawWatchdog w({a, (tmp.path() / "gone").string()}, 1s);
  CHECK(state_of(a) == "FROZEN");
  CHECK(thawed_soon(a));
  // Its session is its own: a signal to this process's group does not reach it.
  CHECK(::getsid(w.pid()) == w.pid());
}
