// SPDX-License-Identifier: MIT
#include "gcp/jobs.h"

#include "gcp/caller.h"
#include "gcp/checkpoint_round.h"
#include "gcp/error.h"
#include "gcp/events.h"
#include "gcp/launcher.h"
#include "gcp/names.h"
#include "gcp/netns.h"
#include "gcp/policy.h"
#include "gcp/proc.h"
#include "gcp/process.h"
#include "gcp/restart_round.h"
#include "gcp/unit.h"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <set>

namespace gcp::jobs {

using manifest::json;

namespace {

// Processes a user names (an ad-hoc unit) must be the user's own, with no right beyond
// the user's: root acts on them for the user.
void check_callers(const std::vector<pid_t>& pids, const std::map<pid_t, grouping::Process>& all,
                   const std::string& what) {
  uid_t me = caller::uid();
  if (me == 0) return;
  for (pid_t pid : pids) {
    if (all.at(pid).uid != me) {
      throw Error(Exit::kNotPermitted, "pid " + std::to_string(pid) + " (" + printable(all.at(pid).comm, 40) +
                                           ") belongs to uid " + std::to_string(all.at(pid).uid) +
                                           ", not to you (uid " + std::to_string(me) + ")");
    }
  }
  caller::check_within(pids, caller::account(me), what);
}

}  // namespace

void check_processes(const grouping::Spec& spec) {
  if (caller::uid() == 0) return;
  auto all = grouping::snapshot();
  check_callers(grouping::resolve(spec, all).pids, all, grouping::describe(spec));
}

std::string adopt(store::Store& store, cgroup::Cgroups& cgroups, std::string job_name, const std::string& unit_name,
                  const grouping::Spec& spec) {
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
  std::vector<pid_t> tree = grouping::resolve({Kind::kTree, root, {}}, all).pids;
  check_callers(tree, all, grouping::describe(spec));
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
    throw Error(
        Exit::kUsage,
        "job '" + job_name + "' exists and is not " + grouping::describe(spec) + " (root pid " + std::to_string(root) +
            ")",
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
  u.state = manifest::UnitState::kRunning;
  u.adopted = manifest::Unit::Adopted{grouping::describe(spec), job.created};
  job.units.push_back(u);
  policy::record_running(job.history, policy::now());
  store.save_job(job);
  store.append_event(job_name,
                     {{"event", "adopted"}, {"unit", unit_name}, {"root", root}, {"processes", moved.size()}});
  spdlog::info("registered {} as job '{}' (unit '{}', {} process(es), root pid {})", grouping::describe(spec), job_name,
               unit_name, moved.size(), root);
  return job_name;
}

void reconcile(store::Store& store, cgroup::Cgroups& cgroups, const std::string& job_name) {
  load(store, job_name);  // the caller's own job, or the error that says it is not
  auto held = store.try_lock_job(job_name);
  if (!held) return;  // a round runs: it knows where its units are
  auto job = store.load_job(job_name);
  if (!job) return;
  const std::string here = proc::node_name();
  bool changed = false;
  for (auto& u : job->units) {
    if (u.node != here) continue;
    // A unit recorded running with a pid outside its cgroup is not guessed at: the
    // checkpoint refuses it (the record was edited, or is stale).
    if (u.state == manifest::UnitState::kRunning) continue;
    auto root = unit::root_in_cgroup(cgroups, u);
    if (!root) continue;
    spdlog::warn(
        "unit '{}' of job '{}' runs (pid {}) although its record says {}: recorded it as running "
        "(an interrupted restart?)",
        u.name, job_name, *root, manifest::name(u.state));
    u.state = manifest::UnitState::kRunning;
    u.pid = root;
    changed = true;
  }
  if (changed) store.save_job(*job);
}

manifest::Checkpoint checkpoint(store::Store& store, const rounds::Machine& machine, const std::string& job,
                                const CheckpointOptions& options) {
  reconcile(store, machine.cgroups, job);
  auto nodes = rounds::system_nodes(store, machine);
  rounds::CheckpointRound round(store, *nodes, job, options);
  return round.run();
}

manifest::Job restart(store::Store& store, const rounds::Machine& machine, const std::string& job,
                      const RestartOptions& options) {
  reconcile(store, machine.cgroups, job);
  auto nodes = rounds::system_nodes(store, machine);
  rounds::RestartRound round(store, *nodes, job, options);
  return round.run();
}

compat::Verdict check_restart(store::Store& store, const rounds::Machine& machine, const std::string& job,
                              const RestartOptions& options) {
  reconcile(store, machine.cgroups, job);
  auto nodes = rounds::system_nodes(store, machine);
  rounds::RestartRound round(store, *nodes, job, options);
  round.verify();
  round.place();
  return round.check();  // the round ends here: nothing was restored
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
    if ((unit && u.name != *unit) || u.node == here || u.state == manifest::UnitState::kStopped) continue;
    if (!remote) cfg = launcher::config();
    remote = true;
    // There, too, the tool acts for the user it acts for here.
    auto env = launcher::forwarded_env();
    for (const auto& e : caller::env_for_remote()) env.push_back(e);
    auto argv = launcher::command_for(launcher::for_node(job, u.node, cfg), u.node,
                                      {launcher::tool_path("gcp-isolate", cfg), names::kOptStore, store.root().string(),
                                       "kill", job_name, names::kOptUnit, u.name},
                                      env);
    process::Spec spec;
    spec.argv = argv;
    spec.env = caller::env_for_remote();
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
    u.state = manifest::UnitState::kStopped;
    u.pid.reset();
  }
  try {
    cgroups.remove(cgroup::job_path(job_name));
  } catch (const Error&) {
    // Other units of the job still have their cgroups: keep the parent.
  }
  // A kill is a planned stop: the policy does not count it as a failure.
  if (std::none_of(job.units.begin(), job.units.end(),
                   [](const manifest::Unit& u) { return u.state == manifest::UnitState::kRunning; }) &&
      !job.history.running_since.empty()) {
    policy::record_stop(job.history, "kill", unit ? "gcp-isolate kill --unit " + *unit : "gcp-isolate kill", false,
                        policy::now());
  }
  store.save_job(job);
  return job;
}

manifest::Job status(store::Store& store, cgroup::Cgroups& cgroups, const std::string& job_name) {
  reconcile(store, cgroups, job_name);
  manifest::Job job = load(store, job_name);
  const std::string here = proc::node_name();
  for (auto& u : job.units) {
    if (u.node != here) continue;  // as recorded: this node cannot see it
    u.state = unit::live_state(cgroups, u);
    if (u.state != manifest::UnitState::kRunning && u.state != manifest::UnitState::kFrozen) u.pid.reset();
  }
  return job;
}

}  // namespace gcp::jobs
