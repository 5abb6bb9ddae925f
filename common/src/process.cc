// SPDX-License-Identifier: MIT
#include "gcp/process.h"

#include "gcp/error.h"

#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

extern char** environ;

namespace gcp::process {
namespace {

class Pipe {
 public:
  Pipe() {
    if (::pipe2(fds_, O_CLOEXEC) != 0) throw_errno("creating a pipe");
  }
  ~Pipe() {
    close_read();
    close_write();
  }
  int read_end() const { return fds_[0]; }
  int write_end() const { return fds_[1]; }
  void close_read() { close_fd(0); }
  void close_write() { close_fd(1); }

 private:
  void close_fd(int i) {
    if (fds_[i] >= 0) ::close(fds_[i]);
    fds_[i] = -1;
  }
  int fds_[2] = {-1, -1};
};

// Runs in the forked child: only async-signal-safe calls until exec.
[[noreturn]] void exec_child(const Spec& spec, const std::vector<char*>& argv, const std::vector<char*>& envp,
                             int in_fd, int out_fd, int err_fd) {
  // A checkpointer must not outlive the tool that drives it.
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (spec.own_process_group) ::setpgid(0, 0);
  ::dup2(in_fd, STDIN_FILENO);
  ::dup2(out_fd, STDOUT_FILENO);
  ::dup2(err_fd, STDERR_FILENO);
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  for (int sig = 1; sig < NSIG; ++sig) ::signal(sig, SIG_DFL);
  char pidbuf[24];
  int len = 0;
  for (pid_t p = ::getpid(); p > 0; p /= 10) pidbuf[len++] = static_cast<char>('0' + p % 10);
  for (int i = 0; i < len / 2; ++i) std::swap(pidbuf[i], pidbuf[len - 1 - i]);
  for (const auto& procs : spec.join_cgroups) {
    int fd = ::open(procs.c_str(), O_WRONLY | O_CLOEXEC);
    if (fd < 0 || ::write(fd, pidbuf, static_cast<size_t>(len)) != len) {
      const char msg[] = "gcp: cannot join cgroup before exec: ";
      (void)!::write(STDERR_FILENO, msg, sizeof msg - 1);
      (void)!::write(STDERR_FILENO, procs.c_str(), procs.size());
      (void)!::write(STDERR_FILENO, "\n", 1);
      ::_exit(126);
    }
    ::close(fd);
  }
  if (spec.netns) {
    int fd = ::open(spec.netns->c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0 || ::setns(fd, CLONE_NEWNET) != 0) {
      const char msg[] = "gcp: cannot enter network namespace ";
      (void)!::write(STDERR_FILENO, msg, sizeof msg - 1);
      (void)!::write(STDERR_FILENO, spec.netns->c_str(), spec.netns->size());
      (void)!::write(STDERR_FILENO, "\n", 1);
      ::_exit(126);
    }
    ::close(fd);
  }
  if (spec.run_as) {
    if (::setgroups(0, nullptr) != 0 || ::setgid(spec.run_as->second) != 0 || ::setuid(spec.run_as->first) != 0) {
      const char msg[] = "gcp: cannot change to the user to run as\n";
      (void)!::write(STDERR_FILENO, msg, sizeof msg - 1);
      ::_exit(126);
    }
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // a change of credentials clears it
  }
  ::execvpe(argv[0], argv.data(), envp.data());
  const char* why = std::strerror(errno);
  (void)!::write(STDERR_FILENO, "exec failed: ", 13);
  (void)!::write(STDERR_FILENO, why, std::strlen(why));
  ::_exit(127);
}

}  // namespace

// A child may exit without reading all its input: the write must then fail with EPIPE
// instead of killing this process with SIGPIPE (thread-directed, so it is taken here).
ssize_t write_quietly(int fd, std::string_view data) {
  sigset_t pipe_set, old;
  sigemptyset(&pipe_set);
  sigaddset(&pipe_set, SIGPIPE);
  ::pthread_sigmask(SIG_BLOCK, &pipe_set, &old);
  ssize_t put = ::write(fd, data.data(), data.size());
  int err = errno;
  if (put < 0 && err == EPIPE && !sigismember(&old, SIGPIPE)) {
    timespec zero{0, 0};
    while (::sigtimedwait(&pipe_set, nullptr, &zero) < 0 && errno == EINTR) {
    }
  }
  ::pthread_sigmask(SIG_SETMASK, &old, nullptr);
  errno = err;
  return put;
}

std::string Result::describe() const {
  if (timed_out) return "timed out and was killed";
  if (signal != 0) return "killed by signal " + std::to_string(signal) + " (" + strsignal(signal) + ")";
  return "exit status " + std::to_string(exit_code);
}

Result run(const Spec& spec) {
  if (spec.argv.empty()) throw Error(Exit::kFailed, "running a program: empty command");
  std::vector<std::string> env_strings;
  // An extra entry replaces ours of the same name: with both, getenv() finds ours first.
  auto replaced = [&](const char* entry) {
    for (const auto& extra : spec.env) {
      size_t eq = extra.find('=');
      if (eq != std::string::npos && std::strncmp(entry, extra.c_str(), eq + 1) == 0) return true;
    }
    return false;
  };
  for (char** e = environ; *e; ++e) {
    if (!replaced(*e)) env_strings.emplace_back(*e);
  }
  for (const auto& extra : spec.env) env_strings.push_back(extra);
  std::vector<char*> argv, envp;
  for (const auto& a : spec.argv) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  for (auto& e : env_strings) envp.push_back(e.data());
  envp.push_back(nullptr);

  Pipe in, out, err;
  pid_t pid = ::fork();
  if (pid < 0) throw_errno("starting '" + spec.argv[0] + "'");
  if (pid == 0) exec_child(spec, argv, envp, in.read_end(), out.write_end(), err.write_end());
  if (spec.own_process_group) ::setpgid(pid, pid);  // either side may win the race; both set it
  in.close_read();
  out.close_write();
  err.close_write();

  Result result;
  std::string_view to_write = spec.input ? std::string_view(*spec.input) : std::string_view();
  if (to_write.empty()) in.close_write();
  ::fcntl(in.write_end(), F_SETFL, O_NONBLOCK);
  auto deadline =
      spec.timeout ? std::chrono::steady_clock::now() + *spec.timeout : std::chrono::steady_clock::time_point::max();
  bool out_open = true, err_open = true;
  char buf[65536];
  while (out_open || err_open) {
    pollfd fds[3];
    nfds_t n = 0;
    int out_i = -1, err_i = -1, in_i = -1;
    if (out_open) {
      fds[n] = {out.read_end(), POLLIN, 0};
      out_i = static_cast<int>(n++);
    }
    if (err_open) {
      fds[n] = {err.read_end(), POLLIN, 0};
      err_i = static_cast<int>(n++);
    }
    if (!to_write.empty()) {
      fds[n] = {in.write_end(), POLLOUT, 0};
      in_i = static_cast<int>(n++);
    }
    int wait_ms = -1;
    if (spec.timeout) {
      // Rounded up: a deadline 0.3 ms away is not past (poll would wait 0 ms, and the
      // program would be killed before its time).
      auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) {
        result.timed_out = true;
        break;
      }
      wait_ms = static_cast<int>(left.count());
    }
    int rc = ::poll(fds, n, wait_ms);
    if (rc < 0) {
      if (errno == EINTR) continue;
      break;
    }
    auto drain = [&](int idx, int fd, std::string& into, bool& open) {
      if (idx < 0 || !(fds[idx].revents & (POLLIN | POLLHUP | POLLERR))) return;
      ssize_t got = ::read(fd, buf, sizeof buf);
      if (got > 0)
        into.append(buf, static_cast<size_t>(got));
      else if (got == 0 || (errno != EINTR && errno != EAGAIN))
        open = false;
    };
    drain(out_i, out.read_end(), result.out, out_open);
    drain(err_i, err.read_end(), result.err, err_open);
    if (in_i >= 0 && (fds[in_i].revents & (POLLOUT | POLLERR | POLLHUP))) {
      ssize_t put = write_quietly(in.write_end(), to_write);
      if (put > 0)
        to_write.remove_prefix(static_cast<size_t>(put));
      else if (put < 0 && errno != EAGAIN && errno != EINTR)
        to_write = {};
      if (to_write.empty()) in.close_write();
    }
  }
  if (result.timed_out) ::kill(spec.own_process_group ? -pid : pid, SIGKILL);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (WIFEXITED(status)) {
    result.exit_code = WEXITSTATUS(status);
  } else if (WIFSIGNALED(status)) {
    result.signal = WTERMSIG(status);
  }
  if (result.exit_code == 127 && result.err.rfind("exec failed: ", 0) == 0) {
    throw Error(Exit::kFailed, "running '" + spec.argv[0] + "': " + result.err.substr(13));
  }
  return result;
}

