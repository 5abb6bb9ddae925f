// SPDX-License-Identifier: MIT
// A coordinated (or, on one node, uncoordinated) checkpoint of a job, phase by phase
// over one part per node (gcp/rounds.h). The round owns what is the job's: its lock,
// the staging of the checkpoint, the manifest it commits, its events; each part owns
// what it did on its node and undoes it when the round aborts it.
#include "gcp/checkpoint_round.h"

#include "gcp/error.h"
#include "gcp/events.h"
#include "gcp/job_store.h"
#include "gcp/log.h"
#include "gcp/policy.h"
#include "gcp/proc.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <future>

namespace gcp::rounds {
namespace {

bool chosen(const std::vector<std::string>& only, const std::string& unit) {
  return only.empty() || std::find(only.begin(), only.end(), unit) != only.end();
}

// Where the job's units are reached, for the dependency check on each node: a unit's
// own address, else its node's addresses.
std::map<std::string, std::string> peer_addresses(const manifest::Job& job) {
  std::map<std::string, std::string> peers;
  for (const auto& u : job.units) {
    if (u.network) {
      peers[u.network->address.substr(0, u.network->address.find('/'))] = u.name;
      continue;
    }
    if (!u.node_addresses.empty()) {
      for (const auto& a : u.node_addresses) peers.emplace(a, u.name);
      continue;
    }
    addrinfo hints{};
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* found = nullptr;
    if (::getaddrinfo(u.node.c_str(), nullptr, &hints, &found) != 0) continue;
    for (auto* a = found; a; a = a->ai_next) {
      char text[INET6_ADDRSTRLEN] = "";
      if (a->ai_family == AF_INET) {
        ::inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(a->ai_addr)->sin_addr, text, sizeof text);
        peers.emplace(text, u.name);
      } else if (a->ai_family == AF_INET6) {
        ::inet_ntop(AF_INET6, &reinterpret_cast<sockaddr_in6*>(a->ai_addr)->sin6_addr, text, sizeof text);
        peers.emplace("[" + std::string(text) + "]", u.name);
      }
    }
    ::freeaddrinfo(found);
  }
  return peers;
}

// A status the round's own status may be: not permitted, no checkpointer or busy on
// that node. Anything else is a failed round: the caller's own input was fine.
Exit round_status(Exit code) {
  return code == Exit::kNotPermitted || code == Exit::kNoCheckpointer || code == Exit::kBusy ? code : Exit::kFailed;
}

const std::string kUnchanged = "the job was thawed and keeps running; the previous checkpoint is still the latest";
const std::string kToldAbort =
    "the job keeps running and was told to resume (abort); the previous checkpoint is still the latest";

}  // namespace

struct CheckpointRound::Part {
  std::unique_ptr<CheckpointPart> part;
  std::vector<std::string> units;
  manifest::Checkpoint stored;  // what its store() returned
};

CheckpointRound::CheckpointRound(store::Store& store, Nodes& nodes, std::string job, CheckpointOptions options,
                                 JobLock lock)
    : store_(store), nodes_(nodes), job_name_(std::move(job)), options_(std::move(options)), lock_mode_(lock) {}

CheckpointRound::~CheckpointRound() {
  // Not committed: every part undoes what it did. Committed: units still held thaw.
  abort_all(failure_.empty() ? "the checkpoint was interrupted" : failure_);
  if (staging_ && !committed_) {
    store_.abort(*staging_);
    try {
      store_.append_event(job_name_, {{"event", "checkpoint-failed"},
                                      {"seq", staging_->seq},
                                      {"error", failure_.empty() ? "interrupted" : failure_}});
    } catch (const std::exception& e) {
      spdlog::warn("recording the failed checkpoint of job '{}': {}", job_name_, e.what());
    }
  }
}

void CheckpointRound::abort_all(const std::string& reason) noexcept {
  for (auto& p : parts_) p->part->abort(reason);
}

std::string CheckpointRound::what() const {
  return "checkpoint " + std::to_string(staging_ ? staging_->seq : 0) + " of job '" + job_name_ + "'";
}

bool CheckpointRound::spans() const {
  return parts_.size() > 1 || (parts_.size() == 1 && parts_[0]->part->node() != proc::node_name());
}

manifest::Checkpoint CheckpointRound::run() {
  prepare();
  callbacks();
  freeze();
  dump();
  resume();
  store();
  commit();
  if (options_.stop) release(true);
  return cp_;
}

