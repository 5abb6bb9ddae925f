// SPDX-License-Identifier: MIT
// The part of a restart round that runs on this node: its units are restored into
// fresh PID namespaces and cgroups by direct calls. A unit restored is held by an Undo
// guard that kills it again, until the round lets it go (resume).
#include "local_parts.h"

#include "gcp/cgroup.h"
#include "gcp/compat.h"
#include "gcp/error.h"
#include "gcp/events.h"
#include "gcp/fs.h"
#include "gcp/image_source.h"
#include "gcp/log.h"
#include "gcp/netns.h"
#include "gcp/proc.h"
#include "gcp/restart_round.h"
#include "gcp/translib_loader.h"
#include "gcp/undo.h"
#include "gcp/written_files.h"

#include <signal.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <filesystem>
#include <map>
#include <set>

namespace gcp::rounds {
namespace {

using manifest::json;

class LocalRestartPart final : public RestartPart {
 public:
  LocalRestartPart(store::Store& store, const Machine& machine, manifest::Job job)
      : store_(store), machine_(machine), job_(std::move(job)), node_(proc::node_name()) {}
  ~LocalRestartPart() override { abort("the round ended"); }

  const std::string& node() const override { return node_; }
  void prepare(const RestartRequest& request) override;
  compat::Verdict check() override;
  std::vector<Restored> restore() override;
  void resume() override;
  json callbacks() override;
  void abort(const std::string& reason) noexcept override;
  void cancel() noexcept override {}  // its phases end by their own timeouts

 private:
  struct Unit {
    manifest::Unit* spec = nullptr;
    uint64_t seq = 0;
    const manifest::CheckpointUnit* image = nullptr;  // in checkpoints_
    Undo stop;                                        // a restored unit, killed again unless the round lets it go
  };

  std::string what(uint64_t seq) const {
    return "restarting checkpoint " + std::to_string(seq) + " of job '" + job_.name + "'";
  }
  const manifest::Checkpoint& checkpoint(uint64_t seq);
  compat::Verdict check_images(const Unit& unit);
  bool firewall_rules(const Unit& unit);
  std::filesystem::path images_dir(const Unit& unit) const {
    return scratch_->path() / std::to_string(unit.seq) / unit.spec->name;
  }
  void judge_written_files();
  compat::Verdict written_file_entries(size_t i) const;
  void apply_written_files();
  std::string kept_copy(uint64_t seq, const std::string& unit, const manifest::WrittenFile& file);
  Restored restore_unit(Unit& unit);
  void stop_unit(const manifest::Unit& u) noexcept;

