// SPDX-License-Identifier: MIT
#include "gcp/manifest.h"

#include "testing.h"

#include <doctest/doctest.h>

#include <functional>
#include <map>

using gcp::Exit;
using gcp::manifest::json;
using gcp::testing::error_from;
namespace manifest = gcp::manifest;

namespace {

manifest::Job sample_job() {
  manifest::Job job;
  job.name = "j";
  job.owner = 1000;
  job.created = "2024-01-02T03:04:05.678Z";
  manifest::Unit a;
  a.name = "a";
  a.node = "node1";
  a.cgroup = "gcp/j/a";
  a.command = {"sleep", "100"};
  a.output = "/tmp/a.out";
  a.pid = 4242;
  manifest::Unit b;
  b.name = "b";
  b.node = "node2";
  b.grouping = "tree";
  b.cgroup = "gcp/j/b";
  b.translib = "echo";
  b.state = manifest::UnitState::kStopped;
  b.restored_from = 7;
  job.units = {a, b};
  return job;
}

manifest::Checkpoint sample_checkpoint() {
  manifest::Checkpoint c;
  c.job = "j";
  c.seq = 3;
  c.created = "2024-01-02T03:04:05.678Z";
  c.kernel = "6.1.0";
  c.timings = {{"totalMs", 12.5}};
  c.bytes = {{"raw", 10}};
  manifest::CheckpointUnit u;
  u.name = "a";
  u.node = "node1";
  u.grouping = "pidns";
  u.translib = "criu";
  u.translib_version = "0.1.0";
  u.checkpointer = "criu";
  u.checkpointer_version = "4.2.1";
  u.images = {{"pages-1.img", 10, 4096, std::string(32, '\xaa'), json::object()},
              {"sub/core.img", 0, 1 << 20, {}, json::object()}};
  u.stats = {{"pages", 3}};
  c.units = {u};
  return c;
}

// The message of the Error a Job document raises; the exit code must be kUsage.
std::string job_error(const json& doc, const std::string& source = "job.json") {
  auto e = error_from([&] { manifest::job_from_json(doc, source); });
  REQUIRE_MESSAGE(e.has_value(), "no error for " << doc.dump());
  CHECK(e->code() == Exit::kUsage);
  return e->what();
}

std::string checkpoint_error(const json& doc, const std::string& source = "manifest.json") {
  auto e = error_from([&] { manifest::checkpoint_from_json(doc, source); });
  REQUIRE_MESSAGE(e.has_value(), "no error for " << doc.dump());
  CHECK(e->code() == Exit::kUsage);
  return e->what();
}

}  // namespace

TEST_CASE("a job survives to_json and job_from_json unchanged") {
  auto job = sample_job();
  json doc = manifest::to_json(job);
  CHECK(doc.begin().key() == "apiVersion");
  CHECK(doc["apiVersion"] == "gcp/v1");
  CHECK(doc["kind"] == "Job");

  auto back = manifest::job_from_json(doc, "test");
  CHECK(back.name == "j");
  CHECK(back.owner == 1000);
  CHECK(back.created == job.created);
  REQUIRE(back.units.size() == 2);
  CHECK(back.units[0].name == "a");
  CHECK(back.units[0].node == "node1");
  CHECK(back.units[0].grouping == "pidns");
  CHECK(back.units[0].translib == "criu");
  CHECK(back.units[0].command == std::vector<std::string>{"sleep", "100"});
  CHECK(back.units[0].output == "/tmp/a.out");
  CHECK(back.units[0].pid == 4242);
  CHECK(back.units[0].state == manifest::UnitState::kRunning);
  CHECK_FALSE(back.units[0].restored_from.has_value());
  CHECK(back.units[1].grouping == "tree");
  CHECK(back.units[1].translib == "echo");
  CHECK(back.units[1].state == manifest::UnitState::kStopped);
  CHECK_FALSE(back.units[1].pid.has_value());
  CHECK(back.units[1].restored_from == 7u);
  CHECK(manifest::to_json(back) == doc);
}

TEST_CASE("a unit's shared namespaces survive the round trip, and an unknown one or net beside a network is refused") {
  auto job = sample_job();
  job.units[0].share = {"ipc", "uts"};
  json doc = manifest::to_json(job);
  CHECK(doc["units"][0]["share"] == json::array({"ipc", "uts"}));
  CHECK_FALSE(doc["units"][1].contains("share"));
  CHECK(manifest::job_from_json(doc, "test").units[0].share == std::vector<std::string>{"ipc", "uts"});
  doc["units"][0]["share"] = json::array({"pid"});
  CHECK_THROWS_WITH(manifest::job_from_json(doc, "test"), doctest::Contains("holds 'pid', not one of ipc, uts, net"));
  doc["units"][0]["share"] = json::array({"net"});
  doc["units"][0]["network"] = {{"address", "10.77.0.5/24"}, {"parent", "eth0"}, {"mac", "02:67:0a:4d:00:05"}};
  CHECK_THROWS_WITH(manifest::job_from_json(doc, "test"), doctest::Contains("holds 'net', but the unit has a network"));
}

TEST_CASE("a checkpoint survives to_json and checkpoint_from_json unchanged") {
  auto cp = sample_checkpoint();
  json doc = manifest::to_json(cp);
  CHECK(doc["kind"] == "Checkpoint");

  auto back = manifest::checkpoint_from_json(doc, "test");
  CHECK(back.job == "j");
  CHECK(back.seq == 3);
  CHECK(back.kernel == "6.1.0");
  CHECK(back.mode == manifest::Mode::kCoordinated);
  CHECK(back.timings == cp.timings);
  REQUIRE(back.units.size() == 1);
  const auto& u = back.units[0];
  CHECK(u.translib == "criu");
  CHECK(u.translib_version == "0.1.0");
  CHECK(u.checkpointer_version == "4.2.1");
  REQUIRE(u.images.size() == 2);
  CHECK(u.images[1].path == "sub/core.img");
  CHECK(u.images[0].size == 10);
  CHECK(u.images[0].chunk_size == 4096);
  CHECK(u.images[0].digests == std::string(32, '\xaa'));
  CHECK(u.images[0].digest_hex(0) == std::string(64, 'a'));
  CHECK(u.images[0].chunk_count() == 1);
  CHECK(u.images[1].digests.empty());
  CHECK(manifest::to_json(back) == doc);
}

