// SPDX-License-Identifier: MIT
// Files a job writes outside the store: recorded while its unit is frozen, compared and
// put right before a restart. The paths a restart acts on come from a manifest, which
// is hostile: they are reached without following any symbolic link, and opened with
// the rights of the job's owner, so that a restart cannot truncate or create a file
// that user could not.
#include "gcp/written_files.h"

#include "gcp/caller.h"
#include "gcp/error.h"
#include "gcp/fs.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <openssl/evp.h>
#include <spdlog/spdlog.h>
#include <sys/fsuid.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <map>
#include <memory>

namespace gcp::files {
namespace {

namespace stdfs = std::filesystem;
using manifest::WrittenFile;

// Opens `path` without following a symbolic link anywhere on the way (ELOOP then).
int open_plain(const std::string& path, int flags, mode_t mode = 0) {
  struct open_how how {};
  // openat2 takes nothing but O_CLOEXEC, O_DIRECTORY and O_NOFOLLOW beside O_PATH.
  how.flags = static_cast<uint64_t>(flags | O_CLOEXEC | ((flags & O_PATH) ? 0 : O_NOCTTY));
  how.mode = (flags & O_CREAT) ? mode : 0;
  how.resolve = RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
  return static_cast<int>(::syscall(SYS_openat2, AT_FDCWD, path.c_str(), &how, sizeof(how)));
}

struct Fd {
  int fd = -1;
  explicit Fd(int f) : fd(f) {}
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
};

// File system access with the rights of the job's owner while it lives (this thread
// only: fsuid and fsgid are per thread). A root job's files are root's business.
class AsOwner {
 public:
  explicit AsOwner(uid_t owner) {
    if (owner == 0 || ::geteuid() != 0) return;
    auto account = caller::account(owner);
    old_gid_ = static_cast<gid_t>(::setfsgid(account.gid));
    old_uid_ = static_cast<uid_t>(::setfsuid(owner));
    active_ = true;
  }
  ~AsOwner() {
    if (!active_) return;
    ::setfsuid(old_uid_);
    ::setfsgid(old_gid_);
  }
  AsOwner(const AsOwner&) = delete;
  AsOwner& operator=(const AsOwner&) = delete;

 private:
  bool active_ = false;
  uid_t old_uid_ = 0;
  gid_t old_gid_ = 0;
};

std::string hex_of(const unsigned char* bytes, size_t n) {
  static const char* digits = "0123456789abcdef";
  std::string out;
  for (size_t i = 0; i < n; ++i) {
    out += digits[bytes[i] >> 4];
    out += digits[bytes[i] & 15];
  }
  return out;
}

std::string sha256_of(std::string_view data) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_Digest(data.data(), data.size(), md, &len, EVP_sha256(), nullptr) != 1) {
    throw Error(Exit::kFailed, "hashing a file: OpenSSL's SHA-256 failed");
  }
  return hex_of(md, len);
}

bool below(const std::string& path, const stdfs::path& dir) {
  std::string d = dir.string();
  while (d.size() > 1 && d.back() == '/') d.pop_back();
  if (d.empty()) return false;
  return path == d || (path.size() > d.size() && path.compare(0, d.size(), d) == 0 && path[d.size()] == '/');
}

// The open flags of a descriptor, from its fdinfo; nullopt when it is gone.
std::optional<int> fd_flags(pid_t pid, const char* fd) {
  auto text = fs::try_read_file("/proc/" + std::to_string(pid) + "/fdinfo/" + fd);
  if (!text) return std::nullopt;
  auto pos = text->find("flags:");
  if (pos == std::string::npos) return std::nullopt;
  return static_cast<int>(std::strtol(text->c_str() + pos + 6, nullptr, 8));
}

// One file found open for writing, and a descriptor to read it through.
struct Found {
  WrittenFile file;
  std::string via;  // /proc/PID/fd/N
};

