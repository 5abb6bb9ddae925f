// SPDX-License-Identifier: MIT
// gcp-user (tools/gcp-user/user.c, built into ../libexec/gcp), installed setuid root in a
// prefix of its own with a stand-in tool that shows what it was run with; and gcp-init
// (tools/gcp-init/init.c) becoming a unit's user.
#include "gcp/process.h"

#include "testing.h"

#include <doctest/doctest.h>

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <vector>

using gcp::testing::TempDir;
namespace stdfs = std::filesystem;
using namespace std::chrono_literals;

namespace {

const char* kHelper = "../libexec/gcp/gcp-user";
const char* kInit = "../libexec/gcp/gcp-init";

// A prefix as 'make install' makes it: bin/gcp-store (a script that prints its uid,
// groups, arguments, working directory and environment) and libexec/gcp/gcp-user, root's,
// with `mode`.
struct Installed {
  explicit Installed(mode_t mode = 04755) {
    REQUIRE(::access(kHelper, X_OK) == 0);
    REQUIRE(::chmod(tmp.path().c_str(), 0755) == 0);  // others must reach it
    stdfs::create_directories(tmp.path() / "libexec/gcp");
    stdfs::create_directories(tmp.path() / "bin");
    helper = tmp.path() / "libexec/gcp/gcp-user";
    stdfs::copy_file(kHelper, helper);
    REQUIRE(::chown(helper.c_str(), 0, 0) == 0);
    REQUIRE(::chmod(helper.c_str(), mode) == 0);
    tool = tmp.path() / "bin/gcp-store";
    std::ofstream(tool) << "#!/bin/sh\necho \"ids=$(id -u) $(id -g) $(id -G)\"\necho \"cwd=$(pwd)\"\n"
                           "echo \"args=$*\"\n/usr/bin/env\n";
    REQUIRE(::chmod(tool.c_str(), 0755) == 0);
  }

  // Runs gcp-user as uid 65534 with `args` and `env` on top of this process's environment.
  gcp::process::Result run_as_nobody(const std::vector<std::string>& args, const std::vector<std::string>& env = {}) {
    gcp::process::Spec spec;
    spec.argv = {helper.string()};
    spec.argv.insert(spec.argv.end(), args.begin(), args.end());
    spec.env = env;
    spec.run_as = {65534, 65534};
    spec.timeout = 20s;
    return gcp::process::run(spec);
  }

  TempDir tmp;
  stdfs::path helper, tool;
};

std::set<std::string> lines_of(const std::string& text) {
  std::set<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) out.insert(line);
  return out;
}

// One error line in the tools' format, and at most a hint after it.
void check_one_error(const gcp::process::Result& r, const std::string& part) {
  CHECK_CONTAINS(r.err, "gcp-user: error: " + part);
  CHECK(std::count(r.err.begin(), r.err.end(), '\n') <= 2);
  CHECK(r.out.empty());
}

#define ROOT_ONLY gcp::testing::skip_unless(gcp::testing::is_root(), "needs root: installs gcp-user setuid root")

}  // namespace

TEST_CASE("gcp-user runs the tool as root for its user, with nothing of the user's environment" * ROOT_ONLY) {
  Installed in;
  auto r =
      in.run_as_nobody({"gcp-store", "ls", "--store", "/x y"},
                       {"GCP_CRIU=/tmp/evil-criu", "GCP_TRANSLIB_PATH=/tmp/evil", "GCP_CONFIG=/tmp/evil.json",
                        "GCP_STORE=/tmp/evil-store", "LD_LIBRARY_PATH=/tmp/evil", "HOME=/tmp", "PATH=/tmp/evil:/bin"});
  REQUIRE_MESSAGE(r.ok(), r.describe() << ": " << r.err);
  auto lines = lines_of(r.out);
  CHECK(lines.count("ids=0 0 0"));  // root, no group of the user's
  CHECK(lines.count("args=ls --store /x y"));
  CHECK(lines.count("cwd=" + stdfs::current_path().string()));
  CHECK(lines.count("GCP_CALLER_UID=65534"));
  CHECK(lines.count("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"));
  for (const auto& line : lines) {
    // sh adds its own PWD, SHLVL and _; nothing else but PATH and the caller is there.
    bool ours = line.rfind("PWD=", 0) == 0 || line.rfind("SHLVL=", 0) == 0 || line.rfind("_=", 0) == 0 ||
                line.rfind("PATH=", 0) == 0 || line.rfind("GCP_CALLER_UID=", 0) == 0 ||
                line.find('=') == std::string::npos || line.rfind("ids=", 0) == 0 || line.rfind("cwd=", 0) == 0 ||
                line.rfind("args=", 0) == 0;
    CHECK_MESSAGE(ours, "the tool got '" << line << "' from the user's environment");
  }
}

