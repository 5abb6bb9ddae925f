// SPDX-License-Identifier: MIT
// The part of a checkpoint round that runs on this node: its units are told, checked,
// frozen, dumped and stored by direct calls. Whatever a phase does that must be undone
// is held by an Undo guard; abort() undoes what is held in the order DESIGN.md gives
// (thaw, unlock, abort callbacks, staging), so that a phase that fails just throws.
#include "local_parts.h"

#include "gcp/caller.h"
#include "gcp/cgroup.h"
#include "gcp/compat.h"
#include "gcp/deps.h"
#include "gcp/error.h"
#include "gcp/events.h"
#include "gcp/fs.h"
#include "gcp/gate.h"
#include "gcp/log.h"
#include "gcp/names.h"
#include "gcp/netns.h"
#include "gcp/proc.h"
#include "gcp/translib_loader.h"
#include "gcp/undo.h"
#include "gcp/unit.h"
#include "gcp/written_files.h"

#include <spdlog/fmt/ranges.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <deque>
#include <filesystem>
#include <mutex>
#include <system_error>
#include <thread>

namespace gcp::rounds {
namespace {

// The staging directory goes away with an aborted round; the checkpointer's log of a
// failed unit is kept in the job's logs, and the message points there instead.
std::string keep_failure_log(store::Store& store, const store::Staging& staging, const std::string& unit,
                             std::string message) {
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(staging.unit_dir(unit), ec)) {
    if (entry.path().extension() != ".log") continue;
    auto kept = store.job_dir(staging.job) / "logs" /
                ("failed-" + std::to_string(staging.seq) + "-" + unit + "-" + entry.path().filename().string());
    std::filesystem::copy_file(entry.path(), kept, std::filesystem::copy_options::overwrite_existing, ec);
    if (ec) continue;
    for (auto pos = message.find(entry.path().string()); pos != std::string::npos;
         pos = message.find(entry.path().string(), pos + 1)) {
      message.replace(pos, entry.path().string().size(), kept.string());
    }
  }
  return message;
}

// The networks a part has locked, shared with what must unlock them when this process
// ends at once (emergency_undo).
class LockedNetworks {
 public:
  explicit LockedNetworks(std::string job) : job_(std::move(job)) {}
  void add(const std::string& unit) {
    std::lock_guard lock(m_);
    units_.push_back(unit);
  }
  std::vector<std::string> units() {
    std::lock_guard lock(m_);
    return units_;
  }
  void unlock_all() noexcept {
    std::lock_guard lock(m_);
    for (const auto& unit : units_) {
      try {
        netns::unlock(job_, unit);
      } catch (const std::exception& e) {
        spdlog::warn("{}", e.what());
      }
    }
    units_.clear();
  }

 private:
  std::mutex m_;
  std::string job_;
  std::vector<std::string> units_;
};

class LocalCheckpointPart final : public CheckpointPart {
 public:
  LocalCheckpointPart(store::Store& store, const Machine& machine, manifest::Job job)
      : store_(store),
        machine_(machine),
        job_(std::move(job)),
        node_(proc::node_name()),
        locked_(std::make_shared<LockedNetworks>(job_.name)) {}
  ~LocalCheckpointPart() override { abort("the round ended"); }

  const std::string& node() const override { return node_; }
  void prepare(const CheckpointRequest& request) override;
  void callbacks() override;
  void freeze() override;
  void dump() override;
  void resume(bool thaw) override;
  manifest::Checkpoint store() override;
  void committed() override { remove_staging_.now(); }
  void release(bool stop) override;
  void abort(const std::string& reason) noexcept override;
  void cancel() noexcept override {}  // its phases end by their own timeouts

  std::function<void()> emergency_undo() const {
    return [locked = locked_] { locked->unlock_all(); };
  }