TEST_CASE("a checkpoint's TCP connections survive the round trip and are checked") {
  auto cp = sample_checkpoint();
  cp.units[0].tcp_connections = json::array(
      {{{"family", "ipv4"}, {"src", "127.0.0.1"}, {"srcPort", 40122}, {"dst", "127.0.0.1"}, {"dstPort", 5000}},
       {{"family", "ipv6"}, {"src", "fd00::5"}, {"srcPort", 1}, {"dst", "fd00::7"}, {"dstPort", 65535}}});
  json doc = manifest::to_json(cp);
  CHECK(doc["units"][0]["tcpConnections"].size() == 2);
  auto back = manifest::checkpoint_from_json(doc, "test");
  CHECK(back.units[0].tcp_connections == cp.units[0].tcp_connections);
  CHECK(manifest::to_json(back) == doc);
  CHECK_FALSE(manifest::to_json(sample_checkpoint())["units"][0].contains("tcpConnections"));

  // The translib turns them into iptables rules as root: nothing but addresses and ports.
  auto with = [&](const char* key, json value) {
    json d = doc;
    d["units"][0]["tcpConnections"][0][key] = std::move(value);
    return checkpoint_error(d);
  };
  CHECK_CONTAINS(with("src", "127.0.0.1 -j ACCEPT"), "units[0].tcpConnections[0].src");
  CHECK_CONTAINS(with("dst", "fd00::7"), "not an IPv4 address");
  CHECK_CONTAINS(with("family", "unix"), "expected 'ipv4' or 'ipv6'");
  CHECK_CONTAINS(with("srcPort", 0), "not a port");
  CHECK_CONTAINS(with("dstPort", 65536), "not a port");
  CHECK_CONTAINS(with("rule", "-j ACCEPT"), "unknown fields");
}

TEST_CASE("unknown fields are kept at the top level, in a unit and in an image") {
  json job = manifest::to_json(sample_job());
  job["x-top"] = {{"keep", true}};
  job["units"][1]["x-unit"] = "kept";
  json job_again = manifest::to_json(manifest::job_from_json(job, "test"));
  CHECK(job_again["x-top"] == json{{"keep", true}});
  CHECK(job_again["units"][1]["x-unit"] == "kept");
  CHECK_FALSE(job_again["units"][0].contains("x-unit"));

  json cp = manifest::to_json(sample_checkpoint());
  cp["x-top"] = 1;
  cp["units"][0]["x-unit"] = 2;
  cp["units"][0]["images"][1]["x-image"] = 3;
  json cp_again = manifest::to_json(manifest::checkpoint_from_json(cp, "test"));
  CHECK(cp_again["x-top"] == 1);
  CHECK(cp_again["units"][0]["x-unit"] == 2);
  CHECK(cp_again["units"][0]["images"][1]["x-image"] == 3);
  CHECK_FALSE(cp_again["units"][0]["images"][0].contains("x-image"));
}

TEST_CASE("a newer minor apiVersion is read with a warning") {
  gcp::testing::CapturedLog log;
  json doc = manifest::to_json(sample_job());
  doc["apiVersion"] = "gcp/v1.7";
  CHECK(manifest::job_from_json(doc, "j.json").units.size() == 2);
  CHECK_CONTAINS(log.text(), "warning: manifest 'j.json' has apiVersion 'gcp/v1.7'");
}

TEST_CASE("a missing apiVersion is refused") {
  json doc = manifest::to_json(sample_job());
  doc.erase("apiVersion");
  auto msg = job_error(doc, "j.json");
  CHECK_CONTAINS(msg, "'apiVersion' is missing");
  CHECK_CONTAINS(msg, "'j.json'");
}

TEST_CASE("a wrong major apiVersion names both versions") {
  json doc = manifest::to_json(sample_job());
  doc["apiVersion"] = "gcp/v2";
  auto e = error_from([&] { manifest::job_from_json(doc, "j.json"); });
  REQUIRE(e.has_value());
  CHECK(e->code() == Exit::kUsage);
  CHECK_CONTAINS(e->what(), "'gcp/v2'");
  CHECK_CONTAINS(e->what(), "'gcp/v1'");
  CHECK_CONTAINS(e->what(), "'j.json'");
  CHECK_FALSE(e->hint().empty());

  doc["apiVersion"] = "gcp/v10";
  CHECK_CONTAINS(job_error(doc), "'gcp/v10'");
}

TEST_CASE("a document of the wrong kind is refused") {
  json doc = manifest::to_json(sample_job());
  auto msg = checkpoint_error(doc, "c.json");
  CHECK_CONTAINS(msg, "kind is 'Job', expected 'Checkpoint'");
  CHECK_CONTAINS(msg, "'c.json'");
}

TEST_CASE("a document that is not an object is refused") {
  CHECK_CONTAINS(job_error(json::array()), "is not a JSON object");
}

TEST_CASE("a job without units is refused") {
  json doc = manifest::to_json(sample_job());
  doc.erase("units");
  CHECK_CONTAINS(job_error(doc), "field 'units' is missing");
}

TEST_CASE("units that are not an array are refused") {
  json doc = manifest::to_json(sample_job());
  doc["units"] = {{"name", "a"}};
  CHECK_CONTAINS(job_error(doc), "field 'units' must be an array");
}

TEST_CASE("a unit without a name names the field and the source") {
  json doc = manifest::to_json(sample_job());
  doc["units"][1].erase("name");
  auto msg = job_error(doc, "/store/jobs/j/job.json");
  CHECK_CONTAINS(msg, "units[1].name");
  CHECK_CONTAINS(msg, "is missing");
  CHECK_CONTAINS(msg, "/store/jobs/j/job.json");
}