void CheckpointRound::run_phase(const char* phase, Clock::time_point deadline, const PartCall& call,
                                const std::string& failed_as, const std::string& hint) {
  auto failed = run_all(
      parts_.size(), phase, deadline, [&](size_t i) { call(*parts_[i]); },
      [&](size_t i) { parts_[i]->part->cancel(); });
  // The first part that failed, in the order of the nodes, speaks for the round.
  for (size_t i = 0; i < parts_.size(); ++i) {
    if (!failed[i]) continue;
    Error e(Exit::kFailed, "failed");
    try {
      std::rethrow_exception(failed[i]);
    } catch (const Error& thrown) {
      e = thrown;
    } catch (const std::exception& thrown) {
      e = Error(Exit::kFailed, thrown.what());
    }
    const std::string node = parts_[i]->part->node();
    std::string message = e.what();
    std::string why = e.hint().empty() ? hint : e.hint();
    if (spans()) {
      message = "node '" + node + "' (" + jobs::units_text(parts_[i]->units) + "): " + message;
      if (!e.hint().empty()) why = "on node '" + node + "': " + e.hint() + (hint.empty() ? "" : "; " + hint);
    }
    failure_ = message;
    if (failed_as.empty()) throw Error(e.code(), message, why);  // the plan's own error, as it is
    throw Error(round_status(e.code()), failed_as + ": " + message, why);
  }
}

void CheckpointRound::prepare() {
  if (lock_mode_ == JobLock::kTake) lock_.emplace(jobs::lock_job(store_, job_name_));
  job_ = jobs::load(store_, job_name_);
  callback_deadline_ = callback_deadline(options_.callback_timeout, job_);
  const bool uncoordinated = options_.uncoordinated || job_.mode == manifest::Mode::kUncoordinated;
  const std::string here = proc::node_name();
  // Uncoordinated, each node checkpoints its own units on its own (e.g. from cron):
  // those of the job that run here, in a checkpoint of their own.
  if (uncoordinated && std::none_of(job_.units.begin(), job_.units.end(), [&](const manifest::Unit& u) {
        return chosen(options_.units, u.name) && u.node == here;
      })) {
    throw Error(Exit::kUsage, "no unit of job '" + job_name_ + "' runs on this node ('" + here + "')",
                "an uncoordinated checkpoint is taken on each unit's own node (e.g. by cron there)");
  }
  std::map<std::string, std::vector<std::string>> by_node;
  for (const auto& u : job_.units) {
    if (!chosen(options_.units, u.name) || (uncoordinated && u.node != here)) continue;
    if (u.state != manifest::UnitState::kRunning) {
      spdlog::warn("unit '{}' of job '{}' is {}: not part of this checkpoint", u.name, job_name_,
                   manifest::name(u.state));
      continue;
    }
    by_node[u.node].push_back(u.name);
  }
  if (by_node.empty()) {
    throw Error(Exit::kFailed, "job '" + job_name_ + "' has no running unit: nothing to checkpoint",
                "restart it with 'gcp-restart " + job_name_ + "'");
  }
  // Running units left out by choice (a migration of one unit, an uncoordinated
  // checkpoint of one node): not a checkpoint of the whole job.
  partial_ = std::any_of(job_.units.begin(), job_.units.end(), [&](const manifest::Unit& u) {
    if (u.state != manifest::UnitState::kRunning) return false;
    auto on = by_node.find(u.node);
    return on == by_node.end() || std::find(on->second.begin(), on->second.end(), u.name) == on->second.end();
  });
  // Every node must be reachable before anything is begun or frozen.
  for (const auto& [node, units] : by_node) {
    try {
      parts_.push_back(std::make_unique<Part>(Part{nodes_.checkpoint_part(node, job_), units, {}}));
    } catch (const Error& e) {
      throw Error(e.code(), jobs::units_text(units) + " of job '" + job_name_ + "': " + e.what(), e.hint());
    }
  }
  staging_ = store_.begin(job_name_);
  CheckpointRequest request;
  request.job = job_name_;
  request.seq = staging_->seq;
  request.hold = options_.stop || options_.hold;
  request.spans = spans();
  request.uncoordinated = uncoordinated;
  request.force = options_.force;
  request.freeze_timeout = options_.freeze_timeout;
  request.max_frozen = options_.max_frozen;
  request.callback_deadline = callback_deadline_;
  if (request.spans) request.peers = peer_addresses(job_);
  size_t count = 0;
  for (const auto& p : parts_) count += p->units.size();
  log::phase("{}: {} unit(s) on {} node(s)", what(), count, parts_.size());
  run_phase(
      "prepare", Clock::now() + std::chrono::seconds(120),
      [&request](Part& p) {
        CheckpointRequest mine = request;
        mine.units = p.units;
        p.part->prepare(mine);
      },
      "", "");
}

