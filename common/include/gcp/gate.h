// SPDX-License-Identifier: MIT
#pragma once

#include "gcp/manifest.h"

#include <chrono>
#include <filesystem>
#include <string>

namespace gcp::gate {

/// A dump gate (gcp-translib(7), "gate"): two FIFOs through which a translib's
/// checkpointer, once it has started up and before it touches its unit, says "ready"
/// and waits to be let through ("go") or called off. gcp freezes the unit in between,
/// so the job is not frozen while the checkpointer starts.
class Gate {
 public:
  /// Creates <dir>/<name>.ready and <dir>/<name>.go and holds both open.
  Gate(const std::filesystem::path& dir, const std::string& name);
  /// Closes both: a checkpointer still waiting hears end of file and gives up.
  ~Gate();
  Gate(const Gate&) = delete;
  Gate& operator=(const Gate&) = delete;
  Gate(Gate&& other) noexcept;
  Gate& operator=(Gate&&) = delete;

  /// {"ready": path, "go": path}: the request's "gate".
  manifest::json request() const;
  /// Waits up to `wait` for the checkpointer's "ready"; true once it came (then
  /// at once on later calls). Throws Error when something else came.
  bool wait_ready(std::chrono::milliseconds wait);
  bool ready() const { return ready_; }
  /// Lets the checkpointer through.
  void open();
  /// Calls the dump off: the checkpointer gives up without touching the unit.
  void call_off() noexcept;

 private:
  std::filesystem::path ready_path_, go_path_;
  int ready_fd_ = -1, go_fd_ = -1;
  bool ready_ = false;
  std::string got_;
};

}  // namespace gcp::gate
