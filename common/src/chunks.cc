// SPDX-License-Identifier: MIT
#include "gcp/chunks.h"

#include "gcp/error.h"
#include "gcp/fs.h"

#include <fcntl.h>
#include <openssl/evp.h>
#include <spdlog/spdlog.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <exception>
#include <mutex>
#include <thread>

namespace gcp::chunks {

namespace {

constexpr char kPackMagic[8] = {'G', 'C', 'P', 'P', 'A', 'C', 'K', '1'};
constexpr char kIndexMagic[8] = {'G', 'C', 'P', 'I', 'D', 'X', '0', '1'};
constexpr size_t kEntryBytes = 32 + 8 + 4 + 4 + 4;

const EVP_MD* sha256_md() {
  // Fetched once: an implicit fetch per call costs more than hashing a page.
  static EVP_MD* md = EVP_MD_fetch(nullptr, "SHA256", nullptr);
  return md;
}

template <typename T>
void put(std::vector<uint8_t>& out, T v) {
  for (size_t i = 0; i < sizeof(T); ++i) out.push_back(static_cast<uint8_t>(v >> (8 * i)));
}

template <typename T>
T get(const uint8_t* p) {
  T v = 0;
  for (size_t i = 0; i < sizeof(T); ++i) v |= static_cast<T>(p[i]) << (8 * i);
  return v;
}

}  // namespace

std::string Hash::hex() const {
  static const char* digits = "0123456789abcdef";
  std::string out(64, '0');
  for (size_t i = 0; i < 32; ++i) {
    out[2 * i] = digits[bytes[i] >> 4];
    out[2 * i + 1] = digits[bytes[i] & 15];
  }
  return out;
}

Hash hash_of(std::span<const uint8_t> data) {
  // One context per thread, reused: measured the fastest call pattern for 4 KiB chunks
  // (tests/bench/hash-speed.cc).
  struct Ctx {
    EVP_MD_CTX* ctx = EVP_MD_CTX_new();
    ~Ctx() { EVP_MD_CTX_free(ctx); }
  };
  thread_local Ctx c;
  Hash h;
  unsigned int len = 0;
  if (!c.ctx || EVP_DigestInit_ex2(c.ctx, sha256_md(), nullptr) != 1 ||
      EVP_DigestUpdate(c.ctx, data.data(), data.size()) != 1 || EVP_DigestFinal_ex(c.ctx, h.bytes.data(), &len) != 1 ||
      len != 32) {
    throw Error(Exit::kFailed, "hashing a chunk: OpenSSL's SHA-256 failed");
  }
  return h;
}

namespace {

// zstd contexts, kept for reuse: a fresh one per frame costs an allocation and the
// clearing of its tables (at 256 KiB frames that was a third of ingest's time).
template <typename Ctx, Ctx* (*create)(), size_t (*destroy)(Ctx*)>
class ContextPool {
 public:
  ~ContextPool() {
    for (Ctx* c : free_) destroy(c);
  }
  struct Lease {
    ContextPool* pool;
    Ctx* ctx;
    ~Lease() { pool->put(ctx); }
  };
  Lease take() {
    {
      std::lock_guard lock(m_);
      if (!free_.empty()) {
        Ctx* c = free_.back();
        free_.pop_back();
        return {this, c};
      }
    }
    Ctx* c = create();
    if (!c) throw Error(Exit::kFailed, "zstd could not allocate a context (out of memory?)");
    return {this, c};
  }

