// SPDX-License-Identifier: MIT
#include "wire.h"

#include "gcp/error.h"

#include <cstdint>

namespace gcp::rounds::wire {
namespace {

std::string hex(std::string_view bytes) {
  static const char* digits = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char c : bytes) {
    out.push_back(digits[c >> 4]);
    out.push_back(digits[c & 15]);
  }
  return out;
}

std::string unhex(const std::string& text, const std::string& what) {
  auto value = [&](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    throw Error(Exit::kFailed, what + ": not hexadecimal");
  };
  if (text.size() % 2) throw Error(Exit::kFailed, what + ": odd length");
  std::string out(text.size() / 2, '\0');
  for (size_t i = 0; i < out.size(); ++i) out[i] = static_cast<char>(value(text[2 * i]) << 4 | value(text[2 * i + 1]));
  return out;
}

}  // namespace

bool read_line(std::istream& in, std::string& line, size_t max) {
  line.clear();
  for (char c; in.get(c);) {
    if (c == '\n') return true;
    if (line.size() == max) {
      throw Error(Exit::kUsage, "a message of the round is longer than " + std::to_string(max) + " bytes",
                  "the job checkpointer and this node must run the same gcp release");
    }
    line.push_back(c);
  }
  return false;
}

namespace {

const manifest::json* find(const manifest::json& message, const char* key) {
  if (!message.is_object()) return nullptr;
  auto it = message.find(key);
  return it == message.end() || it->is_null() ? nullptr : &*it;
}

[[noreturn]] void wrong(const char* key, const char* what) {
  throw Error(Exit::kUsage, std::string("a message of the round: field '") + key + "' is not " + what,
              "the job checkpointer and this node must run the same gcp release");
}

}  // namespace

std::string text_field(const manifest::json& message, const char* key, const std::string& fallback) {
  const auto* v = find(message, key);
  if (!v) return fallback;
  if (!v->is_string()) wrong(key, "a string");
  return v->get<std::string>();
}

bool flag_field(const manifest::json& message, const char* key, bool fallback) {
  const auto* v = find(message, key);
  if (!v) return fallback;
  if (!v->is_boolean()) wrong(key, "true or false");
  return v->get<bool>();
}

int int_field(const manifest::json& message, const char* key, int fallback) {
  const auto* v = find(message, key);
  if (!v) return fallback;
  if (v->is_number_unsigned() && v->get<uint64_t>() <= static_cast<uint64_t>(INT32_MAX)) return v->get<int>();
  if (v->is_number_integer() && !v->is_number_unsigned() && v->get<int64_t>() >= INT32_MIN) return v->get<int>();
  wrong(key, "an integer in range");
}

manifest::json parse_message(std::string_view line, const std::string& from) {
  std::string why;
  auto doc = manifest::try_parse(line, &why);
  if (!doc) throw Error(Exit::kUsage, from + " sent something that is not JSON (" + why + ")");
  if (!doc->is_object()) throw Error(Exit::kUsage, from + " sent something that is not a JSON object");
  return std::move(*doc);
}

manifest::json part_to_wire(const manifest::Checkpoint& part) {
  manifest::json doc = manifest::to_json(part, false);
  for (size_t u = 0; u < part.units.size(); ++u) {
    for (size_t i = 0; i < part.units[u].images.size(); ++i) {
      doc["units"][u]["images"][i]["digests"] = hex(part.units[u].images[i].digests);
    }
  }
  return doc;
}

manifest::Checkpoint part_from_wire(const manifest::json& doc, const std::string& from) {
  manifest::json copy = doc;
  std::vector<std::string> digests;
  if (copy.contains("units") && copy["units"].is_array()) {
    for (auto& u : copy["units"]) {
      if (!u.is_object() || !u.contains("images") || !u["images"].is_array()) continue;
      for (auto& image : u["images"]) {
        digests.push_back(image.is_object() && image.contains("digests") && image["digests"].is_string()
                              ? image["digests"].get<std::string>()
                              : "");
        if (image.is_object()) image.erase("digests");
      }
    }
  }
  auto part = manifest::checkpoint_from_json(copy, from);
  size_t k = 0;
  for (auto& u : part.units) {
    for (auto& image : u.images) {
      image.digests = unhex(digests.at(k++), from + ": unit '" + u.name + "', image '" + printable(image.path) + "'");
      if (image.digests.size() != image.chunk_count() * manifest::ImageFile::kDigestBytes) {
        throw Error(Exit::kFailed, from + ": unit '" + u.name + "', image '" + printable(image.path) + "': " +
                                       std::to_string(image.digests.size() / manifest::ImageFile::kDigestBytes) +
                                       " chunk digests for " + std::to_string(image.chunk_count()) + " chunks");
      }
    }
  }
  return part;
}

}  // namespace gcp::rounds::wire
