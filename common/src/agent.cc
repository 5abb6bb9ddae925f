// SPDX-License-Identifier: MIT
// A node's unit-level command (gcp-checkpoint --agent, gcp-restart --agent): the local
// part of a round whose job checkpointer runs elsewhere, driven over stdin and stdout
// by the protocol in wire.h.
#include "gcp/agent.h"

#include "gcp/caller.h"
#include "gcp/error.h"
#include "gcp/job_store.h"
#include "gcp/log.h"
#include "gcp/names.h"
#include "gcp/proc.h"
#include "gcp/process.h"
#include "gcp/rounds.h"
#include "gcp/store.h"
#include "local_parts.h"
#include "wire.h"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <iostream>
#include <mutex>
#include <thread>

namespace gcp::rounds {
namespace {

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
      try {
        while (wire::read_line(std::cin, line, wire::kMaxRequestBytes)) {
          // Told to abort, this node winds its part down in order (thaw, abort callbacks,
          // staging), even though its input ends right after.
          auto doc = manifest::try_parse(line);
          if (doc && doc->is_object() && (*doc)["op"] == "abort") abandon_on_eof_ = false;
          std::lock_guard lock(m_);
          lines_.push_back(std::move(line));
          cv_.notify_all();
        }
      } catch (const Error& e) {
        // A line too long: the rest of the input is no protocol; it counts as its end.
        std::lock_guard lock(m_);
        broken_ = e.what();
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

  /// The next message; nullopt at the end of input.
  std::optional<json> next() {
    std::unique_lock lock(m_);
    for (;;) {
      cv_.wait(lock, [&] { return eof_ || !lines_.empty(); });
      if (lines_.empty()) {
        if (broken_) throw Error(Exit::kUsage, *broken_);
        return std::nullopt;
      }
      std::string line = std::move(lines_.front());
      lines_.pop_front();
      if (line.empty()) continue;
      return wire::parse_message(line, "the job checkpointer");
    }
  }

  /// The next instruction's op; the end of input is "" (the round is over), abort throws.
  std::pair<std::string, json> instruction() {
    auto m = next();
    if (!m) return {"", json::object()};
    std::string op = wire::text_field(*m, "op", "");
    if (op == "abort")
      throw Error(Exit::kFailed,
                  "aborted by the job checkpointer: " + wire::text_field(*m, "reason", "no reason given"));
    return {op, std::move(*m)};
  }

  void send(const json& message) {
    std::string line = message.dump() + "\n";
    if (std::fwrite(line.data(), 1, line.size(), stdout) != line.size() || std::fflush(stdout) != 0) {
      spdlog::debug("the job checkpointer no longer reads this node's answers");
    }
  }

 private:
  std::mutex m_;
  std::condition_variable cv_;
  std::deque<std::string> lines_;
  bool eof_ = false;
  std::optional<std::string> broken_;  // why the input stopped being the protocol
  std::atomic<bool> abandon_on_eof_{false};
  std::function<void()> cleanup_;
};

[[noreturn]] void out_of_turn(const std::string& op) {
  throw Error(Exit::kFailed, "the job checkpointer sent '" + printable(op, 60) + "' out of turn");
}

void serve_checkpoint(Wire& wire, store::Store& store, const Machine& machine, const manifest::Job& job,
                      const json& request) {
  // Signals wait while the applications are quiesced or the units frozen, and while
  // the part undoes what it did (it goes first).
  std::optional<process::DeferSignals> defer;
  auto part = local_checkpoint_part(store, machine, job);
  wire.abandon_on_eof(true);
  wire.on_abandon(emergency_undo(*part));
  part->prepare(checkpoint_request_from_json(request));
  wire.send({{"phase", "prepare"}});
  for (;;) {
    auto [op, m] = wire.instruction();
    // The end: after the commit, units still held thaw (the part's abort does it).
    if (op.empty()) return;
    json answer = {{"phase", op}};
    if (op == "callbacks") {
      defer.emplace();
      part->callbacks();
    } else if (op == "freeze") {
      part->freeze();
    } else if (op == "dump") {
      part->dump();
    } else if (op == "resume") {
      bool thaw = wire::flag_field(m, "thaw", true);
      part->resume(thaw);
      if (thaw) defer.reset();
    } else if (op == "store") {
      answer["checkpoint"] = wire::part_to_wire(part->store());
    } else if (op == "commit") {
      part->committed();
      wire.abandon_on_eof(false);  // committed: units still held thaw on the end of input
    } else if (op == "release") {
      part->release(wire::flag_field(m, "stop", false));
      defer.reset();
    } else {
      out_of_turn(op);
    }
    wire.send(answer);
  }
}

void serve_restart(Wire& wire, store::Store& store, const Machine& machine, const manifest::Job& job,
                   const json& request) {
  auto part = local_restart_part(store, machine, job);
  part->prepare(restart_request_from_json(request));
  wire.send({{"phase", "prepare"}});
  for (;;) {
    // The end of input before resume: what was restored is killed again (abort).
    auto [op, m] = wire.instruction();
    if (op.empty()) return;
    json answer = {{"phase", op}};
    if (op == "check") {
      answer["checks"] = compat::to_json(part->check()).at("checks");
    } else if (op == "restore") {
      answer["units"] = json::array();
      for (const auto& r : part->restore()) answer["units"].push_back(to_json(r));
    } else if (op == "resume") {
      part->resume();
    } else if (op == "callbacks") {
      answer["callbacks"] = part->callbacks();
    } else {
      out_of_turn(op);
    }
    wire.send(answer);
  }
}

}  // namespace

int serve_agent(const std::string& tool, bool verbose) {
  // A node's part takes its job, store and units from its stdin: only a job
  // checkpointer started by root may drive it, never a user through gcp-user.
  caller::refuse_for_user(std::string(names::kOptAgent),
                          "the job checkpointer starts a node's part as root, through the node's launcher");
  // Only answers go to stdout.
  log::setup(tool + "@" + proc::node_name(), verbose);
  // Its reader thread runs until the process ends: the object must too.
  Wire& wire = *new Wire;
  try {
    auto request = wire.next();
    std::string op = request ? wire::text_field(*request, "op", "") : "";
    if (op.empty() || op == "abort") return 0;  // nothing asked, or called off before it began
    int protocol = wire::int_field(*request, "protocol", 1);
    if (protocol != wire::kProtocol) {
      throw Error(Exit::kUsage,
                  "the job checkpointer speaks protocol " + std::to_string(protocol) + ", this node's " + tool +
                      " speaks " + std::to_string(wire::kProtocol),
                  "install the same gcp release on every node");
    }
    if (!request->contains("store") || !(*request)["store"].is_string()) {
      throw Error(Exit::kUsage, "the job checkpointer's request names no store");
    }
    auto store = store::open((*request)["store"].get<std::string>());
    auto cgroups = cgroup::system_cgroups();
    Machine machine = system_machine(*cgroups);
    manifest::Job job = jobs::load(*store, wire::text_field(*request, "job", ""));
    if (op == "checkpoint") {
      serve_checkpoint(wire, *store, machine, job, *request);
    } else if (op == "restart") {
      serve_restart(wire, *store, machine, job, *request);
    } else {
      throw Error(Exit::kUsage, "unknown request '" + printable(op, 60) + "' from the job checkpointer");
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

}  // namespace gcp::rounds
