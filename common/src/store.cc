// SPDX-License-Identifier: MIT
#include "gcp/store.h"

#include "gcp/caller.h"
#include "gcp/chunks.h"
#include "gcp/error.h"
#include "gcp/events.h"
#include "gcp/log.h"
#include "gcp/names.h"
#include "gcp/progress.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <mutex>
#include <unordered_set>

namespace gcp::store {

stdfs::path default_root() {
  // A user's environment never picks root's store (gcp-user clears it anyway).
  if (caller::for_user()) return names::kDefaultRootStore;
  if (const char* env = std::getenv(names::kEnvStore); env && *env) return env;
  if (::geteuid() == 0) return names::kDefaultRootStore;
  if (const char* xdg = std::getenv("XDG_DATA_HOME"); xdg && *xdg) return stdfs::path(xdg) / "gcp";
  if (const char* home = std::getenv("HOME"); home && *home) {
    return stdfs::path(home) / ".local/share/gcp";
  }
  throw Error(Exit::kUsage, "finding the default store: neither GCP_STORE nor HOME is set",
              "pass --store DIR or set GCP_STORE");
}

stdfs::path scratch_root() {
  if (caller::for_user()) return "/var/tmp/gcp";
  if (const char* env = std::getenv(names::kEnvScratch); env && *env) return env;
  if (::geteuid() == 0) return "/var/tmp/gcp";
  if (const char* run = std::getenv("XDG_RUNTIME_DIR"); run && *run) return stdfs::path(run) / "gcp";
  return "/tmp/gcp-" + std::to_string(::geteuid());
}

ScratchDir::ScratchDir(const std::string& prefix) {
  auto root = scratch_root();
  // Dumps of jobs land here: a directory someone else made first could read them, or
  // change them before they are stored.
  if (root.has_parent_path()) fs::make_dirs(root.parent_path(), 0755);
  try {
    fs::make_own_dir(root, "scratch directory");
  } catch (const Error& e) {
    throw Error(e.code(), e.what(), e.hint() + ", or set " + names::kEnvScratch + " to a directory of yours");
  }
  std::string tmpl = (root / (prefix + "-XXXXXX")).string();
  if (!::mkdtemp(tmpl.data())) {
    throw_errno("creating a scratch directory in '" + root.string() + "'", Exit::kFailed,
                "set GCP_SCRATCH to a local directory with room for the job's memory");
  }
  path_ = tmpl;
  lock_ = fs::FileLock::try_lock(path_ / ".lock");
}

ScratchDir::~ScratchDir() { fs::remove_tree_quietly(path_); }

int check_level(long level, const std::string& source) {
  if (level < -7 || level > 19 || level == 0) {
    throw Error(Exit::kUsage, source + ": zstd level " + std::to_string(level) + " is out of range",
                "use 1 (fast) to 19 (small), or -7 to -1 for faster still; 3 is the default");
  }
  return static_cast<int>(level);
}

std::optional<std::string> apply_chunk_list(std::string_view data, manifest::Checkpoint& cp) {
  uint64_t count = cp.chunk_list.is_object() ? manifest::count_or(cp.chunk_list, "count") : 0, expected = 0;
  for (const auto& u : cp.units) {
    for (const auto& image : u.images) expected += image.chunk_count();  // bounded (manifest.h)
  }
  if (count != expected) return "does not fit the manifest (" + std::to_string(count) + " chunks listed)";
  if (data.size() != 16 + count * 32 + 32 || std::memcmp(data.data(), kChunkListMagic, 8) != 0) {
    return "has the wrong length or header (truncated?)";
  }
  const auto* p = reinterpret_cast<const uint8_t*>(data.data());
  uint64_t listed = 0;
  for (size_t b = 0; b < 8; ++b) listed |= static_cast<uint64_t>(p[8 + b]) << (8 * b);
  if (listed != count) return "has the wrong length or header (truncated?)";
  auto sum = chunks::hash_of({p, data.size() - 32});
  if (std::memcmp(sum.bytes.data(), p + data.size() - 32, 32) != 0 ||
      sum.hex() != (cp.chunk_list.contains("sha256") && cp.chunk_list["sha256"].is_string()
                        ? cp.chunk_list["sha256"].get<std::string>()
                        : std::string())) {
    return "does not match its SHA-256 (corrupted)";
  }
  const uint8_t* at = p + 16;
  for (auto& u : cp.units) {
    for (auto& image : u.images) {
      size_t bytes = image.chunk_count() * manifest::ImageFile::kDigestBytes;
      image.digests.assign(reinterpret_cast<const char*>(at), bytes);
      at += bytes;
    }
  }
  return std::nullopt;
}

namespace {

using manifest::json;
using Clock = std::chrono::steady_clock;
namespace chunks = gcp::chunks;

// Read, hashed and stored in blocks of this size. Small on purpose: the block and the
// frames of the two batches in flight are memory touched for the first time, which
// costs more than the work itself in this kind of VM (~25 us a page); 2 MiB blocks
// stored 128 MiB in 0.62-0.65 s here, 16 MiB blocks in 1.1-1.35 s.
constexpr size_t kBlockBytes = 2 << 20;
constexpr size_t kReadSegmentBytes = 1 << 20;  // read back, verified and written in pieces of this size (cache-sized)

std::optional<uint64_t> parse_seq(const std::string& name) {
  if (name.empty() || name.size() > 18) return std::nullopt;
  if (!std::all_of(name.begin(), name.end(), [](char c) { return c >= '0' && c <= '9'; })) return std::nullopt;
  return std::stoull(name);
}

// A uid as the store names its packs and index directories; nullopt for anything else
// (an index directory named 99999999999999999999 is not a uid).
std::optional<uid_t> parse_uid(const std::string& name) {
  if (name.empty() || name.size() > 10 || !std::all_of(name.begin(), name.end(), ::isdigit)) return std::nullopt;
  unsigned long id = std::stoul(name);
  if (id >= std::numeric_limits<uid_t>::max()) return std::nullopt;
  return static_cast<uid_t>(id);
}

double ms_since(Clock::time_point t) {
  return std::round(std::chrono::duration<double, std::milli>(Clock::now() - t).count() * 10) / 10;
}

// A directory that only root and `owner` may read: 0700 root's, plus a POSIX ACL entry
// for the owner when the file system has ACLs.
void make_private_dir(const stdfs::path& dir, uid_t owner) {
  fs::make_dirs(dir, 0700);
  fs::grant_read(dir, owner);
}

// Everything kept for a Staging while it is in flight.
struct InFlight {
  std::optional<fs::FileLock> staging_lock;
  std::optional<fs::FileLock> owner_lock;  // shared, from the first chunk stored until the end
  std::optional<ScratchDir> scratch;
};

chunks::Hash digest_of(const manifest::ImageFile& image, size_t i) {
  chunks::Hash h;
  std::memcpy(h.bytes.data(), image.digest(i).data(), h.bytes.size());
  return h;
}

// Reads chunks [begin, end) of `image` into `buf` (resized), each verified against its
// hash; stops at the first that is not and returns its index and what is wrong with it.
// `give_up` (when given) is the index of a bad chunk another worker found: reading
// stops quietly past it.
std::optional<std::pair<size_t, std::string>> read_chunks(chunks::ChunkReader& reader, const manifest::ImageFile& image,
                                                          size_t begin, size_t end, std::vector<uint8_t>& buf,
                                                          const std::atomic<size_t>* give_up = nullptr) {
  uint64_t length = 0;
  for (size_t i = begin; i < end; ++i) length += image.chunk_length(i);
  buf.resize(length);
  size_t at = 0;
  for (size_t i = begin; i < end; ++i) {
    if (give_up && give_up->load(std::memory_order_relaxed) < i) return std::nullopt;
    std::string why;
    std::span<uint8_t> out(buf.data() + at, image.chunk_length(i));
    auto result = reader.read(digest_of(image, i), out, why);
    if (result != chunks::ChunkReader::Result::kOk) {
      const char* what = result == chunks::ChunkReader::Result::kMissing    ? "is missing"
                         : result == chunks::ChunkReader::Result::kMismatch ? "is corrupt"
                                                                            : "is unreadable";
      return std::make_pair(i, std::string(what) + " (" + why + ")");
    }
    at += out.size();
  }
  return std::nullopt;
}

std::string describe_bad_chunk(const manifest::ImageFile& image, const std::pair<size_t, std::string>& bad) {
  return "chunk " + std::to_string(bad.first) + " (" + image.digest_hex(bad.first, 12) + "...) " + bad.second;
}

// Images are read back in pieces of kReadSegmentBytes that stay in the CPU's cache
// between being copied out of their frames, hashed and written (16 MiB pieces made
// reading back 1.6x slower).
size_t chunks_per_segment(const manifest::ImageFile& image) {
  return std::max<size_t>(1, kReadSegmentBytes / image.chunk_size);
}

// Writes `buf` at `offset` of a file.
void write_at(int fd, const std::vector<uint8_t>& buf, uint64_t offset, const std::string& path) {
  for (size_t done = 0; done < buf.size();) {
    ssize_t w = ::pwrite(fd, buf.data() + done, buf.size() - done, static_cast<off_t>(offset + done));
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) {
      throw_errno(
          "writing image '" + path + "'", Exit::kFailed,
          errno == ENOSPC ? "free space in " + scratch_root().string() + " or set GCP_SCRATCH to a larger disk" : "");
    }
    done += static_cast<size_t>(w);
  }
}

// Reads every chunk of an image and verifies it; writes the image to `fd` unless it is -1.
// Returns what is wrong with the first bad chunk.
std::optional<std::string> read_image(const chunks::Index& index, const manifest::ImageFile& image, int fd,
                                      log::Progress* progress) {
  const size_t per_segment = chunks_per_segment(image);
  const size_t n = image.chunk_count();
  const size_t segments = (n + per_segment - 1) / per_segment;
  std::mutex m;
  std::optional<std::pair<size_t, std::string>> first;  // lowest bad chunk and why
  std::atomic<size_t> first_bad{n};                     // its index, read without the lock
  // Each worker takes a contiguous range of segments, with one reader and one buffer.
  const unsigned threads = static_cast<unsigned>(std::min<size_t>(chunks::workers(), std::max<size_t>(1, segments)));
  chunks::parallel_for(threads, threads, [&](size_t t) {
    chunks::ChunkReader reader(index);
    std::vector<uint8_t> buf;
    const size_t range_end = (t + 1) * segments / threads;
    for (size_t s = t * segments / threads; s < range_end; ++s) {
      const size_t begin = s * per_segment, end = std::min(n, (s + 1) * per_segment);
      if (auto bad = read_chunks(reader, image, begin, end, buf, &first_bad)) {
        std::lock_guard lock(m);
        if (!first || bad->first < first->first) {
          first = std::move(bad);
          first_bad = first->first;
        }
        return;
      }
      if (first_bad.load(std::memory_order_relaxed) < end) return;
      if (fd >= 0) write_at(fd, buf, static_cast<uint64_t>(begin) * image.chunk_size, image.path);
      if (progress) progress->add(buf.size());
    }
  });
  if (!first) return std::nullopt;
  return describe_bad_chunk(image, *first);
}

// Hands an image to `sink` in order, every chunk verified before its bytes go out.
// Returns what is wrong with the first bad chunk, where it stops; a sink that says its
// reader went away ends it quietly. Two workers read and verify the segments in turn
// (segment s by worker s % 2), each with its own reader and buffer, and hand them to
// `sink` in order: one alone, copying and hashing 1 MiB in ~1 ms, kept a restoring
// CRIU waiting (cold restarts of 256 MiB: 590 ms with one, 455 ms with two and no copy
// into the image source's buffers; medians of 6).
std::optional<std::string> stream_image(const chunks::Index& index, const manifest::ImageFile& image,
                                        const Store::Sink& sink, log::Progress* progress) {
  const size_t per_segment = chunks_per_segment(image);
  const size_t n = image.chunk_count();
  const size_t segments = (n + per_segment - 1) / per_segment;
  const unsigned k = static_cast<unsigned>(std::min<size_t>({chunks::workers(), 2, std::max<size_t>(1, segments)}));
  std::mutex m;
  std::condition_variable turn;
  size_t next = 0;    // the segment that goes to `sink` next
  bool stop = false;  // a bad chunk, a sink that is done, or a worker that threw
  std::optional<std::string> bad;
  chunks::parallel_for(k, k, [&](size_t w) {
    try {
      chunks::ChunkReader reader(index);
      std::vector<uint8_t> buf;
      for (size_t seg = w; seg < segments; seg += k) {
        const size_t begin = seg * per_segment, end = std::min(n, begin + per_segment);
        auto problem = read_chunks(reader, image, begin, end, buf);
        std::unique_lock lock(m);
        turn.wait(lock, [&] { return stop || next == seg; });
        if (stop) return;
        if (problem) {
          bad = describe_bad_chunk(image, *problem);
          stop = true;
        } else if (!sink(buf)) {
          stop = true;
        } else {
          if (progress) progress->add(buf.size());
          ++next;
        }
        turn.notify_all();
        if (stop) return;
      }
    } catch (...) {
      std::lock_guard lock(m);
      stop = true;
      turn.notify_all();
      throw;
    }
  });
  return bad;
}

// Cuts one image file into chunks (block by block: hashed in parallel, new chunks handed
// to the writer, which compresses and writes them while the next block is hashed) and
// records their hashes in `image`.
void ingest_file(const stdfs::path& path, manifest::ImageFile& image, chunks::PackWriter& writer,
                 std::vector<uint8_t>& block, log::Progress& progress) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) throw_errno("opening image '" + path.string() + "'");
  std::unique_ptr<int, void (*)(int*)> closer(&fd, [](int* p) { ::close(*p); });
  for (uint64_t offset = 0; offset < image.size;) {
    size_t want = static_cast<size_t>(std::min<uint64_t>(block.size(), image.size - offset));
    fs::pread_all(fd, block.data(), want, offset, "image '" + path.string() + "'");
    size_t n = (want + image.chunk_size - 1) / image.chunk_size;
    std::vector<chunks::Hash> hashes(n);
    auto piece = [&](size_t i) {
      size_t off = i * image.chunk_size;
      return std::span<const uint8_t>(block.data() + off, std::min<size_t>(image.chunk_size, want - off));
    };
    unsigned threads = chunks::workers();
    chunks::parallel_for(threads, threads, [&](size_t t) {
      for (size_t i = t * n / threads; i < (t + 1) * n / threads; ++i) hashes[i] = chunks::hash_of(piece(i));
    });
    for (size_t i = 0; i < n; ++i) {
      writer.add(hashes[i], piece(i));
      image.digests.append(reinterpret_cast<const char*>(hashes[i].bytes.data()), hashes[i].bytes.size());
    }
    writer.flush();
    offset += want;
    progress.add(want);
  }
  writer.wait();
}

