// SPDX-License-Identifier: MIT
#pragma once

// Rounds (DESIGN.md, Rounds in code). A checkpoint or a restart of a job is a round: an
// object with one method per phase (checkpoint_round.h, restart_round.h) that drives one
// *part* per node, the same phases whether the node is this one (a local part: direct
// calls) or another (a remote part: the node's unit-level command, gcp-checkpoint
// --agent or gcp-restart --agent, reached through its launcher). What a part does that
// must be undone is held by undo guards (gcp/undo.h): a failure anywhere unwinds it.
//
//   checkpoint round          each part
//   prepare                   prepare    its units checked, checkpointers loaded
//   callbacks                 callbacks  pre-checkpoint, then the dependency check
//   freeze (the barrier)      freeze     checkpointers started, units frozen, networks locked
//   dump                      dump       every unit dumped
//   resume                    resume     thawed and told post-checkpoint, or held frozen
//   store                     store      images stored in the store (not yet committed)
//   commit                    committed  the manifest renamed into place; staging goes
//   release (held units)      release    stopped (--stop, a migration) or thawed
//
//   restart round             each part
//   verify                    -          the checkpoint(s) to restart, the plan
//   place                     prepare    checkpoints loaded, checkpointers probed, cgroups free
//   check                     check      the node offers what each unit's checkpoint recorded
//   restore                   restore    every unit restored (stopped, when the round spans nodes)
//   resume                    resume     the units go on
//   callbacks                 callbacks  post-restart
//
// A round that fails calls abort() on every part: each undoes what it did (thaw, unlock,
// abort callbacks, remove staging; a restart kills what it restored). A part that does
// not answer within its phase's deadline is cancelled and the round fails.

#include "gcp/cgroup.h"
#include "gcp/compat.h"
#include "gcp/deps.h"
#include "gcp/manifest.h"
#include "gcp/names.h"
#include "gcp/written_files.h"

#include <chrono>
#include <exception>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace gcp::store {
class Store;
}

namespace gcp::rounds {

using manifest::json;
using Clock = std::chrono::steady_clock;

/// Milliseconds from a to b.
inline double ms_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}
/// Milliseconds to one decimal, as manifests record them.
inline double round_ms(double ms) { return static_cast<double>(static_cast<long long>(ms * 10 + 0.5)) / 10; }

/// Runs call(i) for every i < count at once and waits up to `deadline`; cancel(i) ends
/// a call that has not returned by then (the round waits for it). Returns how each call
/// failed, nullptr where it returned: an exception it threw, or an Error saying it gave
/// no answer within the deadline of `phase`.
std::vector<std::exception_ptr> run_all(size_t count, const char* phase, Clock::time_point deadline,
                                        const std::function<void(size_t)>& call,
                                        const std::function<void(size_t)>& cancel);

/// What a round needs of the machine its local part runs on: the seam at the OS
/// boundary, so that rounds are tested without root.
struct Machine {
  cgroup::Cgroups& cgroups;
  /// Builds the ties of the units about to be frozen; deps::build reads /proc.
  std::function<deps::Graph(const std::string& job, const std::vector<deps::UnitSpec>& units,
                            const deps::Context& context)>
      ties;
};

/// This machine: its cgroups, and deps::build for the ties.
Machine system_machine(cgroup::Cgroups& cgroups);

