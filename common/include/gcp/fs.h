// SPDX-License-Identifier: MIT
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>

namespace gcp::fs {

namespace stdfs = std::filesystem;

/// Reads a whole file; throws Error naming the file when it cannot.
std::string read_file(const stdfs::path& path);

/// Reads a whole file; nullopt when it does not exist.
std::optional<std::string> try_read_file(const stdfs::path& path);

/// Reads a whole file of the store (or other content someone else may have placed):
/// without following a symbolic link, without waiting on a FIFO, only a regular file
/// and only up to `max_bytes`. nullopt when it does not exist; Error(kUsage) naming the
/// file when it is something else or larger; Error(kFailed) on an I/O error.
std::optional<std::string> try_read_regular(const stdfs::path& path, size_t max_bytes);

/// Opens a regular file for reading the same way (O_NOFOLLOW, O_NONBLOCK, fstat); -1 with
/// errno set when it cannot be opened, and ELOOP / EINVAL when it is a symbolic link /
/// not a regular file. `size` receives its length.
int open_regular(const stdfs::path& path, uint64_t* size = nullptr);

/// Reads exactly `n` bytes at `offset`; throws Error naming `what` ("reading WHAT: ...")
/// on an I/O error or when the file ends first.
void pread_all(int fd, void* buf, size_t n, uint64_t offset, const std::string& what);

/// Writes `data` to `path` as temp + fsync + rename + fsync of the directory, so a
/// reader sees the old content or the new one, never a part.
void write_file_atomic(const stdfs::path& path, const std::string& data, mode_t mode = 0644);

/// Creates a directory and its parents with `mode`; fine when it exists.
void make_dirs(const stdfs::path& path, mode_t mode = 0755);

/// Creates the directory `path` (mode 0700; its parent must exist), or takes the one
/// there when it is a real directory (not a symbolic link) of the caller's, and closes
/// it to everyone else (0700). Throws Error(kNotPermitted) naming its owner otherwise:
/// a directory someone else made first could read or replace what gcp keeps in it.
/// `what` names it in messages ("scratch directory").
void make_own_dir(const stdfs::path& path, const std::string& what);

/// Resolves `path` and checks that no one but root and `owner` can change what it
/// names: the entry itself and every directory on the way are owned by root or
/// `owner`, and none is writable by anyone else (a directory others may write to, such
/// as /tmp, only with the sticky bit, which keeps them off the entries of root and the
/// owner). Returns the resolved path; throws Error(kNotPermitted) naming the first
/// part that fails, or Error(kUsage) when the path does not exist.
stdfs::path trusted_path(const stdfs::path& path, uid_t owner, const std::string& what);

/// fsyncs a file or directory; throws on failure.
void fsync_path(const stdfs::path& path);

/// fsyncs every file under `dir` and every directory, bottom up.
void fsync_tree(const stdfs::path& dir);

/// Lets `owner` read (and, for a directory, enter) `path` through a POSIX ACL entry,
/// keeping everyone else but root out. Only root grants, nothing for root's own files;
/// a file system without ACLs
/// gets a warning once and stays root-only.
void grant_read(const stdfs::path& path, uid_t owner);

/// Removes a tree; never throws (for cleanup paths), logs what it could not remove.
void remove_tree_quietly(const stdfs::path& path);

/// An exclusive advisory lock (flock) on a file, released on destruction.
class FileLock {
 public:
  /// Tries to take the lock without waiting; nullopt when somebody else holds it.
  static std::optional<FileLock> try_lock(const stdfs::path& path);
  /// Takes a shared or exclusive lock, waiting up to `wait` (forever when negative);
  /// nullopt when it could not be had in time. `on_wait` runs once if it has to wait.
  static std::optional<FileLock> acquire(const stdfs::path& path, bool shared, std::chrono::milliseconds wait,
                                         const std::function<void()>& on_wait = {});
  FileLock(FileLock&& other) noexcept : fd_(other.fd_) { other.fd_ = -1; }
  FileLock& operator=(FileLock&& other) noexcept;
  FileLock(const FileLock&) = delete;
  ~FileLock();

 private:
  explicit FileLock(int fd) : fd_(fd) {}
  int fd_;
};

}  // namespace gcp::fs