TEST_CASE("a unit name that is a number is refused as the wrong type") {
  json doc = manifest::to_json(sample_job());
  doc["units"][0]["name"] = 5;
  auto msg = job_error(doc);
  CHECK_CONTAINS(msg, "units[0].name");
  CHECK_CONTAINS(msg, "must be a string");
}

TEST_CASE("a pid that is not an integer is refused") {
  json doc = manifest::to_json(sample_job());
  doc["units"][0]["pid"] = "4242";
  auto msg = job_error(doc);
  CHECK_CONTAINS(msg, "units[0].pid");
  CHECK_CONTAINS(msg, "must be an integer");
}

TEST_CASE("two units with one name are refused") {
  json doc = manifest::to_json(sample_job());
  doc["units"][1]["name"] = "a";
  auto msg = job_error(doc);
  CHECK_CONTAINS(msg, "units[1].name");
  CHECK_CONTAINS(msg, "repeats unit 'a'");
}

TEST_CASE("an unknown grouping is refused") {
  json doc = manifest::to_json(sample_job());
  doc["units"][0]["grouping"] = "session";
  auto msg = job_error(doc);
  CHECK_CONTAINS(msg, "units[0].grouping");
  CHECK_CONTAINS(msg, "'session'");
}

TEST_CASE("an image path that is absolute or climbs out is refused") {
  for (const char* bad : {"/etc/passwd", "../other/pages.img", "sub/../../x", ""}) {
    CAPTURE(bad);
    json doc = manifest::to_json(sample_checkpoint());
    doc["units"][0]["images"][1]["path"] = bad;
    auto msg = checkpoint_error(doc);
    CHECK_CONTAINS(msg, "units[0].images[1].path");
    CHECK_CONTAINS(msg, "relative path");
  }
}

TEST_CASE("a negative seq is refused") {
  json doc = manifest::to_json(sample_checkpoint());
  doc["seq"] = -1;
  auto msg = checkpoint_error(doc);
  CHECK_CONTAINS(msg, "field 'seq' must not be negative");
}

TEST_CASE("a negative image size is refused") {
  json doc = manifest::to_json(sample_checkpoint());
  doc["units"][0]["images"][0]["size"] = -10;
  CHECK_CONTAINS(checkpoint_error(doc), "units[0].images[0].size");
}

TEST_CASE("an image's chunk count and inline chunks must match its size and be SHA-256 digests") {
  json doc = manifest::to_json(sample_checkpoint());
  doc["units"][0]["images"][0]["size"] = 5000;  // two chunks of 4096
  CHECK_CONTAINS(checkpoint_error(doc), "units[0].images[0].chunkCount' is not 2");
  doc["units"][0]["images"][0]["chunkCount"] = 2;
  CHECK_CONTAINS(checkpoint_error(doc),
                 "units[0].images[0].chunks' has 64 hex digits, size and chunkSize need 2 hashes of 64");
  doc = manifest::to_json(sample_checkpoint());
  doc["units"][0]["images"][0]["chunks"] = std::string(63, 'a') + "A";
  CHECK_CONTAINS(checkpoint_error(doc), "units[0].images[0].chunks' is not SHA-256 digests in lowercase hex (hash 0)");
  doc = manifest::to_json(sample_checkpoint());
  doc["units"][0]["images"][0]["chunkSize"] = 0;
  CHECK_CONTAINS(checkpoint_error(doc), "chunkSize' must be 1 to 1048576 bytes");
  doc = manifest::to_json(sample_checkpoint());
  doc["chunkList"] = {{"path", "../../etc/shadow"}, {"count", 1}, {"sha256", std::string(64, 'a')}};
  CHECK_CONTAINS(checkpoint_error(doc), "chunkList.path' must be 'chunks.bin'");
}

TEST_CASE("a printed checkpoint has chunk counts, and chunk lists only when asked") {
  json doc = manifest::to_json(sample_checkpoint(), false);
  CHECK(doc["units"][0]["images"][0]["chunkCount"] == 1);
  CHECK_FALSE(doc["units"][0]["images"][0].contains("chunks"));
  doc = manifest::to_json(sample_checkpoint(), true);
  CHECK(doc["units"][0]["images"][0]["chunks"] == std::string(64, 'a'));
}

TEST_CASE("a job's retention policy round-trips and keeps unknown policy fields") {
  json doc = manifest::to_json(sample_job());
  doc["policy"] = {{"keep", 3}, {"x-later", true}};
  auto job = manifest::job_from_json(doc, "j");
  CHECK(job.keep == 3u);
  CHECK(manifest::to_json(job)["policy"] == doc["policy"]);
  doc["policy"]["keep"] = 0;
  auto e = error_from([&] { manifest::job_from_json(doc, "j"); });
  REQUIRE(e.has_value());
  CHECK_CONTAINS(e->what(), "policy.keep");
}

TEST_CASE("a checkpoint without units is refused") {
  json doc = manifest::to_json(sample_checkpoint());
  doc["units"] = json::array();
  CHECK_CONTAINS(checkpoint_error(doc), "'units' is empty");
}

TEST_CASE("a checkpoint unit without a translib name is refused") {
  json doc = manifest::to_json(sample_checkpoint());
  doc["units"][0]["translib"].erase("name");
  CHECK_CONTAINS(checkpoint_error(doc), "units[0].translib.name");
}

TEST_CASE("parse reads valid JSON") { CHECK(manifest::parse(R"({"a": [1, 2]})", "x")["a"][1] == 2); }

TEST_CASE("parse of invalid JSON names the source") {
  auto e = error_from([] { manifest::parse("{\"apiVersion\": ", "stdin"); });
  REQUIRE(e.has_value());
  CHECK(e->code() == Exit::kUsage);
  CHECK_CONTAINS(e->what(), "'stdin'");
  CHECK_CONTAINS(e->what(), "not valid JSON");
  CHECK_FALSE(e->hint().empty());
}

