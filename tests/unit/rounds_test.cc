// SPDX-License-Identifier: MIT
// The round protocol with fake node parts: what the rounds do when a node fails at a
// phase, hangs, or dies, whatever the parts do on their nodes (the e2e tests cover that).
#include "gcp/checkpoint_round.h"
#include "gcp/restart_round.h"

#include "gcp/error.h"
#include "testing.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <condition_variable>
#include <fstream>
#include <mutex>

using gcp::Error;
using gcp::Exit;
using gcp::manifest::json;
using gcp::testing::error_from;
using gcp::testing::ScopedEnv;
using gcp::testing::TempDir;
namespace manifest = gcp::manifest;
namespace rounds = gcp::rounds;
using namespace std::chrono_literals;

namespace {

// What a fake node does: fail at a phase (with an exit code and a hint), hang there
// until cancelled (then end as a killed command does), or die there.
struct Script {
  std::string fail_at, hang_at, die_at, corrupt_at;
  Exit code = Exit::kFailed;
  std::string hint;
  /// What its check says of each of its units: ok, or this status and reason.
  gcp::compat::Status check = gcp::compat::Status::kOk;
  std::string check_reason = "fine";
};

// Every call of every part, in order, as "node phase".
class Log {
 public:
  void add(const std::string& line) {
    std::lock_guard lock(m_);
    lines_.push_back(line);
  }
  std::vector<std::string> of(const std::string& node) {
    std::lock_guard lock(m_);
    std::vector<std::string> out;
    for (const auto& l : lines_) {
      if (l.rfind(node + " ", 0) == 0) out.push_back(l.substr(node.size() + 1));
    }
    return out;
  }

 private:
  std::mutex m_;
  std::vector<std::string> lines_;
};

class FakeStep {
 public:
  FakeStep(std::string node, Script script, Log& log) : node_(std::move(node)), script_(std::move(script)), log_(log) {}

  void step(const std::string& phase) {
    log_.add(node_ + " " + phase);
    if (script_.hang_at == phase) {
      std::unique_lock lock(m_);
      cv_.wait(lock, [&] { return cancelled_; });
      throw Error(Exit::kFailed, "its command ended (killed by signal 9) before '" + phase + "'");
    }
    if (script_.die_at == phase) throw Error(Exit::kFailed, "its command ended (exit status 1) before '" + phase + "'");
    if (script_.corrupt_at == phase) throw gcp::store::Corrupt(Exit::kFailed, "chunk 7 of 'pages-1.img' is corrupt");
    if (script_.fail_at == phase) throw Error(script_.code, "unit 'x': it failed at " + phase, script_.hint);
  }
  void cancel() {
    std::lock_guard lock(m_);
    cancelled_ = true;
    cv_.notify_all();
  }
  const std::string& node() const { return node_; }
  const Script& script() const { return script_; }
  Log& log() { return log_; }

 private:
  std::string node_;
  Script script_;
  Log& log_;
  std::mutex m_;
  std::condition_variable cv_;
  bool cancelled_ = false;
};

class FakeCheckpointPart : public rounds::CheckpointPart {
 public:
  FakeCheckpointPart(std::string node, Script script, Log& log) : f_(std::move(node), std::move(script), log) {}
  const std::string& node() const override { return f_.node(); }
  void prepare(const rounds::CheckpointRequest& request) override {
    request_ = request;
    f_.step("prepare");
  }
  void callbacks() override { f_.step("callbacks"); }
  void freeze() override { f_.step("freeze"); }
  void dump() override { f_.step("dump"); }
  void resume(bool thaw) override { f_.step(thaw ? "resume" : "hold"); }
  manifest::Checkpoint store() override {
    f_.step("store");
    manifest::Checkpoint part;
    part.job = request_.job;
    part.seq = request_.seq;
    part.kernel = "6.18-" + node();
    part.timings = {{"downtimeMs", 5.0}, {"dumpMs", 3.0}, {"storeMs", 1.0}};
    part.bytes = {{"raw", 100}, {"new", 10}, {"stored", 5}};
    for (const auto& u : request_.units) {
      manifest::CheckpointUnit cu;
      cu.name = u;
      cu.node = node();
      cu.translib = "fake";
      cu.timings = {{"dumpMs", 3.0}};
      part.units.push_back(cu);
    }
    return part;
  }
  void committed() override { f_.step("committed"); }
  void release(bool stop) override { f_.step(stop ? "stop" : "thaw"); }
  void abort(const std::string&) noexcept override { f_.log().add(node() + " abort"); }
  void cancel() noexcept override { f_.cancel(); }

