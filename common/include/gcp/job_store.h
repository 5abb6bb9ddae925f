// SPDX-License-Identifier: MIT
#pragma once

// A job's records in the store as rounds and tools read them: the Job manifest (only
// for its owner and root), its lock, which checkpoints a restart may take, retention.

#include "gcp/fs.h"
#include "gcp/manifest.h"
#include "gcp/store.h"

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace gcp::jobs {

/// Loads a job, checking that the caller may touch it: throws Error(kUsage) when the
/// store has no such job and Error(kNotPermitted) when it belongs to another user.
manifest::Job load(store::Store& store, const std::string& job);

/// Takes the job's lock (after load()) or throws Error(kBusy).
fs::FileLock lock_job(store::Store& store, const std::string& job);

/// Removes the oldest committed checkpoints of a job beyond the newest `keep` (none
/// when empty); a failure is a warning.
void apply_retention(store::Store& store, const std::string& job, std::optional<uint64_t> keep);

/// The job's committed checkpoints, ascending; throws Error(kUsage) when there is none.
std::vector<uint64_t> restartable(store::Store& store, const std::string& job);

/// The newest of `all` that holds the whole job: a checkpoint a migration took of some
/// of its units is restarted only by that migration (or with --seq). A manifest that
/// cannot be read is passed over with a warning when `fallback`, and otherwise refused
/// (Error(kFailed)) naming the older checkpoint to take instead: one damaged manifest
/// never hides the others.
uint64_t latest_whole(store::Store& store, const std::string& job, const std::vector<uint64_t>& all, bool fallback);

/// The metadata of checkpoint `seq`, or nullopt with a warning when its manifest
/// cannot be read.
std::optional<manifest::Checkpoint> readable_metadata(store::Store& store, const std::string& job, uint64_t seq);

/// Records something in the job's policy history (gcp-policy(7)): loads the Job
/// manifest, lets `note` change its history, saves it. The caller holds the job's lock.
/// A failure is a warning: the history informs the policy, it never fails a round.
void note_history(store::Store& store, const std::string& job,
                  const std::function<void(manifest::History&, const manifest::Job&)>& note);

/// "unit 'a'" or "units 'a', 'b'", for messages.
std::string units_text(const std::vector<std::string>& units);

}  // namespace gcp::jobs
