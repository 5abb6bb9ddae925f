// SPDX-License-Identifier: MIT
// gcp-slurm run: the life of a batch job through gcp. Everything it does to the job goes
// through the other tools (gcp-isolate, gcp-restart, gcp-checkpoint), which check the
// caller and go through gcp-user for a user; this tool only decides which to run, when.
#include "slurm_tool.h"

#include "gcp/error.h"
#include "gcp/manifest.h"
#include "gcp/names.h"
#include "gcp/proc.h"
#include "gcp/process.h"
#include "gcp/slurm.h"

#include <spdlog/spdlog.h>

#include <signal.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <filesystem>

namespace gcp::slurm_tool {

namespace {

using manifest::json;

std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

// The signals Slurm (and a user at a terminal) stop a batch script with: held from the
// start, taken with sigtimedwait, so none is lost while a tool runs.
sigset_t stop_signals() {
  sigset_t set;
  sigemptyset(&set);
  for (int s : {SIGUSR1, SIGTERM, SIGINT, SIGHUP}) sigaddset(&set, s);
  return set;
}

class Tools {
 public:
  explicit Tools(const Options& opt) : opt_(opt), dir_(process::self_dir()) {}

  // Runs tool `name` with `args` to its end; what it says on stderr is passed on unless
  // `quiet`.
  process::Result run(const std::string& name, std::vector<std::string> args, bool quiet = false) const {
    process::Spec spec;
    spec.argv = {(std::filesystem::path(dir_) / name).string()};
    if (!opt_.store.empty()) {
      spec.argv.push_back(names::kOptStore);
      spec.argv.push_back(opt_.store);
    }
    spec.argv.insert(spec.argv.end(), args.begin(), args.end());
    auto r = process::run(spec);
    if (!quiet && !r.err.empty()) std::fwrite(r.err.data(), 1, r.err.size(), stderr);
    return r;
  }

  // Runs a tool whose stdout is one JSON document; nullopt (with the reason logged) when
  // it fails or prints something else.
  std::optional<json> json_of(const std::string& name, std::vector<std::string> args, bool quiet = false) const {
    auto r = run(name, args, quiet);
    if (!r.ok()) return std::nullopt;
    try {
      return manifest::parse(r.out, name);
    } catch (const Error& e) {
      spdlog::warn("{}", e.what());
      return std::nullopt;
    }
  }

