// SPDX-License-Identifier: MIT
#include "run.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string_view>

extern char** environ;

namespace gcp::criu {

namespace {

[[noreturn]] void fail_errno(const std::string& what) { throw std::runtime_error(what + ": " + std::strerror(errno)); }

class Pipe {
 public:
  Pipe() {
    if (::pipe2(fds_, O_CLOEXEC) != 0) fail_errno("creating a pipe");
  }
  ~Pipe() {
    close_read();
    close_write();
  }
  Pipe(const Pipe&) = delete;
  Pipe& operator=(const Pipe&) = delete;
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
[[noreturn]] void exec_child(char* const* argv, char* const* envp, int in_fd, int out_fd, int err_fd) {
  // A checkpointer must not outlive the tool that drives it.
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  ::setpgid(0, 0);
  ::dup2(in_fd, STDIN_FILENO);
  ::dup2(out_fd, STDOUT_FILENO);
  ::dup2(err_fd, STDERR_FILENO);
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  for (int sig = 1; sig < NSIG; ++sig) ::signal(sig, SIG_DFL);
  ::execvpe(argv[0], argv, envp);
  const char* why = std::strerror(errno);
  (void)!::write(STDERR_FILENO, "exec failed: ", 13);
  (void)!::write(STDERR_FILENO, why, std::strlen(why));
  ::_exit(127);
}

// A program may exit without reading all its input: the write must then fail with
// EPIPE instead of killing the tool with SIGPIPE (thread-directed, so it is taken here).
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

}  // namespace

std::string Outcome::describe() const {
  if (timed_out) return "timed out and was killed";
  if (signal != 0) return "killed by signal " + std::to_string(signal) + " (" + strsignal(signal) + ")";
  return "exit status " + std::to_string(exit_code);
}

Outcome run(const Command& command) {
  if (command.argv.empty()) throw std::runtime_error("running a program: empty command");
  std::vector<std::string> env_strings;
  // An extra entry replaces ours of the same name: with both, getenv() finds ours first.
  auto replaced = [&](const char* entry) {
    for (const auto& extra : command.env) {
      size_t eq = extra.find('=');
      if (eq != std::string::npos && std::strncmp(entry, extra.c_str(), eq + 1) == 0) return true;
    }
    return false;
  };
  for (char** e = environ; *e; ++e) {
    if (!replaced(*e)) env_strings.emplace_back(*e);
  }
  for (const auto& extra : command.env) env_strings.push_back(extra);
  std::vector<char*> argv, envp;
  for (const auto& a : command.argv) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  for (auto& e : env_strings) envp.push_back(e.data());
  envp.push_back(nullptr);

  Pipe in, out, err;
  pid_t pid = ::fork();
  if (pid < 0) fail_errno("starting '" + command.argv[0] + "'");
  if (pid == 0) exec_child(argv.data(), envp.data(), in.read_end(), out.write_end(), err.write_end());
  ::setpgid(pid, pid);  // either side may win the race; both set it
  in.close_read();
  out.close_write();
  err.close_write();

  Outcome outcome;
  std::string_view to_write = command.input ? std::string_view(*command.input) : std::string_view();
  if (to_write.empty()) in.close_write();
  ::fcntl(in.write_end(), F_SETFL, O_NONBLOCK);
  auto deadline = std::chrono::steady_clock::now() + command.timeout;
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
    // Rounded up: a deadline 0.3 ms away is not past (poll would wait 0 ms, and the
    // program would be killed before its time).
    auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      outcome.timed_out = true;
      break;
    }
    int rc = ::poll(fds, n, static_cast<int>(std::min<long long>(left.count(), 1 << 30)));
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
    drain(out_i, out.read_end(), outcome.out, out_open);
    drain(err_i, err.read_end(), outcome.err, err_open);
    if (in_i >= 0 && (fds[in_i].revents & (POLLOUT | POLLERR | POLLHUP))) {
      ssize_t put = write_quietly(in.write_end(), to_write);
      if (put > 0)
        to_write.remove_prefix(static_cast<size_t>(put));
      else if (put < 0 && errno != EAGAIN && errno != EINTR)
        to_write = {};
      if (to_write.empty()) in.close_write();
    }
  }
  if (outcome.timed_out) ::kill(-pid, SIGKILL);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (WIFEXITED(status)) {
    outcome.exit_code = WEXITSTATUS(status);
  } else if (WIFSIGNALED(status)) {
    outcome.signal = WTERMSIG(status);
  }
  if (outcome.exit_code == 127 && outcome.err.rfind("exec failed: ", 0) == 0) {
    throw std::runtime_error("running '" + command.argv[0] + "': " + outcome.err.substr(13));
  }
  return outcome;
}

