// SPDX-License-Identifier: MIT
#include "gcp/unit.h"

#include "gcp/caller.h"
#include "gcp/error.h"
#include "gcp/names.h"
#include "gcp/netns.h"
#include "gcp/proc.h"
#include "gcp/process.h"

#include <fcntl.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>

namespace gcp::unit {

std::string init_path() {
  // Root never runs a gcp-init a user named.
  if (const char* env = std::getenv(names::kEnvInit); env && *env && !caller::for_user()) return env;
  return (std::filesystem::path(process::self_dir()).parent_path() / "libexec/gcp/gcp-init").string();
}

namespace {

// Reports a failure of a forked child to the parent through `fd`, then exits.
[[noreturn]] void child_fail(int fd, const char* what) {
  int err = errno;
  char msg[256];
  int n = std::snprintf(msg, sizeof msg, "%s: %s", what, std::strerror(err));
  if (n > 0) (void)!::write(fd, msg, static_cast<size_t>(std::min(n, 255)));
  ::_exit(127);
}

bool write_all(int fd, const std::string& text) {
  return ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
}

std::string read_all(int fd) {
  std::string out;
  char buf[512];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n > 0) {
      out.append(buf, static_cast<size_t>(n));
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else {
      break;
    }
  }
  return out;
}

// Sets lo up in the caller's network namespace (a new one has it down).
bool loopback_up() {
  int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  struct ifreq ifr {};
  std::strncpy(ifr.ifr_name, "lo", IFNAMSIZ - 1);
  bool ok = ::ioctl(fd, SIOCGIFFLAGS, &ifr) == 0;
  if (ok) {
    ifr.ifr_flags = static_cast<short>(ifr.ifr_flags | IFF_UP | IFF_RUNNING);
    ok = ::ioctl(fd, SIOCSIFFLAGS, &ifr) == 0;
  }
  int err = errno;
  ::close(fd);
  errno = err;
  return ok;
}

// Runs in the forked child (gcp-isolate is single-threaded here): joins the cgroup,
// unshares the namespaces and forks the unit's init. Never returns.
[[noreturn]] void start_namespace(const LaunchSpec& spec, const std::string& procs_file, const std::string& init,
                                  int report_fd, int pid_fd) {
  int fd = ::open(procs_file.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0 || !write_all(fd, std::to_string(::getpid()))) child_fail(report_fd, "joining the unit's cgroup");
  ::close(fd);
  if (!spec.netns.empty()) {
    int ns = ::open(spec.netns.c_str(), O_RDONLY | O_CLOEXEC);
    if (ns < 0 || ::setns(ns, CLONE_NEWNET) != 0) child_fail(report_fd, "joining the unit's network namespace");
    ::close(ns);
  }
  auto shares = [&](const char* ns) { return std::find(spec.share.begin(), spec.share.end(), ns) != spec.share.end(); };
  int flags = CLONE_NEWPID | CLONE_NEWNS;
  if (!shares("ipc")) flags |= CLONE_NEWIPC;
  // The new UTS namespace starts with the node's host name: only the unit's own
  // sethostname() changes it from there.
  if (!shares("uts")) flags |= CLONE_NEWUTS;
  bool own_net = spec.netns.empty() && !shares("net");
  if (own_net) flags |= CLONE_NEWNET;
  if (::unshare(flags) != 0) child_fail(report_fd, "creating the unit's namespaces");
  if (own_net && !loopback_up()) child_fail(report_fd, "bringing up loopback in the unit's network namespace");
  pid_t init_pid = ::fork();
  if (init_pid < 0) child_fail(report_fd, "forking the unit's init");
  if (init_pid == 0) {
    // PID 1 of the new namespace. Its mounts are private: a copy of a shared mount
    // (a store mount shared so that later FUSE mounts reach other namespaces) would be
    // a slave whose master CRIU cannot reach, and CRIU refuses to dump it ("unreachable
    // sharing"). Mounts the host makes later do not reach the unit.
    if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0)
      child_fail(report_fd, "making the unit's mounts private");
    // The units' network namespace files stay out of the unit: CRIU would find their
    // binds in its mount namespace and want them back on restore, when those of other
    // units may be long gone. (Stacked binds, so every one.)
    for (int i = 0; i < 16 && ::umount2(netns::kDir, MNT_DETACH) == 0; ++i) {
    }
    // A /proc of the unit's own PID namespace: its programs see their own PIDs there,
    // and CRIU's parasite finds /proc/self without making a proc mount point in the
    // unit's working directory (which two units dumped at once would race for).
    if (::mount("proc", "/proc", "proc", MS_NOSUID | MS_NOEXEC | MS_NODEV, nullptr) != 0)
      child_fail(report_fd, "mounting the unit's /proc");
    if (::setsid() < 0) child_fail(report_fd, "becoming a session leader");
    // Opened inside the new mount namespace: CRIU resolves every open file through
    // the unit's own mounts, and a descriptor opened outside would not be found.
    int null_fd = ::open("/dev/null", O_RDONLY);
    if (null_fd < 0) child_fail(report_fd, "opening /dev/null");
    int out_fd = ::open(spec.output.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
    if (out_fd < 0) child_fail(report_fd, "opening the unit's output file");
    // Own stdio, no inherited terminal, and nothing else but the report pipe (fd 3),
    // which gcp-init closes once the command runs.
    if (::dup2(null_fd, 0) < 0 || ::dup2(out_fd, 1) < 0 || ::dup2(out_fd, 2) < 0 || ::dup2(report_fd, 3) < 0)
      child_fail(report_fd, "setting up the unit's stdio");
    ::syscall(SYS_close_range, 4U, ~0U, 0U);
    std::vector<std::string> init_args = {"gcp-init", "--report-fd=3"};
    if (spec.as) {
      // A user's unit gets a login's environment, not root's (nor what gcp-user cleared).
      std::string path = std::getenv("PATH") ? std::getenv("PATH") : "/usr/bin:/bin";
      ::clearenv();
      ::setenv("PATH", path.c_str(), 1);
      ::setenv("HOME", spec.as->home.c_str(), 1);
      ::setenv("SHELL", spec.as->shell.c_str(), 1);
      if (!spec.as->name.empty()) {
        ::setenv("USER", spec.as->name.c_str(), 1);
        ::setenv("LOGNAME", spec.as->name.c_str(), 1);
      }
      std::string groups;
      for (gid_t g : spec.as->groups) groups += (groups.empty() ? "" : ",") + std::to_string(g);
      init_args.push_back("--uid=" + std::to_string(spec.as->uid));
      init_args.push_back("--gid=" + std::to_string(spec.as->gid));
      init_args.push_back("--groups=" + groups);
    }
    ::setenv(names::kEnvJob, spec.job.c_str(), 1);
    ::setenv(names::kEnvUnit, spec.unit.c_str(), 1);
    if (!spec.callback_socket.empty())
      ::setenv(names::kEnvCallbackSocket, spec.callback_socket.c_str(), 1);
    else
      ::unsetenv(names::kEnvCallbackSocket);
    init_args.push_back("--");
    std::vector<char*> argv;
    for (auto& a : init_args) argv.push_back(a.data());
    for (const auto& a : spec.command) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    ::execv(init.c_str(), argv.data());
    child_fail(3, ("running " + init).c_str());
  }
  std::string pid_text = std::to_string(init_pid);
  (void)!write_all(pid_fd, pid_text);
  ::_exit(0);
}

}  // namespace