// The chunk store (DESIGN.md, Store):
//   jobs/J/job.json, lock, events.jsonl, logs/
//   jobs/J/staging/<seq>/ + <seq>.lock     in flight: the lock is held by its writer
//   jobs/J/checkpoints/<seq>/manifest.json  committed (renamed from staging/<seq>)
//   packs/<uid>/<id>.pack, index/<uid>/<id>.idx, locks/<uid>.lock
// Writers and readers of an owner's chunks hold locks/<uid>.lock shared from the
// moment they look at the index until their manifest is committed; gc holds it
// exclusively, so it never sees a chunk that an in-flight checkpoint relies on as
// unreferenced. Deduplication is per owner: one user never learns of another's data.
class ChunkStore : public Store {
 public:
  ChunkStore(stdfs::path root, Options options, std::optional<Error> level_error)
      : root_(std::move(root)), options_(std::move(options)), level_error_(std::move(level_error)) {
    // 0711: users reach their own jobs, packs and indexes by name (and read them through
    // the ACLs gcp gives them); a listing would show every user's job names and uids.
    for (const char* sub : {"jobs", "packs", "index", "locks"}) {
      auto dir = root_ / sub;
      fs::make_dirs(dir, 0711);
      struct stat st {};
      if (::lstat(dir.c_str(), &st) == 0 && S_ISDIR(st.st_mode) && st.st_uid == ::geteuid() &&
          (st.st_mode & 07777) != 0711 && ::chmod(dir.c_str(), 0711) != 0) {
        spdlog::warn("closing '{}' to listing (chmod 0711): {}", dir.string(), std::strerror(errno));
      }
    }
  }

