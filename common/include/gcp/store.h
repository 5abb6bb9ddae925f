// SPDX-License-Identifier: MIT
#pragma once

#include "gcp/fs.h"
#include "gcp/manifest.h"

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace gcp::store {

namespace stdfs = std::filesystem;

/// The store used when --store is not given: $GCP_STORE, else /var/lib/gcp for root,
/// else $XDG_DATA_HOME/gcp (~/.local/share/gcp).
stdfs::path default_root();

/// A checkpoint being written: the translib dumps unit images into unit_dir(unit).
struct Staging {
  std::string job;
  uint64_t seq = 0;
  stdfs::path dir;
  /// Where the images of one unit go.
  stdfs::path unit_dir(const std::string& unit) const { return dir / unit; }
};

/// Where checkpoints live. A checkpoint exists only once commit() has returned: a
/// crash, a full disk or an abort at any earlier point leaves the previous checkpoint
/// as the latest one, whole. The chunk store implements the same interface.
class Store {
 public:
  virtual ~Store() = default;

  /// The store's root directory.
  virtual const stdfs::path& root() const = 0;

  /// Names of all jobs in the store, sorted.
  virtual std::vector<std::string> jobs() = 0;
  /// The Job manifest of a job; nullopt when the job is unknown.
  virtual std::optional<manifest::Job> load_job(const std::string& job) = 0;
  /// Writes the Job manifest atomically (creates the job's directories).
  virtual void save_job(const manifest::Job& job) = 0;
  /// The job's directory (unit output files and logs live below it).
  virtual stdfs::path job_dir(const std::string& job) = 0;
  /// Takes the job's lock (one checkpoint or restart at a time); nullopt when held.
  virtual std::optional<fs::FileLock> try_lock_job(const std::string& job) = 0;

  /// Allocates the next sequence number and an empty staging directory.
  virtual Staging begin(const std::string& job) = 0;
  /// Stores the staged images, fills in each unit's images, the byte counts and
  /// timings.storeMs (time to store the images, up to the commit), and
  /// commits the checkpoint atomically. Throws (and leaves the previous checkpoint the
  /// latest) when anything fails; the caller then calls abort().
  virtual void commit(const Staging& staging, manifest::Checkpoint& checkpoint) = 0;
  /// Removes a staging directory; never throws.
  virtual void abort(const Staging& staging) noexcept = 0;

  /// Committed checkpoint sequence numbers of a job, ascending.
  virtual std::vector<uint64_t> checkpoints(const std::string& job) = 0;
  /// The manifest of a committed checkpoint; throws Error naming job and seq when absent.
  virtual manifest::Checkpoint load_checkpoint(const std::string& job, uint64_t seq) = 0;
  /// A directory holding the unit's images, each verified against the manifest (size
  /// and hash); throws Error naming the checkpoint and the file on a mismatch.
  virtual stdfs::path materialize(const manifest::Checkpoint& checkpoint,
                                  const std::string& unit) = 0;

  /// Appends one event (checkpoint, failure, restart) to the job's events.jsonl.
  virtual void append_event(const std::string& job, manifest::json event) = 0;
};

/// Opens the store at `dir`, or at default_root() when `dir` is empty.
std::unique_ptr<Store> open(const std::string& dir);

/// Opens (creating if needed) the plain-directory store at `root`: one directory per
/// checkpoint, committed by renaming its staging directory into place.
std::unique_ptr<Store> open_dir_store(const stdfs::path& root);

/// Hex SHA-256 of a file's content.
std::string sha256_file(const stdfs::path& path);

}  // namespace gcp::store
