// SPDX-License-Identifier: MIT
#include "gcp/image_source.h"

#include "gcp/chunks.h"
#include "gcp/fs.h"
#include "gcp/progress.h"
#include "gcp/translib.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <span>

namespace gcp::store {

namespace {

using manifest::json;

// Waits until `fd` is readable (or at its end); false when `stop` fired and it is
// not. What the translib sent before its restart returned is read to its end.
bool wait_readable(int fd, int stop) {
  pollfd fds[2] = {{fd, POLLIN, 0}, {stop, POLLIN, 0}};
  for (;;) {
    int n = ::poll(fds, 2, -1);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw_errno("waiting for the translib");
    return fds[0].revents != 0;
  }
}

// One request line, its newline taken off; nullopt when the translib is done (end of
// file before a line) or when stopped. Peeks first, so that nothing after the newline
// (the byte that carries a pipe) is taken.
std::optional<std::string> read_line(int fd, int stop) {
  std::string line;
  char buf[GCP_IMAGE_SOURCE_MAX_LINE];
  for (;;) {
    if (!wait_readable(fd, stop)) return std::nullopt;
    ssize_t r = ::recv(fd, buf, sizeof buf - line.size(), MSG_PEEK);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) throw_errno("reading a request of the translib");
    if (r == 0) {
      if (line.empty()) return std::nullopt;
      throw Error(Exit::kFailed, "the translib closed its image-source connection in the middle of a request");
    }
    const void* nl = std::memchr(buf, '\n', static_cast<size_t>(r));
    size_t take = nl ? static_cast<size_t>(static_cast<const char*>(nl) - buf) + 1 : static_cast<size_t>(r);
    ssize_t got;
    do {
      got = ::recv(fd, buf, take, 0);
    } while (got < 0 && errno == EINTR);
    if (got != static_cast<ssize_t>(take)) throw_errno("reading a request of the translib");
    line.append(buf, take);
    if (nl) {
      line.pop_back();
      return line;
    }
    if (line.size() >= GCP_IMAGE_SOURCE_MAX_LINE) {
      throw Error(Exit::kFailed, "the translib sent an image-source request longer than " +
                                     std::to_string(GCP_IMAGE_SOURCE_MAX_LINE) + " bytes");
    }
  }
}

// {"image": "<path>"}: the path, or an Error that quotes what came instead.
std::string requested_image(const std::string& line) {
  json request = manifest::try_parse(line).value_or(json());
  if (request.is_object() && request.contains("image") && request["image"].is_string() &&
      !request["image"].get<std::string>().empty()) {
    return request["image"].get<std::string>();
  }
  throw Error(Exit::kFailed,
              "the translib sent the image-source request '" + printable(line, 200) + "', not {\"image\": \"<path>\"}");
}

void send_answer(int conn, const json& answer) {
  std::string line = answer.dump() + "\n";
  for (size_t done = 0; done < line.size();) {
    ssize_t w = ::send(conn, line.data() + done, line.size() - done, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) throw_errno("answering the translib");
    done += static_cast<size_t>(w);
  }
}

// The write end of the checkpointer's pipe: one byte of data with one descriptor, which
// must be a pipe (the image is written into whatever comes); -1 when stopped or when the
// translib has gone.
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
  if (r < 0) throw_errno("receiving a pipe from the translib");
  if (r == 0) return -1;  // it has gone: its checkpointer no longer reads
  cmsghdr* c = CMSG_FIRSTHDR(&msg);
  if (r != 1 || !c || c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS ||
      c->cmsg_len != CMSG_LEN(sizeof(int)) || (msg.msg_flags & MSG_CTRUNC)) {
    throw Error(Exit::kFailed, "the translib did not pass a pipe for the image it asked for");
  }
  int fd;
  std::memcpy(&fd, CMSG_DATA(c), sizeof fd);
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISFIFO(st.st_mode)) {
    ::close(fd);
    throw Error(Exit::kFailed, "the translib passed a descriptor that is not a pipe for the image it asked for");
  }
  return fd;
}

// A checkpointer that stops reading early closes its end of the pipe: that is EPIPE
// here, not a signal that ends gcp. (A SIGPIPE raised by this thread's write stays
// pending on the thread and goes away with it.)
void block_sigpipe() {
  sigset_t pipe_only;
  sigemptyset(&pipe_only);
  sigaddset(&pipe_only, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &pipe_only, nullptr);
}

// Writes all of `data` to a pipe; false when its reader has gone.
bool write_pipe(int fd, std::span<const uint8_t> data) {
  for (size_t done = 0; done < data.size();) {
    ssize_t w = ::write(fd, data.data() + done, data.size() - done);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0 && errno == EPIPE) return false;
    if (w < 0) throw_errno("writing an image to the checkpointer");
    done += static_cast<size_t>(w);
  }
  return true;
}

}  // namespace

