// SPDX-License-Identifier: MIT
// The chunk layer of the store: content-addressed chunks, compressed together in
// frames, appended to immutable pack files, found through per-pack index files.
//
//   packs/<owner>/<id>.pack   "GCPPACK1" then zstd frames, each holding whole chunks
//   index/<owner>/<id>.idx    "GCPIDX01", count, entries, SHA-256 of all before it
//
// A pack and its index are written as temp + fsync + rename, pack first; nothing
// that exists under its final name is ever written again.
#pragma once

#include <sys/types.h>

#include <array>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

namespace gcp::chunks {

namespace stdfs = std::filesystem;

/// A chunk's name: its SHA-256 (tests/bench/hash-speed.cc says why SHA-256).
struct Hash {
  std::array<uint8_t, 32> bytes{};
  bool operator==(const Hash&) const = default;
  std::string hex() const;
};

struct HashHasher {
  size_t operator()(const Hash& h) const noexcept {
    size_t v;
    std::memcpy(&v, h.bytes.data(), sizeof v);
    return v;
  }
};

/// SHA-256 of a buffer.
Hash hash_of(std::span<const uint8_t> data);

/// Page images are cut into page-sized chunks, so that a rewritten page costs one
/// chunk; other files are cut into pieces of at most this size.
inline constexpr uint32_t kPageChunk = 4096;
inline constexpr uint32_t kFileChunk = 1 << 20;
/// Raw bytes of chunks compressed together in one frame.
inline constexpr size_t kFrameBytes = 256 * 1024;
/// A pack is closed when it holds this many compressed bytes.
inline constexpr uint64_t kPackBytes = 64ull << 20;

/// Largest index file read (about 20 million chunks): a larger one is not gcp's.
inline constexpr size_t kMaxIndexBytes = 1ull << 30;

/// Where a chunk is: its pack, the frame, and its place in the decompressed frame.
struct Location {
  uint32_t pack = 0;          ///< index into Index::packs()
  uint64_t frame_offset = 0;  ///< byte offset of the zstd frame in the pack
  uint32_t frame_length = 0;  ///< compressed length of the frame
  uint32_t offset = 0;        ///< offset of the chunk in the decompressed frame
  uint32_t length = 0;        ///< chunk length
};

/// The chunks of one owner: hash -> location, loaded from index/<owner>/*.idx.
class Index {
 public:
  Index();
  ~Index();
  Index(Index&&) noexcept;
  Index& operator=(Index&&) noexcept;

  /// Loads every index file of the owner's directories; a damaged index file is
  /// skipped with a warning (its chunks then count as missing).
  static Index load(const stdfs::path& packs_dir, const stdfs::path& index_dir);

  std::optional<Location> find(const Hash& h) const;
  /// Enters a chunk; a hash already entered keeps its first location.
  void add(const Hash& h, const Location& loc);
  size_t size() const { return size_; }
  /// Pack ids, in the order Location::pack refers to them.
  const std::vector<std::string>& packs() const { return packs_; }
  uint32_t add_pack(const std::string& id);
  const stdfs::path& packs_dir() const { return packs_dir_; }

 private:
  struct Mapped;  // one .idx file, mapped read-only
  /// Maps one .idx file and checks its header, length and checksum.
  static std::unique_ptr<Mapped> map_file(const stdfs::path& path);
  using Slot = uint64_t;
  const uint8_t* hash_at(Slot slot) const;
  Location location_at(Slot slot) const;
  void insert(const Hash& h, Slot slot);
  void reserve(size_t entries);

  stdfs::path packs_dir_, index_dir_;
  std::vector<std::string> packs_;
  // The entries stay where they are, in the mapped index files (no fresh memory to
  // fill: in this VM a first touch of a page costs ~10 us) and in added_; the table
  // is open addressing with linear probing over a power of two, at most 3/4 full,
  // keyed by the hash's first bytes (SHA-256 needs no further hashing). A slot is 0
  // when empty, else (file + 1) << 32 | entry, file kAdded meaning added_.
  std::vector<std::unique_ptr<Mapped>> files_;
  std::vector<std::pair<Hash, Location>> added_;
  std::vector<Slot> slots_;
  size_t size_ = 0;
};

/// One index entry as stored in an .idx file.
struct IndexEntry {
  Hash hash;
  Location loc;  // loc.pack unused in the file
};

/// Reads one .idx file; throws Error when it is damaged.
std::vector<IndexEntry> read_index_file(const stdfs::path& path);
/// Writes one .idx file atomically.
void write_index_file(const stdfs::path& path, const std::vector<IndexEntry>& entries, uid_t owner);

/// Appends new chunks to pack files: chunks are gathered into frames, frames are
/// compressed in parallel, packs are rotated at kPackBytes. Nothing becomes visible
/// until a pack is complete: then the pack is renamed into place, then its index.
class PackWriter {
 public:
  /// `index` receives the locations of the chunks written; `level` is zstd's; the
  /// files get mode 0600 and read access for `owner` (fs::grant_read).
  PackWriter(Index& index, const stdfs::path& index_dir, int level, uid_t owner);
  ~PackWriter();  // removes an unfinished temporary pack
  PackWriter(const PackWriter&) = delete;
  PackWriter& operator=(const PackWriter&) = delete;

