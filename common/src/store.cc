// SPDX-License-Identifier: MIT
#include "gcp/store.h"

#include "gcp/error.h"

#include <fcntl.h>
#include <openssl/evp.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <future>

namespace gcp::store {

stdfs::path default_root() {
  if (const char* env = std::getenv("GCP_STORE"); env && *env) return env;
  if (::geteuid() == 0) return "/var/lib/gcp";
  if (const char* xdg = std::getenv("XDG_DATA_HOME"); xdg && *xdg) return stdfs::path(xdg) / "gcp";
  if (const char* home = std::getenv("HOME"); home && *home) {
    return stdfs::path(home) / ".local/share/gcp";
  }
  throw Error(Exit::kUsage, "finding the default store: neither GCP_STORE nor HOME is set",
              "pass --store DIR or set GCP_STORE");
}

std::string sha256_file(const stdfs::path& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw_errno("opening '" + path.string() + "'");
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  EVP_DigestInit_ex(ctx, EVP_sha256(), nullptr);
  std::vector<unsigned char> buf(1 << 20);
  for (;;) {
    ssize_t n = ::read(fd, buf.data(), buf.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      int err = errno;
      EVP_MD_CTX_free(ctx);
      ::close(fd);
      errno = err;
      throw_errno("reading '" + path.string() + "'");
    }
    if (n == 0) break;
    EVP_DigestUpdate(ctx, buf.data(), static_cast<size_t>(n));
  }
  ::close(fd);
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_DigestFinal_ex(ctx, digest, &len);
  EVP_MD_CTX_free(ctx);
  static const char* hex = "0123456789abcdef";
  std::string out;
  for (unsigned int i = 0; i < len; ++i) {
    out += hex[digest[i] >> 4];
    out += hex[digest[i] & 15];
  }
  return out;
}

namespace {

using manifest::json;

std::optional<uint64_t> parse_seq(const std::string& name) {
  if (name.empty() || name.size() > 18) return std::nullopt;
  if (!std::all_of(name.begin(), name.end(), [](char c) { return c >= '0' && c <= '9'; }))
    return std::nullopt;
  return std::stoull(name);
}

// Layout (DESIGN.md, Store):
//   jobs/J/job.json, jobs/J/lock, jobs/J/events.jsonl, jobs/J/logs/
//   jobs/J/staging/<seq>/<unit>/...      work in flight
//   jobs/J/checkpoints/<seq>/manifest.json + <unit>/...   committed
// The commit renames staging/<seq> (manifest inside) to checkpoints/<seq>: one rename.
class DirStore : public Store {
 public:
  explicit DirStore(stdfs::path root) : root_(std::move(root)) {
    fs::make_dirs(root_ / "jobs", 0755);
  }

  const stdfs::path& root() const override { return root_; }

  std::vector<std::string> jobs() override {
    std::vector<std::string> names;
    std::error_code ec;
    for (const auto& e : stdfs::directory_iterator(root_ / "jobs", ec)) {
      if (stdfs::exists(e.path() / "job.json")) names.push_back(e.path().filename());
    }
    std::sort(names.begin(), names.end());
    return names;
  }

  stdfs::path job_dir(const std::string& job) override {
    manifest::check_name("job", job);  // a name never reaches the file system unchecked
    return root_ / "jobs" / job;
  }

  std::optional<manifest::Job> load_job(const std::string& job) override {
    auto path = job_dir(job) / "job.json";
    auto text = fs::try_read_file(path);
    if (!text) return std::nullopt;
    return manifest::job_from_json(manifest::parse(*text, path.string()), path.string());
  }

  void save_job(const manifest::Job& job) override {
    auto dir = job_dir(job.name);
    // A job's checkpoints are readable by its owner and root only.
    fs::make_dirs(dir, 0700);
    fs::make_dirs(dir / "logs", 0700);
    fs::write_file_atomic(dir / "job.json", manifest::to_json(job).dump(2) + "\n", 0600);
  }

  std::optional<fs::FileLock> try_lock_job(const std::string& job) override {
    fs::make_dirs(job_dir(job), 0700);
    return fs::FileLock::try_lock(job_dir(job) / "lock");
  }

  Staging begin(const std::string& job) override {
    auto staging_root = job_dir(job) / "staging";
    fs::make_dirs(staging_root, 0700);
    fs::make_dirs(job_dir(job) / "checkpoints", 0700);
    uint64_t next = 1;
    for (const auto* sub : {"staging", "checkpoints"}) {
      std::error_code ec;
      for (const auto& e : stdfs::directory_iterator(job_dir(job) / sub, ec)) {
        if (auto seq = parse_seq(e.path().filename())) next = std::max(next, *seq + 1);
      }
    }
    // mkdir is the allocation: two writers racing for a number cannot both get it.
    for (;; ++next) {
      auto dir = staging_root / std::to_string(next);
      if (::mkdir(dir.c_str(), 0700) == 0) return Staging{job, next, dir};
      if (errno != EEXIST) throw_errno("creating staging directory '" + dir.string() + "'");
    }
  }

