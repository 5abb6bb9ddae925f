// SPDX-License-Identifier: MIT
#include "gcp/netns.h"

#include "gcp/names.h"
#include "testing.h"

#include <doctest/doctest.h>

#include <unistd.h>

#include <fstream>

using gcp::Exit;
using gcp::testing::error_from;
using gcp::testing::ScopedEnv;
using gcp::testing::TempDir;
namespace netns = gcp::netns;

TEST_CASE("a unit's MAC is 02:67 and the four octets of its address, whatever the prefix") {
  CHECK(netns::mac_of("10.78.0.2/24") == "02:67:0a:4e:00:02");
  CHECK(netns::mac_of("10.78.0.2/16") == "02:67:0a:4e:00:02");
  CHECK(netns::mac_of("192.168.255.1/32") == "02:67:c0:a8:ff:01");
  // Addresses that differ only in their first octet still get two MACs.
  CHECK(netns::mac_of("10.1.2.3/8") != netns::mac_of("11.1.2.3/8"));
  CHECK(netns::valid_mac(netns::mac_of("10.78.0.2/24")));
}

TEST_CASE("a unit's MAC is locally administered and unicast") {
  auto mac = netns::mac_of("172.16.4.5/20");
  unsigned first = std::stoul(mac.substr(0, 2), nullptr, 16);
  CHECK((first & 0x02) != 0);  // locally administered
  CHECK((first & 0x01) == 0);  // not multicast
}

TEST_CASE("a MAC is refused for what is not an IPv4 address with a prefix") {
  for (const char* bad : {"10.78.0.2", "10.78.0.2/33", "10.78.0.2/0", "10.78.0.256/24", "10.78.2/24", "fd00::1/64",
                          "10.78.0.2/", "10.78.0.2/2x", ""}) {
    CAPTURE(bad);
    auto e = error_from([&] { netns::mac_of(bad); });
    REQUIRE(e.has_value());
    CHECK(e->code() == Exit::kUsage);
    CHECK_CONTAINS(e->hint(), "10.77.0.101/24");
  }
}

TEST_CASE("parse_cidr gives the octets and the prefix") {
  auto c = netns::parse_cidr("10.77.0.101/24");
  REQUIRE(c.has_value());
  CHECK(c->prefix == 24);
  CHECK(c->host() == "10.77.0.101");
  CHECK(c->octets[3] == 101);
}

TEST_CASE("a unit's namespace file is in a directory of its job, so dotted names cannot collide") {
  CHECK(netns::path("sim", "solver") == "/run/gcp/netns/sim/solver");
  CHECK(netns::path("a.b", "c") != netns::path("a", "b.c"));
}

TEST_CASE("device names, gateways and MACs are checked") {
  CHECK(netns::valid_device("eth0"));
  CHECK(netns::valid_device("gcpdum0"));
  CHECK_FALSE(netns::valid_device(""));
  CHECK_FALSE(netns::valid_device("a-name-of-16-chr"));
  CHECK_FALSE(netns::valid_device("eth0/1"));
  CHECK_FALSE(netns::valid_device("eth 0"));
  CHECK_FALSE(netns::valid_device(".."));
  CHECK(netns::valid_ipv4("10.77.0.1"));
  CHECK_FALSE(netns::valid_ipv4("10.77.0.1/24"));
  CHECK_FALSE(netns::valid_ipv4("gateway"));
  CHECK(netns::valid_mac("02:67:0a:4e:00:02"));
  CHECK_FALSE(netns::valid_mac("02:67:0A:4E:00:02"));
  CHECK_FALSE(netns::valid_mac("02-67-0a-4e-00-02"));
  CHECK_FALSE(netns::valid_mac("02:67:0a:4e:00"));
}

TEST_CASE("the parent device comes from $GCP_CONFIG's network.parent") {
  TempDir dir;
  auto file = dir.path() / "gcp.json";
  ScopedEnv env(gcp::names::kEnvConfig, file.string());
  SUBCASE("named") {
    std::ofstream(file) << R"({"network": {"parent": "eth1"}, "other": 1})";
    CHECK(netns::configured_parent() == std::optional<std::string>("eth1"));
  }
  SUBCASE("not named") {
    std::ofstream(file) << R"({"network": {}})";
    CHECK_FALSE(netns::configured_parent().has_value());
  }
  SUBCASE("not a device name") {
    std::ofstream(file) << R"({"network": {"parent": "a/b"}})";
    auto e = error_from([] { netns::configured_parent(); });
    REQUIRE(e.has_value());
    CHECK(e->code() == Exit::kUsage);
    CHECK_CONTAINS(e->what(), "field 'network.parent' must be a device name");
    CHECK_CONTAINS(e->what(), file.string());
  }
  SUBCASE("not JSON") {
    std::ofstream(file) << "parent=eth1";
    auto e = error_from([] { netns::configured_parent(); });
    REQUIRE(e.has_value());
    CHECK_CONTAINS(e->what(), "is not a JSON object");
  }
  SUBCASE("missing") {
    auto e = error_from([] { netns::configured_parent(); });
    REQUIRE(e.has_value());
    CHECK_CONTAINS(e->what(), "no such file");
    CHECK_CONTAINS(e->hint(), "GCP_CONFIG");
  }
}

TEST_CASE("creating a namespace on a parent device that does not exist fails and leaves nothing") {
  netns::Config config{"10.79.250.2/24", "gcpnone0", "", ""};
  auto e = error_from([&] { netns::create("nt-unit-test", "u", config); });
  REQUIRE(e.has_value());
  if (::geteuid() == 0) {
    CHECK(e->code() == Exit::kFailed);
    CHECK_CONTAINS(e->what(), "parent device 'gcpnone0' does not exist on this node");
    CHECK_CONTAINS(e->hint(), "--via");
  } else {
    CHECK(e->code() == Exit::kNotPermitted);
  }
  CHECK_FALSE(netns::exists("nt-unit-test", "u"));
  CHECK_FALSE(std::filesystem::exists(netns::path("nt-unit-test", "u")));
}

TEST_CASE("a malformed network is refused before anything is made") {
  auto e = error_from([] { netns::create("nt-unit-test", "u", {"10.79.250.2", "eth0", "", ""}); });
  REQUIRE(e.has_value());
  CHECK(e->code() == Exit::kUsage);
  CHECK_CONTAINS(e->what(), "address '10.79.250.2' is not an IPv4 address with a prefix length");
  e = error_from([] { netns::create("nt-unit-test", "u", {"10.79.250.2/24", "eth0", "10.79.250", ""}); });
  REQUIRE(e.has_value());
  CHECK_CONTAINS(e->what(), "gateway '10.79.250' is not an IPv4 address");
}
