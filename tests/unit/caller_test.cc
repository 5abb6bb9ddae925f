// SPDX-License-Identifier: MIT
// Whom a tool acts for (gcp/caller.h): GCP_CALLER_UID from gcp-user, what user mode
// refuses, and the rights of a user's processes.
#include "gcp/caller.h"

#include "gcp/error.h"
#include "gcp/job_store.h"
#include "gcp/launcher.h"
#include "gcp/names.h"
#include "gcp/proc.h"
#include "gcp/store.h"
#include "gcp/translib_loader.h"
#include "testing.h"

#include <doctest/doctest.h>

#include <grp.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>

using gcp::Exit;
using gcp::testing::error_from;
using gcp::testing::ScopedEnv;
using gcp::testing::TempDir;
namespace caller = gcp::caller;
namespace stdfs = std::filesystem;

namespace {

// Acts for `c` while it lives, then for whom it acted before.
class AsCaller {
 public:
  explicit AsCaller(caller::Caller c) : old_(caller::current()) { caller::set_current(c); }
  ~AsCaller() { caller::set_current(old_); }
  AsCaller(const AsCaller&) = delete;
  AsCaller& operator=(const AsCaller&) = delete;

 private:
  caller::Caller old_;
};

gcp::manifest::Job job_of(const std::string& name, uid_t owner) {
  gcp::manifest::Job job;
  job.name = name;
  job.owner = owner;
  job.created = gcp::manifest::now_rfc3339();
  return job;
}

}  // namespace

TEST_CASE("GCP_CALLER_UID counts only for a tool that runs as root") {
  auto c = caller::from(0, "1001");
  CHECK(c.uid == 1001);
  CHECK(c.for_user);
  // A user who sets it acts for itself all the same.
  c = caller::from(1002, "1001");
  CHECK(c.uid == 1002);
  CHECK_FALSE(c.for_user);
  c = caller::from(0, nullptr);
  CHECK(c.uid == 0);
  CHECK_FALSE(c.for_user);
  // "0" is root itself: no user mode.
  CHECK_FALSE(caller::from(0, "0").for_user);
}

TEST_CASE("a GCP_CALLER_UID that is not a uid is refused with one line") {
  for (const char* bad : {"", "abc", "-1", "1001 ", "4294967295", "99999999999"}) {
    auto e = error_from([&] { caller::from(0, bad); });
    REQUIRE_MESSAGE(e.has_value(), "'" << bad << "' was taken for a uid");
    CHECK(e->code() == Exit::kUsage);
    CHECK_CONTAINS(e->what(), "GCP_CALLER_UID");
  }
}

TEST_CASE("the tool takes whom it acts for from its environment and removes the variable") {
  AsCaller keep({::geteuid(), false});
  ScopedEnv env(gcp::names::kEnvCallerUid, "4242");
  caller::adopt_environment();
  CHECK(std::getenv(gcp::names::kEnvCallerUid) == nullptr);
  CHECK(caller::for_user() == (::geteuid() == 0));
  CHECK(caller::uid() == (::geteuid() == 0 ? 4242u : ::geteuid()));
}

TEST_CASE("jobs::load gives a user its own jobs and refuses another user's without naming its owner") {
  TempDir tmp;
  auto s = gcp::store::open((tmp.path() / "store").string(), {}, gcp::store::IfMissing::kCreate);
  s->save_job(job_of("mine", 1001));
  s->save_job(job_of("theirs", 1002));
  AsCaller as({1001, true});
  CHECK(gcp::jobs::load(*s, "mine").owner == 1001);
  auto e = error_from([&] { gcp::jobs::load(*s, "theirs"); });
  REQUIRE(e.has_value());
  CHECK(e->code() == Exit::kNotPermitted);
  CHECK_CONTAINS(e->what(), "job 'theirs' belongs to another user, not to you (uid 1001)");
  CHECK_NOT_CONTAINS(e->what(), "1002");
}

TEST_CASE("a user through gcp-user opens root's default store and no directory of its choosing") {
  TempDir tmp;
  auto chosen = tmp.path() / "mine";
  AsCaller as({1001, true});
  CHECK_NOTHROW(caller::check_store(gcp::names::kDefaultRootStore));
  // Root's own spelling of it is what the store is opened at.
  CHECK(caller::check_store("/var/lib/../lib/gcp/") == gcp::names::kDefaultRootStore);
  auto e = error_from([&] { gcp::store::open(chosen.string(), {}, gcp::store::IfMissing::kCreate); });
  REQUIRE(e.has_value());
  CHECK(e->code() == Exit::kNotPermitted);
  CHECK_CONTAINS(e->what(), "store '" + chosen.string() + "' is not one that gcp-user opens for users");
  CHECK_CONTAINS(e->hint(), "GCP_NO_HELPER=1");
  CHECK_FALSE(stdfs::exists(chosen));  // nothing made, nothing looked at
  // The default store is root's, whatever GCP_STORE says.
  ScopedEnv env(gcp::names::kEnvStore, chosen.string());
  CHECK(gcp::store::default_root() == gcp::names::kDefaultRootStore);
}

