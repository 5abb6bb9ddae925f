// SPDX-License-Identifier: MIT
#pragma once

// gcp's side of the application callbacks (gcp-callbacks(7)): delivers one event to a
// unit through its socket (the application listens, see gcp/callbacks.h) and its hook
// executables, each with a deadline. The job checkpointer and restart call it.

#include "gcp/manifest.h"

#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace gcp::events {

/// The protocol gcp speaks; sent as "gcp" in every request.
inline constexpr const char* kProtocol = "callbacks/v1";
/// Where gcp keeps what lives only as long as the node runs.
inline constexpr const char* kRunDir = "/run/gcp";
/// The deadline of one event when none is given.
inline constexpr std::chrono::milliseconds kDefaultDeadline{10000};

/// The events, in the order a checkpoint and a restart send them.
enum class Event { kPreCheckpoint, kPostCheckpoint, kPostRestart, kAbort };

/// "pre-checkpoint", "post-checkpoint", "post-restart" or "abort".
const char* name(Event event);

/// One event for one unit.
struct Request {
  Event event = Event::kPreCheckpoint;
  std::string job;
  std::string unit;
  uint64_t seq = 0;                                       ///< the checkpoint it is about
  std::chrono::milliseconds deadline = kDefaultDeadline;  ///< for the socket and the hooks together
  std::optional<pid_t> unit_pid;                          ///< host PID of the unit's init, for hooks
  uid_t owner = 0;  ///< the job's owner: hooks run as this user (with its primary group)
};

/// What a unit did with an event.
struct Result {
  bool ok = true;
  std::string message;       ///< why it failed: "...: <the application's message>"
  double ms = 0;             ///< from the first connect attempt to the last answer
  std::string via = "none";  ///< "socket", "hooks", "socket+hooks" or "none" (nobody listened)
};

/// The socket path gcp gives a unit: /run/gcp/callbacks/<16 hex digits>/<unit>.sock,
/// the digits a hash of the store and the job, so that it always fits sun_path (108
/// bytes) and two stores never share one.
std::string socket_path(const std::filesystem::path& store_root, const std::string& job, const std::string& unit);

/// Creates the directory of a unit's socket (mode 0700, owned by `owner`) and removes a
/// socket file left in it, so that the application (or CRIU on restore) can bind there.
void prepare_socket(const std::string& socket, uid_t owner);

/// Removes a stopped unit's socket file and, when empty, its directory; quietly.
void remove_socket(const std::string& socket);

/// Throws Error(kUsage) unless `dir` is a directory that only root or `owner` can
/// change, and every directory above it too (fs::trusted_path: its hooks run as the
/// owner). Returns its resolved path. Checked again at every event.
std::string check_hooks_dir(const std::string& dir, uid_t owner);

/// The entries of a hooks directory to run, in lexical order: executable regular files
/// and symbolic links (which the delivery refuses); other files are skipped.
std::vector<std::string> hooks_in(const std::string& dir);

/// Delivers one event: first through the socket (an absent socket or one nobody
/// listens on costs one connect attempt and counts as no callback), then through each
/// hook executable. The deadline covers both; a missed deadline, an error answer, or a
/// hook that fails is a failed Result, never an exception.
Result deliver(const manifest::Callbacks& endpoint, const Request& request);

/// Delivers one event to several units at once (one thread each) and returns their
/// results in the same order.
std::vector<Result> deliver_all(const std::vector<std::pair<manifest::Callbacks, Request>>& events);

/// True when the unit has a callback endpoint (a job from before callbacks has none).
bool has_endpoint(const manifest::Unit& unit);

/// Delivers one event about checkpoint `seq` to units of `job` at once; results in
/// the units' order.
std::vector<Result> deliver_to(const std::vector<const manifest::Unit*>& units, Event event, const manifest::Job& job,
                               uint64_t seq, std::chrono::milliseconds deadline);

/// Logs a warning for each unit whose event failed: for events after which the
/// application goes on anyway. `what` says what goes on.
void warn_failed(const std::vector<const manifest::Unit*>& units, const std::vector<Result>& results,
                 const std::string& what);

}  // namespace gcp::events
