// SPDX-License-Identifier: MIT
#include "gcp/launcher.h"

#include "gcp/caller.h"
#include "gcp/error.h"
#include "gcp/fs.h"
#include "gcp/names.h"
#include "gcp/proc.h"
#include "gcp/process.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <thread>

extern char** environ;

namespace gcp::launcher {
namespace {

std::string replace_all(std::string word, const std::string& from, const std::string& to) {
  for (size_t at = word.find(from); at != std::string::npos; at = word.find(from, at + to.size())) {
    word.replace(at, from.size(), to);
  }
  return word;
}

}  // namespace

Launcher with_default_command(Launcher launcher) {
  if (launcher.command.empty()) launcher.command = default_command(launcher.kind);
  return launcher;
}

std::vector<std::string> default_command(const std::string& kind) {
  if (kind == "ssh") return {"ssh", "-o", "BatchMode=yes", "{node}"};
  // One task on the named node, as a step of the allocation the job runs in, sharing
  // its resources with the steps that run the units (--overlap).
  if (kind == "srun")
    return {"srun",       "--jobid={slurmJob}", "--nodelist={node}", "--nodes=1",
            "--ntasks=1", "--overlap",          "--quiet",           "--kill-on-bad-exit=0"};
  return {};
}

Launcher parse(const json& doc, const std::string& where) {
  return with_default_command(manifest::launcher_from_json(doc, where));
}

std::string config_path() {
  // Fixed in user mode: the launchers, the tools' directory and the stores open to users
  // are root's to say.
  if (caller::for_user()) return names::kDefaultConfig;
  const char* env = std::getenv(names::kEnvConfig);
  return env && *env ? env : names::kDefaultConfig;
}

json config() {
  auto path = config_path();
  auto text = fs::try_read_file(path);
  if (!text) return json::object();
  json doc = manifest::parse(*text, path);
  if (!doc.is_object()) throw Error(Exit::kUsage, path + ": not a JSON object", "see gcp-launchers(7)");
  return doc;
}

Launcher for_node(const manifest::Job& job, const std::string& node, const json& cfg) {
  if (node == proc::node_name()) return {};
  if (job.launcher) return with_default_command(*job.launcher);
  if (cfg.contains("nodes") && cfg["nodes"].is_object() && cfg["nodes"].contains(node)) {
    const auto& n = cfg["nodes"][node];
    if (n.is_object() && n.contains("launcher")) {
      return parse(n["launcher"], config_path() + ": nodes." + node + ".launcher");
    }
  }
  if (cfg.contains("launcher")) return parse(cfg["launcher"], config_path() + ": launcher");
  throw Error(Exit::kUsage,
              "node '" + node + "' is not this node ('" + proc::node_name() + "') and no launcher reaches it",
              "set \"launcher\" in " + config_path() +
                  " (e.g. {\"launcher\": {\"kind\": \"ssh\"}}) or in the "
                  "Job manifest; see gcp-launchers(7)");
}

std::string shell_quote(const std::string& word) {
  if (!word.empty() && word.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
                                              "@%_+=:,./-") == std::string::npos) {
    return word;
  }
  return "'" + replace_all(word, "'", "'\\''") + "'";
}

std::vector<std::string> command_for(const Launcher& l, const std::string& node, const std::vector<std::string>& argv,
                                     const std::vector<std::string>& env) {
  // A node's name goes into root's ssh or srun command line: '-oProxyCommand=...' would
  // be an option there, not a host.
  manifest::check_name("node", node);
  if (l.kind == "local") {
    if (node != proc::node_name()) {
      throw Error(Exit::kUsage,
                  "the local launcher runs on this node ('" + proc::node_name() + "'), not on '" + node + "'",
                  "give node '" + node + "' an ssh or srun launcher (gcp-launchers(7))");
    }
    return argv;
  }
  std::string slurm_job = l.slurm_job;
  if (slurm_job.empty()) {
    if (const char* env_job = std::getenv("SLURM_JOB_ID")) slurm_job = env_job;
  }
  std::vector<std::string> out;
  for (const auto& word : l.command) {
    std::string w = replace_all(word, "{node}", node);
    if (w.find("{slurmJob}") != std::string::npos) {
      if (slurm_job.empty()) {
        throw Error(Exit::kUsage, "the srun launcher needs the Slurm job the units run in",
                    "run inside the allocation (SLURM_JOB_ID), or set \"slurmJob\" in the launcher");
      }
      w = replace_all(w, "{slurmJob}", slurm_job);
    }
    out.push_back(std::move(w));
  }
  if (l.kind == "ssh") {
    // ssh hands the remote shell one string: every word quoted, the settings in front.
    std::string remote;
    if (!env.empty()) {
      remote = "env";
      for (const auto& e : env) remote += " " + shell_quote(e);
    }
    for (const auto& a : argv) remote += (remote.empty() ? "" : " ") + shell_quote(a);
    out.push_back(remote);
  } else {
    out.insert(out.end(), argv.begin(), argv.end());
  }
  return out;
}

std::string tool_path(const std::string& tool, const json& cfg) {
  if (cfg.contains("bin") && cfg["bin"].is_string())
    return (std::filesystem::path(cfg["bin"].get<std::string>()) / tool).string();
  return (std::filesystem::path(process::self_dir()) / tool).string();
}