void scan_process(pid_t pid, const RecordOptions& options, std::map<std::string, Found>& found) {
  std::string dir_path = "/proc/" + std::to_string(pid) + "/fd";
  DIR* d = ::opendir(dir_path.c_str());
  if (!d) return;  // gone
  std::unique_ptr<DIR, int (*)(DIR*)> closer(d, ::closedir);
  char target[4096];
  while (auto* e = ::readdir(d)) {
    if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
    ssize_t n = ::readlinkat(::dirfd(d), e->d_name, target, sizeof(target) - 1);
    if (n <= 0 || target[0] != '/') continue;  // pipes, sockets, anon inodes
    std::string path(target, static_cast<size_t>(n));
    auto flags = fd_flags(pid, e->d_name);
    if (!flags || (*flags & O_ACCMODE) == O_RDONLY) continue;
    struct stat st {};
    // Through the descriptor: the file it has open, whatever its path names now. A
    // deleted one (nlink 0) CRIU keeps in the images itself.
    if (::fstatat(::dirfd(d), e->d_name, &st, 0) != 0 || !S_ISREG(st.st_mode) || st.st_nlink == 0) continue;
    if (!manifest::plain_absolute_path(path) || below(path, "/proc") || below(path, "/sys") || below(path, "/dev")) {
      continue;
    }
    bool gcps = false;
    for (const auto& s : options.skip) gcps = gcps || below(path, s);
    if (gcps) continue;
    auto [it, added] = found.try_emplace(path);
    WrittenFile& w = it->second.file;
    if (added) {
      w.path = path;
      w.size = static_cast<uint64_t>(st.st_size);
      w.mtime_ns = static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
      w.uid = st.st_uid;
      w.mode = st.st_mode & 0777;
      w.append = w.write_only = true;
      it->second.via = dir_path + "/" + e->d_name;
    }
    // CRIU checks the size of every descriptor of it but those opened O_WRONLY|O_APPEND.
    w.append = w.append && (*flags & O_APPEND);
    w.write_only = w.write_only && (*flags & O_ACCMODE) == O_WRONLY;
  }
}

// Hashes the file (and keeps its content when small): only a file of the job's owner,
// whose content the owner may have anyway.
void read_content(Found& f, const RecordOptions& options, size_t index, uint64_t& kept_bytes) {
  WrittenFile& w = f.file;
  if (options.owner != 0 && w.uid != options.owner) return;
  Fd fd(::open(f.via.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY));
  if (fd.fd < 0) {
    spdlog::warn("reading '{}', which the job has open for writing: {} (a restart compares its size and time only)",
                 printable(w.path), std::strerror(errno));
    return;
  }
  bool keep = !options.images_dir.empty() && w.size <= kKeepMax && kept_bytes + w.size <= kKeepTotalMax;
  if (!keep) {
    w.sha256 = hash_prefix(fd.fd, w.size, "'" + printable(w.path) + "'");
    return;
  }
  std::string content(w.size, '\0');
  fs::pread_all(fd.fd, content.data(), content.size(), 0, "'" + printable(w.path) + "'");
  w.sha256 = sha256_of(content);
  w.kept = "gcp-files/" + std::to_string(index);
  fs::make_dirs(options.images_dir / "gcp-files", 0700);
  fs::write_file_atomic(options.images_dir / w.kept, content, 0600);
  kept_bytes += w.size;
}

std::string octal(uint32_t mode) {
  char buf[8];
  std::snprintf(buf, sizeof(buf), "0%o", mode);
  return buf;
}

// Compares the file at `fd` with its record; `v.what` says how it differs.
void compare(int fd, const struct stat& st, Verdict& v) {
  const WrittenFile& w = v.file;
  uint64_t size = static_cast<uint64_t>(st.st_size);
  int64_t mtime = static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
  std::string sizes = "size " + std::to_string(w.size) + " -> " + std::to_string(size);
  v.change = Change::kChanged;
  if (st.st_uid != w.uid) {
    v.what = "owner uid " + std::to_string(w.uid) + " -> " + std::to_string(st.st_uid);
  } else if (size < w.size) {
    v.what = sizes;
  } else if (w.sha256.empty()) {
    // Not read at the checkpoint (another user's file): its size and time tell.
    if (size != w.size)
      v.what = sizes + " (not the job owner's: gcp did not read it)";
    else if (mtime != w.mtime_ns)
      v.what = "modified since (same size)";
    else
      v.change = Change::kUnchanged;
  } else if (hash_prefix(fd, w.size, "'" + printable(w.path) + "'") != w.sha256) {
    v.what = size == w.size ? "content changed, same size"
                            : sizes + ", and its first " + std::to_string(w.size) + " bytes changed";
  } else {
    v.change = size > w.size ? Change::kGrew : Change::kUnchanged;
    if (size > w.size) v.what = sizes;
  }
  // CRIU restores a file only with the mode it had.
  if ((st.st_mode & 0777) != w.mode) {
    std::string modes = "mode " + octal(w.mode) + " -> " + octal(st.st_mode & 0777);
    v.what = v.what.empty() ? modes : v.what + ", " + modes;
    v.change = Change::kChanged;
  }
}

