// SPDX-License-Identifier: MIT
#include "gcp/events.h"

#include "gcp/chunks.h"
#include "gcp/error.h"
#include "gcp/fs.h"
#include "gcp/names.h"
#include "gcp/process.h"

#include <spdlog/spdlog.h>

#include <fcntl.h>
#include <poll.h>
#include <pwd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <thread>

namespace gcp::events {
namespace {

using Clock = std::chrono::steady_clock;

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

int ms_left(Clock::time_point deadline) {
  // Rounded up: poll() must not wake just before the deadline and call it missed.
  auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return static_cast<int>(std::max<long long>(left, 0));
}

// Waits for `events` on fd until the deadline; false when it passed.
bool wait_for(int fd, short events, Clock::time_point deadline) {
  for (;;) {
    pollfd p{fd, events, 0};
    int left = ms_left(deadline);
    int rc = ::poll(&p, 1, left);
    if (rc > 0) return true;
    if (rc == 0) return false;
    if (errno != EINTR) return true;  // the next call reports the error
  }
}

std::string request_line(const Request& r) {
  // Fixed key order and names of [A-Za-z0-9._-] only: the C client reads it without a
  // JSON library (gcp-callbacks(7)).
  return std::string("{\"gcp\":\"") + kProtocol + "\",\"event\":\"" + name(r.event) + "\",\"job\":\"" + r.job +
         "\",\"unit\":\"" + r.unit + "\",\"seq\":" + std::to_string(r.seq) +
         ",\"deadlineMs\":" + std::to_string(r.deadline.count()) + "}\n";
}

std::string missed(const Request& r) {
  return "no answer to " + std::string(name(r.event)) + " within its deadline of " +
         std::to_string(r.deadline.count()) + " ms";
}

// The socket form. nullopt: nobody listens there (no file, or a stale one).
std::optional<Result> deliver_socket(const std::string& path, const Request& r, Clock::time_point deadline) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof addr.sun_path) {
    return Result{false,
                  "socket path '" + path + "' is longer than " + std::to_string(sizeof addr.sun_path - 1) + " bytes", 0,
                  "socket"};
  }
  std::memcpy(addr.sun_path, path.data(), path.size());
  Fd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (fd.get() < 0) return Result{false, std::string("creating a unix socket: ") + std::strerror(errno), 0, "socket"};
  for (;;) {
    if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0) break;
    int err = errno;
    if (err == ENOENT || err == ECONNREFUSED || err == ENOTDIR) return std::nullopt;
    // A full backlog: the application has not taken the previous connection yet.
    if ((err == EAGAIN || err == EINTR) && ms_left(deadline) > 0) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
      continue;
    }
    if (err == EAGAIN) return Result{false, missed(r), 0, "socket"};
    return Result{false, "connecting to '" + path + "': " + std::strerror(err), 0, "socket"};
  }
  std::string line = request_line(r);
  for (size_t off = 0; off < line.size();) {
    if (!wait_for(fd.get(), POLLOUT, deadline)) return Result{false, missed(r), 0, "socket"};
    ssize_t n = ::send(fd.get(), line.data() + off, line.size() - off, MSG_NOSIGNAL);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
    if (n < 0) return Result{false, "sending " + std::string(name(r.event)) + ": " + std::strerror(errno), 0, "socket"};
    off += static_cast<size_t>(n);
  }
  // The answer, then the application's close: once gcp has seen both, nothing of this
  // connection is left in the unit, which may be frozen and dumped next.
  std::string answer;
  bool closed = false;
  char buf[1024];
  while (!closed) {
    if (!wait_for(fd.get(), POLLIN, deadline)) {
      if (answer.find('\n') == std::string::npos) return Result{false, missed(r), 0, "socket"};
      return Result{false,
                    "the application answered " + std::string(name(r.event)) +
                        " but did not close the connection within the deadline",
                    0, "socket"};
    }
    ssize_t n = ::recv(fd.get(), buf, sizeof buf, 0);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
    if (n < 0)
      return Result{false, "reading the answer to " + std::string(name(r.event)) + ": " + std::strerror(errno), 0,
                    "socket"};
    if (n == 0) closed = true;
    answer.append(buf, static_cast<size_t>(n));
    if (answer.size() > 8192)
      return Result{false, "the answer to " + std::string(name(r.event)) + " is too long", 0, "socket"};
  }
  auto nl = answer.find('\n');
  if (nl == std::string::npos) {
    return Result{false, "the application closed the connection without answering " + std::string(name(r.event)), 0,
                  "socket"};
  }
  // The application's words: parsed with gcp's limits, shown printable.
  manifest::json reply = manifest::try_parse(std::string_view(answer).substr(0, nl)).value_or(manifest::json());
  if (!reply.is_object() || !reply.contains("status") || !reply["status"].is_string()) {
    return Result{false,
                  "the answer to " + std::string(name(r.event)) + " is not {\"status\": ...}: '" +
                      printable(std::string_view(answer).substr(0, nl), 200) + "'",
                  0, "socket"};
  }
  std::string status = reply["status"];
  if (status == "ok") return Result{true, "", 0, "socket"};
  std::string message = reply.contains("message") && reply["message"].is_string()
                            ? printable(reply["message"].get<std::string>(), 500)
                            : std::string("no message");
  return Result{false, "the application answered " + std::string(name(r.event)) + " with an error: " + message, 0,
                "socket"};
}

