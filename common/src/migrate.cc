// SPDX-License-Identifier: MIT
// gcp-migrate: a checkpoint round that holds the units frozen, a restart round on the
// target node, and the sources stopped only once the copies are restored.
#include "gcp/checkpoint_round.h"
#include "gcp/error.h"
#include "gcp/jobs.h"
#include "gcp/launcher.h"
#include "gcp/restart_round.h"

#include <spdlog/spdlog.h>

namespace gcp::jobs {

namespace {

// The units a migration moves; throws Error(kUsage) when it cannot move what it is told.
std::vector<std::string> moving_units(const manifest::Job& job, const MigrateOptions& options) {
  const std::string& job_name = job.name;
  std::vector<std::string> moving;
  for (const auto& u : job.units) {
    if (options.unit && u.name != *options.unit) continue;
    if (u.state != manifest::UnitState::kRunning) {
      if (options.unit) {
        throw Error(
            Exit::kUsage,
            "unit '" + u.name + "' of job '" + job_name + "' is " + manifest::name(u.state) + ", not running",
            "restart it where it should run: 'gcp-restart " + job_name + " --place " + u.name + "=" + options.to + "'");
      }
      continue;
    }
    if (u.node == options.to) {
      throw Error(Exit::kUsage, "unit '" + u.name + "' of job '" + job_name + "' runs on '" + options.to + "' already");
    }
    moving.push_back(u.name);
  }
  if (options.unit && moving.empty())
    throw Error(Exit::kUsage, "job '" + job_name + "' has no unit '" + *options.unit + "'");
  if (moving.empty()) throw Error(Exit::kFailed, "job '" + job_name + "' has no running unit to move");
  // The target must be a node's name and reachable before anything is frozen.
  manifest::check_name("node", options.to);
  launcher::for_node(job, options.to, launcher::config());
  return moving;
}

}  // namespace

compat::Verdict check_migrate(store::Store& store, const rounds::Machine& machine, const std::string& job_name,
                              const MigrateOptions& options) {
  auto held = lock_job(store, job_name);
  auto moving = moving_units(load(store, job_name), options);
  auto nodes = rounds::system_nodes(store, machine);
  RestartOptions ro = options.restart;
  ro.units = moving;
  for (const auto& u : moving) ro.place[u] = options.to;
  rounds::RestartRound round(store, *nodes, job_name, ro, rounds::JobLock::kHeldByCaller);
  round.verify();
  round.place();
  return round.check();
}

manifest::Job migrate(store::Store& store, const rounds::Machine& machine, const std::string& job_name,
                      const MigrateOptions& options) {
  using rounds::Clock;
  using rounds::JobLock;
  auto held = lock_job(store, job_name);
  manifest::Job job = load(store, job_name);
  auto moving = moving_units(job, options);

  auto nodes = rounds::system_nodes(store, machine);
  CheckpointOptions co = options.checkpoint;
  co.units = moving;
  co.hold = true;
  co.stop = false;
  rounds::CheckpointRound checkpoint(store, *nodes, job_name, co, JobLock::kHeldByCaller);
  auto t_start = Clock::now();
  checkpoint.prepare();
  checkpoint.callbacks();
  checkpoint.freeze();
  checkpoint.dump();
  checkpoint.resume();
  checkpoint.store();
  const auto cp = checkpoint.commit();

  RestartOptions ro = options.restart;
  ro.seq = cp.seq;
  ro.units = moving;
  for (const auto& u : moving) ro.place[u] = options.to;
  auto t_restart = Clock::now();
  double restart_ms = 0;
  try {
    rounds::RestartRound restart(store, *nodes, job_name, ro, JobLock::kHeldByCaller);
    restart.verify();
    restart.place();
    restart.refuse(restart.check());
    restart.restore();
    restart_ms = rounds::ms_between(t_restart, Clock::now());
    // The sources are stopped once the copies are restored and before the copies go on:
    // if gcp-migrate dies in between, the job is not running twice (the copies, not yet
    // let go, are stopped too, and the committed checkpoint restarts it).
    try {
      checkpoint.release(true);
    } catch (const Error& e) {
      spdlog::warn("{} (the copies on '{}' run on)", e.what(), options.to);
    }
    restart.resume();
    restart.callbacks();
  } catch (const Error& e) {
    // The copies are gone with the restart round; the sources thaw where they were.
    checkpoint.release(false);
    store.append_event(job_name,
                       {{"event", "migration-failed"}, {"seq", cp.seq}, {"to", options.to}, {"error", e.what()}});
    throw Error(
        e.code(),
        "moving " + units_text(moving) + " of job '" + job_name + "' to '" + options.to + "' failed: " + e.what(),
        "the units were thawed and keep running where they were; checkpoint " + std::to_string(cp.seq) +
            " holds them as they were");
  }
  double until_running_ms = rounds::ms_between(t_start, Clock::now());
  manifest::Job now = load(store, job_name);
  store.append_event(job_name, {{"event", "migrated"},
                                {"seq", cp.seq},
                                {"units", moving},
                                {"to", options.to},
                                {"checkpointMs", cp.timings.value("totalMs", 0.0)},
                                {"restartMs", rounds::round_ms(restart_ms)},
                                {"totalMs", rounds::round_ms(until_running_ms)}});
  spdlog::info("moved {} of job '{}' to '{}' in {} ms: frozen at the source {} ms before the restart, which took {} ms",
               units_text(moving), job_name, options.to, rounds::round_ms(until_running_ms),
               rounds::round_ms(rounds::ms_between(t_start, t_restart)), rounds::round_ms(restart_ms));
  return now;
}

}  // namespace gcp::jobs
