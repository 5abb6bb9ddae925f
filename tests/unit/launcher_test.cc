// SPDX-License-Identifier: MIT
#include "gcp/launcher.h"

#include "gcp/error.h"
#include "gcp/fs.h"
#include "gcp/proc.h"
#include "testing.h"

#include <doctest/doctest.h>

#include <stdlib.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>

using gcp::Exit;
using gcp::launcher::Channel;
using gcp::launcher::json;
using gcp::launcher::Launcher;
using gcp::testing::error_from;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

namespace {

// $GCP_CONFIG pointing at a file with `text` for the life of this object.
struct Config {
  explicit Config(const std::string& text) {
    char tmpl[] = "/tmp/gcp-launcher-test-XXXXXX";
    int fd = ::mkstemp(tmpl);
    REQUIRE(fd >= 0);
    ::close(fd);
    path = tmpl;
    gcp::fs::write_file_atomic(path, text, 0600);
    ::setenv("GCP_CONFIG", path.c_str(), 1);
  }
  ~Config() {
    ::unsetenv("GCP_CONFIG");
    std::filesystem::remove(path);
  }
  std::string path;
};

gcp::manifest::Job job_named(const std::string& name) {
  gcp::manifest::Job job;
  job.name = name;
  return job;
}

}  // namespace

TEST_CASE("an ssh launcher quotes the remote command as one shell string, with the settings in front") {
  Launcher ssh = gcp::launcher::parse(json{{"kind", "ssh"}}, "test");
  auto argv = gcp::launcher::command_for(ssh, "n1", {"/opt/gcp/bin/gcp-checkpoint", "--agent", "it's a \"word\""},
                                         {"GCP_STORE=/shared store"});
  REQUIRE(argv.size() == 5);
  CHECK(argv[0] == "ssh");
  CHECK(argv[3] == "n1");
  CHECK(argv[4] == "env 'GCP_STORE=/shared store' /opt/gcp/bin/gcp-checkpoint --agent 'it'\\''s a \"word\"'");
  // What a POSIX shell makes of it is the words we meant.
  gcp::process::Spec spec;
  spec.argv = {"sh", "-c", "printf '%s|' " + argv[4].substr(argv[4].find("/opt"))};
  CHECK(gcp::process::run(spec).out == "/opt/gcp/bin/gcp-checkpoint|--agent|it's a \"word\"|");
}

TEST_CASE("an srun launcher names the node and the allocation and passes the words as they are") {
  Launcher srun = gcp::launcher::parse(json{{"kind", "srun"}, {"slurmJob", 42}}, "test");
  auto argv = gcp::launcher::command_for(srun, "n2", {"gcp-restart", "--agent"});
  CHECK(argv.front() == "srun");
  CHECK(std::find(argv.begin(), argv.end(), "--jobid=42") != argv.end());
  CHECK(std::find(argv.begin(), argv.end(), "--nodelist=n2") != argv.end());
  CHECK(std::find(argv.begin(), argv.end(), "--overlap") != argv.end());
  CHECK(argv[argv.size() - 2] == "gcp-restart");
  CHECK(argv.back() == "--agent");

  ::unsetenv("SLURM_JOB_ID");
  Launcher bare = gcp::launcher::parse(json{{"kind", "srun"}}, "test");
  auto e = error_from([&] { gcp::launcher::command_for(bare, "n2", {"true"}); });
  REQUIRE(e);
  CHECK(e->code() == Exit::kUsage);
  CHECK_CONTAINS(e->hint(), "SLURM_JOB_ID");
}

TEST_CASE("a node name that is not a host name never reaches the launcher's command line") {
  Launcher ssh = gcp::launcher::parse(json{{"kind", "ssh"}}, "test");
  for (const char* bad : {"-oProxyCommand=touch /tmp/x", "n1 n2", "n1;id", ""}) {
    auto e = error_from([&] { gcp::launcher::command_for(ssh, bad, {"true"}); });
    REQUIRE_MESSAGE(e, "'" << bad << "' was taken for a node");
    CHECK(e->code() == Exit::kUsage);
    CHECK_CONTAINS(e->what(), "node name");
  }
  CHECK_NOTHROW(gcp::launcher::command_for(ssh, "node-7.cluster_a", {"true"}));
}