std::vector<std::string> forwarded_env() {
  std::vector<std::string> out;
  for (char** e = environ; *e; ++e) {
    std::string entry = *e;
    if (entry.rfind(names::kEnvPrefix, 0) != 0) continue;
    // A unit's own settings and the configuration path stay where they are: a node has
    // its own configuration.
    auto is = [&](const char* name) { return entry.rfind(std::string(name) + "=", 0) == 0; };
    if (is(names::kEnvJob) || is(names::kEnvUnit) || is(names::kEnvCallbackSocket) || is(names::kEnvConfig)) continue;
    out.push_back(entry);
  }
  std::sort(out.begin(), out.end());
  return out;
}

Channel::Channel(const std::vector<std::string>& argv, std::string label) : label_(std::move(label)) {
  if (argv.empty()) throw Error(Exit::kFailed, label_ + ": empty command");
  int in[2], out[2];
  if (::pipe2(in, O_CLOEXEC) != 0) throw_errno(label_ + ": creating a pipe");
  if (::pipe2(out, O_CLOEXEC) != 0) {
    ::close(in[0]);
    ::close(in[1]);
    throw_errno(label_ + ": creating a pipe");
  }
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_ = ::fork();
  if (pid_ < 0) {
    int err = errno;
    for (int fd : {in[0], in[1], out[0], out[1]}) ::close(fd);
    errno = err;
    throw_errno(label_ + ": starting '" + argv[0] + "'");
  }
  if (pid_ == 0) {
    ::setpgid(0, 0);
    ::dup2(in[0], STDIN_FILENO);
    ::dup2(out[1], STDOUT_FILENO);
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    for (int sig = 1; sig < NSIG; ++sig) ::signal(sig, SIG_DFL);
    ::execvp(args[0], args.data());
    const char* why = std::strerror(errno);
    (void)!::write(STDERR_FILENO, args[0], std::strlen(args[0]));
    (void)!::write(STDERR_FILENO, ": ", 2);
    (void)!::write(STDERR_FILENO, why, std::strlen(why));
    (void)!::write(STDERR_FILENO, "\n", 1);
    ::_exit(127);
  }
  ::setpgid(pid_, pid_);
  ::close(in[0]);
  ::close(out[1]);
  in_ = in[1];
  out_ = out[0];
}

Channel::~Channel() {
  if (pid_ > 0 && !status_) finish(std::chrono::milliseconds(2000));
  if (out_ >= 0) ::close(out_);
}

bool Channel::send(const json& message) {
  if (in_ < 0) return false;
  std::string line = message.dump() + "\n";
  for (size_t done = 0; done < line.size();) {
    ssize_t put = process::write_quietly(in_, std::string_view(line).substr(done));
    if (put < 0 && errno == EINTR) continue;
    if (put <= 0) {
      close_input();
      return false;
    }
    done += static_cast<size_t>(put);
  }
  return true;
}

std::optional<json> Channel::receive(std::chrono::steady_clock::time_point deadline) {
  timed_out_ = false;
  for (;;) {
    if (auto nl = buffer_.find('\n'); nl != std::string::npos) {
      std::string line = buffer_.substr(0, nl);
      buffer_.erase(0, nl + 1);
      if (line.empty()) continue;
      json doc = manifest::try_parse(line).value_or(json());
      if (!doc.is_object()) {
        throw Error(Exit::kFailed,
                    label_ + " answered something that is not a JSON object: '" + printable(line, 120) + "'",
                    "the launcher must pass the command's stdout through unchanged (no banner, no shell output)");
      }
      return doc;
    }
    if (out_ < 0) return std::nullopt;
    auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      timed_out_ = true;
      return std::nullopt;
    }
    pollfd p{out_, POLLIN, 0};
    int rc = ::poll(&p, 1, static_cast<int>(std::min<long long>(left.count(), 1 << 30)));
    if (rc < 0 && errno == EINTR) continue;
    if (rc <= 0) continue;  // the deadline is checked above
    char buf[1 << 16];
    ssize_t got = ::read(out_, buf, sizeof buf);
    if (got < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (got <= 0) {
      ::close(out_);
      out_ = -1;
      continue;  // a last line without its newline is not a message
    }
    buffer_.append(buf, static_cast<size_t>(got));
  }
}

void Channel::kill() noexcept {
  if (pid_ > 0 && !status_) {
    ::kill(-pid_, SIGKILL);
    ::kill(pid_, SIGKILL);
  }
}

void Channel::close_input() {
  if (in_ >= 0) ::close(in_);
  in_ = -1;
}

std::string Channel::finish(std::chrono::milliseconds grace) {
  close_input();
  if (pid_ > 0 && !status_) {
    auto until = std::chrono::steady_clock::now() + grace;
    int status = 0;
    for (;;) {
      pid_t r = ::waitpid(pid_, &status, WNOHANG);
      if (r == pid_) break;
      if (r < 0 && errno != EINTR) break;
      if (std::chrono::steady_clock::now() >= until) {
        ::kill(-pid_, SIGKILL);
        ::kill(pid_, SIGKILL);
        while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
        }
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    status_ = status;
  }
  if (!status_) return "not started";
  if (WIFEXITED(*status_)) return "exit status " + std::to_string(WEXITSTATUS(*status_));
  if (WIFSIGNALED(*status_)) return "killed by signal " + std::to_string(WTERMSIG(*status_));
  return "ended";
}

}  // namespace gcp::launcher