void decide(Verdict& v, Policy policy, uid_t owner, uint64_t size_now, bool mode_same) {
  const WrittenFile& w = v.file;
  // CRIU reopens a file at another size only when every descriptor of it was O_WRONLY|O_APPEND.
  bool criu_takes_it = mode_same && ((w.append && w.write_only) || size_now == w.size);
  std::string keep_hint = criu_takes_it ? "'--files keep' restarts with it as it is" : "";
  std::string cut = "'--files truncate' cuts it back to its " + std::to_string(w.size) + " bytes at the checkpoint";
  switch (v.change) {
    case Change::kUnchanged:
      v.action = Action::kNone;
      return;
    case Change::kMissing:
      if (!w.kept.empty() && (owner == 0 || w.uid == owner)) {
        v.action = Action::kRecreate;
        return;
      }
      v.action = Action::kRefuse;
      v.hint = "put the file back at its path (the checkpoint holds no copy of it: only files of its owner of up to " +
               std::to_string(kKeepMax >> 20) + " MiB are kept), or restart an earlier checkpoint";
      return;
    case Change::kUnusable:
      v.action = Action::kRefuse;
      if (v.hint.empty()) v.hint = "make the path a regular file the job's owner may read, without symbolic links";
      return;
    case Change::kGrew:
      if (policy == Policy::kTruncate && (owner == 0 || w.uid == owner)) {
        v.action = Action::kTruncate;
        return;
      }
      if (policy == Policy::kKeep && criu_takes_it) {
        v.action = Action::kKeep;
        return;
      }
      v.action = Action::kRefuse;
      if (policy == Policy::kRefuse) {
        v.hint = criu_takes_it ? cut + "; " + keep_hint : cut;
      } else if (policy == Policy::kTruncate) {
        v.what += "; it is not the job owner's, gcp does not truncate it";
        v.hint = "restore the file as it was at the checkpoint, or restart an earlier checkpoint";
      } else {
        v.what += "; criu reopens it only at its recorded size (it was not opened O_WRONLY|O_APPEND)";
        v.hint = cut;
      }
      return;
    case Change::kChanged:
      if (policy == Policy::kKeep && criu_takes_it) {
        v.action = Action::kKeep;
        return;
      }
      v.action = Action::kRefuse;
      if (policy == Policy::kTruncate) v.what += "; truncating cannot restore it";
      if (policy == Policy::kKeep && !criu_takes_it) v.what += "; criu cannot reopen it so";
      v.hint = policy == Policy::kRefuse && criu_takes_it
                   ? keep_hint
                   : (mode_same ? "restore the file as it was at the checkpoint, or restart an earlier checkpoint"
                                : "chmod it back to " + octal(w.mode));
      return;
  }
}

void truncate_file(const Verdict& v, uid_t owner) {
  const WrittenFile& w = v.file;
  Fd fd(open_plain(w.path, O_WRONLY | O_NONBLOCK));
  struct stat st {};
  if (fd.fd < 0 || ::fstat(fd.fd, &st) != 0) {
    throw Error(Exit::kFailed, "truncating '" + printable(w.path) + "': " + std::strerror(errno));
  }
  if (st.st_dev != v.dev || st.st_ino != v.ino || !S_ISREG(st.st_mode) || (owner != 0 && st.st_uid != owner) ||
      static_cast<uint64_t>(st.st_size) < w.size) {
    throw Error(Exit::kFailed, "'" + printable(w.path) + "' changed while the restart compared it: not truncated",
                "restart again");
  }
  if (::ftruncate(fd.fd, static_cast<off_t>(w.size)) != 0) {
    throw Error(Exit::kFailed, "truncating '" + printable(w.path) + "': " + std::strerror(errno));
  }
  spdlog::warn("'{}' cut back to its {} bytes at the checkpoint (it had {}; --files truncate)", printable(w.path),
               w.size, st.st_size);
}