TEST_CASE("now_rfc3339 is UTC with milliseconds") {
  auto now = manifest::now_rfc3339();
  REQUIRE(now.size() == 24);
  CHECK(now[4] == '-');
  CHECK(now[10] == 'T');
  CHECK(now[19] == '.');
  CHECK(now.back() == 'Z');
}

TEST_CASE("check_name accepts letters, digits, dots, underscores and dashes") {
  for (const std::string& good :
       {std::string("job-1"), std::string("a.b_c"), std::string("A"), std::string("x-"), std::string(64, 'n')}) {
    CAPTURE(good);
    CHECK_FALSE(error_from([&] { gcp::manifest::check_name("job", good); }).has_value());
  }
}

TEST_CASE("check_name refuses names that cannot be a cgroup directory") {
  const std::string too_long(65, 'n');
  for (const std::string& bad : {std::string(), std::string(".hidden"), std::string("-x"), std::string("a/b"),
                                 std::string("a b"), std::string(".."), too_long}) {
    CAPTURE(bad);
    auto e = error_from([&] { gcp::manifest::check_name("unit", bad); });
    REQUIRE(e.has_value());
    CHECK(e->code() == Exit::kUsage);
    CHECK_CONTAINS(e->what(), "unit name '" + bad + "'");
    CHECK_CONTAINS(e->hint(), "64");
  }
}

TEST_CASE("a unit whose cgroup is not below gcp/ is refused") {
  auto doc = gcp::manifest::to_json(gcp::manifest::job_from_json(gcp::manifest::parse(R"({
    "apiVersion": "gcp/v1", "kind": "Job", "name": "j",
    "units": [{"name": "u", "node": "n", "cgroup": "gcp/j/u"}]})",
                                                                                      "t"),
                                                                 "t"));
  doc["units"][0]["cgroup"] = "../../sys";
  auto e = error_from([&] { gcp::manifest::job_from_json(doc, "job.json"); });
  REQUIRE(e.has_value());
  CHECK(e->code() == Exit::kUsage);
  CHECK_CONTAINS(e->what(), "field 'units[0].cgroup' is '../../sys'");
  doc["units"][0]["cgroup"] = "gcp/j/u/../../x";
  CHECK(error_from([&] { gcp::manifest::job_from_json(doc, "job.json"); }).has_value());
  doc["units"][0]["cgroup"] = "gcp/a..b/u";  // ".." inside a name is fine
  CHECK_FALSE(error_from([&] { gcp::manifest::job_from_json(doc, "job.json"); }).has_value());
  doc["units"][0]["cgroup"] = "gcp/j/u";
  doc["units"][0]["name"] = "a/b";
  e = error_from([&] { gcp::manifest::job_from_json(doc, "job.json"); });
  REQUIRE(e.has_value());
  CHECK_CONTAINS(e->what(), "field 'units[0].name' is not a valid unit name ('a/b')");
}

TEST_CASE("an image file name with two dots is fine, a path that climbs out is not") {
  gcp::manifest::Checkpoint c;
  c.job = "j";
  c.seq = 1;
  c.units.push_back({});
  c.units[0].name = "u";
  c.units[0].translib = "criu";
  c.units[0].images.push_back({"a..b.img", 1, 4096, std::string(64, '0'), {}});
  auto doc = gcp::manifest::to_json(c);
  CHECK_FALSE(error_from([&] { gcp::manifest::checkpoint_from_json(doc, "m"); }).has_value());
  doc["units"][0]["images"][0]["path"] = "x/../../y";
  auto e = error_from([&] { gcp::manifest::checkpoint_from_json(doc, "m"); });
  REQUIRE(e.has_value());
  CHECK_CONTAINS(e->what(), "units[0].images[0].path");
}

TEST_CASE("a unit's callbacks endpoint survives a round trip, unknown keys in it kept") {
  auto job = sample_job();
  job.units[0].callbacks.socket = "/run/gcp/callbacks/0123456789abcdef/a.sock";
  job.units[0].callbacks.hooks = "/etc/gcp/hooks";
  json doc = manifest::to_json(job);
  CHECK(doc["units"][0]["callbacks"] ==
        json{{"socket", "/run/gcp/callbacks/0123456789abcdef/a.sock"}, {"hooks", "/etc/gcp/hooks"}});
  CHECK_FALSE(doc["units"][1].contains("callbacks"));
  doc["units"][0]["callbacks"]["future"] = 1;
  auto back = manifest::job_from_json(doc, "test");
  CHECK(back.units[0].callbacks.hooks == "/etc/gcp/hooks");
  CHECK(manifest::to_json(back)["units"][0]["callbacks"]["future"] == 1);
}

TEST_CASE("a relative or too long callbacks path is refused naming the field") {
  json doc = manifest::to_json(sample_job());
  doc["units"][1]["callbacks"] = {{"hooks", "hooks.d"}};
  auto e = error_from([&] { manifest::job_from_json(doc, "job.json"); });
  REQUIRE(e);
  CHECK(e->code() == Exit::kUsage);
  CHECK_CONTAINS(e->what(), "field 'units[1].callbacks.hooks' must be an absolute path");
  doc["units"][1]["callbacks"] = {{"socket", "/" + std::string(120, 's')}};
  e = error_from([&] { manifest::job_from_json(doc, "job.json"); });
  REQUIRE(e);
  CHECK_CONTAINS(e->what(), "field 'units[1].callbacks.socket' is longer than 107 bytes");
}

TEST_CASE("a checkpoint unit's callback form survives a round trip") {
  auto c = sample_checkpoint();
  c.units[0].callbacks = "socket+hooks";
  auto back = manifest::checkpoint_from_json(manifest::to_json(c), "test");
  CHECK(back.units[0].callbacks == "socket+hooks");
}