 private:
  FakeStep f_;
  rounds::CheckpointRequest request_;
};

class FakeRestartPart : public rounds::RestartPart {
 public:
  FakeRestartPart(std::string node, Script script, Log& log) : f_(std::move(node), std::move(script), log) {}
  const std::string& node() const override { return f_.node(); }
  void prepare(const rounds::RestartRequest& request) override {
    request_ = request;
    f_.step("prepare");
  }
  gcp::compat::Verdict check() override {
    f_.step("check");
    gcp::compat::Verdict out;
    for (const auto& [unit, seq] : request_.units) {
      out.push_back({"cpu", unit, node(), f_.script().check, f_.script().check_reason, ""});
    }
    return out;
  }
  std::vector<rounds::Restored> restore() override {
    f_.step("restore");
    std::vector<rounds::Restored> out;
    for (const auto& [unit, seq] : request_.units) out.push_back({unit, seq, node(), 4000, "gcp/j/" + unit, {}, ""});
    return out;
  }
  void resume() override { f_.step(request_.leave_stopped ? "resume stopped" : "resume"); }
  json callbacks() override {
    f_.step("callbacks");
    return json::object();
  }
  void abort(const std::string&) noexcept override { f_.log().add(node() + " abort"); }
  void cancel() noexcept override { f_.cancel(); }

 private:
  FakeStep f_;
  rounds::RestartRequest request_;
};

// Nodes n1, n2, n3 (never this machine), each with its script.
class FakeNodes : public rounds::Nodes {
 public:
  std::unique_ptr<rounds::CheckpointPart> checkpoint_part(const std::string& node, const manifest::Job&) override {
    return std::make_unique<FakeCheckpointPart>(node, scripts[node], log);
  }
  std::unique_ptr<rounds::RestartPart> restart_part(const std::string& node, const manifest::Job&) override {
    return std::make_unique<FakeRestartPart>(node, scripts[node], log);
  }
  std::map<std::string, Script> scripts;
  Log log;
};

// Job "j": unit a on n1, b on n2, c on n3.
struct RoundFixture {
  RoundFixture() {
    manifest::Job job;
    job.name = "j";
    job.owner = ::geteuid();
    for (const auto& [unit, node] :
         std::vector<std::pair<std::string, std::string>>{{"a", "n1"}, {"b", "n2"}, {"c", "n3"}}) {
      manifest::Unit u;
      u.name = unit;
      u.node = node;
      u.cgroup = "gcp/j/" + unit;
      u.pid = 100;
      job.units.push_back(u);
    }
    store->save_job(job);
  }
  manifest::Checkpoint checkpoint(rounds::CheckpointOptions options = {}) {
    rounds::CheckpointRound round(*store, nodes, "j", options);
    return round.run();
  }
  std::vector<json> events() {
    std::vector<json> out;
    std::ifstream in(store->job_dir("j") / "events.jsonl");
    for (std::string line; std::getline(in, line);) out.push_back(json::parse(line));
    return out;
  }

  TempDir tmp;
  ScopedEnv scratch{"GCP_SCRATCH", (tmp.path() / "scratch").string()};
  std::unique_ptr<gcp::store::Store> store = gcp::store::open(tmp.path().string());
  FakeNodes nodes;
};

const std::vector<std::string> kPhases = {"prepare", "callbacks", "freeze", "dump", "resume", "store"};

}  // namespace

