// SPDX-License-Identifier: MIT
#include "gcp/jobs.h"

#include <signal.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <exception>
#include <future>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <system_error>
#include <thread>

#include "gcp/deps.h"
#include "gcp/error.h"
#include "gcp/gate.h"
#include "gcp/image_source.h"
#include "gcp/launcher.h"
#include "gcp/log.h"
#include "gcp/netns.h"
#include "gcp/proc.h"
#include "gcp/process.h"
#include "gcp/translib_loader.h"
#include "gcp/unit.h"

#include "coordinator.h"

namespace gcp::jobs {
namespace {

using manifest::json;

// Holds SIGINT, SIGTERM and SIGHUP while units may be frozen, so that an operator's
// Ctrl-C lands after the job is thawed again instead of leaving it frozen.
class DeferSignals {
 public:
  DeferSignals() {
    sigset_t set;
    sigemptyset(&set);
    for (int sig : {SIGINT, SIGTERM, SIGHUP}) sigaddset(&set, sig);
    ::sigprocmask(SIG_BLOCK, &set, &old_);
  }
  ~DeferSignals() { ::sigprocmask(SIG_SETMASK, &old_, nullptr); }
  DeferSignals(const DeferSignals&) = delete;
  DeferSignals& operator=(const DeferSignals&) = delete;

 private:
  sigset_t old_;
};


// One loaded and probed translib per name, for the units of one round. prefetch() loads
// and probes in the background (a probe runs the checkpointer's own checks, e.g.
// `criu check`, ~0.2 s) while the caller does other work, e.g. reads the images back.
class Translibs {
 public:
  using Loaded = std::pair<translib::Translib, json>;

  void prefetch(const std::string& name) {
    if (loaded_.count(name) || pending_.count(name)) return;
    pending_.emplace(name, std::async(std::launch::async, [name] { return load_and_probe(name); }));
  }

  /// What the translib's probe said: {checkpointer, version, path}.
  const json& probed(const std::string& name) { return entry(name).second; }

  const translib::Translib& get(const std::string& name) { return entry(name).first; }

 private:
  static Loaded load_and_probe(const std::string& name) {
    auto lib = translib::Translib::load(name);
    json info = lib.probe();
    spdlog::debug("translib '{}' {}: {} {} at {}", name, lib.version(), info.value("checkpointer", "?"),
                  info.value("version", "?"), info.value("path", "?"));
    return {std::move(lib), std::move(info)};
  }

  Loaded& entry(const std::string& name) {
    auto it = loaded_.find(name);
    if (it != loaded_.end()) return it->second;
    auto pending = pending_.find(name);
    if (pending == pending_.end()) return loaded_.emplace(name, load_and_probe(name)).first->second;
    auto future = std::move(pending->second);
    pending_.erase(pending);
    return loaded_.emplace(name, future.get()).first->second;  // rethrows what the probe threw
  }

  std::map<std::string, Loaded> loaded_;
  std::map<std::string, std::future<Loaded>> pending_;  // joined by their destructors
};

// The staging directory goes away with an aborted round; the checkpointer's log of a
// failed unit is kept in the job's logs, and the message points there instead.
std::string keep_failure_log(store::Store& store, const store::Staging& staging,
                             const std::string& unit, std::string message) {
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(staging.unit_dir(unit), ec)) {
    if (entry.path().extension() != ".log") continue;
    auto kept = store.job_dir(staging.job) / "logs" /
                ("failed-" + std::to_string(staging.seq) + "-" + unit + "-" +
                 entry.path().filename().string());
    std::filesystem::copy_file(entry.path(), kept,
                               std::filesystem::copy_options::overwrite_existing, ec);
    if (ec) continue;
    for (auto pos = message.find(entry.path().string()); pos != std::string::npos;
         pos = message.find(entry.path().string(), pos + 1)) {
      message.replace(pos, entry.path().string().size(), kept.string());
    }
  }
  return message;
}

// "4.2.1" < "4.10": numeric parts compared one by one.
bool version_less(const std::string& a, const std::string& b) {
  std::istringstream x(a), y(b);
  std::string pa, pb;
  while (true) {
    bool more_a = static_cast<bool>(std::getline(x, pa, '.'));
    bool more_b = static_cast<bool>(std::getline(y, pb, '.'));
    if (!more_a || !more_b) return !more_a && more_b;
    long na = std::atol(pa.c_str()), nb = std::atol(pb.c_str());
    if (na != nb) return na < nb;
  }
}

// One event to every unit at once; a unit without an endpoint (a job from before
// callbacks) gets nothing.
std::vector<events::Result> deliver(const std::vector<const manifest::Unit*>& units, events::Event event,
                                    const manifest::Job& job, uint64_t seq, std::chrono::milliseconds deadline) {
  std::vector<std::pair<manifest::Callbacks, events::Request>> batch;
  for (const auto* u : units) {
    batch.push_back({u->callbacks, {event, job.name, u->name, seq, deadline, u->pid, job.owner}});
  }
  return events::deliver_all(batch);
}

// The option, else the job's policy, else the default.
std::chrono::milliseconds callback_deadline(const std::optional<std::chrono::milliseconds>& option,
                                            const manifest::Job& job) {
  if (option) return *option;
  if (job.callback_timeout_ms) return std::chrono::milliseconds(*job.callback_timeout_ms);
  return events::kDefaultDeadline;
}

bool has_callbacks(const manifest::Unit& u) { return !u.callbacks.socket.empty() || !u.callbacks.hooks.empty(); }

// Events after which the application goes on anyway: a failure is logged, not fatal.
void warn_failed(const std::vector<const manifest::Unit*>& units, const std::vector<events::Result>& results,
                 const std::string& what) {
  for (size_t i = 0; i < units.size(); ++i) {
    if (!results[i].ok) spdlog::warn("{}: unit '{}': {}", what, units[i]->name, results[i].message);
  }
}

void thaw_all(cgroup::Cgroups& cgroups, const std::vector<const manifest::Unit*>& units) {
  for (const auto* u : units) cgroup::thaw_quietly(cgroups, u->cgroup);
}

// Kills every process of the units (frozen ones too) and removes their cgroups and
// callback sockets.
void stop_units(cgroup::Cgroups& cgroups, const std::string& job, const std::vector<const manifest::Unit*>& units) {
  for (const auto* u : units) {
    cgroup::kill_all(cgroups, u->cgroup, std::chrono::seconds(10));
    cgroups.remove(u->cgroup);
    events::remove_socket(u->callbacks.socket);
    if (u->network) netns::remove(job, u->name);
  }
}

// A checkpoint records who wrote it; an older checkpointer than that may not read it.
void check_versions(Translibs& translibs, const manifest::CheckpointUnit& cu,
                    const std::string& what) {
  const auto& lib = translibs.get(cu.translib);
  const json& here = translibs.probed(cu.translib);
  std::string installed = here.value("version", "");
  if (!cu.checkpointer_version.empty() && !installed.empty() &&
      version_less(installed, cu.checkpointer_version)) {
    throw Error(Exit::kNoCheckpointer,
                what + ": unit '" + cu.name + "' was written by " + cu.checkpointer + " " +
                    cu.checkpointer_version + ", this node has " +
                    here.value("checkpointer", cu.translib) + " " + installed +
                    ", which may not read it",
                "install " + cu.checkpointer + " " + cu.checkpointer_version + " or newer" +
                    (cu.checkpointer == "criu" ? " (GCP_CRIU selects the binary)" : ""));
  }
  if (!cu.translib_version.empty() && cu.translib_version != lib.version()) {
    spdlog::debug("unit '{}' was checkpointed by translib '{}' {}, restoring with {}", cu.name,
                  cu.translib, cu.translib_version, lib.version());
  }
}

// A unit's network on this node: the parent device this node's configuration names,
// else the one it had where it ran before.
netns::Config network_on_this_node(const manifest::Network& n) {
  return {n.address, netns::configured_parent().value_or(n.parent), n.gateway, n.mac};
}

}  // namespace

