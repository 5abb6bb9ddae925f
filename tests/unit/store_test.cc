// SPDX-License-Identifier: MIT
#include "gcp/store.h"
#include "gcp/events.h"

#include "gcp/chunks.h"
#include "gcp/fs.h"
#include "gcp/image_source.h"
#include "gcp/names.h"
#include "gcp/translib.h"
#include "testing.h"

#include <doctest/doctest.h>

#include <fcntl.h>
#include <sys/acl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>

#include <filesystem>
#include <fstream>
#include <functional>
#include <random>

using gcp::Exit;
using gcp::manifest::json;
using gcp::testing::error_from;
using gcp::testing::ScopedEnv;
using gcp::testing::TempDir;
namespace manifest = gcp::manifest;
namespace store = gcp::store;
namespace stdfs = std::filesystem;

namespace {

constexpr size_t kPage = 4096;

mode_t mode_of(const stdfs::path& path) {
  struct stat st {};
  REQUIRE(::stat(path.c_str(), &st) == 0);
  return st.st_mode & 0777;
}

void write(const stdfs::path& path, const std::string& content) {
  stdfs::create_directories(path.parent_path());
  std::ofstream out(path, std::ios::binary);
  out << content;
  REQUIRE(out.good());
}

// `pages` pages of incompressible bytes from `seed`.
std::string random_pages(size_t pages, uint32_t seed) {
  std::mt19937_64 rng(seed);
  std::string out(pages * kPage, '\0');
  for (size_t i = 0; i < out.size(); i += 8) {
    uint64_t v = rng();
    std::memcpy(out.data() + i, &v, 8);
  }
  return out;
}

// Text-like pages that compress well, each page different.
std::string text_pages(size_t pages) {
  std::string out;
  for (size_t p = 0; p < pages; ++p) {
    std::string page;
    while (page.size() < kPage) page += "page " + std::to_string(p) + " line " + std::to_string(page.size()) + "\n";
    out += page.substr(0, kPage);
  }
  return out;
}

manifest::Job sample_job(const std::string& name, uid_t owner = 0) {
  manifest::Job job;
  job.name = name;
  job.owner = owner;
  job.created = manifest::now_rfc3339();
  manifest::Unit u;
  u.name = "u";
  u.node = "n";
  u.cgroup = "gcp/" + name + "/u";
  u.command = {"true"};
  job.units = {u};
  return job;
}

// A store in a temporary directory, its scratch beside it.
struct Fixture {
  explicit Fixture(std::optional<store::Options> options = {}) { reopen(options); }
  void reopen(std::optional<store::Options> options = {}) {
    s = store::open(tmp.path() / "store", options, store::IfMissing::kCreate);
  }

  // Checkpoints unit "u" of `job` with the given files; `aligned` are page-aligned.
  // `in_flight` runs once the chunks are stored, before the manifest is committed.
  manifest::Checkpoint checkpoint(const std::string& job, const std::map<std::string, std::string>& files,
                                  const std::set<std::string>& aligned = {"pages.img"},
                                  const std::function<void()>& in_flight = {}) {
    if (!s->load_job(job)) s->save_job(sample_job(job));
    auto staging = s->begin(job);
    for (const auto& [name, content] : files) write(staging.unit_dir("u") / name, content);
    staging.page_aligned["u"] = aligned;
    manifest::Checkpoint cp;
    cp.job = job;
    cp.seq = staging.seq;
    cp.created = manifest::now_rfc3339();
    manifest::CheckpointUnit u;
    u.name = "u";
    u.translib = "echo";
    cp.units = {u};
    if (in_flight) {
      s->ingest(staging, cp);
      in_flight();
      s->publish(staging, cp);
    } else {
      s->commit(staging, cp);
    }
    return cp;
  }

  std::string read_back(const manifest::Checkpoint& cp, const std::string& file) {
    auto dir = tmp.path() / ("out-" + std::to_string(++outputs));
    s->materialize(s->load_checkpoint(cp.job, cp.seq), "u", dir);
    return gcp::fs::read_file(dir / file);
  }

  std::vector<stdfs::path> packs(uid_t owner = 0) {
    std::vector<stdfs::path> out;
    for (const auto& e : stdfs::directory_iterator(tmp.path() / "store/packs" / std::to_string(owner))) {
      if (e.path().extension() == ".pack") out.push_back(e.path());
    }
    return out;
  }

  TempDir tmp;
  ScopedEnv scratch{"GCP_SCRATCH", (tmp.path() / "scratch").string()};
  std::unique_ptr<store::Store> s;
  int outputs = 0;
};

uint64_t bytes(const manifest::Checkpoint& cp, const char* key) { return cp.bytes.value(key, uint64_t{0}); }

}  // namespace

TEST_CASE("a saved job loads back and is private to root and its owner") {
  Fixture f;
  CHECK_FALSE(f.s->load_job("j").has_value());
  CHECK(f.s->jobs().empty());
  auto job = sample_job("j");
  job.units[0].pid = 77;
  f.s->save_job(job);
  auto back = f.s->load_job("j");
  REQUIRE(back.has_value());
  CHECK(manifest::to_json(*back) == manifest::to_json(job));
  CHECK(f.s->jobs() == std::vector<std::string>{"j"});
  CHECK(f.s->job_dir("j") == f.tmp.path() / "store/jobs/j");
  CHECK(mode_of(f.s->job_dir("j")) == 0700);
  CHECK(mode_of(f.s->job_dir("j") / "job.json") == 0600);
}

TEST_CASE("a job.json whose callback socket is not where gcp puts it is refused, naming the field") {
  Fixture f;
  auto job = sample_job("j");
  job.units[0].callbacks.socket = gcp::events::socket_path(f.s->root(), "j", job.units[0].name);
  f.s->save_job(job);
  CHECK(f.s->load_job("j").has_value());
  // gcp would give that directory to the job's owner and remove the file at the end.
  job.units[0].callbacks.socket = "/etc/gcp/x.sock";
  f.s->save_job(job);
  auto e = error_from([&] { f.s->load_job("j"); });
  REQUIRE(e.has_value());
  CHECK(e->code() == Exit::kUsage);
  CHECK_CONTAINS(e->what(),
                 "field 'units[0].callbacks.socket' is '/etc/gcp/x.sock', not the socket gcp gives the unit");
}

