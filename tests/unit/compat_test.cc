// SPDX-License-Identifier: MIT
#include "gcp/compat.h"

#include "testing.h"

#include <doctest/doctest.h>

using gcp::Exit;
namespace compat = gcp::compat;
namespace manifest = gcp::manifest;
using compat::Status;

namespace {

manifest::CheckpointUnit unit_with_target() {
  manifest::CheckpointUnit u;
  u.name = "main";
  u.checkpointer = "criu";
  u.checkpointer_version = "4.2.1";
  u.target = manifest::Target{"6.18.0", {"cpuinfo.img"}, {"10.77.0.101"}, {"/", "/data"}};
  return u;
}

compat::Node node_offering(std::string kernel, std::string criu) {
  compat::Node n;
  n.name = "n2";
  n.kernel = std::move(kernel);
  n.checkpointer_version = std::move(criu);
  n.address_user = [](const std::string&) { return std::nullopt; };
  n.mount_points = {"/", "/data", "/proc"};
  return n;
}

const compat::Entry& entry(const compat::Verdict& v, const std::string& check) {
  for (const auto& e : v) {
    if (e.check == check) return e;
  }
  FAIL("no " << check << " entry");
  throw;
}

}  // namespace

TEST_CASE("a node that offers what the checkpoint recorded passes every check") {
  auto v = compat::check_unit(unit_with_target(), "6.18.0", node_offering("6.18.2", "4.2.1"));
  REQUIRE(v.size() == 4);
  for (const auto& e : v) {
    CHECK(e.status == Status::kOk);
    CHECK(e.unit == "main");
    CHECK(e.node == "n2");
  }
  CHECK_FALSE(compat::first_refusal(v));
  CHECK(compat::to_json(v)["ok"] == true);
}

TEST_CASE("an older kernel warns, saying both releases, and is no refusal") {
  auto v = compat::check_unit(unit_with_target(), "6.18.0", node_offering("6.1.0-13-amd64", "4.2.1"));
  const auto& k = entry(v, "kernel");
  CHECK(k.status == Status::kWarn);
  CHECK_CONTAINS(k.reason, "this node runs kernel 6.1.0-13-amd64, older than 6.18.0");
  CHECK_FALSE(compat::first_refusal(v));
}

TEST_CASE("an older checkpointer is refused with the exit status of a missing checkpointer") {
  auto v = compat::check_unit(unit_with_target(), "6.18.0", node_offering("6.18.0", "4.1"));
  auto no = compat::first_refusal(v);
  REQUIRE(no);
  CHECK(no->check == "checkpointer");
  CHECK(compat::refusal_code(*no) == Exit::kNoCheckpointer);
  CHECK(compat::line(*no) ==
        "unit 'main' on node 'n2': checkpointer: was written by criu 4.2.1, this node has criu 4.1, which may not read "
        "it");
  CHECK(no->hint == "install criu 4.2.1 or newer (GCP_CRIU selects the binary)");
  CHECK(compat::to_json(v)["ok"] == false);
}

TEST_CASE("an address used on the target is refused naming the address and who uses it") {
  auto n = node_offering("6.18.0", "4.2.1");
  n.address_user = [](const std::string& a) -> std::optional<std::string> {
    if (a == "10.77.0.101") return "unit 'other' of job 'x'";
    return std::nullopt;
  };
  auto v = compat::check_unit(unit_with_target(), "6.18.0", n);
  const auto& a = entry(v, "address");
  CHECK(a.status == Status::kRefuse);
  CHECK(a.reason == "address 10.77.0.101 is used on this node by unit 'other' of job 'x'");
  CHECK(compat::refusal_code(a) == Exit::kFailed);
}

TEST_CASE("a unit without an address of its own or data mounts says so and passes") {
  auto u = unit_with_target();
  u.target->addresses.clear();
  u.target->mounts.clear();
  auto v = compat::check_unit(u, "6.18.0", node_offering("6.18.0", "4.2.1"));
  CHECK(entry(v, "address").status == Status::kOk);
  CHECK(entry(v, "address").reason == "the unit has no address of its own");
  CHECK(entry(v, "mount").reason == "the unit uses no data mount of its node");
  auto both = compat::check_unit(unit_with_target(), "6.18.0", node_offering("6.18.0", "4.2.1"));
  CHECK(entry(both, "mount").reason == "the unit's mount points are there: '/', '/data'");
}

