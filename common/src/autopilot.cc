// SPDX-License-Identifier: MIT
#include "gcp/autopilot.h"

#include "gcp/caller.h"
#include "gcp/error.h"
#include "gcp/job_store.h"
#include "gcp/jobs.h"
#include "gcp/launcher.h"
#include "gcp/names.h"
#include "gcp/proc.h"
#include "gcp/process.h"
#include "gcp/restart_round.h"
#include "gcp/unit.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <set>

namespace gcp::autopilot {
namespace {

// The jobs a pass looks at: the ones named, or every job of the store the caller owns
// (root: all). A named job that is not there or not the caller's is an error of its own.
std::vector<std::string> jobs_to_check(store::Store& store, const std::vector<std::string>& named) {
  if (!named.empty()) return named;
  return store.jobs();
}

// The job as stored, when the caller may touch it; nullopt (quietly, when scanning
// every job) when it is another user's.
std::optional<manifest::Job> load_mine(store::Store& store, const std::string& name, bool named) {
  if (named) return jobs::load(store, name);
  auto job = store.load_job(name);
  uid_t me = caller::uid();
  if (job && me != 0 && job->owner != me) return std::nullopt;
  return job;
}

// The units recorded running on this node whose processes are gone.
std::vector<std::string> dead_here(cgroup::Cgroups& cgroups, const manifest::Job& job) {
  std::vector<std::string> dead;
  const std::string here = proc::node_name();
  for (const auto& u : job.units) {
    if (u.node != here || u.state != manifest::UnitState::kRunning) continue;
    auto live = unit::live_state(cgroups, u);
    if (live != manifest::UnitState::kRunning && live != manifest::UnitState::kFrozen) dead.push_back(u.name);
  }
  return dead;
}

// gcp-init's last line when the unit's command ended by itself (tools/gcp-init/init.c).
const std::string kFinished = "gcp-init: the unit's command exited with status 0";

// True when the unit's output ends with gcp-init's line of a command that finished
// with status 0: it ended by itself, it did not fail. Only the file's tail is read.
bool finished(const manifest::Unit& u) {
  if (u.output.empty()) return false;
  std::ifstream in(u.output, std::ios::binary);
  if (!in) return false;
  in.seekg(0, std::ios::end);
  auto size = static_cast<long long>(in.tellg());
  in.seekg(std::max(0LL, size - 512));
  std::string tail((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  while (!tail.empty() && (tail.back() == '\n' || tail.back() == '\r')) tail.pop_back();
  auto nl = tail.rfind('\n');
  return tail.substr(nl == std::string::npos ? 0 : nl + 1) == kFinished;
}

// What one pass found about a unit recorded running.
enum class Seen { kRuns, kDied, kFinished, kUnreachable };

// The job's units as `gcp-isolate status` sees them on `node`; nullopt when the node
// cannot be reached through its launcher.
std::optional<manifest::Job> status_on(store::Store& store, const manifest::Job& job, const std::string& node,
                                       const json& cfg, std::string& why) {
  process::Spec spec;
  try {
    spec.argv = launcher::command_for(
        launcher::for_node(job, node, cfg), node,
        {launcher::tool_path("gcp-isolate", cfg), names::kOptStore, store.root().string(), "status", job.name},
        launcher::forwarded_env());
  } catch (const Error& e) {
    why = e.what();
    return std::nullopt;
  }
  spec.env = caller::env_for_remote();
  spec.timeout = std::chrono::seconds(30);
  process::Result r;
  try {
    r = process::run(spec);
  } catch (const Error& e) {
    why = e.what();
    return std::nullopt;
  }
  if (!r.ok()) {
    why = r.describe() + (r.err.empty() ? "" : ": " + r.err.substr(0, r.err.find('\n')));
    return std::nullopt;
  }
  try {
    return manifest::job_from_json(manifest::parse(r.out, "gcp-isolate status on node '" + node + "'"),
                                   "gcp-isolate status on node '" + node + "'");
  } catch (const Error& e) {
    why = e.what();
    return std::nullopt;
  }
}

// Looks at every unit recorded running: here through its cgroup, elsewhere through
// gcp-isolate status on its node.
std::map<std::string, Seen> look(store::Store& store, cgroup::Cgroups& cgroups, const manifest::Job& job,
                                 std::map<std::string, std::string>& unreachable) {
  std::map<std::string, Seen> seen;
  const std::string here = proc::node_name();
  std::map<std::string, std::optional<manifest::Job>> remote;
  json cfg;
  bool have_cfg = false;
  for (const auto& u : job.units) {
    if (u.state != manifest::UnitState::kRunning) continue;
    manifest::UnitState live;
    if (u.node == here) {
      live = unit::live_state(cgroups, u);
    } else {
      if (!have_cfg) {
        cfg = launcher::config();
        have_cfg = true;
      }
      if (!remote.count(u.node)) {
        std::string why;
        remote[u.node] = status_on(store, job, u.node, cfg, why);
        if (!remote[u.node]) unreachable[u.node] = why;
      }
      if (!remote[u.node]) {
        seen[u.name] = Seen::kUnreachable;
        continue;
      }
      const auto* there = remote[u.node]->find_unit(u.name);
      live = there ? there->state : manifest::UnitState::kExited;
    }
    if (live == manifest::UnitState::kRunning || live == manifest::UnitState::kFrozen)
      seen[u.name] = Seen::kRuns;
    else
      seen[u.name] = finished(u) ? Seen::kFinished : Seen::kDied;
  }
  return seen;
}

// Stops what is left of a job that failed, so that all of it restarts from one
// checkpoint: its units still running are killed (here, or on their reachable nodes);
// those on unreachable nodes are recorded stopped.
void stop_rest(store::Store& store, cgroup::Cgroups& cgroups, const std::string& name,
               const std::set<std::string>& gone_nodes) {
  auto job = jobs::load(store, name);
  for (auto& u : job.units) {
    if (gone_nodes.count(u.node)) {
      u.state = manifest::UnitState::kStopped;
      u.pid.reset();
    }
  }
  store.save_job(job);
  for (const auto& u : job.units) {
    if (gone_nodes.count(u.node) || u.state == manifest::UnitState::kStopped) continue;
    jobs::kill(store, cgroups, name, u.name);
  }
}

// What one pass of restart_if_failed goes by.
struct Pass {
  const RestartPolicy& options;
  const policy::Site& site;
  double now;
};

// The nodes unreachable for longer than the site's grace period: gone. When each was
// first found unreachable is kept in the job's history (unreachableSince), across passes.
std::set<std::string> gone_after_grace(manifest::History& history,
                                       const std::map<std::string, std::string>& unreachable, const std::string& name,
                                       const Pass& pass) {
  std::set<std::string> gone;
  json& since = history.extra["unreachableSince"];
  if (!since.is_object()) since = json::object();
  for (const auto& [node, why] : unreachable) {
    if (!since.contains(node) || !since[node].is_string() || !manifest::parse_rfc3339(since[node].get<std::string>())) {
      since[node] = manifest::rfc3339(pass.now);
    }
    double first = *manifest::parse_rfc3339(since[node].get<std::string>());
    if (pass.now - first >= pass.site.grace_s) {
      gone.insert(node);
    } else {
      spdlog::warn("job '{}': node '{}' is unreachable ({}); a failure after {} (since {})", name, node, why,
                   policy::human(pass.site.grace_s), since[node].get<std::string>());
    }
  }
  for (auto it = since.begin(); it != since.end();) {
    if (!unreachable.count(it.key()))
      it = since.erase(it);
    else
      ++it;
  }
  if (since.empty()) history.extra.erase("unreachableSince");
  return gone;
}

// Where the units of gone nodes restart: on spare nodes, the ones given first, then the
// job's, then the site's; one spare per gone node.
std::map<std::string, std::string> spare_placement(const manifest::Job& job, const std::set<std::string>& gone,
                                                   const Pass& pass) {
  std::vector<std::string> spares = pass.options.spares;
  if (job.checkpoint_policy)
    spares.insert(spares.end(), job.checkpoint_policy->spares.begin(), job.checkpoint_policy->spares.end());
  spares.insert(spares.end(), pass.site.spares.begin(), pass.site.spares.end());
  std::erase_if(spares, [&](const std::string& n) { return gone.count(n) > 0; });
  std::map<std::string, std::string> to;
  size_t next = 0;
  for (const auto& node : gone) {
    if (next >= spares.size()) {
      throw Error(Exit::kFailed, "job '" + job.name + "': node '" + node + "' is gone and no spare node is left",
                  "give spare nodes with --spare, the job's policy (spares=...) or the site's policy.spares");
    }
    to[node] = spares[next++];
  }
  std::map<std::string, std::string> place;
  for (const auto& u : job.units) {
    if (to.count(u.node)) place[u.name] = to[u.node];
  }
  return place;
}

// Counts a restart after a failure, tried or done: the next failure before a checkpoint
// waits twice as long as this one (back-off).
void count_restart(store::Store& store, const std::string& name, const Pass& pass) {
  jobs::note_history(store, name, [&](manifest::History& h, const manifest::Job&) {
    ++h.restarts;
    h.backoff_until =
        manifest::rfc3339(pass.now + pass.site.backoff_s * std::pow(2.0, static_cast<double>(h.restarts - 1)));
  });
}

// Restarts the job from its checkpoint, with the units of gone nodes on spare nodes;
// the job's lock is held. Fills `entry` with what was restarted from where.
void restart_after_failure(store::Store& store, const rounds::Machine& machine, const manifest::Job& job,
                           const std::vector<std::string>& died, const std::set<std::string>& gone, const Pass& pass,
                           json& entry) {
  rounds::RestartOptions ro = pass.options.restart;
  ro.fallback = true;
  if (!gone.empty()) ro.place = spare_placement(job, gone, pass);
  entry["failed"] = died;
  auto nodes = rounds::system_nodes(store, machine);
  manifest::Job restarted;
  try {
    rounds::RestartRound round(store, *nodes, job.name, ro, rounds::JobLock::kHeldByCaller);
    restarted = round.run();
  } catch (const Error& e) {
    count_restart(store, job.name, pass);
    throw Error(e.code() == Exit::kBusy ? Exit::kFailed : e.code(),
                "restarting job '" + job.name + "' after its failure: " + e.what(), e.hint());
  }
  count_restart(store, job.name, pass);
  entry["action"] = "restarted";
  std::set<uint64_t> from;
  for (const auto& u : restarted.units) {
    if (u.restored_from) from.insert(*u.restored_from);
  }
  if (from.size() == 1) entry["seq"] = *from.begin();
  if (!ro.place.empty()) entry["placed"] = ro.place;
  spdlog::info("job '{}': restarted from checkpoint {} after {} failed", job.name,
               from.empty() ? std::string("?") : std::to_string(*from.begin()), jobs::units_text(died));
}

// One job of restart_if_failed: looks at its units, records a failure, and restarts it
// unless it is backing off or was given up. Fills `entry`; a job given up is an error too.
void restart_one_if_failed(store::Store& store, const rounds::Machine& machine, manifest::Job job, const Pass& pass,
                           json& entry, Report& report) {
  const std::string name = job.name;
  if (!job.history.given_up.empty()) {
    entry["action"] = "given-up";
    entry["why"] = job.history.given_up;
    spdlog::debug("job '{}': left stopped: {}", name, job.history.given_up);
    return;
  }
  auto runs = [](const manifest::Job& j) {
    return std::any_of(j.units.begin(), j.units.end(),
                       [](const manifest::Unit& u) { return u.state == manifest::UnitState::kRunning; });
  };
  bool pending = job.history.running_since.empty() && !job.history.stops.empty() && job.history.stops.back().failure;
  if (!runs(job) && !pending) {
    entry["action"] = "none";
    entry["why"] = "not running";
    return;
  }
  // A first look without the lock: a pass that takes every job's lock every minute
  // would keep --if-due from checkpointing them (it finds them busy).
  if (!pending) {
    std::map<std::string, std::string> unreachable;
    auto seen = look(store, machine.cgroups, job, unreachable);
    if (std::all_of(seen.begin(), seen.end(), [](const auto& s) { return s.second == Seen::kRuns; })) {
      entry["action"] = "none";
      entry["why"] = "its units run";
      return;
    }
  }
  // Under the job's lock from here, looking again: of two copies of this pass, the
  // second finds it taken (or, after the first is done, the job running again).
  auto held = store.try_lock_job(name);
  if (!held) {
    entry["action"] = "busy";
    entry["why"] = "another gcp-restart --if-failed, a checkpoint or a restart holds the job's lock";
    spdlog::info("job '{}': busy ({}): left to it", name, entry["why"].get<std::string>());
    return;
  }
  job = jobs::load(store, name);
  std::map<std::string, std::string> unreachable;
  auto seen = look(store, machine.cgroups, job, unreachable);
  std::set<std::string> gone_nodes = gone_after_grace(job.history, unreachable, name, pass);
  std::vector<std::string> died, done;
  for (auto& u : job.units) {
    auto s = seen.find(u.name);
    if (s == seen.end()) continue;
    if (s->second == Seen::kDied || (s->second == Seen::kUnreachable && gone_nodes.count(u.node)))
      died.push_back(u.name);
    if (s->second == Seen::kFinished) {
      u.state = manifest::UnitState::kExited;
      u.pid.reset();
      done.push_back(u.name);
    }
  }
  if (!done.empty())
    spdlog::info("job '{}': {} finished by itself (status 0): not a failure", name, jobs::units_text(done));
  if (died.empty() && !pending) {
    if (!runs(job))
      policy::record_stop(job.history, "finished", jobs::units_text(done) + " ended with status 0", false, pass.now);
    store.save_job(job);
    entry["action"] = done.empty() ? "none" : "finished";
    entry["why"] = unreachable.empty() ? "its units run" : "a node is unreachable, within the grace period";
    return;
  }
  if (!died.empty()) {
    std::string cause = gone_nodes.empty() ? "unit-died" : "node-unreachable";
    std::string detail =
        jobs::units_text(died) + (gone_nodes.empty() ? " ended without a stop through gcp" : " on unreachable node(s)");
    policy::record_stop(job.history, cause, detail, true, pass.now);
    job.history.extra.erase("unreachableSince");
    spdlog::warn("job '{}': {} ({}): failure recorded", name, detail, cause);
  }
  store.save_job(job);
  // Back-off: a job that fails again before its next checkpoint waits, twice as long
  // each time, and after maxRestarts is left stopped.
  uint64_t max = job.checkpoint_policy && job.checkpoint_policy->max_restarts ? *job.checkpoint_policy->max_restarts
                                                                              : pass.site.max_restarts;
  stop_rest(store, machine.cgroups, name, gone_nodes);
  job = jobs::load(store, name);
  if (job.history.restarts >= max) {
    job.history.given_up = "failed " + std::to_string(job.history.restarts + 1) +
                           " times without a checkpoint in between (maxRestarts " + std::to_string(max) +
                           "); last: " + job.history.stops.back().detail;
    store.save_job(job);
    entry["action"] = "given-up";
    entry["why"] = job.history.given_up;
    report.errors.emplace_back(Exit::kFailed, "job '" + name + "': left stopped: " + job.history.given_up,
                               "find the cause in its units' output, then 'gcp-restart " + name + "'");
    return;
  }
  if (auto until = manifest::parse_rfc3339(job.history.backoff_until); until && pass.now < *until) {
    entry["action"] = "backing-off";
    entry["why"] = "failed again soon after its last restart: next try after " + job.history.backoff_until;
    spdlog::warn("job '{}': {}", name, entry["why"].get<std::string>());
    return;
  }
  restart_after_failure(store, machine, job, died, gone_nodes, pass, entry);
}

}  // namespace

void raise(const Report& report) {
  if (report.errors.empty()) return;
  for (size_t i = 0; i + 1 < report.errors.size(); ++i) {
    spdlog::error("{}", report.errors[i].what());
    if (!report.errors[i].hint().empty()) spdlog::info("hint: {}", report.errors[i].hint());
  }
  throw report.errors.back();
}

Report checkpoint_if_due(store::Store& store, const rounds::Machine& machine, const std::vector<std::string>& named,
                         const rounds::CheckpointOptions& options, double now) {
  Report report;
  const policy::Site site = policy::site();
  for (const auto& name : jobs_to_check(store, named)) {
    json entry = {{"job", name}};
    try {
      auto job = load_mine(store, name, !named.empty());
      if (!job) continue;
      auto decision = policy::decide(*job, site, now);
      entry["nextDue"] = decision.due_s ? json(manifest::rfc3339(*decision.due_s)) : json(nullptr);
      entry["intervalS"] = decision.interval_s;
      for (const auto& note : decision.notes) spdlog::debug("job '{}': {}", name, note);
      if (!decision.due) {
        entry["action"] = "none";
        entry["why"] = decision.why;
        spdlog::debug("job '{}': not due: {}", name, decision.why);
        report.jobs.push_back(entry);
        continue;
      }
      if (auto dead = dead_here(machine.cgroups, *job); !dead.empty()) {
        entry["action"] = "skipped";
        entry["why"] = jobs::units_text(dead) + " died: left to 'gcp-restart --if-failed'";
        spdlog::warn("job '{}': due, but {}", name, entry["why"].get<std::string>());
        report.jobs.push_back(entry);
        continue;
      }
      spdlog::info("job '{}': {}: checkpointing", name, decision.why);
      auto cp = jobs::checkpoint(store, machine, name, options);
      entry["action"] = "checkpointed";
      entry["seq"] = cp.seq;
      entry["costS"] = policy::cost_of(cp);
    } catch (const Error& e) {
      if (e.code() == Exit::kBusy) {
        entry["action"] = "busy";
        entry["why"] = e.what();
        spdlog::info("job '{}': busy (a restart or checkpoint runs): skipped", name);
      } else {
        entry["action"] = "failed";
        entry["error"] = e.what();
        report.errors.emplace_back(e.code(), "job '" + name + "': " + e.what(), e.hint());
      }
    }
    report.jobs.push_back(entry);
  }
  return report;
}

Report restart_if_failed(store::Store& store, const rounds::Machine& machine, const std::vector<std::string>& named,
                         const RestartPolicy& options, double now) {
  Report report;
  const policy::Site site = policy::site();
  for (const auto& name : jobs_to_check(store, named)) {
    json entry = {{"job", name}};
    try {
      auto job = load_mine(store, name, !named.empty());
      if (!job) continue;
      restart_one_if_failed(store, machine, *job, {options, site, now}, entry, report);
    } catch (const Error& e) {
      entry["action"] = "failed";
      entry["error"] = e.what();
      report.errors.emplace_back(e.code() == Exit::kBusy ? Exit::kFailed : e.code(), "job '" + name + "': " + e.what(),
                                 e.hint());
    }
    report.jobs.push_back(entry);
  }
  return report;
}

}  // namespace gcp::autopilot