TEST_CASE("gc and the store's own paths never follow a symbolic link out of the store") {
  Fixture f;
  f.checkpoint("j", {{"pages.img", random_pages(8, 3)}});
  // What a link planted in a shared store could point at.
  TempDir victim;
  stdfs::create_directory(victim.path() / "5");
  std::ofstream(victim.path() / "5.lock") << "";
  std::ofstream(victim.path() / ".keep") << "precious";
  std::ofstream(victim.path() / "x.tmp.1") << "precious";
  auto root = f.tmp.path() / "store";
  stdfs::rename(root / "jobs/j/staging", root / "staging-away");
  stdfs::create_directory_symlink(victim.path(), root / "jobs/j/staging");
  stdfs::create_directory_symlink(victim.path(), root / "packs/77");
  stdfs::create_directory_symlink(victim.path(), root / "index/77");
  stdfs::create_directory_symlink(victim.path(), root / "jobs/linked");
  stdfs::create_directory(root / "index/99999999999999999999");
  f.reopen();
  // A job whose staging is a link cannot be read: gc refuses to collect, and touches
  // nothing the links point at either way.
  auto refused = error_from([&] { f.s->gc(std::chrono::seconds(0)); });
  REQUIRE(refused.has_value());
  CHECK_CONTAINS(refused->what(), "no chunk was removed");
  CHECK(stdfs::exists(victim.path() / "5"));
  CHECK(stdfs::exists(victim.path() / "5.lock"));
  CHECK(stdfs::exists(victim.path() / ".keep"));
  CHECK(stdfs::exists(victim.path() / "x.tmp.1"));
  CHECK(f.s->jobs() == std::vector<std::string>{"j"});
  CHECK(f.s->usage().is_array());
  auto e = error_from([&] { f.s->save_job(sample_job("linked")); });
  REQUIRE(e.has_value());
  CHECK_CONTAINS(e->what(), "jobs/linked' is a symbolic link; gcp does not leave its store");
  CHECK_FALSE(stdfs::exists(victim.path() / "job.json"));
  // A checkpoint of the job whose staging is a link is refused, and writes nothing there.
  CHECK(error_from([&] { f.checkpoint("j", {{"pages.img", random_pages(1, 4)}}); }));
  CHECK_FALSE(stdfs::exists(victim.path() / "2"));
}

TEST_CASE("root refuses a store that a user could change" *
          gcp::testing::skip_unless(gcp::testing::is_root(), "needs root: the store belongs to another user")) {
  TempDir tmp;
  auto theirs = tmp.path() / "theirs";
  stdfs::create_directory(theirs);
  REQUIRE(::chown(theirs.c_str(), 65534, 65534) == 0);
  auto e = error_from([&] { store::open(theirs.string()); });
  REQUIRE(e.has_value());
  CHECK(e->code() == Exit::kNotPermitted);
  CHECK_CONTAINS(e->what(), "store '" + theirs.string() + "' belongs to uid 65534");
  CHECK_CONTAINS(e->hint(), "run gcp as the user whose store it is");
  CHECK_FALSE(stdfs::exists(theirs / "jobs"));
}

TEST_CASE("a store that is not there is refused, not made, unless asked") {
  TempDir tmp;
  auto missing = tmp.path() / "typo";
  auto e = error_from([&] { store::open(missing.string()); });
  REQUIRE(e.has_value());
  CHECK(e->code() == Exit::kUsage);
  CHECK_CONTAINS(e->what(), "no store at '" + missing.string() + "'");
  CHECK_FALSE(stdfs::exists(missing));
  store::open(missing.string(), {}, store::IfMissing::kCreate);
  CHECK(stdfs::is_directory(missing / "jobs"));
}

TEST_CASE("a scratch directory someone else made is refused, and nothing is put in it" *
          gcp::testing::skip_unless(gcp::testing::is_root(), "needs root: the directory belongs to another user")) {
  TempDir tmp;
  auto scratch = tmp.path() / "scratch";
  stdfs::create_directory(scratch);
  REQUIRE(::chown(scratch.c_str(), 65534, 65534) == 0);
  ::chmod(scratch.c_str(), 0777);
  ScopedEnv env{"GCP_SCRATCH", scratch.string()};
  auto e = error_from([&] { store::ScratchDir dir("j-1"); });
  REQUIRE(e.has_value());
  CHECK(e->code() == Exit::kNotPermitted);
  CHECK_CONTAINS(e->hint(), "GCP_SCRATCH");
  CHECK(stdfs::is_empty(scratch));
}

TEST_CASE("a job of another owner gets read access for that owner through an ACL, nobody else" *
          gcp::testing::skip_unless(gcp::testing::is_root(), "needs root: the job belongs to another user")) {
  Fixture f;
  f.s->save_job(sample_job("theirs", 4242));
  auto dir = f.s->job_dir("theirs");
  acl_t acl = acl_get_file(dir.c_str(), ACL_TYPE_ACCESS);
  REQUIRE(acl != nullptr);
  char* text = acl_to_text(acl, nullptr);
  std::string s = text;
  acl_free(text);
  acl_free(acl);
  CHECK_CONTAINS(s, "user:4242:r-x");
  CHECK_CONTAINS(s, "group::---");
  CHECK_CONTAINS(s, "other::---");
  // Group bits show the ACL mask (r-x); "other" has nothing.
  CHECK((mode_of(dir) & 07) == 0);
}