  const stdfs::path& root() const override { return root_; }

  std::vector<std::string> jobs() override {
    std::vector<std::string> names;
    std::error_code ec;
    for (const auto& e : stdfs::directory_iterator(root_ / "jobs", ec)) {
      if (e.is_symlink(ec)) continue;  // gcp makes none: not a job of this store
      // Another owner's job is not even seen by a user who is not root.
      std::error_code denied;
      if (stdfs::exists(e.path() / "job.json", denied)) names.push_back(e.path().filename());
    }
    std::sort(names.begin(), names.end());
    return names;
  }

  stdfs::path job_dir(const std::string& job) override {
    manifest::check_name("job", job);  // a name never reaches the file system unchecked
    auto dir = inside(root_ / "jobs" / job);
    // What gcp keeps in a job's directory is reached by these names only.
    for (const char* entry : {"job.json", "lock", "last-seq", "events.jsonl", "logs", "staging", "checkpoints"}) {
      inside(dir / entry);
    }
    return dir;
  }

  std::optional<manifest::Job> load_job(const std::string& job) override {
    auto path = job_dir(job) / "job.json";
    auto text = fs::try_read_regular(path, manifest::kMaxJobBytes);
    if (!text) return std::nullopt;
    auto loaded = manifest::job_from_json(manifest::parse(*text, path.string()), path.string());
    if (loaded.name != job) {
      throw Error(Exit::kUsage,
                  "reading manifest '" + path.string() + "': its job is '" + loaded.name + "', not '" + job + "'",
                  "the Job manifest was changed or moved: restore it, or remove the job with 'gcp-store rm'");
    }
    // gcp connects to the socket as root, gives its directory to the job's owner and
    // removes it: only the one gcp made for this unit will do.
    for (size_t i = 0; i < loaded.units.size(); ++i) {
      const auto& u = loaded.units[i];
      auto expected = events::socket_path(root_, job, u.name);
      if (!u.callbacks.socket.empty() && u.callbacks.socket != expected) {
        throw Error(Exit::kUsage,
                    "reading manifest '" + path.string() + "': field 'units[" + std::to_string(i) +
                        "].callbacks.socket' is '" + printable(u.callbacks.socket) +
                        "', not the socket gcp gives the unit ('" + expected + "')",
                    "the Job manifest was changed: restore it, or remove the job with 'gcp-store rm'");
      }
    }
    return loaded;
  }

  void save_job(const manifest::Job& job) override {
    auto dir = job_dir(job.name);
    make_private_dir(dir, job.owner);
    make_private_dir(dir / "logs", job.owner);
    fs::write_file_atomic(dir / "job.json", manifest::to_json(job).dump(2) + "\n", 0600);
    fs::grant_read(dir / "job.json", job.owner);
  }

