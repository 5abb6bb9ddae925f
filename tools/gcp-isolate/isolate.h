// SPDX-License-Identifier: MIT
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace gcp::isolate {

/// What the command line of gcp-isolate says.
struct Options {
  std::string store;  ///< empty: the default store
  std::string job;
  std::string unit = "main";
  std::vector<std::string> command;
  std::optional<std::string> kill_unit;
  std::optional<uint64_t> keep;                 ///< run: the job's retention policy
  std::string hooks;                            ///< run: directory of hook executables for the unit
  std::optional<uint64_t> callback_timeout_ms;  ///< run: the job's policy.callbackTimeoutMs
  std::string node;                             ///< run: start the unit on this node (through its launcher)
  std::string launcher;                         ///< run: the job's launcher kind (local, ssh, srun)
  bool uncoordinated = false;                   ///< run: the job's policy.mode is "uncoordinated"
  std::string policy;                           ///< run: the job's checkpoint policy spec (gcp-policy(7)); empty: kept
  std::string address;                          ///< run: the unit's own IPv4 CIDR; empty: the node's network
  std::string via;                 ///< run: lower device of its macvlan; empty: configured or default route's
  std::string gateway;             ///< run: its default route; empty: none
  std::vector<std::string> share;  ///< run: namespaces shared with the node (ipc, uts, net)
};

/// gcp-isolate run: starts a unit and prints the Job manifest.
void run(const Options& opt);
/// gcp-isolate list: prints the jobs of the store with their units' states.
void list(const Options& opt);
/// gcp-isolate status JOB: prints the Job manifest with live states.
void status(const Options& opt);
/// gcp-isolate kill JOB [--unit U]: kills units and prints the Job manifest.
void kill(const Options& opt);

}  // namespace gcp::isolate