TEST_CASE("in user mode the configuration, translibs and gcp-init are root's, whatever the environment says") {
  ScopedEnv config(gcp::names::kEnvConfig, "/tmp/users-config.json");
  ScopedEnv translibs(gcp::names::kEnvTranslibPath, "/tmp/users-translibs");
  ScopedEnv scratch(gcp::names::kEnvScratch, "/tmp/users-scratch");
  {
    AsCaller root({0, false});
    CHECK(gcp::launcher::config_path() == "/tmp/users-config.json");
    CHECK(gcp::translib::search_path().front() == "/tmp/users-translibs");
    CHECK(gcp::store::scratch_root() == "/tmp/users-scratch");
  }
  AsCaller as({1001, true});
  CHECK(gcp::launcher::config_path() == gcp::names::kDefaultConfig);
  CHECK(gcp::translib::search_path().size() == 1);
  CHECK(gcp::translib::search_path().front() != "/tmp/users-translibs");
  CHECK(gcp::store::scratch_root() == "/var/tmp/gcp");
}

TEST_CASE("what only root may do is refused in user mode, and only there") {
  {
    AsCaller root({0, false});
    CHECK_NOTHROW(caller::refuse_for_user("--address", "root starts it"));
    CHECK(caller::env_for_remote().empty());
  }
  AsCaller as({1001, true});
  auto e = error_from([] { caller::refuse_for_user("--address", "root starts it"); });
  REQUIRE(e.has_value());
  CHECK(e->code() == Exit::kNotPermitted);
  CHECK(std::string(e->what()) == "--address is not open to users through gcp-user (you are uid 1001)");
  CHECK(e->hint() == "root starts it");
  // A tool run on another node for the same user acts for that user there too.
  CHECK(caller::env_for_remote() == std::vector<std::string>{"GCP_CALLER_UID=1001"});
}

TEST_CASE("a process's credentials are read from its status file") {
  auto c = gcp::proc::parse_credentials(
      "Name:\tpasswd\nUmask:\t0022\nState:\tS (sleeping)\nUid:\t1001\t0\t0\t0\nGid:\t1001\t1001\t1001\t1001\n"
      "FDSize:\t64\nGroups:\t24 27 \nCapInh:\t0000000000000000\nCapPrm:\t000001ffffffffff\n");
  CHECK(c.name == "passwd");
  CHECK(c.uids == std::vector<uid_t>{1001, 0, 0, 0});
  CHECK(c.gids == std::vector<gid_t>{1001, 1001, 1001, 1001});
  CHECK(c.groups == std::vector<gid_t>{24, 27});
  CHECK(c.cap_prm == 0x1ffffffffffULL);
}

TEST_CASE("a process with a right its user does not have is named by that right") {
  caller::Account a;
  a.uid = 1001;
  a.gid = 1001;
  a.groups = {1001, 24};
  gcp::proc::Credentials c;
  c.uids = {1001, 1001, 1001, 1001};
  c.gids = {1001, 1001, 1001, 1001};
  c.groups = {1001, 24};
  CHECK_FALSE(caller::beyond(c, a).has_value());
  auto setuid = c;
  setuid.uids = {1001, 0, 0, 1001};
  CHECK(caller::beyond(setuid, a) == "runs as uid 0");
  auto setgid = c;
  setgid.gids = {1001, 42, 42, 42};
  CHECK(caller::beyond(setgid, a) == "runs with group 42");
  auto more = c;
  more.groups = {1001, 27};
  CHECK(caller::beyond(more, a) == "holds group 27");
  auto caps = c;
  caps.cap_prm = 1ULL << 13;  // cap_net_raw, as ping has
  CHECK(caller::beyond(caps, a) == "holds capabilities");
}

TEST_CASE("check_within refuses a process with rights beyond the account's, naming it") {
  // This process is another uid's than 4000000 whoever runs the tests.
  auto stranger = caller::account(4000000);
  CHECK(stranger.groups == std::vector<gid_t>{4000000});
  auto e = error_from([&] { caller::check_within({::getpid()}, stranger, "unit 'main' of job 'j'"); });
  REQUIRE(e.has_value());
  CHECK(e->code() == Exit::kNotPermitted);
  CHECK_CONTAINS(e->what(), "unit 'main' of job 'j': pid " + std::to_string(::getpid()));
  CHECK_CONTAINS(e->what(), "a right uid 4000000 does not have");
  // One that is gone is passed over.
  CHECK_NOTHROW(caller::check_within({999999999}, stranger, "unit 'main' of job 'j'"));
}

TEST_CASE("check_within lets a process of the account's own pass" *
          gcp::testing::skip_unless(gcp::testing::is_root(), "needs root: a process of uid 65534")) {
  pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    if (::setgroups(0, nullptr) != 0 || ::setresgid(65534, 65534, 65534) != 0 ||
        ::setresuid(65534, 65534, 65534) != 0) {
      ::_exit(1);
    }
    for (;;) ::pause();
  }
  // Until it has dropped root: a check before would (rightly) refuse it.
  for (int i = 0; i < 200; ++i) {
    auto c = gcp::proc::credentials(child);
    if (c && c->uids == std::vector<uid_t>{65534, 65534, 65534, 65534}) break;
    ::usleep(10000);
  }
  auto nobody = caller::account(65534);
  CHECK_NOTHROW(caller::check_within({child}, nobody, "unit 'main' of job 'j'"));
  CHECK(error_from([&] { caller::check_within({::getpid()}, nobody, "unit 'main' of job 'j'"); }));
  ::kill(child, SIGKILL);
  ::waitpid(child, nullptr, 0);
}
