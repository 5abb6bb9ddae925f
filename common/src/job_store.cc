// SPDX-License-Identifier: MIT
#include "gcp/job_store.h"

#include "gcp/caller.h"
#include "gcp/error.h"

#include <spdlog/spdlog.h>
#include <unistd.h>

namespace gcp::jobs {

manifest::Job load(store::Store& store, const std::string& job) {
  manifest::check_name("job", job);
  auto loaded = store.load_job(job);
  if (!loaded) {
    throw Error(Exit::kUsage, "job '" + job + "' is not in store '" + store.root().string() + "'",
                "list the jobs with 'gcp-isolate list', or pass --store");
  }
  uid_t me = caller::uid();
  if (me != 0 && me != loaded->owner) {
    // Whose it is stays unsaid: one user learns nothing of another's jobs.
    throw Error(Exit::kNotPermitted,
                "job '" + job + "' belongs to another user, not to you (uid " + std::to_string(me) + ")");
  }
  return *loaded;
}

fs::FileLock lock_job(store::Store& store, const std::string& job) {
  load(store, job);  // a job that does not exist or is not ours gets no lock file
  auto held = store.try_lock_job(job);
  if (!held) {
    throw Error(Exit::kBusy, "job '" + job + "' is busy: another checkpoint or restart holds its lock",
                "retry when it has finished");
  }
  return std::move(*held);
}

void note_history(store::Store& store, const std::string& job,
                  const std::function<void(manifest::History&, const manifest::Job&)>& note) {
  try {
    auto loaded = store.load_job(job);
    if (!loaded) return;
    note(loaded->history, *loaded);
    store.save_job(*loaded);
  } catch (const std::exception& e) {
    spdlog::warn("recording job '{}' in its policy history: {}", job, e.what());
  }
}

void apply_retention(store::Store& store, const std::string& job, std::optional<uint64_t> keep) {
  if (!keep) return;
  auto all = store.checkpoints(job);
  for (size_t i = 0; i + *keep < all.size(); ++i) {
    try {
      store.remove_checkpoint(job, all[i]);
      store.append_event(job, {{"event", "checkpoint-removed"}, {"seq", all[i]}, {"keep", *keep}});
    } catch (const Error& e) {
      spdlog::warn("keeping the last {} checkpoints of job '{}': {}", *keep, job, e.what());
    }
  }
}

std::vector<uint64_t> restartable(store::Store& store, const std::string& job) {
  auto all = store.checkpoints(job);
  if (all.empty()) {
    throw Error(Exit::kUsage, "job '" + job + "' has no committed checkpoint to restart",
                "take one with 'gcp-checkpoint " + job + "'");
  }
  return all;
}

uint64_t latest_whole(store::Store& store, const std::string& job, const std::vector<uint64_t>& all, bool fallback) {
  for (auto it = all.rbegin(); it != all.rend(); ++it) {
    try {
      if (!store.load_checkpoint_metadata(job, *it).partial) return *it;
    } catch (const Error& e) {
      auto older = std::next(it);
      if (!fallback) {
        throw Error(e.code(), e.what(),
                    older == all.rend()
                        ? "remove it with 'gcp-store rm " + job + " --seq " + std::to_string(*it) + "'"
                        : "checkpoint " + std::to_string(*older) + " is older: restart it with '--seq " +
                              std::to_string(*older) + "', or pass --fallback");
      }
      spdlog::warn("{} (passing over checkpoint {})", e.what(), *it);
    }
  }
  return all.back();
}

std::optional<manifest::Checkpoint> readable_metadata(store::Store& store, const std::string& job, uint64_t seq) {
  try {
    return store.load_checkpoint_metadata(job, seq);
  } catch (const Error& e) {
    spdlog::warn("{}", e.what());
    return std::nullopt;
  }
}

std::string units_text(const std::vector<std::string>& units) {
  std::string out = units.size() == 1 ? "unit " : "units ";
  for (size_t i = 0; i < units.size(); ++i) out += (i ? ", '" : "'") + units[i] + "'";
  return out;
}

}  // namespace gcp::jobs