TEST_CASE("policy.callbackTimeoutMs survives a round trip and 0 is refused") {
  auto job = sample_job();
  job.callback_timeout_ms = 2500;
  json doc = manifest::to_json(job);
  CHECK(doc["policy"]["callbackTimeoutMs"] == 2500);
  CHECK(manifest::job_from_json(doc, "test").callback_timeout_ms == 2500u);
  doc["policy"]["callbackTimeoutMs"] = 0;
  auto e = error_from([&] { manifest::job_from_json(doc, "job.json"); });
  REQUIRE(e);
  CHECK_CONTAINS(e->what(), "field 'policy.callbackTimeoutMs' must be at least 1");
}

TEST_CASE("a unit's network survives a round trip, unknown keys in it kept") {
  auto job = sample_job();
  job.units[0].network = manifest::Network{"10.78.0.2/24", "gcpdum0", "10.78.0.1", "02:67:0a:4e:00:02", json::object()};
  json doc = manifest::to_json(job);
  CHECK(
      doc["units"][0]["network"] ==
      json{{"address", "10.78.0.2/24"}, {"parent", "gcpdum0"}, {"gateway", "10.78.0.1"}, {"mac", "02:67:0a:4e:00:02"}});
  CHECK_FALSE(doc["units"][1].contains("network"));
  doc["units"][0]["network"]["x-vlan"] = 7;
  auto back = manifest::job_from_json(doc, "test");
  REQUIRE(back.units[0].network.has_value());
  CHECK(back.units[0].network->address == "10.78.0.2/24");
  CHECK(back.units[0].network->parent == "gcpdum0");
  CHECK(back.units[0].network->gateway == "10.78.0.1");
  CHECK(back.units[0].network->mac == "02:67:0a:4e:00:02");
  CHECK_FALSE(back.units[1].network.has_value());
  CHECK(manifest::to_json(back) == doc);
}

TEST_CASE("a unit's network without gateway or MAC gets none and the MAC of its address") {
  json doc = manifest::to_json(sample_job());
  doc["units"][0]["network"] = {{"address", "10.78.0.3/24"}, {"parent", "eth0"}};
  auto back = manifest::job_from_json(doc, "test");
  REQUIRE(back.units[0].network.has_value());
  CHECK(back.units[0].network->gateway.empty());
  CHECK(back.units[0].network->mac == "02:67:0a:4e:00:03");
  CHECK_FALSE(manifest::to_json(back)["units"][0]["network"].contains("gateway"));
}

TEST_CASE("a bad network field is refused naming it") {
  json doc = manifest::to_json(sample_job());
  auto with = [&](json network) {
    json d = doc;
    d["units"][1]["network"] = std::move(network);
    return d;
  };
  CHECK_CONTAINS(job_error(with("10.78.0.2/24")), "field 'units[1].network' must be an object");
  CHECK_CONTAINS(job_error(with(json::object())), "field 'units[1].network.address' is missing");
  CHECK_CONTAINS(job_error(with({{"address", "10.78.0.2/24"}})), "field 'units[1].network.parent' is missing");
  CHECK_CONTAINS(job_error(with({{"address", "10.78.0.2"}, {"parent", "eth0"}})),
                 "field 'units[1].network.address' is '10.78.0.2', expected an IPv4 address with a prefix length");
  CHECK_CONTAINS(job_error(with({{"address", 7}, {"parent", "eth0"}})),
                 "field 'units[1].network.address' must be a string");
  CHECK_CONTAINS(job_error(with({{"address", "10.78.0.2/24"}, {"parent", "a/b"}})),
                 "field 'units[1].network.parent' is 'a/b', expected a network device name");
  CHECK_CONTAINS(job_error(with({{"address", "10.78.0.2/24"}, {"parent", "eth0"}, {"gateway", "router"}})),
                 "field 'units[1].network.gateway' is 'router', expected an IPv4 address");
  CHECK_CONTAINS(job_error(with({{"address", "10.78.0.2/24"}, {"parent", "eth0"}, {"mac", "02:67"}})),
                 "field 'units[1].network.mac' is '02:67', expected a MAC address");
}

