// SPDX-License-Identifier: MIT
#include "gcp/undo.h"

#include <spdlog/spdlog.h>

#include <exception>

namespace gcp {

Undo& Undo::operator=(Undo&& other) noexcept {
  if (this != &other) {
    now();
    what_ = std::move(other.what_);
    undo_ = std::move(other.undo_);
    other.undo_ = nullptr;
  }
  return *this;
}

void Undo::now() noexcept {
  if (!undo_) return;
  auto undo = std::move(undo_);
  undo_ = nullptr;
  try {
    undo();
  } catch (const std::exception& e) {
    spdlog::warn("{}: {}", what_, e.what());
  } catch (...) {
    spdlog::warn("{}: failed", what_);
  }
}

}  // namespace gcp
