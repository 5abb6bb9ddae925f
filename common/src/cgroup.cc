// SPDX-License-Identifier: MIT
#include "gcp/cgroup.h"

#include "gcp/error.h"
#include "gcp/fs.h"
#include "gcp/manifest.h"

#include <fcntl.h>
#include <libcgroup.h>
#include <poll.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <mutex>
#include <sstream>
#include <thread>

namespace gcp::cgroup {

std::string job_path(const std::string& job) {
  manifest::check_name("job", job);
  return "gcp/" + job;
}

std::string unit_path(const std::string& job, const std::string& unit) {
  manifest::check_name("unit", unit);
  return job_path(job) + "/" + unit;
}

namespace {

constexpr const char* kFreezer = "freezer";

// libcgroup keeps global state; initialise it once per process.
void init_libcgroup() {
  static std::once_flag once;
  static int rc = 0;
  std::call_once(once, [] { rc = cgroup_init(); });
  if (rc != 0) {
    throw Error(Exit::kFailed, std::string("initialising libcgroup: ") + cgroup_strerror(rc),
                "gcp needs the cgroup file system mounted under /sys/fs/cgroup");
  }
}

// Owns a libcgroup handle for one path with the freezer controller added.
class Handle {
 public:
  explicit Handle(const std::string& path) : cg_(cgroup_new_cgroup(path.c_str())) {
    if (!cg_) throw Error(Exit::kFailed, "cgroup '" + path + "': out of memory");
    ctl_ = cgroup_add_controller(cg_, kFreezer);
    if (!ctl_) throw Error(Exit::kFailed, "cgroup '" + path + "': cannot add the freezer");
  }
  ~Handle() { cgroup_free(&cg_); }
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;
  ::cgroup* get() { return cg_; }
  cgroup_controller* freezer() { return ctl_; }

 private:
  ::cgroup* cg_;
  ::cgroup_controller* ctl_;
};

[[noreturn]] void fail(const std::string& doing, const std::string& path, int rc) {
  throw Error(Exit::kFailed, doing + " cgroup '" + path + "': " + cgroup_strerror(rc));
}

class SystemCgroups : public Cgroups {
 public:
  SystemCgroups() {
    init_libcgroup();
    char* mount = nullptr;
    int rc = cgroup_get_subsys_mount_point(kFreezer, &mount);
    if (rc != 0 || !mount) {
      throw Error(Exit::kFailed, "finding the freezer cgroup controller: not mounted",
                  "mount the cgroup v1 freezer (e.g. at /sys/fs/cgroup/freezer)");
    }
    mount_ = mount;
    std::free(mount);
  }

  void create(const std::string& path) override {
    Handle h(path);
    int rc = cgroup_create_cgroup(h.get(), 0);
    if (rc != 0) fail("creating", path, rc);
  }

  bool exists(const std::string& path) override {
    std::error_code ec;
    return std::filesystem::is_directory(freezer_dir(path), ec);
  }

  // cgroup.procs moves every thread of the process (libcgroup's attach writes the
  // tasks file, which moves one thread).
  void attach(const std::string& path, pid_t pid) override {
    std::string file = freezer_dir(path) + "/cgroup.procs";
    std::string text = std::to_string(pid);
    int fd = ::open(file.c_str(), O_WRONLY | O_CLOEXEC);
    bool ok = fd >= 0 && ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
    int err = errno;
    if (fd >= 0) ::close(fd);
    if (!ok) {
      errno = err;
      throw_errno("moving process " + text + " into cgroup '" + path + "' (" + file + ")");
    }
  }

  std::vector<pid_t> procs(const std::string& path) override {
    std::vector<pid_t> pids;
    std::optional<std::string> text;
    try {
      text = fs::try_read_file(freezer_dir(path) + "/cgroup.procs");
    } catch (const Error&) {
      return pids;
    }
    if (!text) return pids;
    std::istringstream in(*text);
    long pid;
    while (in >> pid) pids.push_back(static_cast<pid_t>(pid));
    return pids;
  }

