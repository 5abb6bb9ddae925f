// SPDX-License-Identifier: MIT
#include "relay.h"

#include "gcp/translib.h"

#include <nlohmann/json.hpp>

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <vector>

namespace gcp::criu {

namespace {

using json = nlohmann::json;

[[noreturn]] void fail(const std::string& what) { throw std::runtime_error(what); }
[[noreturn]] void fail_errno(const std::string& what) { fail(what + ": " + std::strerror(errno)); }

// Waits until `fd` is readable (or at its end); false when `stop` fired and it is
// not. What criu sent before it exited is read to its end after the stop.
bool wait_readable(int fd, int stop) {
  pollfd fds[2] = {{fd, POLLIN, 0}, {stop, POLLIN, 0}};
  for (;;) {
    int n = ::poll(fds, 2, -1);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) fail_errno("waiting on a socket");
    return fds[0].revents != 0;
  }
}

// Reads exactly `len` bytes; false at end of file before the first byte, or when stopped.
bool read_exact(int fd, int stop, void* buf, size_t len, const char* peer) {
  auto* p = static_cast<uint8_t*>(buf);
  for (size_t got = 0; got < len;) {
    if (!wait_readable(fd, stop)) return false;
    ssize_t r = ::recv(fd, p + got, len - got, 0);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) fail_errno(std::string("reading from ") + peer);
    if (r == 0) {
      if (got == 0) return false;
      fail(std::string(peer) + " closed its connection in the middle of a message");
    }
    got += static_cast<size_t>(r);
  }
  return true;
}

// Sends all of `data`; false when the peer has gone (closed its end).
bool send_all(int fd, const void* data, size_t len, const char* peer) {
  const auto* p = static_cast<const uint8_t*>(data);
  for (size_t done = 0; done < len;) {
    ssize_t w = ::send(fd, p + done, len - done, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0 && (errno == EPIPE || errno == ECONNRESET)) return false;
    if (w < 0) fail_errno(std::string("writing to ") + peer);
    done += static_cast<size_t>(w);
  }
  return true;
}

// One line of the image source, its newline taken off; nullopt when stopped. Peeks
// first, so that nothing after the newline is taken.
std::optional<std::string> read_line(int fd, int stop) {
  std::string line;
  char buf[GCP_IMAGE_SOURCE_MAX_LINE];
  for (;;) {
    if (!wait_readable(fd, stop)) return std::nullopt;
    ssize_t r = ::recv(fd, buf, sizeof buf - line.size(), MSG_PEEK);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) fail_errno("reading from gcp's image source");
    if (r == 0) fail("gcp's image source closed its connection");
    const void* nl = std::memchr(buf, '\n', static_cast<size_t>(r));
    size_t take = nl ? static_cast<size_t>(static_cast<const char*>(nl) - buf) + 1 : static_cast<size_t>(r);
    if (!read_exact(fd, stop, buf, take, "gcp's image source")) return std::nullopt;
    line.append(buf, take);
    if (nl) {
      line.pop_back();
      return line;
    }
    if (line.size() >= GCP_IMAGE_SOURCE_MAX_LINE) {
      fail("gcp's image source sent a line longer than " + std::to_string(GCP_IMAGE_SOURCE_MAX_LINE) + " bytes");
    }
  }
}

// The write end of CRIU's pipe: one byte of data with one descriptor; -1 when stopped
// or when criu has gone.
int receive_fd(int conn, int stop) {
  if (!wait_readable(conn, stop)) return -1;
  char byte;
  iovec iov{&byte, 1};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))];
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  ssize_t r;
  do {
    r = ::recvmsg(conn, &msg, MSG_CMSG_CLOEXEC);
  } while (r < 0 && errno == EINTR);
  if (r < 0) fail_errno("receiving a pipe from criu");
  if (r == 0) return -1;
  cmsghdr* c = CMSG_FIRSTHDR(&msg);
  if (r != 1 || !c || c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS ||
      c->cmsg_len != CMSG_LEN(sizeof(int)) || (msg.msg_flags & MSG_CTRUNC)) {
    fail("criu did not pass a pipe for the image it asked for");
  }
  int fd;
  std::memcpy(&fd, CMSG_DATA(c), sizeof fd);
  return fd;
}

void send_fd(int conn, int fd) {
  char byte = 0;
  iovec iov{&byte, 1};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  cmsghdr* c = CMSG_FIRSTHDR(&msg);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(int));
  std::memcpy(CMSG_DATA(c), &fd, sizeof fd);
  ssize_t w;
  do {
    w = ::sendmsg(conn, &msg, MSG_NOSIGNAL);
  } while (w < 0 && errno == EINTR);
  if (w != 1) fail_errno("passing criu's pipe to gcp's image source");
}

int unix_socket() {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) fail_errno("creating a unix socket");
  return fd;
}

sockaddr_un address(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof addr.sun_path) fail("'" + path + "' is too long for a unix socket path");
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  return addr;
}

}  // namespace