 private:
  void put(Ctx* c) {
    std::lock_guard lock(m_);
    free_.push_back(c);
  }
  std::mutex m_;
  std::vector<Ctx*> free_;
};

ContextPool<ZSTD_CCtx, ZSTD_createCCtx, ZSTD_freeCCtx>& compressors() {
  static ContextPool<ZSTD_CCtx, ZSTD_createCCtx, ZSTD_freeCCtx> pool;
  return pool;
}
ContextPool<ZSTD_DCtx, ZSTD_createDCtx, ZSTD_freeDCtx>& decompressors() {
  static ContextPool<ZSTD_DCtx, ZSTD_createDCtx, ZSTD_freeDCtx> pool;
  return pool;
}

}  // namespace

size_t compress_into(std::span<const uint8_t> raw, int level, std::vector<uint8_t>& out) {
  size_t bound = ZSTD_compressBound(raw.size());
  if (out.size() < bound) out.resize(bound);
  auto lease = compressors().take();
  size_t n = ZSTD_compressCCtx(lease.ctx, out.data(), out.size(), raw.data(), raw.size(), level);
  if (ZSTD_isError(n)) {
    throw Error(Exit::kFailed, std::string("compressing a frame: ") + ZSTD_getErrorName(n));
  }
  return n;
}

bool decompress_into(std::span<const uint8_t> frame, std::vector<uint8_t>& out) {
  unsigned long long size = ZSTD_getFrameContentSize(frame.data(), frame.size());
  if (size == ZSTD_CONTENTSIZE_ERROR || size == ZSTD_CONTENTSIZE_UNKNOWN || size > 4 * kFrameBytes + kFileChunk) {
    return false;
  }
  out.resize(size);
  auto lease = decompressors().take();
  size_t n = ZSTD_decompressDCtx(lease.ctx, out.data(), out.size(), frame.data(), frame.size());
  return !ZSTD_isError(n) && n == size;
}

unsigned workers() { return std::max(1u, std::thread::hardware_concurrency()); }

void parallel_for(size_t n, unsigned threads, const std::function<void(size_t)>& fn) {
  std::atomic<size_t> next{0};
  std::exception_ptr first;
  std::mutex m;
  auto work = [&] {
    for (size_t i; (i = next.fetch_add(1)) < n;) {
      try {
        fn(i);
      } catch (...) {
        std::lock_guard lock(m);
        if (!first) first = std::current_exception();
        next = n;
      }
    }
  };
  std::vector<std::thread> pool;
  for (unsigned t = 1; t < std::min<size_t>(threads, n); ++t) pool.emplace_back(work);
  work();
  for (auto& t : pool) t.join();
  if (first) std::rethrow_exception(first);
}

std::string random_id() {
  uint8_t raw[16];
  int fd = ::open("/dev/urandom", O_RDONLY | O_CLOEXEC);
  if (fd < 0 || ::read(fd, raw, sizeof raw) != static_cast<ssize_t>(sizeof raw)) {
    if (fd >= 0) ::close(fd);
    throw_errno("reading /dev/urandom");
  }
  ::close(fd);
  Hash h;
  std::copy(raw, raw + 16, h.bytes.begin());
  return h.hex().substr(0, 32);
}

// ---- index files ----

struct Index::Mapped {
  const uint8_t* base = nullptr;
  size_t length = 0;
  size_t count = 0;
  uint32_t pack = 0;
  const uint8_t* entry(size_t i) const { return base + 16 + i * kEntryBytes; }
  ~Mapped() {
    if (base) ::munmap(const_cast<uint8_t*>(base), length);
  }
};

Index::Index() = default;
Index::~Index() = default;
Index::Index(Index&&) noexcept = default;
Index& Index::operator=(Index&&) noexcept = default;

std::vector<IndexEntry> read_index_file(const stdfs::path& path) {
  auto text = fs::try_read_regular(path, kMaxIndexBytes);
  if (!text) {
    errno = ENOENT;
    throw_errno("reading '" + path.string() + "'");
  }
  std::string data = std::move(*text);
  auto damaged = [&](const std::string& why) {
    return Error(Exit::kFailed, "index file '" + path.string() + "' is damaged: " + why,
                 "run 'gcp-store verify' and 'gcp-store gc'");
  };
  if (data.size() < 8 + 8 + 32 || std::memcmp(data.data(), kIndexMagic, 8) != 0) {
    throw damaged("bad header");
  }
  const auto* p = reinterpret_cast<const uint8_t*>(data.data());
  uint64_t count = get<uint64_t>(p + 8);
  if (count > (data.size() - 48) / kEntryBytes || 16 + count * kEntryBytes + 32 != data.size()) {
    throw damaged("its length does not match its entry count");
  }
  size_t body = data.size() - 32;
  if (std::memcmp(hash_of({p, body}).bytes.data(), p + body, 32) != 0) {
    throw damaged("checksum mismatch");
  }
  std::vector<IndexEntry> entries(count);
  const uint8_t* e = p + 16;
  for (auto& entry : entries) {
    std::copy(e, e + 32, entry.hash.bytes.begin());
    entry.loc.frame_offset = get<uint64_t>(e + 32);
    entry.loc.frame_length = get<uint32_t>(e + 40);
    entry.loc.offset = get<uint32_t>(e + 44);
    entry.loc.length = get<uint32_t>(e + 48);
    e += kEntryBytes;
  }
  return entries;
}

std::unique_ptr<Index::Mapped> Index::map_file(const stdfs::path& path) {
  auto damaged = [&](const std::string& why) {
    return Error(Exit::kFailed, "index file '" + path.string() + "' is damaged: " + why,
                 "run 'gcp-store verify' and 'gcp-store gc'");
  };
  uint64_t size = 0;
  int fd = fs::open_regular(path, &size);
  if (fd < 0 && errno == ELOOP) throw damaged("it is a symbolic link");
  if (fd < 0 && errno == EINVAL) throw damaged("it is not a regular file");
  if (fd < 0) throw_errno("reading '" + path.string() + "'");
  auto m = std::make_unique<Index::Mapped>();
  m->length = static_cast<size_t>(size);
  if (size > kMaxIndexBytes) {
    ::close(fd);
    throw damaged("it is larger than " + std::to_string(kMaxIndexBytes) + " bytes");
  }
  if (m->length < 8 + 8 + 32) {
    ::close(fd);
    throw damaged("bad header");
  }
  void* base = ::mmap(nullptr, m->length, PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd, 0);
  ::close(fd);
  if (base == MAP_FAILED) throw_errno("mapping '" + path.string() + "'");
  m->base = static_cast<const uint8_t*>(base);
  const uint8_t* p = m->base;
  if (std::memcmp(p, kIndexMagic, 8) != 0) throw damaged("bad header");
  uint64_t count = get<uint64_t>(p + 8);
  if (count > (m->length - 48) / kEntryBytes || 16 + count * kEntryBytes + 32 != m->length) {
    throw damaged("its length does not match its entry count");
  }
  size_t body = m->length - 32;
  if (std::memcmp(hash_of({p, body}).bytes.data(), p + body, 32) != 0) throw damaged("checksum mismatch");
  m->count = static_cast<size_t>(count);
  return m;
}

void write_index_file(const stdfs::path& path, const std::vector<IndexEntry>& entries, uid_t owner) {
  std::vector<uint8_t> out(kIndexMagic, kIndexMagic + 8);
  out.reserve(16 + entries.size() * kEntryBytes + 32);
  put<uint64_t>(out, entries.size());
  for (const auto& e : entries) {
    out.insert(out.end(), e.hash.bytes.begin(), e.hash.bytes.end());
    put<uint64_t>(out, e.loc.frame_offset);
    put<uint32_t>(out, e.loc.frame_length);
    put<uint32_t>(out, e.loc.offset);
    put<uint32_t>(out, e.loc.length);
  }
  Hash sum = hash_of(out);
  out.insert(out.end(), sum.bytes.begin(), sum.bytes.end());
  fs::write_file_atomic(path, std::string(out.begin(), out.end()), 0600);
  fs::grant_read(path, owner);
}

namespace {

constexpr uint32_t kAdded = 0xffffffffu;

}  // namespace

Index Index::load(const stdfs::path& packs_dir, const stdfs::path& index_dir) {
  Index index;
  index.packs_dir_ = packs_dir;
  index.index_dir_ = index_dir;
  std::error_code ec;
  std::vector<stdfs::path> files;
  for (const auto& e : stdfs::directory_iterator(index_dir, ec)) {
    if (e.path().extension() == ".idx" && e.path().filename().string()[0] != '.') {
      files.push_back(e.path());
    }
  }
  std::sort(files.begin(), files.end());
  // Mapped and checked in parallel (a GiB of checkpoints has ~260,000 entries), then
  // entered in order.
  std::vector<std::unique_ptr<Mapped>> mapped(files.size());
  parallel_for(files.size(), workers(), [&](size_t i) {
    std::error_code missing;
    // An index whose pack is gone must not be deduplicated against: a checkpoint
    // would then reference chunks that nobody can read.
    if (!stdfs::exists(packs_dir / (files[i].stem().string() + ".pack"), missing)) {
      spdlog::warn("index '{}' has no pack: its chunks count as missing ('gcp-store gc' removes it)",
                   files[i].string());
      return;
    }
    try {
      mapped[i] = map_file(files[i]);
    } catch (const Error& e) {
      spdlog::warn("{}", e.what());
    }
  });
  size_t total = 0;
  for (const auto& m : mapped) total += m ? m->count : 0;
  index.reserve(total);
  for (size_t i = 0; i < files.size(); ++i) {
    if (!mapped[i]) continue;
    mapped[i]->pack = index.add_pack(files[i].stem());
    index.files_.push_back(std::move(mapped[i]));
    const Mapped& m = *index.files_.back();
    const auto file = static_cast<uint64_t>(index.files_.size());  // slots count files from 1
    for (size_t e = 0; e < m.count; ++e) {
      Hash h;
      std::memcpy(h.bytes.data(), m.entry(e), 32);
      index.insert(h, (file << 32) | e);
    }
  }
  return index;
}

const uint8_t* Index::hash_at(Slot slot) const {
  auto file = static_cast<uint32_t>(slot >> 32);
  auto i = static_cast<size_t>(slot & 0xffffffffu);
  return file == kAdded ? added_[i].first.bytes.data() : files_[file - 1]->entry(i);
}

Location Index::location_at(Slot slot) const {
  auto file = static_cast<uint32_t>(slot >> 32);
  auto i = static_cast<size_t>(slot & 0xffffffffu);
  if (file == kAdded) return added_[i].second;
  const Mapped& m = *files_[file - 1];
  const uint8_t* e = m.entry(i);
  Location loc;
  loc.pack = m.pack;
  loc.frame_offset = get<uint64_t>(e + 32);
  loc.frame_length = get<uint32_t>(e + 40);
  loc.offset = get<uint32_t>(e + 44);
  loc.length = get<uint32_t>(e + 48);
  return loc;
}

std::optional<Location> Index::find(const Hash& h) const {
  if (slots_.empty()) return std::nullopt;
  const size_t mask = slots_.size() - 1;
  for (size_t i = HashHasher{}(h)&mask;; i = (i + 1) & mask) {
    if (slots_[i] == 0) return std::nullopt;
    if (std::memcmp(hash_at(slots_[i]), h.bytes.data(), 32) == 0) return location_at(slots_[i]);
  }
}

void Index::add(const Hash& h, const Location& loc) {
  if (find(h)) return;
  added_.emplace_back(h, loc);
  insert(h, (static_cast<uint64_t>(kAdded) << 32) | (added_.size() - 1));
}

void Index::insert(const Hash& h, Slot slot) {
  if ((size_ + 1) * 4 > slots_.size() * 3) reserve(std::max<size_t>(size_ + 1, 2 * size_));
  const size_t mask = slots_.size() - 1;
  for (size_t i = HashHasher{}(h)&mask;; i = (i + 1) & mask) {
    if (slots_[i] == 0) {
      slots_[i] = slot;
      ++size_;
      return;
    }
    if (std::memcmp(hash_at(slots_[i]), h.bytes.data(), 32) == 0) return;  // the first one stays
  }
}

void Index::reserve(size_t entries) {
  size_t want = 16;
  while (want * 3 < entries * 4 + 4) want *= 2;
  if (want <= slots_.size()) return;
  std::vector<Slot> old = std::move(slots_);
  slots_.assign(want, 0);
  const size_t mask = want - 1;
  for (Slot slot : old) {
    if (slot == 0) continue;
    Hash h;
    std::memcpy(h.bytes.data(), hash_at(slot), 32);
    size_t i = HashHasher{}(h)&mask;
    while (slots_[i] != 0) i = (i + 1) & mask;
    slots_[i] = slot;
  }
}

uint32_t Index::add_pack(const std::string& id) {
  packs_.push_back(id);
  return static_cast<uint32_t>(packs_.size() - 1);
}

// ---- writing ----

PackWriter::PackWriter(Index& index, const stdfs::path& index_dir, int level, uid_t owner)
    : index_(index), index_dir_(index_dir), level_(level), owner_(owner) {}

PackWriter::~PackWriter() {
  if (inflight_.valid()) {
    try {
      inflight_.get();
    } catch (const std::exception&) {
      // The failure was (or will not be) reported by the caller; only clean up here.
    }
  }
  if (fd_ >= 0) {
    ::close(fd_);
    ::unlink(tmp_.c_str());
  }
}

bool PackWriter::add(const Hash& h, std::span<const uint8_t> data) {
  if (index_.find(h) || !pending_.emplace(h, true).second) return false;
  if (queued_.empty() || queued_.back().raw.size() + data.size() > kFrameBytes) {
    queued_.push_back(spare_frame());
    queued_.back().raw.reserve(std::max(kFrameBytes, data.size()));
  }
  Frame& f = queued_.back();
  f.chunks.push_back({h, {static_cast<uint32_t>(f.raw.size()), static_cast<uint32_t>(data.size())}});
  f.raw.insert(f.raw.end(), data.begin(), data.end());
  new_bytes_ += data.size();
  return true;
}

void PackWriter::write_all(const void* data, size_t n) {
  const auto* p = static_cast<const uint8_t*>(data);
  while (n > 0) {
    ssize_t w = ::write(fd_, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) {
      throw_errno("writing pack '" + tmp_.string() + "'", Exit::kFailed,
                  errno == ENOSPC ? "the store is full: free space or remove old checkpoints "
                                    "('gcp-store rm', then 'gcp-store gc')"
                                  : "");
    }
    p += w;
    n -= static_cast<size_t>(w);
  }
}

void PackWriter::open_pack() {
  id_ = random_id();
  tmp_ = index_.packs_dir() / (".tmp-" + id_ + ".pack");
  fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd_ < 0) throw_errno("creating pack '" + tmp_.string() + "'");
  offset_ = 0;
  entries_.clear();
  write_all(kPackMagic, sizeof kPackMagic);
  offset_ = sizeof kPackMagic;
}