  std::optional<fs::FileLock> try_lock_job(const std::string& job) override {
    fs::make_dirs(job_dir(job), 0700);
    return fs::FileLock::try_lock(job_dir(job) / "lock");
  }

  Staging begin(const std::string& job) override {
    auto owner = owner_of(job);
    auto staging_root = job_dir(job) / "staging";
    make_private_dir(staging_root, owner);
    make_private_dir(job_dir(job) / "checkpoints", owner);
    uint64_t next = 1;
    for (const auto* sub : {"staging", "checkpoints"}) {
      std::error_code ec;
      for (const auto& e : stdfs::directory_iterator(job_dir(job) / sub, ec)) {
        if (auto seq = parse_seq(e.path().filename())) next = std::max(next, *seq + 1);
      }
    }
    auto held = std::make_shared<InFlight>();
    Staging staging;
    staging.job = job;
    // mkdir is the allocation: two writers racing for a number cannot both get it.
    // Numbers are never handed out twice, even after the newest checkpoint is removed.
    if (auto last = fs::try_read_regular(job_dir(job) / "last-seq", 64)) {
      if (auto seq = parse_seq(std::string(last->begin(), std::find(last->begin(), last->end(), '\n')))) {
        next = std::max(next, *seq + 1);
      }
    }
    // The lock first, then the directory: gc takes a staging directory whose lock is
    // free for abandoned, so it must never see one before its lock is held.
    for (;; ++next) {
      auto lock = fs::FileLock::try_lock(staging_root / (std::to_string(next) + ".lock"));
      if (!lock) continue;
      auto dir = staging_root / std::to_string(next);
      if (::mkdir(dir.c_str(), 0700) == 0) {
        held->staging_lock = std::move(lock);
        staging.seq = next;
        break;
      }
      if (errno != EEXIST) throw_errno("creating staging directory '" + dir.string() + "'");
    }
    fs::write_file_atomic(job_dir(job) / "last-seq", std::to_string(staging.seq) + "\n", 0600);
    // The dump goes to local disk, so the job's downtime does not depend on the store.
    try {
      held->scratch.emplace(job + "-" + std::to_string(staging.seq));
    } catch (const Error&) {
      abort_dirs(staging_root / std::to_string(staging.seq), {});
      throw;
    }
    staging.dir = held->scratch->path();
    staging.held = held;
    return staging;
  }

  Staging join(const std::string& job, uint64_t seq, const std::string& part) override {
    owner_of(job);  // the job must exist
    auto held = std::make_shared<InFlight>();
    held->scratch.emplace(job + "-" + std::to_string(seq) + "-" + part);
    Staging staging;
    staging.job = job;
    staging.seq = seq;
    staging.dir = held->scratch->path();
    staging.joined = true;
    staging.held = held;
    return staging;
  }

  void commit(Staging& staging, manifest::Checkpoint& cp) override {
    ingest(staging, cp);
    publish(staging, cp);
  }

  void ingest(Staging& staging, manifest::Checkpoint& cp) override {
    auto start = Clock::now();
    uid_t owner = owner_of(staging.job);
    // Held until the checkpoint is committed or abandoned: gc must not take the chunks
    // this checkpoint relies on for unreferenced in between.
    auto* in_flight = static_cast<InFlight*>(staging.held.get());
    if (!in_flight->owner_lock) in_flight->owner_lock = lock_owner(owner, true, std::chrono::milliseconds(-1));
    auto index = chunks::Index::load(packs_dir(owner), index_dir(owner));
    chunks::PackWriter writer(index, index_dir(owner), level(), owner);

    struct File {
      manifest::CheckpointUnit* unit;
      stdfs::path path;
      manifest::ImageFile image;
    };
    std::vector<File> files;
    uint64_t total = 0;
    for (auto& unit : cp.units) {
      unit.images.clear();
      auto dir = staging.unit_dir(unit.name);
      const auto& aligned = staging.page_aligned[unit.name];
      for (const auto& e : stdfs::recursive_directory_iterator(dir)) {
        if (e.is_symlink()) {
          throw Error(Exit::kFailed, "image '" + e.path().string() + "' is a symbolic link",
                      "gcp stores regular image files only; the checkpointer made something else");
        }
        if (!e.is_regular_file()) continue;
        File f{&unit, e.path(), {}};
        f.image.path = stdfs::relative(e.path(), dir).string();
        f.image.size = e.file_size();
        f.image.chunk_size = aligned.count(f.image.path) ? chunks::kPageChunk : chunks::kFileChunk;
        total += f.image.size;
        files.push_back(std::move(f));
      }
    }
    std::sort(files.begin(), files.end(), [](const File& a, const File& b) {
      return std::tie(a.unit->name, a.image.path) < std::tie(b.unit->name, b.image.path);
    });

    log::Progress progress("storing checkpoint " + std::to_string(staging.seq), total);
    std::map<std::string, std::array<uint64_t, 3>> per_unit;  // raw, new, stored
    std::vector<uint8_t> block(kBlockBytes);
    for (auto& f : files) {
      uint64_t before_new = writer.new_bytes(), before_stored = writer.stored_bytes();
      ingest_file(f.path, f.image, writer, block, progress);
      auto& u = per_unit[f.unit->name];
      u[0] += f.image.size;
      u[1] += writer.new_bytes() - before_new;
      u[2] += writer.stored_bytes() - before_stored;
      f.unit->images.push_back(std::move(f.image));
    }
    auto t_ingested = Clock::now();
    writer.finish();
    spdlog::debug("stored {} bytes in {} ms (chunks in {} ms, last pack {} ms)", total, ms_since(start),
                  std::chrono::duration<double, std::milli>(t_ingested - start).count(),
                  std::chrono::duration<double, std::milli>(Clock::now() - t_ingested).count());

    uint64_t raw = 0, fresh = 0, stored = 0;
    for (auto& unit : cp.units) {
      auto& u = per_unit[unit.name];
      unit.bytes["raw"] = u[0];
      unit.bytes["new"] = u[1];
      unit.bytes["stored"] = u[2];
      unit.zstd_level = level();
      raw += u[0];
      fresh += u[1];
      stored += u[2];
    }
    cp.bytes["raw"] = raw;
    cp.bytes["new"] = fresh;
    cp.bytes["stored"] = stored;
    cp.timings["storeMs"] = ms_since(start);
  }