// One page image read and verified ahead, piece by piece, into a few reused buffers
// (fresh memory is dear here: a first touch of a page costs ~10 us).
class ImageSource::ReadAhead {
 public:
  static constexpr size_t kBuffers = 8;  // 1 MiB pieces

  ReadAhead(Store& store, const manifest::Checkpoint& cp, const std::string& unit, const manifest::ImageFile& image,
            log::Progress* progress)
      : image_(image) {
    thread_ = std::thread([this, &store, &cp, unit, progress] {
      std::optional<Corrupt> bad;
      std::optional<Error> error;
      try {
        bad = store.stream_image(
            cp, unit, image_, [this](std::vector<uint8_t>& piece) { return put(piece); }, progress);
      } catch (const Error& e) {
        error = e;
      } catch (const std::exception& e) {
        error = Error(Exit::kFailed, "reading '" + image_.path + "' ahead: " + e.what());
      }
      std::lock_guard lock(m_);
      bad_ = std::move(bad);
      error_ = std::move(error);
      done_ = true;
      cv_.notify_all();
    });
  }

  ~ReadAhead() {
    cancel();
    thread_.join();
  }

  void cancel() {
    std::lock_guard lock(m_);
    cancelled_ = true;
    cv_.notify_all();
  }

  /// Writes the image to the pipe as it is read; the Corrupt error where reading stopped.
  std::optional<Corrupt> drain(int fd) {
    for (;;) {
      std::vector<uint8_t> piece;
      {
        std::unique_lock lock(m_);
        cv_.wait(lock, [this] { return !ready_.empty() || done_ || cancelled_; });
        if (ready_.empty()) {
          if (error_) throw *error_;
          return cancelled_ ? std::nullopt : bad_;
        }
        piece = std::move(ready_.front());
        ready_.pop_front();
      }
      bool reader_there = write_pipe(fd, piece);
      std::lock_guard lock(m_);
      free_.push_back(std::move(piece));
      cv_.notify_all();
      if (!reader_there) {
        cancelled_ = true;
        return std::nullopt;
      }
    }
  }

 private:
  // Takes the piece's memory and gives the store a written one to fill next.
  bool put(std::vector<uint8_t>& piece) {
    std::unique_lock lock(m_);
    cv_.wait(lock, [this] { return cancelled_ || !free_.empty() || allocated_ < kBuffers; });
    if (cancelled_) return false;
    std::vector<uint8_t> buf;
    if (!free_.empty()) {
      buf = std::move(free_.back());
      free_.pop_back();
    } else {
      ++allocated_;
    }
    std::swap(buf, piece);
    ready_.push_back(std::move(buf));
    cv_.notify_all();
    return true;
  }

  const manifest::ImageFile& image_;
  std::mutex m_;
  std::condition_variable cv_;
  std::deque<std::vector<uint8_t>> ready_;
  std::vector<std::vector<uint8_t>> free_;
  size_t allocated_ = 0;
  bool done_ = false, cancelled_ = false;
  std::optional<Corrupt> bad_;
  std::optional<Error> error_;
  std::thread thread_;
};

bool ImageSource::fits(const std::filesystem::path& dir) {
  return (dir / kSocketName).string().size() < sizeof(sockaddr_un::sun_path);
}

ImageSource::ImageSource(Store& store, const manifest::Checkpoint& checkpoint, const std::string& unit,
                         const std::filesystem::path& dir)
    : store_(store), checkpoint_(checkpoint), dir_(dir) {
  unit_ = checkpoint.find_unit(unit);
  if (!unit_) throw Error(Exit::kFailed, checkpoint.name() + " has no unit '" + unit + "'");
  if (!fits(dir)) throw Error(Exit::kFailed, "'" + dir.string() + "' is too long for a unix socket path");
  fs::make_dirs(dir, 0700);
  auto path = dir / kSocketName;
  listen_fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (listen_fd_ < 0) throw_errno("creating the image-source socket");
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
  ::unlink(path.c_str());
  if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || ::listen(listen_fd_, 1) != 0) {
    int e = errno;
    ::close(listen_fd_);
    errno = e;
    throw_errno("listening on '" + path.string() + "'");
  }
  stop_fd_ = ::eventfd(0, EFD_CLOEXEC);
  if (stop_fd_ < 0) {
    ::close(listen_fd_);
    throw_errno("creating an eventfd");
  }
  try {
    start();
  } catch (...) {
    // The threads already started are joined by their owners' destructors.
    ::close(listen_fd_);
    ::close(stop_fd_);
    throw;
  }
}