// What gcp 0.1.0 wrote before these fields were typed (its own output, trimmed: an
// uncoordinated job with an ssh launcher, an adopted unit, a partial checkpoint of one
// node's unit). It must read into the typed fields and come out exactly as it was.
TEST_CASE("manifests written before the typed fields read into them and write back unchanged") {
  json job_doc = json::parse(R"({
  "apiVersion": "gcp/v1", "kind": "Job", "name": "old", "owner": {"uid": 0},
  "created": "2026-12-07T02:06:18.899Z",
  "policy": {"mode": "uncoordinated"},
  "units": [
    {"name": "a", "node": "vm", "grouping": "pidns", "cgroup": "gcp/old/a", "translib": "criu",
     "command": ["sleep", "1000"], "output": "/tmp/oldstore/jobs/old/logs/a.out", "state": "running", "pid": 24886,
     "callbacks": {"socket": "/run/gcp/callbacks/496f453398c5f364/a.sock"},
     "nodeAddresses": ["192.0.2.2", "[fd00::2]"]},
    {"name": "main", "node": "vm", "grouping": "tree", "cgroup": "gcp/old/main", "translib": "criu",
     "command": ["bash /dev/fd/3"], "output": "", "state": "stopped",
     "adopted": {"spec": "the process tree of pid 1258", "at": "2026-12-07T02:06:22.496Z"}}
  ],
  "launcher": {"kind": "srun", "slurmJob": "42"}
})");
  auto job = manifest::job_from_json(job_doc, "old job.json");
  CHECK(job.mode == manifest::Mode::kUncoordinated);
  REQUIRE(job.launcher.has_value());
  CHECK(job.launcher->kind == "srun");
  CHECK(job.launcher->slurm_job == "42");
  CHECK(job.launcher->command.empty());
  CHECK(job.units[0].node_addresses == std::vector<std::string>{"192.0.2.2", "[fd00::2]"});
  REQUIRE(job.units[1].adopted.has_value());
  CHECK(job.units[1].adopted->spec == "the process tree of pid 1258");
  CHECK(job.units[1].state == manifest::UnitState::kStopped);
  CHECK(job.extra.empty());
  CHECK(job.units[0].extra.empty());
  CHECK(manifest::to_json(job) == job_doc);

  json cp_doc = json::parse(R"({
 "apiVersion": "gcp/v1", "kind": "Checkpoint", "job": "old", "seq": 1, "created": "2026-12-07T02:06:22.000Z",
 "mode": "uncoordinated", "kernel": "6.18.44-fc-v1272",
 "timings": {"freezeMs": 1.6, "dumpMs": 52.6, "downtimeMs": 55.0, "storeMs": 191.0},
 "bytes": {"raw": 239958, "new": 231722, "stored": 39071},
 "chunkList": {"path": "chunks.bin", "count": 65, "sha256": "390600be4091fc5b53de61838f4dc6114531cd6a245df545bcc20637f0c3ea18"},
 "units": [
  {"name": "a", "node": "vm", "grouping": "pidns", "translib": {"name": "criu", "version": "0.1.0"},
   "checkpointer": {"name": "criu", "version": "4.2.1"}, "timings": {"freezeMs": 1.6, "dumpMs": 52.5},
   "callbacks": "none", "bytes": {"raw": 239958, "new": 231722, "stored": 39071}, "stats": {"frozenUs": 48249},
   "images": [{"path": "pages-1.img", "size": 57344, "chunkSize": 4096, "chunkCount": 14}],
   "jobTies": ["tcp 10.0.0.1:5000 -> 10.0.0.2:40122: a connection between two units checkpointed one by one"],
   "zstdLevel": 3}
 ],
 "kernels": {"n2": "6.1.0"},
 "partial": true
})");
  auto cp = manifest::checkpoint_from_json(cp_doc, "old manifest.json");
  CHECK(cp.mode == manifest::Mode::kUncoordinated);
  CHECK(cp.partial);
  CHECK(cp.kernels == std::map<std::string, std::string>{{"n2", "6.1.0"}});
  CHECK(cp.units[0].zstd_level == 3);
  CHECK(cp.units[0].job_ties.size() == 1);
  CHECK(cp.extra.empty());
  CHECK(cp.units[0].extra.empty());
  CHECK(manifest::to_json(cp, false) == cp_doc);
}

TEST_CASE("a translib named by a path is refused: gcp loads translibs by name only") {
  json doc = manifest::to_json(sample_job());
  doc["units"][0]["translib"] = "../../tmp/evil";
  auto e = error_from([&] { manifest::job_from_json(doc, "job.json"); });
  REQUIRE(e.has_value());
  CHECK_CONTAINS(e->what(), "field 'units[0].translib' is not a valid translib name ('../../tmp/evil')");
}

TEST_CASE("a name with control characters is refused without them in the message") {
  auto e = error_from([] { manifest::check_name("job", "x\x1b[31my"); });
  REQUIRE(e.has_value());
  CHECK_CONTAINS(e->what(), "job name 'x\\x1b[31my' contains '\\x1b'");
  CHECK(std::string(e->what()).find('\x1b') == std::string::npos);
}

TEST_CASE("an unknown unit state, policy mode or launcher kind is refused naming the field") {
  auto with = [](const std::function<void(json&)>& edit) {
    json doc = manifest::to_json(sample_job());
    edit(doc);
    return error_from([&] { manifest::job_from_json(doc, "job.json"); });
  };
  auto state = with([](json& d) { d["units"][0]["state"] = "zombie"; });
  REQUIRE(state.has_value());
  CHECK_CONTAINS(state->what(), "field 'units[0].state' is 'zombie'");
  auto mode = with([](json& d) { d["policy"]["mode"] = "sometimes"; });
  REQUIRE(mode.has_value());
  CHECK_CONTAINS(mode->what(), "field 'policy.mode' is 'sometimes'");
  auto launcher = with([](json& d) { d["launcher"] = {{"kind", "telnet"}}; });
  REQUIRE(launcher.has_value());
  CHECK_CONTAINS(launcher->what(), "launcher.kind: unknown launcher 'telnet'");
}

// ---- hostile input (gcp-security(7), Limits) ----

TEST_CASE("parse refuses 100,000 nested brackets with one error instead of overflowing the stack") {
  std::string deep = std::string(100000, '[') + std::string(100000, ']');
  auto e = error_from([&] { manifest::parse(deep, "job.json"); });
  REQUIRE(e.has_value());
  CHECK(e->code() == Exit::kUsage);
  CHECK_CONTAINS(e->what(), "nests deeper than 64 levels (at byte 64)");
  // Brackets inside strings are text, and 64 levels are fine.
  CHECK(manifest::parse("[\"" + std::string(1000, '[') + "\"]", "x")[0].get<std::string>().size() == 1000);
  CHECK(manifest::parse(std::string(64, '[') + std::string(64, ']'), "x").is_array());
}

TEST_CASE("parse refuses an object with more than 10,000 members, which would take hours to parse") {
  std::string many = "{";
  for (int i = 0; i <= 10000; ++i) many += (i ? ",\"k" : "\"k") + std::to_string(i) + "\":0";
  many += "}";
  auto e = error_from([&] { manifest::parse(many, "job.json"); });
  REQUIRE(e.has_value());
  CHECK_CONTAINS(e->what(), "more than 10000 members");
  // An array of as many is no problem (no key to look up).
  std::string zeros = "[0";
  for (int i = 0; i < 20000; ++i) zeros += ",0";
  CHECK(manifest::parse(zeros + "]", "x").size() == 20001);
}