  void publish(Staging& staging, manifest::Checkpoint& cp) override {
    uid_t owner = owner_of(staging.job);
    auto* in_flight = static_cast<InFlight*>(staging.held.get());
    if (!in_flight->owner_lock) in_flight->owner_lock = lock_owner(owner, true, std::chrono::milliseconds(-1));
    auto staged = job_dir(staging.job) / "staging" / std::to_string(staging.seq);
    auto t_manifest = Clock::now();
    write_chunk_list(staged, cp, owner);
    fs::write_file_atomic(staged / "manifest.json", manifest::to_json(cp, false).dump(1) + "\n", 0600);
    spdlog::debug("manifest written in {} ms", ms_since(t_manifest));
    fs::grant_read(staged / "manifest.json", owner);
    fs::grant_read(staged, owner);
    auto target = job_dir(staging.job) / "checkpoints" / std::to_string(staging.seq);
    if (::rename(staged.c_str(), target.c_str()) != 0) {
      throw_errno("committing checkpoint " + std::to_string(staging.seq) + " of job '" + staging.job + "'");
    }
    fs::fsync_path(target.parent_path());
    // Committed: what is left of the staging is only scratch.
    abort(staging);
  }

  void abort(Staging& staging) noexcept override {
    // A joined staging is only this node's part: the job checkpointer owns the rest.
    auto staged =
        staging.joined ? stdfs::path() : root_ / "jobs" / staging.job / "staging" / std::to_string(staging.seq);
    abort_dirs(staged, staging.dir);
    staging.held.reset();
  }

  std::vector<uint64_t> checkpoints(const std::string& job) override {
    std::vector<uint64_t> seqs;
    std::error_code ec;
    for (const auto& e : stdfs::directory_iterator(job_dir(job) / "checkpoints", ec)) {
      auto seq = parse_seq(e.path().filename());
      if (seq && stdfs::exists(e.path() / "manifest.json")) seqs.push_back(*seq);
    }
    std::sort(seqs.begin(), seqs.end());
    return seqs;
  }

  manifest::Checkpoint load_checkpoint(const std::string& job, uint64_t seq) override {
    auto c = load_checkpoint_metadata(job, seq);
    read_chunk_list(checkpoint_dir(job, seq), c);
    return c;
  }

  manifest::Checkpoint load_checkpoint_metadata(const std::string& job, uint64_t seq) override {
    auto path = checkpoint_dir(job, seq) / "manifest.json";
    auto text = fs::try_read_regular(path, manifest::kMaxCheckpointBytes);
    if (!text) {
      throw Error(Exit::kUsage, "job '" + job + "' has no checkpoint " + std::to_string(seq),
                  "list its checkpoints with 'gcp-store ls " + job + "'");
    }
    auto c = manifest::checkpoint_from_json(manifest::parse(*text, path.string()), path.string());
    if (c.job != job || c.seq != seq) {
      throw Error(Exit::kFailed, "reading manifest '" + path.string() + "': it names job '" + c.job + "' checkpoint " +
                                     std::to_string(c.seq));
    }
    return c;
  }

  void materialize(const manifest::Checkpoint& cp, const std::string& unit, const stdfs::path& into) override {
    const manifest::CheckpointUnit* u = cp.find_unit(unit);
    if (!u) throw Error(Exit::kFailed, cp.name() + " has no unit '" + unit + "'");
    const auto& index = reader_index(owner_of(cp.job));
    uint64_t total = 0;
    for (const auto& image : u->images) total += image.size;
    log::Progress progress("reading unit '" + unit + "' of " + cp.name(), total);
    fs::make_dirs(into, 0700);
    for (const auto& image : u->images) {
      auto path = into / image.path;
      fs::make_dirs(path.parent_path(), 0700);
      int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
      if (fd < 0) throw_errno("creating image '" + path.string() + "'");
      std::unique_ptr<int, void (*)(int*)> closer(&fd, [](int* p) { ::close(*p); });
      if (::ftruncate(fd, static_cast<off_t>(image.size)) != 0) {
        throw_errno("sizing image '" + path.string() + "'", Exit::kFailed,
                    errno == ENOSPC || errno == EFBIG ? "free space in " + into.parent_path().string() : "");
      }
      if (auto problem = read_image(index, image, fd, &progress)) throw bad_image(cp, unit, image, *problem);
    }
  }

  void prepare_read(const std::string& job) override { reader_index(owner_of(job)); }

  std::optional<Corrupt> stream_image(const manifest::Checkpoint& cp, const std::string& unit,
                                      const manifest::ImageFile& image, const Sink& sink,
                                      log::Progress* progress) override {
    const auto& index = reader_index(owner_of(cp.job));
    if (auto problem = store::stream_image(index, image, sink, progress)) return bad_image(cp, unit, image, *problem);
    return std::nullopt;
  }

  static Corrupt bad_image(const manifest::Checkpoint& cp, const std::string& unit, const manifest::ImageFile& image,
                           const std::string& problem) {
    return Corrupt(Exit::kFailed, cp.name() + ", unit '" + unit + "', file '" + image.path + "': " + problem,
                   "restart an earlier checkpoint with --seq N or --fallback; "
                   "'gcp-store verify " +
                       cp.job + "' checks them all");
  }

  VerifyReport verify(const manifest::Checkpoint& cp) override {
    VerifyReport report;
    const auto& index = reader_index(owner_of(cp.job));
    for (const auto& u : cp.units) {
      for (const auto& image : u.images) {
        if (auto problem = read_image(index, image, -1, nullptr)) {
          report.problems.push_back("unit '" + u.name + "', file '" + image.path + "': " + *problem);
        }
        report.chunks += image.chunk_count();
        report.bytes += image.size;
      }
    }
    return report;
  }

  void remove_checkpoint(const std::string& job, uint64_t seq) override {
    auto dir = checkpoint_dir(job, seq);
    if (!stdfs::exists(dir / "manifest.json")) {
      throw Error(Exit::kUsage, "job '" + job + "' has no checkpoint " + std::to_string(seq));
    }
    // Renamed away first: a crash halfway through never leaves half a checkpoint.
    auto gone = job_dir(job) / "checkpoints" / (".removed-" + std::to_string(seq) + "-" + chunks::random_id());
    if (::rename(dir.c_str(), gone.c_str()) != 0) throw_errno("removing '" + dir.string() + "'");
    fs::fsync_path(gone.parent_path());
    fs::remove_tree_quietly(gone);
  }