TEST_CASE("begin allocates increasing sequence numbers and distinct local scratch directories") {
  Fixture f;
  f.s->save_job(sample_job("j"));
  auto first = f.s->begin("j");
  auto second = f.s->begin("j");
  CHECK(first.seq == 1);
  CHECK(second.seq == 2);
  CHECK(first.dir != second.dir);
  CHECK(first.dir.parent_path() == f.tmp.path() / "scratch");
  CHECK(stdfs::is_directory(f.tmp.path() / "store/jobs/j/staging/1"));
  f.s->abort(first);
  f.s->abort(second);
  CHECK_FALSE(stdfs::exists(first.dir));
  CHECK_FALSE(stdfs::exists(f.tmp.path() / "store/jobs/j/staging/1"));
  f.s->abort(second);  // twice is harmless
}

TEST_CASE("random and compressible data round-trip; compressible data is stored small") {
  Fixture f;
  auto random = random_pages(300, 1), text = text_pages(300);
  std::string odd = "core image of 1000 bytes" + std::string(976, 'c');
  auto cp = f.checkpoint("j", {{"pages.img", random}, {"sub/core.img", odd}, {"text.img", text}});
  REQUIRE(cp.units[0].images.size() == 3);
  const auto& pages = cp.units[0].images[0];
  CHECK(pages.path == "pages.img");
  CHECK(pages.chunk_size == 4096);
  CHECK(pages.chunk_count() == 300);
  CHECK(cp.units[0].images[1].path == "sub/core.img");
  CHECK(cp.units[0].images[2].chunk_size == gcp::chunks::kFileChunk);
  CHECK(bytes(cp, "raw") == random.size() + text.size() + 1000);
  CHECK(bytes(cp, "new") == bytes(cp, "raw"));
  CHECK(f.s->checkpoints("j") == std::vector<uint64_t>{1});
  CHECK(f.read_back(cp, "pages.img") == random);
  CHECK(f.read_back(cp, "sub/core.img") == odd);
  CHECK(f.read_back(cp, "text.img") == text);
  // The text is stored in well under a third of its size; random data cannot shrink.
  auto text_only = f.checkpoint("t", {{"pages.img", text_pages(1000)}});
  CHECK(bytes(text_only, "stored") * 3 < bytes(text_only, "raw"));
  CHECK(bytes(cp, "stored") > random.size());
}

TEST_CASE("page images stay aligned when a mapping is inserted: only the new pages are new") {
  Fixture f;
  auto before = random_pages(256, 7);
  auto first = f.checkpoint("j", {{"pages.img", before}});
  // A new mapping of 3 pages in the middle shifts the later pages by whole pages.
  auto after = before.substr(0, 100 * kPage) + random_pages(3, 8) + before.substr(100 * kPage);
  auto second = f.checkpoint("j", {{"pages.img", after}});
  CHECK(bytes(second, "raw") == 259 * kPage);
  CHECK(bytes(second, "new") == 3 * kPage);
  CHECK(f.read_back(second, "pages.img") == after);
  CHECK(f.read_back(first, "pages.img") == before);
}

TEST_CASE("deduplication never crosses owners" *
          gcp::testing::skip_unless(gcp::testing::is_root(), "needs root: the jobs belong to other users")) {
  Fixture f;
  auto data = random_pages(64, 3);
  f.s->save_job(sample_job("mine", 0));
  f.s->save_job(sample_job("theirs", 4242));
  auto mine = f.checkpoint("mine", {{"pages.img", data}});
  auto theirs = f.checkpoint("theirs", {{"pages.img", data}});
  CHECK(bytes(mine, "new") == data.size());
  CHECK(bytes(theirs, "new") == data.size());  // the same pages, stored again
  CHECK(f.packs(0).size() == 1);
  CHECK(f.packs(4242).size() == 1);
  CHECK(mode_of(f.tmp.path() / "store/packs/4242") == 0750);  // 0700 + ACL mask r-x
  CHECK((mode_of(f.packs(4242)[0]) & 07) == 0);
  CHECK(f.read_back(theirs, "pages.img") == data);
}

TEST_CASE("a flipped byte in a pack is caught and named") {
  Fixture f;
  auto cp = f.checkpoint("j", {{"pages.img", random_pages(32, 5)}});
  auto pack = f.packs().at(0);
  {
    std::fstream io(pack, std::ios::in | std::ios::out | std::ios::binary);
    io.seekp(5000);
    char c;
    io.seekg(5000);
    io.get(c);
    io.seekp(5000);
    io.put(static_cast<char>(c ^ 0x20));
  }
  f.reopen();
  auto e = error_from([&] { f.read_back(cp, "pages.img"); });
  REQUIRE(e.has_value());
  CHECK_CONTAINS(e->what(), "checkpoint 1 of job 'j', unit 'u', file 'pages.img': chunk ");
  CHECK_CONTAINS(e->hint(), "--fallback");
  auto report = f.s->verify(f.s->load_checkpoint("j", 1));
  REQUIRE(report.problems.size() == 1);
  CHECK_CONTAINS(report.problems[0], "file 'pages.img'");
  CHECK(report.chunks == 32);
}

TEST_CASE("stream_image hands pieces over in order, stops before a damaged chunk, and when the sink is done") {
  Fixture f;
  auto pages = random_pages(2560 + 7, 26);  // 10 pieces of 1 MiB and a short one
  auto cp = f.checkpoint("j", {{"pages.img", pages}});
  auto stream = [&](size_t stop_after, std::string& got) {
    auto loaded = f.s->load_checkpoint("j", cp.seq);
    const auto& image = loaded.find_unit("u")->images.at(0);
    size_t pieces = 0;
    return f.s->stream_image(
        loaded, "u", image,
        [&](std::vector<uint8_t>& piece) {
          got.append(piece.begin(), piece.end());
          std::vector<uint8_t>().swap(piece);  // the sink may keep the memory: the store copes
          return ++pieces < stop_after;
        },
        nullptr);
  };
  std::string whole;
  CHECK_FALSE(stream(SIZE_MAX, whole).has_value());
  CHECK(whole == pages);

  std::string part;
  CHECK_FALSE(stream(3, part).has_value());  // the reader went away: no error
  CHECK(part == pages.substr(0, 3 << 20));

  // Damage a byte of the 6th piece: exactly the five before it arrive, whole.
  auto pack = f.packs().at(0);
  {
    std::fstream io(pack, std::ios::in | std::ios::out | std::ios::binary);
    const std::streamoff at = (5 << 20) + 12345;
    io.seekg(at);
    char c;
    io.get(c);
    io.seekp(at);
    io.put(static_cast<char>(c ^ 0x01));
  }
  f.reopen();
  std::string before;
  auto bad = stream(SIZE_MAX, before);
  REQUIRE(bad.has_value());
  CHECK_CONTAINS(bad->what(), "file 'pages.img': chunk 128");
  CHECK(before == pages.substr(0, 5 << 20));
}

