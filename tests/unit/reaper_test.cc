// SPDX-License-Identifier: MIT
// criu-reaper (translibs/criu/reaper.c, built into ../libexec/gcp): it ends as its program
// ends, and nothing its program started outlives it.
#include "gcp/fs.h"
#include "gcp/process.h"

#include "testing.h"

#include <doctest/doctest.h>

#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

using gcp::testing::TempDir;
using namespace std::chrono_literals;

namespace {

const char* kReaper = "../libexec/gcp/criu-reaper";

gcp::process::Result reaped(std::vector<std::string> args) {
  REQUIRE(::access(kReaper, X_OK) == 0);
  gcp::process::Spec spec;
  spec.argv = {kReaper};
  spec.argv.insert(spec.argv.end(), args.begin(), args.end());
  spec.timeout = 20s;
  return gcp::process::run(spec);
}

std::vector<pid_t> pids_in(const std::string& text) {
  std::vector<pid_t> pids;
  std::istringstream in(text);
  for (long p; in >> p;) pids.push_back(static_cast<pid_t>(p));
  return pids;
}

// Gone, not even a zombie: the reaper reaps what it kills.
bool gone(pid_t pid) { return ::kill(pid, 0) != 0 && errno == ESRCH; }

// Prints the pids of a sleeping child and of a child that stopped itself in a session of
// its own (which no SIGHUP to an orphaned process group reaches), then ends with `end`.
std::string leaves_two_children(const std::string& end) {
  return "sleep 60 </dev/null >/dev/null 2>&1 & echo $!; "
         "setsid sh -c 'kill -STOP $$' </dev/null >/dev/null 2>&1 & echo $!; "
         "sleep 0.2; " +
         end;
}

}  // namespace

TEST_CASE("criu-reaper ends as its program ends") {
  auto r = reaped({"sh", "-c", "echo out; echo err >&2; exit 3"});
  CHECK(r.exit_code == 3);
  CHECK(r.signal == 0);
  CHECK(r.out == "out\n");
  CHECK(r.err == "err\n");
  r = reaped({"sh", "-c", "kill -TERM $$"});
  CHECK(r.signal == SIGTERM);
  r = reaped({"true"});
  CHECK(r.ok());
}

TEST_CASE("criu-reaper kills and reaps what its program left, stopped or not") {
  for (const char* end : {"exit 0", "exit 1", "kill -KILL $$"}) {
    CAPTURE(end);
    auto r = reaped({"sh", "-c", leaves_two_children(end)});
    CHECK_FALSE(r.timed_out);
    auto pids = pids_in(r.out);
    REQUIRE(pids.size() == 2);
    for (pid_t p : pids) CHECK(gone(p));
  }
}

TEST_CASE("criu-reaper --keep-on-success leaves what a successful program left") {
  auto r = reaped({"--keep-on-success", "sh", "-c", "sleep 60 </dev/null >/dev/null 2>&1 & echo $!"});
  CHECK(r.ok());
  auto pids = pids_in(r.out);
  REQUIRE(pids.size() == 1);
  CHECK_FALSE(gone(pids[0]));
  ::kill(pids[0], SIGKILL);

  r = reaped({"--keep-on-success", "sh", "-c", leaves_two_children("exit 1")});
  CHECK(r.exit_code == 1);
  pids = pids_in(r.out);
  REQUIRE(pids.size() == 2);
  for (pid_t p : pids) CHECK(gone(p));
}

