// SPDX-License-Identifier: MIT
#pragma once

#include "gcp/error.h"
#include "gcp/fs.h"
#include "gcp/manifest.h"

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace gcp::log {
class Progress;
}

namespace gcp::store {

namespace stdfs = std::filesystem;

/// The store used when --store is not given: $GCP_STORE, else /var/lib/gcp for root,
/// else $XDG_DATA_HOME/gcp (~/.local/share/gcp).
stdfs::path default_root();

/// Where dumps land before they are stored and images are materialized for a
/// restart: a directory on local disk, $GCP_SCRATCH, else /var/tmp/gcp for root,
/// else $XDG_RUNTIME_DIR/gcp or /tmp/gcp-<uid>.
stdfs::path scratch_root();

/// A directory of its own under scratch_root(), removed with this object; gc removes
/// one left behind by a process that died (its lock is then free).
class ScratchDir {
 public:
  /// Creates scratch_root()/<prefix>-XXXXXX.
  explicit ScratchDir(const std::string& prefix);
  ~ScratchDir();
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;
  const stdfs::path& path() const { return path_; }

 private:
  stdfs::path path_;
  std::optional<fs::FileLock> lock_;
};

/// A checkpoint being written. The translib dumps unit images into unit_dir(unit),
/// on local disk; commit() stores them. While a Staging lives, gc leaves it alone.
struct Staging {
  std::string job;
  uint64_t seq = 0;
  stdfs::path dir;  ///< local scratch directory
  /// Per unit, the image files (relative paths) whose content is page-aligned: they
  /// are cut into page-sized chunks, other files are stored in larger pieces.
  std::map<std::string, std::set<std::string>> page_aligned;
  std::shared_ptr<void> held;  ///< the locks that mark it as in flight
  /// This node's part of a checkpoint whose job checkpointer runs elsewhere (join()):
  /// abort() removes only the local directory.
  bool joined = false;
  /// Where the images of one unit go.
  stdfs::path unit_dir(const std::string& unit) const { return dir / unit; }
};

/// A checkpoint's data cannot be read back whole: a chunk is missing, damaged or does
/// not match its hash. The message names the checkpoint, the unit and the file.
class Corrupt : public Error {
 public:
  using Error::Error;
};

/// What gc did.
struct GcReport {
  uint64_t staging_removed = 0;  ///< abandoned staging and scratch directories
  uint64_t packs_removed = 0;    ///< packs with no referenced chunk
  uint64_t packs_repacked = 0;   ///< packs rewritten without their unreferenced chunks
  uint64_t bytes_freed = 0;      ///< pack bytes removed, net of what repacking wrote
  uint64_t chunks_removed = 0;
  std::vector<uid_t> busy_owners;  ///< owners skipped: a checkpoint was in flight
};

/// What verify found for one checkpoint.
struct VerifyReport {
  uint64_t chunks = 0;
  uint64_t bytes = 0;
  std::vector<std::string> problems;  ///< one line per bad file
};

/// Where checkpoints live (DESIGN.md, Store). A checkpoint exists only once commit()
/// has returned: a crash, a full disk or an abort at any earlier point leaves the
/// previous checkpoint as the latest one, whole.
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

  /// Allocates the next sequence number and an empty local staging directory.
  virtual Staging begin(const std::string& job) = 0;
  /// The local part of checkpoint `seq`, which a job checkpointer on another node
  /// began: a local directory for the units of this node (`part` names it).
  virtual Staging join(const std::string& job, uint64_t seq, const std::string& part) = 0;
  /// Stores the staged images (chunked, deduplicated against the owner's chunks,
  /// compressed), fills in each unit's images, the byte counts (raw, new, stored) and
  /// timings.storeMs, and commits the checkpoint atomically. Throws (and leaves the
  /// previous checkpoint the latest) when anything fails; the caller then calls abort().
  /// The same as ingest() then publish().
  virtual void commit(Staging& staging, manifest::Checkpoint& checkpoint) = 0;
  /// Stores the staged images of the units in `checkpoint` (as commit() does) without
  /// committing: from here until abort() or the commit, gc leaves their chunks alone.
  virtual void ingest(Staging& staging, manifest::Checkpoint& checkpoint) = 0;
  /// Commits a checkpoint whose units' images were stored by ingest(), here or on the
  /// nodes: writes the manifest and renames it into place.
  virtual void publish(Staging& staging, manifest::Checkpoint& checkpoint) = 0;
  /// Removes a staging directory; never throws.
  virtual void abort(Staging& staging) noexcept = 0;