TEST_CASE("materialize throws Corrupt for a missing chunk, and Error for an unknown unit") {
  Fixture f;
  auto cp = f.checkpoint("j", {{"pages.img", random_pages(4, 9)}});
  stdfs::remove(f.packs().at(0));
  f.reopen();
  auto loaded = f.s->load_checkpoint("j", 1);
  bool corrupt = false;
  try {
    f.s->materialize(loaded, "u", f.tmp.path() / "x");
  } catch (const store::Corrupt& e) {
    corrupt = true;
    CHECK_CONTAINS(e.what(), "is missing");
  }
  CHECK(corrupt);
  auto e = error_from([&] { f.s->materialize(loaded, "nope", f.tmp.path() / "y"); });
  REQUIRE(e.has_value());
  CHECK_CONTAINS(e->what(), "has no unit 'nope'");
}

TEST_CASE("a checkpoint's metadata comes without its chunk lists, the full manifest with them") {
  Fixture f;
  f.checkpoint("j", {{"pages.img", random_pages(8, 3)}, {"core.img", "core"}});
  auto full = f.s->load_checkpoint("j", 1);
  auto meta = f.s->load_checkpoint_metadata("j", 1);
  REQUIRE(full.units.size() == 1);
  REQUIRE(meta.units.size() == 1);
  REQUIRE(meta.units[0].images.size() == full.units[0].images.size());
  for (size_t i = 0; i < full.units[0].images.size(); ++i) {
    const auto& a = full.units[0].images[i];
    const auto& b = meta.units[0].images[i];
    CHECK(b.path == a.path);
    CHECK(b.size == a.size);
    CHECK(a.digests.size() == 32 * a.chunk_count());
    CHECK(b.digests.empty());
  }
  CHECK(meta.bytes == full.bytes);
  auto e = error_from([&] { f.s->load_checkpoint_metadata("j", 2); });
  REQUIRE(e.has_value());
  CHECK_CONTAINS(e->what(), "job 'j' has no checkpoint 2");
}

TEST_CASE("a crash before the manifest is renamed leaves the previous checkpoint the latest") {
  Fixture f;
  f.checkpoint("j", {{"pages.img", random_pages(8, 1)}});
  {
    auto staging = f.s->begin("j");
    REQUIRE(staging.seq == 2);
    write(staging.unit_dir("u") / "pages.img", random_pages(8, 2));
    // The writer "crashes" here: its locks go, its staging stays.
    staging.held.reset();
  }
  // So does a scratch directory of a dump whose process died.
  write(f.tmp.path() / "scratch/j-9-abcdef/.lock", "");
  write(f.tmp.path() / "scratch/j-9-abcdef/u/pages-1.img", "left over");
  f.reopen();
  CHECK(f.s->checkpoints("j") == std::vector<uint64_t>{1});
  auto e = error_from([&] { f.s->load_checkpoint("j", 2); });
  REQUIRE(e.has_value());
  CHECK_CONTAINS(e->what(), "job 'j' has no checkpoint 2");
  auto next = f.s->begin("j");
  CHECK(next.seq == 3);  // the abandoned number is not handed out again
  f.s->abort(next);
  // gc collects the abandoned staging and scratch.
  auto report = f.s->gc(std::chrono::seconds(0));
  CHECK(report.staging_removed == 2);
  CHECK_FALSE(stdfs::exists(f.tmp.path() / "store/jobs/j/staging/2"));
  CHECK(stdfs::is_empty(f.tmp.path() / "scratch"));
}

TEST_CASE("gc removes what no checkpoint references and keeps every referenced chunk") {
  Fixture f;
  auto a = random_pages(64, 11), b = random_pages(64, 12);
  auto first = f.checkpoint("j", {{"pages.img", a}});
  // The second shares 8 pages with the first.
  auto second = f.checkpoint("j", {{"pages.img", a.substr(0, 8 * kPage) + b}});
  CHECK(bytes(second, "new") == b.size());
  auto nothing = f.s->gc(std::chrono::seconds(0));
  CHECK(nothing.packs_removed + nothing.packs_repacked == 0);

  f.s->remove_checkpoint("j", 1);
  auto report = f.s->gc(std::chrono::seconds(0));
  CHECK(report.packs_repacked == 1);  // 56 of the first's 64 chunks are dead
  CHECK(report.chunks_removed == 56);
  CHECK(report.bytes_freed > 50 * kPage);
  f.reopen();
  CHECK(f.s->verify(f.s->load_checkpoint("j", 2)).problems.empty());
  CHECK(f.read_back(second, "pages.img") == a.substr(0, 8 * kPage) + b);

  f.s->remove_checkpoint("j", 2);
  report = f.s->gc(std::chrono::seconds(0));
  CHECK(report.packs_removed == 2);
  CHECK(f.packs().empty());
}

