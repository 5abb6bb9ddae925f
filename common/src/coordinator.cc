// SPDX-License-Identifier: MIT
// Rounds across nodes (DESIGN.md, Coordinated checkpoint). The job checkpointer runs
// one unit-level command per node through the node's launcher (gcp-checkpoint --agent,
// gcp-restart --agent) and drives it phase by phase over its stdin and stdout, one
// JSON object per line:
//
//   checkpoint  -> {"op":"checkpoint",...}  <- frozen   -> dump  <- dumped
//               -> thaw | hold              <- resumed           <- stored (images)
//               -> commit (after the manifest is renamed)        [held: <- held, -> stop | thaw]
//               <- done
//   restart     -> {"op":"restart",...}     <- restored -> commit <- done
//
// Either side may end it: the job checkpointer with {"op":"abort"} or by closing the
// command's input (also when it dies: the pipe, or the ssh connection, closes), a node
// with {"phase":"error"}. A node that loses its job checkpointer thaws its units and
// tells them abort; a watchdog thaws them after --max-frozen if the node's command
// hangs or dies itself. Nothing is committed unless every node has stored its units.
#include "coordinator.h"

#include "gcp/error.h"
#include "gcp/launcher.h"
#include "gcp/log.h"
#include "gcp/names.h"
#include "gcp/proc.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <iostream>
#include <map>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <numeric>
#include <thread>

namespace gcp::jobs {
namespace {

using manifest::json;

std::string hex(std::string_view bytes) {
  static const char* digits = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char c : bytes) {
    out.push_back(digits[c >> 4]);
    out.push_back(digits[c & 15]);
  }
  return out;
}

std::string unhex(const std::string& text, const std::string& what) {
  auto value = [&](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    throw Error(Exit::kFailed, what + ": not hexadecimal");
  };
  if (text.size() % 2) throw Error(Exit::kFailed, what + ": odd length");
  std::string out(text.size() / 2, '\0');
  for (size_t i = 0; i < out.size(); ++i) out[i] = static_cast<char>(value(text[2 * i]) << 4 | value(text[2 * i + 1]));
  return out;
}

// A node's part of a checkpoint as it travels: the manifest's units with each image's
// chunk digests as one hex string (a list of 262,144 strings per GiB parses slowly).
json part_to_wire(const manifest::Checkpoint& part) {
  json doc = manifest::to_json(part, false);
  for (size_t u = 0; u < part.units.size(); ++u) {
    for (size_t i = 0; i < part.units[u].images.size(); ++i) {
      doc["units"][u]["images"][i]["digests"] = hex(part.units[u].images[i].digests);
    }
  }
  return doc;
}

std::vector<manifest::CheckpointUnit> units_from_wire(const json& doc, const std::string& from) {
  json copy = doc;
  std::vector<std::string> digests;
  for (auto& u : copy["units"]) {
    for (auto& image : u["images"]) {
      digests.push_back(image.value("digests", ""));
      image.erase("digests");
    }
  }
  auto part = manifest::checkpoint_from_json(copy, from);
  size_t k = 0;
  for (auto& u : part.units) {
    for (auto& image : u.images) {
      image.digests = unhex(digests[k++], from + ": unit '" + u.name + "', image '" + image.path + "'");
      if (image.digests.size() != image.chunk_count() * manifest::ImageFile::kDigestBytes) {
        throw Error(Exit::kFailed, from + ": unit '" + u.name + "', image '" + image.path + "': " +
                                       std::to_string(image.digests.size() / manifest::ImageFile::kDigestBytes) +
                                       " chunk digests for " + std::to_string(image.chunk_count()) + " chunks");
      }
    }
  }
  return std::move(part.units);
}

// ---- the node's side ----

// The job checkpointer on the other end of stdin and stdout. Its input is read all
// the time, not only between phases: when it ends (the job checkpointer died, or its
// ssh connection did) while units are frozen and a dump runs, waiting for the dump to
// end would keep them frozen for as long. So until the round is committed, the end of
// input ends this process at once: the checkpointer dies with it and the thaw watchdog
// thaws the units (the staging is left for gc).
class Wire {
 public:
  Wire() {
    std::thread([this] {
      std::string line;
      while (std::getline(std::cin, line)) {
        // Told to abort, this node winds its part down in order (thaw, abort callbacks,
        // staging), even though its input ends right after.
        json doc = json::parse(line, nullptr, false);
        if (doc.is_object() && doc.value("op", "") == "abort") abandon_on_eof_ = false;
        std::lock_guard lock(m_);
        lines_.push_back(std::move(line));
        cv_.notify_all();
      }
      if (abandon_on_eof_) {
        spdlog::debug("the job checkpointer went away: ending this node's part of the round");
        std::function<void()> cleanup;
        {
          std::lock_guard lock(m_);
          cleanup = cleanup_;
        }
        if (cleanup) cleanup();
        ::_exit(static_cast<int>(Exit::kFailed));
      }
      std::lock_guard lock(m_);
      eof_ = true;
      cv_.notify_all();
    }).detach();
  }