pid_t launch(cgroup::Cgroups& cgroups, const LaunchSpec& spec) {
  if (spec.command.empty()) throw Error(Exit::kUsage, "starting unit '" + spec.unit + "': no command given");
  std::string init = init_path();
  if (::access(init.c_str(), X_OK) != 0) {
    throw_errno("finding gcp's init '" + init + "'", Exit::kFailed,
                "build gcp with 'make' or set " + std::string(names::kEnvInit));
  }
  std::string what = "starting unit '" + spec.unit + "' of job '" + spec.job + "'";
  cgroups.create(spec.cgroup);
  int report[2], pid_pipe[2];
  if (::pipe2(report, O_CLOEXEC) != 0 || ::pipe2(pid_pipe, O_CLOEXEC) != 0) {
    throw_errno(what + ": creating pipes");
  }
  std::string procs_file = cgroups.freezer_dir(spec.cgroup) + "/cgroup.procs";
  pid_t child = ::fork();
  if (child < 0) throw_errno(what + ": fork");
  if (child == 0) {
    ::close(report[0]);
    ::close(pid_pipe[0]);
    start_namespace(spec, procs_file, init, report[1], pid_pipe[1]);
  }
  ::close(report[1]);
  ::close(pid_pipe[1]);
  std::string pid_text = read_all(pid_pipe[0]);
  ::close(pid_pipe[0]);
  int status = 0;
  while (::waitpid(child, &status, 0) < 0 && errno == EINTR) {
  }
  // EOF on the report pipe means gcp-init exec'd the command; text means it failed.
  std::string report_text = read_all(report[0]);
  ::close(report[0]);
  if (!report_text.empty() || pid_text.empty()) {
    if (!pid_text.empty()) ::kill(static_cast<pid_t>(std::stol(pid_text)), SIGKILL);
    try {
      cgroup::kill_all(cgroups, spec.cgroup, std::chrono::seconds(5));
      cgroups.remove(spec.cgroup);
    } catch (const std::exception&) {
    }
    throw Error(Exit::kFailed, what + ": " + (report_text.empty() ? "the launcher died" : report_text),
                "check the command and that this kernel allows PID namespaces");
  }
  return static_cast<pid_t>(std::stol(pid_text));
}

std::optional<pid_t> root_in_cgroup(cgroup::Cgroups& cgroups, const manifest::Unit& unit) {
  auto procs = cgroups.procs(unit.cgroup);
  std::sort(procs.begin(), procs.end());
  for (pid_t p : procs) {
    auto parent = proc::parent(p);
    if (!parent || !std::binary_search(procs.begin(), procs.end(), *parent)) return p;
  }
  return std::nullopt;
}

manifest::UnitState live_state(cgroup::Cgroups& cgroups, const manifest::Unit& unit) {
  using manifest::UnitState;
  if (cgroups.procs(unit.cgroup).empty()) {
    return unit.state == UnitState::kRunning || unit.state == UnitState::kFrozen ? UnitState::kExited : unit.state;
  }
  return cgroups.freeze_state(unit.cgroup) == cgroup::FreezeState::kThawed ? UnitState::kRunning : UnitState::kFrozen;
}

}  // namespace gcp::unit
