// SPDX-License-Identifier: MIT
#include "gcp/fs.h"

#include "gcp/error.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/acl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <memory>

namespace gcp::fs {

std::optional<std::string> try_read_file(const stdfs::path& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return std::nullopt;
    throw_errno("reading '" + path.string() + "'");
  }
  std::unique_ptr<int, void (*)(int*)> closer(&fd, [](int* p) { ::close(*p); });
  // One read of the whole file when its size is known; files of /proc say 0 and are
  // read until their end.
  struct stat st {};
  std::string out;
  out.resize(::fstat(fd, &st) == 0 && st.st_size > 0 ? static_cast<size_t>(st.st_size) + 1 : 4096);
  size_t got = 0;
  for (;;) {
    if (got == out.size()) out.resize(out.size() * 2);
    ssize_t r = ::read(fd, out.data() + got, out.size() - got);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) throw_errno("reading '" + path.string() + "'");
    if (r == 0) break;
    got += static_cast<size_t>(r);
  }
  out.resize(got);
  return out;
}

int open_regular(const stdfs::path& path, uint64_t* size) {
  // O_NONBLOCK: opening a FIFO for reading would wait for a writer.
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY);
  if (fd < 0) return -1;
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    int err = errno;
    ::close(fd);
    errno = err;
    return -1;
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    errno = EINVAL;
    return -1;
  }
  // Back to blocking reads: a regular file never blocks, and reads of it must not see EAGAIN.
  int flags = ::fcntl(fd, F_GETFL);
  if (flags >= 0) ::fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
  if (size) *size = static_cast<uint64_t>(st.st_size);
  return fd;
}

std::optional<std::string> try_read_regular(const stdfs::path& path, size_t max_bytes) {
  const std::string name = "'" + printable(path.string()) + "'";
  uint64_t size = 0;
  int fd = open_regular(path, &size);
  if (fd < 0) {
    if (errno == ENOENT) return std::nullopt;
    if (errno == ELOOP) {
      throw Error(Exit::kUsage, "reading " + name + ": it is a symbolic link, not a file gcp wrote",
                  "remove the link; gcp never makes one in its store");
    }
    if (errno == EINVAL) {
      throw Error(Exit::kUsage, "reading " + name + ": it is not a regular file (a FIFO, device or directory)",
                  "remove it; gcp writes only regular files there");
    }
    throw_errno("reading " + name);
  }
  std::unique_ptr<int, void (*)(int*)> closer(&fd, [](int* p) { ::close(*p); });
  auto too_large = [&] {
    return Error(Exit::kUsage, "reading " + name + ": it is larger than " + std::to_string(max_bytes) + " bytes",
                 "it is not a file gcp wrote: remove it");
  };
  if (size > max_bytes) throw too_large();
  std::string out(static_cast<size_t>(size) + 1, '\0');
  size_t got = 0;
  for (;;) {
    if (got == out.size()) {
      if (got > max_bytes) throw too_large();  // it grew while read
      out.resize(std::min(out.size() * 2, max_bytes + 1));
    }
    ssize_t r = ::read(fd, out.data() + got, out.size() - got);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) throw_errno("reading " + name);
    if (r == 0) break;
    got += static_cast<size_t>(r);
  }
  if (got > max_bytes) throw too_large();
  out.resize(got);
  return out;
}

void pread_all(int fd, void* buf, size_t n, uint64_t offset, const std::string& what) {
  auto* p = static_cast<uint8_t*>(buf);
  while (n > 0) {
    ssize_t r = ::pread(fd, p, n, static_cast<off_t>(offset));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) throw_errno("reading " + what);
    if (r == 0) throw Error(Exit::kFailed, "reading " + what + ": it ends early (truncated?)");
    p += r;
    n -= static_cast<size_t>(r);
    offset += static_cast<uint64_t>(r);
  }
}

std::string read_file(const stdfs::path& path) {
  auto content = try_read_file(path);
  if (!content) {
    errno = ENOENT;
    throw_errno("reading '" + path.string() + "'");
  }
  return std::move(*content);
}

