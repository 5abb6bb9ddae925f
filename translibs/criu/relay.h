// SPDX-License-Identifier: MIT
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <thread>

// `criu restore --stream` reads its images through CRIU's image-streamer protocol;
// gcp serves them through its own image source (translib.h, GCP_CAP_IMAGE_SOURCE). The
// relay stands between the two for one restore, so that no image byte passes through
// the translib: CRIU's pipe goes on to gcp, which writes into it.
namespace gcp::criu {

/// The longest request CRIU sends: a file name and its protobuf framing.
constexpr uint32_t kMaxStreamerRequest = 4096;

/// The file name in one of CRIU's requests, img_streamer_request_entry { required
/// string filename = 1; } (images/img-streamer.proto), without its u32 length. Throws
/// std::runtime_error when it is anything else.
std::string streamer_filename(std::span<const uint8_t> message);

/// Relays one `criu restore --stream`: listens at DIR/streamer-serve.sock (CRIU's name)
/// and, for each image CRIU asks for, asks gcp's image source, answers CRIU and hands
/// CRIU's pipe on to gcp. Every read from either socket is bounded and checked: what
/// does not parse ends the relay, and with it CRIU's restore, with an error.
class StreamRelay {
 public:
  static constexpr const char* kSocketName = "streamer-serve.sock";

  /// Connects to the image source at `source` and listens in `dir`; relays on a thread
  /// of its own until finish(). Throws std::runtime_error when either fails (a socket
  /// path has 108 bytes at most).
  StreamRelay(const std::string& dir, const std::string& source);
  ~StreamRelay();  // finish() when not called
  StreamRelay(const StreamRelay&) = delete;
  StreamRelay& operator=(const StreamRelay&) = delete;

  /// Stops relaying (call it once CRIU has exited) and removes the socket. What went
  /// wrong in relaying, empty when nothing did.
  std::string finish();

 private:
  void relay();
  bool relay_one(int criu);

  std::string dir_;
  int listen_fd_ = -1;
  int source_fd_ = -1;
  int stop_fd_ = -1;  // an eventfd: finish() wakes the relaying thread with it
  std::thread thread_;
  std::string failure_;
  bool finished_ = false;
};

}  // namespace gcp::criu
