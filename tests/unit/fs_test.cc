// SPDX-License-Identifier: MIT
#include "gcp/fs.h"

#include "testing.h"

#include <doctest/doctest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>

using gcp::Exit;
using gcp::testing::error_from;
using gcp::testing::TempDir;
namespace fs = gcp::fs;

namespace {

mode_t mode_of(const std::filesystem::path& p) {
  struct stat st {};
  REQUIRE(::lstat(p.c_str(), &st) == 0);
  return st.st_mode & 07777;
}

}  // namespace

TEST_CASE("make_own_dir makes a private directory, and closes one of ours to others") {
  TempDir tmp;
  auto dir = tmp.path() / "scratch";
  fs::make_own_dir(dir, "scratch directory");
  CHECK(mode_of(dir) == 0700);
  ::chmod(dir.c_str(), 0777);
  fs::make_own_dir(dir, "scratch directory");
  CHECK(mode_of(dir) == 0700);
}

TEST_CASE("make_own_dir refuses a symbolic link or a file in its place") {
  TempDir tmp;
  std::filesystem::create_directory(tmp.path() / "real");
  std::filesystem::create_directory_symlink(tmp.path() / "real", tmp.path() / "link");
  auto e = error_from([&] { fs::make_own_dir(tmp.path() / "link", "scratch directory"); });
  REQUIRE(e.has_value());
  CHECK(e->code() == Exit::kNotPermitted);
  CHECK_CONTAINS(e->what(), "link' is a symbolic link");
  CHECK_CONTAINS(e->hint(), "remove it");
}

TEST_CASE("make_own_dir refuses a directory someone else made first" *
          gcp::testing::skip_unless(gcp::testing::is_root(), "needs root: the directory belongs to another user")) {
  TempDir tmp;
  auto dir = tmp.path() / "gcp";
  std::filesystem::create_directory(dir);
  REQUIRE(::chown(dir.c_str(), 65534, 65534) == 0);
  ::chmod(dir.c_str(), 0777);
  auto e = error_from([&] { fs::make_own_dir(dir, "scratch directory"); });
  REQUIRE(e.has_value());
  CHECK(e->code() == Exit::kNotPermitted);
  CHECK_CONTAINS(e->what(), "scratch directory '" + dir.string() + "' belongs to uid 65534");
  CHECK(mode_of(dir) == 0777);  // left as it was
}

TEST_CASE("trusted_path follows links to the real path and checks every directory on it") {
  TempDir tmp;
  std::filesystem::create_directories(tmp.path() / "a/b");
  std::filesystem::create_directory_symlink(tmp.path() / "a", tmp.path() / "l");
  CHECK(fs::trusted_path(tmp.path() / "l/b", ::geteuid(), "hooks directory") == tmp.path() / "a/b");
  ::chmod((tmp.path() / "a").c_str(), 0777);
  auto e = error_from([&] { fs::trusted_path(tmp.path() / "l/b", ::geteuid(), "hooks directory"); });
  REQUIRE(e.has_value());
  CHECK(e->code() == Exit::kNotPermitted);
  CHECK_CONTAINS(e->what(), (tmp.path() / "a").string() + "' may be written by others than its owner");
  // A sticky directory others may write to (as /tmp is) is fine on the way, not at the end.
  ::chmod((tmp.path() / "a").c_str(), 01777);
  CHECK_NOTHROW(fs::trusted_path(tmp.path() / "a/b", ::geteuid(), "hooks directory"));
  CHECK(error_from([&] { fs::trusted_path(tmp.path() / "a", ::geteuid(), "hooks directory"); }));
  CHECK(error_from([&] { fs::trusted_path(tmp.path() / "missing", ::geteuid(), "hooks directory"); })->code() ==
        Exit::kUsage);
}
