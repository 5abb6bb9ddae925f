// SPDX-License-Identifier: MIT
#include "gcp/translib_loader.h"

#include "gcp/caller.h"
#include "gcp/main.h"
#include "gcp/names.h"
#include "gcp/process.h"

#include <dlfcn.h>
#include <spdlog/spdlog.h>

#include <cstdlib>
#include <cstring>

namespace gcp::translib {

std::vector<std::filesystem::path> search_path() {
  std::vector<std::filesystem::path> dirs;
  // Root never loads a translib from a directory a user named.
  const char* env = caller::for_user() ? nullptr : std::getenv(names::kEnvTranslibPath);
  if (env && *env) {
    std::string list = env;
    size_t start = 0;
    while (start <= list.size()) {
      size_t end = list.find(':', start);
      if (end == std::string::npos) end = list.size();
      if (end > start) dirs.emplace_back(list.substr(start, end - start));
      start = end + 1;
    }
  }
  dirs.push_back(std::filesystem::path(process::self_dir()).parent_path() / "lib/gcp/translibs");
  return dirs;
}

Translib Translib::load(const std::string& name) {
  std::string searched;
  for (const auto& dir : search_path()) {
    auto file = dir / (name + ".so");
    if (std::filesystem::exists(file)) return load_file(file);
    searched += (searched.empty() ? "" : ", ") + dir.string();
  }
  throw Error(Exit::kNoCheckpointer, "loading translib '" + name + "': no " + name + ".so in " + searched,
              "install the translib or point GCP_TRANSLIB_PATH at its directory");
}

Translib Translib::load_file(const std::filesystem::path& file) {
  std::string what = "loading translib '" + file.string() + "'";
  void* raw = ::dlopen(file.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!raw) throw Error(Exit::kNoCheckpointer, what + ": " + ::dlerror());
  std::shared_ptr<void> handle(raw, [](void* h) { ::dlclose(h); });
  auto open = reinterpret_cast<gcp_translib_open_fn>(::dlsym(raw, GCP_TRANSLIB_OPEN_SYMBOL));
  if (!open) {
    throw Error(Exit::kNoCheckpointer, what + ": it exports no " + GCP_TRANSLIB_OPEN_SYMBOL + " (not a gcp translib)");
  }
  gcp_translib_host host{GCP_TRANSLIB_ABI_MAJOR, GCP_TRANSLIB_ABI_MINOR, kVersion};
  const gcp_translib_descriptor* desc = open(&host);
  if (!desc) throw Error(Exit::kNoCheckpointer, what + ": " + GCP_TRANSLIB_OPEN_SYMBOL + " returned nothing");
  auto ours = std::to_string(GCP_TRANSLIB_ABI_MAJOR) + "." + std::to_string(GCP_TRANSLIB_ABI_MINOR);
  auto theirs = std::to_string(desc->abi_major) + "." + std::to_string(desc->abi_minor);
  if (desc->abi_major != GCP_TRANSLIB_ABI_MAJOR) {
    bool newer = desc->abi_major > GCP_TRANSLIB_ABI_MAJOR;
    throw Error(Exit::kNoCheckpointer, what + ": it speaks translib ABI " + theirs + ", this gcp speaks " + ours,
                newer ? "the translib is newer than gcp: upgrade gcp or use a translib built for ABI " + ours
                      : "the translib is older than gcp: rebuild it against this gcp's translib.h");
  }
  // A translib of an older minor has a shorter table: only what struct_size covers exists.
  size_t needed = offsetof(gcp_translib_descriptor, free_string) + sizeof(desc->free_string);
  if (desc->struct_size < needed || !desc->probe || !desc->checkpoint || !desc->restart || !desc->free_string ||
      !desc->name || !desc->type || !desc->version) {
    throw Error(Exit::kNoCheckpointer,
                what + ": its descriptor is incomplete for ABI " + theirs + " (struct_size " +
                    std::to_string(desc->struct_size) + ")",
                "rebuild the translib against this gcp's translib.h");
  }
  if (desc->abi_minor > GCP_TRANSLIB_ABI_MINOR) {
    spdlog::debug("{}: built for ABI {}, newer than this gcp's {}; using the common part", what, theirs, ours);
  }
  return Translib(std::move(handle), desc);
}

json Translib::call(gcp_translib_call fn, const char* what, const json& request, Exit on_error) const {
  char* result = nullptr;
  char* error = nullptr;
  std::string req = request.dump();
  gcp_translib_status status = fn(req.c_str(), &result, &error);
  std::string result_text = result ? result : "";
  std::string error_text = error ? error : "";
  if (result) desc_->free_string(result);
  if (error) desc_->free_string(error);
  std::string context = "translib '" + name() + "' " + what;
  if (status != GCP_TRANSLIB_OK) {
    if (error_text.empty()) error_text = "failed without saying why";
    std::string hint;
    if (auto pos = error_text.find("\nhint: "); pos != std::string::npos) {
      hint = error_text.substr(pos + 7);
      error_text.resize(pos);
    }
    if (status == GCP_TRANSLIB_UNSUPPORTED && on_error != Exit::kNoCheckpointer) {
      error_text = "not supported: " + error_text;
    }
    throw Error(on_error, context + ": " + error_text, hint);
  }
  try {
    return json::parse(result_text);
  } catch (const json::exception& e) {
    throw Error(Exit::kFailed, context + ": returned invalid JSON: " + e.what());
  }
}

json Translib::probe() const { return call(desc_->probe, "probe", json::object(), Exit::kNoCheckpointer); }

json Translib::checkpoint(const json& request) const {
  return call(desc_->checkpoint, "checkpoint", request, Exit::kFailed);
}

json Translib::restart(const json& request) const { return call(desc_->restart, "restart", request, Exit::kFailed); }

bool Translib::can_check() const {
  return desc_->struct_size >= offsetof(gcp_translib_descriptor, check) + sizeof(desc_->check) && desc_->check;
}

json Translib::check(const json& request) const { return call(desc_->check, "check", request, Exit::kFailed); }

void Cache::prefetch(const std::string& name) {
  if (loaded_.count(name) || pending_.count(name)) return;
  pending_.emplace(name, std::async(std::launch::async, [name] { return load_and_probe(name); }));
}

Cache::Loaded Cache::load_and_probe(const std::string& name) {
  auto lib = Translib::load(name);
  json info = lib.probe();
  spdlog::debug("translib '{}' {}: {} {} at {}", name, lib.version(), info.value("checkpointer", "?"),
                info.value("version", "?"), info.value("path", "?"));
  return {std::move(lib), std::move(info)};
}

Cache::Loaded& Cache::entry(const std::string& name) {
  if (auto it = loaded_.find(name); it != loaded_.end()) return it->second;
  auto pending = pending_.find(name);
  if (pending == pending_.end()) return loaded_.emplace(name, load_and_probe(name)).first->second;
  auto future = std::move(pending->second);
  pending_.erase(pending);
  return loaded_.emplace(name, future.get()).first->second;
}

}  // namespace gcp::translib