  void remove_job(const std::string& job) override {
    auto dir = job_dir(job);
    auto gone = root_ / "jobs" / (".removed-" + job + "-" + chunks::random_id());
    if (::rename(dir.c_str(), gone.c_str()) != 0) throw_errno("removing '" + dir.string() + "'");
    fs::fsync_path(gone.parent_path());
    fs::remove_tree_quietly(gone);
  }

  GcReport gc(std::chrono::seconds wait) override;
  json usage() override;
  void collect_owner(uid_t owner, const std::vector<std::string>& jobs, GcReport& report);

  void append_event(const std::string& job, json event) override {
    event["time"] = manifest::now_rfc3339();
    auto path = job_dir(job) / "events.jsonl";
    std::string line = event.dump() + "\n";
    bool fresh = !stdfs::exists(path);
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (fd < 0 || ::write(fd, line.data(), line.size()) != static_cast<ssize_t>(line.size())) {
      spdlog::warn("could not record an event in '{}': {}", path.string(), std::strerror(errno));
    }
    if (fd >= 0) ::close(fd);
    if (fresh && fd >= 0) {
      if (auto j = load_job(job)) fs::grant_read(path, j->owner);
    }
  }

 private:
  stdfs::path checkpoint_dir(const std::string& job, uint64_t seq) {
    return inside(job_dir(job) / "checkpoints" / std::to_string(seq));
  }
  stdfs::path packs_dir(uid_t owner) { return inside(root_ / "packs" / std::to_string(owner)); }

  // Nothing gcp does in its store leaves it: a path below the root that passes through
  // a symbolic link (planted where the store is shared, say) is refused, whatever the
  // link points at. Parts that do not exist yet are fine: gcp makes them.
  stdfs::path inside(const stdfs::path& path) const {
    stdfs::path at = root_;
    for (const auto& part : path.lexically_relative(root_)) {
      at /= part;
      struct stat st {};
      if (::lstat(at.c_str(), &st) != 0) break;
      if (S_ISLNK(st.st_mode)) {
        throw Error(
            Exit::kFailed,
            "store '" + root_.string() + "': '" + at.string() + "' is a symbolic link; gcp does not leave its store",
            "remove the link (gcp made none there)");
      }
    }
    return path;
  }

  void write_chunk_list(const stdfs::path& dir, manifest::Checkpoint& cp, uid_t owner) {
    std::string out(kChunkListMagic, sizeof kChunkListMagic);
    uint64_t count = 0;
    for (const auto& u : cp.units) {
      for (const auto& image : u.images) count += image.chunk_count();
    }
    out.reserve(16 + count * 32 + 32);
    for (size_t b = 0; b < 8; ++b) out.push_back(static_cast<char>(count >> (8 * b)));
    for (const auto& u : cp.units) {
      for (const auto& image : u.images) {
        if (image.digests.size() != image.chunk_count() * manifest::ImageFile::kDigestBytes) {
          throw Error(Exit::kFailed, "writing the chunk list: image '" + image.path + "' lacks chunk hashes");
        }
        out += image.digests;
      }
    }
    auto sum = chunks::hash_of({reinterpret_cast<const uint8_t*>(out.data()), out.size()});
    out.append(reinterpret_cast<const char*>(sum.bytes.data()), 32);
    fs::write_file_atomic(dir / "chunks.bin", out, 0600);
    fs::grant_read(dir / "chunks.bin", owner);
    cp.chunk_list = {{"path", "chunks.bin"}, {"count", count}, {"sha256", sum.hex()}};
  }

  // Fills in every image's chunks from chunks.bin; Corrupt when it does not match.
  void read_chunk_list(const stdfs::path& dir, manifest::Checkpoint& cp) {
    std::string what = cp.name();
    if (cp.chunk_list.empty()) {
      for (const auto& u : cp.units) {
        for (const auto& image : u.images) {
          if (image.digests.empty() && image.size > 0) {
            throw Corrupt(Exit::kFailed, what + ": the manifest has neither a chunkList nor inline chunks",
                          "restart an earlier checkpoint with --seq N or --fallback");
          }
        }
      }
      return;
    }
    auto path = dir / "chunks.bin";
    auto damaged = [&](const std::string& why) {
      return Corrupt(Exit::kFailed, what + ": its chunk list '" + path.string() + "' " + why,
                     "restart an earlier checkpoint with --seq N or --fallback");
    };
    uint64_t count = 0;
    for (const auto& u : cp.units) {
      for (const auto& image : u.images) count += image.chunk_count();  // bounded (manifest.h)
    }
    std::optional<std::string> data;
    try {
      data = fs::try_read_regular(path, 16 + count * 32 + 32);
    } catch (const Error& e) {
      throw damaged(std::string("cannot be read (") + e.what() + ")");
    }
    if (!data) throw damaged("is missing");
    if (auto problem = apply_chunk_list(*data, cp)) throw damaged(*problem);
  }
  stdfs::path index_dir(uid_t owner) { return inside(root_ / "index" / std::to_string(owner)); }

  uid_t owner_of(const std::string& job) {
    auto j = load_job(job);
    if (!j) {
      throw Error(Exit::kUsage, "job '" + job + "' is not in store '" + root_.string() + "'",
                  "list the jobs with 'gcp-store ls'");
    }
    return j->owner;
  }

  // Shared for writers and readers, exclusive for gc (see the class comment).
  std::optional<fs::FileLock> lock_owner(uid_t owner, bool shared, std::chrono::milliseconds wait) {
    make_private_dir(packs_dir(owner), owner);
    make_private_dir(index_dir(owner), owner);
    auto path = root_ / "locks" / (std::to_string(owner) + ".lock");
    auto lock = fs::FileLock::acquire(path, shared, wait, [&] {
      if (shared) log::phase("waiting for gc of the store to finish with uid {}'s chunks", owner);
    });
    fs::grant_read(path, owner);  // so that the owner can verify their own checkpoints
    return lock;
  }

  // Readers keep the owner's lock (shared) as long as this store object lives. Images are
  // streamed side by side: the map is locked; an index, once loaded, is only read.
  const chunks::Index& reader_index(uid_t owner) {
    std::lock_guard lock(readers_m_);
    auto it = readers_.find(owner);
    if (it == readers_.end()) {
      auto lock = lock_owner(owner, true, std::chrono::milliseconds(-1));
      auto index = chunks::Index::load(packs_dir(owner), index_dir(owner));
      it = readers_.emplace(owner, std::make_pair(std::move(lock), std::move(index))).first;
    }
    return it->second.second;
  }