bool uncoordinated(const manifest::Job& job) {
  if (!job.extra.contains("policy") || !job.extra["policy"].contains("mode")) return false;
  const auto& mode = job.extra["policy"]["mode"];
  if (mode == "uncoordinated") return true;
  if (mode == "coordinated") return false;
  throw Error(Exit::kUsage, "job '" + job.name + "': policy.mode is " + mode.dump() + ", not \"coordinated\" or \"uncoordinated\"",
              "fix the Job manifest (gcp-isolate run --uncoordinated sets it)");
}

fs::FileLock lock_job(store::Store& store, const std::string& job) {
  load(store, job);  // a job that does not exist or is not ours gets no lock file
  auto held = store.try_lock_job(job);
  if (!held) {
    throw Error(Exit::kBusy,
                "job '" + job + "' is busy: another checkpoint or restart holds its lock",
                "retry when it has finished");
  }
  return std::move(*held);
}

void apply_retention(store::Store& store, const std::string& job_name, std::optional<uint64_t> keep) {
  if (!keep) return;
  auto all = store.checkpoints(job_name);
  for (size_t i = 0; i + *keep < all.size(); ++i) {
    try {
      store.remove_checkpoint(job_name, all[i]);
      store.append_event(job_name, {{"event", "checkpoint-removed"}, {"seq", all[i]}, {"keep", *keep}});
    } catch (const Error& e) {
      spdlog::warn("keeping the last {} checkpoints of job '{}': {}", *keep, job_name, e.what());
    }
  }
}

std::vector<uint64_t> restartable(store::Store& store, const std::string& job_name) {
  auto all = store.checkpoints(job_name);
  if (all.empty()) {
    throw Error(Exit::kUsage, "job '" + job_name + "' has no committed checkpoint to restart",
                "take one with 'gcp-checkpoint " + job_name + "'");
  }
  return all;
}

uint64_t latest_whole(store::Store& store, const std::string& job_name, const std::vector<uint64_t>& all) {
  for (auto it = all.rbegin(); it != all.rend(); ++it) {
    if (!store.load_checkpoint_metadata(job_name, *it).extra.value("partial", false)) return *it;
  }
  return all.back();
}

manifest::Job load(store::Store& store, const std::string& job) {
  manifest::check_name("job", job);
  auto loaded = store.load_job(job);
  if (!loaded) {
    throw Error(Exit::kUsage, "job '" + job + "' is not in store '" + store.root().string() + "'",
                "list the jobs with 'gcp-isolate list', or pass --store");
  }
  uid_t me = ::geteuid();
  if (me != 0 && me != loaded->owner) {
    throw Error(Exit::kNotPermitted, "job '" + job + "' belongs to uid " +
                                         std::to_string(loaded->owner) + ", not to you (uid " +
                                         std::to_string(me) + ")");
  }
  return *loaded;
}

std::string adopt(store::Store& store, cgroup::Cgroups& cgroups, std::string job_name,
                  const std::string& unit_name, const grouping::Spec& spec) {
  using grouping::Kind;
  auto all = grouping::snapshot();
  grouping::Members members = grouping::resolve(spec, all);
  if (!members.root) {
    std::string tops;
    for (size_t i = 0; i < members.tops.size() && i < 4; ++i) {
      pid_t p = members.tops[i];
      tops += (i ? ", " : "") + std::to_string(p) + " (" + all.at(p).comm + ")";
    }
    throw Error(Exit::kUsage,
                grouping::describe(spec) + " is not one process tree: pids " + tops +
                    " have no parent in it, and the checkpointer dumps one tree",
                "give the PID of their common parent with --pid");
  }
  pid_t root = *members.root;
  if (job_name.empty()) {
    job_name = grouping::name(spec.kind) + "-" +
               (spec.kind == Kind::kCgroup ? std::filesystem::path(spec.cgroup).filename().string()
                                           : std::to_string(spec.pid));
  }
  manifest::check_name("job", job_name);
  manifest::check_name("unit", unit_name);
  uid_t owner = all.at(root).uid;
  uid_t me = ::geteuid();
  std::vector<pid_t> tree = grouping::resolve({Kind::kTree, root, {}}, all).pids;
  for (pid_t pid : tree) {
    if (me != 0 && all.at(pid).uid != me) {
      throw Error(Exit::kNotPermitted, "pid " + std::to_string(pid) + " (" + all.at(pid).comm +
                                           ") belongs to uid " + std::to_string(all.at(pid).uid) +
                                           ", not to you (uid " + std::to_string(me) + ")");
    }
  }
  if (tree.size() > members.pids.size()) {
    spdlog::warn("{} has {} process(es); the unit takes in the whole tree of pid {} ({}): {} process(es)",
                 grouping::describe(spec), members.pids.size(), root, all.at(root).comm, tree.size());
  }
  // A freezer cgroup named by the spec stays the unit's (a batch system may track the
  // job by it); everything else moves into gcp's own.
  std::string cg = cgroup::unit_path(job_name, unit_name);
  if (spec.kind == Kind::kCgroup) {
    auto file = grouping::cgroup_procs_file(spec.cgroup);
    std::string freezer = cgroups.freezer_dir("");
    while (!freezer.empty() && freezer.back() == '/') freezer.pop_back();
    if (file && file->rfind(freezer + "/", 0) == 0) {
      cg = file->substr(freezer.size() + 1, file->size() - freezer.size() - 1 - std::string("/cgroup.procs").size());
    }
  }

  auto held = store.try_lock_job(job_name);
  if (!held) throw Error(Exit::kBusy, "job '" + job_name + "' is busy (checkpoint or restart running)", "retry later");
  if (store.load_job(job_name)) {
    manifest::Job existing = load(store, job_name);
    const manifest::Unit* u = existing.find_unit(unit_name);
    if (existing.units.size() == 1 && u && u->grouping == grouping::name(spec.kind) && u->pid == root &&
        u->cgroup == cg) {
      return job_name;  // registered before, e.g. by the previous run of the same cron line
    }
    throw Error(Exit::kUsage,
                "job '" + job_name + "' exists and is not " + grouping::describe(spec) + " (root pid " +
                    std::to_string(root) + ")",
                "name the job (gcp-checkpoint NAME --pid ...), or remove the old one with 'gcp-store rm " + job_name + "'");
  }
  cgroups.create(cg);
  // A child forked meanwhile by a process not yet moved is not in the cgroup: look
  // again until the tree holds nothing new.
  std::set<pid_t> moved;
  for (int pass = 0; pass < 5; ++pass) {
    bool more = false;
    for (pid_t pid : tree) {
      if (!moved.insert(pid).second) continue;
      more = true;
      try {
        cgroups.attach(cg, pid);
      } catch (const Error&) {
        if (proc::alive(pid)) throw;  // one that ended meanwhile needs no cgroup
      }
    }
    if (!more) break;
    try {
      tree = grouping::resolve({Kind::kTree, root, {}}, grouping::snapshot()).pids;
    } catch (const Error&) {
      break;  // the root is gone; the checkpoint will say so
    }
  }
  manifest::Job job;
  job.name = job_name;
  job.owner = owner;
  job.created = manifest::now_rfc3339();
  manifest::Unit u;
  u.name = unit_name;
  u.node = proc::node_name();
  u.grouping = grouping::name(spec.kind);
  u.cgroup = cg;
  u.translib = "criu";
  u.command = {proc::cmdline(root)};
  u.pid = root;
  u.state = "running";
  u.extra["adopted"] = {{"spec", grouping::describe(spec)}, {"at", job.created}};
  job.units.push_back(u);
  store.save_job(job);
  store.append_event(job_name, {{"event", "adopted"}, {"unit", unit_name}, {"root", root}, {"processes", moved.size()}});
  spdlog::info("registered {} as job '{}' (unit '{}', {} process(es), root pid {})", grouping::describe(spec),
               job_name, unit_name, moved.size(), root);
  return job_name;
}