TEST_CASE("parse turns a number out of range and non-UTF-8 bytes into one error with printable bytes") {
  auto e = error_from([] { manifest::parse(R"({"seq": 1e999})", "m.json"); });
  REQUIRE(e.has_value());
  CHECK(e->code() == Exit::kUsage);
  CHECK_CONTAINS(e->what(), "number overflow parsing '1e999'");
  e = error_from([] { manifest::parse("{\"name\": \"a\xff\"}", "m.json"); });
  REQUIRE(e.has_value());
  CHECK_CONTAINS(e->what(), "\\xff");
  CHECK_NOT_CONTAINS(e->what(), "\xff");
  CHECK_FALSE(manifest::try_parse("[1e999]").has_value());
  CHECK(manifest::try_parse("{\"op\": \"abort\"}").has_value());
}

TEST_CASE("dump replaces bytes that are not UTF-8 instead of throwing") {
  json doc = {{"problem", std::string("bad \xff byte")}};
  CHECK_THROWS(doc.dump());
  CHECK(manifest::dump(doc, -1) == "{\"problem\":\"bad \xef\xbf\xbd byte\"}");
}

TEST_CASE("integers out of their field's range are refused, not truncated") {
  json doc = manifest::to_json(sample_job());
  doc["owner"]["uid"] = 4294967296ull;  // 2^32 would truncate to uid 0, root
  CHECK_CONTAINS(job_error(doc), "field 'owner.uid' is out of range");
  doc = manifest::to_json(sample_checkpoint());
  doc["units"][0]["images"][0]["chunkSize"] = 4294971392ull;  // 2^32 + 4096
  CHECK_CONTAINS(checkpoint_error(doc), "chunkSize' is out of range");
  doc = manifest::to_json(sample_checkpoint());
  doc["units"][0]["zstdLevel"] = -3000000000ll;
  CHECK_CONTAINS(checkpoint_error(doc), "zstdLevel' is out of range");
  doc = manifest::to_json(sample_checkpoint());
  doc["seq"] = 1.5;
  CHECK_CONTAINS(checkpoint_error(doc), "field 'seq' must be an integer");
}

TEST_CASE("an image of 2^64-1 bytes or a huge chunk size is refused") {
  json doc = manifest::to_json(sample_checkpoint());
  doc["units"][0]["images"][0]["size"] = UINT64_MAX;
  doc["units"][0]["images"][0]["chunkCount"] = 4503599627370496ull;
  CHECK_CONTAINS(checkpoint_error(doc), "units[0].images[0].size' is larger than 1 PiB");
  doc = manifest::to_json(sample_checkpoint());
  doc["units"][0]["images"][0]["chunkSize"] = 1u << 21;
  CHECK_CONTAINS(checkpoint_error(doc), "chunkSize' must be 1 to 1048576 bytes");
}

TEST_CASE("many images of 1 PiB do not wrap the checkpoint's chunk count") {
  json doc = manifest::to_json(sample_checkpoint());
  json image = {{"path", "p"}, {"size", 1ull << 50}, {"chunkSize", 1}, {"chunkCount", 1ull << 50}};
  doc["units"][0]["images"] = json::array({image, image});
  CHECK_CONTAINS(checkpoint_error(doc), "field 'units' list more than 2^50 chunks in all");
}

TEST_CASE("bytes and timings that are not numbers are refused naming the field") {
  json doc = manifest::to_json(sample_checkpoint());
  doc["bytes"]["raw"] = "many";
  CHECK_CONTAINS(checkpoint_error(doc), "field 'bytes.raw' must be a non-negative integer");
  doc = manifest::to_json(sample_checkpoint());
  doc["units"][0]["timings"] = {{"dumpMs", {1, 2}}};
  CHECK_CONTAINS(checkpoint_error(doc), "units[0].timings.dumpMs' must be a number of milliseconds");
  doc = manifest::to_json(sample_checkpoint());
  doc["units"][0]["timings"] = {{"callbacks", {{"pre-checkpoint", 1.5}}}};
  CHECK_NOTHROW(manifest::checkpoint_from_json(doc, "m"));
}

TEST_CASE("count_or and number_or take numbers only") {
  json bytes = {{"raw", 5}, {"new", "x"}, {"stored", -1}, {"f", 2.5}};
  CHECK(manifest::count_or(bytes, "raw") == 5);
  CHECK(manifest::count_or(bytes, "new", 9) == 9);
  CHECK(manifest::count_or(bytes, "stored") == 0);
  CHECK(manifest::count_or(json::array(), "raw") == 0);
  CHECK(manifest::number_or(bytes, "f") == 2.5);
  CHECK(manifest::number_or(bytes, "new", 1.0) == 1.0);
}

TEST_CASE("a unit's written files survive the round trip, and a path a restart must not act on is refused") {
  auto cp = sample_checkpoint();
  manifest::WrittenFile w;
  w.path = "/scratch/run/out.log";
  w.size = 4096;
  w.mtime_ns = 1733580000123456789;
  w.uid = 1000;
  w.mode = 0640;
  w.sha256 = std::string(64, 'a');
  w.append = w.write_only = true;
  w.kept = "gcp-files/0";
  cp.units[0].written_files = {w};
  json doc = manifest::to_json(cp);
  CHECK(doc["units"][0]["writtenFiles"][0]["path"] == "/scratch/run/out.log");
  auto back = manifest::checkpoint_from_json(doc, "test");
  REQUIRE(back.units[0].written_files.size() == 1);
  const auto& b = back.units[0].written_files[0];
  CHECK(b.size == 4096);
  CHECK(b.mtime_ns == w.mtime_ns);
  CHECK(b.mode == 0640);
  CHECK(b.kept == "gcp-files/0");
  CHECK(manifest::to_json(back) == doc);
  CHECK_FALSE(manifest::to_json(sample_checkpoint())["units"][0].contains("writtenFiles"));

  auto with = [&](const char* key, json value) {
    json d = doc;
    d["units"][0]["writtenFiles"][0][key] = std::move(value);
    return checkpoint_error(d);
  };
  CHECK_CONTAINS(with("path", "etc/shadow"), "units[0].writtenFiles[0].path");
  CHECK_CONTAINS(with("path", "/scratch/../etc/shadow"), "absolute path without");
  CHECK_CONTAINS(with("path", "/scratch//out.log"), "absolute path without");
  CHECK_CONTAINS(with("path", "/"), "absolute path without");
  CHECK_CONTAINS(with("sha256", "ABC"), "SHA-256");
  CHECK_CONTAINS(with("kept", "../../etc/passwd"), "below gcp-files/");
  CHECK_CONTAINS(with("kept", "gcp-files/../core.img"), "below gcp-files/");
  CHECK_CONTAINS(with("mode", 04755), "permission bits");
  CHECK_CONTAINS(with("size", -1), "writtenFiles[0].size");
  json twice = doc;
  twice["units"][0]["writtenFiles"].push_back(twice["units"][0]["writtenFiles"][0]);
  CHECK_CONTAINS(checkpoint_error(twice), "repeats '/scratch/run/out.log'");
}