void recreate_file(const Verdict& v, uint64_t seq, const std::string& content) {
  const WrittenFile& w = v.file;
  std::string what = "recreating '" + printable(w.path) + "' from checkpoint " + std::to_string(seq);
  if (content.size() != w.size || sha256_of(content) != w.sha256) {
    throw Error(Exit::kFailed, what + ": the kept copy does not match its record");
  }
  auto slash = w.path.rfind('/');
  std::string parent = slash == 0 ? "/" : w.path.substr(0, slash);
  Fd dir(open_plain(parent, O_PATH | O_DIRECTORY));
  if (dir.fd < 0) throw Error(Exit::kFailed, what + ": its directory: " + std::strerror(errno));
  std::string name = w.path.substr(slash + 1);
  Fd fd(::openat(dir.fd, name.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
  if (fd.fd < 0) throw Error(Exit::kFailed, what + ": " + std::strerror(errno));
  for (size_t done = 0; done < content.size();) {
    ssize_t n = ::write(fd.fd, content.data() + done, content.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) throw Error(Exit::kFailed, what + ": " + std::strerror(errno));
    done += static_cast<size_t>(n);
  }
  // A root job's file goes back to whom it belonged; a user's is the user's already.
  if (::geteuid() == 0 && ::fchown(fd.fd, w.uid, static_cast<gid_t>(-1)) != 0) {
    throw Error(Exit::kFailed, what + ": chown: " + std::strerror(errno));
  }
  if (::fchmod(fd.fd, w.mode) != 0 || ::fsync(fd.fd) != 0) {
    throw Error(Exit::kFailed, what + ": " + std::strerror(errno));
  }
  spdlog::warn("'{}' was missing: recreated as it was at checkpoint {} ({} bytes)", printable(w.path), seq, w.size);
}

}  // namespace

Policy policy_from(const std::string& word) {
  if (word == "refuse") return Policy::kRefuse;
  if (word == "truncate") return Policy::kTruncate;
  if (word == "keep") return Policy::kKeep;
  throw Error(Exit::kUsage, "--files '" + printable(word) + "': not a way to treat changed files",
              "use --files truncate, --files keep, or leave it out (refuse)");
}

const char* name(Policy policy) {
  switch (policy) {
    case Policy::kTruncate:
      return "truncate";
    case Policy::kKeep:
      return "keep";
    default:
      return "refuse";
  }
}

std::string hash_prefix(int fd, uint64_t size, const std::string& what) {
  std::unique_ptr<EVP_MD_CTX, void (*)(EVP_MD_CTX*)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  if (!ctx || EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr) != 1) {
    throw Error(Exit::kFailed, "hashing " + what + ": OpenSSL's SHA-256 failed");
  }
  std::vector<char> buf(1 << 20);
  for (uint64_t at = 0; at < size;) {
    size_t n = static_cast<size_t>(std::min<uint64_t>(buf.size(), size - at));
    fs::pread_all(fd, buf.data(), n, at, what);
    EVP_DigestUpdate(ctx.get(), buf.data(), n);
    at += n;
  }
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_DigestFinal_ex(ctx.get(), md, &len) != 1) throw Error(Exit::kFailed, "hashing " + what + ": SHA-256 failed");
  return hex_of(md, len);
}

std::vector<WrittenFile> record(const std::vector<pid_t>& pids, const RecordOptions& options) {
  std::map<std::string, Found> found;
  for (pid_t pid : pids) scan_process(pid, options, found);
  std::vector<WrittenFile> out;
  uint64_t kept_bytes = 0;
  for (auto& [path, f] : found) {
    read_content(f, options, out.size(), kept_bytes);
    out.push_back(std::move(f.file));
  }
  return out;
}

