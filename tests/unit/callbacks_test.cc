// SPDX-License-Identifier: MIT
// The client header (gcp/callbacks.h, included from C++ here) against gcp's side
// (gcp/events.h), over real unix sockets and real hook executables.
#include "gcp/callbacks.h"
#include "gcp/events.h"

#include "testing.h"

#include <doctest/doctest.h>

#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

using gcp::events::Event;
using gcp::events::Request;
using gcp::testing::ScopedEnv;
using gcp::testing::TempDir;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
namespace events = gcp::events;

extern "C" const char* callbacks_c11_event_name(int event);

namespace {

// An application: listens through the header and records what it got, in a thread.
struct App {
  explicit App(const std::string& socket) : env("GCP_CALLBACK_SOCKET", socket) {
    REQUIRE(gcp_callbacks_open(&cb) == 1);
  }
  ~App() {
    stop = true;
    if (thread.joinable()) thread.join();
    gcp_callbacks_close(&cb);
  }
  void serve() {
    thread = std::thread([this] {
      while (!stop) gcp_callbacks_dispatch(&cb, 20);
    });
  }
  ScopedEnv env;
  gcp_callbacks cb{};
  std::thread thread;
  std::atomic<bool> stop{false};
};

std::vector<std::string> seen;  // "event seq job unit deadline", by the handler below

int record(const gcp_event_info* ev, char* message, size_t size, void* arg) {
  seen.push_back(std::string(ev->name) + " " + std::to_string(ev->seq) + " " + ev->job + " " + ev->unit + " " +
                 std::to_string(ev->deadline_ms));
  if (arg) snprintf(message, size, "%s", static_cast<const char*>(arg));
  return arg ? 1 : 0;
}

// A job of whoever runs the tests, so that the hooks they write are the owner's.
Request request(Event e, std::chrono::milliseconds deadline = 2000ms) {
  return {e, "job-1", "unit.a", 7, deadline, std::nullopt, ::geteuid()};
}

gcp::manifest::Callbacks at(const std::string& socket, const std::string& hooks = "") { return {socket, hooks, {}}; }

void write_hook(const std::filesystem::path& path, const std::string& body, mode_t mode = 0755) {
  std::ofstream(path) << "#!/bin/sh\n" << body << "\n";
  ::chmod(path.c_str(), mode);
}

std::string read(const std::filesystem::path& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

}  // namespace

TEST_CASE("the client gets every event in order with its job, unit, seq and deadline, and gcp gets ok") {
  TempDir dir;
  auto socket = (dir.path() / "u.sock").string();
  App app(socket);
  seen.clear();
  for (int e = 0; e < GCP_EVENT_COUNT; ++e) gcp_callbacks_on(&app.cb, static_cast<gcp_event>(e), record, nullptr);
  app.serve();
  for (Event e : {Event::kPreCheckpoint, Event::kPostCheckpoint, Event::kAbort, Event::kPostRestart}) {
    auto r = events::deliver(at(socket), request(e));
    CHECK(r.ok);
    CHECK(r.via == "socket");
    CHECK(r.ms >= 0);
  }
  CHECK(seen == std::vector<std::string>{"pre-checkpoint 7 job-1 unit.a 2000", "post-checkpoint 7 job-1 unit.a 2000",
                                         "abort 7 job-1 unit.a 2000", "post-restart 7 job-1 unit.a 2000"});
}

TEST_CASE("an event without a handler is answered ok") {
  TempDir dir;
  auto socket = (dir.path() / "u.sock").string();
  App app(socket);
  app.serve();
  CHECK(events::deliver(at(socket), request(Event::kPostRestart)).ok);
}

TEST_CASE("a handler's error reaches gcp with its message, quotes and all") {
  TempDir dir;
  auto socket = (dir.path() / "u.sock").string();
  App app(socket);
  static char why[] = "queue \"7\" is stuck\\";
  gcp_callbacks_on(&app.cb, GCP_EVENT_PRE_CHECKPOINT, record, why);
  app.serve();
  auto r = events::deliver(at(socket), request(Event::kPreCheckpoint));
  CHECK_FALSE(r.ok);
  CHECK(r.message == "the application answered pre-checkpoint with an error: queue \"7\" is stuck\\");
}

TEST_CASE("an application that never answers fails the event at its deadline") {
  TempDir dir;
  auto socket = (dir.path() / "u.sock").string();
  App app(socket);  // listening, never accepting
  auto t = Clock::now();
  auto r = events::deliver(at(socket), request(Event::kPreCheckpoint, 300ms));
  auto took = Clock::now() - t;
  CHECK_FALSE(r.ok);
  CHECK(r.message == "no answer to pre-checkpoint within its deadline of 300 ms");
  CHECK(took >= 300ms);
  CHECK(took < 2s);
}

TEST_CASE("the poll form takes an event and answers it later") {
  TempDir dir;
  auto socket = (dir.path() / "u.sock").string();
  App app(socket);
  std::thread gcp_side([&] {
    auto r = events::deliver(at(socket), request(Event::kAbort));
    CHECK(r.ok);
  });
  gcp_event_info ev{};
  REQUIRE(gcp_callbacks_next(&app.cb, &ev, 2000) == 1);
  CHECK(ev.event == GCP_EVENT_ABORT);
  CHECK(std::string(ev.name) == "abort");
  gcp_callbacks_reply(&app.cb, 0, nullptr);
  gcp_side.join();
  CHECK(app.cb.conn == -1);
}

TEST_CASE("a request of another protocol major is refused by the client") {
  TempDir dir;
  auto socket = (dir.path() / "u.sock").string();
  App app(socket);
  app.serve();
  int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", socket.c_str());
  REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  std::string line =
      "{\"gcp\":\"callbacks/"
      "v2\",\"event\":\"pre-checkpoint\",\"job\":\"j\",\"unit\":\"u\",\"seq\":1,\"deadlineMs\":10}\n";
  REQUIRE(::write(fd, line.data(), line.size()) == static_cast<ssize_t>(line.size()));
  char buf[512] = {};
  ssize_t n = ::read(fd, buf, sizeof buf - 1);
  ::close(fd);
  REQUIRE(n > 0);
  CHECK_CONTAINS(buf, "\"status\":\"error\"");
  CHECK_CONTAINS(buf, "protocol 'callbacks/v2' is not supported (this client speaks callbacks/v1)");
}

TEST_CASE("without $GCP_CALLBACK_SOCKET the client does nothing and says so") {
  ScopedEnv env("GCP_CALLBACK_SOCKET", std::nullopt);
  gcp_callbacks cb;
  CHECK(gcp_callbacks_open(&cb) == 0);
  CHECK(gcp_callbacks_fd(&cb) == -1);
  CHECK(gcp_callbacks_dispatch(&cb, 0) == 0);
  gcp_callbacks_close(&cb);
}

// What that costs is measured by tests/bench/callbacks-overhead.sh, not here.
TEST_CASE("a unit where nobody listens counts as no callback") {
  TempDir dir;
  auto socket = (dir.path() / "u.sock").string();
  auto absent = events::deliver(at(socket), request(Event::kPreCheckpoint));
  CHECK(absent.ok);
  CHECK(absent.via == "none");
  // What a dead application leaves: a socket file nobody listens on.
  int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", socket.c_str());
  REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  ::close(fd);
  REQUIRE(std::filesystem::is_socket(socket));
  auto stale = events::deliver(at(socket), request(Event::kPreCheckpoint));
  CHECK(stale.ok);
  CHECK(stale.via == "none");
}

TEST_CASE("hooks run in lexical order with the event in their environment; other files are skipped") {
  TempDir dir;
  auto hooks = dir.path() / "hooks";
  std::filesystem::create_directory(hooks);
  auto log = dir.path() / "log";
  std::string line =
      "echo \"$(basename $0) $GCP_EVENT $GCP_JOB $GCP_UNIT $GCP_SEQ $GCP_UNIT_PID $GCP_CALLBACK_PROTOCOL $1\" >> " +
      log.string();
  write_hook(hooks / "20-b", line);
  write_hook(hooks / "10-a", line);
  write_hook(hooks / "15-not-executable", line, 0644);
  write_hook(hooks / ".hidden", line);
  std::filesystem::create_directory(hooks / "12-a-directory");
  auto req = request(Event::kPostCheckpoint);
  req.unit_pid = 4242;
  auto r = events::deliver(at("", hooks.string()), req);
  CHECK(r.ok);
  CHECK(r.via == "hooks");
  CHECK(read(log) ==
        "10-a post-checkpoint job-1 unit.a 7 4242 callbacks/v1 post-checkpoint\n"
        "20-b post-checkpoint job-1 unit.a 7 4242 callbacks/v1 post-checkpoint\n");
}

TEST_CASE("hooks run as the job's owner, with its rights only" *
          gcp::testing::skip_unless(gcp::testing::is_root(), "needs root: a hook runs as another user")) {
  TempDir dir;
  ::chmod(dir.path().c_str(), 0755);  // the owner must reach the hook
  write_hook(dir.path() / "10-who", "echo \"uid $(id -u) gid $(id -g) groups $(id -G)\" >&2; exit 1");
  auto req = request(Event::kPreCheckpoint);
  req.owner = 65534;
  auto r = events::deliver(at("", dir.path().string()), req);
  CHECK_FALSE(r.ok);
  CHECK_CONTAINS(r.message, "uid 65534 gid ");
  CHECK_NOT_CONTAINS(r.message, "groups 0");
  req.owner = 0;  // a job of root's: as gcp
  CHECK_CONTAINS(events::deliver(at("", dir.path().string()), req).message, "uid 0 gid 0");
}

TEST_CASE("a failing hook stops the event with its last stderr line") {
  TempDir dir;
  write_hook(dir.path() / "10-no", "echo first >&2; echo 'disk full' >&2; exit 4");
  write_hook(dir.path() / "20-never", "touch " + (dir.path() / "ran").string());
  auto r = events::deliver(at("", dir.path().string()), request(Event::kPreCheckpoint));
  CHECK_FALSE(r.ok);
  CHECK(r.message == "hook '" + (dir.path() / "10-no").string() + "' failed (exit status 4): disk full");
  CHECK_FALSE(std::filesystem::exists(dir.path() / "ran"));
}

TEST_CASE("a hook past the deadline is killed with what it started") {
  TempDir dir;
  auto pidfile = dir.path() / "child.pid";
  write_hook(dir.path() / "10-slow", "sleep 30 & echo $! > " + pidfile.string() + "; wait");
  auto t = Clock::now();
  auto r = events::deliver(at("", dir.path().string()), request(Event::kPreCheckpoint, 300ms));
  CHECK(Clock::now() - t < 2s);
  CHECK_FALSE(r.ok);
  CHECK_CONTAINS(r.message, "no answer to pre-checkpoint within its deadline of 300 ms");
  pid_t child = std::stoi(read(pidfile));
  // The background sleep went with its group: gone, or a zombie until its new parent
  // reaps it, once the SIGKILL has been taken.
  auto gone = [&] {
    auto stat = read("/proc/" + std::to_string(child) + "/stat");
    return stat.empty() || stat.find(") Z ") != std::string::npos;
  };
  for (int i = 0; i < 200 && !gone(); ++i) std::this_thread::sleep_for(10ms);
  CHECK(gone());
}

TEST_CASE("socket and hooks both deliver, the socket first") {
  TempDir dir;
  auto socket = (dir.path() / "u.sock").string();
  App app(socket);
  app.serve();
  write_hook(dir.path() / "10-ok", "true");
  auto r = events::deliver(at(socket, dir.path().string()), request(Event::kPostRestart));
  CHECK(r.ok);
  CHECK(r.via == "socket+hooks");
}

TEST_CASE("deliver_all reaches every unit at once") {
  TempDir dir;
  std::vector<std::pair<gcp::manifest::Callbacks, Request>> batch;
  for (int i = 0; i < 3; ++i) {
    auto d = dir.path() / std::to_string(i);
    std::filesystem::create_directory(d);
    write_hook(d / "10-wait", "sleep 1");
    batch.push_back({at("", d.string()), request(Event::kPreCheckpoint)});
  }
  auto t = Clock::now();
  auto results = events::deliver_all(batch);
  CHECK(Clock::now() - t < 2900ms);  // one after the other would take 3 s
  REQUIRE(results.size() == 3);
  for (const auto& r : results) CHECK(r.ok);
}

TEST_CASE("the socket path fits sun_path for the longest names and differs per store") {
  std::string job(64, 'j'), unit(64, 'u');
  auto a = events::socket_path("/var/lib/gcp", job, unit);
  CHECK(a.size() < sizeof(sockaddr_un{}.sun_path));
  CHECK(a.rfind("/run/gcp/callbacks/", 0) == 0);
  CHECK(a.ends_with("/" + unit + ".sock"));
  CHECK(events::socket_path("/other/store", job, unit) != a);
  CHECK(events::socket_path("/var/lib/gcp", job, unit) == a);
}

TEST_CASE("a hooks directory others may write to is refused") {
  TempDir dir;
  ::chmod(dir.path().c_str(), 0777);
  // Its owner's (root's, or the user's who runs the tests): only the mode is wrong.
  auto err = gcp::testing::error_from([&] { events::check_hooks_dir(dir.path().string(), ::geteuid()); });
  REQUIRE(err);
  CHECK(err->code() == gcp::Exit::kUsage);
  CHECK_CONTAINS(err->what(), "may be written by others");
  ::chmod(dir.path().c_str(), 0755);
  CHECK_FALSE(gcp::testing::error_from([&] { events::check_hooks_dir(dir.path().string(), ::geteuid()); }));
  CHECK(gcp::testing::error_from([&] { events::check_hooks_dir((dir.path() / "nope").string(), 0); }));
}

TEST_CASE("a hook others may write to, or a link to one, is refused at the event, and nothing runs") {
  TempDir dir;
  auto ran = dir.path() / "ran";
  write_hook(dir.path() / "10-open", "touch " + ran.string(), 0777);
  auto r = events::deliver(at("", dir.path().string()), request(Event::kPreCheckpoint));
  CHECK_FALSE(r.ok);
  CHECK_CONTAINS(r.message, "10-open' may be written by others than its owner: refusing to run it");
  std::filesystem::remove(dir.path() / "10-open");
  // A link to a script elsewhere, even one that is fine itself.
  TempDir elsewhere;
  write_hook(elsewhere.path() / "script", "touch " + ran.string());
  std::filesystem::create_symlink(elsewhere.path() / "script", dir.path() / "20-link");
  r = events::deliver(at("", dir.path().string()), request(Event::kPreCheckpoint));
  CHECK_FALSE(r.ok);
  CHECK_CONTAINS(r.message, "20-link' is not a regular file");
  CHECK_FALSE(std::filesystem::exists(ran));
}

TEST_CASE("a root job's hooks directory inside a directory a user owns is refused at every event" *
          gcp::testing::skip_unless(gcp::testing::is_root(), "needs root: the parent belongs to another user")) {
  TempDir dir;
  auto parent = dir.path() / "users";
  std::filesystem::create_directory(parent);
  REQUIRE(::chown(parent.c_str(), 65534, 65534) == 0);  // the user can rename what is in it
  auto hooks = parent / "hooks";
  std::filesystem::create_directory(hooks);
  write_hook(hooks / "10-ok", "true");
  auto req = request(Event::kPreCheckpoint);
  req.owner = 0;
  auto r = events::deliver(at("", hooks.string()), req);
  CHECK_FALSE(r.ok);
  CHECK_CONTAINS(r.message, "users' belongs to uid 65534");
  // Owned by the job's owner, the same directory is fine: its hooks run as that owner.
  req.owner = 65534;
  ::chmod(dir.path().c_str(), 0755);
  CHECK(events::deliver(at("", hooks.string()), req).ok);
}

TEST_CASE("the client header builds as strict C11 and names the events the same") {
  CHECK(std::string(callbacks_c11_event_name(GCP_EVENT_POST_RESTART)) == events::name(Event::kPostRestart));
  CHECK(std::string(callbacks_c11_event_name(GCP_EVENT_PRE_CHECKPOINT)) == events::name(Event::kPreCheckpoint));
  CHECK(std::string(callbacks_c11_event_name(GCP_EVENT_POST_CHECKPOINT)) == events::name(Event::kPostCheckpoint));
  CHECK(std::string(callbacks_c11_event_name(GCP_EVENT_ABORT)) == events::name(Event::kAbort));
}
