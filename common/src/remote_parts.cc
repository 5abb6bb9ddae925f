// SPDX-License-Identifier: MIT
// The parts of a round on other nodes: each is the node's unit-level command
// (gcp-checkpoint --agent, gcp-restart --agent) reached through the node's launcher,
// driven over the protocol in wire.h. And system_nodes(), which picks a local part for
// this node and a remote one for any other.
#include "gcp/error.h"
#include "gcp/launcher.h"
#include "gcp/proc.h"
#include "gcp/rounds.h"
#include "gcp/store.h"
#include "local_parts.h"
#include "wire.h"

#include <spdlog/fmt/ranges.h>
#include <spdlog/spdlog.h>

namespace gcp::rounds {
namespace {

// One node's command and the questions asked of it.
class Remote {
 public:
  Remote(std::string node, const launcher::Launcher& how, const json& config, const std::string& tool)
      : node_(std::move(node)) {
    std::vector<std::string> argv = {launcher::tool_path(tool, config), names::kOptAgent};
    if (spdlog::default_logger()->level() <= spdlog::level::debug) argv.push_back("-v");
    auto command = launcher::command_for(how, node_, argv, launcher::forwarded_env());
    spdlog::debug("node '{}' ({} launcher): {}", node_, how.kind, fmt::join(command, " "));
    channel_ = std::make_unique<launcher::Channel>(command, "node '" + node_ + "'");
  }

  const std::string& node() const { return node_; }

  // Sends `message` and waits for the answer to `phase`; a node's error, its end, or
  // anything else throws (store::Corrupt for a chunk that does not verify there).
  json ask(const json& message, const std::string& phase) {
    channel_->send(message);
    auto m = channel_->receive(Clock::time_point::max());
    if (!m) {
      throw Error(Exit::kFailed, "its command ended (" + channel_->finish(std::chrono::milliseconds(2000)) +
                                     ") before '" + phase + "'");
    }
    std::string got = m->value("phase", "");
    if (got == "error") {
      std::string message_text = m->value("message", "failed");
      std::string hint = m->value("hint", "");
      if (m->value("corrupt", false)) throw store::Corrupt(Exit::kFailed, message_text, hint);
      int exit = m->value("exit", 1);
      Exit code = exit == 2 || exit == 3 || exit == 4 || exit == 75 ? static_cast<Exit>(exit) : Exit::kFailed;
      throw Error(code, message_text, hint);
    }
    if (got != phase) throw Error(Exit::kFailed, "answered '" + got + "' instead of '" + phase + "'");
    return std::move(*m);
  }

  // The command ends: it has nothing left to do, or (reason) it must undo its part
  // first, for which it gets up to `grace`.
  void end(const std::optional<std::string>& reason, std::chrono::milliseconds grace) noexcept {
    if (ended_) return;
    ended_ = true;
    try {
      if (reason) channel_->send({{"op", "abort"}, {"reason", *reason}});
      channel_->close_input();
      channel_->finish(grace);
    } catch (const std::exception& e) {
      spdlog::debug("node '{}': {}", node_, e.what());
    }
  }

  void cancel() noexcept { channel_->kill(); }

 private:
  std::string node_;
  std::unique_ptr<launcher::Channel> channel_;
  bool ended_ = false;
};

class RemoteCheckpointPart final : public CheckpointPart {
 public:
  RemoteCheckpointPart(Remote remote, std::string store) : remote_(std::move(remote)), store_(std::move(store)) {}
  ~RemoteCheckpointPart() override { abort("the round ended"); }

