// SPDX-License-Identifier: MIT
#pragma once

#include <spdlog/spdlog.h>

#include <string>

namespace gcp::log {

/// Sets up the default spdlog logger on stderr: "<tool>: <level>: msg" or, when
/// verbose, "[time, tool, pid] level: msg" with debug messages shown.
void setup(const std::string& tool, bool verbose);

/// True when stderr is a terminal, so progress lines may be drawn.
bool stderr_is_tty();

/// Says which phase a long operation is in: on a terminal as an info line, otherwise
/// only with -v (scripts and cron get no chatter).
template <typename... Args>
void phase(spdlog::format_string_t<Args...> fmt, Args&&... args) {
  spdlog::log(stderr_is_tty() ? spdlog::level::info : spdlog::level::debug, fmt, std::forward<Args>(args)...);
}

}  // namespace gcp::log