TEST_CASE("a unit's target survives the round trip, and a path or address in it is checked") {
  auto c = sample_checkpoint();
  c.units[0].target = manifest::Target{"6.18.0", {"cpuinfo.img"}, {"10.77.0.101"}, {"/", "/data"}};
  auto back = manifest::checkpoint_from_json(manifest::to_json(c), "test");
  REQUIRE(back.units[0].target);
  CHECK(back.units[0].target->kernel == "6.18.0");
  CHECK(back.units[0].target->check_images == std::vector<std::string>{"cpuinfo.img"});
  CHECK(back.units[0].target->addresses == std::vector<std::string>{"10.77.0.101"});
  CHECK(back.units[0].target->mounts == std::vector<std::string>{"/", "/data"});
  CHECK_FALSE(manifest::checkpoint_from_json(manifest::to_json(sample_checkpoint()), "test").units[0].target);

  json doc = manifest::to_json(c);
  doc["units"][0]["target"]["checkImages"] = json::array({"../../etc/passwd"});
  CHECK_CONTAINS(checkpoint_error(doc), "units[0].target.checkImages");
  doc = manifest::to_json(c);
  doc["units"][0]["target"]["mounts"] = json::array({"data"});
  CHECK_CONTAINS(checkpoint_error(doc), "expected an absolute path");
  doc = manifest::to_json(c);
  doc["units"][0]["target"]["addresses"] = json::array({"10.77.0.101/24"});
  CHECK_CONTAINS(checkpoint_error(doc), "expected an IPv4 address");
}

// Found by the job_manifest fuzzer: a kind with a newline in it was echoed raw, which
// split the one-line error in two (tests/fuzz/corpus/job_manifest/crash-kind-newline).
TEST_CASE("values a manifest names wrongly are quoted printably: the error stays one line") {
  json doc = manifest::to_json(sample_job());
  auto one_line = [](const std::string& m) { return m.find('\n') == std::string::npos; };
  doc["kind"] = "Job\nrm -rf /";
  auto m = job_error(doc);
  CHECK(one_line(m));
  CHECK_CONTAINS(m, "kind is 'Job\\x0arm -rf /'");
  doc = manifest::to_json(sample_job());
  doc["launcher"] = json{{"kind", "ssh\n"}};
  CHECK(one_line(job_error(doc)));
  doc = manifest::to_json(sample_job());
  doc["units"][0]["grouping"] = "tree\r\n";
  CHECK(one_line(job_error(doc)));
  doc = manifest::to_json(sample_job());
  doc["policy"]["checkpoint"] = json{{"kind", "daly\n"}};
  CHECK(one_line(job_error(doc)));
}

// Found by the job_manifest fuzzer in CI: a network address with a newline in it was
// echoed raw (tests/fuzz/corpus/job_manifest/crash-network-newline); then an apiVersion
// (crash-apiversion-newline). Every field whose
// wrong value an error quotes is tried here, in job and checkpoint manifests (the '/'
// makes the value wrong for a file name too).
TEST_CASE("every quoted value of a job or checkpoint manifest keeps the error on one line") {
  const json network = {{"address", "10.77.0.101/24"}, {"parent", "eth0"}, {"gateway", "10.77.0.1"}};
  for (const char* key : {"address", "parent", "gateway", "mac"}) {
    json doc = manifest::to_json(sample_job());
    doc["units"][0]["network"] = network;
    doc["units"][0]["network"][key] = "x\n/y";
    auto m = job_error(doc);
    CAPTURE(key);
    CHECK_CONTAINS(m, "'x\\x0a/y'");
  }
  for (const char* pointer : {"/apiVersion", "/units/0/cgroup", "/units/0/state", "/units/0/share/0", "/policy/mode",
                              "/policy/checkpoint/deadline"}) {
    json doc = manifest::to_json(sample_job());
    doc[json::json_pointer(pointer)] = "x\n/y";
    auto m = job_error(doc);
    CAPTURE(pointer);
    CHECK_CONTAINS(m, "'x\\x0a/y'");
  }
  for (const char* pointer : {"/apiVersion", "/units/0/target/checkImages/0", "/units/0/target/addresses/0",
                              "/units/0/target/mounts/0", "/mode"}) {
    json doc = manifest::to_json(sample_checkpoint());
    doc[json::json_pointer(pointer)] = "x\n/y";
    auto m = checkpoint_error(doc);
    CAPTURE(pointer);
    CHECK_CONTAINS(m, "'x\\x0a/y'");
  }
  json doc = manifest::to_json(sample_checkpoint());
  doc["units"][0]["tcpConnections"] =
      json::array({{{"family", "ipv4"}, {"src", "1.2.3.4\n"}, {"srcPort", 1}, {"dst", "1.2.3.5"}, {"dstPort", 2}}});
  CHECK_CONTAINS(checkpoint_error(doc), "'1.2.3.4\\x0a'");
  doc["units"][0]["tcpConnections"][0]["family"] = "ipv9\n";
  CHECK_CONTAINS(checkpoint_error(doc), "'ipv9\\x0a'");
}