TEST_CASE("a round across three nodes runs every phase on every node in order and commits once") {
  RoundFixture f;
  auto cp = f.checkpoint();
  CHECK(cp.seq == 1);
  REQUIRE(cp.units.size() == 3);
  CHECK(cp.units[0].name == "a");
  CHECK(cp.units[2].node == "n3");
  CHECK(cp.bytes["raw"] == 300);
  CHECK(cp.timings["downtimeMs"] == 5.0);
  CHECK(cp.kernels.size() == 3);  // none is this machine's
  for (const auto& node : {"n1", "n2", "n3"}) {
    CHECK(f.nodes.log.of(node) ==
          std::vector<std::string>{"prepare", "callbacks", "freeze", "dump", "resume", "store", "committed", "abort"});
  }
  CHECK(f.store->checkpoints("j") == std::vector<uint64_t>{1});
  CHECK(f.events().back()["event"] == "checkpoint");
}

TEST_CASE("a node that fails at any phase aborts every node, commits nothing and names the node") {
  for (const auto& phase : kPhases) {
    CAPTURE(phase);
    RoundFixture f;
    f.nodes.scripts["n2"].fail_at = phase;
    f.nodes.scripts["n2"].hint = "look at n2";
    auto e = error_from([&] { f.checkpoint(); });
    REQUIRE(e.has_value());
    CHECK_CONTAINS(e->what(), "node 'n2' (unit 'b'): unit 'x': it failed at " + phase);
    CHECK_CONTAINS(e->hint(), "on node 'n2': look at n2");
    for (const auto& node : {"n1", "n2", "n3"}) {
      auto calls = f.nodes.log.of(node);
      // No node went on to a phase after the one that failed, and every node undid its part.
      CHECK(calls.back() == "abort");
      CHECK(calls.size() ==
            static_cast<size_t>(std::find(kPhases.begin(), kPhases.end(), phase) - kPhases.begin()) + 2);
    }
    CHECK(f.store->checkpoints("j").empty());
    CHECK(f.events().back()["event"] == "checkpoint-failed");
  }
}

TEST_CASE("a node's own exit status becomes the round's when it says not permitted, no checkpointer or busy") {
  RoundFixture f;
  f.nodes.scripts["n3"].fail_at = "freeze";
  f.nodes.scripts["n3"].code = Exit::kNoCheckpointer;
  auto e = error_from([&] { f.checkpoint(); });
  REQUIRE(e.has_value());
  CHECK(e->code() == Exit::kNoCheckpointer);
  // Bad input on a node (its store not mounted, say) is a failed round: the caller's was fine.
  RoundFixture g;
  g.nodes.scripts["n1"].fail_at = "dump";
  g.nodes.scripts["n1"].code = Exit::kUsage;
  auto usage = error_from([&] { g.checkpoint(); });
  REQUIRE(usage.has_value());
  CHECK(usage->code() == Exit::kFailed);
}

TEST_CASE("a node that hangs is cancelled at its phase's deadline and the round aborts") {
  RoundFixture f;
  f.nodes.scripts["n1"].hang_at = "dump";
  rounds::CheckpointOptions options;
  options.max_frozen = 1s;  // the dump's deadline
  auto t = std::chrono::steady_clock::now();
  auto e = error_from([&] { f.checkpoint(options); });
  REQUIRE(e.has_value());
  CHECK(std::chrono::steady_clock::now() - t < 10s);
  CHECK_CONTAINS(e->what(), "node 'n1' (unit 'a'): no answer within the deadline (waiting for 'dump')");
  for (const auto& node : {"n1", "n2", "n3"}) CHECK(f.nodes.log.of(node).back() == "abort");
  CHECK(f.store->checkpoints("j").empty());
}