void fsync_path(const stdfs::path& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw_errno("opening '" + path.string() + "' to sync it");
  int rc = ::fsync(fd);
  int err = errno;
  ::close(fd);
  if (rc != 0) {
    errno = err;
    throw_errno("syncing '" + path.string() + "'");
  }
}

void fsync_tree(const stdfs::path& dir) {
  for (const auto& entry : stdfs::recursive_directory_iterator(dir)) {
    if (entry.is_regular_file() || entry.is_directory()) fsync_path(entry.path());
  }
  fsync_path(dir);
}

void write_file_atomic(const stdfs::path& path, const std::string& data, mode_t mode) {
  stdfs::path tmp = path;
  tmp += ".tmp." + std::to_string(::getpid());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
  if (fd < 0) throw_errno("creating '" + tmp.string() + "'");
  const char* p = data.data();
  size_t left = data.size();
  while (left > 0) {
    ssize_t n = ::write(fd, p, left);
    if (n < 0) {
      if (errno == EINTR) continue;
      int err = errno;
      ::close(fd);
      ::unlink(tmp.c_str());
      errno = err;
      throw_errno("writing '" + tmp.string() + "'", Exit::kFailed,
                  err == ENOSPC ? "free space on the store's file system" : "");
    }
    p += n;
    left -= static_cast<size_t>(n);
  }
  if (::fchmod(fd, mode) != 0 || ::fsync(fd) != 0) {
    int err = errno;
    ::close(fd);
    ::unlink(tmp.c_str());
    errno = err;
    throw_errno("syncing '" + tmp.string() + "'");
  }
  ::close(fd);
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    int err = errno;
    ::unlink(tmp.c_str());
    errno = err;
    throw_errno("renaming '" + tmp.string() + "' to '" + path.string() + "'");
  }
  fsync_path(path.parent_path().empty() ? "." : path.parent_path());
}

void make_dirs(const stdfs::path& path, mode_t mode) {
  std::error_code ec;
  if (stdfs::is_directory(path, ec)) return;
  if (path.has_parent_path() && path.parent_path() != path) make_dirs(path.parent_path(), mode);
  if (::mkdir(path.c_str(), mode) != 0 && errno != EEXIST) {
    throw_errno("creating directory '" + path.string() + "'");
  }
}

void make_own_dir(const stdfs::path& path, const std::string& what) {
  const std::string name = what + " '" + path.string() + "'";
  if (::mkdir(path.c_str(), 0700) != 0 && errno != EEXIST) throw_errno("creating " + name);
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) throw_errno("checking " + name);
  const std::string hint = "someone else made it, maybe to read or change what gcp keeps there: remove it";
  if (S_ISLNK(st.st_mode)) throw Error(Exit::kNotPermitted, name + " is a symbolic link", hint);
  if (!S_ISDIR(st.st_mode)) throw Error(Exit::kNotPermitted, name + " is not a directory", hint);
  if (st.st_uid != ::geteuid()) {
    throw Error(Exit::kNotPermitted,
                name + " belongs to uid " + std::to_string(st.st_uid) + ", not to uid " + std::to_string(::geteuid()),
                hint);
  }
  if ((st.st_mode & 077) != 0 && ::chmod(path.c_str(), 0700) != 0) throw_errno("closing " + name + " to others");
}

