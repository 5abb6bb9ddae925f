// SPDX-License-Identifier: MIT
// The criu translib as gcp loads it (../lib/gcp/translibs/criu.so): what it says it can
// do, and the requests it refuses before it runs anything; and its own spawner
// (translibs/criu/run.h), which stands in for gcp's.
#include "../../translibs/criu/run.h"

#include "gcp/translib_loader.h"
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

using gcp::testing::error_from;
using gcp::testing::TempDir;
using gcp::translib::json;
using gcp::translib::Translib;
using namespace std::chrono_literals;
namespace run = gcp::criu;

namespace {

Translib criu_translib() {
  auto file = std::filesystem::path("../lib/gcp/translibs/criu.so");
  REQUIRE(std::filesystem::exists(file));
  return Translib::load_file(file);
}

}  // namespace

TEST_CASE("the criu translib says what it can do in its descriptor's bits") {
  auto lib = criu_translib();
  CHECK(lib.type() == "checkpointer/criu");
  uint64_t caps = lib.capabilities();
  for (uint64_t bit :
       {GCP_CAP_PROCESS_TREE, GCP_CAP_PID_NAMESPACE, GCP_CAP_TCP, GCP_CAP_LEAVE_RUNNING, GCP_CAP_IMAGE_SOURCE}) {
    CAPTURE(bit);
    CHECK((caps & bit) != 0);
  }
  // criu-gate is built next to it (../libexec/gcp): its dumps take a gate.
  REQUIRE(::access("../libexec/gcp/criu-gate", X_OK) == 0);
  CHECK((caps & GCP_CAP_DUMP_GATE) != 0);
  CHECK((caps & GCP_CAP_INCREMENTAL) == 0);
}

TEST_CASE("the criu translib refuses a need it cannot meet and a malformed one, before criu runs") {
  auto lib = criu_translib();
  TempDir tmp;
  json request = {{"pid", 1}, {"imagesDir", (tmp.path() / "images").string()}, {"grouping", "tree"}};
  request["needs"] = {"tcp-established", "fork-bomb"};
  auto e = error_from([&] { lib.checkpoint(request); });
  REQUIRE(e.has_value());
  CHECK_CONTAINS(e->what(),
                 "translib 'criu' checkpoint: not supported: the unit needs 'fork-bomb', which this "
                 "translib cannot meet (it meets file-locks, leader-outside, tcp-established, "
                 "unix-datagram-outside)");
  request["needs"] = "tcp-established";
  e = error_from([&] { lib.checkpoint(request); });
  REQUIRE(e.has_value());
  CHECK_CONTAINS(e->what(), "bad request: needs is not an array");
  // A host of ABI 1.0 said CRIU's own options; only those a need maps to.
  request.erase("needs");
  request["options"] = {"--action-script", "/tmp/x"};
  e = error_from([&] { lib.checkpoint(request); });
  REQUIRE(e.has_value());
  CHECK_CONTAINS(e->what(),
                 "bad request: option '--action-script' (this translib dumps with --file-locks, "
                 "--shell-job, --tcp-established, --ext-unix-sk only)");
  CHECK_FALSE(std::filesystem::exists(tmp.path() / "images"));
}

TEST_CASE("the criu translib restores only with options it dumps with: a manifest cannot smuggle in others") {
  auto lib = criu_translib();
  TempDir tmp;
  json request = {{"imagesDir", (tmp.path() / "images").string()},
                  {"workDir", (tmp.path() / "work").string()},
                  {"grouping", "pidns"},
                  {"options", {"--tcp-established", "--action-script=/tmp/x"}}};
  auto e = error_from([&] { lib.restart(request); });
  REQUIRE(e.has_value());
  CHECK_CONTAINS(e->what(), "bad request: option '--action-script=/tmp/x' (this translib restores with");
  CHECK_CONTAINS(e->hint(), "checkpointerOptions");
  request["options"] = {"--tcp-established"};
  request["imageSource"] = "relative/image-source.sock";
  e = error_from([&] { lib.restart(request); });
  REQUIRE(e.has_value());
  CHECK_CONTAINS(e->what(), "bad request: imageSource 'relative/image-source.sock' is not an absolute path");
  CHECK_FALSE(std::filesystem::exists(tmp.path() / "work"));
}

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

TEST_CASE("the criu translib checks a node only against a cpuinfo image it was given") {
  auto lib = criu_translib();
  REQUIRE(lib.can_check());
  TempDir tmp;
  // Nothing recorded: no check, and criu does not run.
  CHECK(lib.check({{"imagesDir", tmp.path().string()}}) == json{{"checks", json::array()}});
  auto e = error_from([&] { lib.check(json::object()); });
  REQUIRE(e.has_value());
  CHECK_CONTAINS(e->what(), "translib 'criu' check: bad request");
}