TEST_CASE("gcp-user runs nothing but gcp's tools" * ROOT_ONLY) {
  Installed in;
  auto r = in.run_as_nobody({"sh", "-c", "id"});
  CHECK(r.exit_code == 2);
  check_one_error(r, "'sh' is not one of gcp's tools");
  r = in.run_as_nobody({"../bin/gcp-store"});
  CHECK(r.exit_code == 2);
  r = in.run_as_nobody({});
  CHECK(r.exit_code == 2);
  check_one_error(r, "no tool given");
}

TEST_CASE("gcp-user refuses to run a tool that others than root may change" * ROOT_ONLY) {
  Installed in;
  REQUIRE(::chmod((in.tmp.path() / "bin").c_str(), 0777) == 0);
  auto r = in.run_as_nobody({"gcp-store", "ls"});
  CHECK(r.exit_code == 1);
  check_one_error(r, "refusing to run '" + in.tool.string() + "' as root: '" + (in.tmp.path() / "bin").string() +
                         "' may be written by others than root");
  REQUIRE(::chmod((in.tmp.path() / "bin").c_str(), 0755) == 0);
  REQUIRE(::chown(in.tool.c_str(), 65534, 65534) == 0);
  r = in.run_as_nobody({"gcp-store", "ls"});
  CHECK(r.exit_code == 1);
  check_one_error(r, "refusing to run '" + in.tool.string() + "' as root: '" + in.tool.string() + "' is not root's");
}

TEST_CASE("gcp-user refuses a working directory its user may not enter" * ROOT_ONLY) {
  Installed in;
  auto closed = in.tmp.path() / "closed";
  stdfs::create_directory(closed);
  REQUIRE(::chown(closed.c_str(), 65534, 65534) == 0);
  // The user goes there, then closes it to itself (as it may: it is the user's).
  gcp::process::Spec spec;
  spec.argv = {"/bin/sh",         "-c", "cd \"$1\" && chmod 0 . && exec \"$2\" gcp-store ls", "sh", closed.string(),
               in.helper.string()};
  spec.run_as = {65534, 65534};
  spec.timeout = 20s;
  auto r = gcp::process::run(spec);
  CHECK(r.exit_code == 3);
  check_one_error(r, "uid 65534 may not enter its working directory '" + closed.string() + "'");
}

TEST_CASE("gcp-user is for users: root runs the tools itself" * ROOT_ONLY) {
  Installed in;
  gcp::process::Spec spec;
  spec.argv = {in.helper.string(), "gcp-store", "ls"};
  spec.timeout = 20s;
  auto r = gcp::process::run(spec);
  CHECK(r.exit_code == 2);
  check_one_error(r, "root runs gcp's tools directly, not through gcp-user");
}

TEST_CASE("gcp-user that is not installed setuid root says so and runs nothing" * ROOT_ONLY) {
  Installed in(0755);
  auto r = in.run_as_nobody({"gcp-store", "ls"});
  CHECK(r.exit_code == 1);
  check_one_error(r, "gcp-user runs as uid 65534, not as root: it is not installed setuid root");
  CHECK_CONTAINS(r.err, "chmod 4750");
}

TEST_CASE("gcp-init becomes the unit's user, its group and groups, before it runs the command" *
          gcp::testing::skip_unless(gcp::testing::is_root(), "needs root: gcp-init changes to another user")) {
  REQUIRE(::access(kInit, X_OK) == 0);
  gcp::process::Spec spec;
  spec.argv = {kInit,
               "--uid=65534",
               "--gid=65534",
               "--groups=65534,100",
               "--",
               "/bin/sh",
               "-c",
               "echo $(id -u) $(id -g); id -G | tr ' ' '\\n' | sort -n | tr '\\n' ' '; grep -E '^(Uid|Gid|CapPrm):' "
               "/proc/self/status"};
  spec.timeout = 20s;
  auto r = gcp::process::run(spec);
  REQUIRE_MESSAGE(r.ok(), r.describe() << ": " << r.err);
  CHECK_CONTAINS(r.out, "65534 65534\n100 65534 ");
  CHECK_CONTAINS(r.out, "Uid:\t65534\t65534\t65534\t65534");
  CHECK_CONTAINS(r.out, "Gid:\t65534\t65534\t65534\t65534");
  CHECK_CONTAINS(r.out, "CapPrm:\t0000000000000000");
  // Half an identity is a usage error, not a unit that runs as root.
  spec.argv = {kInit, "--uid=65534", "--", "/bin/true"};
  r = gcp::process::run(spec);
  CHECK(r.exit_code == 2);
  spec.argv = {kInit, "--uid=-1", "--gid=0", "--", "/bin/true"};
  r = gcp::process::run(spec);
  CHECK(r.exit_code == 2);
}