 private:
  struct Unit {
    const manifest::Unit* spec = nullptr;
    std::vector<std::string> needs;     // what its ties need of the checkpointer
    std::vector<std::string> job_ties;  // ties an uncoordinated checkpoint cannot keep
    events::Result pre, post;
    manifest::json result;  // the translib's answer
    std::vector<manifest::WrittenFile> written;
    std::optional<Error> error;
    double freeze_ms = 0, dump_ms = 0;
    Clock::time_point dump_end;
    std::atomic<bool> dumped{false};  // its dump thread is done
  };

  std::vector<const manifest::Unit*> specs() const;
  std::string unit_error(size_t i, const std::string& why) const {
    return "unit '" + units_[i].spec->name + "': " + why;
  }
  std::string what() const { return "checkpoint " + std::to_string(request_.seq) + " of job '" + job_.name + "'"; }
  void check_ties();
  void start_checkpointers();
  void launch_dump(size_t i);
  void join_dumps();
  void record_written_files();
  [[noreturn]] void dump_failed(size_t i);
  void deliver_post_checkpoint();
  manifest::Target target_of(const Unit& unit) const;

  store::Store& store_;
  Machine machine_;
  manifest::Job job_;
  std::string node_;
  CheckpointRequest request_;
  std::deque<Unit> units_;  // a deque: its elements never move (atomics)
  translib::Cache translibs_;
  manifest::Checkpoint part_;  // this part's timings, then its units
  bool has_callbacks_ = false;
  bool gated_ = false;
  bool held_ = false;  // resume() kept the units frozen
  Clock::time_point t_freeze_, t_frozen_, t_dumped_;
  std::shared_ptr<LockedNetworks> locked_;