TEST_CASE("a node whose command dies fails the round with how it ended") {
  RoundFixture f;
  f.nodes.scripts["n2"].die_at = "store";
  auto e = error_from([&] { f.checkpoint(); });
  REQUIRE(e.has_value());
  CHECK_CONTAINS(e->what(), "checkpoint 1 of job 'j' not committed: node 'n2' (unit 'b'): its command ended");
  CHECK(f.store->checkpoints("j").empty());
}

TEST_CASE("held units stay frozen through the commit and are stopped after it") {
  RoundFixture f;
  rounds::CheckpointOptions options;
  options.stop = true;
  f.checkpoint(options);
  CHECK(f.nodes.log.of("n1") == std::vector<std::string>{"prepare", "callbacks", "freeze", "dump", "hold", "store",
                                                         "committed", "stop", "abort"});
  auto job = f.store->load_job("j");
  for (const auto& u : job->units) CHECK(u.state == manifest::UnitState::kStopped);
}

TEST_CASE("a node that cannot stop its held units leaves the checkpoint committed and says so") {
  RoundFixture f;
  f.nodes.scripts["n2"].fail_at = "stop";
  rounds::CheckpointOptions options;
  options.stop = true;
  auto e = error_from([&] { f.checkpoint(options); });
  REQUIRE(e.has_value());
  CHECK_CONTAINS(e->what(), "checkpoint 1 of job 'j' is committed, but stopping the job failed");
  CHECK_CONTAINS(e->hint(), "gcp-isolate kill j");
  CHECK(f.store->checkpoints("j") == std::vector<uint64_t>{1});
}

TEST_CASE("a restart across nodes restores everywhere, lets the units go together, and records them") {
  RoundFixture f;
  f.checkpoint();
  rounds::RestartRound round(*f.store, f.nodes, "j", {});
  auto job = round.run();
  for (const auto& node : {"n1", "n2", "n3"}) {
    // Across nodes the units wait stopped until every node has restored its own.
    CHECK(f.nodes.log.of(node) == std::vector<std::string>{"prepare", "callbacks", "freeze", "dump", "resume", "store",
                                                           "committed", "abort", "prepare", "check", "restore",
                                                           "resume stopped", "callbacks"});
  }
  CHECK(job.find_unit("b")->pid == 4000);
  CHECK(job.find_unit("b")->restored_from == 1u);
  CHECK(f.events().back()["event"] == "restart");
}

TEST_CASE("a node that fails its restore makes every node kill what it restored") {
  for (const std::string phase : {"prepare", "restore"}) {
    CAPTURE(phase);
    RoundFixture f;
    f.checkpoint();
    f.nodes.scripts["n3"].fail_at = phase;
    rounds::RestartRound round(*f.store, f.nodes, "j", {});
    auto e = error_from([&] { round.run(); });
    REQUIRE(e.has_value());
    CHECK_CONTAINS(e->what(),
                   "restarting checkpoint 1 of job 'j': node 'n3' (unit 'c'): unit 'x': it failed at " + phase);
    for (const auto& node : {"n1", "n2", "n3"}) CHECK(f.nodes.log.of(node).back() == "abort");
    CHECK(f.events().back()["event"] == "restart-failed");
  }
}

TEST_CASE("a restart that one node's check refuses restores nothing anywhere and names the unit, node and check") {
  RoundFixture f;
  f.checkpoint();
  f.nodes.scripts["n2"].check = gcp::compat::Status::kRefuse;
  f.nodes.scripts["n2"].check_reason = "CPU xfeatures has unsupported bits";
  f.nodes.scripts["n3"].check = gcp::compat::Status::kWarn;
  rounds::RestartRound round(*f.store, f.nodes, "j", {});
  auto e = error_from([&] { round.run(); });
  REQUIRE(e.has_value());
  CHECK(e->code() == Exit::kFailed);
  CHECK(std::string(e->what()) ==
        "restarting checkpoint 1 of job 'j': unit 'b' on node 'n2': cpu: CPU xfeatures has unsupported bits");
  CHECK_CONTAINS(e->hint(), "--check");
  for (const auto& node : {"n1", "n2", "n3"}) {
    auto log = f.nodes.log.of(node);
    CHECK(std::find(log.begin(), log.end(), "restore") == log.end());
    CHECK(log.back() == "abort");
  }
  CHECK(f.events().back()["event"] == "restart-refused");
}

