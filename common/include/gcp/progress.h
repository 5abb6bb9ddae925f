// SPDX-License-Identifier: MIT
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>

namespace gcp::log {

/// A progress line on stderr for long steps (ingest, materialize): bytes done of the
/// total, MiB/s and the time left, redrawn twice a second. Only on a terminal and only
/// once the step has taken GCP_PROGRESS_DELAY_MS (default 1000; 0 draws at once);
/// elsewhere it prints nothing.
class Progress {
 public:
  Progress(std::string label, uint64_t total);
  ~Progress();  // erases the line
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;

  void add(uint64_t bytes) { done_.fetch_add(bytes, std::memory_order_relaxed); }

 private:
  static long delay_ms();
  void draw(bool final);

  std::string label_;
  uint64_t total_;
  std::atomic<uint64_t> done_{0};
  std::chrono::steady_clock::time_point start_;
  bool drawn_ = false;
  bool stop_ = false;
  std::mutex m_;
  std::condition_variable cv_;
  std::thread thread_;
};

}  // namespace gcp::log
