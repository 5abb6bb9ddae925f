// SPDX-License-Identifier: MIT
#include "gcp/written_files.h"

#include "testing.h"

#include <doctest/doctest.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>

namespace files = gcp::files;
namespace stdfs = std::filesystem;
using gcp::Exit;
using gcp::manifest::WrittenFile;
using gcp::testing::error_from;
using gcp::testing::TempDir;

namespace {

void put(const stdfs::path& p, const std::string& text) {
  std::ofstream(p, std::ios::binary | std::ios::trunc) << text;
}
void add(const stdfs::path& p, const std::string& text) { std::ofstream(p, std::ios::binary | std::ios::app) << text; }
std::string get(const stdfs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// Descriptors this process holds open while a test records itself.
struct Open {
  int fd;
  Open(const stdfs::path& p, int flags) : fd(::open(p.c_str(), flags | O_CLOEXEC, 0644)) { REQUIRE(fd >= 0); }
  ~Open() { ::close(fd); }
};

// What record() finds of this process below `dir`.
std::vector<WrittenFile> recorded(const TempDir& dir, const stdfs::path& images = {}) {
  files::RecordOptions options{.skip = {dir.path() / "store"}, .owner = 0, .images_dir = images};
  auto all = files::record({::getpid()}, options);
  std::erase_if(all, [&](const WrittenFile& w) { return w.path.rfind(dir.path().string() + "/", 0) != 0; });
  return all;
}

const WrittenFile& named(const std::vector<WrittenFile>& all, const stdfs::path& p) {
  auto it = std::find_if(all.begin(), all.end(), [&](const WrittenFile& w) { return w.path == p.string(); });
  REQUIRE_MESSAGE(it != all.end(), p << " was not recorded");
  return *it;
}

files::Verdict judged(const WrittenFile& w, files::Policy policy, uid_t owner = 0) {
  auto v = files::judge("main", {w}, policy, owner);
  REQUIRE(v.size() == 1);
  return v[0];
}

}  // namespace

TEST_CASE("a checkpoint records the regular files open for writing, once each, with size and hash") {
  TempDir dir;
  stdfs::create_directories(dir.path() / "store");
  put(dir.path() / "out.log", "0123");
  put(dir.path() / "data", "abcdefgh");
  put(dir.path() / "input", "read only");
  put(dir.path() / "store" / "gcp.log", "gcp's own");
  put(dir.path() / "gone", "deleted");
  Open log(dir.path() / "out.log", O_WRONLY | O_APPEND), log2(dir.path() / "out.log", O_WRONLY | O_APPEND);
  Open data(dir.path() / "data", O_RDWR), input(dir.path() / "input", O_RDONLY);
  Open own(dir.path() / "store" / "gcp.log", O_WRONLY), gone(dir.path() / "gone", O_WRONLY);
  stdfs::remove(dir.path() / "gone");

  auto all = recorded(dir, dir.path() / "images");
  REQUIRE(all.size() == 2);  // not the read-only one, not gcp's, not the deleted one
  const auto& out = named(all, dir.path() / "out.log");
  CHECK(out.size == 4);
  CHECK(out.append);
  CHECK(out.write_only);
  CHECK(out.mode == 0644);
  CHECK(out.uid == ::getuid());
  CHECK(out.sha256 == "1be2e452b46d7a0d9656bbb1f768e8248eba1b75baed65f5d99eafa948899a6a");  // sha256("0123")
  const auto& rw = named(all, dir.path() / "data");
  CHECK_FALSE(rw.append);
  CHECK_FALSE(rw.write_only);
  // Small files are kept among the images, to be recreated when missing at a restart.
  REQUIRE_FALSE(rw.kept.empty());
  CHECK(get(dir.path() / "images" / rw.kept) == "abcdefgh");
  CHECK(recorded(dir).front().kept.empty());  // no image directory: nothing kept
}

TEST_CASE("an unchanged file goes on; one that grew is refused by default, naming the file and the sizes") {
  TempDir dir;
  put(dir.path() / "out.log", "line 1\n");
  Open log(dir.path() / "out.log", O_WRONLY | O_APPEND);
  auto w = named(recorded(dir), dir.path() / "out.log");
  CHECK(judged(w, files::Policy::kRefuse).action == files::Action::kNone);

  add(dir.path() / "out.log", "line 2\n");
  auto v = judged(w, files::Policy::kRefuse);
  CHECK(v.change == files::Change::kGrew);
  CHECK(v.action == files::Action::kRefuse);
  auto e = error_from([&] { files::refuse({v}, 3); });
  REQUIRE(e);
  CHECK(e->code() == Exit::kFailed);
  CHECK_CONTAINS(e->what(), (dir.path() / "out.log").string() + " changed since checkpoint 3 (size 7 -> 14)");
  CHECK_CONTAINS(e->hint(), "--files truncate");
  CHECK_CONTAINS(e->hint(), "--files keep");
  CHECK(get(dir.path() / "out.log") == "line 1\nline 2\n");  // judging changes nothing
  auto j = files::to_json(v);
  CHECK(j["unit"] == "main");
  CHECK(j["change"] == "grew");
  CHECK(j["action"] == "refuse");
  CHECK(j["what"] == "size 7 -> 14");
}

TEST_CASE("--files truncate cuts a file that only grew back to its size, and refuses one changed before it") {
  TempDir dir;
  put(dir.path() / "out.log", "line 1\n");
  Open log(dir.path() / "out.log", O_WRONLY | O_APPEND);
  auto w = named(recorded(dir), dir.path() / "out.log");
  add(dir.path() / "out.log", "line 2\n");
  auto v = files::judge("main", {w}, files::Policy::kTruncate, 0);
  REQUIRE(v[0].action == files::Action::kTruncate);
  files::apply(v, 3, 0, nullptr);
  CHECK(get(dir.path() / "out.log") == "line 1\n");

  put(dir.path() / "out.log", "LINE 1\nline 2\n");
  auto changed = judged(w, files::Policy::kTruncate);
  CHECK(changed.change == files::Change::kChanged);
  CHECK(changed.action == files::Action::kRefuse);
  auto e = error_from([&] { files::refuse({changed}, 3); });
  REQUIRE(e);
  CHECK_CONTAINS(e->what(), "first 7 bytes changed; truncating cannot restore it");
  // Nor does a file that shrank come back by truncating.
  put(dir.path() / "out.log", "line");
  CHECK(judged(w, files::Policy::kTruncate).action == files::Action::kRefuse);
}

TEST_CASE("--files keep goes on with an append-only file, but not with one criu reopens only at its size") {
  TempDir dir;
  put(dir.path() / "out.log", "a");
  put(dir.path() / "data", "b");
  Open log(dir.path() / "out.log", O_WRONLY | O_APPEND), data(dir.path() / "data", O_RDWR);
  auto all = recorded(dir);
  add(dir.path() / "out.log", "more");
  add(dir.path() / "data", "more");
  CHECK(judged(named(all, dir.path() / "out.log"), files::Policy::kKeep).action == files::Action::kKeep);
  auto v = judged(named(all, dir.path() / "data"), files::Policy::kKeep);
  CHECK(v.action == files::Action::kRefuse);
  CHECK_CONTAINS(v.what, "only at its recorded size");
  CHECK_CONTAINS(v.hint, "--files truncate");
  // The same size with other bytes criu takes: kept as it is.
  put(dir.path() / "data", "c");
  CHECK(judged(named(all, dir.path() / "data"), files::Policy::kKeep).action == files::Action::kKeep);
  // Another mode it does not.
  ::chmod((dir.path() / "data").c_str(), 0600);
  auto mode = judged(named(all, dir.path() / "data"), files::Policy::kKeep);
  CHECK(mode.action == files::Action::kRefuse);
  CHECK_CONTAINS(mode.what, "mode 0644 -> 0600");
}

TEST_CASE("a missing file is recreated from its kept copy with its mode, and refused when none was kept") {
  TempDir dir;
  put(dir.path() / "state.tmp", "count=41\n");
  ::chmod((dir.path() / "state.tmp").c_str(), 0640);
  WrittenFile w;
  {
    Open tmp(dir.path() / "state.tmp", O_WRONLY);
    w = named(recorded(dir, dir.path() / "images"), dir.path() / "state.tmp");
  }
  REQUIRE_FALSE(w.kept.empty());
  stdfs::rename(dir.path() / "state.tmp", dir.path() / "state");  // the job renamed it after the checkpoint

  auto v = files::judge("main", {w}, files::Policy::kRefuse, 0);
  CHECK(v[0].change == files::Change::kMissing);
  REQUIRE(v[0].action == files::Action::kRecreate);
  files::refuse(v, 2);  // does not refuse
  std::string asked;
  files::apply(v, 2, 0, [&](const std::string& unit, const WrittenFile& f) {
    asked = unit + ":" + f.kept;
    return get(dir.path() / "images" / f.kept);
  });
  CHECK(asked == "main:" + w.kept);
  CHECK(get(dir.path() / "state.tmp") == "count=41\n");
  CHECK((stdfs::status(dir.path() / "state.tmp").permissions() & stdfs::perms::all) == stdfs::perms(0640));
  // A copy that does not match its record is not written.
  stdfs::remove(dir.path() / "state.tmp");
  auto bad = error_from([&] { files::apply(v, 2, 0, [](auto&, auto&) { return std::string("count=99\n"); }); });
  REQUIRE(bad);
  CHECK_CONTAINS(bad->what(), "does not match its record");
  CHECK_FALSE(stdfs::exists(dir.path() / "state.tmp"));

  w.kept.clear();
  auto e = error_from([&] { files::refuse(files::judge("main", {w}, files::Policy::kTruncate, 0), 2); });
  REQUIRE(e);
  CHECK_CONTAINS(e->what(), (dir.path() / "state.tmp").string() + " is missing");
  CHECK_CONTAINS(e->hint(), "holds no copy");
}

TEST_CASE("a recorded path reached through a symbolic link is refused and never acted on") {
  TempDir dir;
  put(dir.path() / "out.log", "x");
  Open log(dir.path() / "out.log", O_WRONLY | O_APPEND);
  auto w = named(recorded(dir), dir.path() / "out.log");
  stdfs::create_directories(dir.path() / "real");
  put(dir.path() / "real" / "victim", "xsecret");
  stdfs::remove(dir.path() / "out.log");
  stdfs::create_symlink(dir.path() / "real" / "victim", dir.path() / "out.log");
  auto v = judged(w, files::Policy::kTruncate);
  CHECK(v.change == files::Change::kUnusable);
  CHECK(v.action == files::Action::kRefuse);
  CHECK_CONTAINS(v.what, "symbolic link");
  // A link on the way counts as well.
  stdfs::create_directory_symlink(dir.path() / "real", dir.path() / "via");
  w.path = (dir.path() / "via" / "victim").string();
  CHECK(judged(w, files::Policy::kTruncate).change == files::Change::kUnusable);
  CHECK(get(dir.path() / "real" / "victim") == "xsecret");
  // And a path that is not plain is not even opened.
  w.path = (dir.path() / "real" / ".." / "real" / "victim").string();
  CHECK_CONTAINS(judged(w, files::Policy::kTruncate).what, "not a plain absolute path");
}

TEST_CASE("a user's restart sees the files as that user: another's file is neither read nor truncated") {
  if (::geteuid() != 0) {
    MESSAGE("skipped: needs root to act as another user");
    return;
  }
  TempDir dir;  // 0700 root: nobody may not enter it
  put(dir.path() / "out.log", "x");
  Open log(dir.path() / "out.log", O_WRONLY | O_APPEND);
  auto w = named(recorded(dir), dir.path() / "out.log");
  add(dir.path() / "out.log", "yz");
  auto v = judged(w, files::Policy::kTruncate, 65534);
  CHECK(v.change == files::Change::kUnusable);
  CHECK(v.action == files::Action::kRefuse);
  CHECK_CONTAINS(v.what, "cannot be read by the job's owner");
  // Where the user may look, a file that is root's is still not the user's to cut.
  ::chmod(dir.path().c_str(), 0755);
  ::chmod((dir.path() / "out.log").c_str(), 0644);
  w.mode = 0644;
  auto other = judged(w, files::Policy::kTruncate, 65534);
  CHECK(other.change == files::Change::kGrew);
  CHECK(other.action == files::Action::kRefuse);
  CHECK_CONTAINS(other.what, "not the job owner's");
  CHECK(get(dir.path() / "out.log") == "xyz");
  // The thread acts as root again afterwards.
  CHECK(::access(dir.path().c_str(), W_OK) == 0);
}

TEST_CASE("--files takes refuse, truncate or keep") {
  CHECK(files::policy_from("truncate") == files::Policy::kTruncate);
  CHECK(std::string(files::name(files::policy_from("keep"))) == "keep");
  auto e = error_from([] { files::policy_from("fix"); });
  REQUIRE(e);
  CHECK(e->code() == Exit::kUsage);
}