  /// From now on (true) or no longer (false), the end of input ends this process.
  void abandon_on_eof(bool on) { abandon_on_eof_ = on; }
  /// Runs before this process ends for the end of input (the watchdog thaws the units).
  void on_abandon(std::function<void()> cleanup) {
    std::lock_guard lock(m_);
    cleanup_ = std::move(cleanup);
  }

  std::optional<json> next() {
    std::unique_lock lock(m_);
    for (;;) {
      cv_.wait(lock, [&] { return eof_ || !lines_.empty(); });
      if (lines_.empty()) return std::nullopt;
      std::string line = std::move(lines_.front());
      lines_.pop_front();
      if (line.empty()) continue;
      json doc = json::parse(line, nullptr, false);
      if (doc.is_discarded() || !doc.is_object()) {
        throw Error(Exit::kUsage, "the job checkpointer sent something that is not a JSON object");
      }
      return doc;
    }
  }

  void send(const json& message) {
    std::string line = message.dump() + "\n";
    if (std::fwrite(line.data(), 1, line.size(), stdout) != line.size() || std::fflush(stdout) != 0) {
      spdlog::debug("the job checkpointer no longer reads this node's answers");
    }
  }

  // The next instruction, which must be one of `ops`; abort, end of input or anything
  // else throws, which unwinds this node's part.
  json await(std::initializer_list<const char*> ops) {
    auto m = next();
    if (!m) {
      throw Error(Exit::kFailed, "the job checkpointer went away",
                  "this node's units were thawed (or stopped again) and nothing of them was committed");
    }
    std::string op = m->value("op", "");
    if (op == "abort") throw Error(Exit::kFailed, "aborted by the job checkpointer: " + m->value("reason", "no reason given"));
    for (const char* o : ops) {
      if (op == o) return *m;
    }
    throw Error(Exit::kFailed, "the job checkpointer sent '" + op + "' out of turn");
  }

 private:
  std::mutex m_;
  std::condition_variable cv_;
  std::deque<std::string> lines_;
  bool eof_ = false;
  std::atomic<bool> abandon_on_eof_{false};
  std::function<void()> cleanup_;
};

class CheckpointPart : public NodeRound {
 public:
  explicit CheckpointPart(Wire& wire) : wire_(wire) {}
  void frozen(const json& report) override {
    wire_.send({{"phase", "frozen"}, {"units", report}});
    wire_.await({"dump"});
  }
  bool dumped(const json& report) override {
    wire_.send({{"phase", "dumped"}, {"units", report}});
    return wire_.await({"thaw", "hold"})["op"] == "thaw";
  }
  void resumed(const json& report) override { wire_.send({{"phase", "resumed"}, {"units", report}}); }
  void stored(const manifest::Checkpoint& part) override {
    wire_.send({{"phase", "stored"}, {"checkpoint", part_to_wire(part)}});
    wire_.await({"commit"});
    wire_.abandon_on_eof(false);  // committed: units kept frozen are thawed on the end of input
  }
  void on_abandon(std::function<void()> cleanup) override { wire_.on_abandon(std::move(cleanup)); }
  bool release() override {
    wire_.send({{"phase", "held"}});
    return wire_.await({"stop", "thaw"})["op"] == "stop";
  }

 private:
  Wire& wire_;
};

class RestartPart : public RestartRound {
 public:
  explicit RestartPart(Wire& wire) : wire_(wire) {}
  void restored(const json& report) override {
    wire_.send({{"phase", "restored"}, {"node", proc::node_name()}, {"units", report}});
    wire_.await({"commit"});
  }
  void done(const json& event) override { wire_.send({{"phase", "done"}, {"event", event}}); }