TEST_CASE("gc leaves an in-flight checkpoint's chunks alone") {
  Fixture f;
  auto a = random_pages(32, 21);
  f.checkpoint("j", {{"pages.img", a}});
  // The next checkpoint deduplicates against seq 1, which is removed while it is in
  // flight; gc runs at the worst moment: chunks stored, manifest not yet committed.
  std::optional<store::GcReport> during;
  auto second = f.checkpoint("j", {{"pages.img", a + random_pages(4, 22)}}, {"pages.img"}, [&] {
    auto other = store::open((f.tmp.path() / "store").string());
    other->remove_checkpoint("j", 1);
    during = other->gc(std::chrono::seconds(0));
  });
  REQUIRE(during.has_value());
  CHECK(during->busy_owners == std::vector<uid_t>{0});
  CHECK(during->packs_removed == 0);
  CHECK(bytes(second, "new") == 4 * kPage);
  f.reopen();
  CHECK(f.s->checkpoints("j") == std::vector<uint64_t>{2});
  CHECK(f.s->verify(f.s->load_checkpoint("j", 2)).problems.empty());
  // Afterwards gc runs, and still keeps everything the committed checkpoint uses.
  auto after = f.s->gc(std::chrono::seconds(0));
  CHECK(after.busy_owners.empty());
  CHECK(f.read_back(second, "pages.img") == a + random_pages(4, 22));
}

TEST_CASE("the chunk hashes live in chunks.bin beside the manifest, checked when loaded") {
  Fixture f;
  auto data = random_pages(10, 31);
  auto cp = f.checkpoint("j", {{"pages.img", data}});
  auto dir = f.tmp.path() / "store/jobs/j/checkpoints/1";
  auto manifest_text = gcp::fs::read_file(dir / "manifest.json");
  CHECK(manifest_text.find(cp.units[0].images[0].digest_hex(0)) == std::string::npos);
  CHECK(stdfs::file_size(dir / "chunks.bin") == 16 + 10 * 32 + 32);
  auto loaded = f.s->load_checkpoint("j", 1);
  CHECK(loaded.units[0].images[0].digests == cp.units[0].images[0].digests);
  CHECK(loaded.chunk_list["count"] == 10);
  // A flipped byte in the list is caught before any chunk is read.
  {
    std::fstream io(dir / "chunks.bin", std::ios::in | std::ios::out | std::ios::binary);
    io.seekp(40);
    io.put('\x7f');
  }
  bool corrupt = false;
  try {
    f.s->load_checkpoint("j", 1);
  } catch (const store::Corrupt& e) {
    corrupt = true;
    CHECK_CONTAINS(e.what(), "checkpoint 1 of job 'j': its chunk list");
    CHECK_CONTAINS(e.what(), "does not match its SHA-256");
  }
  CHECK(corrupt);
  stdfs::resize_file(dir / "chunks.bin", 100);
  auto e = error_from([&] { f.s->load_checkpoint("j", 1); });
  REQUIRE(e.has_value());
  CHECK_CONTAINS(e->what(), "truncated?");
  stdfs::remove(dir / "chunks.bin");
  e = error_from([&] { f.s->load_checkpoint("j", 1); });
  REQUIRE(e.has_value());
  CHECK_CONTAINS(e->what(), "is missing");
  // gc cannot know what such a checkpoint references: it removes none of the owner's chunks.
  auto packs = f.packs();
  e = error_from([&] { f.s->gc(std::chrono::seconds(0)); });
  REQUIRE(e.has_value());
  CHECK_CONTAINS(e->what(), "no chunk of uid 0 was removed");
  CHECK_CONTAINS(e->hint(), "gcp-store rm j --seq 1");
  CHECK(f.packs() == packs);
}

TEST_CASE("remove_job removes the record and its checkpoints") {
  Fixture f;
  f.checkpoint("j", {{"pages.img", random_pages(4, 1)}});
  f.s->remove_job("j");
  CHECK(f.s->jobs().empty());
  CHECK_FALSE(stdfs::exists(f.tmp.path() / "store/jobs/j"));
  CHECK(f.s->gc(std::chrono::seconds(0)).packs_removed == 1);
}

TEST_CASE("usage reports dedup and compression per owner") {
  Fixture f;
  auto data = text_pages(200);
  f.checkpoint("j", {{"pages.img", data}});
  f.checkpoint("j", {{"pages.img", data}});
  auto usage = f.s->usage();
  REQUIRE(usage.size() == 1);
  CHECK(usage[0]["uid"] == 0);
  CHECK(usage[0]["checkpoints"] == 2);
  CHECK(usage[0]["bytes"]["referenced"] == 2 * data.size());
  CHECK(usage[0]["bytes"]["unique"] == data.size());
  CHECK(usage[0]["dedupRatio"] == 2.0);
  f.checkpoint("empty", {{"pages.img", ""}});
  CHECK(f.s->usage()[0]["checkpoints"] == 3);
  CHECK(usage[0]["compressionRatio"].get<double>() > 3.0);
}

TEST_CASE("each unit of a checkpoint records the zstd level its chunks got") {
  store::Options options;
  options.level = 9;
  Fixture f(options);
  auto cp = f.checkpoint("j", {{"pages.img", text_pages(4)}});
  CHECK(cp.units.at(0).zstd_level == 9);
  auto loaded = f.s->load_checkpoint_metadata("j", 1);
  CHECK(loaded.units.at(0).zstd_level == 9);
  CHECK(manifest::to_json(loaded, false)["units"][0]["zstdLevel"] == 9);
}

TEST_CASE("the zstd level is checked") {
  CHECK(store::check_level(3, "x") == 3);
  CHECK(store::check_level(-2, "x") == -2);
  for (long bad : {0L, 20L, -8L}) {
    auto e = error_from([&] { store::check_level(bad, "--level"); });
    REQUIRE(e.has_value());
    CHECK(e->code() == Exit::kUsage);
    CHECK_CONTAINS(e->what(), "--level");
  }
  // A bad $GCP_ZSTD_LEVEL stops only what writes chunks.
  ScopedEnv env{"GCP_ZSTD_LEVEL", "fast"};
  Fixture f;
  CHECK(f.s->jobs().empty());
  auto e = error_from([&] { f.checkpoint("j", {{"pages.img", random_pages(1, 1)}}); });
  REQUIRE(e.has_value());
  CHECK(e->code() == Exit::kUsage);
  CHECK_CONTAINS(e->what(), "GCP_ZSTD_LEVEL: 'fast' is not a number");
}

