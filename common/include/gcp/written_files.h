// SPDX-License-Identifier: MIT
#pragma once

#include "gcp/manifest.h"

#include <sys/types.h>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

// Files a job writes outside the store: what a checkpoint records of them, and what a
// restart finds at their paths before anything is restored (gcp-restart --files).
// CRIU reopens each such file by its path and refuses one whose size changed (unless
// it was opened O_WRONLY|O_APPEND) or that is gone; a file that only grew since
// would otherwise come back with the output written after the checkpoint in it.
namespace gcp::files {

/// What a restart does with a recorded file that changed (gcp-restart --files).
enum class Policy {
  kRefuse,    ///< nothing is restored (the default)
  kTruncate,  ///< a file that only grew is cut back to its size at the checkpoint
  kKeep,      ///< the file stays as it is (where CRIU can restore it so)
};

/// "refuse", "truncate", "keep" -> Policy; Error(kUsage) for anything else.
Policy policy_from(const std::string& word);
/// The word of a policy.
const char* name(Policy policy);

/// Largest file whose content a checkpoint keeps among the unit's images: a restart
/// recreates it when it is missing (the job renamed it away after the checkpoint, as
/// with a temporary file renamed over the real one).
inline constexpr uint64_t kKeepMax = 1 << 20;
/// Most content kept per unit.
inline constexpr uint64_t kKeepTotalMax = 16 << 20;

/// What record() needs.
struct RecordOptions {
  /// Files below these (the store, gcp's scratch) are gcp's own: never recorded.
  std::vector<std::filesystem::path> skip;
  /// The job's owner: only files it owns are read (hashed, kept); 0 is root.
  uid_t owner = 0;
  /// The unit's image directory: kept copies go to gcp-files/N below it. Empty: none kept.
  std::filesystem::path images_dir;
};

/// The regular files that `pids` (frozen) have open for writing (O_WRONLY or O_RDWR,
/// from /proc/PID/fd and fdinfo), outside `skip` and not deleted (CRIU keeps those
/// itself), each once, sorted by path, with the SHA-256 of its content: read through the
/// descriptor, so it is the very file the job has open.
std::vector<manifest::WrittenFile> record(const std::vector<pid_t>& pids, const RecordOptions& options);

/// How a file at a recorded path compares with the record.
enum class Change {
  kUnchanged,
  kGrew,      ///< longer, its first `size` bytes as they were
  kChanged,   ///< anything else that differs (content, shorter, owner)
  kMissing,   ///< no file at the path
  kUnusable,  ///< a symbolic link on the way, not a regular file, unreadable
};

/// What the restart does with it.
enum class Action {
  kNone,      ///< unchanged
  kTruncate,  ///< cut back to its recorded size
  kRecreate,  ///< written again from the copy kept in the checkpoint
  kKeep,      ///< left as it is, with a warning
  kRefuse,    ///< the restart does not start
};

/// One recorded file, compared and decided.
struct Verdict {
  std::string unit;
  manifest::WrittenFile file;
  Change change = Change::kUnchanged;
  Action action = Action::kNone;
  std::string what;  ///< what changed, e.g. "size 4096 -> 8192"; empty when unchanged
  std::string hint;  ///< for kRefuse: what the operator can do
  dev_t dev = 0;     ///< the file judged (apply() acts on that file only)
  ino_t ino = 0;
};

/// Compares each recorded file of `unit` with the file now at its path and decides by
/// `policy`. Reads (as `owner` when that is not root: it sees what the job's user may
/// see), changes nothing.
std::vector<Verdict> judge(const std::string& unit, const std::vector<manifest::WrittenFile>& files, Policy policy,
                           uid_t owner);

/// A verdict as JSON, for a report such as gcp-restart --check: {"unit", "path",
/// "change": unchanged|grew|changed|missing|unusable, "action": none|truncate|recreate|
/// keep|refuse, "what" and "hint" when not empty}.
manifest::json to_json(const Verdict& verdict);

/// One line on a verdict: "PATH changed since checkpoint SEQ (size 4096 -> 8192)",
/// "PATH missing (the job had it open ...)", "PATH unchanged since checkpoint SEQ".
std::string describe(const Verdict& verdict, uint64_t seq);

/// Throws Error(kFailed) for the first verdict that refuses, naming the file, what
/// changed and the checkpoint `seq`, with a hint; returns when none refuses.
void refuse(const std::vector<Verdict>& verdicts, uint64_t seq);

/// Reads the kept copy of a recorded file (its content at the checkpoint).
using KeptReader = std::function<std::string(const std::string& unit, const manifest::WrittenFile& file)>;

/// Carries out the verdicts (none may refuse): truncates, recreates from the kept copy
/// (mode and owner as recorded), and warns of each file kept as it is. Acts as `owner`
/// when that is not root, and only on the very files judge() saw; throws Error(kFailed)
/// when one changed meanwhile.
void apply(const std::vector<Verdict>& verdicts, uint64_t seq, uid_t owner, const KeptReader& kept);

/// SHA-256 of the first `size` bytes of `fd`, lowercase hex; throws Error naming `what`
/// when it cannot be read or ends first.
std::string hash_prefix(int fd, uint64_t size, const std::string& what);

}  // namespace gcp::files
