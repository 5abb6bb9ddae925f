// SPDX-License-Identifier: MIT
#pragma once

// Names that tools pass to each other and to units, in one place.
namespace gcp::names {

inline constexpr const char* kEnvStore = "GCP_STORE";                ///< default store directory
inline constexpr const char* kEnvCriu = "GCP_CRIU";                  ///< criu binary to use
inline constexpr const char* kEnvTranslibPath = "GCP_TRANSLIB_PATH"; ///< extra translib directories
inline constexpr const char* kEnvInit = "GCP_INIT";                  ///< gcp-init binary to use
inline constexpr const char* kEnvConfig = "GCP_CONFIG";              ///< node configuration file
inline constexpr const char* kEnvJob = "GCP_JOB";                    ///< set in a unit: its job
inline constexpr const char* kEnvUnit = "GCP_UNIT";                  ///< set in a unit: its name
/// Set in a unit: where its application may listen for callbacks (gcp-callbacks(7)).
inline constexpr const char* kEnvCallbackSocket = "GCP_CALLBACK_SOCKET";

inline constexpr const char* kOptStore = "--store";
inline constexpr const char* kOptJob = "--job";
inline constexpr const char* kOptUnit = "--unit";
inline constexpr const char* kOptSeq = "--seq";
inline constexpr const char* kOptCallbackTimeout = "--callback-timeout";

/// The --help text of --store, the same in every tool.
inline constexpr const char* kStoreHelp =
    "Checkpoint store directory (default: $GCP_STORE, else /var/lib/gcp for root, else "
    "$XDG_DATA_HOME/gcp or ~/.local/share/gcp)";

}  // namespace gcp::names
