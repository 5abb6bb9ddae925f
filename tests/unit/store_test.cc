// SPDX-License-Identifier: MIT
#include "gcp/store.h"

#include "gcp/fs.h"
#include "gcp/names.h"
#include "testing.h"

#include <doctest/doctest.h>

#include <sys/stat.h>

#include <filesystem>
#include <fstream>

using gcp::Exit;
using gcp::manifest::json;
using gcp::testing::error_from;
using gcp::testing::ScopedEnv;
using gcp::testing::TempDir;
namespace manifest = gcp::manifest;
namespace stdfs = std::filesystem;

namespace {

// sha256 of "hello\n", as `sha256sum` prints it.
constexpr const char* kHelloSha256 =
    "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03";

mode_t mode_of(const stdfs::path& path) {
  struct stat st {};
  REQUIRE(::stat(path.c_str(), &st) == 0);
  return st.st_mode & 07777;
}

void write(const stdfs::path& path, const std::string& content) {
  stdfs::create_directories(path.parent_path());
  std::ofstream out(path, std::ios::binary);
  out << content;
  REQUIRE(out.good());
}

manifest::Job sample_job(const std::string& name) {
  manifest::Job job;
  job.name = name;
  job.owner = 0;
  job.created = manifest::now_rfc3339();
  manifest::Unit u;
  u.name = "u";
  u.node = "n";
  u.cgroup = "gcp/" + name + "/u";
  u.command = {"true"};
  job.units = {u};
  return job;
}

manifest::Checkpoint checkpoint_of(const gcp::store::Staging& staging) {
  manifest::Checkpoint cp;
  cp.job = staging.job;
  cp.seq = staging.seq;
  cp.created = manifest::now_rfc3339();
  manifest::CheckpointUnit u;
  u.name = "u";
  u.translib = "echo";
  cp.units = {u};
  return cp;
}

// A store in a temporary directory with one committed checkpoint (seq 1) of job "j":
// unit "u" holds pages.img ("hello\n") and sub/core.img (1000 bytes).
struct StoreWithCheckpoint {
  StoreWithCheckpoint() {
    store->save_job(sample_job("j"));
    auto staging = store->begin("j");
    write(staging.unit_dir("u") / "pages.img", "hello\n");
    write(staging.unit_dir("u") / "sub/core.img", std::string(1000, 'c'));
    cp = checkpoint_of(staging);
    store->commit(staging, cp);
  }
  stdfs::path image(const std::string& name) const {
    return tmp.path() / "jobs/j/checkpoints/1/u" / name;
  }

  TempDir tmp;
  std::unique_ptr<gcp::store::Store> store = gcp::store::open_dir_store(tmp.path());
  manifest::Checkpoint cp;
};

}  // namespace

TEST_CASE("a saved job loads back and is readable by its owner only") {
  TempDir tmp;
  auto store = gcp::store::open_dir_store(tmp.path());
  CHECK_FALSE(store->load_job("j").has_value());
  CHECK(store->jobs().empty());

  auto job = sample_job("j");
  job.units[0].pid = 77;
  store->save_job(job);
  auto back = store->load_job("j");
  REQUIRE(back.has_value());
  CHECK(manifest::to_json(*back) == manifest::to_json(job));
  CHECK(store->jobs() == std::vector<std::string>{"j"});

  CHECK(store->job_dir("j") == tmp.path() / "jobs/j");
  CHECK(mode_of(store->job_dir("j")) == 0700);
  CHECK(mode_of(store->job_dir("j") / "job.json") == 0600);
}

TEST_CASE("jobs are listed sorted") {
  TempDir tmp;
  auto store = gcp::store::open_dir_store(tmp.path());
  store->save_job(sample_job("b"));
  store->save_job(sample_job("a"));
  CHECK(store->jobs() == std::vector<std::string>{"a", "b"});
}

TEST_CASE("begin allocates increasing sequence numbers and distinct staging directories") {
  TempDir tmp;
  auto store = gcp::store::open_dir_store(tmp.path());
  auto first = store->begin("j");
  auto second = store->begin("j");
  CHECK(first.job == "j");
  CHECK(first.seq == 1);
  CHECK(second.seq == 2);
  CHECK(first.dir != second.dir);
  CHECK(stdfs::is_directory(first.dir));
  CHECK(stdfs::is_directory(second.dir));
  CHECK(stdfs::is_empty(second.dir));
  CHECK(first.unit_dir("u") == first.dir / "u");
  store->abort(first);
  store->abort(second);
}

TEST_CASE("commit fills in images and bytes and the checkpoint is listed") {
  StoreWithCheckpoint s;
  auto& store = *s.store;
  REQUIRE(s.cp.units.size() == 1);
  const auto& images = s.cp.units[0].images;
  REQUIRE(images.size() == 2);
  CHECK(images[0].path == "pages.img");
  CHECK(images[0].size == 6);
  CHECK(images[0].sha256 == kHelloSha256);
  CHECK(images[1].path == "sub/core.img");
  CHECK(images[1].size == 1000);
  CHECK(s.cp.units[0].bytes["raw"] == 1006);
  CHECK(s.cp.bytes["raw"] == 1006);

  CHECK(store.checkpoints("j") == std::vector<uint64_t>{1});
  CHECK_FALSE(stdfs::exists(s.tmp.path() / "jobs/j/staging/1"));
  auto loaded = store.load_checkpoint("j", 1);
  CHECK(manifest::to_json(loaded) == manifest::to_json(s.cp));

  auto next = store.begin("j");
  CHECK(next.seq == 2);
  store.abort(next);
}

