// SPDX-License-Identifier: MIT
#include "gcp/translib_loader.h"

#include "gcp/names.h"
#include "testing.h"

#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>

using gcp::Exit;
using gcp::testing::error_from;
using gcp::testing::ScopedEnv;
using gcp::translib::json;
using gcp::translib::Translib;

namespace {

// Points the loader at the fake translibs for the duration of a test.
struct FakeTranslibPath {
  FakeTranslibPath() { REQUIRE(std::filesystem::exists(dir + "/echo.so")); }
  std::string dir = gcp::testing::fake_translib_dir();
  ScopedEnv env{gcp::names::kEnvTranslibPath, dir};
};

const std::string kOurAbi = std::to_string(GCP_TRANSLIB_ABI_MAJOR) + ".";

}  // namespace

TEST_CASE("the search path starts with GCP_TRANSLIB_PATH and ends next to the executable") {
  ScopedEnv env{gcp::names::kEnvTranslibPath, "/one::/two"};
  auto dirs = gcp::translib::search_path();
  REQUIRE(dirs.size() == 3);
  CHECK(dirs[0] == "/one");
  CHECK(dirs[1] == "/two");
  CHECK(dirs[2].string().ends_with("lib/gcp/translibs"));
}

TEST_CASE("the echo translib loads and describes itself") {
  FakeTranslibPath path;
  auto lib = Translib::load("echo");
  CHECK(lib.name() == "echo");
  CHECK(lib.type() == "checkpointer/echo");
  CHECK(lib.version() == "0.0.1");
  CHECK(lib.capabilities() == GCP_CAP_PROCESS_TREE);

  json info = lib.probe();
  CHECK(info["checkpointer"] == "fake");
  CHECK(info["version"] == "1.0");
  CHECK(info["path"] == "/nowhere");
}

TEST_CASE("the echo translib's checkpoint answers with its request and its needs as the options it used") {
  FakeTranslibPath path;
  auto lib = Translib::load("echo");
  json request = {{"pid", 42}, {"imagesDir", "/tmp/x"}, {"leaveRunning", true}, {"needs", {"leader-outside"}}};
  json answer = lib.checkpoint(request);
  CHECK(answer["options"] == json::array({"leader-outside"}));
  answer.erase("options");
  CHECK(answer == request);
  CHECK(lib.checkpoint(json::object()) == json{{"options", json::array()}});
  CHECK(lib.restart(json::object())["pid"] == 1);
}

TEST_CASE("a translib built for a newer ABI is refused naming both versions") {
  FakeTranslibPath path;
  auto e = error_from([] { Translib::load("wrong-abi"); });
  REQUIRE(e.has_value());
  CHECK(e->code() == Exit::kNoCheckpointer);
  CHECK_CONTAINS(e->what(), "wrong-abi.so");
  CHECK_CONTAINS(e->what(), "ABI 99.");
  CHECK_CONTAINS(e->what(), "this gcp speaks " + kOurAbi);
  CHECK_CONTAINS(e->hint(), "newer");
}

TEST_CASE("a translib built for an older ABI is refused with a hint to rebuild it") {
  FakeTranslibPath path;
  auto e = error_from([] { Translib::load("old-abi"); });
  REQUIRE(e.has_value());
  CHECK(e->code() == Exit::kNoCheckpointer);
  CHECK_CONTAINS(e->what(), "ABI 0.");
  CHECK_CONTAINS(e->what(), "this gcp speaks " + kOurAbi);
  CHECK_CONTAINS(e->hint(), "rebuild");
  CHECK_CONTAINS(e->hint(), "against this gcp");
}

TEST_CASE("a translib whose descriptor is too short is refused") {
  FakeTranslibPath path;
  auto e = error_from([] { Translib::load("short-table"); });
  REQUIRE(e.has_value());
  CHECK(e->code() == Exit::kNoCheckpointer);
  CHECK_CONTAINS(e->what(), "short-table.so");
  CHECK_CONTAINS(e->what(), "incomplete");
  CHECK_CONTAINS(e->hint(), "rebuild");
}

TEST_CASE("a failing probe gives the translib's reason and its hint") {
  FakeTranslibPath path;
  auto lib = Translib::load("failing-probe");
  auto e = error_from([&] { lib.probe(); });
  REQUIRE(e.has_value());
  CHECK(e->code() == Exit::kNoCheckpointer);
  CHECK_CONTAINS(e->what(), "translib 'failing-probe' probe");
  CHECK_CONTAINS(e->what(), "the fake checkpointer is not installed on this node");
  CHECK_NOT_CONTAINS(e->what(), "hint:");
  CHECK(e->hint() == "install fake-checkpointer");
}

TEST_CASE("a translib that does not exist names the directories searched") {
  FakeTranslibPath path;
  auto e = error_from([] { Translib::load("no-such-translib"); });
  REQUIRE(e.has_value());
  CHECK(e->code() == Exit::kNoCheckpointer);
  CHECK_CONTAINS(e->what(), "no-such-translib.so");
  CHECK_CONTAINS(e->what(), path.dir);
  CHECK_CONTAINS(e->what(), "lib/gcp/translibs");
  CHECK_CONTAINS(e->hint(), "GCP_TRANSLIB_PATH");
}

TEST_CASE("a file that is not a shared object is refused") {
  gcp::testing::TempDir tmp;
  auto file = tmp.path() / "junk.so";
  { std::ofstream(file) << "not an ELF file\n"; }
  auto e = error_from([&] { Translib::load_file(file); });
  REQUIRE(e.has_value());
  CHECK(e->code() == Exit::kNoCheckpointer);
  CHECK_CONTAINS(e->what(), file.string());
}

TEST_CASE("a failing checkpoint throws kFailed with the translib's message") {
  FakeTranslibPath path;
  auto lib = Translib::load("echo");
  {
    ScopedEnv fail{"FAKE_TRANSLIB_FAIL", "checkpoint"};
    auto e = error_from([&] { lib.checkpoint({{"pid", 42}}); });
    REQUIRE(e.has_value());
    CHECK(e->code() == Exit::kFailed);
    CHECK_CONTAINS(e->what(), "translib 'echo' checkpoint");
    CHECK_CONTAINS(e->what(), "the fake checkpointer was told to fail");
    CHECK(lib.restart(json::object())["pid"] == 1);
  }
  CHECK(lib.checkpoint({{"pid", 42}})["pid"] == 42);
}

TEST_CASE("a failing restart throws kFailed with the translib's message") {
  FakeTranslibPath path;
  auto lib = Translib::load("echo");
  ScopedEnv fail{"FAKE_TRANSLIB_FAIL", "restart"};
  auto e = error_from([&] { lib.restart(json::object()); });
  REQUIRE(e.has_value());
  CHECK(e->code() == Exit::kFailed);
  CHECK_CONTAINS(e->what(), "translib 'echo' restart");
  CHECK_CONTAINS(e->what(), "the fake checkpointer was told to fail");
}

TEST_CASE("a translib whose descriptor leaves check NULL is not asked to check") {
  FakeTranslibPath path;
  CHECK_FALSE(Translib::load("echo").can_check());
}