void CheckpointRound::callbacks() {
  defer_.emplace();
  bool told = std::any_of(job_.units.begin(), job_.units.end(),
                          [](const manifest::Unit& u) { return events::has_endpoint(u); });
  run_phase(
      "callbacks", Clock::now() + callback_deadline_ + std::chrono::seconds(60), [](Part& p) { p.part->callbacks(); },
      "checkpoint of job '" + job_name_ + "' aborted", told ? kToldAbort : kUnchanged);
}

void CheckpointRound::freeze() {
  t_frozen_start_ = Clock::now();
  run_phase(
      "freeze", t_frozen_start_ + options_.freeze_timeout + std::chrono::seconds(180),
      [](Part& p) { p.part->freeze(); }, "checkpoint of job '" + job_name_ + "' aborted", kUnchanged);
  t_frozen_ = Clock::now();
}

void CheckpointRound::dump() {
  run_phase(
      "dump", t_frozen_start_ + options_.max_frozen, [](Part& p) { p.part->dump(); },
      "checkpoint of job '" + job_name_ + "' aborted", kUnchanged);
  t_dumped_ = Clock::now();
}

void CheckpointRound::resume() {
  const bool thaw = !(options_.stop || options_.hold);
  run_phase(
      "resume", Clock::now() + callback_deadline_ + std::chrono::seconds(60), [thaw](Part& p) { p.part->resume(thaw); },
      "checkpoint of job '" + job_name_ + "' aborted", kUnchanged);
  t_resumed_ = Clock::now();
  // Held units wait frozen for release(); Ctrl-C waits with them.
  if (thaw) defer_.reset();
}

void CheckpointRound::store() {
  log::phase("{}: {}, storing the images", what(),
             options_.stop || options_.hold ? "units stay frozen" : "units thawed");
  run_phase(
      "store", Clock::time_point::max(), [](Part& p) { p.stored = p.part->store(); }, what() + " not committed",
      "the job keeps running; the previous checkpoint is still the latest");
  t_stored_ = Clock::now();

  cp_ = {};
  cp_.job = job_name_;
  cp_.seq = staging_->seq;
  cp_.created = manifest::now_rfc3339();
  cp_.mode = job_.mode == manifest::Mode::kUncoordinated || options_.uncoordinated ? manifest::Mode::kUncoordinated
                                                                                   : manifest::Mode::kCoordinated;
  cp_.partial = partial_;
  cp_.kernel = proc::kernel_release();
  uint64_t raw = 0, fresh = 0, stored = 0;
  uint64_t ties = 0;
  bool ties_known = true;  // a node that did not say leaves them unknown
  for (auto& p : parts_) {
    if (auto n = p->stored.extra.find("jobTieCount"); n != p->stored.extra.end() && n->is_number_unsigned()) {
      ties += n->get<uint64_t>();
    } else {
      ties_known = false;
    }
    // The round's phases took as long as their slowest part.
    for (const auto& [key, value] : p->stored.timings.items()) {
      if (value.is_number()) cp_.timings[key] = std::max(cp_.timings.value(key, 0.0), value.get<double>());
    }
    raw += p->stored.bytes.value("raw", uint64_t{0});
    fresh += p->stored.bytes.value("new", uint64_t{0});
    stored += p->stored.bytes.value("stored", uint64_t{0});
    if (!p->stored.kernel.empty() && p->stored.kernel != cp_.kernel) cp_.kernels[p->part->node()] = p->stored.kernel;
    for (auto& cu : p->stored.units) {
      cu.timings["storeMs"] = p->stored.timings.value("storeMs", 0.0);
      cp_.units.push_back(std::move(cu));
    }
  }
  // In the order of the job's units.
  auto rank = [&](const std::string& unit) {
    for (size_t i = 0; i < job_.units.size(); ++i) {
      if (job_.units[i].name == unit) return i;
    }
    return job_.units.size();
  };
  std::stable_sort(cp_.units.begin(), cp_.units.end(),
                   [&](const auto& a, const auto& b) { return rank(a.name) < rank(b.name); });
  cp_.bytes = {{"raw", raw}, {"new", fresh}, {"stored", stored}};
  job_ties_ = ties_known ? std::optional<uint64_t>(ties) : std::nullopt;
  cp_.timings["freezeBarrierMs"] = round_ms(ms_between(t_frozen_start_, t_frozen_));
}