  void commit(const Staging& staging, manifest::Checkpoint& checkpoint) override {
    auto start = std::chrono::steady_clock::now();
    // Flushing the images to disk and hashing them are independent: overlap them.
    auto synced = std::async(std::launch::async, [&] { fs::fsync_tree(staging.dir); });
    uint64_t raw = 0;
    for (auto& unit : checkpoint.units) {
      auto dir = staging.unit_dir(unit.name);
      unit.images.clear();
      std::vector<stdfs::path> files;
      for (const auto& e : stdfs::recursive_directory_iterator(dir)) {
        if (e.is_regular_file()) files.push_back(e.path());
      }
      std::sort(files.begin(), files.end());
      uint64_t unit_raw = 0;
      for (const auto& file : files) {
        manifest::ImageFile image;
        image.path = stdfs::relative(file, dir).string();
        image.size = stdfs::file_size(file);
        image.sha256 = sha256_file(file);
        unit_raw += image.size;
        unit.images.push_back(std::move(image));
      }
      unit.bytes["raw"] = unit_raw;
      unit.bytes["stored"] = unit_raw;
      unit.bytes["new"] = unit_raw;
      raw += unit_raw;
    }
    checkpoint.bytes["raw"] = raw;
    checkpoint.bytes["stored"] = raw;
    checkpoint.bytes["new"] = raw;
    synced.get();
    checkpoint.timings["storeMs"] =
        std::round(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count() * 10) / 10;
    fs::write_file_atomic(staging.dir / "manifest.json",
                          manifest::to_json(checkpoint).dump(2) + "\n", 0600);
    auto target = job_dir(staging.job) / "checkpoints" / std::to_string(staging.seq);
    if (::rename(staging.dir.c_str(), target.c_str()) != 0) {
      throw_errno("committing checkpoint " + std::to_string(staging.seq) + " of job '" +
                  staging.job + "'");
    }
    fs::fsync_path(target.parent_path());
  }

  void abort(const Staging& staging) noexcept override { fs::remove_tree_quietly(staging.dir); }

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
    auto path = checkpoint_dir(job, seq) / "manifest.json";
    auto text = fs::try_read_file(path);
    if (!text) {
      throw Error(Exit::kUsage,
                  "job '" + job + "' has no checkpoint " + std::to_string(seq),
                  "list the checkpoints with 'ls " + (job_dir(job) / "checkpoints").string() + "'");
    }
    auto c = manifest::checkpoint_from_json(manifest::parse(*text, path.string()), path.string());
    if (c.job != job || c.seq != seq) {
      throw Error(Exit::kFailed, "reading manifest '" + path.string() + "': it names job '" + c.job +
                                     "' checkpoint " + std::to_string(c.seq));
    }
    return c;
  }

  stdfs::path materialize(const manifest::Checkpoint& checkpoint, const std::string& unit) override {
    const manifest::CheckpointUnit* u = nullptr;
    for (const auto& cu : checkpoint.units) {
      if (cu.name == unit) u = &cu;
    }
    std::string what = "checkpoint " + std::to_string(checkpoint.seq) + " of job '" + checkpoint.job + "'";
    if (!u) throw Error(Exit::kFailed, what + " has no unit '" + unit + "'");
    auto dir = checkpoint_dir(checkpoint.job, checkpoint.seq) / unit;
    std::string hint = "restart an earlier checkpoint with --seq N";
    for (const auto& image : u->images) {
      auto file = dir / image.path;
      std::error_code ec;
      auto size = stdfs::file_size(file, ec);
      if (ec) {
        throw Error(Exit::kFailed, what + ": image file '" + file.string() + "' is missing", hint);
      }
      if (size != image.size) {
        throw Error(Exit::kFailed,
                    what + ": image file '" + file.string() + "' has " + std::to_string(size) +
                        " bytes, the manifest says " + std::to_string(image.size) + " (truncated?)",
                    hint);
      }
      if (sha256_file(file) != image.sha256) {
        throw Error(Exit::kFailed,
                    what + ": image file '" + file.string() + "' does not match its sha256 (corrupted)",
                    hint);
      }
    }
    return dir;
  }

  void append_event(const std::string& job, json event) override {
    event["time"] = manifest::now_rfc3339();
    auto path = job_dir(job) / "events.jsonl";
    std::string line = event.dump() + "\n";
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (fd < 0 || ::write(fd, line.data(), line.size()) != static_cast<ssize_t>(line.size())) {
      spdlog::warn("could not record an event in '{}': {}", path.string(), std::strerror(errno));
    }
    if (fd >= 0) ::close(fd);
  }

 private:
  stdfs::path checkpoint_dir(const std::string& job, uint64_t seq) {
    return job_dir(job) / "checkpoints" / std::to_string(seq);
  }

  stdfs::path root_;
};

}  // namespace

std::unique_ptr<Store> open_dir_store(const stdfs::path& root) {
  return std::make_unique<DirStore>(root);
}

std::unique_ptr<Store> open(const std::string& dir) {
  return open_dir_store(dir.empty() ? default_root() : stdfs::path(dir));
}

}  // namespace gcp::store
