// SPDX-License-Identifier: MIT
#pragma once

#include "gcp/error.h"
#include "gcp/grouping.h"

#include <CLI/CLI.hpp>

#include <optional>
#include <string>

namespace gcp::grouping {

/// The options that name an ad-hoc unit, the same in gcp-deps and gcp-checkpoint:
/// --pid P [--tree], --pgid G, --sid S, --cgroup PATH, --pidns P.
struct CliOptions {
  std::optional<int> pid, pgid, sid, pidns;
  std::optional<std::string> cgroup;
  bool tree = false;

  /// Adds the options to `app`; they exclude each other.
  void add(CLI::App& app) {
    auto* p = app.add_option("--pid", pid, "An ad-hoc unit: the process tree of this PID (with --tree, the default)");
    auto* t = app.add_flag("--tree", tree, "With --pid: the process and all its descendants");
    auto* g = app.add_option("--pgid", pgid, "An ad-hoc unit: the members of this process group");
    auto* s = app.add_option("--sid", sid, "An ad-hoc unit: the members of this session");
    auto* c =
        app.add_option("--cgroup", cgroup,
                       "An ad-hoc unit: the processes of this cgroup (a directory, or a path relative to a hierarchy)");
    auto* n = app.add_option("--pidns", pidns, "An ad-hoc unit: every process in the PID namespace of this init");
    t->needs(p);
    for (auto* a : {p, g, s, c, n}) {
      for (auto* b : {p, g, s, c, n}) {
        if (a != b) a->excludes(b);
      }
    }
  }

  /// The spec the options name; nullopt when none was given.
  std::optional<Spec> spec() const {
    auto checked = [](int v, const char* opt) {
      if (v <= 0)
        throw Error(Exit::kUsage, std::string(opt) + " " + std::to_string(v) + " is not a PID", "give a positive PID");
      return static_cast<pid_t>(v);
    };
    if (pid) return Spec{Kind::kTree, checked(*pid, "--pid"), {}};
    if (pgid) return Spec{Kind::kPgid, checked(*pgid, "--pgid"), {}};
    if (sid) return Spec{Kind::kSid, checked(*sid, "--sid"), {}};
    if (pidns) return Spec{Kind::kPidns, checked(*pidns, "--pidns"), {}};
    if (cgroup) return Spec{Kind::kCgroup, 0, *cgroup};
    return std::nullopt;
  }
};

}  // namespace gcp::grouping