void PackWriter::close_pack() {
  if (fd_ < 0) return;
  if (::fsync(fd_) != 0) {
    throw_errno("syncing pack '" + tmp_.string() + "'", Exit::kFailed,
                errno == ENOSPC ? "the store is full: free space on its file system" : "");
  }
  ::close(fd_);
  fd_ = -1;
  auto final_path = index_.packs_dir() / (id_ + ".pack");
  if (::rename(tmp_.c_str(), final_path.c_str()) != 0) {
    int err = errno;
    ::unlink(tmp_.c_str());
    errno = err;
    throw_errno("publishing pack '" + final_path.string() + "'");
  }
  fs::grant_read(final_path, owner_);
  fs::fsync_path(index_.packs_dir());
  write_index_file(index_dir_ / (id_ + ".idx"), entries_, owner_);
  published_.emplace_back(id_, std::move(entries_));
  entries_.clear();
}

void PackWriter::write_batch(std::vector<Frame>& batch) {
  parallel_for(batch.size(), workers(),
               [&](size_t i) { batch[i].packed = compress_into(batch[i].raw, level_, batch[i].compressed); });
  for (auto& f : batch) {
    if (fd_ < 0) open_pack();
    write_all(f.compressed.data(), f.packed);
    for (const auto& [h, where] : f.chunks) {
      entries_.push_back({h, Location{0, offset_, static_cast<uint32_t>(f.packed), where.first, where.second}});
    }
    offset_ += f.packed;
    stored_bytes_ += f.packed;
    if (offset_ >= kPackBytes) close_pack();
  }
  // The frames' buffers go back for the next batches: memory touched before costs no
  // page faults (a first touch of a page costs ~25 us in this kind of VM).
  std::lock_guard lock(spare_m_);
  for (auto& f : batch) {
    f.raw.clear();
    f.chunks.clear();
    f.packed = 0;
    spare_.push_back(std::move(f));
  }
}