void ImageSource::start() {
  uint64_t total = 0;
  for (const auto& image : unit_->images) total += image.size;
  progress_ = std::make_unique<log::Progress>("reading unit '" + unit_->name + "' of " + checkpoint_.name(), total);
  // Read ahead: the largest page images of 1 MiB or more, at most kReadAheads of them
  // (a unit of many processes has a page image per process; 8 MiB and a thread each).
  std::vector<size_t> order;
  for (size_t i = 0; i < unit_->images.size(); ++i) {
    const auto& image = unit_->images[i];
    if (image.chunk_size == chunks::kPageChunk && image.size >= (1u << 20)) order.push_back(i);
  }
  std::sort(order.begin(), order.end(),
            [&](size_t a, size_t b) { return unit_->images[a].size > unit_->images[b].size; });
  if (order.size() > kReadAheads) order.resize(kReadAheads);
  read_aheads_.resize(unit_->images.size());
  for (size_t i : order) {
    read_aheads_[i] = std::make_unique<ReadAhead>(store_, checkpoint_, unit_->name, unit_->images[i], progress_.get());
  }
  claimed_.assign(unit_->images.size(), false);
  server_ = std::thread([this] { serve(); });
}

ImageSource::~ImageSource() {
  try {
    finish();
  } catch (...) {
  }
}

void ImageSource::serve() {
  int conn = -1;
  try {
    // One translib, one connection: it asks for its images one after the other.
    if (wait_readable(listen_fd_, stop_fd_)) {
      conn = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (conn < 0) throw_errno("accepting the translib's connection");
      while (handle_request(conn)) {
      }
    }
  } catch (const Error& e) {
    std::lock_guard lock(m_);
    failure_ = e;
  } catch (const std::exception& e) {
    std::lock_guard lock(m_);
    failure_ = Error(Exit::kFailed, std::string("serving images: ") + e.what());
  }
  if (conn >= 0) ::close(conn);
}

bool ImageSource::handle_request(int conn) {
  auto line = read_line(conn, stop_fd_);
  if (!line) return false;  // the translib is done
  std::string name = requested_image(*line);
  const manifest::ImageFile* image = nullptr;
  size_t index = 0;
  for (size_t i = 0; i < unit_->images.size(); ++i) {
    if (unit_->images[i].path == name) image = &unit_->images[index = i];
  }
  send_answer(conn, image ? json{{"exists", true}, {"size", image->size}} : json{{"exists", false}});
  if (!image) {
    spdlog::trace("image source: '{}' is not in the checkpoint", name);
    return true;
  }
  int pipe_fd = receive_fd(conn, stop_fd_);
  if (pipe_fd < 0) return false;
  // A larger pipe: fewer wake-ups of the checkpointer (1 MiB is what unprivileged users
  // may ask for by default; a refusal leaves the default 64 KiB).
  (void)::fcntl(pipe_fd, F_SETPIPE_SZ, 1 << 20);
  std::lock_guard lock(m_);
  served_.push_back(name);
  // The first request for a page image drains what was read ahead for it; any other
  // request reads the image itself.
  ReadAhead* ahead = nullptr;
  if (read_aheads_[index] && !claimed_[index]) {
    ahead = read_aheads_[index].get();
    claimed_[index] = true;
  }
  streams_.emplace_back([this, image, ahead, pipe_fd] {
    if (ahead) {
      block_sigpipe();
      try {
        note(ahead->drain(pipe_fd));
      } catch (const Error& e) {
        std::lock_guard lock(m_);
        if (!failure_) failure_ = e;
      }
      ::close(pipe_fd);
    } else {
      stream(image, pipe_fd);
    }
  });
  return true;
}

void ImageSource::note(std::optional<Corrupt> bad) {
  if (!bad) return;
  std::lock_guard lock(m_);
  if (!problem_) problem_ = std::move(bad);
}

void ImageSource::stream(const manifest::ImageFile* image, int pipe_fd) {
  block_sigpipe();
  try {
    note(store_.stream_image(
        checkpoint_, unit_->name, *image, [pipe_fd](std::vector<uint8_t>& piece) { return write_pipe(pipe_fd, piece); },
        progress_.get()));
  } catch (const Error& e) {
    std::lock_guard lock(m_);
    if (!failure_) failure_ = e;
  } catch (const std::exception& e) {
    std::lock_guard lock(m_);
    if (!failure_) failure_ = Error(Exit::kFailed, "streaming '" + image->path + "': " + e.what());
  }
  ::close(pipe_fd);
}

std::optional<Corrupt> ImageSource::finish() {
  if (finished_) return problem_;
  finished_ = true;
  uint64_t one = 1;
  if (::write(stop_fd_, &one, sizeof one) < 0) {
    spdlog::warn("stopping the image source: {}", std::strerror(errno));
  }
  if (server_.joinable()) server_.join();
  // The serving thread is gone: streams_ no longer grows. The restart has returned,
  // so a stream still running ends at its next write; images nobody asked for stop
  // being read ahead.
  for (auto& ahead : read_aheads_) {
    if (ahead) ahead->cancel();
  }
  for (auto& t : streams_) t.join();
  read_aheads_.clear();
  progress_.reset();
  ::close(listen_fd_);
  ::close(stop_fd_);
  std::error_code ec;
  std::filesystem::remove(dir_ / kSocketName, ec);
  return problem_;
}

std::vector<std::string> ImageSource::served() {
  std::lock_guard lock(m_);
  return served_;
}

}  // namespace gcp::store
