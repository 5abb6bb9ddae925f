// SPDX-License-Identifier: MIT
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace gcp::store_tool {

/// What the command line of gcp-store says.
struct Options {
  std::string store;  ///< empty: the default store
  std::string job;    ///< empty: every job (ls, verify)
  std::optional<uint64_t> seq;
  bool human = false;      ///< a table instead of JSON (also when stdout is a terminal)
  bool chunks = false;     ///< show: include the chunk lists
  int wait_s = 300;        ///< gc: how long to wait for checkpoints in flight
  std::string set_policy;  ///< policy: the new policy spec; empty: show only
  std::string plot;        ///< policy: write an SVG of the job's checkpoints and failures here
};

/// gcp-store ls [JOB]: jobs, or the checkpoints of JOB, with sizes and ratios.
void ls(const Options& opt);
/// gcp-store show JOB [SEQ]: a Checkpoint manifest (the latest when SEQ is not given).
void show(const Options& opt);
/// gcp-store verify [JOB [SEQ]]: reads every chunk back and checks it.
void verify(const Options& opt);
/// gcp-store gc: removes unreferenced chunks and abandoned staging.
void gc(const Options& opt);
/// gcp-store rm JOB [--seq N]: removes a checkpoint, or a stopped job and its checkpoints.
void rm(const Options& opt);
/// gcp-store du: bytes per owner, dedup and compression ratios.
void du(const Options& opt);
/// gcp-store policy JOB [--set SPEC] [--plot FILE]: the job's checkpoint policy, what it
/// measured and decided, and why (gcp-policy(7)); --set changes the policy first.
void policy(const Options& opt);

}  // namespace gcp::store_tool
