// SPDX-License-Identifier: MIT
// The dump gate: gcp's end (gcp::gate::Gate) against the criu translib's action script
// (criu-gate, built into ../libexec/gcp), run as CRIU runs it.
#include "gcp/gate.h"

#include "testing.h"

#include <doctest/doctest.h>

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <optional>
#include <thread>

using gcp::gate::Gate;
using gcp::testing::error_from;
using gcp::testing::TempDir;
using namespace std::chrono_literals;

namespace {

const char* kGate = "../libexec/gcp/criu-gate";

// criu-gate, started as CRIU starts an action script, in a thread of its own.
class Script {
 public:
  Script(const std::string& action, const std::filesystem::path& dir, const std::string& name) {
    REQUIRE(::access(kGate, X_OK) == 0);
    gcp::process::Spec spec;
    spec.argv = {kGate};
    spec.env = {"CRTOOLS_SCRIPT_ACTION=" + action, "GCP_GATE_READY=" + (dir / (name + ".ready")).string(),
                "GCP_GATE_GO=" + (dir / (name + ".go")).string(), "GCP_GATE_WAIT_SEC=20"};
    spec.timeout = 30s;
    thread_ = std::thread([this, spec] {
      result_ = gcp::process::run(spec);
      done_ = true;
    });
  }
  ~Script() {
    if (thread_.joinable()) thread_.join();
  }
  bool done() const { return done_; }
  const gcp::process::Result& result() {
    if (thread_.joinable()) thread_.join();
    return *result_;
  }

 private:
  std::thread thread_;
  std::optional<gcp::process::Result> result_;
  std::atomic<bool> done_ = false;
};

bool ready_within(Gate& gate, std::chrono::milliseconds wait) {
  auto end = std::chrono::steady_clock::now() + wait;
  while (std::chrono::steady_clock::now() < end) {
    if (gate.wait_ready(20ms)) return true;
  }
  return false;
}

}  // namespace

TEST_CASE("the checkpointer says ready at its gate and waits there until gcp opens it") {
  TempDir dir;
  Gate gate(dir.path(), "0");
  CHECK(gate.request() ==
        gcp::manifest::json{{"ready", (dir.path() / "0.ready").string()}, {"go", (dir.path() / "0.go").string()}});
  Script script("pre-dump", dir.path(), "0");
  REQUIRE(ready_within(gate, 10s));
  CHECK(gate.ready());
  std::this_thread::sleep_for(300ms);
  CHECK_FALSE(script.done());  // held at the gate
  gate.open();
  CHECK(script.result().exit_code == 0);
}

TEST_CASE("a gate called off, or closed because gcp is gone, makes the checkpointer give up") {
  TempDir dir;
  SUBCASE("called off") {
    Gate gate(dir.path(), "0");
    Script script("pre-dump", dir.path(), "0");
    REQUIRE(ready_within(gate, 10s));
    gate.call_off();
    CHECK(script.result().exit_code == 1);
    CHECK_CONTAINS(script.result().err, "gcp called the dump off");
  }
  SUBCASE("gcp gone while the checkpointer waits") {
    std::optional<Gate> gate(std::in_place, dir.path(), "0");
    Script script("pre-dump", dir.path(), "0");
    REQUIRE(ready_within(*gate, 10s));
    gate.reset();
    CHECK(script.result().exit_code == 1);
    CHECK_CONTAINS(script.result().err, "gcp closed the go FIFO");
  }
  SUBCASE("gcp gone before the checkpointer got there") {
    { Gate gate(dir.path(), "0"); }
    Script script("pre-dump", dir.path(), "0");
    CHECK(script.result().exit_code == 1);
    CHECK_CONTAINS(script.result().err, "nobody waits on the ready FIFO");
  }
}

TEST_CASE("the gate script does nothing at CRIU's other actions") {
  TempDir dir;
  Gate gate(dir.path(), "0");
  Script script("post-dump", dir.path(), "0");
  CHECK(script.result().exit_code == 0);
  CHECK_FALSE(gate.wait_ready(50ms));
}

TEST_CASE("a gate refuses a line other than 'ready', and a FIFO that exists already") {
  TempDir dir;
  Gate gate(dir.path(), "0");
  int fd = ::open((dir.path() / "0.ready").c_str(), O_WRONLY | O_NONBLOCK);
  REQUIRE(fd >= 0);
  REQUIRE(::write(fd, "hello\n", 6) == 6);
  ::close(fd);
  auto e = error_from([&] { ready_within(gate, 2s); });
  REQUIRE(e);
  CHECK_CONTAINS(e->what(), "wrote 'hello'");
  auto again = error_from([&] { Gate other(dir.path(), "0"); });
  REQUIRE(again);
  CHECK_CONTAINS(again->what(), "0.ready");
}
