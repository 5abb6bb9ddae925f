// SPDX-License-Identifier: MIT
// What the libFuzzer harnesses of tests/fuzz share. Each harness feeds any bytes to one
// reader of hostile input; a reader may refuse them with gcp::Error (that is its job),
// anything else (another exception, a crash, a sanitizer report, a hang) is a bug.
#pragma once

#include "gcp/error.h"

#include <spdlog/spdlog.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

namespace gcp::fuzz {

/// Quiets the log: a reader's warnings about bad input are expected by the million.
inline void quiet() { spdlog::set_level(spdlog::level::off); }

/// The input as text.
inline std::string_view text(const uint8_t* data, size_t size) { return {reinterpret_cast<const char*>(data), size}; }

/// Runs `read` on the input: gcp::Error is a refusal, fine; any other exception escapes
/// to libFuzzer, which reports it as a crash.
template <typename F>
void refusing(F&& read) {
  try {
    read();
  } catch (const gcp::Error& e) {
    // One line: a refusal's message never spans lines (it would break the log's format).
    std::string_view what = e.what();
    if (what.find('\n') != std::string_view::npos) std::abort();
  }
}

}  // namespace gcp::fuzz