  /// Queues a chunk (copied); returns false when the index already has it or it
  /// was queued before.
  bool add(const Hash& h, std::span<const uint8_t> data);
  /// Hands what is queued to the background writer, which compresses and writes it
  /// while the caller goes on; waits for the previous batch first (one in flight).
  void flush();
  /// Waits until the background writer is done with everything flushed so far
  /// (stored_bytes() is then exact). Throws what the writer failed with.
  void wait();
  /// Writes everything and publishes the last pack. Throws on failure.
  void finish();

  uint64_t new_bytes() const { return new_bytes_; }
  uint64_t stored_bytes() const { return stored_bytes_; }

 private:
  struct Frame {
    std::vector<uint8_t> raw;
    std::vector<std::pair<Hash, std::pair<uint32_t, uint32_t>>> chunks;  // hash, off, len
    std::vector<uint8_t> compressed;                                     // its first `packed` bytes are the frame
    size_t packed = 0;
  };
  Frame spare_frame();  // a written frame's buffers, emptied, or a new frame
  void open_pack();
  void close_pack();
  void write_all(const void* data, size_t n);
  void write_batch(std::vector<Frame>& batch);

  Index& index_;
  stdfs::path index_dir_;
  int level_;
  uid_t owner_;
  std::vector<Frame> queued_;
  std::mutex spare_m_;
  std::vector<Frame> spare_;  // written frames, for reuse
  std::unordered_map<Hash, bool, HashHasher> pending_;
  int fd_ = -1;
  std::string id_;
  stdfs::path tmp_;
  uint64_t offset_ = 0;
  std::vector<IndexEntry> entries_;
  // Packs published by the writer, added to index_ by the caller's thread in wait().
  std::vector<std::pair<std::string, std::vector<IndexEntry>>> published_;
  std::future<void> inflight_;
  uint64_t new_bytes_ = 0, stored_bytes_ = 0;
};

/// Reads chunks back: fetches and decompresses frames (a few kept per reader) and
/// checks every chunk against its hash.
class ChunkReader {
 public:
  explicit ChunkReader(const Index& index) : index_(index) {}
  ~ChunkReader();
  ChunkReader(const ChunkReader&) = delete;
  ChunkReader& operator=(const ChunkReader&) = delete;

  enum class Result { kOk, kMissing, kDamaged, kMismatch };
  /// Copies the chunk into `out` (which must have its length) and verifies it.
  /// `why` receives a short reason when the result is not kOk.
  Result read(const Hash& h, std::span<uint8_t> out, std::string& why);

 private:
  const std::vector<uint8_t>* frame(const Location& loc, std::string& why);
  int pack_fd(uint32_t pack, std::string& why);

  const Index& index_;
  std::unordered_map<uint32_t, int> fds_;
  struct Cached {
    uint32_t pack;
    uint64_t offset;
    std::vector<uint8_t> data;
  };
  std::vector<Cached> cache_;        // most recent last
  std::vector<uint8_t> compressed_;  // reused: fresh buffers cost page faults, not copies
};

/// Compresses one buffer as a zstd frame at `level` into `out` (grown when too small,
/// never shrunk: its memory is reused); returns the frame's length.
size_t compress_into(std::span<const uint8_t> raw, int level, std::vector<uint8_t>& out);
/// Decompresses one zstd frame into `out` (resized; its memory is reused); false when
/// it is not a valid frame.
bool decompress_into(std::span<const uint8_t> frame, std::vector<uint8_t>& out);

/// Runs fn(i) for i in [0, n) on up to `threads` threads (the calling one included).
void parallel_for(size_t n, unsigned threads, const std::function<void(size_t)>& fn);
/// Worker threads to use: the number of CPUs, at least 1.
unsigned workers();

/// A random 128-bit id in hex, for pack names.
std::string random_id();

}  // namespace gcp::chunks