TEST_CASE("a second lock on a job is refused while the first is held") {
  Fixture f;
  {
    auto first = f.s->try_lock_job("j");
    REQUIRE(first.has_value());
    CHECK_FALSE(f.s->try_lock_job("j").has_value());
    CHECK(f.s->try_lock_job("other").has_value());
  }
  CHECK(f.s->try_lock_job("j").has_value());
}

TEST_CASE("default_root honours GCP_STORE and scratch_root GCP_SCRATCH") {
  ScopedEnv env{gcp::names::kEnvStore, "/somewhere/else"};
  CHECK(store::default_root() == "/somewhere/else");
  ScopedEnv scratch{"GCP_SCRATCH", "/fast/disk"};
  CHECK(store::scratch_root() == "/fast/disk");
}

TEST_CASE("events are appended one JSON line each") {
  Fixture f;
  f.s->save_job(sample_job("j"));
  f.s->append_event("j", {{"event", "checkpoint"}, {"seq", 1}});
  f.s->append_event("j", {{"event", "restart"}, {"seq", 1}});
  std::ifstream in(f.s->job_dir("j") / "events.jsonl");
  std::string line;
  std::vector<json> events;
  while (std::getline(in, line)) events.push_back(json::parse(line));
  REQUIRE(events.size() == 2);
  CHECK(events[0]["event"] == "checkpoint");
  CHECK(events[1]["event"] == "restart");
  CHECK(events[1].contains("time"));
}

