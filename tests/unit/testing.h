// SPDX-License-Identifier: MIT
#pragma once

#include "gcp/error.h"
#include "gcp/process.h"

#include <doctest/doctest.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>

#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>

/// Checks that `text` contains `part`, showing both when it does not.
#define CHECK_CONTAINS(text, part)                                                     \
  do {                                                                                 \
    const std::string check_text_ = (text);                                            \
    const std::string check_part_ = (part);                                            \
    CHECK_MESSAGE(check_text_.find(check_part_) != std::string::npos,                  \
                  "'" << check_text_ << "' does not contain '" << check_part_ << "'"); \
  } while (0)

/// Checks that `text` does not contain `part`.
#define CHECK_NOT_CONTAINS(text, part)                                         \
  do {                                                                         \
    const std::string check_text_ = (text);                                    \
    const std::string check_part_ = (part);                                    \
    CHECK_MESSAGE(check_text_.find(check_part_) == std::string::npos,          \
                  "'" << check_text_ << "' contains '" << check_part_ << "'"); \
  } while (0)

namespace gcp::testing {

/// The gcp::Error that `f` throws; nullopt when it returns normally. Any other
/// exception propagates and fails the test.
template <typename F>
std::optional<Error> error_from(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e;
  }
  return std::nullopt;
}

/// A fresh directory under /tmp, removed with everything in it on destruction.
class TempDir {
 public:
  /// Creates /tmp/gcp-unit-XXXXXX.
  TempDir() {
    std::string tmpl = "/tmp/gcp-unit-XXXXXX";
    if (!::mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed");
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  /// The directory.
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

/// Sets (or, with nullopt, unsets) an environment variable and restores the previous
/// value on destruction, so a failing check cannot leak it into later tests.
class ScopedEnv {
 public:
  /// Sets `name` to `value` for the lifetime of this object.
  ScopedEnv(std::string name, std::optional<std::string> value) : name_(std::move(name)) {
    if (const char* old = std::getenv(name_.c_str())) old_ = old;
    if (value) {
      ::setenv(name_.c_str(), value->c_str(), 1);
    } else {
      ::unsetenv(name_.c_str());
    }
  }
  ~ScopedEnv() {
    if (old_) {
      ::setenv(name_.c_str(), old_->c_str(), 1);
    } else {
      ::unsetenv(name_.c_str());
    }
  }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

 private:
  std::string name_;
  std::optional<std::string> old_;
};

/// Sends spdlog's messages to a string while it lives, so a test can check what was
/// logged (and the test output stays quiet); restores the previous logger after.
class CapturedLog {
 public:
  /// Installs a logger that writes "level: message" lines into text().
  CapturedLog() : old_(spdlog::default_logger()) {
    auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(out_);
    sink->set_pattern("%l: %v");
    auto logger = std::make_shared<spdlog::logger>("test", sink);
    logger->set_level(spdlog::level::debug);
    spdlog::set_default_logger(logger);
  }
  ~CapturedLog() { spdlog::set_default_logger(old_); }
  CapturedLog(const CapturedLog&) = delete;
  CapturedLog& operator=(const CapturedLog&) = delete;

  /// Everything logged so far.
  std::string text() const { return out_.str(); }

 private:
  std::ostringstream out_;
  std::shared_ptr<spdlog::logger> old_;
};

/// A TEST_CASE decorator for a test with a requirement this run may lack: when
/// `met` is false the test is skipped, doctest counts it as skipped, and main.cc's
/// listener prints `why`.
///   TEST_CASE("..." * gcp::testing::skip_unless(gcp::testing::is_root(), "needs root: ..."))
struct skip_unless {
  bool met;
  const char* why;
  /// Called by doctest when the test case is registered.
  void fill(doctest::detail::TestCase& test) const {
    if (met) return;
    test.m_skip = true;
    test.m_description = why;
  }
};

/// Whether this process runs as root (namespaces, other users' uids).
inline bool is_root() { return ::geteuid() == 0; }

/// Where `make unit` puts the fake translibs: next to the test binary.
inline std::string fake_translib_dir() { return process::self_dir() + "/translibs"; }

/// Passes `fd` over the unix socket `sock` as CRIU's image streamer and gcp's image
/// source take it: one byte of data carrying it (SCM_RIGHTS).
inline void send_fd(int sock, int fd) {
  char byte = 0;
  iovec iov{&byte, 1};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  msghdr m{};
  m.msg_iov = &iov;
  m.msg_iovlen = 1;
  m.msg_control = control;
  m.msg_controllen = sizeof control;
  cmsghdr* c = CMSG_FIRSTHDR(&m);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(int));
  std::memcpy(CMSG_DATA(c), &fd, sizeof(int));
  REQUIRE(::sendmsg(sock, &m, MSG_NOSIGNAL) == 1);
}

/// A descriptor passed that way; -1 when the connection ended instead.
inline int receive_fd(int sock) {
  char byte;
  iovec iov{&byte, 1};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))];
  msghdr m{};
  m.msg_iov = &iov;
  m.msg_iovlen = 1;
  m.msg_control = control;
  m.msg_controllen = sizeof control;
  if (::recvmsg(sock, &m, MSG_CMSG_CLOEXEC) != 1) return -1;
  cmsghdr* c = CMSG_FIRSTHDR(&m);
  if (!c || c->cmsg_type != SCM_RIGHTS) return -1;
  int fd;
  std::memcpy(&fd, CMSG_DATA(c), sizeof fd);
  return fd;
}

}  // namespace gcp::testing