/// How to checkpoint a job.
struct CheckpointOptions {
  bool stop = false;  ///< kill the units once the checkpoint is committed
  /// Keep the units frozen once dumped until release() says what to do with them (a
  /// migration); stop implies it.
  bool hold = false;
  std::chrono::milliseconds freeze_timeout = names::kDefaultFreezeTimeout;  ///< per unit
  /// Longest the units may stay frozen: if the tool dies or hangs, a watchdog thaws them
  /// after this (at once when it dies). Longer than the longest dump.
  std::chrono::seconds max_frozen = names::kDefaultMaxFrozen;
  /// Deadline of each callback event per unit; empty: the job's policy.callbackTimeoutMs,
  /// else names::kDefaultCallbackDeadline.
  std::optional<std::chrono::milliseconds> callback_timeout;
  /// Committed checkpoints to keep after this one (overrides the job's policy.keep).
  std::optional<uint64_t> keep;
  /// Checkpoint a unit even when its ties say it would restart broken (gcp-deps).
  bool force = false;
  /// Checkpoint the units on this node on their own (--uncoordinated or the job's
  /// policy): a tie between two units then breaks the checkpoint.
  bool uncoordinated = false;
  /// Only these units (a migration); empty: every running unit of the job.
  std::vector<std::string> units;
};

/// How to restart a job.
struct RestartOptions {
  std::optional<uint64_t> seq;  ///< the checkpoint to restart; empty: the latest
  /// When the chosen checkpoint does not verify, take the newest earlier one that does.
  bool fallback = false;
  /// Read every image back into scratch before restoring anything, even where the
  /// checkpointer could read them from a gcp image source.
  bool materialize = false;
  /// Deadline of the post-restart callback per unit; empty: as for CheckpointOptions.
  std::optional<std::chrono::milliseconds> callback_timeout;
  /// Where units go, by name: another node than the one they ran on (--place U=N).
  std::map<std::string, std::string> place;
  /// Only these units (a migration); empty: every unit of the checkpoint.
  std::vector<std::string> units;
  /// What to do with a file the job wrote that changed since the checkpoint (--files).
  files::Policy files = files::Policy::kRefuse;
};

/// The callback deadline a round uses: the option, else the job's policy, else the default.
std::chrono::milliseconds callback_deadline(const std::optional<std::chrono::milliseconds>& option,
                                            const manifest::Job& job);

/// What one part of a checkpoint round is asked to do: the round's plan for its node.
struct CheckpointRequest {
  std::string job;
  uint64_t seq = 0;                ///< the checkpoint the round began
  std::vector<std::string> units;  ///< this part's units
  bool hold = false;               ///< units stay frozen once dumped, until release()
  /// Other nodes take part in the round: networks stay locked until every unit is
  /// dumped (what a unit dumped first takes in, one not yet dumped sends again).
  bool spans = false;
  bool uncoordinated = false;
  bool force = false;
  std::chrono::milliseconds freeze_timeout = names::kDefaultFreezeTimeout;
  std::chrono::seconds max_frozen = names::kDefaultMaxFrozen;
  std::chrono::milliseconds callback_deadline = names::kDefaultCallbackDeadline;
  /// Addresses where other units of the job are reached, and the unit at each (a TCP
  /// peer there is a tie within the job: deps::Context::peers).
  std::map<std::string, std::string> peers;
};
json to_json(const CheckpointRequest& request);
/// Parses what to_json wrote; throws Error(kUsage) naming the field.
CheckpointRequest checkpoint_request_from_json(const json& doc);

/// One node's part of a checkpoint round. The round calls the phases in the order
/// above; a phase throws Error when it fails (then the round calls abort()).
class CheckpointPart {
 public:
  virtual ~CheckpointPart() = default;
  /// The node whose units it checkpoints.
  virtual const std::string& node() const = 0;
  /// Checks the units and loads their checkpointers; nothing is changed yet.
  virtual void prepare(const CheckpointRequest& request) = 0;
  /// Delivers pre-checkpoint (the applications quiesce), then checks the units' ties.
  virtual void callbacks() = 0;
  /// Starts the checkpointers, freezes every unit, locks networks where needed.
  virtual void freeze() = 0;
  /// Dumps every unit.
  virtual void dump() = 0;
  /// thaw: thaws the units and delivers post-checkpoint; else keeps them frozen.
  virtual void resume(bool thaw) = 0;
  /// Stores the images in the store, uncommitted; returns this part of the checkpoint:
  /// its units (images, bytes, timings) and its own timings, bytes and kernel.
  virtual manifest::Checkpoint store() = 0;
  /// The round has committed the checkpoint: the part's local staging goes.
  virtual void committed() = 0;
  /// Units kept frozen: stop (kill) them, or thaw them (a migration whose restart failed).
  virtual void release(bool stop) = 0;
  /// Undoes everything the part did, in order: thaw, unlock, abort callbacks, staging.
  /// Never throws; does nothing after committed() but thaw units still held.
  virtual void abort(const std::string& reason) noexcept = 0;
  /// Makes a phase running on another thread end soon (a node that does not answer).
  /// Safe to call from any thread.
  virtual void cancel() noexcept = 0;
};