// The last non-empty line of a hook's stderr: its reason, by convention.
std::string last_line(const std::string& text) {
  auto end = text.find_last_not_of("\n \t");
  if (end == std::string::npos) return "";
  auto start = text.rfind('\n', end);
  return text.substr(start == std::string::npos ? 0 : start + 1,
                     end - (start == std::string::npos ? 0 : start + 1) + 1);
}

// The user's primary group; the uid itself when the user has no passwd entry.
gid_t primary_group(uid_t uid) {
  passwd pw{};
  passwd* found = nullptr;
  std::vector<char> buf(16384);
  if (::getpwuid_r(uid, &pw, buf.data(), buf.size(), &found) == 0 && found) return found->pw_gid;
  return static_cast<gid_t>(uid);
}

// Checked at every event, not only when the unit started: the directory, each hook and
// every directory above them may be changed by root and the job's owner only, and a
// hook is a regular file, not a link to one. Hooks run as the owner.
std::optional<Result> deliver_hooks(const std::string& given, const Request& r, Clock::time_point deadline) {
  std::string dir;
  try {
    dir = check_hooks_dir(given, r.owner);
  } catch (const Error& e) {
    return Result{false, e.what(), 0, "hooks"};
  }
  auto hooks = hooks_in(dir);
  if (hooks.empty()) return std::nullopt;
  for (const auto& hook : hooks) {
    auto left = std::chrono::milliseconds(ms_left(deadline));
    if (left.count() <= 0) return Result{false, "hook '" + hook + "': " + missed(r), 0, "hooks"};
    struct stat st {};
    if (::lstat(hook.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) {
      return Result{false, "hook '" + hook + "' is not a regular file (a symbolic link?): refusing to run it", 0,
                    "hooks"};
    }
    try {
      fs::trusted_path(hook, r.owner, "hook");
    } catch (const Error& e) {
      return Result{false, std::string(e.what()) + ": refusing to run it", 0, "hooks"};
    }
    process::Spec spec;
    spec.argv = {hook, name(r.event)};
    spec.timeout = left;
    spec.own_process_group = true;
    // A hook acts for the job's owner, never with more rights than the owner has. Run by
    // the owner itself (not root), it already has the owner's rights, and no others.
    if (r.owner != 0 && ::geteuid() == 0) spec.run_as = {r.owner, primary_group(r.owner)};
    auto env = [](const char* name, const std::string& value) { return std::string(name) + "=" + value; };
    spec.env = {env(names::kEnvEvent, name(r.event)),
                env(names::kEnvJob, r.job),
                env(names::kEnvUnit, r.unit),
                env(names::kEnvSeq, std::to_string(r.seq)),
                env(names::kEnvDeadlineMs, std::to_string(left.count())),
                env(names::kEnvUnitPid, r.unit_pid ? std::to_string(*r.unit_pid) : std::string()),
                env(names::kEnvCallbackProtocol, kProtocol)};
    process::Result res;
    try {
      res = process::run(spec);
    } catch (const Error& e) {
      return Result{false, "hook '" + hook + "': " + e.what(), 0, "hooks"};
    }
    if (res.timed_out) return Result{false, "hook '" + hook + "': " + missed(r), 0, "hooks"};
    if (!res.ok()) {
      std::string why = last_line(res.err);
      return Result{false, "hook '" + hook + "' failed (" + res.describe() + ")" + (why.empty() ? "" : ": " + why), 0,
                    "hooks"};
    }
  }
  return Result{true, "", 0, "hooks"};
}

}  // namespace

const char* name(Event event) {
  switch (event) {
    case Event::kPreCheckpoint:
      return "pre-checkpoint";
    case Event::kPostCheckpoint:
      return "post-checkpoint";
    case Event::kPostRestart:
      return "post-restart";
    case Event::kAbort:
      return "abort";
  }
  return "unknown";
}

std::string socket_path(const std::filesystem::path& store_root, const std::string& job, const std::string& unit) {
  std::string key = std::filesystem::weakly_canonical(store_root).string() + "\n" + job;
  auto hash = chunks::hash_of({reinterpret_cast<const uint8_t*>(key.data()), key.size()});
  return std::string(kRunDir) + "/callbacks/" + hash.hex().substr(0, 16) + "/" + unit + ".sock";
}