std::string streamer_filename(std::span<const uint8_t> msg) {
  auto bad = [] { return std::runtime_error("criu sent an image-streamer request this translib cannot read"); };
  if (msg.empty() || msg[0] != 0x0a) throw bad();  // field 1, length-delimited
  uint64_t len = 0;
  size_t i = 1;
  for (int shift = 0;; shift += 7) {
    if (i >= msg.size() || shift > 28) throw bad();
    uint8_t b = msg[i++];
    len |= static_cast<uint64_t>(b & 0x7f) << shift;
    if (!(b & 0x80)) break;
  }
  if (len == 0 || len != msg.size() - i) throw bad();
  std::string name(msg.begin() + static_cast<long>(i), msg.end());
  if (name.find('\0') != std::string::npos) throw bad();
  return name;
}

StreamRelay::StreamRelay(const std::string& dir, const std::string& source) : dir_(dir) {
  try {
    source_fd_ = unix_socket();
    sockaddr_un to = address(source);
    if (::connect(source_fd_, reinterpret_cast<sockaddr*>(&to), sizeof to) != 0) {
      fail_errno("connecting to gcp's image source at '" + source + "'");
    }
    std::string path = dir + "/" + kSocketName;
    sockaddr_un at = address(path);
    listen_fd_ = unix_socket();
    ::unlink(path.c_str());
    if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&at), sizeof at) != 0 || ::listen(listen_fd_, 1) != 0) {
      fail_errno("listening on '" + path + "'");
    }
    stop_fd_ = ::eventfd(0, EFD_CLOEXEC);
    if (stop_fd_ < 0) fail_errno("creating an eventfd");
    thread_ = std::thread([this] { relay(); });
  } catch (...) {
    for (int fd : {source_fd_, listen_fd_, stop_fd_}) {
      if (fd >= 0) ::close(fd);
    }
    throw;
  }
}

StreamRelay::~StreamRelay() { finish(); }

void StreamRelay::relay() {
  int criu = -1;
  try {
    // One criu, one connection: it asks for its images one after the other.
    if (wait_readable(listen_fd_, stop_fd_)) {
      criu = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (criu < 0) fail_errno("accepting criu's connection");
      while (relay_one(criu)) {
      }
    }
  } catch (const std::exception& e) {
    failure_ = e.what();
  }
  // CRIU is done (or failed): so is the image source's connection.
  if (criu >= 0) ::close(criu);
  ::shutdown(source_fd_, SHUT_RDWR);
}

bool StreamRelay::relay_one(int criu) {
  uint32_t len;
  if (!read_exact(criu, stop_fd_, &len, sizeof len, "criu")) return false;  // criu is done
  if (len == 0 || len > kMaxStreamerRequest) {
    fail("criu sent an image-streamer request of " + std::to_string(len) + " bytes");
  }
  std::vector<uint8_t> msg(len);
  if (!read_exact(criu, stop_fd_, msg.data(), len, "criu")) {
    fail("criu closed its connection in the middle of a request");
  }
  std::string name = streamer_filename(msg);

  std::string ask = json{{"image", name}}.dump() + "\n";
  if (ask.size() > GCP_IMAGE_SOURCE_MAX_LINE) {
    fail("criu asked for an image whose name is too long: '" + name + "'");
  }
  if (!send_all(source_fd_, ask.data(), ask.size(), "gcp's image source")) {
    fail("gcp's image source closed its connection");
  }
  auto line = read_line(source_fd_, stop_fd_);
  if (!line) return false;
  json answer = json::parse(*line, nullptr, false);
  const json* exists = answer.is_object() && answer.contains("exists") ? &answer["exists"] : nullptr;
  const json* size = answer.is_object() && answer.contains("size") ? &answer["size"] : nullptr;
  if (!exists || !exists->is_boolean() || (size && !size->is_number_unsigned())) {
    fail("gcp's image source answered '" + line->substr(0, 200) + "' for image '" + name +
         "', not {\"exists\": true|false, \"size\": N}");
  }
  // [u32 length = 2][img_streamer_reply_entry { required bool exists = 1; }]
  uint8_t reply[6] = {2, 0, 0, 0, 0x08, static_cast<uint8_t>(exists->get<bool>() ? 1 : 0)};
  if (!send_all(criu, reply, sizeof reply, "criu")) return false;  // criu has gone: nothing to relay
  if (!exists->get<bool>()) return true;
  int pipe = receive_fd(criu, stop_fd_);
  if (pipe < 0) return false;
  try {
    send_fd(source_fd_, pipe);
  } catch (...) {
    ::close(pipe);
    throw;
  }
  ::close(pipe);  // gcp holds it now, and closes it when the image is written
  return true;
}

std::string StreamRelay::finish() {
  if (finished_) return failure_;
  finished_ = true;
  uint64_t one = 1;
  (void)!::write(stop_fd_, &one, sizeof one);
  if (thread_.joinable()) thread_.join();
  ::close(listen_fd_);
  ::close(source_fd_);
  ::close(stop_fd_);
  std::string path = dir_ + "/" + kSocketName;
  ::unlink(path.c_str());
  return failure_;
}

}  // namespace gcp::criu