DeferSignals::DeferSignals() {
  sigset_t set;
  sigemptyset(&set);
  for (int sig : {SIGINT, SIGTERM, SIGHUP}) sigaddset(&set, sig);
  ::pthread_sigmask(SIG_BLOCK, &set, &old_);
}

DeferSignals::~DeferSignals() { ::pthread_sigmask(SIG_SETMASK, &old_, nullptr); }

std::optional<std::string> find_in_path(const std::string& name) {
  if (name.find('/') != std::string::npos) {
    if (::access(name.c_str(), X_OK) == 0) return name;
    return std::nullopt;
  }
  const char* path = std::getenv("PATH");
  std::string dirs = path ? path : "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
  size_t start = 0;
  while (start <= dirs.size()) {
    size_t end = dirs.find(':', start);
    if (end == std::string::npos) end = dirs.size();
    std::string dir = dirs.substr(start, end - start);
    if (!dir.empty()) {
      std::string candidate = dir + "/" + name;
      struct stat st {};
      if (::stat(candidate.c_str(), &st) == 0 && S_ISREG(st.st_mode) && ::access(candidate.c_str(), X_OK) == 0) {
        return candidate;
      }
    }
    start = end + 1;
  }
  return std::nullopt;
}

std::string self_dir() {
  std::error_code ec;
  auto exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (ec) return ".";
  return exe.parent_path().string();
}

}  // namespace gcp::process