void prepare_socket(const std::string& socket, uid_t owner) {
  std::filesystem::path dir = std::filesystem::path(socket).parent_path();
  fs::make_dirs(dir.parent_path(), 0755);
  fs::make_dirs(dir, 0700);
  if (::chown(dir.c_str(), owner, static_cast<gid_t>(-1)) != 0) {
    throw_errno("giving the callback socket directory '" + dir.string() + "' to uid " + std::to_string(owner));
  }
  struct stat st {};
  if (::lstat(socket.c_str(), &st) == 0 && S_ISSOCK(st.st_mode)) ::unlink(socket.c_str());
}

void remove_socket(const std::string& socket) {
  if (socket.empty()) return;
  ::unlink(socket.c_str());
  ::rmdir(std::filesystem::path(socket).parent_path().c_str());
}

std::string check_hooks_dir(const std::string& dir, uid_t owner) {
  struct stat st {};
  if (::stat(dir.c_str(), &st) != 0) {
    throw Error(Exit::kUsage, "hooks directory '" + dir + "': " + std::strerror(errno),
                "give a directory of executables (gcp-callbacks(7))");
  }
  if (!S_ISDIR(st.st_mode)) {
    throw Error(Exit::kUsage, "hooks directory '" + dir + "' is not a directory",
                "give a directory of executables (gcp-callbacks(7))");
  }
  try {
    return fs::trusted_path(dir, owner, "hooks directory").string();
  } catch (const Error& e) {
    throw Error(Exit::kUsage, e.what(),
                "its hooks run as the job's owner at every checkpoint, so only root and the owner may change it "
                "and every directory above it: 'chmod go-w' each, and give them to root or the owner");
  }
}

std::vector<std::string> hooks_in(const std::string& dir) {
  std::vector<std::string> hooks;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
    const auto& p = entry.path();
    if (p.filename().string().front() == '.') continue;
    // A symbolic link is listed so that it is refused, not skipped in silence.
    if (entry.is_symlink(ec) || (entry.is_regular_file(ec) && ::access(p.c_str(), X_OK) == 0)) {
      hooks.push_back(p.string());
    }
  }
  std::sort(hooks.begin(), hooks.end());
  return hooks;
}

Result deliver(const manifest::Callbacks& endpoint, const Request& request) {
  auto start = Clock::now();
  auto deadline = start + request.deadline;
  Result result;
  std::vector<std::string> via;
  if (!endpoint.socket.empty()) {
    if (auto r = deliver_socket(endpoint.socket, request, deadline)) {
      result = *r;
      via.push_back("socket");
    }
  }
  if (result.ok && !endpoint.hooks.empty()) {
    if (auto r = deliver_hooks(endpoint.hooks, request, deadline)) {
      result = *r;
      via.push_back("hooks");
    }
  }
  result.via = via.empty() ? "none" : via.size() == 2 ? "socket+hooks" : via[0];
  result.ms = std::chrono::duration<double, std::milli>(Clock::now() - start).count();
  return result;
}

std::vector<Result> deliver_all(const std::vector<std::pair<manifest::Callbacks, Request>>& events) {
  if (events.size() == 1) return {deliver(events[0].first, events[0].second)};
  std::vector<Result> results(events.size());
  std::vector<std::thread> threads;
  for (size_t i = 0; i < events.size(); ++i) {
    try {
      threads.emplace_back([&, i] { results[i] = deliver(events[i].first, events[i].second); });
    } catch (const std::system_error&) {
      results[i] = deliver(events[i].first, events[i].second);  // no thread to spare: in turn
    }
  }
  for (auto& t : threads) t.join();
  return results;
}

bool has_endpoint(const manifest::Unit& unit) {
  return !unit.callbacks.socket.empty() || !unit.callbacks.hooks.empty();
}

std::vector<Result> deliver_to(const std::vector<const manifest::Unit*>& units, Event event, const manifest::Job& job,
                               uint64_t seq, std::chrono::milliseconds deadline) {
  std::vector<std::pair<manifest::Callbacks, Request>> batch;
  for (const auto* u : units) {
    batch.push_back({u->callbacks, {event, job.name, u->name, seq, deadline, u->pid, job.owner}});
  }
  return deliver_all(batch);
}

void warn_failed(const std::vector<const manifest::Unit*>& units, const std::vector<Result>& results,
                 const std::string& what) {
  for (size_t i = 0; i < units.size() && i < results.size(); ++i) {
    if (!results[i].ok) spdlog::warn("{}: unit '{}': {}", what, units[i]->name, results[i].message);
  }
}

}  // namespace gcp::events