  // What must be undone; abort() undoes it from the bottom up.
  std::optional<store::Staging> staging_;
  Undo remove_staging_;
  Undo abort_callbacks_;
  Undo unlock_;
  std::optional<cgroup::ThawWatchdog> watchdog_;
  Undo thaw_;
  std::optional<store::ScratchDir> gate_dir_;
  std::vector<gate::Gate> gates_;
  std::vector<std::thread> workers_;
  Undo stop_dumps_;
};

std::vector<const manifest::Unit*> LocalCheckpointPart::specs() const {
  std::vector<const manifest::Unit*> out;
  for (const auto& u : units_) out.push_back(u.spec);
  return out;
}

void LocalCheckpointPart::prepare(const CheckpointRequest& request) {
  request_ = request;
  for (const auto& name : request.units) {
    const manifest::Unit* u = job_.find_unit(name);
    if (!u) throw Error(Exit::kUsage, "job '" + job_.name + "' has no unit '" + name + "'");
    if (u->node != node_) {
      throw Error(
          Exit::kUsage,
          "unit '" + u->name + "' of job '" + job_.name + "' runs on node '" + u->node + "', this is '" + node_ + "'",
          "run gcp-checkpoint on that node; jobs across nodes need the job checkpointer");
    }
    auto state = unit::live_state(machine_.cgroups, *u);
    if (state == manifest::UnitState::kFrozen) {
      throw Error(Exit::kFailed, "unit '" + u->name + "' of job '" + job_.name + "' is frozen by someone else",
                  "thaw it first (freezer.state in " + machine_.cgroups.freezer_dir(u->cgroup) + ")");
    }
    if (state != manifest::UnitState::kRunning) {
      // A finished unit has nothing left to save; the checkpoint holds the others.
      spdlog::warn("unit '{}' of job '{}' is {}: not part of this checkpoint", u->name, job_.name,
                   manifest::name(state));
      continue;
    }
    // The manifest names the process to dump; only one inside the unit's own cgroup
    // may be dumped, whatever the manifest says.
    auto procs = machine_.cgroups.procs(u->cgroup);
    if (!u->pid || std::find(procs.begin(), procs.end(), *u->pid) == procs.end()) {
      throw Error(Exit::kFailed,
                  "unit '" + u->name + "' of job '" + job_.name + "': its recorded pid " +
                      (u->pid ? std::to_string(*u->pid) : std::string("(none)")) + " is not in its cgroup '" +
                      u->cgroup + "'",
                  "the Job manifest is stale or was edited; 'gcp-isolate status " + job_.name + "' shows the units");
    }
    units_.emplace_back().spec = u;
  }
  if (units_.empty()) {
    throw Error(Exit::kFailed, "job '" + job_.name + "' has no running unit: nothing to checkpoint",
                "restart it with 'gcp-restart " + job_.name + "'");
  }
  // A checkpointer that is missing or does not work here fails the round before
  // anything is told or frozen.
  for (const auto& u : units_) translibs_.get(u.spec->translib);
  const char* gate_env = std::getenv(names::kEnvDumpGate);
  gated_ = !(gate_env && std::string(gate_env) == "0") && std::all_of(units_.begin(), units_.end(), [&](const Unit& u) {
    return (translibs_.get(u.spec->translib).capabilities() & GCP_CAP_DUMP_GATE) != 0;
  });
  has_callbacks_ =
      std::any_of(units_.begin(), units_.end(), [](const Unit& u) { return events::has_endpoint(*u.spec); });
  staging_ = store_.join(job_.name, request.seq, node_);
  remove_staging_ = Undo("removing the staging of " + what(), [this] { store_.abort(*staging_); });
  part_.job = job_.name;
  part_.seq = request.seq;
  part_.kernel = proc::kernel_release();
}

void LocalCheckpointPart::callbacks() {
  if (has_callbacks_) {
    log::phase("{}: pre-checkpoint callbacks of {} unit(s)", what(), units_.size());
    // Once told to quiesce, the applications must hear post-checkpoint or abort.
    abort_callbacks_ = Undo("delivering abort", [this] {
      events::warn_failed(
          specs(), events::deliver_to(specs(), events::Event::kAbort, job_, request_.seq, request_.callback_deadline),
          "delivering abort");
    });
    auto t = Clock::now();
    auto pre =
        events::deliver_to(specs(), events::Event::kPreCheckpoint, job_, request_.seq, request_.callback_deadline);
    part_.timings["preCheckpointMs"] = round_ms(ms_between(t, Clock::now()));
    for (size_t i = 0; i < units_.size(); ++i) {
      units_[i].pre = pre[i];
      if (!pre[i].ok) throw Error(Exit::kFailed, unit_error(i, pre[i].message));
    }
  }
  // After the applications have drained (a connection closed in pre-checkpoint is no
  // tie) and before anything is frozen: a unit tied to the outside would restart broken.
  check_ties();
}

void LocalCheckpointPart::check_ties() {
  auto t = Clock::now();
  std::vector<deps::UnitSpec> specs;
  for (const auto& u : units_) specs.push_back({u.spec->name, deps::spec_of(*u.spec), u.spec->network.has_value()});
  deps::Context context{.coordinated = !request_.uncoordinated, .stop = request_.hold, .peers = request_.peers};
  deps::Graph graph = machine_.ties(job_.name, specs, context);
  for (size_t i = 0; i < units_.size(); ++i) {
    auto bad = graph.breaking(i);
    // Checkpointed one by one, units that talk to each other are not consistent with
    // each other: the operator chose that; the restart warns.
    if (request_.uncoordinated) {
      std::erase_if(bad, [&](const deps::Tie* t) {
        if (t->scope != deps::Scope::kJob) return false;
        units_[i].job_ties.push_back(t->kind + " " + t->object + ": " + t->advice);
        return true;
      });
    }
    if (!bad.empty()) {
      const deps::Tie& tie = *bad.front();
      std::string what = "unit '" + units_[i].spec->name + "' of job '" + job_.name +
                         "' would restart broken: " + tie.kind + " " + tie.object + ": " + tie.advice +
                         (bad.size() > 1 ? " (and " + std::to_string(bad.size() - 1) + " more)" : "");
      if (!request_.force) {
        throw Error(Exit::kFailed, what + "; nothing was checkpointed",
                    "'gcp-deps " + job_.name + " --format text' shows every tie; --force checkpoints anyway");
      }
      spdlog::warn("{} (checkpointing anyway: --force)", what);
    }
    auto needs = graph.needs(i);
    units_[i].needs.assign(needs.begin(), needs.end());
    if (!needs.empty())
      spdlog::debug("unit '{}': its ties need of the checkpointer: {}", units_[i].spec->name, fmt::join(needs, " "));
  }
  // How many ties join units of the job: the policy's choice of strategy (gcp-policy(7)).
  // It travels to the round with this part's result, which takes it out again.
  part_.extra["jobTieCount"] = static_cast<uint64_t>(std::count_if(
      graph.ties.begin(), graph.ties.end(), [](const deps::Tie& t) { return t.scope == deps::Scope::kJob; }));
  part_.timings["depsMs"] = round_ms(ms_between(t, Clock::now()));
}

void LocalCheckpointPart::freeze() {
  // Units never stay frozen for good: if this process dies (even by SIGKILL) or hangs
  // while they are, the watchdog thaws them.
  std::vector<std::string> dirs;
  for (const auto& u : units_) dirs.push_back(machine_.cgroups.freezer_dir(u.spec->cgroup));
  try {
    watchdog_.emplace(dirs, request_.max_frozen);
  } catch (const Error& e) {
    throw Error(Exit::kFailed, std::string("starting the thaw watchdog: ") + e.what(), "nothing was frozen; retry");
  }
  log::phase("{}: {}freezing and dumping {} unit(s)", what(), gated_ ? "starting the checkpointer, " : "",
             units_.size());
  stop_dumps_ = Undo("stopping the dumps", [this] {
    for (auto& g : gates_) g.call_off();  // a checkpointer waiting at its gate gives up
    join_dumps();
  });
  if (gated_) start_checkpointers();
  t_freeze_ = Clock::now();
  thaw_ = Undo("thawing the units", [this] {
    for (const auto& u : units_) cgroup::thaw_quietly(machine_.cgroups, u.spec->cgroup);
  });
  for (size_t i = 0; i < units_.size(); ++i) {
    auto t = Clock::now();
    try {
      cgroup::freeze(machine_.cgroups, units_[i].spec->cgroup, request_.freeze_timeout);
    } catch (const Error& e) {
      throw Error(Exit::kFailed, unit_error(i, e.what()), e.hint());
    }
    units_[i].freeze_ms = ms_between(t, Clock::now());
  }
  // Frozen, no process of a user's unit can exec a setuid program any more: one that
  // did is refused, as its memory would be in a checkpoint the user may read.
  if (job_.owner != 0) {
    auto account = caller::account(job_.owner);
    for (size_t i = 0; i < units_.size(); ++i) {
      try {
        caller::check_within(machine_.cgroups.procs(units_[i].spec->cgroup), account,
                             "unit '" + units_[i].spec->name + "' of job '" + job_.name + "'");
      } catch (const Error& e) {
        throw Error(e.code(), std::string(e.what()) + "; nothing was checkpointed", e.hint());
      }
    }
  }
  // The network of a unit that is held once dumped is locked until it is killed: its
  // kernel would otherwise acknowledge what peers send after the dump, which the
  // restored unit never got (CRIU unlocks the connections it locked when the dump ends,
  // for --leave-running), and answer them with a reset when it dies. So is the network
  // of a unit of a round across nodes until every unit is dumped: a unit dumped first
  // would otherwise take in what one not yet dumped sends again.
  unlock_ = Undo("unlocking the units' networks", [locked = locked_] { locked->unlock_all(); });
  for (size_t i = 0; i < units_.size(); ++i) {
    const auto* u = units_[i].spec;
    if (!(request_.hold || request_.spans) || !u->network) continue;
    try {
      netns::lock(job_.name, u->name);
    } catch (const Error& e) {
      throw Error(Exit::kFailed, unit_error(i, e.what()), e.hint());
    }
    locked_->add(u->name);
  }
  t_frozen_ = Clock::now();
  part_.timings["freezeMs"] = round_ms(ms_between(t_freeze_, t_frozen_));
}

// The checkpointers start while the job runs; each says "ready" at its gate, where it
// waits until every unit is frozen.
void LocalCheckpointPart::start_checkpointers() {
  auto t_launch = Clock::now();
  try {
    gate_dir_.emplace("gate-" + job_.name);
    for (size_t i = 0; i < units_.size(); ++i) gates_.emplace_back(gate_dir_->path(), std::to_string(i));
  } catch (const Error& e) {
    throw Error(Exit::kFailed, std::string("making the checkpointers' gates: ") + e.what(),
                "nothing was frozen; retry");
  }
  for (size_t i = 0; i < units_.size(); ++i) launch_dump(i);
  const auto give_up = t_launch + std::chrono::seconds(120);
  for (size_t i = 0; i < units_.size(); ++i) {
    for (;;) {
      bool ready = false;
      try {
        ready = gates_[i].wait_ready(std::chrono::milliseconds(20));
      } catch (const Error& e) {
        throw Error(Exit::kFailed, unit_error(i, e.what()));
      }
      if (ready) break;
      // A checkpointer that ended before its gate failed to start: its error says why.
      for (size_t j = 0; j < units_.size(); ++j) {
        if (gates_[j].ready() || !units_[j].dumped) continue;
        if (units_[j].error) dump_failed(j);
        throw Error(Exit::kFailed, unit_error(j, "the checkpointer ended before its gate"));
      }
      if (Clock::now() > give_up) {
        throw Error(Exit::kFailed, unit_error(i, "the checkpointer did not start within 120 s"),
                    "nothing was frozen; see the checkpointer's log in the job's logs and retry");
      }
    }
  }
  part_.timings["checkpointerStartMs"] = round_ms(ms_between(t_launch, Clock::now()));
}

// Dumps unit i in a thread of its own; with a gate, its checkpointer waits there.
void LocalCheckpointPart::launch_dump(size_t i) {
  try {
    workers_.emplace_back([this, i] {
      auto& unit = units_[i];
      const auto* u = unit.spec;
      auto t = Clock::now();
      try {
        fs::make_dirs(staging_->unit_dir(u->name), 0700);
        manifest::json request = {
            {"pid", u->pid.value_or(0)}, {"imagesDir", staging_->unit_dir(u->name).string()},
            {"grouping", u->grouping},   {"freezeCgroup", machine_.cgroups.freezer_dir(u->cgroup)},
            {"leaveRunning", true},      {"needs", unit.needs}};
        if (u->network) request["netns"] = netns::path(job_.name, u->name);
        if (gated_) request["gate"] = gates_[i].request();
        unit.result = translibs_.get(u->translib).checkpoint(request);
      } catch (const Error& e) {
        unit.error = e;
      } catch (const std::exception& e) {
        unit.error = Error(Exit::kFailed, e.what());
      }
      unit.dump_end = Clock::now();
      unit.dump_ms = ms_between(t, unit.dump_end);
      unit.dumped = true;
    });
  } catch (const std::system_error& e) {
    throw Error(Exit::kFailed, std::string("starting a dump thread: ") + e.what());
  }
}

void LocalCheckpointPart::join_dumps() {
  for (auto& w : workers_) w.join();
  workers_.clear();
}

// While the units are frozen and the checkpointers dump them: the files as the dump
// has them, read while the dump runs rather than after it.
void LocalCheckpointPart::record_written_files() {
  auto t = Clock::now();
  files::RecordOptions options{.skip = {store_.root(), store::scratch_root()}, .owner = job_.owner, .images_dir = {}};
  for (size_t i = 0; i < units_.size(); ++i) {
    options.images_dir = staging_->unit_dir(units_[i].spec->name);
    try {
      fs::make_dirs(options.images_dir, 0700);
      units_[i].written = files::record(machine_.cgroups.procs(units_[i].spec->cgroup), options);
    } catch (const std::exception& e) {
      throw Error(Exit::kFailed, unit_error(i, std::string("recording the files it writes: ") + e.what()),
                  "the job was thawed and keeps running; the previous checkpoint is still the latest");
    }
  }
  part_.timings["writtenFilesMs"] = round_ms(ms_between(t, Clock::now()));
}

void LocalCheckpointPart::dump_failed(size_t i) {
  const auto& error = *units_[i].error;
  throw Error(Exit::kFailed, unit_error(i, keep_failure_log(store_, *staging_, units_[i].spec->name, error.what())),
              error.hint().empty() ? "the job was thawed and keeps running; the previous checkpoint is still the latest"
                                   : error.hint());
}

void LocalCheckpointPart::dump() {
  if (gated_) {
    auto t_go = Clock::now();
    for (size_t i = 0; i < units_.size(); ++i) {
      try {
        gates_[i].open();
      } catch (const Error& e) {
        throw Error(Exit::kFailed, unit_error(i, e.what()));
      }
    }
    record_written_files();
    join_dumps();
    for (auto& u : units_) u.dump_ms = ms_between(t_go, u.dump_end);
  } else {
    for (size_t i = 0; i < units_.size(); ++i) launch_dump(i);
    record_written_files();
    join_dumps();
  }
  t_dumped_ = Clock::now();
  for (size_t i = 0; i < units_.size(); ++i) {
    if (units_[i].error) dump_failed(i);
  }
  stop_dumps_.release();
  part_.timings["dumpMs"] = round_ms(ms_between(t_frozen_, t_dumped_));
}

void LocalCheckpointPart::resume(bool thaw) {
  held_ = !thaw;
  if (thaw) {
    unlock_.now();
    thaw_.now();
    watchdog_->release();
  }
  auto t_thawed = Clock::now();
  part_.timings["thawMs"] = round_ms(ms_between(t_dumped_, t_thawed));
  part_.timings["downtimeMs"] = round_ms(ms_between(t_freeze_, t_thawed));
  // The dump is done: the applications resume while the images are stored (a failed
  // commit then needs no abort: they resumed already). Held units never do.
  if (thaw && has_callbacks_) {
    deliver_post_checkpoint();
    part_.timings["postCheckpointMs"] = round_ms(ms_between(t_thawed, Clock::now()));
  }
}

void LocalCheckpointPart::deliver_post_checkpoint() {
  abort_callbacks_.release();
  auto post =
      events::deliver_to(specs(), events::Event::kPostCheckpoint, job_, request_.seq, request_.callback_deadline);
  for (size_t i = 0; i < units_.size(); ++i) units_[i].post = post[i];
  events::warn_failed(specs(), post, what() + " goes on, but post-checkpoint failed");
}

// What a node that restores the unit must offer (gcp-restart --check): the unit is still
// there (thawed, or held frozen) to say which of its node's mounts it uses.
manifest::Target LocalCheckpointPart::target_of(const Unit& unit) const {
  const auto* u = unit.spec;
  manifest::Target t;
  t.kernel = part_.kernel;
  for (const auto& image : unit.result.value("checkImages", std::vector<std::string>{})) {
    if (!image.empty() && image.find('/') == std::string::npos) t.check_images.push_back(image);
  }
  if (u->network) {
    if (auto cidr = netns::parse_cidr(u->network->address)) t.addresses.push_back(cidr->host());
  }
  std::vector<std::string> paths;
  for (pid_t pid : machine_.cgroups.procs(u->cgroup)) {
    auto more = compat::paths_of(pid);
    paths.insert(paths.end(), more.begin(), more.end());
  }
  std::string mounts = u->pid ? fs::try_read_file("/proc/" + std::to_string(*u->pid) + "/mountinfo").value_or("") : "";
  t.mounts = compat::used_mounts(paths, mounts, fs::try_read_file("/proc/self/mountinfo").value_or(""));
  return t;
}

manifest::Checkpoint LocalCheckpointPart::store() {
  for (auto& unit : units_) {
    const auto* u = unit.spec;
    const auto& lib = translibs_.get(u->translib);
    for (const auto& name : unit.result.value("pageAligned", std::vector<std::string>{})) {
      staging_->page_aligned[u->name].insert(name);
    }
    manifest::CheckpointUnit cu;
    cu.name = u->name;
    cu.node = u->node;
    cu.grouping = u->grouping;
    cu.translib = lib.name();
    cu.translib_version = lib.version();
    cu.checkpointer = unit.result.value("checkpointer", lib.name());
    cu.checkpointer_version = unit.result.value("version", "");
    cu.stats = unit.result.value("stats", manifest::json::object());
    cu.options = unit.result.value("options", std::vector<std::string>{});
    cu.tcp_connections = unit.result.value("tcpConnections", manifest::json::array());
    cu.target = target_of(unit);
    cu.timings = {{"freezeMs", round_ms(unit.freeze_ms)}, {"dumpMs", round_ms(unit.dump_ms)}};
    if (events::has_endpoint(*u)) {
      cu.callbacks = unit.pre.via;
      manifest::json per_event = {{"pre-checkpoint", round_ms(unit.pre.ms)}};
      if (!held_) per_event["post-checkpoint"] = round_ms(unit.post.ms);
      cu.timings["callbacks"] = per_event;
    }
    cu.job_ties = unit.job_ties;
    cu.written_files = std::move(unit.written);
    part_.units.push_back(std::move(cu));
  }
  log::phase("{}: {}, storing the images", what(), held_ ? "job stays frozen until stopped" : "job thawed");
  // Any failure of the store (an Error, a file system or allocation error alike) fails
  // the round, which thaws a job held frozen and removes the staging.
  try {
    store_.ingest(*staging_, part_);
  } catch (const std::exception& e) {
    auto* err = dynamic_cast<const Error*>(&e);
    throw Error(Exit::kFailed, e.what(),
                err && !err->hint().empty() ? err->hint()
                                            : "the job keeps running; the previous checkpoint is still the latest");
  }
  return part_;
}

void LocalCheckpointPart::release(bool stop) {
  if (stop) {
    // They hear neither post-checkpoint nor abort: they die. Should killing them fail,
    // the round's abort thaws them (a SIGKILL already sent lands then).
    abort_callbacks_.release();
    for (const auto& u : units_) {
      cgroup::kill_all(machine_.cgroups, u.spec->cgroup, std::chrono::seconds(10));
      machine_.cgroups.remove(u.spec->cgroup);
      events::remove_socket(u.spec->callbacks.socket);
      if (u.spec->network) netns::remove(job_.name, u.spec->name);
    }
    thaw_.release();
    unlock_.release();
    if (watchdog_) watchdog_->release();
    return;
  }
  // They stay here (a migration whose restart failed): their network back first, and
  // announced, since a copy elsewhere may have announced the address meanwhile.
  auto locked = locked_->units();
  unlock_.now();
  for (const auto& name : locked) {
    try {
      netns::announce(job_.name, name, network_on_this_node(*job_.find_unit(name)->network));
    } catch (const Error& e) {
      spdlog::warn("{}", e.what());
    }
  }
  thaw_.now();
  if (watchdog_) watchdog_->release();
  if (has_callbacks_) deliver_post_checkpoint();
}

void LocalCheckpointPart::abort(const std::string&) noexcept {
  stop_dumps_.now();
  thaw_.now();
  watchdog_.reset();  // unless released, it thaws again: harmless
  unlock_.now();
  abort_callbacks_.now();
  remove_staging_.now();
}

}  // namespace

netns::Config network_on_this_node(const manifest::Network& n) {
  return {n.address, netns::configured_parent().value_or(n.parent), n.gateway, n.mac};
}

std::unique_ptr<CheckpointPart> local_checkpoint_part(store::Store& store, const Machine& machine,
                                                      const manifest::Job& job) {
  return std::make_unique<LocalCheckpointPart>(store, machine, job);
}

std::function<void()> emergency_undo(CheckpointPart& local_part) {
  return dynamic_cast<LocalCheckpointPart&>(local_part).emergency_undo();
}

}  // namespace gcp::rounds
