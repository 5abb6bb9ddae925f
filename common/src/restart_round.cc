// SPDX-License-Identifier: MIT
// A restart of a job, phase by phase over one part per node its units go to
// (gcp/rounds.h). The round decides which checkpoint and which node; each part restores
// its units and kills them again if the round fails before they are let go.
#include "gcp/restart_round.h"

#include "gcp/error.h"
#include "gcp/job_store.h"
#include "gcp/log.h"
#include "gcp/policy.h"
#include "gcp/proc.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <future>
#include <set>

namespace gcp::rounds {
namespace {

Exit round_status(Exit code) {
  return code == Exit::kNotPermitted || code == Exit::kNoCheckpointer || code == Exit::kBusy ? code : Exit::kFailed;
}

}  // namespace

struct RestartRound::Part {
  std::unique_ptr<RestartPart> part;
  std::map<std::string, uint64_t> units;
  std::vector<Restored> restored;
  json callbacks;
  compat::Verdict verdict;
};

RestartRound::RestartRound(store::Store& store, Nodes& nodes, std::string job, RestartOptions options, JobLock lock)
    : store_(store), nodes_(nodes), job_name_(std::move(job)), options_(std::move(options)), lock_mode_(lock) {}

RestartRound::~RestartRound() {
  if (!resumed_) abort_all("the restart was interrupted");
}

void RestartRound::abort_all(const std::string& reason) noexcept {
  for (auto& p : parts_) p->part->abort(reason);
}

std::string RestartRound::what() const {
  if (!seq_) return "restarting job '" + job_name_ + "' from its units' own checkpoints";
  return "restarting checkpoint " + std::to_string(*seq_) + " of job '" + job_name_ + "'";
}

bool RestartRound::spans() const {
  const std::string here = proc::node_name();
  return std::any_of(where_.begin(), where_.end(), [&](const auto& w) { return w.second != here; });
}

manifest::Job RestartRound::run() {
  verify();
  for (;;) {
    place();
    refuse(check());
    try {
      restore();
      break;
    } catch (const store::Corrupt& bad) {
      refuse_corrupt(bad);  // returns when the fallback is to be restarted
    }
  }
  if (refused_) {
    spdlog::warn("checkpoint {} of job '{}' does not verify; restarted checkpoint {}, the newest that does", *refused_,
                 job_name_, seq_.value_or(0));
  }
  resume();
  callbacks();
  return job_;
}

void RestartRound::run_phase(const char* phase, Clock::time_point deadline, const PartCall& call, bool as_is) {
  auto failed = run_all(
      parts_.size(), phase, deadline, [&](size_t i) { call(*parts_[i]); },
      [&](size_t i) { parts_[i]->part->cancel(); });
  std::vector<std::optional<Error>> errors(parts_.size());
  std::optional<store::Corrupt> corrupt;
  for (size_t i = 0; i < parts_.size(); ++i) {
    if (!failed[i]) continue;
    try {
      std::rethrow_exception(failed[i]);
    } catch (const store::Corrupt& e) {
      if (!corrupt) corrupt = e;
    } catch (const Error& e) {
      errors[i] = e;
    } catch (const std::exception& e) {
      errors[i] = Error(Exit::kFailed, e.what());
    }
  }
  // A chunk that does not verify decides: the round may take an earlier checkpoint.
  if (corrupt) throw *corrupt;
  for (size_t i = 0; i < parts_.size(); ++i) {
    if (!errors[i]) continue;
    const Error& e = *errors[i];
    std::string message = e.what();
    std::string hint = e.hint().empty() ? "no unit of the job was left running; the checkpoint is unchanged" : e.hint();
    if (spans()) {
      std::vector<std::string> units;
      for (const auto& [unit, seq] : parts_[i]->units) units.push_back(unit);
      message = "node '" + parts_[i]->part->node() + "' (" + jobs::units_text(units) + "): " + message;
      if (!e.hint().empty()) {
        hint = "on node '" + parts_[i]->part->node() + "': " + e.hint() +
               "; no unit of the job was left running; the checkpoint is unchanged";
      }
    }
    if (as_is) throw Error(e.code(), message, hint);
    abort_all(message);
    try {
      store_.append_event(job_name_, {{"event", "restart-failed"}, {"seq", seq_.value_or(0)}, {"error", message}});
    } catch (const std::exception& w) {
      spdlog::warn("recording the failed restart of job '{}': {}", job_name_, w.what());
    }
    throw Error(round_status(e.code()), what() + ": " + message, hint);
  }
}

void RestartRound::verify() {
  if (lock_mode_ == JobLock::kTake && !lock_) lock_.emplace(jobs::lock_job(store_, job_name_));
  job_ = jobs::load(store_, job_name_);
  all_ = jobs::restartable(store_, job_name_);
  from_.clear();
  seq_.reset();
  // Units checkpointed on their own (uncoordinated) restart from their own latest
  // checkpoints, which may differ.
  auto newest = options_.seq ? std::nullopt : jobs::readable_metadata(store_, job_name_, all_.back());
  if (!options_.seq &&
      (job_.mode == manifest::Mode::kUncoordinated || (newest && newest->mode == manifest::Mode::kUncoordinated))) {
    for (auto it = all_.rbegin(); it != all_.rend() && from_.size() < job_.units.size(); ++it) {
      auto c = jobs::readable_metadata(store_, job_name_, *it);
      if (!c) continue;
      for (const auto& cu : c->units) {
        if (!job_.find_unit(cu.name) || from_.count(cu.name)) continue;
        from_[cu.name] = *it;
        for (const auto& tie : cu.job_ties) {
          spdlog::warn("unit '{}' restarts from checkpoint {}, taken on its own while it talked to another unit: {}",
                       cu.name, *it, tie);
        }
      }
    }
    std::set<uint64_t> seqs;
    for (const auto& [unit, s] : from_) seqs.insert(s);
    if (seqs.size() > 1) {
      std::string list;
      for (const auto& [unit, s] : from_) list += (list.empty() ? "" : ", ") + unit + " from " + std::to_string(s);
      spdlog::warn("job '{}' is uncoordinated: its units restart from their own latest checkpoints ({})", job_name_,
                   list);
    } else if (seqs.size() == 1) {
      seq_ = *seqs.begin();
    }
  } else {
    seq_ = options_.seq ? *options_.seq : jobs::latest_whole(store_, job_name_, all_, options_.fallback);
  }
  if (seq_) {
    from_.clear();
    for (const auto& cu : store_.load_checkpoint_metadata(job_name_, *seq_).units) from_[cu.name] = *seq_;
  }
  for (const auto& name : options_.units) {
    if (!from_.count(name)) throw Error(Exit::kFailed, what() + ": it has no unit '" + name + "'");
  }
  if (!options_.units.empty()) {
    std::erase_if(from_, [&](const auto& f) {
      return std::find(options_.units.begin(), options_.units.end(), f.first) == options_.units.end();
    });
  }
  where_.clear();
  for (const auto& [unit, s] : from_) {
    const manifest::Unit* u = job_.find_unit(unit);
    if (!u) throw Error(Exit::kFailed, what() + ": the job has no unit '" + unit + "' any more");
    auto p = options_.place.find(unit);
    where_[unit] = p != options_.place.end() ? p->second : u->node;
  }
  for (const auto& [unit, node] : options_.place) {
    if (!from_.count(unit))
      throw Error(Exit::kUsage, what() + ": --place names unit '" + unit + "', which it does not hold");
  }
}

void RestartRound::place() {
  abort_all("restarting again");
  parts_.clear();
  std::map<std::string, std::map<std::string, uint64_t>> by_node;
  for (const auto& [unit, s] : from_) by_node[where_.at(unit)][unit] = s;
  for (const auto& [node, units] : by_node) {
    std::vector<std::string> names;
    for (const auto& [unit, s] : units) names.push_back(unit);
    try {
      parts_.push_back(std::make_unique<Part>(Part{nodes_.restart_part(node, job_), units, {}, {}, {}}));
    } catch (const Error& e) {
      throw Error(e.code(), jobs::units_text(names) + " of job '" + job_name_ + "': " + e.what(), e.hint());
    }
  }
  RestartRequest request;
  request.job = job_name_;
  request.materialize = options_.materialize;
  request.leave_stopped = spans();
  request.files = options_.files;
  request.callback_deadline = callback_deadline(options_.callback_timeout, job_);
  log::phase("{}: {} unit(s) on {} node(s)", what(), from_.size(), parts_.size());
  t_start_ = Clock::now();
  run_phase(
      "prepare", Clock::now() + std::chrono::seconds(120),
      [&request](Part& p) {
        RestartRequest mine = request;
        mine.units = p.units;
        p.part->prepare(mine);
      },
      false);
}

compat::Verdict RestartRound::check() {
  run_phase(
      "check", Clock::now() + std::chrono::seconds(120), [](Part& p) { p.verdict = p.part->check(); }, true);
  compat::Verdict all;
  for (const auto& p : parts_) all.insert(all.end(), p->verdict.begin(), p->verdict.end());
  return all;
}

// Refused before anything is restored: the node cannot take a unit as its checkpoint
// recorded it (CRIU would fail halfway, or the unit would run wrong).
void RestartRound::refuse(const compat::Verdict& verdict) {
  for (const auto& e : verdict) {
    if (e.status == compat::Status::kWarn) spdlog::warn("{}: {}", what(), compat::line(e));
  }
  auto no = compat::first_refusal(verdict);
  if (!no) return;
  abort_all(compat::line(*no));
  try {
    store_.append_event(job_name_,
                        {{"event", "restart-refused"}, {"seq", seq_.value_or(0)}, {"error", compat::line(*no)}});
  } catch (const std::exception& e) {
    spdlog::warn("recording the refused restart of job '{}': {}", job_name_, e.what());
  }
  throw Error(compat::refusal_code(*no), what() + ": " + compat::line(*no),
              (no->hint.empty() ? "" : no->hint + "; ") + "nothing was restored; 'gcp-restart " + job_name_ +
                  " --check' shows every check");
}

void RestartRound::restore() {
  run_phase(
      "restore", Clock::time_point::max(), [](Part& p) { p.restored = p.part->restore(); }, false);
  t_restored_ = Clock::now();
}

// A chunk of the checkpoint does not verify: nothing runs. The newest earlier whole
// checkpoint that verifies is restarted with --fallback, named in the hint otherwise.
void RestartRound::refuse_corrupt(const store::Corrupt& bad) {
  abort_all(bad.what());
  parts_.clear();
  try {
    store_.append_event(job_name_, {{"event", "restart-refused"}, {"seq", seq_.value_or(0)}, {"error", bad.what()}});
  } catch (const std::exception& e) {
    spdlog::warn("recording the refused restart of job '{}': {}", job_name_, e.what());
  }
  if (!seq_) throw Error(Exit::kFailed, bad.what(), "no unit of the job was left running; the checkpoint is unchanged");
  if (!refused_) refused_ = *seq_;
  const std::string no_earlier = all_.front() >= *refused_ ? "the job has no earlier checkpoint"
                                                           : "no earlier checkpoint of the job verifies either";
  for (auto it = all_.rbegin(); it != all_.rend(); ++it) {
    if (*it >= *seq_) continue;
    auto earlier = jobs::readable_metadata(store_, job_name_, *it);
    if (!earlier || (earlier->partial && options_.units.empty())) continue;
    if (options_.fallback) {
      spdlog::debug("checkpoint {} of job '{}' does not verify ({}); trying checkpoint {}", *seq_, job_name_,
                    bad.what(), *it);
      options_.seq = *it;
      verify();
      return;
    }
    std::optional<manifest::Checkpoint> whole;
    try {
      whole = store_.load_checkpoint(job_name_, *it);
    } catch (const Error& e) {
      spdlog::warn("{}", e.what());
      continue;
    }
    if (store_.verify(*whole).problems.empty()) {
      throw Error(Exit::kFailed, bad.what(),
                  "checkpoint " + std::to_string(*it) + " verifies: restart it with '--seq " + std::to_string(*it) +
                      "', or pass --fallback");
    }
    spdlog::warn("checkpoint {} of job '{}' does not verify either", *it, job_name_);
  }
  throw Error(Exit::kFailed, bad.what(), no_earlier);
}

void RestartRound::resume() {
  try {
    run_phase(
        "resume", Clock::now() + std::chrono::seconds(60), [](Part& p) { p.part->resume(); }, true);
  } catch (const Error& e) {
    spdlog::warn("{}: the units were restored, but {}", what(), e.what());
  }
  resumed_ = true;
  for (const auto& p : parts_) {
    for (const auto& r : p->restored) {
      manifest::Unit* u = job_.find_unit(r.unit);
      u->pid = r.pid;
      u->cgroup = r.cgroup;
      u->node = r.node;
      u->node_addresses = r.node_addresses;
      if (u->network && !r.network_parent.empty()) u->network->parent = r.network_parent;
      u->state = manifest::UnitState::kRunning;
      u->restored_from = r.seq;
    }
  }
  policy::record_running(job_.history, policy::now());
  job_.history.given_up.clear();  // restarted after all: automatic restarts may go on
  store_.save_job(job_);
}

void RestartRound::callbacks() {
  try {
    run_phase(
        "callbacks", Clock::now() + callback_deadline(options_.callback_timeout, job_) + std::chrono::seconds(60),
        [](Part& p) { p.callbacks = p.part->callbacks(); }, true);
  } catch (const Error& e) {
    spdlog::warn("{}: the units run, but {}", what(), e.what());
  }
  json event = {
      {"event", "restart"}, {"nodes", parts_.size()}, {"restoreMs", round_ms(ms_between(t_start_, t_restored_))}};
  if (seq_) {
    event["seq"] = *seq_;
  } else {
    for (const auto& [unit, s] : from_) event["seqs"][unit] = s;
  }
  for (const auto& p : parts_) {
    for (const auto& [unit, cb] : p->callbacks.items()) event["callbacks"][unit] = cb;
  }
  store_.append_event(job_name_, event);
  spdlog::log(spans() ? spdlog::level::info : spdlog::level::debug, "{}: {} unit(s) run on {} node(s) after {} ms",
              what(), from_.size(), parts_.size(), round_ms(ms_between(t_start_, t_restored_)));
}

}  // namespace gcp::rounds