PackWriter::Frame PackWriter::spare_frame() {
  std::lock_guard lock(spare_m_);
  if (spare_.empty()) return {};
  Frame f = std::move(spare_.back());
  spare_.pop_back();
  return f;
}

void PackWriter::wait() {
  if (inflight_.valid()) inflight_.get();
  // Only this thread touches the index: the chunks of published packs join it here.
  for (auto& [id, entries] : published_) {
    uint32_t pack = index_.add_pack(id);
    for (auto& e : entries) {
      e.loc.pack = pack;
      index_.add(e.hash, e.loc);
    }
  }
  published_.clear();
}

void PackWriter::flush() {
  wait();
  if (queued_.empty()) return;
  // pending_ keeps the queued chunks from being queued twice until finish().
  inflight_ = std::async(std::launch::async, [this, batch = std::move(queued_)]() mutable { write_batch(batch); });
  queued_.clear();
}

void PackWriter::finish() {
  flush();
  wait();
  close_pack();
  wait();
  pending_.clear();
}

// ---- reading ----

ChunkReader::~ChunkReader() {
  for (auto& [pack, fd] : fds_) {
    if (fd >= 0) ::close(fd);
  }
}

int ChunkReader::pack_fd(uint32_t pack, std::string& why) {
  auto it = fds_.find(pack);
  if (it != fds_.end()) return it->second;
  auto path = index_.packs_dir() / (index_.packs().at(pack) + ".pack");
  int fd = fs::open_regular(path);
  if (fd < 0) {
    why = "pack '" + path.string() + "': " +
          (errno == ELOOP    ? "a symbolic link"
           : errno == EINVAL ? "not a regular file"
                             : std::strerror(errno));
  }
  fds_[pack] = fd;
  return fd;
}

