// SPDX-License-Identifier: MIT
#pragma once

#include "gcp/error.h"
#include "gcp/manifest.h"
#include "gcp/translib.h"

#include <filesystem>
#include <future>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace gcp::translib {

using manifest::json;

/// Directories searched for "<name>.so": $GCP_TRANSLIB_PATH (colon-separated), then
/// <dir of this executable>/../lib/gcp/translibs.
std::vector<std::filesystem::path> search_path();

/// A loaded translib. Loading checks the ABI in both directions and refuses a
/// mismatch with a message that names both versions and what to rebuild.
class Translib {
 public:
  /// Loads translib `name` from search_path(); throws Error(kNoCheckpointer) when it is
  /// not found (naming the directories searched) or does not fit this gcp.
  static Translib load(const std::string& name);
  /// Loads a translib from a file.
  static Translib load_file(const std::filesystem::path& file);

  /// The translib's short name ("criu").
  std::string name() const { return desc_->name; }
  /// Its type string ("checkpointer/criu").
  std::string type() const { return desc_->type; }
  /// Its own version.
  std::string version() const { return desc_->version; }
  /// Its GCP_CAP_* bits.
  uint64_t capabilities() const { return desc_->capabilities; }

  /// Is the checkpointer usable here: {checkpointer, version, path}. Throws
  /// Error(kNoCheckpointer) with the translib's reason when not.
  json probe() const;
  /// Dumps one unit; throws Error(kFailed) with the translib's message.
  json checkpoint(const json& request) const;
  /// Restores one unit; throws Error(kFailed) with the translib's message.
  json restart(const json& request) const;
  /// True when it has check (ABI 1.2 and a translib that fills it in).
  bool can_check() const;
  /// Can this node restore the images in request.imagesDir: {checks: [{check, status,
  /// reason}]}. Only when can_check(); throws Error(kFailed) with the translib's message.
  json check(const json& request) const;

 private:
  Translib(std::shared_ptr<void> handle, const gcp_translib_descriptor* desc)
      : handle_(std::move(handle)), desc_(desc) {}
  json call(gcp_translib_call fn, const char* what, const json& request, Exit on_error) const;

  std::shared_ptr<void> handle_;
  const gcp_translib_descriptor* desc_;
};

/// The translibs of one round's units, each loaded and probed once. prefetch() loads and
/// probes in the background (a probe runs the checkpointer's own checks, e.g. `criu
/// check`: ~0.2 s) while the caller does other work.
class Cache {
 public:
  /// Starts loading and probing `name` unless it is loaded or on its way.
  void prefetch(const std::string& name);
  /// The loaded translib; rethrows what loading or probing threw.
  const Translib& get(const std::string& name) { return entry(name).first; }
  /// What its probe said: {checkpointer, version, path}.
  const json& probed(const std::string& name) { return entry(name).second; }

 private:
  using Loaded = std::pair<Translib, json>;
  static Loaded load_and_probe(const std::string& name);
  Loaded& entry(const std::string& name);

  std::map<std::string, Loaded> loaded_;
  std::map<std::string, std::future<Loaded>> pending_;  // joined by their destructors
};

}  // namespace gcp::translib