 private:
  const Options& opt_;
  std::string dir_;
};

// What the store says of the job: nullopt when it is not there.
std::optional<json> listed(const Tools& tools, const std::string& job) {
  auto all = tools.json_of("gcp-isolate", {"list"});
  if (!all) throw Error(Exit::kFailed, "gcp-isolate list failed: cannot tell whether job '" + job + "' exists");
  for (const auto& j : *all) {
    if (j.is_object() && j.value("job", "") == job) return j;
  }
  return std::nullopt;
}

bool any_unit(const json& units, const std::vector<std::string>& states) {
  if (!units.is_object()) return false;
  for (const auto& [name, state] : units.items()) {
    if (state.is_string() && std::find(states.begin(), states.end(), state.get<std::string>()) != states.end())
      return true;
  }
  return false;
}

std::string signal_name(int sig) {
  switch (sig) {
    case SIGUSR1:
      return "SIGUSR1";
    case SIGTERM:
      return "SIGTERM";
    case SIGINT:
      return "SIGINT";
    case SIGHUP:
      return "SIGHUP";
  }
  return "signal " + std::to_string(sig);
}

// Seconds between looks at the units: what `gcp-isolate status` costs, against how long a
// batch script goes on after its job has ended.
constexpr time_t kPollSeconds = 2;

double monotonic_s() {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

class Run {
 public:
  Run(const Options& opt, std::string slurm_job, std::string job)
      : opt_(opt), tools_(opt), slurm_job_(std::move(slurm_job)), job_(std::move(job)) {}

  int operator()() {
    const std::string restarts = env("SLURM_RESTART_COUNT");
    const bool requeued = !restarts.empty() && restarts != "0";
    start(requeued, restarts);
    warn_about_grace();
    return watch();
  }

 private:
  // Starts the unit, or restarts the job from its latest checkpoint when it has one.
  void start(bool requeued, const std::string& restarts) {
    auto known = listed(tools_, job_);
    if (known) {
      const json units = known->value("units", json::object());
      if (any_unit(units, {"running", "frozen"})) {
        if (!requeued) {
          throw Error(Exit::kUsage, "job '" + job_ + "' is running already, not started by this batch script",
                      "give this script's job another name (--job), or stop that one first");
        }
        // The last run of this batch job left them (its checkpoint was cut short).
        spdlog::warn("job '{}': units left running by the previous run of Slurm job {}; killing them", job_,
                     slurm_job_);
        if (!tools_.run("gcp-isolate", {"kill", job_}).ok())
          throw Error(Exit::kFailed, "job '" + job_ + "': cannot kill the units left by the previous run");
      }
      if (known->value("checkpoints", 0) > 0) {
        if (restart(restarts)) return;
      } else {
        spdlog::info("job '{}' has no checkpoint yet: starting it from the beginning", job_);
      }
    } else if (requeued) {
      spdlog::info("job '{}' is not in the store (Slurm restart {}): starting it from the beginning", job_, restarts);
    }
    std::vector<std::string> args = {"run", names::kOptJob, job_, names::kOptUnit, opt_.unit};
    if (opt_.keep) {
      args.push_back(names::kOptKeep);
      args.push_back(std::to_string(*opt_.keep));
    }
    args.push_back("--");
    args.insert(args.end(), opt_.command.begin(), opt_.command.end());
    auto started = tools_.json_of("gcp-isolate", args);
    if (!started) throw Error(Exit::kFailed, "starting job '" + job_ + "' failed (gcp-isolate run; see above)");
    spdlog::info("job '{}' started on {} (Slurm job {}); its output goes to {}", job_, proc::node_name(), slurm_job_,
                 first_unit(*started, "output"));
  }

  // true when the job runs again from a checkpoint; false to start it from the beginning.
  bool restart(const std::string& restarts) {
    std::vector<std::string> args = {job_};
    if (opt_.fallback) args.push_back("--fallback");
    if (!opt_.files.empty()) {
      args.push_back(names::kOptFiles);
      args.push_back(opt_.files);
    }
    // Slurm may start the requeued script on another node: the job's units come here.
    if (auto status = tools_.json_of("gcp-isolate", {"status", job_})) {
      const json units = status->value("units", json::array());
      for (const auto& u : units.is_array() ? units : json::array()) {
        if (!u.is_object() || !u.contains("name") || !u["name"].is_string()) continue;
        if (u.value("node", json()) != proc::node_name())
          args.insert(args.end(), {"--place", u["name"].get<std::string>() + "=" + proc::node_name()});
      }
    }
    auto restarted = tools_.json_of("gcp-restart", args);
    if (restarted) {
      spdlog::info("job '{}' restarted from checkpoint {} on {} (Slurm job {}, restart {})", job_,
                   first_unit(*restarted, "restoredFrom"), proc::node_name(), slurm_job_,
                   restarts.empty() ? "0" : restarts);
      return true;
    }
    if (!opt_.start_over) {
      throw Error(Exit::kFailed, "restarting job '" + job_ + "' from its checkpoint failed (see above)",
                  "'gcp-slurm run --fallback' takes an older checkpoint, '--start-over' starts from the beginning");
    }
    spdlog::warn("restarting job '{}' failed: starting it from the beginning (--start-over)", job_);
    return false;
  }

  // A field of the first unit of a Job manifest a tool printed, for the log.
  static std::string first_unit(const json& job, const char* key) {
    auto units = job.find("units");
    if (units == job.end() || !units->is_array() || units->empty() || !(*units)[0].is_object()) return "?";
    auto it = (*units)[0].find(key);
    if (it == (*units)[0].end()) return "?";
    return it->is_string() ? it->get<std::string>() : it->dump();
  }

  // A partition whose GraceTime is shorter than this job's checkpoints take preempts it
  // before its checkpoint commits: said at the start, while the user can still change it.
  void warn_about_grace() const {
    const std::string partition = env("SLURM_JOB_PARTITION");
    if (partition.empty()) return;
    std::string why;
    auto grace = slurm::grace_time(partition, &why);
    if (!grace) {
      spdlog::debug("no grace time of partition {}: {}", partition, why);
      return;
    }
    auto estimate = tools_.json_of("gcp-checkpoint", {"--estimate", job_}, true);
    if (!estimate) return;  // no checkpoint yet: nothing to compare with
    double advised = estimate->value("advisedS", 0.0);
    if (*grace > 0 && *grace < advised) {
      spdlog::warn(
          "partition {} gives a preempted job {:.0f} s (GraceTime), but a checkpoint of job '{}' took up to "
          "{:.1f} s: a preemption may end it before its checkpoint commits (the previous one then stays "
          "the latest); ask for a GraceTime of {:.0f} s",
          partition, *grace, job_, estimate->value("maxS", 0.0), advised);
    }
  }

  // Until the units exit, or a signal stops the job.
  int watch() {
    const sigset_t set = stop_signals();
    double next_due = opt_.if_due_every > 0 ? monotonic_s() + opt_.if_due_every : INFINITY;
    for (;;) {
      timespec wait{kPollSeconds, 0};
      int sig = ::sigtimedwait(&set, nullptr, &wait);
      if (sig > 0) return stop(sig);
      if (errno != EAGAIN && errno != EINTR) throw_errno("waiting for a signal");
      auto status = tools_.json_of("gcp-isolate", {"status", job_});
      if (status && ended(*status)) {
        spdlog::info("job '{}': every unit has exited", job_);
        return 0;
      }
      if (monotonic_s() >= next_due) {
        tools_.run("gcp-checkpoint", {"--if-due", job_});
        next_due = monotonic_s() + opt_.if_due_every;
      }
    }
  }

  static bool ended(const json& status) {
    if (!status.contains("units") || !status["units"].is_array() || status["units"].empty()) return false;
    for (const auto& u : status["units"]) {
      if (!u.is_object()) return false;
      auto state = u.value("state", "");
      if (state == "running" || state == "frozen") return false;
    }
    return true;
  }

  // SIGUSR1 (sbatch --signal=B:USR1@T: ahead of the time limit, and at a preemption with
  // preempt_send_user_signal): checkpoint, stop, requeue. SIGINT, SIGHUP (a user, or
  // 'scancel --batch --signal=INT'): checkpoint and stop. SIGTERM (scancel, or Slurm
  // ending the job without the signal first, KillWait seconds before SIGKILL): stop.
  int stop(int sig) {
    // Between two looks the units may have ended: nothing to checkpoint, nothing to requeue.
    if (auto status = tools_.json_of("gcp-isolate", {"status", job_}, true); status && ended(*status)) {
      spdlog::info("{}: job '{}' has ended already", signal_name(sig), job_);
      return 0;
    }
    if (sig == SIGTERM) {
      spdlog::info(
          "SIGTERM (scancel, or Slurm ending job {} without SIGUSR1 first): stopping job '{}' without a "
          "checkpoint; {}",
          slurm_job_, job_, from_where());
      return tools_.run("gcp-isolate", {"kill", job_}).ok() ? 0 : static_cast<int>(Exit::kFailed);
    }
    const bool requeue = opt_.requeue && sig == SIGUSR1;
    spdlog::info("{}: checkpointing job '{}' and stopping it{}", signal_name(sig), job_,
                 requeue ? ", then requeueing Slurm job " + slurm_job_ : "");
    const double t0 = monotonic_s();
    int rc = 0;
    if (tools_.run("gcp-checkpoint", {job_, "--stop"}).ok()) {
      spdlog::info("job '{}' checkpointed and stopped in {:.1f} s", job_, monotonic_s() - t0);
    } else {
      rc = static_cast<int>(Exit::kFailed);
      spdlog::error("the checkpoint of job '{}' failed: stopping it; {}", job_, from_where());
      // Nothing of the job may outlive its allocation.
      if (!tools_.run("gcp-isolate", {"kill", job_}).ok())
        spdlog::error("killing the units of job '{}' failed too: see above", job_);
    }
    if (requeue) {
      try {
        slurm::requeue(slurm_job_);
        spdlog::info("Slurm job {} requeued", slurm_job_);
        wait_for_requeue();
      } catch (const Error& e) {
        spdlog::error("{}", e.what());
        if (!e.hint().empty()) std::fprintf(stderr, "gcp-slurm: hint: %s\n", e.hint().c_str());
        rc = static_cast<int>(e.code());
      }
    }
    return rc;
  }

  // Where the job continues when it runs again, for the log; never throws (it is said
  // while the job is being stopped).
  std::string from_where() const {
    std::optional<json> known;
    try {
      known = listed(tools_, job_);
    } catch (const Error& e) {
      return "its checkpoints are unknown (" + std::string(e.what()) + ")";
    }
    int count = known ? known->value("checkpoints", 0) : 0;
    return count > 0 ? "if it runs again it continues from its latest whole checkpoint"
                     : "it has no checkpoint: if it runs again it starts from the beginning";
  }

  // A batch script that ends before Slurm has acted on its requeue ends the job instead
  // (FAILED, not requeued): it waits for the SIGTERM that ends it for the requeue.
  void wait_for_requeue() const {
    sigset_t term;
    sigemptyset(&term);
    sigaddset(&term, SIGTERM);
    timespec wait{120, 0};
    if (::sigtimedwait(&term, nullptr, &wait) < 0)
      spdlog::warn("Slurm job {} was not ended for its requeue within 120 s", slurm_job_);
  }

  const Options& opt_;
  Tools tools_;
  std::string slurm_job_;
  std::string job_;
};

}  // namespace

int run(const Options& opt) {
  const std::string slurm_job = env("SLURM_JOB_ID");
  if (slurm_job.empty()) {
    throw Error(Exit::kUsage, "SLURM_JOB_ID is not set: gcp-slurm run belongs in a Slurm batch script",
                "put 'exec gcp-slurm run -- COMMAND' in the script you give sbatch (gcp-slurm(7))");
  }
  if (!slurm::valid_job_id(slurm_job)) {
    throw Error(Exit::kUsage, "SLURM_JOB_ID is '" + printable(slurm_job, 40) + "', not a Slurm job id");
  }
  const std::string job = opt.job.empty() ? "slurm-" + slurm_job : opt.job;
  manifest::check_name("job", job);
  manifest::check_name("unit", opt.unit);
  const sigset_t set = stop_signals();
  if (::sigprocmask(SIG_BLOCK, &set, nullptr) != 0) throw_errno("holding signals");
  return Run(opt, slurm_job, job)();
}

}  // namespace gcp::slurm_tool