  void set_frozen(const std::string& path, bool frozen) override {
    Handle h(path);
    int rc = cgroup_set_value_string(h.freezer(), "freezer.state", frozen ? "FROZEN" : "THAWED");
    if (rc == 0) rc = cgroup_modify_cgroup(h.get());
    if (rc != 0) fail(frozen ? "freezing" : "thawing", path, rc);
  }

  FreezeState freeze_state(const std::string& path) override {
    // libcgroup 2.0 refuses cgroup_get_cgroup() on this hybrid layout, so the state
    // is read from the file it would have read.
    std::string file = freezer_dir(path) + "/freezer.state";
    auto state = fs::try_read_file(file);
    if (!state) throw Error(Exit::kFailed, "reading '" + file + "': the cgroup does not exist");
    if (state->rfind("FROZEN", 0) == 0) return FreezeState::kFrozen;
    if (state->rfind("FREEZING", 0) == 0) return FreezeState::kFreezing;
    return FreezeState::kThawed;
  }

  void remove(const std::string& path) override {
    if (!exists(path)) return;
    Handle h(path);
    int rc = cgroup_delete_cgroup(h.get(), 0);
    if (rc != 0) fail("removing", path, rc);
  }

  std::string freezer_dir(const std::string& path) override { return mount_ + "/" + path; }