  const std::string& node() const override { return remote_.node(); }
  void prepare(const CheckpointRequest& request) override {
    grace_ = request.callback_deadline + std::chrono::seconds(15);
    json message = to_json(request);
    message["op"] = "checkpoint";
    message["protocol"] = wire::kProtocol;
    message["store"] = store_;
    remote_.ask(message, "prepare");
  }
  void callbacks() override { remote_.ask({{"op", "callbacks"}}, "callbacks"); }
  void freeze() override { remote_.ask({{"op", "freeze"}}, "freeze"); }
  void dump() override { remote_.ask({{"op", "dump"}}, "dump"); }
  void resume(bool thaw) override {
    held_ = !thaw;
    remote_.ask({{"op", "resume"}, {"thaw", thaw}}, "resume");
  }
  manifest::Checkpoint store() override {
    auto answer = remote_.ask({{"op", "store"}}, "store");
    return wire::part_from_wire(answer.value("checkpoint", json::object()), "node '" + node() + "'");
  }
  void committed() override {
    remote_.ask({{"op", "commit"}}, "commit");
    if (!held_) remote_.end(std::nullopt, std::chrono::seconds(5));
  }
  void release(bool stop) override {
    remote_.ask({{"op", "release"}, {"stop", stop}}, "release");
    remote_.end(std::nullopt, std::chrono::seconds(5));
  }
  void abort(const std::string& reason) noexcept override { remote_.end(reason, grace_); }
  void cancel() noexcept override { remote_.cancel(); }

 private:
  Remote remote_;
  std::string store_;
  bool held_ = false;
  std::chrono::milliseconds grace_{std::chrono::seconds(15)};
};

class RemoteRestartPart final : public RestartPart {
 public:
  RemoteRestartPart(Remote remote, std::string store) : remote_(std::move(remote)), store_(std::move(store)) {}
  ~RemoteRestartPart() override { abort("the round ended"); }

  const std::string& node() const override { return remote_.node(); }
  void prepare(const RestartRequest& request) override {
    json message = to_json(request);
    message["op"] = "restart";
    message["protocol"] = wire::kProtocol;
    message["store"] = store_;
    remote_.ask(message, "prepare");
  }
  compat::Verdict check() override {
    auto answer = remote_.ask({{"op", "check"}}, "check");
    compat::Verdict out;
    for (const auto& c : answer.value("checks", json::array())) {
      out.push_back(compat::entry_from_json(c, "node '" + node() + "'"));
    }
    return out;
  }
  std::vector<Restored> restore() override {
    auto answer = remote_.ask({{"op", "restore"}}, "restore");
    std::vector<Restored> out;
    for (const auto& r : answer.value("units", json::array())) out.push_back(restored_from_json(r));
    return out;
  }
  void resume() override { remote_.ask({{"op", "resume"}}, "resume"); }
  json callbacks() override {
    auto answer = remote_.ask({{"op", "callbacks"}}, "callbacks");
    remote_.end(std::nullopt, std::chrono::seconds(5));
    return answer.value("callbacks", json::object());
  }
  void abort(const std::string& reason) noexcept override { remote_.end(reason, std::chrono::seconds(30)); }
  void cancel() noexcept override { remote_.cancel(); }

 private:
  Remote remote_;
  std::string store_;
};

class SystemNodes final : public Nodes {
 public:
  SystemNodes(store::Store& store, const Machine& machine) : store_(store), machine_(machine) {}

  std::unique_ptr<CheckpointPart> checkpoint_part(const std::string& node, const manifest::Job& job) override {
    if (node == proc::node_name()) return local_checkpoint_part(store_, machine_, job);
    return std::make_unique<RemoteCheckpointPart>(remote(node, job, "gcp-checkpoint"), store_.root().string());
  }

  std::unique_ptr<RestartPart> restart_part(const std::string& node, const manifest::Job& job) override {
    if (node == proc::node_name()) return local_restart_part(store_, machine_, job);
    return std::make_unique<RemoteRestartPart>(remote(node, job, "gcp-restart"), store_.root().string());
  }

 private:
  Remote remote(const std::string& node, const manifest::Job& job, const std::string& tool) {
    if (!config_) config_ = launcher::config();
    return Remote(node, launcher::for_node(job, node, *config_), *config_, tool);
  }

  store::Store& store_;
  Machine machine_;
  std::optional<json> config_;
};

}  // namespace

std::unique_ptr<Nodes> system_nodes(store::Store& store, const Machine& machine) {
  return std::make_unique<SystemNodes>(store, machine);
}

}  // namespace gcp::rounds
