// SPDX-License-Identifier: MIT
#pragma once

#include <stdexcept>
#include <string>
#include <string_view>

namespace gcp {

/// Exit codes shared by every gcp tool (DESIGN.md, Conventions).
enum class Exit : int {
  kOk = 0,              ///< done
  kFailed = 1,          ///< failed, nothing changed: job running, previous checkpoint intact
  kUsage = 2,           ///< bad usage or bad input
  kNotPermitted = 3,    ///< not permitted
  kNoCheckpointer = 4,  ///< no usable checkpointer here
  kBusy = 75,           ///< not due or locked; cron may retry
};

/// The one error type of gcp: thrown inside C++, caught once in run_main.
/// `message` says what failed and why ("reading manifest 'x': ..."); `hint`, when
/// not empty, says what to do.
class Error : public std::runtime_error {
 public:
  /// An error with an exit code, a one-line message and an optional hint.
  Error(Exit code, std::string message, std::string hint = {})
      : std::runtime_error(message), code_(code), hint_(std::move(hint)) {}

  /// The exit code the tool ends with.
  Exit code() const { return code_; }
  /// What to do about it; empty when there is nothing to suggest.
  const std::string& hint() const { return hint_; }

  /// A copy with `context: ` put in front of the message, same code and hint.
  Error within(const std::string& context) const { return Error(code_, context + ": " + what(), hint_); }

 private:
  Exit code_;
  std::string hint_;
};

/// `text` as it may be shown on a terminal: control characters, DEL and bytes that are
/// not printable ASCII as \xNN, at most `limit` bytes of it (then "..."). For names
/// and paths that come from users or files, quoted in messages.
std::string printable(std::string_view text, size_t limit = 200);

/// Throws Error(kFailed) for a failed syscall: "<doing>: <strerror(errno)>".
[[noreturn]] void throw_errno(const std::string& doing, Exit code = Exit::kFailed, std::string hint = {});

}  // namespace gcp