const std::vector<uint8_t>* ChunkReader::frame(const Location& loc, std::string& why) {
  for (auto it = cache_.rbegin(); it != cache_.rend(); ++it) {
    if (it->pack == loc.pack && it->offset == loc.frame_offset) return &it->data;
  }
  int fd = pack_fd(loc.pack, why);
  if (fd < 0) return nullptr;
  // A damaged index entry must not make us allocate 4 GiB.
  if (loc.frame_length > ZSTD_compressBound(4 * kFrameBytes + kFileChunk)) {
    why = "pack " + index_.packs().at(loc.pack) + ": the index entry's frame length " +
          std::to_string(loc.frame_length) + " is larger than any frame";
    return nullptr;
  }
  compressed_.resize(loc.frame_length);
  try {
    fs::pread_all(fd, compressed_.data(), compressed_.size(), loc.frame_offset,
                  "pack " + index_.packs().at(loc.pack) + " at offset " + std::to_string(loc.frame_offset));
  } catch (const Error& e) {
    why = e.what();
    return nullptr;
  }
  // The oldest of 8 cached frames gives its buffer to the new one.
  Cached slot{loc.pack, loc.frame_offset, {}};
  if (cache_.size() >= 8) {
    slot.data = std::move(cache_.front().data);
    cache_.erase(cache_.begin());
  }
  if (!decompress_into(compressed_, slot.data)) {
    why = "pack " + index_.packs().at(loc.pack) + ": the frame at offset " + std::to_string(loc.frame_offset) +
          " does not decompress";
    return nullptr;
  }
  cache_.push_back(std::move(slot));
  return &cache_.back().data;
}

ChunkReader::Result ChunkReader::read(const Hash& h, std::span<uint8_t> out, std::string& why) {
  const auto loc = index_.find(h);
  if (!loc) {
    why = "no pack holds it";
    return Result::kMissing;
  }
  const auto* data = frame(*loc, why);
  if (!data) return Result::kDamaged;
  if (static_cast<size_t>(loc->offset) + loc->length > data->size() || loc->length != out.size()) {
    why = "pack " + index_.packs().at(loc->pack) + ": the index entry does not fit its frame";
    return Result::kDamaged;
  }
  std::copy_n(data->begin() + loc->offset, loc->length, out.begin());
  if (hash_of(out) != h) {
    why = "pack " + index_.packs().at(loc->pack) + ": its content does not match its hash";
    return Result::kMismatch;
  }
  return Result::kOk;
}

}  // namespace gcp::chunks
