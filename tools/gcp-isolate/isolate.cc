// SPDX-License-Identifier: MIT
#include "isolate.h"

#include "gcp/caller.h"
#include "gcp/cgroup.h"
#include "gcp/deps.h"
#include "gcp/error.h"
#include "gcp/events.h"
#include "gcp/grouping.h"
#include "gcp/jobs.h"
#include "gcp/launcher.h"
#include "gcp/main.h"
#include "gcp/names.h"
#include "gcp/netns.h"
#include "gcp/policy.h"
#include "gcp/proc.h"
#include "gcp/process.h"
#include "gcp/slurm.h"
#include "gcp/store.h"
#include "gcp/unit.h"

#include <spdlog/fmt/ranges.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

namespace gcp::isolate {
namespace {

// gcp-isolate run on another node, through its launcher: the Job manifest it prints is
// passed on, and so are its messages and its exit status.
void run_on(const Options& opt, store::Store& store) {
  manifest::Job job;
  job.name = opt.job;
  if (auto existing = store.load_job(opt.job)) job = jobs::load(store, opt.job);
  if (!opt.launcher.empty()) job.launcher = manifest::Launcher{opt.launcher, {}, ""};
  auto cfg = launcher::config();
  auto how = launcher::for_node(job, opt.node, cfg);
  using namespace names;
  std::vector<std::string> argv = {launcher::tool_path("gcp-isolate", cfg),
                                   kOptStore,
                                   store.root().string(),
                                   "run",
                                   kOptJob,
                                   opt.job,
                                   kOptUnit,
                                   opt.unit};
  if (opt.keep) argv.insert(argv.end(), {kOptKeep, std::to_string(*opt.keep)});
  if (opt.callback_timeout_ms) argv.insert(argv.end(), {kOptCallbackTimeout, std::to_string(*opt.callback_timeout_ms)});
  if (!opt.hooks.empty()) argv.insert(argv.end(), {kOptHooks, std::filesystem::absolute(opt.hooks).string()});
  if (!opt.launcher.empty()) argv.insert(argv.end(), {kOptLauncher, opt.launcher});
  if (opt.uncoordinated) argv.push_back(kOptUncoordinated);
  if (!opt.policy.empty()) argv.insert(argv.end(), {names::kOptPolicy, opt.policy});
  if (!opt.address.empty()) argv.insert(argv.end(), {kOptAddress, opt.address});
  if (!opt.via.empty()) argv.insert(argv.end(), {kOptVia, opt.via});
  if (!opt.gateway.empty()) argv.insert(argv.end(), {kOptGateway, opt.gateway});
  if (!opt.share.empty()) argv.insert(argv.end(), {kOptShare, fmt::format("{}", fmt::join(opt.share, ","))});
  argv.push_back("--");
  argv.insert(argv.end(), opt.command.begin(), opt.command.end());
  // There, too, the tool acts for the user it acts for here.
  auto env = launcher::forwarded_env();
  for (const auto& e : caller::env_for_remote()) env.push_back(e);
  process::Spec spec;
  spec.argv = launcher::command_for(how, opt.node, argv, env);
  spec.env = caller::env_for_remote();
  spdlog::debug("starting unit '{}' on node '{}': {}", opt.unit, opt.node, fmt::join(spec.argv, " "));
  auto r = process::run(spec);
  std::fputs(r.err.c_str(), stderr);
  if (!r.ok()) {
    throw Error(r.exit_code > 0 ? static_cast<Exit>(r.exit_code) : Exit::kFailed,
                "starting unit '" + opt.unit + "' of job '" + opt.job + "' on node '" + opt.node + "' failed (" +
                    r.describe() + ")",
                how.kind == "ssh" ? "check that 'ssh " + opt.node + " true' works without a password" : "");
  }
  std::fputs(r.out.c_str(), stdout);
}

// --address: the unit's network, its parent device from --via, the node's configuration
// or the default route, in that order. Checked before anything is made.
std::optional<netns::Config> network_of(const Options& opt) {
  if (opt.address.empty()) return std::nullopt;
  netns::Config c{opt.address, opt.via, opt.gateway, ""};
  if (c.parent.empty()) c.parent = netns::configured_parent().value_or("");
  if (c.parent.empty()) c.parent = netns::default_route_device().value_or("");
  if (c.parent.empty()) {
    throw Error(Exit::kUsage,
                "no parent device for the network of unit '" + opt.unit + "': this node has no default route",
                "name one with --via, or as network.parent in /etc/gcp/gcp.json");
  }
  netns::check("starting unit '" + opt.unit + "' of job '" + opt.job + "'", c);
  c.mac = netns::mac_of(c.address);
  return c;
}

// What the Job manifest says of a unit that starts here.
void record_unit(manifest::Unit& unit, const Options& opt, store::Store& store, const std::string& cg,
                 const std::string& hooks, const std::optional<netns::Config>& network) {
  unit.node = proc::node_name();
  unit.share = opt.share;
  std::sort(unit.share.begin(), unit.share.end());
  unit.share.erase(std::unique(unit.share.begin(), unit.share.end()), unit.share.end());
  // Where the job's other units reach this one (its TCP peers: gcp-deps), when it is on
  // the node's network.
  bool on_node_net = std::find(unit.share.begin(), unit.share.end(), "net") != unit.share.end();
  unit.node_addresses.clear();
  if (on_node_net) unit.node_addresses = proc::node_addresses();
  unit.grouping = "pidns";
  unit.cgroup = cg;
  unit.translib = "criu";
  unit.command = opt.command;
  unit.output = (store.job_dir(opt.job) / "logs" / (opt.unit + ".out")).string();
  unit.restored_from.reset();
  unit.callbacks.socket = events::socket_path(store.root(), opt.job, opt.unit);
  unit.callbacks.hooks = hooks;
  unit.network.reset();
  if (network) unit.network = manifest::Network{network->address, network->parent, network->gateway, network->mac};
}

// In a Slurm allocation, the job ends at the allocation's time limit at the latest: its
// policy's last checkpoint lands before it, unless the policy has a deadline already.
void deadline_from_slurm(manifest::Job& job) {
  const char* slurm_job = std::getenv("SLURM_JOB_ID");
  if (!slurm_job || !*slurm_job) return;
  if (job.checkpoint_policy && !job.checkpoint_policy->deadline.empty()) return;
  std::string why;
  auto end = slurm::end_time(slurm_job, &why);
  if (!end) {
    if (why.empty())
      spdlog::debug("job '{}': Slurm job {} has no time limit", job.name, slurm_job);
    else
      spdlog::warn("job '{}': no deadline from Slurm job {}: {}", job.name, slurm_job, why);
    return;
  }
  if (!job.checkpoint_policy) {
    job.checkpoint_policy.emplace();
    job.checkpoint_policy->kind = policy::site().kind;
  }
  job.checkpoint_policy->deadline = manifest::rfc3339(*end);
  job.checkpoint_policy->extra["deadlineFrom"] = std::string("slurm job ") + slurm_job;
  spdlog::info("job '{}': deadline {}, the time limit of Slurm job {}", job.name, job.checkpoint_policy->deadline,
               slurm_job);
}

}  // namespace

void run(const Options& opt) {
  if (!opt.address.empty() || !opt.via.empty() || !opt.gateway.empty()) {
    // Any address on the node's network could be claimed, another host's among them.
    caller::refuse_for_user("a network of the unit's own (--address, --via, --gateway)",
                            "root starts units with a network of their own; start yours without --address");
  }
  // A policy that is wrong is refused before anything is made (complete: as if new).
  if (!opt.policy.empty()) policy::parse_spec(opt.policy, {}, policy::now());
  auto store = store::open(opt.store, {}, store::IfMissing::kCreate);
  if (!opt.node.empty() && opt.node != proc::node_name()) return run_on(opt, *store);
  auto cgroups = cgroup::system_cgroups();
  std::string cg = cgroup::unit_path(opt.job, opt.unit);
  auto network = network_of(opt);
  // Checked before the lock, which would leave the job's directory behind.
  std::string hooks;
  if (!opt.hooks.empty()) {
    hooks = std::filesystem::absolute(opt.hooks).lexically_normal().string();
    events::check_hooks_dir(hooks, caller::uid());
  }
  auto lock = store->try_lock_job(opt.job);
  if (!lock) throw Error(Exit::kBusy, "job '" + opt.job + "' is busy (checkpoint or restart running)", "retry later");

  manifest::Job job;
  bool new_job = !store->load_job(opt.job);
  if (!new_job) {
    job = jobs::load(*store, opt.job);
  } else {
    job.name = opt.job;
    job.owner = caller::uid();
    job.created = manifest::now_rfc3339();
  }
  if (opt.keep) job.keep = opt.keep;
  if (opt.callback_timeout_ms) job.callback_timeout_ms = opt.callback_timeout_ms;
  if (!opt.launcher.empty()) {
    job.launcher = manifest::Launcher{opt.launcher, {}, ""};
    // Started in a Slurm allocation (a batch script): its other nodes are reached in it.
    const char* slurm_job = std::getenv("SLURM_JOB_ID");
    if (opt.launcher == "srun" && slurm_job && *slurm_job) job.launcher->slurm_job = slurm_job;
  }
  if (opt.uncoordinated) job.mode = manifest::Mode::kUncoordinated;
  if (!opt.policy.empty()) {
    job.checkpoint_policy =
        policy::parse_spec(opt.policy, job.checkpoint_policy.value_or(manifest::CheckpointPolicy{}), policy::now());
  }
  deadline_from_slurm(job);
  manifest::Unit* unit = job.find_unit(opt.unit);
  if (unit) {
    auto state = unit::live_state(*cgroups, *unit);
    if (state == manifest::UnitState::kRunning || state == manifest::UnitState::kFrozen) {
      throw Error(Exit::kUsage, "unit '" + opt.unit + "' of job '" + opt.job + "' is already " + manifest::name(state),
                  "pick another unit name, or 'gcp-isolate kill " + opt.job + " --unit " + opt.unit + "' first");
    }
  }
  bool new_unit = !unit;
  if (new_unit) {
    job.units.push_back({});
    unit = &job.units.back();
    unit->name = opt.unit;
  }
  record_unit(*unit, opt, *store, cg, hooks, network);
  const std::string socket = unit->callbacks.socket;
  try {
    events::prepare_socket(socket, job.owner);
    // The job directory must exist before the unit's output file is opened in it.
    store->save_job(job);
    // A namespace left by this unit's last run is stale: it is not running.
    netns::remove(opt.job, opt.unit);
    std::string ns;
    if (network) {
      netns::create(opt.job, opt.unit, *network);
      ns = netns::path(opt.job, opt.unit);
    }
    unit::LaunchSpec launch{opt.job, opt.unit,    opt.command, cg, unit->output, unit->callbacks.socket,
                            ns,      unit->share, {}};
    // A user's job runs as that user, whoever starts it.
    if (job.owner != 0) launch.as = caller::account(job.owner);
    unit->pid = unit::launch(*cgroups, launch);
  } catch (const Error&) {
    // Nothing of a unit that never started stays: its namespace, socket directory and
    // cgroups go, and the store is left as it was.
    netns::remove(opt.job, opt.unit);
    events::remove_socket(socket);
    for (const auto& path : {cg, cgroup::job_path(opt.job)}) {
      try {
        cgroups->remove(path);
      } catch (const Error&) {
        // Other units of the job still have theirs.
      }
    }
    if (new_job) {
      fs::remove_tree_quietly(store->job_dir(opt.job));
    } else {
      if (new_unit)
        job.units.pop_back();
      else
        unit->state = manifest::UnitState::kExited;
      store->save_job(job);
    }
    throw;
  }
  unit->state = manifest::UnitState::kRunning;
  policy::record_running(job.history, policy::now());
  store->save_job(job);
  fs::grant_read(unit->output, job.owner);
  spdlog::info("started unit '{}' of job '{}' (host pid {}); output in {}", opt.unit, opt.job, *unit->pid,
               unit->output);
  print_json(gcp::manifest::dump(manifest::to_json(job)));
}

void list(const Options& opt) {
  auto store = store::open(opt.store);
  auto cgroups = cgroup::system_cgroups();
  manifest::json out = manifest::json::array();
  for (const auto& name : store->jobs()) {
    manifest::Job job;
    try {
      job = jobs::status(*store, *cgroups, name);
    } catch (const Error& e) {
      // Other users' jobs are not listed; nor, for a user, a job whose owner cannot be read.
      if (e.code() == Exit::kNotPermitted || caller::for_user()) continue;
      // One damaged job must not hide the others.
      spdlog::warn("{}", e.what());
      out.push_back({{"job", name}, {"error", e.what()}});
      continue;
    }
    manifest::json units = manifest::json::object();
    for (const auto& u : job.units) units[u.name] = manifest::name(u.state);
    auto seqs = store->checkpoints(name);
    out.push_back({{"job", name},
                   {"owner", job.owner},
                   {"units", units},
                   {"checkpoints", seqs.size()},
                   {"latest", seqs.empty() ? manifest::json() : manifest::json(seqs.back())}});
  }
  print_json(gcp::manifest::dump(out));
}

void status(const Options& opt) {
  auto store = store::open(opt.store);
  auto cgroups = cgroup::system_cgroups();
  auto job = jobs::status(*store, *cgroups, opt.job);
  auto all = grouping::snapshot();
  for (auto& u : job.units) {
    if (u.state != manifest::UnitState::kRunning && u.state != manifest::UnitState::kFrozen) continue;
    try {
      auto members = grouping::resolve(deps::spec_of(u), all);
      u.processes = members.pids.size();
      u.threads = members.threads();
    } catch (const Error& e) {
      spdlog::warn("unit '{}': {}", u.name, e.what());  // ended meanwhile
    }
  }
  print_json(gcp::manifest::dump(manifest::to_json(job)));
}

void kill(const Options& opt) {
  auto store = store::open(opt.store);
  auto cgroups = cgroup::system_cgroups();
  auto job = jobs::kill(*store, *cgroups, opt.job, opt.kill_unit);
  spdlog::info("killed {} of job '{}'", opt.kill_unit ? "unit '" + *opt.kill_unit + "'" : "all units", opt.job);
  print_json(gcp::manifest::dump(manifest::to_json(job)));
}

}  // namespace gcp::isolate
