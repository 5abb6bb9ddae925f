// SPDX-License-Identifier: MIT
#pragma once

// The parts of a round that run on this node, by direct calls (checkpoint_part.cc,
// restart_part.cc): the job checkpointer's own node, and what a node's unit-level
// command (agent.cc) drives for a job checkpointer elsewhere.

#include "gcp/netns.h"
#include "gcp/rounds.h"
#include "gcp/store.h"

#include <functional>
#include <memory>

namespace gcp::rounds {

/// A checkpoint part for this node's units of `job`.
std::unique_ptr<CheckpointPart> local_checkpoint_part(store::Store& store, const Machine& machine,
                                                      const manifest::Job& job);

/// What to undo at once if this process must end while the part's units are frozen
/// (the job checkpointer went away): their networks unlock; the watchdog thaws them.
/// Callable from any thread, also after the part is gone.
std::function<void()> emergency_undo(CheckpointPart& local_part);

/// A unit's network on this node: the parent device this node's configuration names,
/// else the one it had where it ran before.
netns::Config network_on_this_node(const manifest::Network& network);

/// A restart part for units of `job` that are to run on this node.
std::unique_ptr<RestartPart> local_restart_part(store::Store& store, const Machine& machine, const manifest::Job& job);

}  // namespace gcp::rounds
