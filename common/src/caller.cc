// SPDX-License-Identifier: MIT
#include "gcp/caller.h"

#include "gcp/error.h"
#include "gcp/fs.h"
#include "gcp/manifest.h"
#include "gcp/names.h"
#include "gcp/process.h"

#include <grp.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>

namespace gcp::caller {
namespace {

std::optional<Caller>& current_caller() {
  static std::optional<Caller> c;
  return c;
}

std::string config_file() { return names::kDefaultConfig; }

// One spelling per directory: absolute, symbolic links resolved as far as it exists,
// no "." or "..", no trailing slash.
std::filesystem::path normal(const std::filesystem::path& p) {
  auto out = std::filesystem::weakly_canonical(std::filesystem::absolute(p)).lexically_normal();
  if (!out.has_filename() && out.has_parent_path() && out != out.root_path()) out = out.parent_path();
  return out;
}

}  // namespace

Caller from(uid_t euid, const char* variable) {
  // Only gcp-user (which runs the tool as root) says whom root acts for: a user who
  // sets the variable acts for itself all the same.
  if (euid != 0 || !variable) return {euid, false};
  std::string text = variable;
  bool digits = !text.empty() && text.size() <= 10 && text.find_first_not_of("0123456789") == std::string::npos;
  unsigned long long id = digits ? std::stoull(text) : 0;
  if (!digits || id >= std::numeric_limits<uid_t>::max()) {
    throw Error(Exit::kUsage, std::string(names::kEnvCallerUid) + ": '" + printable(text, 40) + "' is not a uid",
                "gcp-user sets it; unset it when running gcp as root");
  }
  uid_t uid = static_cast<uid_t>(id);
  return {uid, uid != 0};
}

void adopt_environment() {
  const char* variable = std::getenv(names::kEnvCallerUid);
  auto c = from(::geteuid(), variable);
  ::unsetenv(names::kEnvCallerUid);
  current_caller() = c;
}

const Caller& current() {
  auto& c = current_caller();
  if (!c) c = Caller{::geteuid(), false};
  return *c;
}

uid_t uid() { return current().uid; }
bool for_user() { return current().for_user; }
void set_current(const Caller& caller) { current_caller() = caller; }

void refuse_for_user(const std::string& what, const std::string& hint) {
  if (!for_user()) return;
  throw Error(Exit::kNotPermitted,
              what + " is not open to users through gcp-user (you are uid " + std::to_string(uid()) + ")", hint);
}

std::vector<std::filesystem::path> user_stores() {
  std::vector<std::filesystem::path> out;
  auto add = [&](const std::filesystem::path& p) { out.push_back(normal(p)); };
  // Root's default store, whatever this process's environment says.
  add(names::kDefaultRootStore);
  auto file = config_file();
  auto text = fs::try_read_file(file);
  if (!text) return out;
  auto doc = manifest::parse(*text, file);
  auto bad = [&](const std::string& why) {
    return Error(Exit::kUsage, "reading gcp's configuration '" + file + "': " + why,
                 "write it as {\"stores\": [\"/srv/gcp\", ...]} with absolute paths (gcp-security(7))");
  };
  if (!doc.is_object()) throw bad("not a JSON object");
  auto stores = doc.find("stores");
  if (stores == doc.end()) return out;
  if (!stores->is_array()) throw bad("field 'stores' must be an array of absolute paths");
  for (const auto& s : *stores) {
    if (!s.is_string() || s.get<std::string>().empty() || s.get<std::string>()[0] != '/') {
      throw bad("field 'stores' must be an array of absolute paths");
    }
    add(s.get<std::string>());
  }
  return out;
}

std::filesystem::path check_store(const std::filesystem::path& root) {
  if (!for_user()) return root;
  auto given = normal(root);
  auto allowed = user_stores();
  if (std::find(allowed.begin(), allowed.end(), given) != allowed.end()) return given;
  std::string list;
  for (const auto& a : allowed) list += (list.empty() ? "" : ", ") + a.string();
  throw Error(Exit::kNotPermitted,
              "store '" + printable(root.string()) + "' is not one that gcp-user opens for users (" + list + ")",
              "use one of those (root lists them as \"stores\" in " + config_file() +
                  "), or work in a store of your own as yourself: " + names::kEnvNoHelper + "=1");
}

std::vector<std::string> env_for_remote() {
  if (!for_user()) return {};
  return {std::string(names::kEnvCallerUid) + "=" + std::to_string(uid())};
}

Account account(uid_t uid) {
  Account a;
  a.uid = uid;
  a.gid = static_cast<gid_t>(uid);
  passwd pw{};
  passwd* found = nullptr;
  std::vector<char> buf(16384);
  if (::getpwuid_r(uid, &pw, buf.data(), buf.size(), &found) != 0 || !found) {
    a.groups = {a.gid};
    return a;
  }
  a.gid = found->pw_gid;
  a.name = found->pw_name;
  if (found->pw_dir && *found->pw_dir) a.home = found->pw_dir;
  if (found->pw_shell && *found->pw_shell) a.shell = found->pw_shell;
  int n = 32;
  std::vector<gid_t> groups(static_cast<size_t>(n));
  while (::getgrouplist(a.name.c_str(), a.gid, groups.data(), &n) < 0) {
    if (n <= static_cast<int>(groups.size())) n = static_cast<int>(groups.size()) * 2;  // glibc left n alone
    groups.resize(static_cast<size_t>(n));
  }
  groups.resize(static_cast<size_t>(n));
  a.groups = groups;
  if (std::find(a.groups.begin(), a.groups.end(), a.gid) == a.groups.end()) a.groups.insert(a.groups.begin(), a.gid);
  return a;
}

std::optional<std::string> beyond(const proc::Credentials& creds, const Account& account) {
  for (uid_t u : creds.uids) {
    if (u != account.uid) return "runs as uid " + std::to_string(u);
  }
  auto in_account = [&](gid_t g) {
    return std::find(account.groups.begin(), account.groups.end(), g) != account.groups.end();
  };
  for (gid_t g : creds.gids) {
    if (!in_account(g)) return "runs with group " + std::to_string(g);
  }
  for (gid_t g : creds.groups) {
    if (!in_account(g)) return "holds group " + std::to_string(g);
  }
  if (creds.cap_prm != 0) return "holds capabilities";
  return std::nullopt;
}

void check_within(const std::vector<pid_t>& pids, const Account& account, const std::string& what) {
  for (pid_t pid : pids) {
    auto creds = proc::credentials(pid);
    if (!creds) continue;
    if (auto more = beyond(*creds, account)) {
      throw Error(Exit::kNotPermitted,
                  what + ": pid " + std::to_string(pid) + " (" + printable(creds->name, 40) + ") " + *more +
                      ", a right uid " + std::to_string(account.uid) + " does not have",
                  "gcp hands no such process to uid " + std::to_string(account.uid) +
                      " (a setuid or setgid program, or one with file capabilities): end it first");
    }
  }
}

std::optional<std::string> helper_to_use() {
  if (::geteuid() == 0) return std::nullopt;
  if (const char* off = std::getenv(names::kEnvNoHelper); off && std::string(off) == "1") return std::nullopt;
  auto path = (std::filesystem::path(process::self_dir()).parent_path() / "libexec/gcp/gcp-user").string();
  struct stat st {};
  // Installed by 'make install' (root, setuid); a build tree's copy is neither.
  if (::stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode) || st.st_uid != 0 || !(st.st_mode & S_ISUID)) {
    return std::nullopt;
  }
  if (::access(path.c_str(), X_OK) != 0) return std::nullopt;  // not in group gcp: as today
  return path;
}

void reexec_through_helper(const std::string& tool, int argc, char** argv) {
  auto helper = helper_to_use();
  if (!helper) return;
  std::vector<char*> args;
  args.push_back(helper->data());
  args.push_back(const_cast<char*>(tool.c_str()));
  for (int i = 1; i < argc; ++i) args.push_back(argv[i]);
  args.push_back(nullptr);
  ::execv(helper->c_str(), args.data());
  std::fprintf(stderr, "%s: warning: running '%s': %s; going on as uid %u\n", tool.c_str(), helper->c_str(),
               std::strerror(errno), static_cast<unsigned>(::getuid()));
}

}  // namespace gcp::caller