std::optional<std::string> find_in_path(const std::string& name) {
  auto executable = [](const std::string& file) {
    struct stat st {};
    return ::stat(file.c_str(), &st) == 0 && S_ISREG(st.st_mode) && ::access(file.c_str(), X_OK) == 0;
  };
  if (name.find('/') != std::string::npos) return executable(name) ? std::optional(name) : std::nullopt;
  const char* path = std::getenv("PATH");
  std::string dirs = path ? path : "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
  for (size_t start = 0; start <= dirs.size();) {
    size_t end = dirs.find(':', start);
    if (end == std::string::npos) end = dirs.size();
    if (end > start) {
      std::string candidate = dirs.substr(start, end - start) + "/" + name;
      if (executable(candidate)) return candidate;
    }
    start = end + 1;
  }
  return std::nullopt;
}

std::optional<std::string> read_file(const std::filesystem::path& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return std::nullopt;
    fail_errno("reading '" + path.string() + "'");
  }
  std::string out;
  char buf[65536];
  for (;;) {
    ssize_t r = ::read(fd, buf, sizeof buf);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) {
      int e = errno;
      ::close(fd);
      errno = e;
      fail_errno("reading '" + path.string() + "'");
    }
    if (r == 0) break;
    out.append(buf, static_cast<size_t>(r));
  }
  ::close(fd);
  return out;
}

void make_dirs(const std::filesystem::path& path, mode_t mode) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) return;
  if (path.has_parent_path() && path.parent_path() != path) make_dirs(path.parent_path(), mode);
  if (::mkdir(path.c_str(), mode) != 0 && errno != EEXIST) fail_errno("creating directory '" + path.string() + "'");
}

void write_file_atomic(const std::filesystem::path& path, const std::string& data, mode_t mode) {
  std::filesystem::path tmp = path;
  tmp += ".tmp." + std::to_string(::getpid());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
  if (fd < 0) fail_errno("creating '" + tmp.string() + "'");
  size_t done = 0;
  bool ok = true;
  while (ok && done < data.size()) {
    ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0)
      ok = false;
    else
      done += static_cast<size_t>(n);
  }
  ok = ok && ::fchmod(fd, mode) == 0 && ::fsync(fd) == 0;
  int e = errno;
  ::close(fd);
  if (!ok || ::rename(tmp.c_str(), path.c_str()) != 0) {
    e = ok ? errno : e;
    ::unlink(tmp.c_str());
    errno = e;
    fail_errno("writing '" + path.string() + "'");
  }
}

std::vector<pid_t> process_tree(pid_t root) {
  std::vector<pid_t> all{root};
  for (size_t i = 0; i < all.size(); ++i) {
    // /proc/PID/task/TID/children lists the children of each thread.
    std::set<pid_t> kids;
    std::error_code ec;
    for (const auto& task : std::filesystem::directory_iterator("/proc/" + std::to_string(all[i]) + "/task", ec)) {
      std::optional<std::string> text;
      try {
        text = read_file(task.path() / "children");
      } catch (const std::exception&) {
        continue;  // the task ended meanwhile
      }
      std::istringstream in(text.value_or(""));
      for (long child; in >> child;) kids.insert(static_cast<pid_t>(child));
    }
    all.insert(all.end(), kids.begin(), kids.end());
  }
  return all;
}

}  // namespace gcp::criu
