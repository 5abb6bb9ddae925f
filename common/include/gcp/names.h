// SPDX-License-Identifier: MIT
#pragma once

#include <chrono>

// Names that tools pass to each other and to units, and the defaults they share, in one
// place. A translib's own settings (GCP_CRIU, GCP_CRIU_GATE, GCP_CRIU_LOG_LEVEL) are the
// translib's, documented in its man page.
namespace gcp::names {

// ---- the environment gcp reads (gcp-checkpoint(1), ENVIRONMENT) ----
inline constexpr const char* kEnvStore = "GCP_STORE";                 ///< default store directory
inline constexpr const char* kEnvScratch = "GCP_SCRATCH";             ///< local scratch for dumps and restores
inline constexpr const char* kEnvTranslibPath = "GCP_TRANSLIB_PATH";  ///< extra translib directories
inline constexpr const char* kEnvInit = "GCP_INIT";                   ///< gcp-init binary to use
inline constexpr const char* kEnvConfig = "GCP_CONFIG";               ///< node configuration file
inline constexpr const char* kEnvZstdLevel = "GCP_ZSTD_LEVEL";        ///< zstd level of new chunks
inline constexpr const char* kEnvDumpGate = "GCP_DUMP_GATE";          ///< "0": freeze before the checkpointer starts
inline constexpr const char* kEnvProgressDelay = "GCP_PROGRESS_DELAY_MS";  ///< before a progress line shows
/// "1": a tool run by a user does not go through gcp-user (the user's own store, as
/// that user; gcp-security(7)).
inline constexpr const char* kEnvNoHelper = "GCP_NO_HELPER";
/// The prefix of every setting above: a unit-level command on another node gets them
/// as they are here (launcher::forwarded_env), except the ones a node keeps its own.
inline constexpr const char* kEnvPrefix = "GCP_";

// ---- between gcp-user and the tool it runs as root (gcp-security(7)) ----
/// The real uid of the user gcp-user runs the tool for; honoured only when the tool runs
/// as root, removed from its environment at once (a unit, a hook or a node never sees
/// it). tools/gcp-user/user.c spells it too: it includes nothing of gcp.
inline constexpr const char* kEnvCallerUid = "GCP_CALLER_UID";

// ---- what a unit's processes and its hooks see (gcp-callbacks(7)) ----
inline constexpr const char* kEnvJob = "GCP_JOB";    ///< its job
inline constexpr const char* kEnvUnit = "GCP_UNIT";  ///< its unit's name
/// Where its application may listen for callbacks.
inline constexpr const char* kEnvCallbackSocket = "GCP_CALLBACK_SOCKET";
inline constexpr const char* kEnvEvent = "GCP_EVENT";                         ///< hooks: the event
inline constexpr const char* kEnvSeq = "GCP_SEQ";                             ///< hooks: the checkpoint
inline constexpr const char* kEnvDeadlineMs = "GCP_DEADLINE_MS";              ///< hooks: time left
inline constexpr const char* kEnvUnitPid = "GCP_UNIT_PID";                    ///< hooks: the unit's init
inline constexpr const char* kEnvCallbackProtocol = "GCP_CALLBACK_PROTOCOL";  ///< hooks: callbacks/v1

// ---- options one tool passes to another ----
inline constexpr const char* kOptStore = "--store";
inline constexpr const char* kOptJob = "--job";
inline constexpr const char* kOptUnit = "--unit";
inline constexpr const char* kOptSeq = "--seq";
inline constexpr const char* kOptKeep = "--keep";
inline constexpr const char* kOptCallbackTimeout = "--callback-timeout";
inline constexpr const char* kOptFreezeTimeout = "--freeze-timeout";
inline constexpr const char* kOptMaxFrozen = "--max-frozen";
inline constexpr const char* kOptForce = "--force";
inline constexpr const char* kOptHooks = "--hooks";
inline constexpr const char* kOptLauncher = "--launcher";
inline constexpr const char* kOptUncoordinated = "--uncoordinated";
inline constexpr const char* kOptPolicy = "--policy";
inline constexpr const char* kOptAddress = "--address";
inline constexpr const char* kOptVia = "--via";
inline constexpr const char* kOptGateway = "--gateway";
inline constexpr const char* kOptShare = "--share";
inline constexpr const char* kOptFiles = "--files";
inline constexpr const char* kFilesHelp =
    "What to do with a file the job had open for writing that changed since the checkpoint: refuse (default: "
    "nothing starts), truncate (cut a file that only grew back to its size then) or keep (as it is)";
/// One node's part of a round: JSON requests on stdin, answers on stdout.
inline constexpr const char* kOptAgent = "--agent";

/// The --help text of --store, the same in every tool.
inline constexpr const char* kStoreHelp =
    "Checkpoint store directory (default: $GCP_STORE, else /var/lib/gcp for root, else "
    "$XDG_DATA_HOME/gcp or ~/.local/share/gcp)";

// ---- defaults ----
/// How long a unit has to freeze.
inline constexpr std::chrono::milliseconds kDefaultFreezeTimeout{10000};
/// Longest units stay frozen before the watchdog thaws them (a hung or dead tool).
inline constexpr std::chrono::seconds kDefaultMaxFrozen{900};
/// How long a unit has to answer one callback event.
inline constexpr std::chrono::milliseconds kDefaultCallbackDeadline{10000};
/// Root's default store, and the one gcp-user always opens for users.
inline constexpr const char* kDefaultRootStore = "/var/lib/gcp";
/// Where the site configuration is (launchers, node settings, the stores open to users).
inline constexpr const char* kDefaultConfig = "/etc/gcp/gcp.json";

}  // namespace gcp::names
