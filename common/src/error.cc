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

std::string printable(std::string_view text, size_t limit) {
  static const char* digits = "0123456789abcdef";
  std::string out;
  for (size_t i = 0; i < text.size(); ++i) {
    if (i == limit) return out + "...";
    unsigned char c = static_cast<unsigned char>(text[i]);
    if (c >= 0x20 && c < 0x7f) {
      out.push_back(static_cast<char>(c));
    } else {
      out += "\\x";
      out.push_back(digits[c >> 4]);
      out.push_back(digits[c & 15]);
    }
  }
  return out;
}

}  // namespace gcp
