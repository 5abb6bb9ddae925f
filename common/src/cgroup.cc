// SPDX-License-Identifier: MIT
#include "gcp/cgroup.h"

#include "gcp/error.h"
#include "gcp/fs.h"
#include "gcp/manifest.h"

#include <libcgroup.h>
#include <signal.h>
#include <spdlog/spdlog.h>

#include <cstdlib>
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

  void attach(const std::string& path, pid_t pid) override {
    Handle h(path);
    int rc = cgroup_attach_task_pid(h.get(), pid);
    if (rc != 0) fail("moving process " + std::to_string(pid) + " into", path, rc);
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
                  "freezing cgroup '" + path + "': not frozen after " +
                      std::to_string(timeout.count()) + " ms",
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
      throw Error(Exit::kFailed, "killing the processes of cgroup '" + path + "': " +
                                     std::to_string(pids.size()) + " still there");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

}  // namespace gcp::cgroup