manifest::Checkpoint checkpoint(store::Store& store, cgroup::Cgroups& cgroups,
                                const std::string& job_name, const CheckpointOptions& given) {
  const bool in_round = given.round != nullptr;
  std::string node = proc::node_name();
  CheckpointOptions options = given;
  bool partial = false;
  if (!in_round) {
    manifest::Job job = load(store, job_name);
    if (uncoordinated(job)) options.uncoordinated = true;
    if (options.uncoordinated) {
      // Each node checkpoints its own units, on its own (e.g. from cron): the units of
      // the job that run here, in one checkpoint of their own.
      std::vector<std::string> here;
      for (const auto& u : job.units) {
        if (chosen(options.units, u.name) && u.node == node) here.push_back(u.name);
      }
      if (here.empty()) {
        throw Error(Exit::kUsage, "no unit of job '" + job_name + "' runs on this node ('" + node + "')",
                    "an uncoordinated checkpoint is taken on each unit's own node (e.g. by cron there)");
      }
      partial = here.size() < job.units.size();
      options.units = here;
    } else if (spans_nodes(job, options.units)) {
      return checkpoint_across(store, job_name, options);
    }
  }
  // One node's part of a round runs under the job checkpointer's lock.
  std::optional<fs::FileLock> held;
  if (!in_round) held.emplace(lock_job(store, job_name));
  manifest::Job job = load(store, job_name);
  std::vector<const manifest::Unit*> units;
  for (const auto& u : job.units) {
    if (!chosen(options.units, u.name)) continue;
    if (u.node != node) {
      throw Error(Exit::kUsage,
                  "unit '" + u.name + "' of job '" + job_name + "' runs on node '" + u.node +
                      "', this is '" + node + "'",
                  "run gcp-checkpoint on that node; jobs across nodes need the job checkpointer");
    }
    std::string state = unit::live_state(cgroups, u);
    if (state == "frozen") {
      throw Error(Exit::kFailed,
                  "unit '" + u.name + "' of job '" + job_name + "' is frozen by someone else",
                  "thaw it first (freezer.state in " + cgroups.freezer_dir(u.cgroup) + ")");
    }
    if (state != "running") {
      // A finished unit has nothing left to save; the checkpoint holds the others.
      spdlog::warn("unit '{}' of job '{}' is {}: not part of this checkpoint", u.name, job_name,
                   state);
      continue;
    }
    // The manifest names the process to dump; only one inside the unit's own cgroup
    // may be dumped, whatever the manifest says.
    auto procs = cgroups.procs(u.cgroup);
    if (!u.pid || std::find(procs.begin(), procs.end(), *u.pid) == procs.end()) {
      throw Error(Exit::kFailed,
                  "unit '" + u.name + "' of job '" + job_name + "': its recorded pid " +
                      (u.pid ? std::to_string(*u.pid) : std::string("(none)")) +
                      " is not in its cgroup '" + u.cgroup + "'",
                  "the Job manifest is stale or was edited; 'gcp-isolate status " + job_name +
                      "' shows the units");
    }
    units.push_back(&u);
  }
  if (units.empty()) {
    throw Error(Exit::kFailed, "job '" + job_name + "' has no running unit: nothing to checkpoint",
                "restart it with 'gcp-restart " + job_name + "'");
  }

  Translibs translibs;
  for (const auto* u : units) translibs.get(u->translib);

  store::Staging staging = in_round ? store.join(job_name, options.seq, node) : store.begin(job_name);
  manifest::Checkpoint cp;
  cp.job = job_name;
  cp.seq = staging.seq;
  cp.created = manifest::now_rfc3339();
  cp.mode = options.uncoordinated ? "uncoordinated" : "coordinated";
  if (partial) cp.extra["partial"] = true;
  cp.kernel = proc::kernel_release();
  std::vector<json> results(units.size());
  std::vector<double> freeze_ms(units.size()), dump_ms(units.size());
  std::vector<std::optional<Error>> errors(units.size());
  const bool callbacks = std::any_of(units.begin(), units.end(), [](auto* u) { return has_callbacks(*u); });
  const auto deadline = callback_deadline(options.callback_timeout, job);
  std::vector<events::Result> pre(units.size()), post(units.size());
  // Set while the applications have been told to quiesce and not yet to resume.
  bool quiesced = false;
  // Units whose network is locked while they are stopped (--stop) or until every unit of
  // a round across nodes is dumped; unlocked on failure.
  std::vector<const manifest::Unit*> locked;
  auto unlock_all = [&](std::vector<const manifest::Unit*>& which) {
    for (const auto* u : which) {
      try {
        netns::unlock(job_name, u->name);
      } catch (const Error& e) {
        spdlog::warn("{}", e.what());
      }
    }
    which.clear();
  };

  // The dumps run in threads of their own. With gates (gcp-translib(7)) they start
  // before the freeze and wait at their gates until every unit is frozen.
  std::vector<std::thread> workers;
  std::vector<gate::Gate> gates;
  std::optional<store::ScratchDir> gate_dir;
  auto join_all = [&] {
    for (auto& g : gates) g.call_off();  // no-op for a gate opened already
    for (auto& w : workers) w.join();
    workers.clear();
  };

  auto fail = [&](const std::string& message, std::string hint) {
    join_all();
    if (quiesced) {
      warn_failed(units, deliver(units, events::Event::kAbort, job, staging.seq, deadline),
                  "delivering abort");
      if (hint.empty()) hint = "the job keeps running and was told to resume (abort); the previous checkpoint is still the latest";
    }
    unlock_all(locked);
    store.abort(staging);
    // The job checkpointer records the round's failure.
    if (!in_round) {
      store.append_event(job_name, {{"event", "checkpoint-failed"}, {"seq", staging.seq}, {"error", message}});
    }
    throw Error(Exit::kFailed, message, hint);
  };

  Clock::time_point t_start, t_frozen, t_dumped, t_thawed;
  bool keep_frozen = options.stop;
  // Once told to quiesce, the applications must hear post-checkpoint or abort: an
  // operator's Ctrl-C waits for that too.
  std::optional<DeferSignals> until_resumed;
  if (callbacks) {
    until_resumed.emplace();
    log::phase("checkpoint {} of job '{}': pre-checkpoint callbacks of {} unit(s)", staging.seq, job_name, units.size());
    auto t = Clock::now();
    quiesced = true;
    pre = deliver(units, events::Event::kPreCheckpoint, job, staging.seq, deadline);
    cp.timings["preCheckpointMs"] = round_ms(ms_between(t, Clock::now()));
    for (size_t i = 0; i < units.size(); ++i) {
      if (!pre[i].ok) {
        fail("checkpoint of job '" + job_name + "' aborted: unit '" + units[i]->name + "': " + pre[i].message, "");
      }
    }
  }

  // After the applications have drained (a connection closed in pre-checkpoint is no
  // tie) and before anything is frozen: a unit tied to the outside would restart broken.
  auto t_deps = Clock::now();
  std::vector<deps::UnitSpec> specs;
  for (const auto* u : units) specs.push_back({u->name, deps::spec_of(*u), u->network.has_value()});
  std::optional<deps::Graph> graph;
  try {
    deps::Context context{.coordinated = !options.uncoordinated, .stop = options.stop, .peers = options.peers};
    graph = options.graph ? options.graph(job_name, specs) : deps::build(job_name, specs, context);
  } catch (const Error& e) {
    fail("checkpoint of job '" + job_name + "' aborted: " + e.what(), e.hint());
  }
  std::vector<std::vector<std::string>> unit_warnings(units.size());
  for (size_t i = 0; i < units.size(); ++i) {
    auto bad = graph->breaking(i);
    // Checkpointed one by one, units that talk to each other are not consistent with
    // each other: the operator chose that; the restart warns.
    if (options.uncoordinated) {
      std::erase_if(bad, [&](const deps::Tie* t) {
        if (t->scope != deps::Scope::kJob) return false;
        unit_warnings[i].push_back(t->kind + " " + t->object + ": " + t->advice);
        return true;
      });
    }
    if (bad.empty()) continue;
    const deps::Tie& t = *bad.front();
    std::string what = "unit '" + units[i]->name + "' of job '" + job_name + "' would restart broken: " +
                       t.kind + " " + t.object + ": " + t.advice +
                       (bad.size() > 1 ? " (and " + std::to_string(bad.size() - 1) + " more)" : "");
    if (!options.force) {
      fail(what + "; nothing was checkpointed",
           "'gcp-deps " + job_name + " --format text' shows every tie; --force checkpoints anyway");
    }
    spdlog::warn("{} (checkpointing anyway: --force)", what);
  }
  std::vector<std::vector<std::string>> unit_needs(units.size());
  for (size_t i = 0; i < units.size(); ++i) {
    auto n = graph->needs(i);
    unit_needs[i].assign(n.begin(), n.end());
    if (!n.empty()) spdlog::debug("unit '{}': its ties need of the checkpointer: {}", units[i]->name, fmt::join(n, " "));
  }
  cp.timings["depsMs"] = round_ms(ms_between(t_deps, Clock::now()));

  // Units never stay frozen for good: if this process dies (even by SIGKILL) or hangs
  // while they are, the watchdog thaws them.
  std::optional<cgroup::ThawWatchdog> watchdog;
  {
    std::vector<std::string> dirs;
    for (const auto* u : units) dirs.push_back(cgroups.freezer_dir(u->cgroup));
    try {
      watchdog.emplace(dirs, options.max_frozen);
    } catch (const Error& e) {
      fail("checkpoint of job '" + job_name + "' not started: " + e.what(), "nothing was frozen; retry");
    }
  }
  // A gate for every unit when every unit's translib takes one (GCP_DUMP_GATE=0: none).
  const char* gate_env = std::getenv("GCP_DUMP_GATE");
  const bool gated = !(gate_env && std::string(gate_env) == "0") &&
                     std::all_of(units.begin(), units.end(), [&](const auto* u) {
                       return (translibs.get(u->translib).capabilities() & GCP_CAP_DUMP_GATE) != 0;
                     });
  std::vector<Clock::time_point> dump_end(units.size());
  std::vector<std::atomic<bool>> dumped(units.size());  // the thread of unit i is done
  // Dumps unit i in a thread; with a gate, its checkpointer waits there.
  auto launch = [&](size_t i) {
    try {
      workers.emplace_back([&, i] {
        const auto* u = units[i];
        auto t = Clock::now();
        try {
          fs::make_dirs(staging.unit_dir(u->name), 0700);
          json request = {{"pid", u->pid.value_or(0)},
                          {"imagesDir", staging.unit_dir(u->name).string()},
                          {"grouping", u->grouping},
                          {"freezeCgroup", cgroups.freezer_dir(u->cgroup)},
                          {"leaveRunning", true},
                          {"needs", unit_needs[i]}};
          if (u->network) request["netns"] = netns::path(job_name, u->name);
          if (gated) request["gate"] = gates[i].request();
          results[i] = translibs.get(u->translib).checkpoint(request);
        } catch (const Error& e) {
          errors[i] = e;
        } catch (const std::exception& e) {
          errors[i] = Error(Exit::kFailed, e.what());
        }
        dump_end[i] = Clock::now();
        dump_ms[i] = ms_between(t, dump_end[i]);
        dumped[i] = true;
      });
    } catch (const std::system_error& e) {
      join_all();
      thaw_all(cgroups, units);
      fail("checkpoint of job '" + job_name + "' aborted: starting a dump thread: " + e.what(), "");
    }
  };
  auto dump_failed = [&](size_t i) {
    fail("checkpoint of job '" + job_name + "' aborted: unit '" + units[i]->name +
             "': " + keep_failure_log(store, staging, units[i]->name, errors[i]->what()),
         errors[i]->hint().empty() ? "the job was thawed and keeps running; the previous "
                                     "checkpoint is still the latest"
                                   : errors[i]->hint());
  };

  log::phase("checkpoint {} of job '{}': {}freezing and dumping {} unit(s)", staging.seq, job_name,
             gated ? "starting the checkpointer, " : "", units.size());
  {
    DeferSignals defer;
    if (gated) {
      // The checkpointers start while the job runs; each says "ready" at its gate.
      auto t_launch = Clock::now();
      try {
        gate_dir.emplace("gate-" + job_name);
        for (size_t i = 0; i < units.size(); ++i) gates.emplace_back(gate_dir->path(), std::to_string(i));
      } catch (const Error& e) {
        fail("checkpoint of job '" + job_name + "' not started: " + e.what(), "nothing was frozen; retry");
      }
      for (size_t i = 0; i < units.size(); ++i) launch(i);
      const auto give_up = t_launch + std::chrono::seconds(120);
      for (size_t i = 0; i < units.size(); ++i) {
        for (;;) {
          bool ready = false;
          std::optional<Error> bad;
          try {
            ready = gates[i].wait_ready(std::chrono::milliseconds(20));
          } catch (const Error& e) {
            bad = e;
          }
          if (bad) fail("checkpoint of job '" + job_name + "' aborted: unit '" + units[i]->name + "': " + bad->what(), "");
          if (ready) break;
          // A checkpointer that ended before its gate failed to start: its error says why.
          for (size_t j = 0; j < units.size(); ++j) {
            if (gates[j].ready() || !dumped[j]) continue;
            join_all();
            if (errors[j]) dump_failed(j);
            fail("checkpoint of job '" + job_name + "' aborted: unit '" + units[j]->name +
                     "': the checkpointer ended before its gate",
                 "");
          }
          if (Clock::now() > give_up) {
            fail("checkpoint of job '" + job_name + "' aborted: unit '" + units[i]->name +
                     "': the checkpointer did not start within 120 s",
                 "nothing was frozen; see the checkpointer's log in the job's logs and retry");
          }
        }
      }
      cp.timings["checkpointerStartMs"] = round_ms(ms_between(t_launch, Clock::now()));
    }
    t_start = Clock::now();
    std::vector<const manifest::Unit*> frozen;
    for (size_t i = 0; i < units.size(); ++i) {
      auto t = Clock::now();
      try {
        cgroup::freeze(cgroups, units[i]->cgroup, options.freeze_timeout);
      } catch (const Error& e) {
        thaw_all(cgroups, frozen);
        fail("checkpoint of job '" + job_name + "' aborted: unit '" + units[i]->name +
                 "': " + e.what(),
             e.hint());
      }
      frozen.push_back(units[i]);
      freeze_ms[i] = ms_between(t, Clock::now());
    }
    // The network of a unit that is stopped once dumped is locked first, until it is
    // killed: its kernel would otherwise acknowledge what peers send after the dump,
    // which the restored unit never got (CRIU unlocks the connections it locked when
    // the dump ends, for --leave-running), and answer them with a reset when it dies.
    // So is the network of a unit of a round across nodes until every unit is dumped:
    // a unit dumped first would otherwise take in what one not yet dumped sends again.
    for (const auto* u : units) {
      if (!(options.stop || in_round) || !u->network) continue;
      try {
        netns::lock(job_name, u->name);
        locked.push_back(u);
      } catch (const Error& e) {
        thaw_all(cgroups, units);
        fail("checkpoint of job '" + job_name + "' aborted: unit '" + u->name + "': " + e.what(), e.hint());
      }
    }
    t_frozen = Clock::now();
    if (in_round && !locked.empty()) {
      std::vector<std::string> names;
      for (const auto* u : locked) names.push_back(u->name);
      options.round->on_abandon([job_name, names] {
        for (const auto& n : names) {
          try {
            netns::unlock(job_name, n);
          } catch (const std::exception&) {
          }
        }
      });
    }
    // The barrier: no unit of the job is dumped before every unit is frozen.
    if (in_round) {
      json report = json::object();
      for (size_t i = 0; i < units.size(); ++i) {
        report[units[i]->name] = {{"freezeMs", round_ms(freeze_ms[i])}, {"needs", unit_needs[i]}};
      }
      try {
        options.round->frozen(report);
      } catch (const Error& e) {
        thaw_all(cgroups, units);
        fail("checkpoint " + std::to_string(staging.seq) + " of job '" + job_name + "' aborted: " + e.what(), e.hint());
      }
    }

    // All units are frozen: dump them in parallel (let them through their gates).
    if (gated) {
      auto t_go = Clock::now();
      for (size_t i = 0; i < units.size(); ++i) {
        try {
          gates[i].open();
        } catch (const Error& e) {
          thaw_all(cgroups, units);
          fail("checkpoint of job '" + job_name + "' aborted: unit '" + units[i]->name + "': " + e.what(), "");
        }
      }
      join_all();
      for (size_t i = 0; i < units.size(); ++i) dump_ms[i] = ms_between(t_go, dump_end[i]);
    } else {
      for (size_t i = 0; i < units.size(); ++i) launch(i);
      join_all();
    }
    t_dumped = Clock::now();
    for (size_t i = 0; i < units.size(); ++i) {
      if (errors[i]) {
        thaw_all(cgroups, units);
        dump_failed(i);
      }
    }
    // Thawed only once every unit of the job is dumped: a unit that ran on could send
    // what a unit not yet dumped then holds, and sends again after a restart.
    if (in_round) {
      json report = json::object();
      for (size_t i = 0; i < units.size(); ++i) report[units[i]->name] = {{"dumpMs", round_ms(dump_ms[i])}};
      try {
        keep_frozen = !options.round->dumped(report);
      } catch (const Error& e) {
        thaw_all(cgroups, units);
        fail("checkpoint " + std::to_string(staging.seq) + " of job '" + job_name + "' aborted: " + e.what(), e.hint());
      }
    }
    // With --stop (or a migration) the units stay frozen until the checkpoint is
    // committed, then die.
    if (!keep_frozen) {
      unlock_all(locked);
      thaw_all(cgroups, units);
      watchdog->release();
    }
    t_thawed = Clock::now();
  }
  // The dump is done: the applications resume while the images are stored (a failed
  // commit then needs no abort: they resumed already). With --stop they never do.
  if (callbacks && !keep_frozen) {
    quiesced = false;
    post = deliver(units, events::Event::kPostCheckpoint, job, staging.seq, deadline);
    cp.timings["postCheckpointMs"] = round_ms(ms_between(t_thawed, Clock::now()));
    warn_failed(units, post, "checkpoint " + std::to_string(staging.seq) + " of job '" + job_name +
                                 "' goes on, but post-checkpoint failed");
  }
  // With --stop they are killed after the commit, or thawed and told abort if it fails.
  if (!keep_frozen) until_resumed.reset();

  for (size_t i = 0; i < units.size(); ++i) {
    const auto* u = units[i];
    const auto& lib = translibs.get(u->translib);
    for (const auto& name : results[i].value("pageAligned", std::vector<std::string>{})) {
      staging.page_aligned[u->name].insert(name);
    }
    manifest::CheckpointUnit cu;
    cu.name = u->name;
    cu.node = u->node;
    cu.grouping = u->grouping;
    cu.translib = lib.name();
    cu.translib_version = lib.version();
    cu.checkpointer = results[i].value("checkpointer", lib.name());
    cu.checkpointer_version = results[i].value("version", "");
    cu.stats = results[i].value("stats", json::object());
    cu.options = results[i].value("options", std::vector<std::string>{});
    cu.tcp_connections = results[i].value("tcpConnections", json::array());
    cu.timings = {{"freezeMs", round_ms(freeze_ms[i])}, {"dumpMs", round_ms(dump_ms[i])}};
    if (has_callbacks(*u)) {
      cu.callbacks = pre[i].via;
      json per_event = {{"pre-checkpoint", round_ms(pre[i].ms)}};
      if (callbacks && !keep_frozen) per_event["post-checkpoint"] = round_ms(post[i].ms);
      cu.timings["callbacks"] = per_event;
    }
    if (!unit_warnings[i].empty()) cu.extra["jobTies"] = unit_warnings[i];
    cp.units.push_back(std::move(cu));
  }
  cp.timings["freezeMs"] = round_ms(ms_between(t_start, t_frozen));
  cp.timings["dumpMs"] = round_ms(ms_between(t_frozen, t_dumped));
  cp.timings["thawMs"] = round_ms(ms_between(t_dumped, t_thawed));
  cp.timings["downtimeMs"] = round_ms(ms_between(t_start, t_thawed));
  log::phase("checkpoint {} of job '{}': {}, storing the images", staging.seq, job_name,
             keep_frozen ? "job stays frozen until stopped" : "job thawed");
  if (in_round) {
    json report = json::object();
    for (const auto& cu : cp.units) report[cu.name] = cu.timings;
    try {
      options.round->resumed(report);
    } catch (const Error& e) {
      if (keep_frozen) thaw_all(cgroups, units);
      fail("checkpoint " + std::to_string(staging.seq) + " of job '" + job_name + "' aborted: " + e.what(), e.hint());
    }
  }
  // Any failure of the store (an Error, a file system or allocation error alike) must
  // thaw a job kept frozen for --stop and remove the staging.
  try {
    if (in_round) {
      store.ingest(staging, cp);
      options.round->stored(cp);
    } else {
      store.commit(staging, cp);
    }
  } catch (const std::exception& e) {
    if (keep_frozen) thaw_all(cgroups, units);
    auto* err = dynamic_cast<const Error*>(&e);
    fail("checkpoint " + std::to_string(cp.seq) + " of job '" + job_name +
             "' not committed: " + e.what(),
         err && !err->hint().empty()
             ? err->hint()
             : "the job keeps running; the previous checkpoint is still the latest");
  }
  if (in_round) {
    // Committed by the job checkpointer. Units kept frozen are stopped, or thawed when
    // it says so (a migration whose restart failed) or is gone.
    if (keep_frozen) {
      bool stop = false;
      try {
        stop = options.round->release();
      } catch (const Error& e) {
        spdlog::warn("{}: thawing the units", e.what());
      }
      if (stop) {
        stop_units(cgroups, job_name, units);
        watchdog->release();
      } else {
        // They stay here (a migration whose restart failed): their network back first,
        // and announced, since a copy elsewhere may have announced the address meanwhile.
        unlock_all(locked);
        for (const auto* u : locked) {
          try {
            netns::announce(job_name, u->name, network_on_this_node(*u->network));
          } catch (const Error& e) {
            spdlog::warn("{}", e.what());
          }
        }
        thaw_all(cgroups, units);
        watchdog->release();
        if (callbacks) deliver(units, events::Event::kPostCheckpoint, job, staging.seq, deadline);
      }
    }
    store.abort(staging);  // the local directory
    return cp;
  }
  // The committed manifest has every timing but the total, which ends with the commit;
  // the copy printed on stdout adds it.
  auto t_committed = Clock::now();
  cp.timings["totalMs"] = round_ms(ms_between(t_start, t_committed));
  store.append_event(job_name, {{"event", "checkpoint"},
                                {"seq", cp.seq},
                                {"downtimeMs", cp.timings["downtimeMs"]},
                                {"totalMs", cp.timings["totalMs"]},
                                {"bytes", cp.bytes}});
  apply_retention(store, job_name, options.keep ? options.keep : job.keep);

  if (options.stop) {
    try {
      stop_units(cgroups, job_name, units);
      for (const auto* u : units) {
        auto* mine = job.find_unit(u->name);
        mine->state = "stopped";
        mine->pid.reset();
      }
      watchdog->release();
    } catch (const Error& e) {
      store.save_job(job);
      throw Error(Exit::kFailed,
                  "checkpoint " + std::to_string(cp.seq) + " of job '" + job_name +
                      "' is committed, but stopping the job failed: " + e.what(),
                  "kill it with 'gcp-isolate kill " + job_name + "'");
    }
    store.save_job(job);
  }
  return cp;
}

