// SPDX-License-Identifier: MIT
#pragma once

// Who a tool acts for (gcp-security(7)). Root acts for itself; a user who is not root
// comes in through gcp-user, the setuid helper, which runs the tool as root with
// GCP_CALLER_UID set: the tool then acts for that user ("user mode"), on that user's
// jobs only, and refuses what only root may do.

#include "gcp/proc.h"

#include <sys/types.h>

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace gcp::caller {

/// Whom a run of a tool acts for.
struct Caller {
  uid_t uid = 0;          ///< the user whose jobs it may touch; 0: any (root)
  bool for_user = false;  ///< root acting for `uid` through gcp-user
};

/// The caller of a process whose effective uid is `euid` and whose environment has
/// GCP_CALLER_UID = `variable` (nullptr: unset). The variable counts only when `euid`
/// is 0 (gcp-user ran the tool as root); "0" is root itself. Throws Error(kUsage) for a
/// value that is not a uid.
Caller from(uid_t euid, const char* variable);

/// Takes the caller from this process's environment (from()) and removes
/// GCP_CALLER_UID from it, so that nothing the tool starts (a unit, a hook, the
/// checkpointer, a launcher) inherits it. run_main calls it once, before anything else.
void adopt_environment();

/// The caller of this run (adopt_environment(); before it, the effective uid).
const Caller& current();
/// The uid this run acts for: current().uid.
uid_t uid();
/// True when root acts for a user through gcp-user.
bool for_user();

/// Sets the caller of this run (tests; adopt_environment() otherwise).
void set_current(const Caller& caller);

/// Throws Error(kNotPermitted) in user mode: `what` ("--address") is not open to users
/// through gcp-user; `hint` says who may do it instead.
void refuse_for_user(const std::string& what, const std::string& hint);

/// The stores gcp-user opens for users: the default one and those root lists as
/// "stores" in /etc/gcp/gcp.json, each made absolute and normal.
std::vector<std::filesystem::path> user_stores();

/// In user mode, throws Error(kNotPermitted) unless `root` is one of user_stores(): a
/// user must not make root work in a directory of the user's choosing. Returns the
/// directory to work in: in user mode root's own spelling of it (a link the user named,
/// and could change afterwards, is not followed again), else `root` as it is.
std::filesystem::path check_store(const std::filesystem::path& root);

/// "GCP_CALLER_UID=<uid>" in user mode, for a tool this one runs as root on another
/// node for the same user (gcp-isolate run and kill through a launcher); else nothing.
std::vector<std::string> env_for_remote();

/// A user account as a unit or a hook runs with it.
struct Account {
  uid_t uid = 0;
  gid_t gid = 0;              ///< primary group
  std::vector<gid_t> groups;  ///< supplementary groups, the primary one among them
  std::string name;           ///< empty: no passwd entry
  std::string home = "/";
  std::string shell = "/bin/sh";
};

/// The account of `uid` from the passwd and group databases; a uid without a passwd
/// entry gets its own number as its only group.
Account account(uid_t uid);

/// What a process with `creds` may do that `account` may not: "runs as uid 0" (any of
/// its four uids), "runs with group 42" (a group the account is not in), "holds
/// capabilities"; nullopt when nothing.
std::optional<std::string> beyond(const proc::Credentials& creds, const Account& account);

/// Throws Error(kNotPermitted) naming the first of `pids` whose rights go beyond
/// `account`'s (a setuid or setgid program, one with file capabilities): neither its
/// memory, in a checkpoint the account's user may read, nor what it has open may reach
/// that user. `what` names where they are ("unit 'main' of job 'j'"); processes gone
/// meanwhile are passed over.
void check_within(const std::vector<pid_t>& pids, const Account& account, const std::string& what);

/// gcp-user next to the running tool (<exe dir>/../libexec/gcp/gcp-user) when a tool run
/// by a user who is not root should go through it: it is installed setuid root, the
/// user may run it, and GCP_NO_HELPER is not "1". nullopt otherwise.
std::optional<std::string> helper_to_use();

/// When helper_to_use() finds one, execs it with `tool` and the arguments of argv (so
/// this process becomes `tool` run as root for its user), and returns only if the exec
/// failed (with a warning on stderr). Otherwise returns at once.
void reexec_through_helper(const std::string& tool, int argc, char** argv);

}  // namespace gcp::caller