  /// Committed checkpoint sequence numbers of a job, ascending.
  virtual std::vector<uint64_t> checkpoints(const std::string& job) = 0;
  /// The manifest of a committed checkpoint; throws Error naming job and seq when absent.
  virtual manifest::Checkpoint load_checkpoint(const std::string& job, uint64_t seq) = 0;
  /// The same without the images' chunk lists (their `digests` stay empty): what deciding
  /// about a checkpoint or listing it needs, at a fraction of the cost (the chunk list of
  /// a 1 GiB unit is 8 MiB).
  virtual manifest::Checkpoint load_checkpoint_metadata(const std::string& job, uint64_t seq) = 0;
  /// Loads what reading the job's checkpoints needs (its owner's chunk index) now, so
  /// that the first read does not wait for it.
  virtual void prepare_read(const std::string& job) = 0;
  /// Writes the unit's images into `into` (created), every chunk verified against its
  /// hash; throws Corrupt naming the checkpoint, unit and file when one is missing or
  /// damaged.
  virtual void materialize(const manifest::Checkpoint& checkpoint, const std::string& unit,
                           const stdfs::path& into) = 0;
  /// Hands one image of a unit to `sink` in order, in pieces of up to 1 MiB, each chunk
  /// verified before any of its bytes is handed over. Stops at the first chunk that is
  /// missing or damaged and returns the Corrupt error naming it; a sink that returns
  /// false (its reader has gone) ends it quietly. Adds the bytes handed over to
  /// `progress` when given. Callable from several threads. The sink may keep a piece's
  /// memory: it swaps the vector with one of its own (empty or a used one), which the
  /// store fills next, so that no piece is copied on its way.
  using Sink = std::function<bool(std::vector<uint8_t>& piece)>;
  virtual std::optional<Corrupt> stream_image(const manifest::Checkpoint& checkpoint, const std::string& unit,
                                              const manifest::ImageFile& image, const Sink& sink,
                                              log::Progress* progress) = 0;
  /// Reads every chunk of a checkpoint and checks it; never throws for bad data.
  virtual VerifyReport verify(const manifest::Checkpoint& checkpoint) = 0;

  /// Removes a committed checkpoint (its chunks go with the next gc).
  virtual void remove_checkpoint(const std::string& job, uint64_t seq) = 0;
  /// Removes a job's record and all its checkpoints.
  virtual void remove_job(const std::string& job) = 0;
  /// Removes unreferenced chunks and abandoned staging; an owner with a checkpoint in
  /// flight is skipped unless that ends within `wait`.
  virtual GcReport gc(std::chrono::seconds wait) = 0;
  /// Bytes on disk per owner: packs, chunks, referenced raw bytes.
  virtual manifest::json usage() = 0;

  /// Appends one event (checkpoint, failure, restart) to the job's events.jsonl.
  virtual void append_event(const std::string& job, manifest::json event) = 0;
};

/// How a store writes.
struct Options {
  int level = 3;  ///< zstd level for new frames ($GCP_ZSTD_LEVEL when not given)
};

/// What open() does when the store's directory does not exist.
enum class IfMissing {
  kRefuse,  ///< Error(kUsage): a mistyped --store must not make a new, empty store
  kCreate,  ///< make it (a tool that starts or registers a job)
};

/// Opens the chunk store at `dir`, or at default_root() when `dir` is empty (which is
/// made when missing). The directory itself must exist unless `if_missing` says to
/// make it; what a store holds inside it is made as needed.
std::unique_ptr<Store> open(const std::string& dir, std::optional<Options> options = {},
                            IfMissing if_missing = IfMissing::kRefuse);

/// A checkpoint's chunk list (chunks.bin): "GCPCHK01", the count (u64, little-endian),
/// the SHA-256 of every chunk of every image in manifest order (32 bytes each), then the
/// SHA-256 of all before it, which the manifest's chunkList.sha256 also records.
inline constexpr char kChunkListMagic[8] = {'G', 'C', 'P', 'C', 'H', 'K', '0', '1'};

/// Fills in every image's digests of `checkpoint` from the bytes of its chunk list;
/// returns what is wrong (and changes nothing that matters) when they do not fit the
/// manifest's images, their length, header or checksum.
std::optional<std::string> apply_chunk_list(std::string_view data, manifest::Checkpoint& checkpoint);

/// Checks a zstd level given by a user; throws Error(kUsage) naming `source`.
int check_level(long level, const std::string& source);

}  // namespace gcp::store