manifest::Job restart(store::Store& store, cgroup::Cgroups& cgroups, const std::string& job_name,
                      const RestartOptions& given) {
  const bool in_round = given.round != nullptr;
  RestartOptions options = given;
  if (!in_round) {
    manifest::Job job = load(store, job_name);
    // Units checkpointed on their own (uncoordinated) restart from their own latest
    // checkpoints, which may differ.
    if (!options.seq) {
      auto all = store.checkpoints(job_name);
      bool latest_uncoordinated =
          !all.empty() && store.load_checkpoint_metadata(job_name, all.back()).mode == "uncoordinated";
      if (!all.empty() && (uncoordinated(job) || latest_uncoordinated)) {
        std::map<std::string, uint64_t> from;
        for (auto it = all.rbegin(); it != all.rend() && from.size() < job.units.size(); ++it) {
          auto c = store.load_checkpoint_metadata(job_name, *it);
          for (const auto& cu : c.units) {
            if (!job.find_unit(cu.name) || from.count(cu.name)) continue;
            from[cu.name] = *it;
            for (const auto& tie : cu.extra.value("jobTies", std::vector<std::string>{})) {
              spdlog::warn("unit '{}' restarts from checkpoint {}, taken on its own while it talked to another unit: {}",
                           cu.name, *it, tie);
            }
          }
        }
        std::set<uint64_t> seqs;
        for (const auto& [unit, s] : from) seqs.insert(s);
        if (seqs.size() == 1) {
          options.seq = *seqs.begin();
        } else if (seqs.size() > 1) {
          std::string list;
          for (const auto& [unit, s] : from) list += (list.empty() ? "" : ", ") + unit + " from " + std::to_string(s);
          spdlog::warn("job '{}' is uncoordinated: its units restart from their own latest checkpoints ({})", job_name, list);
          options.per_unit = from;
          return restart_across(store, job_name, options);
        }
      }
    }
    if (restart_spans_nodes(job, options.place)) return restart_across(store, job_name, options);
  }
  std::optional<fs::FileLock> held;
  if (!in_round) held.emplace(lock_job(store, job_name));
  manifest::Job job = load(store, job_name);
  auto all = restartable(store, job_name);
  uint64_t seq = options.seq.value_or(in_round ? all.back() : latest_whole(store, job_name, all));
  auto what = [&](uint64_t s) { return "restarting checkpoint " + std::to_string(s) + " of job '" + job_name + "'"; };

  // The checkpointers are probed (`criu check`: ~0.1-0.2 s) while the checkpoint loads.
  Translibs translibs;
  for (const auto& u : job.units) translibs.prefetch(u.translib);
  store.prepare_read(job_name);
  store::ScratchDir scratch("restore-" + job_name);

  // Restores every unit of checkpoint c, all or nothing, and throws Corrupt before any
  // unit runs when a chunk does not verify. A checkpoint of one unit whose translib
  // restores from an image source (GCP_CAP_IMAGE_SOURCE) gets its images from one, every
  // chunk verified just before the checkpointer reads it: a bad one fails the restore
  // before the restored tasks resume. Any other checkpoint (or --materialize) is read
  // back into scratch, every chunk verified, before anything is restored.
  auto restore = [&](const manifest::Checkpoint& c) {
    if (!options.units.empty()) {
      for (const auto& name : options.units) {
        if (!c.find_unit(name)) throw Error(Exit::kFailed, what(c.seq) + ": it has no unit '" + name + "'");
      }
    }
    std::vector<const manifest::CheckpointUnit*> mine;
    for (const auto& cu : c.units) {
      if (chosen(options.units, cu.name)) mine.push_back(&cu);
    }
    for (const auto* cup : mine) {
      const auto& cu = *cup;
      manifest::Unit* u = job.find_unit(cu.name);
      if (!u) throw Error(Exit::kFailed, what(c.seq) + ": the job has no unit '" + cu.name + "' any more");
      if (!cgroups.procs(u->cgroup).empty()) {
        // A unit that moves here from another node finds its cgroup taken only where
        // nodes share one kernel (test nodes): its source waits, frozen, until the
        // move is done. It gets a cgroup of its own.
        std::string moved = cgroup::unit_path(job_name, cu.name) + "." + std::to_string(c.seq);
        if (in_round && u->node != proc::node_name() && cgroups.procs(moved).empty()) {
          u->cgroup = moved;
        } else {
          throw Error(Exit::kFailed, what(c.seq) + ": unit '" + cu.name + "' is still running",
                      "stop it first with 'gcp-isolate kill " + job_name + " --unit " + cu.name + "'");
        }
      }
      translibs.prefetch(cu.translib);
    }
    auto dir = scratch.path() / std::to_string(c.seq);
    const bool stream = !options.materialize && mine.size() == 1 &&
                        (translibs.get(mine[0]->translib).capabilities() & GCP_CAP_IMAGE_SOURCE) &&
                        store::ImageSource::fits(dir / mine[0]->name);
    if (!stream) {
      for (const auto* cu : mine) {
        log::phase("{}: reading the images of unit '{}'", what(c.seq), cu->name);
        store.materialize(c, cu->name, dir / cu->name);
      }
    }
    for (const auto* cu : mine) check_versions(translibs, *cu, what(c.seq));

    std::vector<manifest::Unit*> restored;
    auto stop_restored = [&] {
      for (auto* r : restored) {
        try {
          cgroup::kill_all(cgroups, r->cgroup, std::chrono::seconds(10));
          cgroups.remove(r->cgroup);
        } catch (const std::exception& k) {
          spdlog::warn("stopping restored unit '{}': {}", r->name, k.what());
        }
        if (r->network) netns::remove(job_name, r->name);
      }
    };
    for (const auto* cup : mine) {
      const auto& cu = *cup;
      manifest::Unit* u = job.find_unit(cu.name);
      log::phase("{}: restoring unit '{}'{}", what(c.seq), cu.name, stream ? ", its images streamed from the store" : "");
      try {
        cgroups.create(u->cgroup);
        auto work = store.job_dir(job_name) / "logs" / ("restore-" + std::to_string(c.seq) + "-" + cu.name);
        json request = {{"imagesDir", (dir / cu.name).string()},
                        {"workDir", work.string()},
                        {"grouping", cu.grouping},
                        {"options", cu.options},
                        {"tcpConnections", cu.tcp_connections},
                        {"joinCgroups", json::array({cgroups.freezer_dir(u->cgroup) + "/cgroup.procs"})}};
        // Across nodes a restored unit waits stopped until every node has restored its
        // units: running at once, it could send to a peer whose connection is not
        // restored yet, and that peer's kernel would reset the connection.
        if (in_round) request["leaveStopped"] = true;
        std::unique_ptr<store::ImageSource> server;
        if (stream) {
          server = std::make_unique<store::ImageSource>(store, c, cu.name, dir / cu.name);
          request["imageSource"] = server->socket_path().string();
        }
        // CRIU binds the unit's listening callback socket again at its path: the
        // directory must exist (/run is empty after a reboot).
        if (!u->callbacks.socket.empty()) events::prepare_socket(u->callbacks.socket, job.owner);
        // A unit with its own address comes back in a fresh namespace with it; one left
        // here from before is stale (the unit is not running). It stays locked until
        // the sockets are restored: a peer's retransmission would be reset before.
        std::optional<netns::Config> net;
        if (u->network) {
          net = network_on_this_node(*u->network);
          netns::remove(job_name, u->name);
          netns::create(job_name, u->name, *net, true);
          request["netns"] = netns::path(job_name, u->name);
        }
        json result;
        try {
          result = translibs.get(cu.translib).restart(request);
        } catch (const std::exception&) {
          if (server) {
            if (auto bad = server->finish()) throw *bad;  // the checkpointer stopped at it
            if (server->failure()) spdlog::warn("serving the images of unit '{}': {}", cu.name, server->failure()->what());
          }
          throw;
        }
        if (server) {
          if (auto bad = server->finish()) {
            spdlog::warn("{}: {} (the checkpointer did not need that part)", what(c.seq), bad->what());
          }
        }
        if (net) {
          netns::unlock(job_name, u->name);
          try {
            netns::announce(job_name, u->name, *net);
          } catch (const Error& e) {
            spdlog::warn("{} (its peers learn the address when they next ask)", e.what());
          }
          u->network->parent = net->parent;
        }
        for (const auto& w : result.value("warnings", json::array())) {
          if (w.is_string()) spdlog::warn("{}: unit '{}': {}", what(c.seq), cu.name, w.get<std::string>());
        }
        u->pid = result.at("pid").get<pid_t>();
        u->node = proc::node_name();
        u->extra["nodeAddresses"] = proc::node_addresses();
        u->state = "running";
        u->restored_from = c.seq;
        restored.push_back(u);
      } catch (const std::exception& e) {
        stop_restored();
        try {
          cgroup::kill_all(cgroups, u->cgroup, std::chrono::seconds(10));
          cgroups.remove(u->cgroup);
        } catch (const std::exception&) {
        }
        if (u->network) netns::remove(job_name, u->name);
        if (dynamic_cast<const store::Corrupt*>(&e)) throw;
        if (!in_round) {
          store.append_event(job_name,
                             {{"event", "restart-failed"}, {"seq", c.seq}, {"unit", cu.name}, {"error", e.what()}});
        }
        auto* err = dynamic_cast<const Error*>(&e);
        throw Error(Exit::kFailed, what(c.seq) + ": unit '" + cu.name + "': " + e.what(),
                    err && !err->hint().empty() ? err->hint()
                                                : "no unit of the job was left running; the checkpoint is unchanged");
      }
    }
    // All or nothing across nodes: this node's units wait for every other node's.
    if (in_round) {
      json report = json::object();
      for (const auto* r : restored) {
        report[r->name] = {{"pid", r->pid.value_or(0)}, {"cgroup", r->cgroup}, {"nodeAddresses", r->extra["nodeAddresses"]}};
      }
      try {
        options.round->restored(report);
      } catch (const Error& e) {
        stop_restored();
        throw Error(Exit::kFailed, what(c.seq) + ": " + e.what(), "this node's restored units were stopped again");
      }
      // Every node has restored its units: this node's go on.
      for (const auto* r : restored) {
        for (pid_t p : cgroups.procs(r->cgroup)) ::kill(p, SIGCONT);
      }
    }
  };

  try {
    restore(store.load_checkpoint(job_name, seq));
  } catch (const store::Corrupt& bad) {
    if (in_round) throw;  // the job's restart decides about an earlier checkpoint
    store.append_event(job_name, {{"event", "restart-refused"}, {"seq", seq}, {"error", bad.what()}});
    std::error_code ec;
    std::filesystem::remove_all(scratch.path() / std::to_string(seq), ec);
    // The newest earlier checkpoint that verifies: taken with --fallback, named otherwise.
    std::optional<uint64_t> good;
    for (auto it = all.rbegin(); it != all.rend() && !good; ++it) {
      if (*it >= seq) continue;
      try {
        auto earlier = store.load_checkpoint(job_name, *it);
        if (options.fallback) {
          restore(earlier);
          good = *it;
        } else if (store.verify(earlier).problems.empty()) {
          good = *it;
        }
      } catch (const store::Corrupt& e) {
        spdlog::warn("checkpoint {} of job '{}' does not verify either: {}", *it, job_name, e.what());
        std::filesystem::remove_all(scratch.path() / std::to_string(*it), ec);
      }
    }
    if (!good) {
      throw Error(Exit::kFailed, bad.what(),
                  all.front() < seq ? "no earlier checkpoint of the job verifies either"
                                    : "the job has no earlier checkpoint");
    }
    if (!options.fallback) {
      throw Error(Exit::kFailed, bad.what(),
                  "checkpoint " + std::to_string(*good) + " verifies: restart it with '--seq " +
                      std::to_string(*good) + "', or pass --fallback");
    }
    spdlog::warn("checkpoint {} of job '{}' does not verify; restarted checkpoint {}, the newest that does", seq,
                 job_name, *good);
    seq = *good;
  }
  if (!in_round) store.save_job(job);  // else the job's restart records every node's units
  json event = {{"event", "restart"}, {"seq", seq}};
  std::vector<const manifest::Unit*> running;
  for (const auto& u : job.units) {
    if (u.restored_from == seq && has_callbacks(u) && chosen(options.units, u.name)) running.push_back(&u);
  }
  if (!running.empty()) {
    log::phase("{}: post-restart callbacks of {} unit(s)", what(seq), running.size());
    auto results = deliver(running, events::Event::kPostRestart, job, seq,
                           callback_deadline(options.callback_timeout, job));
    warn_failed(running, results, what(seq) + ": the job runs, but post-restart failed");
    json cbs = json::object();
    for (size_t i = 0; i < running.size(); ++i) {
      cbs[running[i]->name] = {{"via", results[i].via}, {"ms", round_ms(results[i].ms)}};
      if (!results[i].ok) cbs[running[i]->name]["error"] = results[i].message;
    }
    event["callbacks"] = cbs;
  }
  if (in_round) {
    options.round->done(event);
  } else {
    store.append_event(job_name, event);
  }
  return job;
}

