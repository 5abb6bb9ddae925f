// SPDX-License-Identifier: MIT
#include "gcp/deps.h"
#include "gcp/grouping.h"

#include "testing.h"

#include <doctest/doctest.h>

#include <fcntl.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <utility>

namespace deps = gcp::deps;
namespace grouping = gcp::grouping;
using gcp::testing::error_from;

namespace {

// A child of this test process that makes a grandchild; both sleep until killed.
// They share a unix socket pair and hold the write end of a pipe whose read end this
// process keeps, so the tree has one tie inside and one to the outside.
class Family {
 public:
  Family() {
    int ready[2];
    REQUIRE(::pipe(ready) == 0);
    REQUIRE(::pipe(outside_) == 0);
    child_ = ::fork();
    REQUIRE(child_ >= 0);
    if (child_ == 0) {
      ::close(ready[0]);
      ::close(outside_[0]);
      int pair[2];
      if (::socketpair(AF_UNIX, SOCK_STREAM, 0, pair) != 0) ::_exit(1);
      pid_t grandchild = ::fork();
      if (grandchild == 0) {
        ::prctl(PR_SET_PDEATHSIG, SIGKILL);
        ::close(pair[0]);
        ::close(ready[1]);
        ::close(outside_[1]);
        for (;;) ::pause();
      }
      ::close(pair[1]);
      if (::write(ready[1], &grandchild, sizeof(grandchild)) != sizeof(grandchild)) ::_exit(1);
      for (;;) ::pause();
    }
    ::close(ready[1]);
    ::close(outside_[1]);
    REQUIRE(::read(ready[0], &grandchild_, sizeof(grandchild_)) == sizeof(grandchild_));
    ::close(ready[0]);
    // The grandchild is there once the child has written; wait until it shows in /proc.
    for (int i = 0; i < 200 && !grouping::snapshot().count(grandchild_); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  }
  ~Family() {
    ::kill(child_, SIGKILL);
    ::waitpid(child_, nullptr, 0);
    ::close(outside_[0]);
  }
  Family(const Family&) = delete;
  Family& operator=(const Family&) = delete;

  pid_t child() const { return child_; }
  /// "pipe:[INODE]" of the pipe whose read end this process keeps.
  std::string outside_pipe() const {
    struct stat st {};
    REQUIRE(::fstat(outside_[0], &st) == 0);
    return "pipe:[" + std::to_string(st.st_ino) + "]";
  }
  pid_t grandchild() const { return grandchild_; }

 private:
  pid_t child_ = -1, grandchild_ = -1;
  int outside_[2] = {-1, -1};
};

const deps::Tie* find_tie(const deps::Graph& g, const std::string& kind, pid_t pid) {
  for (const auto& t : g.ties) {
    if (t.kind != kind) continue;
    for (const auto& e : t.ends) {
      if (e.pid == pid) return &t;
    }
  }
  return nullptr;
}

// In a forked child: a listener on loopback and a client connected to it, not accepted
// yet, as {listener, client}; the child exits on any failure.
std::pair<int, int> loopback_pending() {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  int lfd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (::bind(lfd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(lfd, 4) != 0 ||
      ::getsockname(lfd, reinterpret_cast<sockaddr*>(&a), &len) != 0)
    ::_exit(3);
  int client = ::socket(AF_INET, SOCK_STREAM, 0);
  if (::connect(client, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) ::_exit(4);
  return {lfd, client};
}

// In a forked child: a TCP connection to itself on loopback (the listener closed), as
// {client, server}; the child exits on any failure.
std::pair<int, int> loopback_connection() {
  auto [lfd, client] = loopback_pending();
  int server = ::accept(lfd, nullptr, nullptr);
  ::close(lfd);
  return {client, server};
}

// A forked child (a unit) that sets itself up with `setup` (which _exit()s on failure),
// says so and waits; killed and reaped when this goes. The pid once it is set up.
class ReadyChild {
 public:
  template <typename Setup>
  explicit ReadyChild(Setup setup) {
    int ready[2];
    REQUIRE(::pipe(ready) == 0);
    pid_ = ::fork();
    REQUIRE(pid_ >= 0);
    if (pid_ == 0) {
      ::close(ready[0]);
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      setup();
      if (::write(ready[1], "r", 1) != 1) ::_exit(5);
      for (;;) ::pause();
    }
    ::close(ready[1]);
    char c = 0;
    REQUIRE(::read(ready[0], &c, 1) == 1);
    ::close(ready[0]);
  }
  ~ReadyChild() {
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
  }
  ReadyChild(const ReadyChild&) = delete;
  ReadyChild& operator=(const ReadyChild&) = delete;
  pid_t pid() const { return pid_; }

 private:
  pid_t pid_ = -1;
};

}  // namespace

TEST_CASE("grouping kinds have one spelling each") {
  for (auto k : {grouping::Kind::kTree, grouping::Kind::kPgid, grouping::Kind::kSid, grouping::Kind::kCgroup,
                 grouping::Kind::kPidns}) {
    CHECK(grouping::parse(grouping::name(k)) == k);
  }
  CHECK_FALSE(grouping::parse("session").has_value());
  CHECK(grouping::describe({grouping::Kind::kPgid, 7, {}}) == "process group 7");
}

TEST_CASE("a tree resolves to the process and its descendants, parents first, with threads") {
  Family f;
  auto all = grouping::snapshot();
  auto m = grouping::resolve({grouping::Kind::kTree, f.child(), {}}, all);
  CHECK(m.pids == std::vector<pid_t>{f.child(), f.grandchild()});
  CHECK(m.root == f.child());
  CHECK(m.tids.at(f.child()).front() == f.child());
  CHECK(m.threads() == 2);
  // This process's own tree holds the family too, below it.
  auto mine = grouping::resolve({grouping::Kind::kTree, ::getpid(), {}}, all);
  CHECK(mine.pids.front() == ::getpid());
  CHECK(std::find(mine.pids.begin(), mine.pids.end(), f.grandchild()) != mine.pids.end());
}

TEST_CASE("resolving what does not exist is a usage error that says what") {
  auto all = grouping::snapshot();
  auto e = error_from([&] { grouping::resolve({grouping::Kind::kTree, 999999999, {}}, all); });
  REQUIRE(e);
  CHECK(e->code() == gcp::Exit::kUsage);
  CHECK_CONTAINS(e->what(), "no process 999999999");
  e = error_from([&] { grouping::resolve({grouping::Kind::kCgroup, 0, "no/such/cgroup"}, all); });
  REQUIRE(e);
  CHECK_CONTAINS(e->what(), "no cgroup 'no/such/cgroup'");
  e = error_from([&] { grouping::resolve({grouping::Kind::kCgroup, 0, "/etc"}, all); });
  REQUIRE(e);  // only directories under /sys/fs/cgroup are cgroups
}

TEST_CASE("a socket pair inside the unit is harmless; a pipe to the outside breaks it, naming the reader") {
  Family f;
  auto g = deps::build("fam", {{"main", {grouping::Kind::kTree, f.child(), {}}}});
  REQUIRE(g.units.size() == 1);
  CHECK(g.units[0].members.pids.size() == 2);

  const deps::Tie* pair = find_tie(g, "unix-stream", f.child());
  REQUIRE(pair);
  CHECK(pair->scope == deps::Scope::kInside);
  CHECK(pair->verdict == deps::Verdict::kHarmless);
  CHECK(pair->ends.size() == 2);

  // (The family inherited this process's stdio too, which may be pipes: the one in
  // question is the family's.)
  const deps::Tie* pipe = nullptr;
  for (const auto& t : g.ties) {
    if (t.object == f.outside_pipe()) pipe = &t;
  }
  REQUIRE(pipe);
  CHECK(pipe->kind == "pipe");
  CHECK(pipe->ends.size() == 2);  // the child writes, this process reads
  CHECK(pipe->scope == deps::Scope::kExternal);
  CHECK(pipe->verdict == deps::Verdict::kBreaks);
  CHECK_CONTAINS(pipe->advice, "pid " + std::to_string(::getpid()));
  CHECK_FALSE(g.breaking(0).empty());

  const deps::Tie* parent = find_tie(g, "parent", f.grandchild());
  REQUIRE(parent);
  CHECK(parent->scope == deps::Scope::kInside);

  auto doc = deps::to_json(g);
  CHECK(doc["kind"] == "DependencyGraph");
  CHECK(doc["units"][0]["consistent"] == false);
  CHECK(doc["units"][0]["root"] == f.child());
  CHECK(doc["summary"]["breaking"].get<size_t>() >= 1);

  std::string dot = deps::to_dot(g);
  CHECK_CONTAINS(dot, "subgraph \"cluster_0\"");
  CHECK_CONTAINS(dot, "p" + std::to_string(f.child()) + " -> p" + std::to_string(f.grandchild()));
  CHECK_CONTAINS(dot, "color=red");

  std::string text = deps::to_text(g);
  CHECK_CONTAINS(text, "BREAKS: pipe");
  CHECK_CONTAINS(text, "would restart broken");
}

TEST_CASE("a process in two units is refused") {
  Family f;
  auto e = error_from([&] {
    deps::build("fam",
                {{"a", {grouping::Kind::kTree, f.child(), {}}}, {"b", {grouping::Kind::kTree, f.grandchild(), {}}}});
  });
  REQUIRE(e);
  CHECK(e->code() == gcp::Exit::kUsage);
  CHECK_CONTAINS(e->what(), "belongs to unit 'a' and to unit 'b'");
}

TEST_CASE("a Job manifest unit is found by its init, its root, or the cgroup it was put into") {
  gcp::manifest::Unit u;
  u.pid = 42;
  u.cgroup = "gcp/j/u";
  u.grouping = "pidns";
  CHECK(deps::spec_of(u).kind == grouping::Kind::kPidns);
  CHECK(deps::spec_of(u).pid == 42);
  u.grouping = "tree";
  CHECK(deps::spec_of(u).kind == grouping::Kind::kTree);
  for (const char* g : {"pgid", "sid", "cgroup"}) {
    u.grouping = g;
    CHECK(deps::spec_of(u).kind == grouping::Kind::kCgroup);
    CHECK(deps::spec_of(u).cgroup == "gcp/j/u");
  }
}

TEST_CASE("a TCP connection whose peer closed on the loopback of a unit's own network namespace is inside the unit" *
          gcp::testing::skip_unless(gcp::testing::is_root(), "needs root: a network namespace")) {
  // The child (the unit) takes a network namespace of its own, connects to itself on its
  // loopback and closes the accepting end: its connection's peer is held by no process
  // (ZDTM's socket-tcp-reseted, which plain CRIU restores with --tcp-established).
  ReadyChild unit([] {
    if (::unshare(CLONE_NEWNET) != 0) ::_exit(1);
    int ifd = ::socket(AF_INET, SOCK_DGRAM, 0);
    ifreq lo{};
    std::strcpy(lo.ifr_name, "lo");
    lo.ifr_flags = IFF_UP;
    if (::ioctl(ifd, SIOCSIFFLAGS, &lo) != 0) ::_exit(2);
    ::close(loopback_connection().second);
  });
  pid_t child = unit.pid();
  auto g = deps::build("tcp", {{"main", {grouping::Kind::kTree, child, {}}, false}}, {.stop = true});
  const deps::Tie* t = find_tie(g, "tcp", child);
  REQUIRE(t);
  CHECK_CONTAINS(t->object, " -> 127.0.0.1:");
  CHECK(t->scope != deps::Scope::kExternal);
  CHECK(t->verdict == deps::Verdict::kNeeds);
  CHECK(t->need == "tcp-established");
  CHECK_CONTAINS(t->remote, "own loopback");
}

TEST_CASE("a closed TCP socket that had a peer needs tcp-established, though sock_diag does not list it") {
  // Both ends shut down, both FINs acknowledged: the sockets are in state CLOSE and in no
  // hash table, yet CRIU restores them only with --tcp-established (ZDTM socket-tcp-closed).
  ReadyChild unit([] {
    auto [clt, srv] = loopback_connection();
    ::shutdown(clt, SHUT_WR);
    ::shutdown(srv, SHUT_WR);
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  });
  pid_t child = unit.pid();
  auto g = deps::build("tcp", {{"main", {grouping::Kind::kTree, child, {}}, false}}, {.stop = true});
  int closed = 0;
  for (const auto& t : g.ties) {
    if (t.kind != "tcp" || t.object.find("(closed) -> 127.0.0.1:") == std::string::npos) continue;
    ++closed;
    CHECK(t.verdict == deps::Verdict::kNeeds);
    CHECK(t.need == "tcp-established");
  }
  CHECK(closed == 2);
  CHECK(g.needs(0).count("tcp-established"));
}

TEST_CASE("a TCP connection to the outside moves with a unit that has its own address only when it is stopped") {
  // This process listens on loopback; a child (the unit) connects and sleeps.
  int lfd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  REQUIRE(lfd >= 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  REQUIRE(::bind(lfd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  REQUIRE(::listen(lfd, 1) == 0);
  REQUIRE(::getsockname(lfd, reinterpret_cast<sockaddr*>(&a), &len) == 0);
  pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) ::_exit(1);
    for (;;) ::pause();
  }
  int conn = ::accept4(lfd, nullptr, nullptr, SOCK_CLOEXEC);
  REQUIRE(conn >= 0);
  auto verdict = [&](bool own_address, bool stop) {
    auto g = deps::build("tcp", {{"main", {grouping::Kind::kTree, child, {}}, own_address}}, {.stop = stop});
    const deps::Tie* t = find_tie(g, "tcp", child);
    REQUIRE(t);
    CHECK(t->scope == deps::Scope::kExternal);
    return *t;
  };
  auto stays = verdict(false, true);
  CHECK(stays.verdict == deps::Verdict::kBreaks);
  CHECK_CONTAINS(stays.advice, "bytes in flight");
  auto runs_on = verdict(true, false);
  CHECK(runs_on.verdict == deps::Verdict::kBreaks);
  CHECK_CONTAINS(runs_on.advice, "checkpoint with --stop");
  auto moves = verdict(true, true);
  CHECK(moves.verdict == deps::Verdict::kNeeds);
  CHECK(moves.need == "tcp-established");
  // Said in gcp's words, in every output: no checkpointer's option.
  auto g = deps::build("tcp", {{"main", {grouping::Kind::kTree, child, {}}, true}}, {.stop = true});
  // (Run from a shell, the unit's process group and session leaders are outside it too.)
  CHECK(g.needs(0).count("tcp-established"));
  auto doc = deps::to_json(g);
  const auto& listed = doc["units"][0]["needs"];
  CHECK(std::find(listed.begin(), listed.end(), "tcp-established") != listed.end());
  CHECK_FALSE(doc["units"][0].contains("options"));
  bool tie_says_it = false;
  for (const auto& t : doc["ties"]) {
    CHECK_FALSE(t.contains("option"));
    if (t["verdict"] == "needs") tie_says_it = t["kind"] == "tcp" && t["need"] == "tcp-established";
  }
  CHECK(tie_says_it);
  auto text = deps::to_text(g);
  CHECK_CONTAINS(text, "needs tcp-established: tcp");
  auto verdict_line = text.substr(text.find("verdict: "));
  verdict_line.resize(verdict_line.find('\n'));
  CHECK_CONTAINS(verdict_line, "needs of the checkpointer: ");
  CHECK_CONTAINS(verdict_line, "tcp-established");
  CHECK(text.find("--tcp-established") == std::string::npos);
  CHECK_CONTAINS(deps::to_dot(g), "tcp-established\", color=orange");
  ::kill(child, SIGKILL);
  ::waitpid(child, nullptr, 0);
  ::close(conn);
  ::close(lfd);
}

TEST_CASE("a terminal slave whose master every process closed stays inside the unit (ZDTM pty04)") {
  ReadyChild unit([] {
    if (::setsid() < 0) ::_exit(2);
    int master = ::posix_openpt(O_RDWR | O_NOCTTY);
    if (master < 0 || ::grantpt(master) != 0 || ::unlockpt(master) != 0) ::_exit(3);
    const char* name = ::ptsname(master);
    int slave = name ? ::open(name, O_RDWR) : -1;  // the session's controlling terminal
    if (slave < 0 || ::ioctl(slave, TIOCSCTTY, 1) != 0) ::_exit(4);
    ::signal(SIGHUP, SIG_IGN);
    ::close(master);
  });
  pid_t child = unit.pid();
  auto g = deps::build("pty", {{"main", {grouping::Kind::kTree, child, {}}, false}});
  const deps::Tie* pty = find_tie(g, "pty", child);
  REQUIRE(pty);
  CHECK_CONTAINS(pty->object, "(deleted)");
  CHECK(pty->scope != deps::Scope::kExternal);
  CHECK(pty->verdict != deps::Verdict::kBreaks);
  // (Closing the master hung the terminal up: the session has no controlling tty left.)
  CHECK_FALSE(find_tie(g, "tty", child));
}

TEST_CASE("a listener with a connection not accepted yet is refused at once (ZDTM socket-tcp-skip-in-flight)") {
  ReadyChild unit([] { loopback_pending(); });  // never accepted
  pid_t child = unit.pid();
  auto g = deps::build("backlog", {{"main", {grouping::Kind::kTree, child, {}}, false}});
  const deps::Tie* t = find_tie(g, "tcp-listen-backlog", child);
  REQUIRE(t);
  CHECK_CONTAINS(t->object, "(1 connection(s) not accepted)");
  CHECK(t->verdict == deps::Verdict::kBreaks);
  CHECK_CONTAINS(t->advice, "not yet accepted");
  CHECK_FALSE(find_tie(g, "tcp-listen", child));
}
