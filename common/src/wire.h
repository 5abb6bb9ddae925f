// SPDX-License-Identifier: MIT
#pragma once

// How rounds talk to a node's unit-level command (gcp-checkpoint --agent, gcp-restart
// --agent): one JSON object per line on its stdin and stdout (gcp-launchers(7)).
//
//   checkpoint  -> {"op":"checkpoint","protocol":3,"store":...,<CheckpointRequest>}
//                                             <- {"phase":"prepare"}
//               -> {"op":"callbacks"}         <- {"phase":"callbacks"}
//               -> {"op":"freeze"}            <- {"phase":"freeze"}      (the barrier)
//               -> {"op":"dump"}              <- {"phase":"dump"}
//               -> {"op":"resume","thaw":b}   <- {"phase":"resume"}
//               -> {"op":"store"}             <- {"phase":"store","checkpoint":{...}}
//               -> {"op":"commit"}            <- {"phase":"commit"}      (after the rename)
//              [-> {"op":"release","stop":b}  <- {"phase":"release"}]    (held units)
//   restart     -> {"op":"restart","protocol":3,"store":...,<RestartRequest>}
//                                             <- {"phase":"prepare"}
//               -> {"op":"check"}             <- {"phase":"check","checks":[<compat::Entry>...]}
//               -> {"op":"restore"}           <- {"phase":"restore","units":[<Restored>...]}
//               -> {"op":"resume"}            <- {"phase":"resume"}
//               -> {"op":"callbacks"}         <- {"phase":"callbacks","callbacks":{...}}
//
// Either side may end it: the job checkpointer with {"op":"abort","reason":...} or by
// closing the command's input (also when it dies: the pipe, or the ssh connection,
// closes), a node with {"phase":"error","message","hint","exit","corrupt"}. Before the
// commit, a node that loses its job checkpointer ends at once (its watchdog thaws its
// units); after it, held units thaw. Nothing is committed unless every node has stored
// its units.

#include "gcp/manifest.h"

#include <istream>
#include <string>
#include <string_view>

namespace gcp::rounds::wire {

/// The protocol above; a node that speaks another one refuses the round.
inline constexpr int kProtocol = 3;  // 3: restart asks "check" before "restore"

/// Longest line a node reads from the job checkpointer (requests are a few KiB).
inline constexpr size_t kMaxRequestBytes = 16u << 20;

/// Reads one line of at most `max` bytes from `in` into `line`, without its newline;
/// false at the end of input (a last line without its newline is not a message);
/// throws Error(kUsage) when the line is longer.
bool read_line(std::istream& in, std::string& line, size_t max);

/// A field of a message: `fallback` when it is absent or null; Error(kUsage) naming the
/// field when it has another type (or, for an int, is out of its range).
std::string text_field(const manifest::json& message, const char* key, const std::string& fallback);
bool flag_field(const manifest::json& message, const char* key, bool fallback);
int int_field(const manifest::json& message, const char* key, int fallback);

/// One message of the protocol: a JSON object (nesting bounded as manifest::parse
/// does); throws Error(kUsage) naming `from` otherwise.
manifest::json parse_message(std::string_view line, const std::string& from);

/// A node's part of a checkpoint as it travels: the manifest's units with each image's
/// chunk digests as one hex string (a list of 262,144 strings per GiB parses slowly).
manifest::json part_to_wire(const manifest::Checkpoint& part);
/// The other way; throws Error naming `from` when the digests do not fit the images.
manifest::Checkpoint part_from_wire(const manifest::json& doc, const std::string& from);

}  // namespace gcp::rounds::wire