TEST_CASE("a wrong launcher is refused naming where it is") {
  auto e = error_from([] { gcp::launcher::parse(json{{"kind", "telnet"}}, "/etc/gcp/gcp.json: launcher"); });
  REQUIRE(e);
  CHECK(e->code() == Exit::kUsage);
  CHECK_CONTAINS(e->what(), "/etc/gcp/gcp.json: launcher.kind");
  CHECK_CONTAINS(e->what(), "telnet");
  e = error_from([] { gcp::launcher::parse(json{{"kind", "ssh"}, {"command", "ssh n1"}}, "x"); });
  REQUIRE(e);
  CHECK_CONTAINS(e->what(), "x.command");
}

TEST_CASE("a node's launcher: this node runs locally, then the job's, then the node's, then the default") {
  Config cfg(R"({"launcher": {"kind": "ssh"}, "nodes": {"n2": {"launcher": {"kind": "srun", "slurmJob": 7}}}})");
  json doc = gcp::launcher::config();
  auto job = job_named("j");
  CHECK(gcp::launcher::for_node(job, gcp::proc::node_name(), doc).kind == "local");
  CHECK(gcp::launcher::for_node(job, "n1", doc).kind == "ssh");
  CHECK(gcp::launcher::for_node(job, "n2", doc).kind == "srun");
  job.launcher = gcp::manifest::Launcher{"ssh", {"ssh", "-p", "2222", "{node}"}, ""};
  auto own = gcp::launcher::for_node(job, "n2", doc);
  CHECK(own.kind == "ssh");
  CHECK(own.command[2] == "2222");

  auto e = error_from([&] { gcp::launcher::for_node(job_named("j"), "n9", json::object()); });
  REQUIRE(e);
  CHECK(e->code() == Exit::kUsage);
  CHECK_CONTAINS(e->what(), "'n9'");
  CHECK_CONTAINS(e->what(), "no launcher");
  CHECK_CONTAINS(e->hint(), "gcp-launchers(7)");
}

TEST_CASE("a configuration file that is not JSON is refused naming the file") {
  Config cfg("{\"launcher\": ");
  auto e = error_from([] { gcp::launcher::config(); });
  REQUIRE(e);
  CHECK(e->code() == Exit::kUsage);
  CHECK_CONTAINS(e->what(), cfg.path);
}

TEST_CASE("a channel carries JSON lines both ways and ends when its input is closed") {
  // A stand-in for a node command: answers every line with the line wrapped, until EOF.
  Channel c({"sh", "-c", "while read -r l; do printf '{\"got\": %s}\\n' \"$l\"; done; echo '{\"bye\": true}'"},
            "node 'x'");
  REQUIRE(c.send({{"op", "dump"}}));
  auto m = c.receive(Clock::now() + 5s);
  REQUIRE(m);
  CHECK((*m)["got"]["op"] == "dump");
  c.close_input();
  m = c.receive(Clock::now() + 5s);
  REQUIRE(m);
  CHECK((*m)["bye"] == true);
  CHECK_FALSE(c.receive(Clock::now() + 5s));  // end of output
  CHECK_FALSE(c.timed_out());
  CHECK(c.finish(1s) == "exit status 0");
}

TEST_CASE("a channel's deadline passes; a command that answers no JSON is an error naming it; a dead one ends") {
  Channel slow({"sleep", "5"}, "node 'slow'");
  auto t = Clock::now();
  CHECK_FALSE(slow.receive(Clock::now() + 200ms));
  CHECK(slow.timed_out());
  CHECK(Clock::now() - t < 2s);
  CHECK(slow.finish(100ms).find("signal 9") != std::string::npos);  // killed after the grace

  Channel banner({"echo", "Welcome to node x"}, "node 'x'");
  auto e = error_from([&] { banner.receive(Clock::now() + 5s); });
  REQUIRE(e);
  CHECK_CONTAINS(e->what(), "node 'x'");
  CHECK_CONTAINS(e->what(), "Welcome");

  Channel gone({"true"}, "node 'gone'");
  CHECK_FALSE(gone.receive(Clock::now() + 5s));
  CHECK_FALSE(gone.timed_out());
  gone.finish(1s);
  CHECK_FALSE(gone.send({{"op", "dump"}}));  // its input is gone: no SIGPIPE, just false
}
