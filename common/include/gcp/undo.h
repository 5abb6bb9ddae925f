// SPDX-License-Identifier: MIT
#pragma once

#include <functional>
#include <string>

namespace gcp {

/// Undoes one thing a round did (frozen units thaw, a locked network unlocks, quiesced
/// applications hear abort, staging goes away) when it goes out of scope, unless
/// released. A phase that fails just throws: whatever it and the phases before it did
/// is undone by the guards that hold it, in the order their owner declares them.
class Undo {
 public:
  Undo() = default;
  /// Holds `undo`; `what` names it when it fails ("thawing unit 'a'").
  Undo(std::string what, std::function<void()> undo) : what_(std::move(what)), undo_(std::move(undo)) {}
  ~Undo() { now(); }
  Undo(Undo&& other) noexcept : what_(std::move(other.what_)), undo_(std::move(other.undo_)) { other.undo_ = nullptr; }
  /// Runs what this one holds, then takes the other's.
  Undo& operator=(Undo&& other) noexcept;
  Undo(const Undo&) = delete;
  Undo& operator=(const Undo&) = delete;

  /// Undoes now (once); a failure is logged as a warning, never thrown.
  void now() noexcept;
  /// Keeps what was done: nothing is undone.
  void release() noexcept { undo_ = nullptr; }
  /// True while something is held.
  explicit operator bool() const { return static_cast<bool>(undo_); }

 private:
  std::string what_;
  std::function<void()> undo_;
};

}  // namespace gcp