TEST_CASE("a mount point missing on the target is refused naming it") {
  auto n = node_offering("6.18.0", "4.2.1");
  n.mount_points = {"/"};
  auto v = compat::check_unit(unit_with_target(), "6.18.0", n);
  const auto& m = entry(v, "mount");
  CHECK(m.status == Status::kRefuse);
  CHECK(m.reason == "the unit uses '/data', which is not a mount point on this node");
}

TEST_CASE("a checkpoint from before the target was recorded is not refused") {
  auto u = unit_with_target();
  u.target.reset();
  u.checkpointer_version.clear();
  auto v = compat::check_unit(u, "", node_offering("6.18.0", "4.2.1"));
  for (const auto& e : v) {
    CHECK(e.status == Status::kUnknown);
    CHECK(e.reason == "not recorded");
  }
  CHECK_FALSE(compat::first_refusal(v));
}

TEST_CASE("an entry survives to_json and entry_from_json, and a bad status from another node is refused") {
  compat::Entry e{"cpu", "main", "n2", Status::kRefuse, "CPU xfeatures has unsupported bits", "use another node"};
  auto back = compat::entry_from_json(compat::to_json(e), "node 'n2'");
  CHECK(back.check == "cpu");
  CHECK(back.status == Status::kRefuse);
  CHECK(back.reason == e.reason);
  CHECK(back.hint == "use another node");
  auto doc = compat::to_json(e);
  doc["status"] = "fine";
  auto err = gcp::testing::error_from([&] { compat::entry_from_json(doc, "node 'n2'"); });
  REQUIRE(err);
  CHECK_CONTAINS(err->what(), "node 'n2': a check of unknown status 'fine'");
  CHECK(compat::table({e})[1] == std::vector<std::string>{"main", "n2", "cpu", "refuse", e.reason});
}

TEST_CASE("versions compare by their numeric parts") {
  CHECK(compat::version_less("4.2.1", "4.10"));
  CHECK_FALSE(compat::version_less("4.10", "4.2.1"));
  CHECK(compat::version_less("4.2", "4.2.1"));
  CHECK_FALSE(compat::version_less("4.2.1", "4.2.1"));
  CHECK(compat::version_less("6.1.0-13-amd64", "6.18.0"));
}

TEST_CASE("a unit needs the data mounts of its node that hold what it uses, and no others") {
  const std::string node =
      "22 1 252:1 / / rw - ext4 /dev/vda1 rw\n"
      "23 22 0:21 / /proc rw - proc proc rw\n"
      "24 22 0:40 / /data rw - xfs /dev/vdb rw\n"
      "25 22 0:41 / /scratch rw - ext4 /dev/vdc rw\n"
      "26 22 0:42 / /run rw - tmpfs tmpfs rw\n"
      "27 22 0:43 / /my\\040files rw - nfs srv:/x rw\n";
  // The unit's copy, with its own /proc and a tmpfs of its own on /work.
  const std::string unit =
      "50 49 252:1 / / rw - ext4 /dev/vda1 rw\n"
      "51 50 0:60 / /proc rw - proc proc rw\n"
      "52 50 0:40 / /data rw - xfs /dev/vdb rw\n"
      "53 50 0:41 / /scratch rw - ext4 /dev/vdc rw\n"
      "54 50 0:42 / /run rw - tmpfs tmpfs rw\n"
      "55 50 0:61 / /work rw - tmpfs tmpfs rw\n"
      "56 50 0:43 / /my\\040files rw - nfs srv:/x rw\n"
      "garbage\n";
  auto used = compat::used_mounts(
      {"/usr/bin/sleep", "/data/in/x.dat", "/database", "/run/lock", "/work/out", "/proc/1/stat", "/my files/a"}, unit,
      node);
  CHECK(used == std::vector<std::string>{"/", "/data", "/my files"});
  CHECK(compat::mount_points(node).count("/my files") == 1);
}