TEST_CASE("criu-reaper kills its program and what it left when the tool above it dies") {
  TempDir dir;
  auto pids_file = dir.path() / "pids";
  // The program leaves its two children and sleeps; the "tool", a shell, starts the
  // reaper, waits until the program has written its three pids, and dies of SIGKILL.
  auto script = dir.path() / "program";
  std::ofstream(script) << "sleep 60 </dev/null >/dev/null 2>&1 & echo $! >>" << pids_file << "\n"
                        << "setsid sh -c 'kill -STOP $$' </dev/null >/dev/null 2>&1 & echo $! >>" << pids_file << "\n"
                        << "echo $$ >>" << pids_file << "\nexec sleep 60\n";
  std::string tool = std::string(kReaper) + " sh " + script.string() + " </dev/null >/dev/null 2>&1 & " +
                     "until [ \"$(wc -l <" + pids_file.string() + " 2>/dev/null)\" = 3 ]; do sleep 0.01; done; " +
                     "kill -KILL $$";
  gcp::process::Spec spec;
  spec.argv = {"sh", "-c", tool};
  spec.timeout = 20s;
  auto r = gcp::process::run(spec);
  CHECK(r.signal == SIGKILL);
  auto pids = pids_in(gcp::fs::read_file(pids_file));
  REQUIRE(pids.size() == 3);  // the sleeping child, the stopped one, the program
  auto deadline = std::chrono::steady_clock::now() + 5s;
  for (pid_t p : pids) {
    while (!gone(p) && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(10ms);
    CHECK(gone(p));
  }
}

TEST_CASE("criu-reaper without a program, or with one it cannot run") {
  auto r = reaped({});
  CHECK(r.exit_code == 2);
  CHECK(r.err.find("usage: criu-reaper") != std::string::npos);
  r = reaped({"/nonexistent/criu"});
  CHECK(r.exit_code == 127);
  CHECK(r.err.find("criu-reaper: cannot run /nonexistent/criu") != std::string::npos);
}

TEST_CASE("criu-reaper puts its program, not itself, into the cgroups it is given") {
  TempDir dir;
  // A cgroup.procs file takes a pid written into it; a plain file shows which pid that was.
  auto one = dir.path() / "one.procs", two = dir.path() / "two.procs";
  std::ofstream(one).flush();
  std::ofstream(two).flush();
  auto r = reaped({"--join-cgroup", one.string(), "--join-cgroup", two.string(), "sh", "-c", "echo $$"});
  REQUIRE(r.ok());
  CHECK(gcp::fs::read_file(one) == std::to_string(pids_in(r.out).at(0)));
  CHECK(gcp::fs::read_file(two) == std::to_string(pids_in(r.out).at(0)));

  r = reaped({"--join-cgroup", (dir.path() / "missing.procs").string(), "true"});
  CHECK(r.exit_code == 126);
  CHECK(r.err.find("criu-reaper: error: opening cgroup '" + (dir.path() / "missing.procs").string() + "'") !=
        std::string::npos);
  r = reaped({"--join-cgroup"});
  CHECK(r.exit_code == 2);
  CHECK(r.err.find("usage: criu-reaper") != std::string::npos);
}

TEST_CASE("criu-reaper runs its program in the network namespace it is given") {
  auto r = reaped({"--netns", "/nonexistent/netns", "true"});
  CHECK(r.exit_code == 126);
  CHECK(r.err.find("criu-reaper: error: opening network namespace '/nonexistent/netns'") != std::string::npos);
  if (::geteuid() != 0) {
    MESSAGE("skipped: entering a network namespace needs root");
    return;
  }
  // A child in a network namespace of its own: the program must end up in that one.
  pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    if (::unshare(CLONE_NEWNET) != 0) ::_exit(1);
    for (;;) ::pause();
  }
  auto ns_of = [](pid_t pid) {
    std::error_code ec;
    return std::filesystem::read_symlink("/proc/" + std::to_string(pid) + "/ns/net", ec).string();
  };
  auto deadline = std::chrono::steady_clock::now() + 5s;
  while (ns_of(child) == ns_of(::getpid()) && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(5ms);
  }
  std::string theirs = ns_of(child);
  r = reaped({"--netns", "/proc/" + std::to_string(child) + "/ns/net", "readlink", "/proc/self/ns/net"});
  ::kill(child, SIGKILL);
  ::waitpid(child, nullptr, 0);
  REQUIRE(r.ok());
  CHECK(theirs != ns_of(::getpid()));
  CHECK(r.out == theirs + "\n");
}
