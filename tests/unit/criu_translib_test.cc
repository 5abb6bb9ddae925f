// SPDX-License-Identifier: MIT
// The criu translib's own spawner and file helpers (translibs/criu/run.h), which stand
// in for gcp's: a translib links nothing of gcp.
#include "../../translibs/criu/run.h"

#include "testing.h"

#include <doctest/doctest.h>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <thread>

using gcp::testing::TempDir;
using namespace std::chrono_literals;
namespace run = gcp::criu;

TEST_CASE("the translib's spawner captures what a program says and how it ended") {
  auto r = run::run({{"sh", "-c", "cat; echo \"$EXTRA\" >&2; exit 3"}, {"EXTRA=extra"}, "in", 10s});
  CHECK(r.exit_code == 3);
  CHECK(r.out == "in");
  CHECK(r.err == "extra\n");
  CHECK(r.describe() == "exit status 3");
  r = run::run({{"sh", "-c", "kill -TERM $$"}, {}, std::nullopt, 10s});
  CHECK(r.signal == SIGTERM);
  CHECK(r.describe() == "killed by signal 15 (Terminated)");
  try {
    run::run({{"/nonexistent/criu"}, {}, std::nullopt, 10s});
    FAIL("a program that does not exist ran");
  } catch (const std::runtime_error& e) {
    CHECK_CONTAINS(e.what(), "running '/nonexistent/criu': No such file or directory");
  }
}

TEST_CASE("the translib's spawner kills the whole process group of a program that runs too long") {
  auto t0 = std::chrono::steady_clock::now();
  auto r = run::run({{"sh", "-c", "sleep 60 & echo $!; wait"}, {}, std::nullopt, 300ms});
  CHECK(r.timed_out);
  CHECK(r.describe() == "timed out and was killed");
  CHECK(std::chrono::steady_clock::now() - t0 < 5s);
  pid_t left = std::stoi(r.out);
  auto deadline = std::chrono::steady_clock::now() + 5s;
  while (::kill(left, 0) == 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(10ms);
  }
  CHECK(::kill(left, 0) != 0);
}

TEST_CASE("the translib's file helpers: PATH, whole files, atomic writes, a process tree") {
  CHECK(run::find_in_path("sh").has_value());
  CHECK_FALSE(run::find_in_path("no-such-program-of-gcp").has_value());
  CHECK_FALSE(run::find_in_path("/nonexistent/criu").has_value());
  TempDir tmp;
  auto file = tmp.path() / "a" / "b" / "checked.json";
  run::make_dirs(file.parent_path(), 0755);
  run::write_file_atomic(file, "[]\n", 0644);
  CHECK(run::read_file(file) == "[]\n");
  CHECK_FALSE(run::read_file(tmp.path() / "missing").has_value());
  CHECK(run::read_file("/proc/self/status").value_or("").find("Pid:") != std::string::npos);
  CHECK_THROWS_AS(run::read_file(tmp.path()), std::runtime_error);  // a directory
  pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    for (;;) ::pause();
  }
  auto tree = run::process_tree(::getpid());
  ::kill(child, SIGKILL);
  ::waitpid(child, nullptr, 0);
  CHECK(tree.front() == ::getpid());
  CHECK(std::find(tree.begin(), tree.end(), child) != tree.end());
}
