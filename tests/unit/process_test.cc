// SPDX-License-Identifier: MIT
#include "gcp/process.h"

#include "testing.h"

#include <doctest/doctest.h>

#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>

using gcp::process::Result;
using gcp::process::Spec;
using gcp::testing::error_from;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

TEST_CASE("run captures stdout and stderr separately and reports the exit status") {
  Spec spec;
  spec.argv = {"sh", "-c", "echo to-out; echo to-err >&2; exit 3"};
  Result r = gcp::process::run(spec);
  CHECK(r.out == "to-out\n");
  CHECK(r.err == "to-err\n");
  CHECK(r.exit_code == 3);
  CHECK(r.signal == 0);
  CHECK_FALSE(r.timed_out);
  CHECK_FALSE(r.ok());
  CHECK(r.describe() == "exit status 3");
}

TEST_CASE("run passes arguments without a shell") {
  Spec spec;
  spec.argv = {"printf", "%s|", "a b", "$HOME", "*"};
  Result r = gcp::process::run(spec);
  CHECK(r.ok());
  CHECK(r.out == "a b|$HOME|*|");
}

TEST_CASE("run feeds the input to stdin and closes it") {
  Spec spec;
  spec.argv = {"cat"};
  spec.input = "line one\nline two\n";
  Result r = gcp::process::run(spec);
  CHECK(r.ok());
  CHECK(r.out == "line one\nline two\n");
}

TEST_CASE("run feeds an input larger than a pipe while reading the output") {
  Spec spec;
  spec.argv = {"cat"};
  spec.input = std::string(1 << 20, 'x');
  Result r = gcp::process::run(spec);
  CHECK(r.ok());
  CHECK(r.out.size() == spec.input->size());
}

TEST_CASE("run survives a program that exits without reading its input") {
  Spec spec;
  spec.argv = {"true"};
  spec.input = std::string(1 << 20, 'x');
  Result r = gcp::process::run(spec);
  CHECK(r.ok());
}

TEST_CASE("without input the program reads end of file") {
  Spec spec;
  spec.argv = {"cat"};
  spec.timeout = 5s;
  Result r = gcp::process::run(spec);
  CHECK(r.ok());
  CHECK_FALSE(r.timed_out);
  CHECK(r.out.empty());
}

TEST_CASE("run adds the extra environment entries") {
  Spec spec;
  spec.argv = {"sh", "-c", "echo \"$GCP_TEST_EXTRA\""};
  spec.env = {"GCP_TEST_EXTRA=hello there"};
  CHECK(gcp::process::run(spec).out == "hello there\n");
}

TEST_CASE("an extra environment entry replaces the inherited one of the same name") {
  gcp::testing::ScopedEnv outer{"GCP_TEST_EXTRA", "outer"};
  Spec spec;
  spec.argv = {"printenv", "GCP_TEST_EXTRA"};
  spec.env = {"GCP_TEST_EXTRA=inner"};
  CHECK(gcp::process::run(spec).out == "inner\n");
}

TEST_CASE("run reports the signal that ended the program") {
  Spec spec;
  spec.argv = {"sh", "-c", "kill -TERM $$"};
  Result r = gcp::process::run(spec);
  CHECK(r.signal == SIGTERM);
  CHECK(r.exit_code == -1);
  CHECK_FALSE(r.ok());
  CHECK_CONTAINS(r.describe(), "killed by signal 15");
}

TEST_CASE("run kills a program that runs past its timeout") {
  Spec spec;
  spec.argv = {"sleep", "30"};
  spec.timeout = 100ms;
  auto start = Clock::now();
  Result r = gcp::process::run(spec);
  auto took = Clock::now() - start;
  CHECK(r.timed_out);
  CHECK(r.signal == SIGKILL);
  CHECK_FALSE(r.ok());
  CHECK(took >= 100ms);
  CHECK(took < 5s);
  CHECK_CONTAINS(r.describe(), "timed out");
}

TEST_CASE("run throws for a program that does not exist") {
  Spec spec;
  spec.argv = {"gcp-no-such-program-here", "--flag"};
  auto e = error_from([&] { gcp::process::run(spec); });
  REQUIRE(e.has_value());
  CHECK(e->code() == gcp::Exit::kFailed);
  CHECK_CONTAINS(e->what(), "'gcp-no-such-program-here'");
}

TEST_CASE("run throws for an empty command") {
  CHECK(error_from([] { gcp::process::run(Spec{}); }).has_value());
}

TEST_CASE("find_in_path finds sh and not a program that does not exist") {
  auto sh = gcp::process::find_in_path("sh");
  REQUIRE(sh.has_value());
  CHECK(sh->ends_with("/sh"));
  CHECK(::access(sh->c_str(), X_OK) == 0);
  CHECK_FALSE(gcp::process::find_in_path("gcp-no-such-program-here").has_value());
  CHECK(gcp::process::find_in_path("/bin/sh") == "/bin/sh");
  CHECK_FALSE(gcp::process::find_in_path("/nonexistent/sh").has_value());
}

TEST_CASE("self_dir is the directory of the test binary") {
  auto dir = gcp::process::self_dir();
  CHECK(std::filesystem::exists(std::filesystem::path(dir) / "unit-tests"));
}

TEST_CASE("a child that cannot enter its network namespace does not run the program") {
  Spec spec;
  spec.argv = {"sh", "-c", "echo ran"};
  spec.netns = "/nonexistent/netns";
  Result r = gcp::process::run(spec);
  CHECK(r.exit_code == 126);
  CHECK(r.out.empty());
  CHECK_CONTAINS(r.err, "cannot enter network namespace /nonexistent/netns");
}

TEST_CASE("a child runs in the network namespace it is given" *
          gcp::testing::skip_unless(gcp::testing::is_root(), "needs root: setns() needs CAP_SYS_ADMIN")) {
  Spec spec;
  spec.argv = {"readlink", "/proc/self/ns/net"};
  // This process's own namespace: the child is forked into it anyway, so the check
  // is that setns() succeeds and changes nothing else.
  std::string own = "/proc/" + std::to_string(::getpid()) + "/ns/net";
  spec.netns = own;
  Result r = gcp::process::run(spec);
  REQUIRE_MESSAGE(r.ok(), r.err);
  CHECK(r.out == std::filesystem::read_symlink(own).string() + "\n");
}
