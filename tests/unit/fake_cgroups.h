// SPDX-License-Identifier: MIT
#pragma once

#include "gcp/cgroup.h"
#include "gcp/error.h"

#include <map>
#include <mutex>
#include <set>
#include <string>
#include <vector>

namespace gcp::testing {

/// Cgroups in memory for logic tests: no root, no real cgroup tree. A cgroup exists
/// once it is created, attached to or given pids; freezing goes THAWED -> FREEZING ->
/// FROZEN after a configurable number of polls of freeze_state().
class FakeCgroups : public cgroup::Cgroups {
 public:
  /// One fake cgroup.
  struct Group {
    std::set<pid_t> pids;                                      ///< its processes
    cgroup::FreezeState state = cgroup::FreezeState::kThawed;  ///< where its freezer is
    int polls_to_freeze = 0;                                   ///< FREEZING polls before it reports FROZEN
    bool stuck = false;                                        ///< stays FREEZING forever
    int polls = 0;                                             ///< freeze_state() calls since the last set_frozen(true)
  };

  /// Every create/attach/set_frozen/remove call in order: "create gcp/j/u",
  /// "attach gcp/j/u 42", "freeze gcp/j/u", "thaw gcp/j/u", "remove gcp/j/u".
  std::vector<std::string> calls;

  /// Puts `pid` into the cgroup (as if it had been started there), creating it.
  void add_pid(const std::string& path, pid_t pid) {
    std::lock_guard lock(mutex_);
    groups_[path].pids.insert(pid);
  }
  /// Empties the cgroup, as if its processes had ended.
  void clear_pids(const std::string& path) {
    std::lock_guard lock(mutex_);
    groups_[path].pids.clear();
  }
  /// Freezing the cgroup takes `polls` FREEZING answers before FROZEN.
  void freeze_after(const std::string& path, int polls) {
    std::lock_guard lock(mutex_);
    groups_[path].polls_to_freeze = polls;
    groups_[path].stuck = false;
  }
  /// Freezing the cgroup never completes (a process stuck in the kernel).
  void never_freeze(const std::string& path) {
    std::lock_guard lock(mutex_);
    groups_[path].stuck = true;
  }
  /// create() of this path throws Error(kFailed).
  void fail_create(const std::string& path) {
    std::lock_guard lock(mutex_);
    fail_create_.insert(path);
  }
  /// A copy of the cgroup's state (a default Group when it does not exist).
  Group group(const std::string& path) {
    std::lock_guard lock(mutex_);
    auto it = groups_.find(path);
    return it == groups_.end() ? Group{} : it->second;
  }

  /// Records the call; throws when fail_create() named the path.
  void create(const std::string& path) override {
    std::lock_guard lock(mutex_);
    calls.push_back("create " + path);
    if (fail_create_.count(path)) {
      throw Error(Exit::kFailed, "creating cgroup '" + path + "': fake failure");
    }
    groups_[path];
  }
  /// True once created, attached to or given pids, until removed.
  bool exists(const std::string& path) override {
    std::lock_guard lock(mutex_);
    return groups_.count(path) > 0;
  }
  /// Records the call and adds the pid.
  void attach(const std::string& path, pid_t pid) override {
    std::lock_guard lock(mutex_);
    calls.push_back("attach " + path + " " + std::to_string(pid));
    groups_[path].pids.insert(pid);
  }
  /// The pids put there, sorted; empty when the cgroup does not exist.
  std::vector<pid_t> procs(const std::string& path) override {
    std::lock_guard lock(mutex_);
    auto it = groups_.find(path);
    if (it == groups_.end()) return {};
    return {it->second.pids.begin(), it->second.pids.end()};
  }
  /// Records the call; thaws at once; freezes at once or starts FREEZING (see
  /// freeze_after, never_freeze).
  /// Throws, as the real one does, when the cgroup does not exist.
  void set_frozen(const std::string& path, bool frozen) override {
    std::lock_guard lock(mutex_);
    calls.push_back((frozen ? "freeze " : "thaw ") + path);
    auto& g = existing(path);
    g.polls = 0;
    if (!frozen) {
      g.state = cgroup::FreezeState::kThawed;
    } else if (g.state != cgroup::FreezeState::kFrozen) {
      g.state = g.stuck || g.polls_to_freeze > 0 ? cgroup::FreezeState::kFreezing : cgroup::FreezeState::kFrozen;
    }
  }
  /// One poll: FREEZING turns FROZEN after polls_to_freeze polls unless stuck.
  cgroup::FreezeState freeze_state(const std::string& path) override {
    std::lock_guard lock(mutex_);
    auto& g = existing(path);
    if (g.state == cgroup::FreezeState::kFreezing && !g.stuck && ++g.polls > g.polls_to_freeze) {
      g.state = cgroup::FreezeState::kFrozen;
    }
    return g.state;
  }
  /// Records the call and forgets the cgroup.
  void remove(const std::string& path) override {
    std::lock_guard lock(mutex_);
    calls.push_back("remove " + path);
    groups_.erase(path);
  }
  /// "/fake/freezer/<path>".
  std::string freezer_dir(const std::string& path) override { return "/fake/freezer/" + path; }

 private:
  /// The cgroup; throws Error(kFailed) like the real one when it does not exist.
  Group& existing(const std::string& path) {
    auto it = groups_.find(path);
    if (it == groups_.end()) throw Error(Exit::kFailed, "cgroup '" + path + "' does not exist");
    return it->second;
  }

  std::mutex mutex_;
  std::map<std::string, Group> groups_;
  std::set<std::string> fail_create_;
};

}  // namespace gcp::testing
