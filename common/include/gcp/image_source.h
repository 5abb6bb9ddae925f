// SPDX-License-Identifier: MIT
#pragma once

#include "gcp/manifest.h"
#include "gcp/store.h"

#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace gcp::log {
class Progress;
}

namespace gcp::store {

/// Serves the images of one unit of a committed checkpoint straight from the store to
/// a translib that restores from an image source (GCP_CAP_IMAGE_SOURCE, the restart
/// request's "imageSource"), so that restoring starts at once instead of after every
/// image has been written to scratch. The protocol is gcp's own (translib.h): per
/// image the translib sends {"image": path} on one line, gets {"exists": true, "size":
/// N} or {"exists": false}, and when it exists passes the write end of a pipe
/// (SCM_RIGHTS, one byte of data), into which the image is written. Every chunk is
/// verified before any of its bytes goes into a pipe: a missing or damaged chunk ends
/// that image early, the checkpointer's restore fails before the restored tasks run,
/// and finish() returns the Corrupt error naming checkpoint, unit, file and chunk. The
/// largest page images are read ahead from the start (a checkpointer asks for them
/// last: CRIU after ~0.1 s of its own start), into a few buffers that the first request
/// for each drains.
class ImageSource {
 public:
  static constexpr const char* kSocketName = "image-source.sock";
  static constexpr size_t kReadAheads = 4;  ///< page images read ahead at most

  /// Whether a socket in `dir` fits a unix socket address (108 bytes).
  static bool fits(const std::filesystem::path& dir);

  /// Creates `dir` and listens in it; serves on a thread of its own until finish().
  ImageSource(Store& store, const manifest::Checkpoint& checkpoint, const std::string& unit,
              const std::filesystem::path& dir);
  ~ImageSource();  // finish() when not called
  ImageSource(const ImageSource&) = delete;
  ImageSource& operator=(const ImageSource&) = delete;

  /// Where it listens: the restart request's "imageSource".
  std::filesystem::path socket_path() const { return dir_ / kSocketName; }

  /// Stops serving and waits until every image being written has ended (call it once
  /// the translib's restart has returned). The first image that did not verify, if any.
  std::optional<Corrupt> finish();

  /// Images served so far (paths as the translib asked for them).
  std::vector<std::string> served();

  /// What went wrong in serving itself (the protocol, a pipe), after finish().
  const std::optional<Error>& failure() const { return failure_; }

 private:
  class ReadAhead;

  void start();  // the progress line, the read-aheads, the serving thread
  void serve();
  bool handle_request(int conn);
  void stream(const manifest::ImageFile* image, int pipe_fd);
  void note(std::optional<Corrupt> bad);

  Store& store_;
  const manifest::Checkpoint& checkpoint_;
  const manifest::CheckpointUnit* unit_ = nullptr;
  std::filesystem::path dir_;
  int listen_fd_ = -1;
  int stop_fd_ = -1;  // an eventfd: finish() wakes the serving thread with it
  std::unique_ptr<log::Progress> progress_;
  std::thread server_;
  std::mutex m_;
  std::vector<std::thread> streams_;
  std::vector<std::unique_ptr<ReadAhead>> read_aheads_;  // by image index; null: not read ahead
  std::vector<bool> claimed_;
  std::vector<std::string> served_;
  std::optional<Corrupt> problem_;
  std::optional<Error> failure_;  // the serving thread's own failure (protocol, I/O)
  bool finished_ = false;
};

}  // namespace gcp::store