TEST_CASE("abort removes the staging directory and leaves the checkpoints as they were") {
  StoreWithCheckpoint s;
  auto staging = s.store->begin("j");
  write(staging.unit_dir("u") / "pages.img", "half a dump");
  s.store->abort(staging);
  CHECK_FALSE(stdfs::exists(staging.dir));
  CHECK(s.store->checkpoints("j") == std::vector<uint64_t>{1});
  s.store->abort(staging);  // twice is harmless
}

TEST_CASE("a crash before commit leaves the previous checkpoint as latest") {
  StoreWithCheckpoint s;
  auto staging = s.store->begin("j");
  REQUIRE(staging.seq == 2);
  write(staging.unit_dir("u") / "pages.img", "newer pages");
  auto cp = checkpoint_of(staging);
  write(staging.dir / "manifest.json", manifest::to_json(cp).dump());
  // No commit: the process "crashed" here. A fresh look at the store sees seq 1 only.
  auto reopened = gcp::store::open_dir_store(s.tmp.path());
  CHECK(reopened->checkpoints("j") == std::vector<uint64_t>{1});
  auto e = error_from([&] { reopened->load_checkpoint("j", 2); });
  REQUIRE(e.has_value());
  CHECK_CONTAINS(e->what(), "job 'j' has no checkpoint 2");
  CHECK(reopened->load_checkpoint("j", 1).seq == 1);
  // The number of the abandoned attempt is not handed out again.
  auto next = reopened->begin("j");
  CHECK(next.seq > 2);
  reopened->abort(next);
}

TEST_CASE("materialize returns the verified image directory") {
  StoreWithCheckpoint s;
  auto cp = s.store->load_checkpoint("j", 1);
  auto dir = s.store->materialize(cp, "u");
  CHECK(dir == s.tmp.path() / "jobs/j/checkpoints/1/u");
  CHECK(gcp::fs::read_file(dir / "pages.img") == "hello\n");

  auto e = error_from([&] { s.store->materialize(cp, "nope"); });
  REQUIRE(e.has_value());
  CHECK_CONTAINS(e->what(), "has no unit 'nope'");
}

TEST_CASE("materialize refuses a checkpoint whose image file is missing") {
  StoreWithCheckpoint s;
  stdfs::remove(s.image("sub/core.img"));
  auto e = error_from([&] { s.store->materialize(s.store->load_checkpoint("j", 1), "u"); });
  REQUIRE(e.has_value());
  CHECK(e->code() == Exit::kFailed);
  CHECK_CONTAINS(e->what(), "checkpoint 1 of job 'j'");
  CHECK_CONTAINS(e->what(), "sub/core.img");
  CHECK_CONTAINS(e->what(), "is missing");
  CHECK_FALSE(e->hint().empty());
}

TEST_CASE("materialize refuses a checkpoint whose image file is truncated") {
  StoreWithCheckpoint s;
  stdfs::resize_file(s.image("sub/core.img"), 999);
  auto e = error_from([&] { s.store->materialize(s.store->load_checkpoint("j", 1), "u"); });
  REQUIRE(e.has_value());
  CHECK_CONTAINS(e->what(), "checkpoint 1 of job 'j'");
  CHECK_CONTAINS(e->what(), "sub/core.img");
  CHECK_CONTAINS(e->what(), "truncated");
}

TEST_CASE("materialize refuses a checkpoint whose image file has a flipped byte") {
  StoreWithCheckpoint s;
  write(s.image("pages.img"), "hellO\n");
  auto e = error_from([&] { s.store->materialize(s.store->load_checkpoint("j", 1), "u"); });
  REQUIRE(e.has_value());
  CHECK_CONTAINS(e->what(), "checkpoint 1 of job 'j'");
  CHECK_CONTAINS(e->what(), "pages.img");
  CHECK_CONTAINS(e->what(), "sha256");
}

TEST_CASE("a second lock on a job is refused while the first is held") {
  TempDir tmp;
  auto store = gcp::store::open_dir_store(tmp.path());
  {
    auto first = store->try_lock_job("j");
    REQUIRE(first.has_value());
    CHECK_FALSE(store->try_lock_job("j").has_value());
    CHECK(store->try_lock_job("other").has_value());
  }
  CHECK(store->try_lock_job("j").has_value());
}

TEST_CASE("sha256_file hashes the content") {
  TempDir tmp;
  write(tmp.path() / "f", "hello\n");
  CHECK(gcp::store::sha256_file(tmp.path() / "f") == kHelloSha256);
  CHECK(gcp::store::sha256_file("/dev/null") ==
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  CHECK(error_from([] { gcp::store::sha256_file("/nonexistent/file"); }).has_value());
}

TEST_CASE("default_root honours GCP_STORE") {
  ScopedEnv env{gcp::names::kEnvStore, "/somewhere/else"};
  CHECK(gcp::store::default_root() == "/somewhere/else");
}

TEST_CASE("events are appended one JSON line each") {
  TempDir tmp;
  auto store = gcp::store::open_dir_store(tmp.path());
  store->save_job(sample_job("j"));
  store->append_event("j", {{"event", "checkpoint"}, {"seq", 1}});
  store->append_event("j", {{"event", "restart"}, {"seq", 1}});
  std::ifstream in(store->job_dir("j") / "events.jsonl");
  std::string line;
  std::vector<json> events;
  while (std::getline(in, line)) events.push_back(json::parse(line));
  REQUIRE(events.size() == 2);
  CHECK(events[0]["event"] == "checkpoint");
  CHECK(events[1]["event"] == "restart");
  CHECK(events[1].contains("time"));
}