TEST_CASE("a restart round's check gathers every node's verdict and restores nothing") {
  RoundFixture f;
  f.checkpoint();
  f.nodes.scripts["n1"].check = gcp::compat::Status::kUnknown;
  f.nodes.scripts["n1"].check_reason = "not recorded";
  {
    rounds::RestartRound round(*f.store, f.nodes, "j", {});
    round.verify();
    round.place();
    auto verdict = round.check();
    REQUIRE(verdict.size() == 3);
    CHECK(verdict[0].unit == "a");
    CHECK(verdict[0].node == "n1");
    CHECK(verdict[0].status == gcp::compat::Status::kUnknown);
    CHECK_FALSE(gcp::compat::first_refusal(verdict));
    round.refuse(verdict);  // not-recorded is no refusal
  }
  for (const auto& node : {"n1", "n2", "n3"}) CHECK(f.nodes.log.of(node).back() == "abort");
  CHECK(f.store->load_job("j")->units[0].restored_from == std::nullopt);
}

TEST_CASE("a chunk that does not verify on one node refuses the checkpoint, or falls back to an earlier one") {
  RoundFixture f;
  f.checkpoint();
  f.checkpoint();
  f.nodes.scripts["n2"].corrupt_at = "restore";
  {
    rounds::RestartRound round(*f.store, f.nodes, "j", {});
    auto e = error_from([&] { round.run(); });
    REQUIRE(e.has_value());
    CHECK_CONTAINS(e->what(), "chunk 7 of 'pages-1.img' is corrupt");
    CHECK_CONTAINS(e->hint(), "checkpoint 1 verifies: restart it with '--seq 1', or pass --fallback");
    CHECK(f.events().back()["event"] == "restart-refused");
  }
  // With --fallback the earlier one is restarted; the fake fails every restore of n2 the
  // same way, so the fallback fails too and says that none verifies.
  rounds::RestartOptions fallback;
  fallback.fallback = true;
  rounds::RestartRound round(*f.store, f.nodes, "j", fallback);
  auto e = error_from([&] { round.run(); });
  REQUIRE(e.has_value());
  CHECK_CONTAINS(e->hint(), "no earlier checkpoint of the job verifies either");
  CHECK(f.nodes.log.of("n1").back() == "abort");
}

TEST_CASE("a network namespace's nftables rules beyond CRIU's own lock are told apart from the lock alone") {
  // As CRIU saved them for ZDTM env00 (its lock only) and socket-tcp-syn-sent (a rule of
  // the test's own), behind the image's binary header.
  const std::string lock_only = std::string("\x54\x56\x13\x58\0\0", 6) +
                                "table ip filter {\n"
                                "\tchain CRIU {\n"
                                "\t\tmeta mark 0x0000c114 counter packets 0 bytes 0 accept\n"
                                "\t\tcounter packets 0 bytes 0 drop\n"
                                "\t}\n\n"
                                "\tchain INPUT {\n"
                                "\t\ttype filter hook input priority filter; policy accept;\n"
                                "\t\tcounter packets 0 bytes 0 jump CRIU\n"
                                "\t}\n"
                                "}\n";
  CHECK_FALSE(rounds::nftables_beyond_criu_lock(lock_only));
  CHECK_FALSE(rounds::nftables_beyond_criu_lock(""));
  std::string with_rule = lock_only;
  with_rule.insert(with_rule.find("\t\tcounter packets 0 bytes 0 jump CRIU"),
                   "\t\ttcp dport 8880 counter packets 1 bytes 60 drop\n");
  CHECK(rounds::nftables_beyond_criu_lock(with_rule));
  CHECK(rounds::nftables_beyond_criu_lock("table inet t {\n\tset blocked {\n\t\ttype ipv4_addr\n\t}\n}\n"));
}