 private:
  Wire& wire_;
};

template <typename T>
std::optional<T> optional_field(const json& doc, const char* key) {
  if (!doc.contains(key) || doc[key].is_null()) return std::nullopt;
  return doc[key].get<T>();
}

// ---- the job checkpointer's side ----

// One node's unit-level command.
struct Node {
  std::string name;
  std::vector<std::string> units;
  uint64_t seq = 0;  // a restart: the checkpoint its units come from
  std::unique_ptr<launcher::Channel> channel;
  std::string error;  // what it reported or how it ended, when it failed
  Exit code = Exit::kFailed;  // the node command's own status for `error`
  std::string hint;           // and its hint, if it gave one
  bool corrupt = false;
};

// "unit 'a'" or "units 'a', 'b'".
std::string units_text(const std::vector<std::string>& units) {
  std::string out = units.size() == 1 ? "unit " : "units ";
  for (size_t i = 0; i < units.size(); ++i) out += (i ? ", '" : "'") + units[i] + "'";
  return out;
}

// Starts one unit-level command per node.
std::vector<Node> start_nodes(const manifest::Job& job, const std::vector<std::pair<std::string, std::vector<std::string>>>& by_node,
                              const std::string& tool) {
  json cfg = launcher::config();
  std::vector<Node> nodes;
  for (const auto& [node, units] : by_node) {
    auto l = launcher::for_node(job, node, cfg);
    std::vector<std::string> argv = {launcher::tool_path(tool, cfg), "--agent"};
    if (spdlog::default_logger()->level() <= spdlog::level::debug) argv.push_back("-v");
    auto command = launcher::command_for(l, node, argv, launcher::forwarded_env());
    spdlog::debug("node '{}' ({} launcher): {}", node, l.kind, fmt::join(command, " "));
    Node n;
    n.name = node;
    n.units = units;
    n.channel = std::make_unique<launcher::Channel>(command, "node '" + node + "'");
    nodes.push_back(std::move(n));
  }
  return nodes;
}

std::string key(const Node& n);

// Waits for `phase` from every node; returns false (with Node::error set on the ones
// that failed) when one reports an error, ends, or misses the deadline.
bool collect(std::vector<Node>& nodes, const std::string& phase, Clock::time_point deadline,
             std::map<std::string, json>& answers) {
  bool ok = true;
  for (auto& n : nodes) {
    std::optional<json> m;
    try {
      m = n.channel->receive(deadline);
    } catch (const Error& e) {
      n.error = e.what();
      ok = false;
      continue;
    }
    if (!m) {
      n.error = n.channel->timed_out() ? "no answer within the deadline (waiting for '" + phase + "')"
                                       : "its command ended (" + n.channel->finish(std::chrono::milliseconds(2000)) +
                                             ") before '" + phase + "'";
      ok = false;
      continue;
    }
    std::string got = m->value("phase", "");
    if (got == "error") {
      // "checkpoint of job 'j' aborted: unit 'u': why" says what the round's own error
      // says already, but for the unit and why.
      n.error = m->value("message", "failed");
      if (n.error.rfind("checkpoint", 0) == 0) {
        if (auto at = n.error.find(" aborted: "); at != std::string::npos) n.error.erase(0, at + 10);
      }
      n.corrupt = m->value("corrupt", false);
      n.hint = m->value("hint", "");
      // A status the round's own status may be: not permitted, no checkpointer or busy
      // on that node. Anything else is a failed round, bad input on the node included
      // (the store not mounted there, say): the caller's own input was fine.
      int exit = m->value("exit", 1);
      if (exit == 3 || exit == 4 || exit == 75) n.code = static_cast<Exit>(exit);
      ok = false;
    } else if (got != phase) {
      n.error = "answered '" + got + "' instead of '" + phase + "'";
      ok = false;
    } else {
      answers[key(n)] = std::move(*m);
    }
  }
  return ok;
}

// What answers are filed under: the node, and for a restart from several checkpoints
// (uncoordinated) the checkpoint too.
std::string key(const Node& n) { return n.seq ? n.name + "@" + std::to_string(n.seq) : n.name; }

void send_all(std::vector<Node>& nodes, const json& message) {
  for (auto& n : nodes) n.channel->send(message);
}

// Tells every node to abort and waits (up to `grace`) for each to undo its part.
void abort_all(std::vector<Node>& nodes, const std::string& reason, std::chrono::milliseconds grace) {
  send_all(nodes, {{"op", "abort"}, {"reason", reason}});
  for (auto& n : nodes) n.channel->close_input();
  for (auto& n : nodes) n.channel->finish(grace);
}

// The first failure, naming its node and units.
std::string first_error(const std::vector<Node>& nodes) {
  for (const auto& n : nodes) {
    if (!n.error.empty()) return "node '" + n.name + "' (" + units_text(n.units) + "): " + n.error;
  }
  return "a node failed";
}

// The first failed node's own status and hint (what to do on that node), put before
// what the round says of itself.
std::pair<Exit, std::string> first_status(const std::vector<Node>& nodes, const std::string& round_hint) {
  for (const auto& n : nodes) {
    if (n.error.empty()) continue;
    if (n.hint.empty()) return {n.code, round_hint};
    return {n.code, "on node '" + n.name + "': " + n.hint + (round_hint.empty() ? "" : "; " + round_hint)};
  }
  return {Exit::kFailed, round_hint};
}

std::chrono::milliseconds callback_deadline_of(const std::optional<std::chrono::milliseconds>& option,
                                               const manifest::Job& job) {
  if (option) return *option;
  if (job.callback_timeout_ms) return std::chrono::milliseconds(*job.callback_timeout_ms);
  return std::chrono::milliseconds(10000);
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
    if (u.extra.contains("nodeAddresses") && u.extra["nodeAddresses"].is_array()) {
      for (const auto& a : u.extra["nodeAddresses"]) {
        if (a.is_string()) peers.emplace(a.get<std::string>(), u.name);
      }
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

}  // namespace

bool spans_nodes(const manifest::Job& job, const std::vector<std::string>& only) {
  std::string here = proc::node_name();
  return std::any_of(job.units.begin(), job.units.end(), [&](const manifest::Unit& u) {
    return chosen(only, u.name) && u.state == "running" && u.node != here;
  });
}

bool restart_spans_nodes(const manifest::Job& job, const std::map<std::string, std::string>& place) {
  std::string here = proc::node_name();
  for (const auto& u : job.units) {
    auto p = place.find(u.name);
    if ((p != place.end() ? p->second : u.node) != here) return true;
  }
  return false;
}

manifest::Checkpoint checkpoint_across(store::Store& store, const std::string& job_name,
                                       const CheckpointOptions& options, const AfterCommit& after_commit,
                                       bool locked) {
  std::optional<fs::FileLock> held;
  if (!locked) held.emplace(lock_job(store, job_name));
  manifest::Job job = load(store, job_name);
  std::map<std::string, std::vector<std::string>> by_node;
  for (const auto& u : job.units) {
    if (!chosen(options.units, u.name)) continue;
    if (u.state != "running") {
      spdlog::warn("unit '{}' of job '{}' is {}: not part of this checkpoint", u.name, job_name, u.state);
      continue;
    }
    by_node[u.node].push_back(u.name);
  }
  if (by_node.empty()) {
    throw Error(Exit::kFailed, "job '" + job_name + "' has no running unit: nothing to checkpoint",
                "restart it with 'gcp-restart " + job_name + "'");
  }
  // Every node must be reachable before anything is begun or frozen.
  {
    json cfg = launcher::config();
    for (const auto& [node, units] : by_node) {
      try {
        launcher::for_node(job, node, cfg);
      } catch (const Error& e) {
        throw Error(e.code(), units_text(units) + " of job '" + job_name + "': " + e.what(), e.hint());
      }
    }
  }
  const bool hold = options.stop || static_cast<bool>(after_commit);
  const auto callbacks = callback_deadline_of(options.callback_timeout, job);
  store::Staging staging = store.begin(job_name);
  const std::string what = "checkpoint " + std::to_string(staging.seq) + " of job '" + job_name + "'";
  auto t_start = Clock::now();
  std::vector<Node> nodes;
  const std::string unchanged = "every unit was thawed and keeps running; the previous checkpoint is still the latest";
  auto fail_with = [&](Exit code, const std::string& message, const std::string& hint) {
    abort_all(nodes, message, callbacks + std::chrono::seconds(15));
    store.abort(staging);
    store.append_event(job_name, {{"event", "checkpoint-failed"}, {"seq", staging.seq}, {"error", message}});
    throw Error(code, what + " aborted: " + message, hint);
  };
  auto fail = [&](const std::string& message, const std::string& hint) {
    fail_with(Exit::kFailed, message, hint.empty() ? unchanged : hint);
  };
  // A node failed: the round fails with that node's status and hint.
  auto node_failed = [&] {
    auto [code, hint] = first_status(nodes, unchanged);
    fail_with(code, first_error(nodes), hint);
  };
  try {
    nodes = start_nodes(job, {by_node.begin(), by_node.end()}, "gcp-checkpoint");
  } catch (const Error& e) {
    fail(e.what(), e.hint());
  }
  log::phase("{}: {} unit(s) on {} node(s)", what,
             std::accumulate(by_node.begin(), by_node.end(), size_t{0}, [](size_t n, const auto& b) { return n + b.second.size(); }),
             nodes.size());
  json request = {{"op", "checkpoint"},
                  {"store", store.root().string()},
                  {"job", job_name},
                  {"seq", staging.seq},
                  {"freezeTimeoutMs", options.freeze_timeout.count()},
                  {"maxFrozenS", options.max_frozen.count()},
                  {"callbackTimeoutMs", callbacks.count()},
                  {"force", options.force},
                  {"hold", hold},
                  {"peers", peer_addresses(job)}};
  for (auto& n : nodes) {
    json r = request;
    r["units"] = n.units;
    n.channel->send(r);
  }
  std::map<std::string, json> frozen, dumped, resumed, stored;
  // Prepare: callbacks, the dependency check and the freeze, then the barrier.
  if (!collect(nodes, "frozen", Clock::now() + callbacks + options.freeze_timeout + std::chrono::seconds(60), frozen)) {
    node_failed();
  }
  auto t_frozen = Clock::now();
  send_all(nodes, {{"op", "dump"}});
  if (!collect(nodes, "dumped", t_start + options.max_frozen, dumped)) node_failed();
  auto t_dumped = Clock::now();
  send_all(nodes, {{"op", hold ? "hold" : "thaw"}});
  if (!collect(nodes, "resumed", Clock::now() + callbacks + std::chrono::seconds(60), resumed)) node_failed();
  auto t_resumed = Clock::now();
  log::phase("{}: {}, storing the images", what, hold ? "units stay frozen" : "units thawed");
  if (!collect(nodes, "stored", Clock::time_point::max(), stored)) node_failed();
  auto t_stored = Clock::now();

  manifest::Checkpoint cp;
  cp.job = job_name;
  cp.seq = staging.seq;
  cp.created = manifest::now_rfc3339();
  cp.mode = "coordinated";
  cp.kernel = proc::kernel_release();
  uint64_t raw = 0, fresh = 0, stored_bytes = 0;
  double downtime = 0;
  try {
    for (auto& n : nodes) {
      const json& part = stored[key(n)]["checkpoint"];
      downtime = std::max(downtime, part.value("timings", json::object()).value("downtimeMs", 0.0));
      for (auto& cu : units_from_wire(part, "node '" + n.name + "'")) {
        raw += cu.bytes.value("raw", uint64_t{0});
        fresh += cu.bytes.value("new", uint64_t{0});
        stored_bytes += cu.bytes.value("stored", uint64_t{0});
        cu.timings["storeMs"] = part.value("timings", json::object()).value("storeMs", 0.0);
        cp.units.push_back(std::move(cu));
      }
      if (cp.kernel != part.value("kernel", cp.kernel)) cp.extra["kernels"][n.name] = part.value("kernel", "");
    }
  } catch (const std::exception& e) {
    fail(e.what(), "");
  }
  std::sort(cp.units.begin(), cp.units.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
  std::vector<std::string> cp_units;
  for (const auto& cu : cp.units) cp_units.push_back(cu.name);
  // Some running units left out (a migration of one unit): not a checkpoint of the job.
  if (std::any_of(job.units.begin(), job.units.end(), [&](const manifest::Unit& u) {
        return u.state == "running" && std::find(cp_units.begin(), cp_units.end(), u.name) == cp_units.end();
      })) {
    cp.extra["partial"] = true;
  }
  cp.bytes = {{"raw", raw}, {"new", fresh}, {"stored", stored_bytes}};
  cp.timings = {{"freezeBarrierMs", round_ms(ms_between(t_start, t_frozen))},
                {"dumpMs", round_ms(ms_between(t_frozen, t_dumped))},
                {"thawMs", round_ms(ms_between(t_dumped, t_resumed))},
                {"downtimeMs", round_ms(downtime)},
                {"storeMs", round_ms(ms_between(t_resumed, t_stored))}};
  try {
    store.publish(staging, cp);
  } catch (const std::exception& e) {
    auto* err = dynamic_cast<const Error*>(&e);
    fail(std::string("not committed: ") + e.what(), err ? err->hint() : "");
  }
  auto t_committed = Clock::now();
  cp.timings["commitMs"] = round_ms(ms_between(t_stored, t_committed));
  send_all(nodes, {{"op", "commit"}});
  bool stopped = false;
  std::map<std::string, json> done;
  bool ended = false;  // every node has answered done
  auto end_nodes = [&](const char* op) {
    if (ended) return;
    ended = true;
    if (op) send_all(nodes, {{"op", op}});
    if (!collect(nodes, "done", Clock::now() + callbacks + std::chrono::seconds(60), done)) {
      spdlog::warn("{} is committed, but {}", what, first_error(nodes));
    }
  };
  if (hold) {
    std::map<std::string, json> held_answers;
    bool all_held = collect(nodes, "held", Clock::now() + std::chrono::seconds(60), held_answers);
    if (!all_held) spdlog::warn("{} is committed, but {}", what, first_error(nodes));
    bool stop = options.stop;
    if (after_commit) {
      try {
        stop = after_commit(cp, [&] { end_nodes("stop"); });
      } catch (const std::exception& e) {
        spdlog::error("{}", e.what());
        stop = false;
      }
    }
    end_nodes(stop ? "stop" : "thaw");
    stopped = stop && !after_commit;  // a migration's restart recorded where they run now
  }
  end_nodes(nullptr);
  for (auto& n : nodes) n.channel->finish(std::chrono::seconds(5));
  cp.timings["totalMs"] = round_ms(ms_between(t_start, Clock::now()));

  // The summary: where the time went, and the slowest unit.
  const manifest::CheckpointUnit* slowest = nullptr;
  for (const auto& cu : cp.units) {
    if (!slowest || cu.timings.value("dumpMs", 0.0) > slowest->timings.value("dumpMs", 0.0)) slowest = &cu;
  }
  spdlog::info("{}: {} unit(s) on {} node(s): freeze barrier {} ms, dump {} ms, thaw {} ms, store {} ms, commit {} ms; "
               "downtime {} ms; slowest dump: unit '{}' on '{}' ({} ms)",
               what, cp.units.size(), nodes.size(), cp.timings["freezeBarrierMs"].get<double>(),
               cp.timings["dumpMs"].get<double>(), cp.timings["thawMs"].get<double>(),
               cp.timings["storeMs"].get<double>(), cp.timings["commitMs"].get<double>(), downtime,
               slowest ? slowest->name : "", slowest ? slowest->node : "",
               slowest ? slowest->timings.value("dumpMs", 0.0) : 0.0);
  store.append_event(job_name, {{"event", "checkpoint"},
                                {"seq", cp.seq},
                                {"nodes", nodes.size()},
                                {"downtimeMs", cp.timings["downtimeMs"]},
                                {"totalMs", cp.timings["totalMs"]},
                                {"bytes", cp.bytes}});
  apply_retention(store, job_name, options.keep ? options.keep : job.keep);
  if (stopped) {
    manifest::Job now = load(store, job_name);
    for (const auto& cu : cp.units) {
      if (auto* u = now.find_unit(cu.name)) {
        u->state = "stopped";
        u->pid.reset();
      }
    }
    store.save_job(now);
  }
  return cp;
}

manifest::Job restart_across(store::Store& store, const std::string& job_name, const RestartOptions& options,
                             bool locked, const std::function<void()>& before_commit) {
  std::optional<fs::FileLock> held;
  if (!locked) held.emplace(lock_job(store, job_name));
  manifest::Job job = load(store, job_name);
  auto all = restartable(store, job_name);
  // Units checkpointed one by one (uncoordinated) come from their own checkpoints.
  const bool mixed = !options.per_unit.empty();
  uint64_t seq = mixed ? 0 : options.seq.value_or(latest_whole(store, job_name, all));
  const auto callbacks = callback_deadline_of(options.callback_timeout, job);

  for (;;) {
    const std::string what = mixed ? "restarting job '" + job_name + "' from its units' own checkpoints"
                                   : "restarting checkpoint " + std::to_string(seq) + " of job '" + job_name + "'";
    // One node command per node and checkpoint.
    std::map<std::pair<std::string, uint64_t>, std::vector<std::string>> plan;
    std::map<uint64_t, manifest::Checkpoint> loaded;
    auto checkpoint_of = [&](uint64_t s) -> const manifest::Checkpoint& {
      auto it = loaded.find(s);
      if (it == loaded.end()) it = loaded.emplace(s, store.load_checkpoint_metadata(job_name, s)).first;
      return it->second;
    };
    std::vector<std::pair<std::string, uint64_t>> units;  // unit, checkpoint
    if (mixed) {
      units.assign(options.per_unit.begin(), options.per_unit.end());
    } else {
      for (const auto& cu : checkpoint_of(seq).units) units.emplace_back(cu.name, seq);
    }
    for (const auto& [unit, from] : units) {
      if (!chosen(options.units, unit)) continue;
      const manifest::Unit* u = job.find_unit(unit);
      if (!u) throw Error(Exit::kFailed, what + ": the job has no unit '" + unit + "' any more");
      auto p = options.place.find(unit);
      plan[{p != options.place.end() ? p->second : u->node, from}].push_back(unit);
    }
    for (const auto& [unit, node] : options.place) {
      if (std::none_of(units.begin(), units.end(), [&](const auto& x) { return x.first == unit; })) {
        throw Error(Exit::kUsage, what + ": --place names unit '" + unit + "', which it does not hold");
      }
    }
    std::vector<std::pair<std::string, std::vector<std::string>>> by_node;
    for (const auto& [where, names] : plan) by_node.emplace_back(where.first, names);
    std::vector<Node> nodes = start_nodes(job, by_node, "gcp-restart");
    {
      size_t i = 0;
      for (const auto& [where, names] : plan) nodes[i++].seq = where.second;
    }
    log::phase("{}: {} unit(s) on {} node(s)", what, units.size(), nodes.size());
    auto t_start = Clock::now();
    for (auto& n : nodes) {
      n.channel->send({{"op", "restart"},
                       {"store", store.root().string()},
                       {"job", job_name},
                       {"seq", n.seq},
                       {"units", n.units},
                       {"materialize", options.materialize},
                       {"callbackTimeoutMs", callbacks.count()}});
    }
    std::map<std::string, json> restored;
    if (!collect(nodes, "restored", Clock::time_point::max(), restored)) {
      std::string message = first_error(nodes);
      bool corrupt = std::any_of(nodes.begin(), nodes.end(), [](const Node& n) { return n.corrupt; });
      abort_all(nodes, message, std::chrono::seconds(30));
      store.append_event(job_name, {{"event", corrupt ? "restart-refused" : "restart-failed"}, {"seq", seq}, {"error", message}});
      std::optional<uint64_t> earlier;
      for (auto it = all.rbegin(); it != all.rend() && !mixed; ++it) {
        if (*it < seq && !checkpoint_of(*it).extra.value("partial", false)) {
          earlier = *it;
          break;
        }
      }
      if (corrupt && options.fallback && earlier && !options.seq) {
        spdlog::warn("{}: {}; trying checkpoint {}", what, message, *earlier);
        seq = *earlier;
        continue;
      }
      if (corrupt && earlier) {
        throw Error(Exit::kFailed, what + ": " + message,
                    "checkpoint " + std::to_string(*earlier) + " is earlier: restart it with '--seq " +
                        std::to_string(*earlier) + "', or pass --fallback");
      }
      auto [code, hint] = first_status(nodes, "no unit of the job was left running; the checkpoint is unchanged");
      throw Error(code, what + ": " + message, hint);
    }
    auto t_restored = Clock::now();
    if (before_commit) before_commit();
    send_all(nodes, {{"op", "commit"}});
    std::map<std::string, json> done;
    if (!collect(nodes, "done", Clock::now() + callbacks + std::chrono::seconds(60), done)) {
      spdlog::warn("{}: the units run, but {}", what, first_error(nodes));
    }
    for (auto& n : nodes) n.channel->finish(std::chrono::seconds(5));
    json event = {{"event", "restart"}, {"nodes", nodes.size()}, {"restoreMs", round_ms(ms_between(t_start, t_restored))}};
    if (mixed) {
      for (const auto& [unit, from] : units) event["seqs"][unit] = from;
    } else {
      event["seq"] = seq;
    }
    for (auto& n : nodes) {
      const json& r = restored[key(n)];
      for (const auto& [unit, info] : r["units"].items()) {
        manifest::Unit* u = job.find_unit(unit);
        u->pid = info.value("pid", 0);
        u->cgroup = info.value("cgroup", u->cgroup);
        if (info.contains("nodeAddresses")) u->extra["nodeAddresses"] = info["nodeAddresses"];
        u->node = r.value("node", n.name);
        u->state = "running";
        u->restored_from = n.seq;
      }
      if (done.count(key(n)) && done[key(n)]["event"].contains("callbacks")) {
        for (const auto& [unit, cb] : done[key(n)]["event"]["callbacks"].items()) event["callbacks"][unit] = cb;
      }
    }
    store.save_job(job);
    store.append_event(job_name, event);
    spdlog::info("{}: {} unit(s) run on {} node(s) after {} ms", what, units.size(), nodes.size(),
                 round_ms(ms_between(t_start, t_restored)));
    return job;
  }
}

manifest::Job migrate(store::Store& store, const std::string& job_name, const MigrateOptions& options) {
  auto held = lock_job(store, job_name);
  manifest::Job job = load(store, job_name);
  std::vector<std::string> moving;
  for (const auto& u : job.units) {
    if (options.unit && u.name != *options.unit) continue;
    if (u.state != "running") {
      if (options.unit) throw Error(Exit::kUsage, "unit '" + u.name + "' of job '" + job_name + "' is " + u.state + ", not running",
                                    "restart it where it should run: 'gcp-restart " + job_name + " --place " + u.name + "=" + options.to + "'");
      continue;
    }
    if (u.node == options.to) {
      throw Error(Exit::kUsage, "unit '" + u.name + "' of job '" + job_name + "' runs on '" + options.to + "' already");
    }
    moving.push_back(u.name);
  }
  if (options.unit && moving.empty()) throw Error(Exit::kUsage, "job '" + job_name + "' has no unit '" + *options.unit + "'");
  if (moving.empty()) throw Error(Exit::kFailed, "job '" + job_name + "' has no running unit to move");
  // The target must be reachable before anything is frozen.
  launcher::for_node(job, options.to, launcher::config());

  CheckpointOptions co = options.checkpoint;
  co.units = moving;
  std::optional<manifest::Job> moved;
  std::optional<Error> failure;
  auto t_start = Clock::now();
  double restart_ms = 0, until_running_ms = 0;
  auto cp = checkpoint_across(
      store, job_name, co,
      [&](const manifest::Checkpoint& c, const std::function<void()>& stop_sources) {
        RestartOptions ro = options.restart;
        ro.seq = c.seq;
        ro.units = moving;
        for (const auto& u : moving) ro.place[u] = options.to;
        auto t = Clock::now();
        try {
          // The sources are stopped once the copies are restored and before they are let
          // go: if gcp-migrate dies in between, the job is not running twice (the copies
          // are stopped too, and the committed checkpoint restarts it).
          moved = restart_across(store, job_name, ro, true, stop_sources);
        } catch (const Error& e) {
          failure = e;
        }
        restart_ms = ms_between(t, Clock::now());
        until_running_ms = ms_between(t_start, Clock::now());
        return moved.has_value();  // stop the sources only once the copies run
      },
      true);
  if (failure) {
    store.append_event(job_name, {{"event", "migration-failed"}, {"seq", cp.seq}, {"to", options.to}, {"error", failure->what()}});
    throw Error(failure->code(),
                "moving " + units_text(moving) + " of job '" + job_name + "' to '" + options.to + "' failed: " + failure->what(),
                "the units were thawed and keep running where they were; checkpoint " + std::to_string(cp.seq) +
                    " holds them as they were");
  }
  // restart_across recorded the moved units; the sources are stopped.
  manifest::Job now = load(store, job_name);
  store.append_event(job_name, {{"event", "migrated"},
                                {"seq", cp.seq},
                                {"units", moving},
                                {"to", options.to},
                                {"checkpointMs", cp.timings.value("totalMs", 0.0)},
                                {"restartMs", round_ms(restart_ms)},
                                {"totalMs", round_ms(ms_between(t_start, Clock::now()))}});
  spdlog::info("moved {} of job '{}' to '{}' in {} ms: frozen at the source {} ms before the restart, which took {} ms; "
               "running on '{}' {} ms after the start",
               units_text(moving), job_name, options.to, round_ms(ms_between(t_start, Clock::now())),
               round_ms(until_running_ms - restart_ms), round_ms(restart_ms), options.to, round_ms(until_running_ms));
  return now;
}

int serve_agent(const std::string& tool, bool verbose) {
  // Only answers go to stdout.
  log::setup(tool + "@" + proc::node_name(), verbose);
  // Its reader thread runs until the process ends: the object must too.
  Wire& wire = *new Wire;
  json request;
  try {
    auto first = wire.next();
    if (!first) return 0;  // nothing asked
    request = *first;
    auto store = store::open(request.at("store").get<std::string>());
    auto cgroups = cgroup::system_cgroups();
    std::string job = request.at("job").get<std::string>();
    std::string op = request.value("op", "");
    if (op == "checkpoint") {
      wire.abandon_on_eof(true);
      CheckpointPart part(wire);
      CheckpointOptions o;
      o.round = &part;
      o.seq = request.at("seq").get<uint64_t>();
      o.units = request.at("units").get<std::vector<std::string>>();
      o.freeze_timeout = std::chrono::milliseconds(request.value("freezeTimeoutMs", 10000));
      o.max_frozen = std::chrono::seconds(request.value("maxFrozenS", 900));
      if (auto cb = optional_field<long long>(request, "callbackTimeoutMs")) o.callback_timeout = std::chrono::milliseconds(*cb);
      o.force = request.value("force", false);
      // Kept frozen once dumped (--stop, a migration): what the dependency check and the
      // network lock need to know; whether they are stopped in the end, release() says.
      o.stop = request.value("hold", false);
      o.peers = request.value("peers", std::map<std::string, std::string>{});
      checkpoint(*store, *cgroups, job, o);
      wire.send({{"phase", "done"}});
    } else if (op == "restart") {
      RestartPart part(wire);
      RestartOptions o;
      o.round = &part;
      o.seq = request.at("seq").get<uint64_t>();
      o.units = request.at("units").get<std::vector<std::string>>();
      o.materialize = request.value("materialize", false);
      if (auto cb = optional_field<long long>(request, "callbackTimeoutMs")) o.callback_timeout = std::chrono::milliseconds(*cb);
      restart(*store, *cgroups, job, o);
    } else {
      throw Error(Exit::kUsage, "unknown request '" + op + "' from the job checkpointer");
    }
    return 0;
  } catch (const Error& e) {
    // The job checkpointer reports it, once, for the whole round.
    spdlog::debug("{}", e.what());
    wire.send({{"phase", "error"},
               {"message", e.what()},
               {"hint", e.hint()},
               {"exit", static_cast<int>(e.code())},
               {"corrupt", dynamic_cast<const store::Corrupt*>(&e) != nullptr}});
    return static_cast<int>(e.code());
  } catch (const std::exception& e) {
    spdlog::debug("{}", e.what());
    wire.send({{"phase", "error"}, {"message", e.what()}, {"exit", 1}});
    return 1;
  }
}

}  // namespace gcp::jobs
