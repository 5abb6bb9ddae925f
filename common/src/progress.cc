// SPDX-License-Identifier: MIT
#include "gcp/progress.h"

#include "gcp/log.h"
#include "gcp/names.h"

#include <cstdio>
#include <cstdlib>
#include <string>

namespace gcp::log {

Progress::Progress(std::string label, uint64_t total)
    : label_(std::move(label)), total_(total), start_(std::chrono::steady_clock::now()) {
  if (!stderr_is_tty() || total_ == 0) return;
  auto delay = std::chrono::milliseconds(delay_ms());
  if (delay.count() == 0) draw(false);
  thread_ = std::thread([this, delay] {
    std::unique_lock lock(m_);
    while (!cv_.wait_for(lock, std::chrono::milliseconds(500), [this] { return stop_; })) {
      if (std::chrono::steady_clock::now() - start_ >= delay) draw(false);
    }
  });
}

long Progress::delay_ms() {
  // A value that is not a number is ignored: a progress line is not worth a failed step.
  const char* env = std::getenv(names::kEnvProgressDelay);
  if (env == nullptr || *env == '\0') return 1000;
  char* end = nullptr;
  long ms = std::strtol(env, &end, 10);
  return (*end != '\0' || ms < 0) ? 1000 : ms;
}

Progress::~Progress() {
  if (!thread_.joinable()) return;
  {
    std::lock_guard lock(m_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
  if (drawn_) std::fprintf(stderr, "\r\033[K");
}

void Progress::draw(bool) {
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  double done = static_cast<double>(done_.load(std::memory_order_relaxed));
  double mib = done / (1 << 20), total = static_cast<double>(total_) / (1 << 20);
  double rate = secs > 0 ? mib / secs : 0;
  double left = rate > 0 ? (total - mib) / rate : 0;
  std::fprintf(stderr, "\r\033[K%s: %.0f of %.0f MiB, %.0f MiB/s, %.0f s left", label_.c_str(), mib, total, rate,
               left < 0 ? 0 : left);
  std::fflush(stderr);
  drawn_ = true;
}

}  // namespace gcp::log
