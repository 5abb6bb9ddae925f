// SPDX-License-Identifier: MIT
#pragma once

#include <nlohmann/json.hpp>

#include <sys/types.h>

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace gcp::manifest {

using json = nlohmann::ordered_json;

/// The API version this gcp writes; readers accept the same major (v1).
inline constexpr const char* kApiVersion = "gcp/v1";

/// How a job's units are checkpointed: all in one round (coordinated), or each node's
/// units on their own (uncoordinated). Serialised as "coordinated" / "uncoordinated".
enum class Mode { kCoordinated, kUncoordinated };

/// A unit's state: as last recorded in the Job manifest ("running", "stopped",
/// "exited"), or as seen on its node now (also "frozen").
enum class UnitState { kRunning, kFrozen, kStopped, kExited };

/// "coordinated" or "uncoordinated".
const char* name(Mode mode);
/// "running", "frozen", "stopped" or "exited".
const char* name(UnitState state);

/// How the job checkpointer reaches the nodes of a job (gcp-launchers(7)). Serialised
/// as "launcher": {"kind", "command", "slurmJob"} in a Job manifest and in the site
/// configuration.
struct Launcher {
  /// "local": on this node; "ssh": the command template, then the remote command as one
  /// shell-quoted string; "srun": the template, then the command's words.
  std::string kind = "local";
  /// The words in front of the remote command ("{node}" becomes the node's name,
  /// "{slurmJob}" the allocation); empty: the kind's default template.
  std::vector<std::string> command;
  std::string slurm_job;  ///< for srun: the allocation the units run in
};

/// Where a unit's application hears of checkpoints (gcp-callbacks(7)). Serialised as
/// "callbacks": {"socket", "hooks"}, left out when both are empty.
struct Callbacks {
  std::string socket;           ///< unix socket path the application may listen on
  std::string hooks;            ///< directory of hook executables; empty: none
  json extra = json::object();  ///< fields this gcp does not know
};

/// A unit's own network namespace (gcp-isolate run --address): its address moves with
/// it. Serialised as "network": {"address", "parent", "gateway", "mac"}, left out when
/// the unit shares the node's network.
struct Network {
  std::string address;          ///< IPv4 CIDR, "10.77.0.101/24"
  std::string parent;           ///< the lower device of its macvlan on the node it runs on
  std::string gateway;          ///< default route via this address; empty: none
  std::string mac;              ///< the MAC of its eth0, kept across restarts
  json extra = json::object();  ///< fields this gcp does not know
};

/// The namespaces a unit may share with its node (gcp-isolate run --share).
inline constexpr const char* kShareable[] = {"ipc", "uts", "net"};

/// One job unit: the processes of a job on one node.
struct Unit {
  std::string name;                       ///< unique within the job
  std::string node;                       ///< host the unit runs on
  std::string grouping = "pidns";         ///< how its processes are found: "pidns", "tree", "pgid", "sid", "cgroup"
  std::string cgroup;                     ///< relative cgroup path, "gcp/<job>/<unit>"
  std::string translib = "criu";          ///< checkpointer used for it
  std::vector<std::string> command;       ///< what was started
  std::string output;                     ///< file that receives the unit's stdout and stderr
  std::optional<pid_t> pid;               ///< host PID of the unit's root (its init), while it runs
  UnitState state = UnitState::kRunning;  ///< as last recorded (kFrozen only in a status view)
  std::optional<uint64_t> restored_from;  ///< checkpoint sequence it was last restarted from
  Callbacks callbacks;                    ///< its callback endpoints
  std::optional<Network> network;         ///< its own network namespace; nullopt: the node's
  /// The namespaces it shares with its node instead of having its own, of "ipc", "uts"
  /// and "net" (gcp-isolate run --share), sorted. Serialised as "share", left out when
  /// empty: a unit has its own IPC and UTS namespaces and, without `network`, a network
  /// namespace with loopback only.
  std::vector<std::string> share;
  /// Where the job's other units reach it when it shares its node's network: the node's
  /// addresses, recorded where it started or was restored (gcp-deps' peers). Serialised
  /// as nodeAddresses, left out when empty.
  std::vector<std::string> node_addresses;
  /// A unit gcp did not start but registered (gcp-checkpoint --pid ...): what it was
  /// registered from and when. Serialised as "adopted": {"spec", "at"}.
  struct Adopted {
    std::string spec;  ///< "process tree of pid 1234", as grouping::describe says
    std::string at;    ///< RFC 3339 UTC
  };
  std::optional<Adopted> adopted;
  /// Live counts, in gcp-isolate status only (never stored): processes and threads.
  std::optional<uint64_t> processes, threads;
  json extra = json::object();  ///< fields this gcp does not know, kept as they were
};

/// How a job's checkpoints are timed (gcp-policy(7)). Serialised as policy.checkpoint:
/// {"kind", "intervalS", "costS", "mtbfS", "deadline", "maxRestarts", "spares"}, left
/// out when the job has none (the site's default then applies).
struct CheckpointPolicy {
  /// "fixed" (every intervalS), "young", "daly" or "adaptive" (Daly's interval from the
  /// measured cost and the estimated MTBF, and the strategy from the job's ties).
  std::string kind = "adaptive";
  std::optional<double> interval_s;  ///< fixed: the interval, seconds
  std::optional<double> cost_s;      ///< young/daly: use this checkpoint cost instead of the measured one
  std::optional<double> mtbf_s;      ///< young/daly: use this MTBF instead of the estimate
  std::string deadline;              ///< RFC 3339: the job ends then (the last checkpoint lands before); empty: none
  std::optional<uint64_t> max_restarts;  ///< automatic restarts without a checkpoint in between before giving up
  std::vector<std::string> spares;       ///< nodes a unit whose node is gone may restart on
  json extra = json::object();           ///< fields this gcp does not know
};

/// What the policy has seen of a job (gcp-policy(7)). Serialised as "history", left out
/// while empty. Lists keep their newest kHistoryKeep entries; the counts count all.
struct History {
  static constexpr size_t kKeep = 100;
  /// One committed checkpoint: when, and what it cost the job (seconds).
  struct Checkpoint {
    uint64_t seq = 0;
    std::string at;
    double cost_s = 0;
  };
  /// A failure (cause: "unit-died", "node-unreachable", ...) or a planned stop (cause:
  /// "stop", "kill", "preempted", "time-limit"), which is listed but not counted.
  struct Stop {
    std::string at;
    std::string cause;
    std::string detail;  ///< which units or node, in words
    bool failure = true;
  };
  std::optional<double> cost_s;  ///< moving average of the checkpoints' cost
  uint64_t checkpoints = 0;      ///< committed checkpoints seen
  uint64_t failures = 0;         ///< failures seen
  double exposure_s = 0;         ///< seconds the job ran, up to running_since
  std::string running_since;     ///< RFC 3339: it runs since; empty: stopped
  uint64_t restarts = 0;         ///< automatic restarts since the last checkpoint
  std::string backoff_until;     ///< RFC 3339: no automatic restart before
  std::string given_up;          ///< why automatic restarts stopped; empty: they go on
  /// Ties between units of the job gcp-deps found at its last checkpoint; nullopt: unknown.
  std::optional<uint64_t> job_ties;
  std::vector<Checkpoint> recent;  ///< the newest checkpoints
  std::vector<Stop> stops;         ///< the newest failures and planned stops
  json extra = json::object();

  bool empty() const {
    return !cost_s && checkpoints == 0 && failures == 0 && exposure_s == 0 && running_since.empty() && stops.empty() &&
           restarts == 0 && given_up.empty() && extra.empty();
  }
};

/// A job: a collection of units.
struct Job {
  std::string name;
  uid_t owner = 0;      ///< owner uid: only it and root may touch the job
  std::string created;  ///< RFC 3339 UTC
  std::vector<Unit> units;
  /// Retention: committed checkpoints to keep (the oldest go after a new commit);
  /// nullopt keeps all. Serialised as policy.keep.
  std::optional<uint64_t> keep;
  /// Deadline in ms of each callback event per unit, unless a tool's --callback-timeout
  /// says otherwise; nullopt: 10000. Serialised as policy.callbackTimeoutMs.
  std::optional<uint64_t> callback_timeout_ms;
  /// How its checkpoints are taken unless a tool says otherwise. Serialised as
  /// policy.mode, left out when coordinated.
  Mode mode = Mode::kCoordinated;
  /// How the job checkpointer reaches its nodes; nullopt: the site configuration's.
  std::optional<Launcher> launcher;
  /// When it is checkpointed; nullopt: the site's default policy.
  std::optional<CheckpointPolicy> checkpoint_policy;
  /// What the policy has seen.
  History history;
  json extra = json::object();

  /// The unit with this name; nullptr when there is none.
  Unit* find_unit(const std::string& unit);
  const Unit* find_unit(const std::string& unit) const;
};

/// One image file of a unit's checkpoint, as the chunks that make it up.
struct ImageFile {
  std::string path;            ///< relative to the unit's image directory
  uint64_t size = 0;           ///< bytes
  uint32_t chunk_size = 4096;  ///< every chunk has this size but the last
  /// The SHA-256 of each chunk in file order, 32 bytes each, one after the other. The
  /// store keeps them in a binary chunk list beside the manifest (a JSON list of 262,144
  /// hashes per GiB takes most of a second to parse) and fills them in when it loads a
  /// checkpoint; empty when not loaded. In JSON ("chunks", only inline when asked
  /// for), the same digests in lowercase hex.
  std::string digests;
  json extra = json::object();

  static constexpr size_t kDigestBytes = 32;
  /// ceil(size / chunk_size): how many chunks the file has.
  size_t chunk_count() const { return static_cast<size_t>((size + chunk_size - 1) / chunk_size); }
  /// The 32 bytes of chunk i's SHA-256.
  std::string_view digest(size_t i) const { return std::string_view(digests).substr(i * kDigestBytes, kDigestBytes); }
  /// Chunk i's SHA-256 in hex, or its first `digits` hex digits.
  std::string digest_hex(size_t i, size_t digits = 2 * kDigestBytes) const;

  /// Length of chunk i.
  uint64_t chunk_length(size_t i) const {
    uint64_t start = static_cast<uint64_t>(i) * chunk_size;
    return size - start < chunk_size ? size - start : chunk_size;
  }
};

/// A regular file outside the store that a process of a unit had open for writing at
/// the checkpoint (gcp-manifest(5): writtenFiles). A restart compares the file now at
/// `path` with it before anything is restored (gcp/written_files.h).
struct WrittenFile {
  std::string path;      ///< absolute, as the node saw it (no "..", no "//")
  uint64_t size = 0;     ///< bytes at the checkpoint
  int64_t mtime_ns = 0;  ///< its modification time then, nanoseconds since the epoch
  uid_t uid = 0;         ///< its owner then
  uint32_t mode = 0644;  ///< its permission bits then (CRIU restores only that mode)
  /// SHA-256 of its first `size` bytes, lowercase hex; empty when the job's owner did not
  /// own it (gcp reads no file for a user that the user does not own).
  std::string sha256;
  bool append = false;  ///< opened with O_APPEND (CRIU then restores it at any size)
  /// Only opened for writing, never for reading (O_WRONLY); CRIU checks the size of every
  /// file but one opened O_WRONLY|O_APPEND.
  bool write_only = false;
  /// Its content at the checkpoint is kept among the unit's images at this path
  /// (small files only); empty when it was not kept.
  std::string kept;
};

/// An absolute path without ".", ".." or empty parts (no "//", no trailing "/"), no
/// NUL, of at most 4096 bytes: what a restart may act on.
bool plain_absolute_path(std::string_view path);

/// One unit in a checkpoint.
/// What a node that restores a unit must offer, as recorded at its checkpoint and
/// checked before a restart (gcp-restart --check). Serialised as a unit's "target".
struct Target {
  std::string kernel;  ///< the kernel release of the node it was checkpointed on
  /// Images its translib checks a node with (CRIU: cpuinfo.img). Serialised as checkImages.
  std::vector<std::string> check_images;
  std::vector<std::string> addresses;  ///< IPv4 addresses of its own: free where it restarts
  /// Mount points of its node that it uses, holding data (not proc, tmpfs, ...): they must
  /// be mount points where it restarts.
  std::vector<std::string> mounts;
};

struct CheckpointUnit {
  std::string name;
  std::string node;
  std::string grouping = "pidns";
  std::string translib;              ///< translib name, e.g. "criu"
  std::string translib_version;      ///< the translib's own version
  std::string checkpointer;          ///< e.g. "criu"
  std::string checkpointer_version;  ///< e.g. "4.2.1"
  std::vector<ImageFile> images;
  /// Options the checkpointer was given because of the unit's ties (gcp-deps), e.g.
  /// "--tcp-established"; the restart passes them again. Serialised as checkpointerOptions.
  std::vector<std::string> options;
  /// The TCP connections the checkpointer holds in the images, as its translib said
  /// ({family, src, srcPort, dst, dstPort}); the restart gives them back. Serialised as
  /// tcpConnections when there are any.
  json tcp_connections = json::array();
  json timings = json::object();  ///< milliseconds: freeze, dump, store, callbacks per event
  /// How its callbacks were delivered: "socket", "hooks", "socket+hooks", "none"; empty
  /// when the unit has no callback endpoint (a job from before callbacks).
  std::string callbacks;
  json bytes = json::object();  ///< raw, stored, new
  json stats = json::object();  ///< the checkpointer's own numbers
  /// Ties to other units of the job that an uncoordinated checkpoint could not keep
  /// consistent (the restart warns of each). Serialised as jobTies, left out when empty.
  std::vector<std::string> job_ties;
  /// The zstd level its new chunks were compressed with. Serialised as zstdLevel.
  std::optional<int> zstd_level;
  /// Regular files outside the store its processes had open for writing. Serialised as
  /// writtenFiles, left out when empty.
  std::vector<WrittenFile> written_files;
  /// What a node restoring it must offer; nullopt in checkpoints taken before gcp
  /// recorded it.
  std::optional<Target> target;
  json extra = json::object();
};

/// A committed snapshot of a job.
struct Checkpoint {
  std::string job;
  uint64_t seq = 0;
  std::string created;
  Mode mode = Mode::kCoordinated;
  /// It holds some of the job's running units only (a migration of one unit, an
  /// uncoordinated checkpoint of one node's units): a restart of the whole job does not
  /// take it unless asked. Serialised as "partial": true, left out when false.
  bool partial = false;
  std::string kernel;
  /// Nodes whose kernel was not `kernel`, and theirs. Serialised as "kernels", left out
  /// when empty.
  std::map<std::string, std::string> kernels;
  std::vector<CheckpointUnit> units;
  json timings = json::object();  ///< milliseconds per phase of the whole round
  json bytes = json::object();
  /// Where the chunk hashes are: {"path": "chunks.bin", "count": N, "sha256": hex};
  /// empty when the images carry their chunks inline. Serialised as chunkList.
  json chunk_list = json::object();
  json extra = json::object();

  /// The unit with this name; nullptr when there is none.
  const CheckpointUnit* find_unit(const std::string& unit) const;
  /// "checkpoint SEQ of job 'JOB'", for messages.
  std::string name() const;
};

/// Parses a launcher object ({"kind", "command", "slurmJob"}, or just the kind as a
/// string); throws Error(kUsage) naming `where` (e.g. "/etc/gcp/gcp.json:
/// nodes.n1.launcher") when it is wrong.
Launcher launcher_from_json(const json& doc, const std::string& where);
json to_json(const Launcher& launcher);

/// Throws Error(kUsage) unless `name` can be a job or unit name: 1 to 64 characters
/// of [A-Za-z0-9._-], not starting with '.' or '-'. `what` is "job" or "unit".
void check_name(const std::string& what, const std::string& name);

/// Serialises to a manifest document (apiVersion and kind first).
json to_json(const Job& job);
/// Every image gets chunkCount; `chunk_lists` adds its chunks inline (when loaded).
json to_json(const Checkpoint& checkpoint, bool chunk_lists = true);

/// Parses a manifest document; throws Error(kUsage) naming the field ("units[1].name")
/// and `source` (a file name, "stdin" or a job id) when a field is missing or wrong, or
/// the apiVersion is not gcp/v1 or the kind is not the expected one.
Job job_from_json(const json& doc, const std::string& source);
Checkpoint checkpoint_from_json(const json& doc, const std::string& source);

/// What gcp reads from JSON it did not just write (store content, stdin, a node's
/// answers) may be hostile: these bound it (gcp-security(7), Limits).
/// Arrays and objects nest at most this deep (copying or destroying a document recurses).
inline constexpr size_t kMaxDepth = 64;
/// An object has at most this many members (finding a key in an ordered_json object is a
/// linear search, so a million keys would take hours to parse).
inline constexpr size_t kMaxMembers = 10000;
/// Largest Job manifest (job.json) read.
inline constexpr size_t kMaxJobBytes = 16u << 20;
/// Largest Checkpoint manifest (manifest.json) read; chunks inline take 16 MiB per GiB.
inline constexpr size_t kMaxCheckpointBytes = 256u << 20;
/// Largest image file a Checkpoint may list (1 PiB, more than any machine's memory): its
/// chunk count and byte offsets then fit in 64 bits whatever its chunk size.
inline constexpr uint64_t kMaxImageBytes = 1ull << 50;
/// Largest chunk size an image may have (the store cuts at most 1 MiB pieces).
inline constexpr uint32_t kMaxChunkSize = 1u << 20;

/// Parses text as JSON; throws Error(kUsage) naming `source` on a syntax error, a number
/// out of range, nesting deeper than kMaxDepth or an object with more than kMaxMembers
/// members. The message shows the text's bytes printable (\xNN).
json parse(std::string_view text, const std::string& source);
/// The same for a line of a protocol: nullopt instead of an error (`why` says why).
std::optional<json> try_parse(std::string_view text, std::string* why = nullptr);

/// The document as JSON text (indented by `indent` spaces, -1: one line); bytes in its
/// strings that are not UTF-8 become U+FFFD, so that printing a report never throws.
std::string dump(const json& doc, int indent = 2);

/// obj[key] when it is a non-negative integer, else `fallback` (also when obj is not an
/// object): for numbers of a manifest that only inform (bytes, timings).
uint64_t count_or(const json& obj, const char* key, uint64_t fallback = 0);
/// obj[key] when it is a number, else `fallback`.
double number_or(const json& obj, const char* key, double fallback = 0);

/// The current time as RFC 3339 UTC with milliseconds.
std::string now_rfc3339();
/// Seconds since the epoch as RFC 3339 UTC with milliseconds.
std::string rfc3339(double epoch_s);
/// Parses RFC 3339 ("2026-12-07T14:00:00Z", fractions and "+01:00" offsets too) into
/// seconds since the epoch; nullopt when it is not one.
std::optional<double> parse_rfc3339(const std::string& text);

/// Parses a policy.checkpoint object; throws Error(kUsage) naming `where` and the field
/// when a value is wrong (an interval that is not positive or is over a year, an
/// unknown kind, a deadline that is not RFC 3339).
CheckpointPolicy checkpoint_policy_from_json(const json& doc, const std::string& where);
json to_json(const CheckpointPolicy& policy);

}  // namespace gcp::manifest