/// What one part of a restart round is asked to do.
struct RestartRequest {
  std::string job;
  /// This part's units, each with the checkpoint it comes from.
  std::map<std::string, uint64_t> units;
  bool materialize = false;
  /// The units wait stopped until resume() (the round spans nodes: a unit that ran at
  /// once could send to a peer not restored yet, whose kernel would reset it).
  bool leave_stopped = false;
  std::chrono::milliseconds callback_deadline = names::kDefaultCallbackDeadline;
  files::Policy files = files::Policy::kRefuse;  ///< RestartOptions::files
};
json to_json(const RestartRequest& request);
/// Parses what to_json wrote; throws Error(kUsage) naming the field.
RestartRequest restart_request_from_json(const json& doc);

/// A unit as a restart left it.
struct Restored {
  std::string unit;
  uint64_t seq = 0;    ///< the checkpoint it came from
  std::string node;    ///< where it runs now
  pid_t pid = 0;       ///< host PID of its root
  std::string cgroup;  ///< its cgroup there (gcp/J/U, or gcp/J/U.SEQ on a shared kernel)
  std::vector<std::string> node_addresses;
  std::string network_parent;  ///< its own network's parent device there; empty: none
};
json to_json(const Restored& restored);
Restored restored_from_json(const json& doc);

/// One node's part of a restart round.
class RestartPart {
 public:
  virtual ~RestartPart() = default;
  virtual const std::string& node() const = 0;
  /// Loads the checkpoints, probes the checkpointers, checks that each unit's cgroup is
  /// free and that this node's checkpointer can read what wrote the images.
  virtual void prepare(const RestartRequest& request) = 0;
  /// Compares what this node offers with what each unit's checkpoint recorded (CPU,
  /// kernel, checkpointer, addresses, mounts); changes nothing.
  virtual compat::Verdict check() = 0;
  /// Restores every unit (all or nothing); a chunk that does not verify throws
  /// store::Corrupt before any restored task runs.
  virtual std::vector<Restored> restore() = 0;
  /// The restored units go on (they waited stopped when asked to).
  virtual void resume() = 0;
  /// Delivers post-restart; returns per unit {via, ms, error} (a failure is a warning).
  virtual json callbacks() = 0;
  /// Kills what it restored and not yet resumed. Never throws.
  virtual void abort(const std::string& reason) noexcept = 0;
  /// As CheckpointPart::cancel.
  virtual void cancel() noexcept = 0;
};

/// Makes the part of each node (a seam: tests give rounds fake parts).
class Nodes {
 public:
  virtual ~Nodes() = default;
  /// The part for `node`; throws Error(kUsage) saying what to configure when no launcher
  /// reaches it (before anything is begun or frozen).
  virtual std::unique_ptr<CheckpointPart> checkpoint_part(const std::string& node, const manifest::Job& job) = 0;
  virtual std::unique_ptr<RestartPart> restart_part(const std::string& node, const manifest::Job& job) = 0;
};

/// This machine's view: a local part for this node, a remote part (the node's
/// gcp-checkpoint --agent or gcp-restart --agent through its launcher) for any other.
std::unique_ptr<Nodes> system_nodes(store::Store& store, const Machine& machine);

}  // namespace gcp::rounds
