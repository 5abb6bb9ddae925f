// SPDX-License-Identifier: MIT
#include "gcp/gate.h"

#include "gcp/error.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <utility>

namespace gcp::gate {

Gate::Gate(const std::filesystem::path& dir, const std::string& name)
    : ready_path_(dir / (name + ".ready")), go_path_(dir / (name + ".go")) {
  for (const auto* p : {&ready_path_, &go_path_}) {
    if (::mkfifo(p->c_str(), 0600) != 0) throw_errno("creating the FIFO '" + p->string() + "'");
  }
  // Never blocking: the read end of "ready" waits for the checkpointer; "go" is held
  // open for reading and writing, so that the checkpointer's end opens at once and
  // what is written waits there until it reads.
  ready_fd_ = ::open(ready_path_.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (ready_fd_ < 0) throw_errno("opening the FIFO '" + ready_path_.string() + "'");
  go_fd_ = ::open(go_path_.c_str(), O_RDWR | O_NONBLOCK | O_CLOEXEC);
  if (go_fd_ < 0) {
    int err = errno;
    ::close(ready_fd_);
    errno = err;
    throw_errno("opening the FIFO '" + go_path_.string() + "'");
  }
}

Gate::Gate(Gate&& other) noexcept
    : ready_path_(std::move(other.ready_path_)),
      go_path_(std::move(other.go_path_)),
      ready_fd_(std::exchange(other.ready_fd_, -1)),
      go_fd_(std::exchange(other.go_fd_, -1)),
      ready_(other.ready_),
      got_(std::move(other.got_)) {}

Gate::~Gate() {
  if (ready_fd_ >= 0) ::close(ready_fd_);
  if (go_fd_ >= 0) ::close(go_fd_);
}

manifest::json Gate::request() const { return {{"ready", ready_path_.string()}, {"go", go_path_.string()}}; }

bool Gate::wait_ready(std::chrono::milliseconds wait) {
  if (ready_) return true;
  pollfd p = {ready_fd_, POLLIN, 0};
  int rc = ::poll(&p, 1, static_cast<int>(wait.count()));
  if (rc < 0 && errno != EINTR) throw_errno("waiting on the FIFO '" + ready_path_.string() + "'");
  char buf[64];
  ssize_t got = ::read(ready_fd_, buf, sizeof buf);
  if (got > 0) got_.append(buf, static_cast<size_t>(got));
  if (got_.find('\n') == std::string::npos) {
    if (got_.size() > 32)
      throw Error(Exit::kFailed, "the checkpointer wrote no line to '" + ready_path_.string() + "'");
    return false;
  }
  if (got_ != "ready\n") {
    throw Error(Exit::kFailed, "the checkpointer wrote '" + got_.substr(0, got_.find('\n')) + "' to '" +
                                   ready_path_.string() + "' instead of 'ready'");
  }
  ready_ = true;
  return true;
}

void Gate::open() {
  // 3 bytes into an empty FIFO: written whole or not at all.
  if (::write(go_fd_, "go\n", 3) != 3) throw_errno("writing to the FIFO '" + go_path_.string() + "'");
}

void Gate::call_off() noexcept {
  if (go_fd_ < 0) return;
  (void)!::write(go_fd_, "off\n", 4);
}

}  // namespace gcp::gate