stdfs::path trusted_path(const stdfs::path& path, uid_t owner, const std::string& what) {
  const std::string name = what + " '" + path.string() + "'";
  char* real = ::realpath(path.c_str(), nullptr);
  if (!real) throw_errno(name, Exit::kUsage);
  stdfs::path resolved(real);
  std::free(real);
  const std::string hint =
      "only root and uid " + std::to_string(owner) +
      " may change it and every directory above it: 'chmod go-w' them, and give them to one of the two";
  stdfs::path at = "/";
  auto check = [&](const stdfs::path& part) {
    struct stat st {};
    if (::lstat(part.c_str(), &st) != 0) throw_errno("checking " + name);
    std::string which = part == resolved ? name : name + ": '" + part.string() + "'";
    if (st.st_uid != 0 && st.st_uid != owner) {
      throw Error(Exit::kNotPermitted, which + " belongs to uid " + std::to_string(st.st_uid), hint);
    }
    bool others_write = (st.st_mode & (S_IWGRP | S_IWOTH)) != 0;
    if (others_write && !(S_ISDIR(st.st_mode) && (st.st_mode & S_ISVTX) && part != resolved)) {
      throw Error(Exit::kNotPermitted, which + " may be written by others than its owner", hint);
    }
  };
  check(at);
  for (const auto& part : resolved.relative_path()) {
    at /= part;
    check(at);
  }
  return resolved;
}

void grant_read(const stdfs::path& path, uid_t owner) {
  if (owner == 0 || ::geteuid() != 0) return;  // only root hands out access
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) throw_errno("granting read access to '" + path.string() + "'");
  bool dir = S_ISDIR(st.st_mode);
  std::string uid = std::to_string(owner);
  std::string text =
      dir ? "u::rwx,u:" + uid + ":r-x,g::---,m::r-x,o::---" : "u::rw-,u:" + uid + ":r--,g::---,m::r--,o::---";
  acl_t acl = acl_from_text(text.c_str());
  if (!acl) throw_errno("building an ACL for '" + path.string() + "'");
  int rc = acl_set_file(path.c_str(), ACL_TYPE_ACCESS, acl);
  int err = errno;
  acl_free(acl);
  if (rc == 0) return;
  if (err == ENOTSUP || err == EOPNOTSUPP) {
    static bool warned = false;
    if (!warned) {
      spdlog::warn(
          "'{}' has no POSIX ACLs: job owners cannot read their checkpoints directly, "
          "only through gcp as root",
          path.parent_path().string());
    }
    warned = true;
    return;
  }
  errno = err;
  throw_errno("granting uid " + uid + " read access to '" + path.string() + "'");
}

void remove_tree_quietly(const stdfs::path& path) {
  std::error_code ec;
  stdfs::remove_all(path, ec);
  if (ec) spdlog::warn("could not remove '{}': {}", path.string(), ec.message());
}

std::optional<FileLock> FileLock::try_lock(const stdfs::path& path) {
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) throw_errno("opening lock file '" + path.string() + "'");
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    int err = errno;
    ::close(fd);
    if (err == EWOULDBLOCK) return std::nullopt;
    errno = err;
    throw_errno("locking '" + path.string() + "'");
  }
  return FileLock(fd);
}

std::optional<FileLock> FileLock::acquire(const stdfs::path& path, bool shared, std::chrono::milliseconds wait,
                                          const std::function<void()>& on_wait) {
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  // flock needs no write access: a reader allowed to read the file may lock it.
  if (fd < 0 && errno == EACCES) fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) throw_errno("opening lock file '" + path.string() + "'");
  auto deadline = std::chrono::steady_clock::now() + wait;
  bool told = false;
  while (::flock(fd, (shared ? LOCK_SH : LOCK_EX) | LOCK_NB) != 0) {
    int err = errno;
    if (err != EWOULDBLOCK && err != EINTR) {
      ::close(fd);
      errno = err;
      throw_errno("locking '" + path.string() + "'");
    }
    if (wait.count() >= 0 && std::chrono::steady_clock::now() >= deadline) {
      ::close(fd);
      return std::nullopt;
    }
    if (!told && on_wait) on_wait();
    told = true;
    ::usleep(50 * 1000);
  }
  return FileLock(fd);
}

FileLock& FileLock::operator=(FileLock&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = other.fd_;
    other.fd_ = -1;
  }
  return *this;
}

FileLock::~FileLock() {
  if (fd_ >= 0) ::close(fd_);
}

}  // namespace gcp::fs