const manifest::Checkpoint& CheckpointRound::commit() {
  auto t = Clock::now();
  try {
    store_.publish(*staging_, cp_);
  } catch (const std::exception& e) {
    auto* err = dynamic_cast<const Error*>(&e);
    failure_ = std::string("not committed: ") + e.what();
    throw Error(Exit::kFailed, what() + " not committed: " + e.what(),
                err && !err->hint().empty() ? err->hint()
                                            : "the job keeps running; the previous checkpoint is still the latest");
  }
  committed_ = true;
  cp_.timings["commitMs"] = round_ms(ms_between(t, Clock::now()));
  // The committed manifest has every timing but the total, which ends with the commit;
  // the copy the caller gets adds it.
  cp_.timings["totalMs"] = round_ms(ms_between(t_frozen_start_, Clock::now()));
  try {
    run_phase(
        "commit", Clock::now() + std::chrono::seconds(60), [](Part& p) { p.part->committed(); }, "", "");
  } catch (const Error& e) {
    spdlog::warn("{} is committed, but {}", what(), e.what());
  }
  // Where the time went, and the slowest unit.
  const manifest::CheckpointUnit* slowest = nullptr;
  for (const auto& cu : cp_.units) {
    if (!slowest || cu.timings.value("dumpMs", 0.0) > slowest->timings.value("dumpMs", 0.0)) slowest = &cu;
  }
  spdlog::log(spans() ? spdlog::level::info : spdlog::level::debug,
              "{}: {} unit(s) on {} node(s): freeze barrier {} ms, dump {} ms, thaw {} ms, store {} ms, commit {} ms; "
              "downtime {} ms; slowest dump: unit '{}' on '{}' ({} ms)",
              what(), cp_.units.size(), parts_.size(), cp_.timings.value("freezeBarrierMs", 0.0),
              cp_.timings.value("dumpMs", 0.0), cp_.timings.value("thawMs", 0.0), cp_.timings.value("storeMs", 0.0),
              cp_.timings.value("commitMs", 0.0), cp_.timings.value("downtimeMs", 0.0), slowest ? slowest->name : "",
              slowest ? slowest->node : "", slowest ? slowest->timings.value("dumpMs", 0.0) : 0.0);
  store_.append_event(job_name_, {{"event", "checkpoint"},
                                  {"seq", cp_.seq},
                                  {"nodes", parts_.size()},
                                  {"downtimeMs", cp_.timings.value("downtimeMs", 0.0)},
                                  {"totalMs", cp_.timings["totalMs"]},
                                  {"bytes", cp_.bytes}});
  // What it cost the job feeds its policy. A checkpoint of some units only (a
  // migration, one node's units) does not protect the job, and is not counted.
  if (!partial_) {
    jobs::note_history(store_, job_name_, [&](manifest::History& h, const manifest::Job&) {
      policy::record_checkpoint(h, cp_.seq, policy::cost_of(cp_), policy::now(), policy::site());
      h.job_ties = job_ties_;
    });
  }
  jobs::apply_retention(store_, job_name_, options_.keep ? options_.keep : job_.keep);
  return cp_;
}

void CheckpointRound::release(bool stop) {
  try {
    run_phase(
        "release", Clock::now() + callback_deadline_ + std::chrono::seconds(60),
        [stop](Part& p) { p.part->release(stop); }, "", "");
  } catch (const Error& e) {
    defer_.reset();
    if (!stop) {
      spdlog::warn("{} is committed, but {}", what(), e.what());
      return;
    }
    throw Error(Exit::kFailed, what() + " is committed, but stopping the job failed: " + e.what(),
                "kill it with 'gcp-isolate kill " + job_name_ + "'");
  }
  defer_.reset();
  // A migration records where its units run now; --stop records them stopped.
  if (stop && options_.stop) {
    manifest::Job now = jobs::load(store_, job_name_);
    for (const auto& cu : cp_.units) {
      if (auto* u = now.find_unit(cu.name)) {
        u->state = manifest::UnitState::kStopped;
        u->pid.reset();
      }
    }
    store_.save_job(now);
    jobs::note_history(store_, job_name_, [](manifest::History& h, const manifest::Job& j) {
      bool any = std::any_of(j.units.begin(), j.units.end(),
                             [](const manifest::Unit& u) { return u.state == manifest::UnitState::kRunning; });
      if (!any) policy::record_stop(h, "stop", "gcp-checkpoint --stop", false, policy::now());
    });
  }
}

}  // namespace gcp::rounds
