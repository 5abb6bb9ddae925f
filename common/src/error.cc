// SPDX-License-Identifier: MIT
#include "gcp/error.h"

#include <cerrno>
#include <cstring>

namespace gcp {

void throw_errno(const std::string& doing, Exit code, std::string hint) {
  int err = errno;
  if (err == EACCES || err == EPERM) {
    if (code == Exit::kFailed) code = Exit::kNotPermitted;
  }
  throw Error(code, doing + ": " + std::strerror(err), std::move(hint));
}

}  // namespace gcp