namespace {

// What a translib does to get an image from gcp's image source (translib.h): a line
// with its path, a line that says whether it exists, then the write end of a pipe to
// read it from.
class SourceClient {
 public:
  explicit SourceClient(const stdfs::path& socket) {
    sock_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    REQUIRE(sock_ >= 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, socket.c_str(), sizeof addr.sun_path - 1);
    REQUIRE(::connect(sock_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  }
  ~SourceClient() { close(); }
  void close() {
    if (sock_ >= 0) ::close(sock_);
    sock_ = -1;
  }

  void send(const std::string& bytes) {
    REQUIRE(::send(sock_, bytes.data(), bytes.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(bytes.size()));
  }

  // One answer line, parsed; a discarded value when the source closed the connection.
  json answer() {
    std::string line;
    char c;
    while (::recv(sock_, &c, 1, 0) == 1 && c != '\n') line += c;
    return json::parse(line, nullptr, false);
  }

  void pass_fd(int fd) { gcp::testing::send_fd(sock_, fd); }

  // The image's bytes (at most `limit` of them: then the pipe is closed early), or
  // nullopt when the source says it does not exist.
  std::optional<std::string> fetch(const std::string& name, size_t limit = SIZE_MAX) {
    send(json{{"image", name}}.dump() + "\n");
    json reply = answer();
    REQUIRE(reply.is_object());
    if (!reply.at("exists").get<bool>()) {
      CHECK_FALSE(reply.contains("size"));
      return std::nullopt;
    }
    int fds[2];
    REQUIRE(::pipe2(fds, O_CLOEXEC) == 0);
    pass_fd(fds[1]);
    ::close(fds[1]);
    std::string out;
    char buf[65536];
    while (out.size() < limit) {
      ssize_t r = ::read(fds[0], buf, std::min(sizeof buf, limit - out.size()));
      REQUIRE(r >= 0);
      if (r == 0) break;
      out.append(buf, static_cast<size_t>(r));
    }
    ::close(fds[0]);
    if (out.size() < limit) CHECK(reply.at("size").get<size_t>() >= out.size());
    return out;
  }

 private:
  int sock_ = -1;
};

}  // namespace

TEST_CASE("the image source streams each image whole, verified, and says which it does not have") {
  Fixture f;
  auto pages = random_pages(600, 21);  // more than one 1 MiB piece
  auto core = text_pages(3).substr(0, 9000);
  auto cp = f.checkpoint("j", {{"pages.img", pages}, {"core-1.img", core}});
  auto loaded = f.s->load_checkpoint("j", cp.seq);
  auto dir = f.tmp.path() / "serve";
  store::ImageSource source(*f.s, loaded, "u", dir);
  {
    SourceClient translib(source.socket_path());
    CHECK(translib.fetch("core-1.img") == core);
    CHECK(translib.fetch("inventory.img") == std::nullopt);
    CHECK(translib.fetch("pages.img") == pages);                      // read ahead
    CHECK(translib.fetch("pages.img") == pages);                      // again: read anew
    CHECK(translib.fetch("core-1.img", 100) == core.substr(0, 100));  // read in part, then closed
  }
  CHECK(source.finish() == std::nullopt);
  CHECK(!source.failure());
  CHECK(source.served() == std::vector<std::string>{"core-1.img", "pages.img", "pages.img", "core-1.img"});
  CHECK(!stdfs::exists(dir / store::ImageSource::kSocketName));
}

TEST_CASE("the image source ends the connection at a request it cannot read, and says why") {
  Fixture f;
  auto core = text_pages(1);
  auto cp = f.checkpoint("j", {{"core-1.img", core}});
  auto loaded = f.s->load_checkpoint("j", cp.seq);
  struct Case {
    std::string sent;
    std::string says;
  };
  for (const auto& c : std::vector<Case>{
           {"core-1.img\n", "not {\"image\": \"<path>\"}"},
           {"{\"image\": 7}\n", "not {\"image\": \"<path>\"}"},
           {"{\"image\": \"\"}\n", "not {\"image\": \"<path>\"}"},
           {"[\"core-1.img\"]\n", "not {\"image\": \"<path>\"}"},
           {"{\"image\": \"core-1.img\"", "in the middle of a request"},
           {std::string(GCP_IMAGE_SOURCE_MAX_LINE + 10, '{'), "longer than 4096 bytes"},
       }) {
    CAPTURE(c.sent.substr(0, 40));
    store::ImageSource source(*f.s, loaded, "u", f.tmp.path() / "bad");
    {
      SourceClient translib(source.socket_path());
      translib.send(c.sent);
      if (c.says == "in the middle of a request") translib.close();
      CHECK(translib.answer().is_discarded());  // no answer: the connection is closed
    }
    CHECK(source.finish() == std::nullopt);
    REQUIRE(source.failure());
    CHECK_CONTAINS(source.failure()->what(), c.says);
  }
  // A descriptor that is not a pipe gets no image written into it.
  store::ImageSource source(*f.s, loaded, "u", f.tmp.path() / "bad");
  auto file = f.tmp.path() / "not-a-pipe";
  write(file, "untouched");
  {
    SourceClient translib(source.socket_path());
    translib.send("{\"image\":\"core-1.img\"}\n");
    CHECK(translib.answer() == json{{"exists", true}, {"size", core.size()}});
    int fd = ::open(file.c_str(), O_WRONLY | O_CLOEXEC);
    REQUIRE(fd >= 0);
    translib.pass_fd(fd);
    ::close(fd);
    CHECK(translib.answer().is_discarded());
  }
  CHECK(source.finish() == std::nullopt);
  REQUIRE(source.failure());
  CHECK_CONTAINS(source.failure()->what(), "not a pipe");
  CHECK(gcp::fs::read_file(file) == "untouched");
}

TEST_CASE("the image source stops an image before a damaged chunk and names it") {
  Fixture f;
  auto pages = random_pages(600, 22);
  auto cp = f.checkpoint("j", {{"pages.img", pages}});
  // Damage a byte well into the pack: the chunks before it still arrive.
  auto pack = f.packs().at(0);
  {
    std::fstream io(pack, std::ios::in | std::ios::out | std::ios::binary);
    io.seekg(2'000'000);
    char c;
    io.get(c);
    io.seekp(2'000'000);
    io.put(static_cast<char>(c ^ 0x01));
  }
  f.reopen();
  auto loaded = f.s->load_checkpoint("j", cp.seq);
  auto dir = f.tmp.path() / "serve";
  store::ImageSource source(*f.s, loaded, "u", dir);
  std::optional<std::string> got;
  {
    SourceClient translib(source.socket_path());
    got = translib.fetch("pages.img");
  }
  REQUIRE(got.has_value());
  CHECK(got->size() < pages.size());
  CHECK(got->size() % (1 << 20) == 0);  // whole verified pieces only
  CHECK(pages.compare(0, got->size(), *got) == 0);
  auto bad = source.finish();
  REQUIRE(bad.has_value());
  CHECK_CONTAINS(bad->what(), "checkpoint 1 of job 'j', unit 'u', file 'pages.img': chunk ");
  CHECK_CONTAINS(bad->hint(), "--fallback");
}

TEST_CASE("the image source copes with a page image read in part, and with one never asked for") {
  Fixture f;
  auto pages = random_pages(3000, 24);  // 12 MiB: more than the read-ahead buffers hold
  auto cp = f.checkpoint("j", {{"pages.img", pages}, {"pages-2.img", random_pages(600, 25)}});
  auto loaded = f.s->load_checkpoint("j", cp.seq);
  auto dir = f.tmp.path() / "serve";
  store::ImageSource source(*f.s, loaded, "u", dir);
  {
    SourceClient translib(source.socket_path());
    CHECK(translib.fetch("pages.img", 3 << 20) == pages.substr(0, 3 << 20));
  }
  CHECK(source.finish() == std::nullopt);
  CHECK(!source.failure());
}

TEST_CASE("the image source reads the largest page images ahead and the others when asked") {
  Fixture f;
  std::map<std::string, std::string> files;
  std::set<std::string> names;
  for (int i = 1; i <= 6; ++i) {
    auto name = "pages-" + std::to_string(i) + ".img";
    files[name] = random_pages(256 + 16 * i, 30 + i);
    names.insert(name);
  }
  auto cp = f.checkpoint("j", files, names);
  auto loaded = f.s->load_checkpoint("j", cp.seq);
  auto dir = f.tmp.path() / "serve";
  store::ImageSource source(*f.s, loaded, "u", dir);
  {
    SourceClient translib(source.socket_path());
    for (const auto& [name, content] : files) CHECK(translib.fetch(name) == content);
  }
  CHECK(source.finish() == std::nullopt);
  CHECK(source.served().size() == 6);
}

TEST_CASE("the image source ends at once when nobody connected, and refuses a path too long for a socket") {
  Fixture f;
  auto cp = f.checkpoint("j", {{"pages.img", random_pages(2, 23)}});
  auto loaded = f.s->load_checkpoint("j", cp.seq);
  {
    store::ImageSource source(*f.s, loaded, "u", f.tmp.path() / "serve");
    CHECK(source.finish() == std::nullopt);
    CHECK(source.served().empty());
  }
  auto deep = f.tmp.path() / std::string(120, 'd');
  CHECK(!store::ImageSource::fits(deep));
  auto e = error_from([&] { store::ImageSource source(*f.s, loaded, "u", deep); });
  REQUIRE(e.has_value());
  CHECK_CONTAINS(e->what(), "too long for a unix socket path");
  auto e2 = error_from([&] { store::ImageSource source(*f.s, loaded, "nope", f.tmp.path() / "s2"); });
  REQUIRE(e2.has_value());
  CHECK_CONTAINS(e2->what(), "has no unit 'nope'");
}

// ---- hostile store content (gcp-security(7), Limits) ----

namespace {

// Replaces `path` by a FIFO; a reader that opens it waits for a writer forever, so a
// test that regresses would hang: the alarm ends it instead.
void make_fifo(const stdfs::path& path) {
  stdfs::remove(path);
  REQUIRE(::mkfifo(path.c_str(), 0600) == 0);
}

struct Deadline {
  explicit Deadline(unsigned seconds) { ::alarm(seconds); }
  ~Deadline() { ::alarm(0); }
};

}  // namespace

TEST_CASE("a job.json that is a FIFO, a link to /dev/zero or too large gives one error, no hang") {
  Deadline deadline(20);
  Fixture f;
  f.s->save_job(sample_job("j"));
  auto path = f.tmp.path() / "store/jobs/j/job.json";
  make_fifo(path);
  auto e = error_from([&] { f.s->load_job("j"); });
  REQUIRE(e.has_value());
  CHECK(e->code() == Exit::kUsage);
  CHECK_CONTAINS(e->what(), "job.json': it is not a regular file");
  stdfs::remove(path);
  stdfs::create_symlink("/dev/zero", path);
  e = error_from([&] { f.s->load_job("j"); });
  REQUIRE(e.has_value());
  CHECK_CONTAINS(e->what(), "job.json' is a symbolic link");
  stdfs::remove(path);
  {
    std::ofstream big(path);
    big << std::string(manifest::kMaxJobBytes + 1, ' ');
  }
  e = error_from([&] { f.s->load_job("j"); });
  REQUIRE(e.has_value());
  CHECK_CONTAINS(e->what(), "it is larger than 16777216 bytes");
}

TEST_CASE("one job.json of 100,000 brackets fails alone; the other jobs still load") {
  Fixture f;
  f.s->save_job(sample_job("good"));
  f.s->save_job(sample_job("bad"));
  write(f.tmp.path() / "store/jobs/bad/job.json", std::string(100000, '[') + std::string(100000, ']'));
  CHECK(f.s->jobs() == std::vector<std::string>{"bad", "good"});
  auto e = error_from([&] { f.s->load_job("bad"); });
  REQUIRE(e.has_value());
  CHECK(e->code() == Exit::kUsage);
  CHECK_CONTAINS(e->what(), "nests deeper than 64 levels");
  CHECK(f.s->load_job("good").has_value());
}

TEST_CASE("a checkpoint manifest or chunk list that is a FIFO gives one error, no hang") {
  Deadline deadline(20);
  Fixture f;
  f.checkpoint("j", {{"pages.img", random_pages(4, 3)}});
  auto dir = f.tmp.path() / "store/jobs/j/checkpoints/1";
  make_fifo(dir / "chunks.bin");
  auto e = error_from([&] { f.s->load_checkpoint("j", 1); });
  REQUIRE(e.has_value());
  CHECK_CONTAINS(e->what(), "its chunk list");
  CHECK_CONTAINS(e->what(), "not a regular file");
  make_fifo(dir / "manifest.json");
  e = error_from([&] { f.s->load_checkpoint_metadata("j", 1); });
  REQUIRE(e.has_value());
  CHECK(e->code() == Exit::kUsage);
  CHECK_CONTAINS(e->what(), "manifest.json': it is not a regular file");
}

TEST_CASE("an index or pack file that is a FIFO is damaged, not waited on") {
  Deadline deadline(20);
  Fixture f;
  auto data = random_pages(4, 8);
  auto cp = f.checkpoint("j", {{"pages.img", data}});
  auto pack = f.packs().at(0);
  make_fifo(pack);
  f.reopen();
  auto report = f.s->verify(f.s->load_checkpoint("j", 1));
  REQUIRE(report.problems.size() == 1);
  CHECK_CONTAINS(report.problems[0], "not a regular file");
  auto idx = f.tmp.path() / "store/index/0" / (pack.stem().string() + ".idx");
  make_fifo(idx);
  auto e = error_from([&] { gcp::chunks::read_index_file(idx); });
  REQUIRE(e.has_value());
  CHECK_CONTAINS(e->what(), "not a regular file");
  f.reopen();
  report = f.s->verify(f.s->load_checkpoint("j", 1));
  REQUIRE(report.problems.size() == 1);
  CHECK_CONTAINS(report.problems[0], "is missing (no pack holds it)");
}

TEST_CASE("an index entry whose frame length is 4 GiB is damaged, not allocated") {
  TempDir tmp;
  auto packs = tmp.path() / "packs";
  stdfs::create_directories(packs);
  write(packs / "p.pack", "GCPPACK1" + std::string(100, '\0'));
  auto index = gcp::chunks::Index::load(packs, tmp.path() / "index");
  gcp::chunks::Location loc;
  loc.pack = index.add_pack("p");
  loc.frame_offset = 8;
  loc.frame_length = 0xffffffffu;
  loc.length = 4096;
  gcp::chunks::Hash h;
  h.bytes[0] = 1;
  index.add(h, loc);
  gcp::chunks::ChunkReader reader(index);
  std::vector<uint8_t> out(4096);
  std::string why;
  CHECK(reader.read(h, out, why) == gcp::chunks::ChunkReader::Result::kDamaged);
  CHECK_CONTAINS(why, "frame length 4294967295 is larger than any frame");
}

TEST_CASE("a chunk list is applied only when its count, length, header and SHA-256 fit") {
  Fixture f;
  f.checkpoint("j", {{"pages.img", random_pages(3, 4)}});
  auto dir = f.tmp.path() / "store/jobs/j/checkpoints/1";
  auto list = gcp::fs::read_file(dir / "chunks.bin");
  auto cp = f.s->load_checkpoint_metadata("j", 1);
  CHECK_FALSE(store::apply_chunk_list(list, cp).has_value());
  CHECK(cp.units[0].images[0].digests.size() == 3 * 32);
  CHECK_CONTAINS(*store::apply_chunk_list(list.substr(0, 50), cp), "wrong length");
  auto wrong_count = list;
  wrong_count[8] = 4;
  CHECK_CONTAINS(*store::apply_chunk_list(wrong_count, cp), "wrong length or header");
  auto flipped = list;
  flipped[20] ^= 1;
  CHECK_CONTAINS(*store::apply_chunk_list(flipped, cp), "does not match its SHA-256");
  cp.chunk_list["count"] = "3";
  CHECK_CONTAINS(*store::apply_chunk_list(list, cp), "does not fit the manifest (0 chunks listed)");
}