manifest::Job kill(store::Store& store, cgroup::Cgroups& cgroups, const std::string& job_name,
                   const std::optional<std::string>& unit) {
  manifest::Job job = load(store, job_name);
  if (unit && !job.find_unit(*unit)) {
    throw Error(Exit::kUsage, "job '" + job_name + "' has no unit '" + *unit + "'");
  }
  // Units on other nodes are killed there (gcp-isolate kill through the launcher),
  // which records them; then this node's.
  const std::string here = proc::node_name();
  json cfg;
  bool remote = false;
  for (const auto& u : job.units) {
    if ((unit && u.name != *unit) || u.node == here || u.state == "stopped") continue;
    if (!remote) cfg = launcher::config();
    remote = true;
    auto argv = launcher::command_for(launcher::for_node(job, u.node, cfg), u.node,
                                      {launcher::tool_path("gcp-isolate", cfg), "--store", store.root().string(), "kill",
                                       job_name, "--unit", u.name},
                                      launcher::forwarded_env());
    process::Spec spec;
    spec.argv = argv;
    spec.timeout = std::chrono::seconds(60);
    auto r = process::run(spec);
    if (!r.ok()) {
      throw Error(Exit::kFailed, "killing unit '" + u.name + "' of job '" + job_name + "' on node '" + u.node +
                                     "' failed (" + r.describe() + "): " + r.err.substr(0, r.err.find('\n')));
    }
  }
  if (remote) job = load(store, job_name);
  for (auto& u : job.units) {
    if (unit && u.name != *unit) continue;
    if (u.node != here) continue;
    cgroup::kill_all(cgroups, u.cgroup, std::chrono::seconds(10));
    cgroups.remove(u.cgroup);
    events::remove_socket(u.callbacks.socket);
    if (u.network) netns::remove(job_name, u.name);
    u.state = "stopped";
    u.pid.reset();
  }
  try {
    cgroups.remove(cgroup::job_path(job_name));
  } catch (const Error&) {
    // Other units of the job still have their cgroups: keep the parent.
  }
  store.save_job(job);
  return job;
}

manifest::Job status(store::Store& store, cgroup::Cgroups& cgroups, const std::string& job_name) {
  manifest::Job job = load(store, job_name);
  const std::string here = proc::node_name();
  for (auto& u : job.units) {
    if (u.node != here) continue;  // as recorded: this node cannot see it
    u.state = unit::live_state(cgroups, u);
    if (u.state != "running" && u.state != "frozen") u.pid.reset();
  }
  return job;
}

}  // namespace gcp::jobs