std::vector<Verdict> judge(const std::string& unit, const std::vector<WrittenFile>& files, Policy policy, uid_t owner) {
  AsOwner as(owner);
  std::vector<Verdict> out;
  for (const auto& w : files) {
    Verdict& v = out.emplace_back();
    v.unit = unit;
    v.file = w;
    uint64_t size_now = w.size;
    bool mode_same = true;
    Fd fd(manifest::plain_absolute_path(w.path) ? open_plain(w.path, O_RDONLY | O_NONBLOCK) : -1);
    struct stat st {};
    if (fd.fd < 0) {
      int err = manifest::plain_absolute_path(w.path) ? errno : EINVAL;
      v.change = err == ENOENT ? Change::kMissing : Change::kUnusable;
      v.what = err == ENOENT   ? "is missing"
               : err == ELOOP  ? "is reached through a symbolic link"
               : err == EACCES ? "cannot be read by the job's owner"
               : err == EINVAL ? "is not a plain absolute path"
                               : std::string("cannot be opened: ") + std::strerror(err);
    } else if (::fstat(fd.fd, &st) != 0 || !S_ISREG(st.st_mode)) {
      v.change = Change::kUnusable;
      v.what = "is no longer a regular file";
    } else {
      v.dev = st.st_dev;
      v.ino = st.st_ino;
      size_now = static_cast<uint64_t>(st.st_size);
      mode_same = (st.st_mode & 0777) == w.mode;
      compare(fd.fd, st, v);
    }
    decide(v, policy, owner, size_now, mode_same);
  }
  return out;
}

manifest::json to_json(const Verdict& v) {
  static const char* changes[] = {"unchanged", "grew", "changed", "missing", "unusable"};
  static const char* actions[] = {"none", "truncate", "recreate", "keep", "refuse"};
  manifest::json j = {{"unit", v.unit},
                      {"path", v.file.path},
                      {"change", changes[static_cast<int>(v.change)]},
                      {"action", actions[static_cast<int>(v.action)]}};
  if (!v.what.empty()) j["what"] = v.what;
  if (!v.hint.empty()) j["hint"] = v.hint;
  return j;
}

std::string describe(const Verdict& v, uint64_t seq) {
  std::string path = printable(v.file.path);
  if (v.change == Change::kUnchanged) return path + " unchanged since checkpoint " + std::to_string(seq);
  if (v.change == Change::kMissing || v.change == Change::kUnusable)
    return path + " " + v.what + " (the job had it open for writing at checkpoint " + std::to_string(seq) + ")";
  return path + " changed since checkpoint " + std::to_string(seq) + " (" + v.what + ")";
}

void refuse(const std::vector<Verdict>& verdicts, uint64_t seq) {
  const Verdict* first = nullptr;
  size_t more = 0;
  for (const auto& v : verdicts) {
    if (v.action != Action::kRefuse) continue;
    if (first)
      ++more;
    else
      first = &v;
  }
  if (!first) return;
  std::string message = describe(*first, seq);
  if (more) message += " (and " + std::to_string(more) + " more file" + (more > 1 ? "s" : "") + ")";
  throw Error(Exit::kFailed, message + "; nothing was restored", first->hint);
}

void apply(const std::vector<Verdict>& verdicts, uint64_t seq, uid_t owner, const KeptReader& kept) {
  for (const auto& v : verdicts) {
    switch (v.action) {
      case Action::kTruncate: {
        AsOwner as(owner);
        truncate_file(v, owner);
        break;
      }
      case Action::kRecreate: {
        std::string content = kept(v.unit, v.file);  // read as root: the store is root's
        AsOwner as(owner);
        recreate_file(v, seq, content);
        break;
      }
      case Action::kKeep:
        spdlog::warn("'{}' changed since checkpoint {} ({}): restarting with it as it is (--files keep)",
                     printable(v.file.path), seq, v.what);
        break;
      case Action::kRefuse:
        throw Error(Exit::kFailed, "'" + printable(v.file.path) + "': " + v.what);
      case Action::kNone:
        break;
    }
  }
}

}  // namespace gcp::files