 private:
  std::string mount_;
};

}  // namespace

std::unique_ptr<Cgroups> system_cgroups() { return std::make_unique<SystemCgroups>(); }

void freeze(Cgroups& cgroups, const std::string& path, std::chrono::milliseconds timeout) {
  cgroups.set_frozen(path, true);
  auto deadline = std::chrono::steady_clock::now() + timeout;
  auto pause = std::chrono::milliseconds(1);
  while (cgroups.freeze_state(path) != FreezeState::kFrozen) {
    if (std::chrono::steady_clock::now() >= deadline) {
      thaw_quietly(cgroups, path);
      throw Error(Exit::kFailed,
                  "freezing cgroup '" + path + "': not frozen after " + std::to_string(timeout.count()) + " ms",
                  "a process of the unit may be stuck in the kernel (state D); retry later");
    }
    std::this_thread::sleep_for(pause);
    pause = std::min(pause * 2, std::chrono::milliseconds(50));
  }
}

void thaw_quietly(Cgroups& cgroups, const std::string& path) noexcept {
  try {
    cgroups.set_frozen(path, false);
  } catch (const std::exception& e) {
    spdlog::warn("thawing cgroup '{}': {}", path, e.what());
  }
}

namespace {

// The cgroup.procs of every cgroup hierarchy's root that this process sees whole (its
// mount's root is "/"): where the watchdog moves itself.
std::vector<std::string> hierarchy_roots() {
  std::vector<std::string> out;
  std::ifstream in("/proc/self/mountinfo");
  for (std::string line; std::getline(in, line);) {
    // "36 25 0:31 / /sys/fs/cgroup/freezer rw,... - cgroup cgroup rw,freezer"
    std::istringstream words(line);
    std::string id, parent, dev, root, mount;
    words >> id >> parent >> dev >> root >> mount;
    auto dash = line.find(" - ");
    if (dash == std::string::npos || root != "/") continue;
    std::istringstream rest(line.substr(dash + 3));
    std::string type;
    rest >> type;
    if (type == "cgroup" || type == "cgroup2") out.push_back(mount + "/cgroup.procs");
  }
  return out;
}

}  // namespace

ThawWatchdog::ThawWatchdog(const std::vector<std::string>& freezer_dirs, std::chrono::seconds deadline) {
  // Everything the child needs is made before fork(): after it, in a process that may
  // have threads, the child calls only async-signal-safe functions.
  std::vector<std::string> files;
  for (const auto& d : freezer_dirs) files.push_back(d + "/freezer.state");
  std::vector<const char*> paths;
  for (const auto& f : files) paths.push_back(f.c_str());
  const std::vector<std::string> roots = hierarchy_roots();
  std::vector<const char*> root_paths;
  for (const auto& r : roots) root_paths.push_back(r.c_str());
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) throw_errno("creating the thaw watchdog's pipe");
  pid_t pid = ::fork();
  if (pid < 0) {
    ::close(fds[0]);
    ::close(fds[1]);
    throw_errno("starting the thaw watchdog");
  }
  if (pid == 0) {
    ::setsid();
    // Out of the tool's cgroups too: a batch system that kills the tool's whole cgroup
    // (Slurm at the end of a job step) must not take the watchdog with it, or units
    // would stay frozen (5 of 5 tries before this). "0" is the writing process.
    for (const char* procs : root_paths) {
      int fd = ::open(procs, O_WRONLY | O_CLOEXEC);
      if (fd < 0) continue;
      ssize_t w = ::write(fd, "0", 1);
      (void)w;
      ::close(fd);
    }
    struct sigaction ignore {};
    ignore.sa_handler = SIG_IGN;
    for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGPIPE}) ::sigaction(sig, &ignore, nullptr);
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    // No descriptor of the tool's stays open here: a caller reading its stdout or
    // stderr to the end must not wait for the watchdog.
    int devnull = ::open("/dev/null", O_RDWR);
    if (devnull >= 0) {
      ::dup2(devnull, 1);
      ::dup2(devnull, 2);
    }
    ::dup2(fds[0], 0);
    ::close_range(3, ~0U, 0);
    timespec now{};
    ::clock_gettime(CLOCK_MONOTONIC, &now);
    long long end_ms = now.tv_sec * 1000LL + now.tv_nsec / 1000000 + deadline.count() * 1000LL;
    for (;;) {
      ::clock_gettime(CLOCK_MONOTONIC, &now);
      long long left = end_ms - (now.tv_sec * 1000LL + now.tv_nsec / 1000000);
      if (left <= 0) break;
      pollfd p{0, POLLIN, 0};
      int n = ::poll(&p, 1, static_cast<int>(std::min(left, 60000LL)));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) continue;
      char c;
      ssize_t r = ::read(0, &c, 1);
      if (r < 0 && errno == EINTR) continue;
      if (r == 1) ::_exit(0);  // released
      break;                   // end of file: the creator is gone
    }
    for (const char* path : paths) {
      int fd = ::open(path, O_WRONLY | O_CLOEXEC);
      if (fd < 0) continue;
      ssize_t w = ::write(fd, "THAWED", 6);
      (void)w;
      ::close(fd);
    }
    ::_exit(0);
  }
  ::close(fds[0]);
  pid_ = pid;
  fd_ = fds[1];
}

void ThawWatchdog::release() noexcept {
  if (fd_ < 0) return;
  ssize_t w = ::write(fd_, "r", 1);
  (void)w;
  ::close(fd_);
  fd_ = -1;
  while (::waitpid(pid_, nullptr, 0) < 0 && errno == EINTR) {
  }
}

ThawWatchdog::~ThawWatchdog() {
  if (fd_ < 0) return;
  ::close(fd_);
  while (::waitpid(pid_, nullptr, 0) < 0 && errno == EINTR) {
  }
}

void kill_all(Cgroups& cgroups, const std::string& path, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  bool thawed = false;
  for (;;) {
    auto pids = cgroups.procs(path);
    if (pids.empty()) return;
    for (pid_t pid : pids) ::kill(pid, SIGKILL);
    // A frozen process dies only once thawed.
    if (!thawed) {
      thaw_quietly(cgroups, path);
      thawed = true;
    }
    if (std::chrono::steady_clock::now() >= deadline) {
      throw Error(Exit::kFailed,
                  "killing the processes of cgroup '" + path + "': " + std::to_string(pids.size()) + " still there");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

}  // namespace gcp::cgroup
