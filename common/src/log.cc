// SPDX-License-Identifier: MIT
#include "gcp/log.h"

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <unistd.h>
#include <cstring>

namespace gcp::log {
namespace {

// "error: ", "warning: ", "debug: " and nothing for info, so that the human summary
// reads "gcp-checkpoint: checkpoint 3 committed" and errors follow STYLE.md.
class LevelPrefix : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg& msg, const std::tm&, spdlog::memory_buf_t& dest) override {
    const char* text = "";
    switch (msg.level) {
      case spdlog::level::critical:
      case spdlog::level::err:
        text = "error: ";
        break;
      case spdlog::level::warn:
        text = "warning: ";
        break;
      case spdlog::level::debug:
      case spdlog::level::trace:
        text = "debug: ";
        break;
      default:
        break;
    }
    dest.append(text, text + std::strlen(text));
  }
  std::unique_ptr<custom_flag_formatter> clone() const override { return std::make_unique<LevelPrefix>(); }
};

}  // namespace

void setup(const std::string& tool, bool verbose) {
  auto sink = std::make_shared<spdlog::sinks::stderr_sink_mt>();
  auto logger = std::make_shared<spdlog::logger>(tool, sink);
  auto formatter = std::make_unique<spdlog::pattern_formatter>();
  formatter->add_flag<LevelPrefix>('*');
  formatter->set_pattern(verbose ? "[%H:%M:%S.%e, %n, %P] %*%v" : "%n: %*%v");
  logger->set_formatter(std::move(formatter));
  logger->set_level(verbose ? spdlog::level::debug : spdlog::level::info);
  spdlog::set_default_logger(logger);
}

bool stderr_is_tty() { return isatty(STDERR_FILENO) == 1; }

}  // namespace gcp::log