  // A directory that is one, not a symbolic link to one.
  static bool real_dir(const stdfs::path& path) {
    struct stat st {};
    return ::lstat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
  }

  void abort_dirs(const stdfs::path& staged, const stdfs::path& scratch) noexcept {
    std::error_code ec;
    if (!scratch.empty()) fs::remove_tree_quietly(scratch);
    if (!staged.empty()) {
      fs::remove_tree_quietly(staged);
      stdfs::path lock = staged;
      lock += ".lock";
      stdfs::remove(lock, ec);
    }
  }

  // The zstd level; a bad $GCP_ZSTD_LEVEL matters only to what writes chunks.
  int level() const {
    if (level_error_) throw *level_error_;
    return options_.level;
  }

  stdfs::path root_;
  Options options_;
  std::optional<Error> level_error_;
  std::map<uid_t, std::pair<std::optional<fs::FileLock>, chunks::Index>> readers_;
  std::mutex readers_m_;
};

GcReport ChunkStore::gc(std::chrono::seconds wait) {
  {
    std::lock_guard lock(readers_m_);
    readers_.clear();  // this object's own shared locks would keep gc out
  }
  GcReport report;
  std::error_code ec;
  // Staging whose writer is gone: its lock is free.
  std::map<uid_t, std::vector<std::string>> jobs_of;
  bool unknown_owner = false;
  for (const auto& e : stdfs::directory_iterator(root_ / "jobs", ec)) {
    std::string name = e.path().filename();
    if (e.is_symlink(ec)) {
      spdlog::warn("gc: '{}' is a symbolic link, not a job: left alone (remove it)", e.path().string());
      continue;
    }
    if (name.rfind(".removed-", 0) == 0) {
      fs::remove_tree_quietly(e.path());
      continue;
    }
    std::optional<manifest::Job> job;
    try {
      job = load_job(name);
    } catch (const Error& err) {
      spdlog::warn("{}", err.what());
    }
    if (job)
      jobs_of[job->owner].push_back(name);
    else if (stdfs::exists(e.path() / "checkpoints"))
      unknown_owner = true;
    if (!real_dir(e.path() / "staging") || !real_dir(e.path() / "checkpoints")) continue;
    for (const auto& s : stdfs::directory_iterator(e.path() / "staging", ec)) {
      if (!parse_seq(s.path().filename()) || s.is_symlink(ec) || !s.is_directory()) continue;
      stdfs::path lock_path = s.path();
      lock_path += ".lock";
      if (auto held = fs::FileLock::try_lock(lock_path)) {
        abort_dirs(s.path(), {});
        ++report.staging_removed;
      }
    }
    for (const auto& c : stdfs::directory_iterator(e.path() / "checkpoints", ec)) {
      if (c.path().filename().string().rfind(".removed-", 0) == 0 && !c.is_symlink(ec)) {
        fs::remove_tree_quietly(c.path());
      }
    }
  }
  if (unknown_owner) {
    // A job record that cannot be read: its checkpoints might use anybody's chunks.
    throw Error(Exit::kFailed,
                "gc: a job in '" + (root_ / "jobs").string() +
                    "' has checkpoints but no readable job.json; no chunk was removed",
                "repair its job.json or move the job's directory out of the store, then run gc again");
  }
  // Local scratch directories of dumps and restarts that were interrupted.
  for (const auto& e : stdfs::directory_iterator(scratch_root(), ec)) {
    if (!e.is_directory() || !stdfs::exists(e.path() / ".lock")) continue;
    if (auto held = fs::FileLock::try_lock(e.path() / ".lock")) {
      fs::remove_tree_quietly(e.path());
      ++report.staging_removed;
    }
  }

  for (const auto& e : stdfs::directory_iterator(root_ / "index", ec)) {
    std::string name = e.path().filename();
    auto id = parse_uid(name);
    if (!id) continue;
    uid_t owner = *id;
    if (!real_dir(e.path()) || !real_dir(root_ / "packs" / name)) {
      spdlog::warn("gc: the packs or index of uid {} are not a directory of the store (a symbolic link?): left alone",
                   owner);
      continue;
    }
    auto lock = lock_owner(owner, false, wait);
    if (!lock) {
      report.busy_owners.push_back(owner);
      continue;
    }
    collect_owner(owner, jobs_of[owner], report);
  }
  return report;
}

void ChunkStore::collect_owner(uid_t owner, const std::vector<std::string>& jobs, GcReport& report) {
  std::unordered_set<chunks::Hash, chunks::HashHasher> referenced;
  for (const auto& job : jobs) {
    for (uint64_t seq : checkpoints(job)) {
      manifest::Checkpoint cp;
      try {
        cp = load_checkpoint(job, seq);
      } catch (const Error& e) {
        // What it references is unknown: nothing of this owner may go.
        throw Error(Exit::kFailed,
                    "gc: " + std::string(e.what()) + "; no chunk of uid " + std::to_string(owner) + " was removed",
                    "remove that checkpoint with 'gcp-store rm " + job + " --seq " + std::to_string(seq) +
                        "', then run gc again");
      }
      for (const auto& u : cp.units) {
        for (const auto& image : u.images) {
          for (size_t i = 0; i < image.chunk_count(); ++i) {
            referenced.insert(digest_of(image, i));
          }
        }
      }
    }
  }
  std::error_code ec;
  auto packs = packs_dir(owner), index = index_dir(owner);
  // Nobody writes while gc holds the owner's lock: temporary files are left-overs.
  for (const auto& dir : {packs, index}) {
    for (const auto& e : stdfs::directory_iterator(dir, ec)) {
      std::string name = e.path().filename();
      if (name[0] == '.' || name.find(".tmp.") != std::string::npos) stdfs::remove(e.path(), ec);
    }
  }
  for (const auto& e : stdfs::directory_iterator(packs, ec)) {
    if (e.path().extension() == ".pack" && !stdfs::exists(index / (e.path().stem().string() + ".idx"))) {
      // Its writer died between publishing the pack and its index.
      report.bytes_freed += e.file_size(ec);
      stdfs::remove(e.path(), ec);
      ++report.packs_removed;
    }
  }
  std::optional<chunks::Index> all;  // loaded when something must be repacked
  for (const auto& e : stdfs::directory_iterator(index, ec)) {
    if (e.path().extension() != ".idx") continue;
    std::string id = e.path().stem();
    auto pack = packs / (id + ".pack");
    if (!stdfs::exists(pack)) {
      stdfs::remove(e.path(), ec);
      continue;
    }
    std::vector<chunks::IndexEntry> entries;
    try {
      entries = chunks::read_index_file(e.path());
    } catch (const Error& err) {
      spdlog::warn("gc: {}; its pack is left alone", err.what());
      continue;
    }
    uint64_t live = 0, dead = 0;
    for (const auto& entry : entries) (referenced.count(entry.hash) ? live : dead) += entry.loc.length;
    uint64_t size = stdfs::file_size(pack, ec);
    if (live == 0) {
      stdfs::remove(e.path(), ec);  // index first: a chunk is never listed without its pack
      stdfs::remove(pack, ec);
      ++report.packs_removed;
      report.chunks_removed += entries.size();
      report.bytes_freed += size;
      continue;
    }
    if (dead * 4 < live + dead) continue;  // mostly live: not worth rewriting
    if (!all) all = chunks::Index::load(packs, index);
    // An empty index over the same packs directory: every live chunk is written anew.
    chunks::Index fresh = chunks::Index::load(packs, stdfs::path());
    chunks::PackWriter writer(fresh, index, level(), owner);
    chunks::ChunkReader reader(*all);
    std::vector<uint8_t> buf;
    for (const auto& entry : entries) {
      if (!referenced.count(entry.hash)) {
        ++report.chunks_removed;
        continue;
      }
      buf.resize(entry.loc.length);
      std::string why;
      if (reader.read(entry.hash, buf, why) != chunks::ChunkReader::Result::kOk) {
        spdlog::warn("gc: chunk {} of pack {} {}; not copied", entry.hash.hex().substr(0, 12), id, why);
        continue;
      }
      writer.add(entry.hash, buf);
    }
    writer.finish();
    stdfs::remove(e.path(), ec);
    stdfs::remove(pack, ec);
    ++report.packs_repacked;
    report.bytes_freed += size > writer.stored_bytes() ? size - writer.stored_bytes() : 0;
  }
  fs::fsync_path(packs);
  fs::fsync_path(index);
}

