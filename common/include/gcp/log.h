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

}  // namespace gcp::log
