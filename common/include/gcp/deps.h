// SPDX-License-Identifier: MIT
#pragma once

#include "gcp/grouping.h"
#include "gcp/manifest.h"

#include <sys/types.h>

#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

// The dependency graph of a job's units: which processes they hold, and what ties
// those processes to each other and to the outside (DESIGN.md, Dependencies). Read
// from /proc and netlink sock_diag; says per tie that crosses a unit's boundary
// whether a checkpoint stays consistent, needs something of the checkpointer, or
// breaks. What it needs is said in gcp's words (kNeed*); each translib maps them to
// its checkpointer's own options (gcp-translib(7)).
namespace gcp::deps {

/// One unit to look at: its name and how to find its processes.
struct UnitSpec {
  std::string name;
  grouping::Spec spec;
  /// It has an address of its own that moves with it (gcp-isolate run --address).
  bool own_address = false;
};

/// Where the other ends of a tie are.
enum class Scope {
  kProcess,   ///< one process (an eventfd, a file it writes, a listening socket)
  kInside,    ///< processes of one unit
  kJob,       ///< processes of two or more units of the job
  kExternal,  ///< a process outside every unit, or a remote endpoint
};

/// An established TCP connection is dumped and restored with its state (CRIU:
/// --tcp-established).
inline constexpr const char* kNeedTcpEstablished = "tcp-established";
/// The unit's process group or session leader is outside it: restored into the
/// restorer's session (CRIU: --shell-job).
inline constexpr const char* kNeedLeaderOutside = "leader-outside";
/// A datagram socket is connected to one outside the unit, which is not dumped
/// (CRIU: --ext-unix-sk).
inline constexpr const char* kNeedUnixDatagramOutside = "unix-datagram-outside";

/// A process of the unit holds a file lock (flock, POSIX or OFD): dumped and taken
/// again on restore (CRIU: --file-locks).
inline constexpr const char* kNeedFileLocks = "file-locks";

/// What a tie means for a checkpoint of its unit.
enum class Verdict {
  kHarmless,  ///< restores as it was
  kNeeds,     ///< restores when the checkpointer meets `need`
  kBreaks,    ///< the unit would restart broken: `advice` says what to do
};

/// One end of a tie held by a local process.
struct End {
  pid_t pid = 0;
  int fd = -1;                 ///< -1 when the tie is not a descriptor (a mapping, a parent)
  std::string mode;            ///< "r", "w", "rw" for descriptors; the role otherwise
  std::optional<size_t> unit;  ///< index into Graph::units; nullopt: outside every unit
};

/// A shared object or relation that ties processes together.
struct Tie {
  std::string
      kind;  ///< "parent", "pgid", "sid", "tty", "pipe", "fifo", "unix", "tcp", "file-lock", "stopped", "traced", ...
  std::string object;  ///< what it is: "pipe:[123]", "127.0.0.1:5000 -> 127.0.0.1:40122", ...
  std::vector<End> ends;
  std::string remote;  ///< a network peer no local process holds, else empty
  Scope scope = Scope::kProcess;
  Verdict verdict = Verdict::kHarmless;
  std::string need;    ///< kNeeds: what the checkpointer must do, one of kNeed*
  std::string advice;  ///< why, and what to do
  /// True when the tie touches more than one unit or the outside.
  bool crossing() const { return scope == Scope::kJob || scope == Scope::kExternal; }
};

/// A resolved unit of the graph.
struct GraphUnit {
  std::string name;
  grouping::Spec spec;
  grouping::Members members;
  bool own_address = false;  ///< as in UnitSpec
};

/// The dependency graph of one or more units.
struct Graph {
  std::string job;  ///< may be empty for ad-hoc units
  std::string node;
  std::string created;
  std::vector<GraphUnit> units;
  std::map<pid_t, grouping::Process> processes;  ///< every process that is an end of a tie
  std::vector<Tie> ties;
  size_t descriptors = 0;  ///< descriptors looked at in the units
  double build_ms = 0;

  /// What the checkpointer must meet for unit i (kNeed*, sorted, no duplicates).
  std::set<std::string> needs(size_t unit) const;
  /// Ties of unit i that break its checkpoint.
  std::vector<const Tie*> breaking(size_t unit) const;
};

/// How a job is checkpointed: a tie between two units holds in a coordinated
/// checkpoint (both ends are dumped in one round) and breaks in an uncoordinated one.
struct Context {
  bool coordinated = true;
  /// The units are killed once dumped (gcp-checkpoint --stop, a migration): they do
  /// nothing after the checkpoint that a restart from it would undo.
  bool stop = false;
  /// Addresses (IPv4 "10.0.0.5" or IPv6 "[fd00::5]") where other units of the job,
  /// on other nodes, are reached, and the unit at each: a TCP peer there is a tie
  /// within the job, not to the outside.
  std::map<std::string, std::string> peers = {};
};

/// How a unit of a Job manifest is found: a PID namespace by its init, a tree by its
/// root, and a unit registered from a process group, a session or a cgroup by the
/// cgroup its processes were put into when it was registered.
grouping::Spec spec_of(const manifest::Unit& unit);

/// Builds the graph of `units` (resolved now). Throws Error(kUsage) when a unit
/// cannot be resolved.
Graph build(const std::string& job, const std::vector<UnitSpec>& units, const Context& context = {});

std::string scope_name(Scope scope);
std::string verdict_name(Verdict verdict);

/// The DependencyGraph manifest.
manifest::json to_json(const Graph& graph);
/// Graphviz: processes as nodes, units as clusters, ties as labelled edges, crossing
/// ties in red (breaking) or orange (needing something of the checkpointer).
std::string to_dot(const Graph& graph);
/// A short summary for people: per unit its processes, the crossing ties and verdicts.
std::string to_text(const Graph& graph);

}  // namespace gcp::deps