json ChunkStore::usage() {
  json owners = json::array();
  std::error_code ec;
  std::map<uid_t, std::vector<std::string>> jobs_of;
  for (const auto& name : jobs()) {
    try {
      if (auto job = load_job(name)) jobs_of[job->owner].push_back(name);
    } catch (const Error& e) {
      spdlog::warn("{}", e.what());  // one damaged job must not hide the others
    }
  }
  for (const auto& e : stdfs::directory_iterator(root_ / "index", ec)) {
    if (auto id = parse_uid(e.path().filename())) jobs_of.try_emplace(*id);
  }
  // A user in root's store cannot list index/ (0711), but reads its own packs by name.
  if (::geteuid() != 0 && real_dir(root_ / "packs" / std::to_string(::geteuid()))) jobs_of.try_emplace(::geteuid());
  for (const auto& [owner, names] : jobs_of) {
    uint64_t packs = 0, pack_bytes = 0, chunk_count = 0, unique = 0, referenced = 0, count = 0;
    stdfs::path packs_of;
    try {
      packs_of = packs_dir(owner);
      index_dir(owner);
    } catch (const Error& e) {
      spdlog::warn("{}", e.what());  // counted as nothing: one bad owner hides no other
      continue;
    }
    for (const auto& p : stdfs::directory_iterator(packs_of, ec)) {
      if (p.path().extension() != ".pack" || p.path().filename().string()[0] == '.') continue;
      ++packs;
      pack_bytes += p.file_size(ec);
      try {
        for (const auto& entry : chunks::read_index_file(index_dir(owner) / (p.path().stem().string() + ".idx"))) {
          ++chunk_count;
          unique += entry.loc.length;
        }
      } catch (const Error&) {
      }
    }
    for (const auto& job : names) {
      for (uint64_t seq : checkpoints(job)) {
        ++count;
        try {
          referenced += manifest::count_or(load_checkpoint_metadata(job, seq).bytes, "raw");
        } catch (const Error& e) {
          spdlog::warn("{}", e.what());
        }
      }
    }
    auto ratio = [](uint64_t a, uint64_t b) { return b ? json(std::round(100.0 * a / b) / 100) : json(); };
    owners.push_back({{"uid", owner},
                      {"jobs", names.size()},
                      {"checkpoints", count},
                      {"packs", packs},
                      {"chunks", chunk_count},
                      {"bytes", {{"referenced", referenced}, {"unique", unique}, {"stored", pack_bytes}}},
                      {"dedupRatio", ratio(referenced, unique)},
                      {"compressionRatio", ratio(unique, pack_bytes)}});
  }
  return owners;
}

}  // namespace

std::unique_ptr<Store> open(const std::string& given, std::optional<Options> options, IfMissing if_missing) {
  // Before anything is looked at: a user learns nothing of a directory it names.
  const std::string dir = caller::check_store(given.empty() ? default_root() : stdfs::path(given)).string();
  std::error_code ec;
  if (!given.empty() && if_missing == IfMissing::kRefuse && !stdfs::is_directory(dir, ec)) {
    throw Error(Exit::kUsage, "no store at '" + dir + "'",
                "check --store (or $GCP_STORE); 'gcp-isolate run' makes a new store");
  }
  Options o;
  std::optional<Error> level_error;
  if (options) {
    o = *options;
  } else if (const char* env = std::getenv(names::kEnvZstdLevel); env && *env) {
    try {
      char* end = nullptr;
      long level = std::strtol(env, &end, 10);
      if (*end != '\0') {
        throw Error(Exit::kUsage, std::string(names::kEnvZstdLevel) + ": '" + env + "' is not a number",
                    "use 1 (fast) to 19 (small), or -7 to -1 for faster still; 3 is the default");
      }
      o.level = check_level(level, names::kEnvZstdLevel);
    } catch (const Error& e) {
      level_error = e;
    }
  }
  stdfs::path root = dir;
  fs::make_dirs(root, 0755);
  // Root works in a store that only root can change: through a link in a directory a
  // user controls, its writes and removals could reach anywhere.
  if (::geteuid() == 0) {
    try {
      fs::trusted_path(root, 0, "store");
    } catch (const Error& e) {
      throw Error(e.code(), e.what(),
                  "run gcp as the user whose store it is, or give the store to root ('chown root' and 'chmod go-w' "
                  "it and the directories above it)");
    }
  }
  return std::make_unique<ChunkStore>(root, o, level_error);
}

}  // namespace gcp::store
