// SPDX-License-Identifier: MIT
#pragma once

#include <string>

namespace gcp::rounds {

/// One node's part of a round (gcp-checkpoint --agent, gcp-restart --agent): reads the
/// job checkpointer's request from stdin, checkpoints or restores this node's units
/// phase by phase and answers each phase as a JSON line on stdout (the protocol is in
/// common/src/wire.h and gcp-launchers(7)). Logs go to stderr as "<tool>@<node>".
/// Returns the exit code.
int serve_agent(const std::string& tool, bool verbose);

}  // namespace gcp::rounds