  store::Store& store_;
  Machine machine_;
  manifest::Job job_;
  std::string node_;
  RestartRequest request_;
  std::map<uint64_t, manifest::Checkpoint> checkpoints_;
  std::vector<Unit> units_;
  std::vector<std::vector<files::Verdict>> written_;  // per unit of units_: judge_written_files()
  translib::Cache translibs_;
  std::optional<store::ScratchDir> scratch_;
  bool stream_ = false;
};

const manifest::Checkpoint& LocalRestartPart::checkpoint(uint64_t seq) {
  auto it = checkpoints_.find(seq);
  if (it == checkpoints_.end()) it = checkpoints_.emplace(seq, store_.load_checkpoint(job_.name, seq)).first;
  return it->second;
}

void LocalRestartPart::prepare(const RestartRequest& request) {
  request_ = request;
  // The checkpointers are probed (`criu check`: ~0.1-0.2 s) while the checkpoints load.
  for (const auto& [name, seq] : request.units) {
    if (const auto* u = job_.find_unit(name)) translibs_.prefetch(u->translib);
  }
  store_.prepare_read(job_.name);
  scratch_.emplace("restore-" + job_.name);
  for (const auto& [name, seq] : request.units) {
    const auto& c = checkpoint(seq);
    const auto* image = c.find_unit(name);
    if (!image) throw Error(Exit::kFailed, "checkpoint " + std::to_string(seq) + " has no unit '" + name + "'");
    manifest::Unit* u = job_.find_unit(name);
    if (!u) throw Error(Exit::kFailed, "the job has no unit '" + name + "' any more");
    if (!machine_.cgroups.procs(u->cgroup).empty()) {
      // A unit that moves here from another node finds its cgroup taken only where
      // nodes share one kernel (test nodes): its source waits, frozen, until the move
      // is done. It gets a cgroup of its own.
      std::string moved = cgroup::unit_path(job_.name, name) + "." + std::to_string(seq);
      if (u->node != node_ && machine_.cgroups.procs(moved).empty()) {
        u->cgroup = moved;
      } else {
        throw Error(Exit::kFailed, "unit '" + name + "' is still running",
                    "stop it first with 'gcp-isolate kill " + job_.name + " --unit " + name + "'");
      }
    }
    translibs_.prefetch(image->translib);
    units_.push_back({u, seq, image, {}});
  }
  judge_written_files();
  // One unit whose translib restores from an image source (GCP_CAP_IMAGE_SOURCE) gets
  // its images from one, every chunk verified just before the checkpointer reads it: a
  // bad one fails the restore before the restored tasks resume. Anything else (or
  // --materialize) is read back into scratch, every chunk verified, before anything is
  // restored.
  stream_ = !request.materialize && units_.size() == 1 &&
            (translibs_.get(units_[0].image->translib).capabilities() & GCP_CAP_IMAGE_SOURCE) &&
            store::ImageSource::fits(images_dir(units_[0]));
}

bool LocalRestartPart::firewall_rules(const Unit& unit) {
  const auto& cp = checkpoint(unit.seq);
  for (const auto& image : unit.image->images) {
    if (image.path.rfind("nftables-", 0) != 0) continue;
    std::string text;
    auto bad = store_.stream_image(
        cp, unit.spec->name, image,
        [&](std::vector<uint8_t>& piece) {
          text.append(piece.begin(), piece.end());
          return true;
        },
        nullptr);
    if (bad || nftables_beyond_criu_lock(text)) return true;  // a bad chunk: materialize reports it
  }
  return false;
}

// What this node offers each unit against what its checkpoint recorded: the
// translib's checks (the CPU), then gcp's (compat::check_unit).
compat::Verdict LocalRestartPart::check() {
  compat::Verdict verdict;
  compat::Node here;
  here.name = node_;
  here.kernel = proc::kernel_release();
  here.mount_points = compat::mount_points(fs::try_read_file("/proc/self/mountinfo").value_or(""));
  for (size_t i = 0; i < units_.size(); ++i) {
    const auto& unit = units_[i];
    const auto& cu = *unit.image;
    const auto& c = checkpoint(unit.seq);
    here.checkpointer_version = translibs_.probed(cu.translib).value("version", "");
    // The unit's own namespace left here from before is removed by the restart.
    here.address_user = [&](const std::string& address) { return netns::address_user(address, job_.name, cu.name); };
    auto kernel = cu.target ? cu.target->kernel : c.kernels.count(cu.node) ? c.kernels.at(cu.node) : c.kernel;
    auto mine = check_images(unit);
    auto rest = compat::check_unit(cu, kernel, here);
    auto files = written_file_entries(i);
    verdict.insert(verdict.end(), mine.begin(), mine.end());
    verdict.insert(verdict.end(), rest.begin(), rest.end());
    verdict.insert(verdict.end(), files.begin(), files.end());
  }
  return verdict;
}

constexpr uint64_t kMaxCheckImage = 1 << 20;

// The translib checks this node with the images it named at the checkpoint, read back
// (verified) into a directory of their own.
compat::Verdict LocalRestartPart::check_images(const Unit& unit) {
  const auto& cu = *unit.image;
  auto entry = [&](compat::Status status, std::string reason) {
    return compat::Verdict{{"cpu", cu.name, node_, status, std::move(reason), ""}};
  };
  if (!cu.target || cu.target->check_images.empty()) {
    return entry(compat::Status::kUnknown, "not recorded (checkpointed before gcp recorded the CPU's features)");
  }
  const auto& lib = translibs_.get(cu.translib);
  if (!lib.can_check()) return entry(compat::Status::kUnknown, "translib '" + cu.translib + "' cannot check a node");
  auto dir = scratch_->path() / "check" / std::to_string(unit.seq) / cu.name;
  fs::make_dirs(dir, 0700);
  for (const auto& name : cu.target->check_images) {
    auto image = std::find_if(cu.images.begin(), cu.images.end(), [&](const auto& i) { return i.path == name; });
    if (image == cu.images.end()) {
      return entry(compat::Status::kRefuse,
                   "the checkpoint names image '" + name + "' to check, but has no such image");
    }
    // Read into memory: what describes a node is small (cpuinfo.img: 157 bytes here).
    if (image->size > kMaxCheckImage) {
      return entry(compat::Status::kRefuse, "image '" + name + "' named to check a node holds " +
                                                std::to_string(image->size) + " bytes, more than a check reads");
    }
    std::string bytes;
    auto bad = store_.stream_image(
        checkpoint(unit.seq), cu.name, *image,
        [&](std::vector<uint8_t>& piece) {
          bytes.append(piece.begin(), piece.end());
          return true;
        },
        nullptr);
    if (bad) return entry(compat::Status::kRefuse, bad->what());
    fs::write_file_atomic(dir / name, bytes, 0600);
  }
  compat::Verdict out;
  for (const auto& c : lib.check({{"imagesDir", dir.string()}}).value("checks", json::array())) {
    json doc = c.is_object() ? c : json::object();
    doc["unit"] = cu.name;
    doc["node"] = node_;
    out.push_back(compat::entry_from_json(doc, "translib '" + cu.translib + "' check"));
  }
  return out;
}

// Every file the units wrote, as the checkpoint has it, compared with the file there now
// and decided by --files (gcp/written_files.h): judged while preparing, shown by the
// check, carried out just before the restore.
void LocalRestartPart::judge_written_files() {
  written_.clear();
  for (const auto& unit : units_) {
    written_.push_back(unit.image->written_files.empty()
                           ? std::vector<files::Verdict>{}
                           : files::judge(unit.spec->name, unit.image->written_files, request_.files, job_.owner));
  }
}

compat::Verdict LocalRestartPart::written_file_entries(size_t i) const {
  const auto& unit = units_.at(i);
  auto entry = [&](compat::Status status, std::string reason, std::string hint = "") {
    return compat::Entry{"file", unit.spec->name, node_, status, std::move(reason), std::move(hint)};
  };
  if (written_.at(i).empty()) return {entry(compat::Status::kOk, "no file open for writing outside the store")};
  compat::Verdict out;
  for (const auto& v : written_.at(i)) {
    std::string line = files::describe(v, unit.seq);
    switch (v.action) {
      case files::Action::kNone:
        out.push_back(entry(compat::Status::kOk, line));
        break;
      case files::Action::kTruncate:
        out.push_back(entry(compat::Status::kOk, line + ": cut back to its " + std::to_string(v.file.size) +
                                                     " bytes at the checkpoint (--files truncate)"));
        break;
      case files::Action::kRecreate:
        out.push_back(entry(compat::Status::kOk, line + ": written again from the checkpoint's copy"));
        break;
      case files::Action::kKeep:
        out.push_back(entry(compat::Status::kOk, line + ": restarting with it as it is (--files keep)"));
        break;
      case files::Action::kRefuse:
        out.push_back(entry(compat::Status::kRefuse, line, v.hint));
        break;
    }
  }
  return out;
}

void LocalRestartPart::apply_written_files() {
  for (size_t i = 0; i < units_.size(); ++i) files::refuse(written_.at(i), units_[i].seq);
  for (size_t i = 0; i < units_.size(); ++i) {
    files::apply(written_.at(i), units_[i].seq, job_.owner,
                 [&, seq = units_[i].seq](const std::string& unit, const manifest::WrittenFile& f) {
                   return kept_copy(seq, unit, f);
                 });
  }
}

// The copy of a small file the checkpoint kept among the unit's images, every chunk verified.
std::string LocalRestartPart::kept_copy(uint64_t seq, const std::string& unit, const manifest::WrittenFile& file) {
  const auto& c = checkpoint(seq);
  const auto* cu = c.find_unit(unit);
  const manifest::ImageFile* image = nullptr;
  for (const auto& i : cu->images) {
    if (i.path == file.kept) image = &i;
  }
  if (!image) {
    throw Error(Exit::kFailed, "checkpoint " + std::to_string(seq) + " holds no copy of '" + printable(file.path) +
                                   "' (no image '" + file.kept + "')");
  }
  std::string content;
  auto bad = store_.stream_image(
      c, unit, *image,
      [&](std::vector<uint8_t>& piece) {
        content.append(piece.begin(), piece.end());
        return true;
      },
      nullptr);
  if (bad) throw *bad;
  return content;
}

std::vector<Restored> LocalRestartPart::restore() {
  apply_written_files();
  // CRIU reads nftables-N.img into a buffer of the image file's size, which a streamed
  // image does not have: the unit's firewall rules came back empty (ZDTM
  // socket-tcp-syn-sent). A unit with rules of its own is restored from files.
  if (stream_ && firewall_rules(units_[0])) {
    spdlog::debug("unit '{}' has nftables rules of its own: restoring from files, not streamed", units_[0].spec->name);
    stream_ = false;
  }
  if (!stream_) {
    for (const auto& unit : units_) {
      log::phase("{}: reading the images of unit '{}'", what(unit.seq), unit.spec->name);
      store_.materialize(checkpoint(unit.seq), unit.spec->name, images_dir(unit));
    }
  }
  std::vector<Restored> restored;
  for (auto& unit : units_) restored.push_back(restore_unit(unit));
  return restored;
}

Restored LocalRestartPart::restore_unit(Unit& unit) {
  manifest::Unit* u = unit.spec;
  const auto& c = checkpoint(unit.seq);
  log::phase("{}: restoring unit '{}'{}", what(unit.seq), u->name,
             stream_ ? ", its images streamed from the store" : "");
  try {
    machine_.cgroups.create(u->cgroup);
    auto work = store_.job_dir(job_.name) / "logs" / ("restore-" + std::to_string(unit.seq) + "-" + u->name);
    json request = {{"imagesDir", images_dir(unit).string()},
                    {"workDir", work.string()},
                    {"grouping", unit.image->grouping},
                    {"options", unit.image->options},
                    {"tcpConnections", unit.image->tcp_connections},
                    {"joinCgroups", json::array({machine_.cgroups.freezer_dir(u->cgroup) + "/cgroup.procs"})}};
    if (request_.leave_stopped) request["leaveStopped"] = true;
    std::unique_ptr<store::ImageSource> server;
    if (stream_) {
      server = std::make_unique<store::ImageSource>(store_, c, u->name, images_dir(unit));
      request["imageSource"] = server->socket_path().string();
    }
    // CRIU binds the unit's listening callback socket again at its path: the directory
    // must exist (/run is empty after a reboot).
    if (!u->callbacks.socket.empty()) events::prepare_socket(u->callbacks.socket, job_.owner);
    // A unit with its own address comes back in a fresh namespace with it; one left
    // here from before is stale (the unit is not running). It stays locked until the
    // sockets are restored: a peer's retransmission would be reset before.
    std::optional<netns::Config> net;
    if (u->network) {
      net = network_on_this_node(*u->network);
      netns::remove(job_.name, u->name);
      netns::create(job_.name, u->name, *net, true);
      request["netns"] = netns::path(job_.name, u->name);
    }
    json result;
    try {
      result = translibs_.get(unit.image->translib).restart(request);
    } catch (const std::exception&) {
      if (server) {
        if (auto bad = server->finish()) throw *bad;  // the checkpointer stopped at it
        if (server->failure()) spdlog::warn("serving the images of unit '{}': {}", u->name, server->failure()->what());
      }
      throw;
    }
    if (server) {
      if (auto bad = server->finish()) {
        spdlog::warn("{}: {} (the checkpointer did not need that part)", what(unit.seq), bad->what());
      }
    }
    unit.stop = Undo("stopping restored unit '" + u->name + "'", [this, u] { stop_unit(*u); });
    u->pid = result.at("pid").get<pid_t>();  // post-restart hooks reach it by this pid
    // The node's addresses reach it only when it is on the node's network.
    bool on_node_net = proc::ns_inode(*u->pid, "net") == proc::ns_inode(::getpid(), "net");
    Restored r{u->name, unit.seq,  node_,
               *u->pid, u->cgroup, on_node_net ? proc::node_addresses() : std::vector<std::string>{},
               ""};
    if (net) {
      netns::unlock(job_.name, u->name);
      try {
        netns::announce(job_.name, u->name, *net);
      } catch (const Error& e) {
        spdlog::warn("{} (its peers learn the address when they next ask)", e.what());
      }
      r.network_parent = net->parent;
    }
    for (const auto& w : result.value("warnings", json::array())) {
      if (w.is_string()) spdlog::warn("{}: unit '{}': {}", what(unit.seq), u->name, w.get<std::string>());
    }
    return r;
  } catch (const store::Corrupt&) {
    stop_unit(*u);
    throw;
  } catch (const std::exception& e) {
    stop_unit(*u);
    auto* err = dynamic_cast<const Error*>(&e);
    throw Error(
        err ? err->code() : Exit::kFailed, "unit '" + u->name + "': " + e.what(),
        err && !err->hint().empty() ? err->hint() : "no unit of the job was left running; the checkpoint is unchanged");
  }
}

void LocalRestartPart::stop_unit(const manifest::Unit& u) noexcept {
  try {
    cgroup::kill_all(machine_.cgroups, u.cgroup, std::chrono::seconds(10));
    machine_.cgroups.remove(u.cgroup);
  } catch (const std::exception& e) {
    spdlog::warn("stopping restored unit '{}': {}", u.name, e.what());
  }
  if (u.network) netns::remove(job_.name, u.name);
}

void LocalRestartPart::resume() {
  // Restored units waited stopped for every node's units: they go on now.
  for (auto& unit : units_) {
    if (request_.leave_stopped) {
      for (pid_t p : machine_.cgroups.procs(unit.spec->cgroup)) ::kill(p, SIGCONT);
    }
    unit.stop.release();
  }
}

json LocalRestartPart::callbacks() {
  json out = json::object();
  // Each unit hears of the checkpoint it came from (units of an uncoordinated job may
  // come from different ones).
  std::map<uint64_t, std::vector<const manifest::Unit*>> by_seq;
  for (const auto& unit : units_) {
    if (events::has_endpoint(*unit.spec)) by_seq[unit.seq].push_back(unit.spec);
  }
  for (const auto& [seq, running] : by_seq) {
    log::phase("{}: post-restart callbacks of {} unit(s)", what(seq), running.size());
    auto results = events::deliver_to(running, events::Event::kPostRestart, job_, seq, request_.callback_deadline);
    events::warn_failed(running, results, what(seq) + ": the job runs, but post-restart failed");
    for (size_t i = 0; i < running.size(); ++i) {
      out[running[i]->name] = {{"via", results[i].via}, {"ms", round_ms(results[i].ms)}};
      if (!results[i].ok) out[running[i]->name]["error"] = results[i].message;
    }
  }
  return out;
}

void LocalRestartPart::abort(const std::string&) noexcept {
  for (auto it = units_.rbegin(); it != units_.rend(); ++it) it->stop.now();
}

}  // namespace

std::unique_ptr<RestartPart> local_restart_part(store::Store& store, const Machine& machine, const manifest::Job& job) {
  return std::make_unique<LocalRestartPart>(store, machine, job);
}

bool nftables_beyond_criu_lock(std::string_view ruleset) {
  std::istringstream in{std::string(ruleset)};
  std::string line, chain;
  bool in_chain = false;
  while (std::getline(in, line)) {
    auto start = line.find_first_not_of(" \t");
    std::string_view l = start == std::string::npos ? std::string_view() : std::string_view(line).substr(start);
    if (l.rfind("chain ", 0) == 0) {
      in_chain = true;
      chain = std::string(l.substr(6, l.find(' ', 6) - 6));
    } else if (l == "}") {
      in_chain = false;
    } else if (in_chain && chain != "CRIU" && !l.empty() && l.rfind("type ", 0) != 0 &&
               l.find("jump CRIU") == std::string_view::npos) {
      return true;
    } else if (!in_chain && !l.empty() && l.find("table ") == std::string_view::npos) {
      return true;  // a set, a map, a flowtable: anything else of the ruleset
    }
  }
  return false;
}

}  // namespace gcp::rounds
