// SPDX-License-Identifier: MIT
#include "gcp/compat.h"

#include "gcp/error.h"
#include "gcp/fs.h"

#include <unistd.h>

#include <algorithm>
#include <filesystem>

#include <cctype>
#include <map>
#include <sstream>

namespace gcp::compat {
namespace {

// File systems a node makes for itself (or CRIU makes afresh in the unit's mount
// namespace): a unit needs none of them from the node it restarts on.
const std::set<std::string> kNodeOwn = {"autofs",  "binfmt_misc", "bpf",      "cgroup",   "cgroup2",    "configfs",
                                        "debugfs", "devpts",      "devtmpfs", "efivarfs", "fusectl",    "hugetlbfs",
                                        "mqueue",  "nsfs",        "proc",     "pstore",   "rpc_pipefs", "securityfs",
                                        "sysfs",   "tmpfs",       "tracefs",  "ramfs"};

// "\040" in a mountinfo path is a space.
std::string unescape(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    bool octal = s[i] == '\\' && i + 3 < s.size();
    for (size_t k = 1; octal && k <= 3; ++k) octal = s[i + k] >= '0' && s[i + k] <= '7';
    if (octal) {
      out += static_cast<char>(std::stoi(s.substr(i + 1, 3), nullptr, 8));
      i += 3;
    } else {
      out += s[i];
    }
  }
  return out;
}

// mount point -> file system type, from a mountinfo text; malformed lines are skipped.
std::map<std::string, std::string> parse_mountinfo(const std::string& text) {
  std::map<std::string, std::string> out;
  std::istringstream in(text);
  std::string row;
  while (std::getline(in, row)) {
    std::istringstream fields(row);
    std::vector<std::string> f;
    std::string w;
    while (fields >> w) f.push_back(w);
    size_t dash = 0;
    for (size_t i = 6; i < f.size(); ++i) {
      if (f[i] == "-") {
        dash = i;
        break;
      }
    }
    if (f.size() < 5 || dash == 0 || dash + 1 >= f.size()) continue;
    out[unescape(f[4])] = f[dash + 1];
  }
  return out;
}

Entry make(const std::string& check, const manifest::CheckpointUnit& unit, const Node& node, Status status,
           std::string reason, std::string hint = "") {
  return {check, unit.name, node.name, status, std::move(reason), std::move(hint)};
}

}  // namespace

const char* name(Status status) {
  switch (status) {
    case Status::kOk:
      return "ok";
    case Status::kUnknown:
      return "not-recorded";
    case Status::kWarn:
      return "warn";
    case Status::kRefuse:
      return "refuse";
  }
  return "refuse";
}

std::optional<Status> status_from(const std::string& text) {
  for (Status s : {Status::kOk, Status::kUnknown, Status::kWarn, Status::kRefuse}) {
    if (text == name(s)) return s;
  }
  return std::nullopt;
}

json to_json(const Entry& e) {
  json j = {{"check", e.check}, {"unit", e.unit}, {"node", e.node}, {"status", name(e.status)}, {"reason", e.reason}};
  if (!e.hint.empty()) j["hint"] = e.hint;
  return j;
}

Entry entry_from_json(const json& doc, const std::string& where) {
  auto text = [&](const char* key) {
    auto it = doc.is_object() ? doc.find(key) : doc.end();
    if (it == doc.end() || !it->is_string()) {
      throw Error(Exit::kFailed, where + ": a check without a string '" + key + "'");
    }
    return it->get<std::string>();
  };
  Entry e{text("check"), text("unit"), text("node"), Status::kOk, text("reason"), ""};
  auto status = status_from(text("status"));
  if (!status) throw Error(Exit::kFailed, where + ": a check of unknown status '" + text("status") + "'");
  e.status = *status;
  if (doc.contains("hint")) e.hint = text("hint");
  return e;
}

json to_json(const Verdict& verdict) {
  json checks = json::array();
  for (const auto& e : verdict) checks.push_back(to_json(e));
  return {{"ok", !first_refusal(verdict)}, {"checks", checks}};
}

std::vector<std::vector<std::string>> table(const Verdict& verdict) {
  std::vector<std::vector<std::string>> rows{{"UNIT", "NODE", "CHECK", "RESULT", "REASON"}};
  for (const auto& e : verdict) rows.push_back({e.unit, e.node, e.check, name(e.status), e.reason});
  return rows;
}

std::optional<Entry> first_refusal(const Verdict& verdict) {
  for (const auto& e : verdict) {
    if (e.status == Status::kRefuse) return e;
  }
  return std::nullopt;
}

Exit refusal_code(const Entry& refusal) {
  return refusal.check == "checkpointer" ? Exit::kNoCheckpointer : Exit::kFailed;
}

std::string line(const Entry& e) {
  return "unit '" + e.unit + "' on node '" + e.node + "': " + e.check + ": " + e.reason;
}

bool version_less(const std::string& a, const std::string& b) {
  std::istringstream x(a), y(b);
  std::string pa, pb;
  while (true) {
    bool more_a = static_cast<bool>(std::getline(x, pa, '.'));
    bool more_b = static_cast<bool>(std::getline(y, pb, '.'));
    if (!more_a || !more_b) return !more_a && more_b;
    long na = std::atol(pa.c_str()), nb = std::atol(pb.c_str());
    if (na != nb) return na < nb;
  }
}

Verdict check_unit(const manifest::CheckpointUnit& unit, const std::string& recorded_kernel, const Node& node) {
  Verdict out;
  if (recorded_kernel.empty()) {
    out.push_back(make("kernel", unit, node, Status::kUnknown, "not recorded"));
  } else if (version_less(node.kernel, recorded_kernel)) {
    out.push_back(make("kernel", unit, node, Status::kWarn,
                       "this node runs kernel " + node.kernel + ", older than " + recorded_kernel +
                           " where the unit was checkpointed: what the unit used of the newer kernel may be missing"));
  } else {
    out.push_back(make("kernel", unit, node, Status::kOk, node.kernel + " (checkpointed on " + recorded_kernel + ")"));
  }
  const std::string who = unit.checkpointer.empty() ? unit.translib : unit.checkpointer;
  if (unit.checkpointer_version.empty() || node.checkpointer_version.empty()) {
    out.push_back(make("checkpointer", unit, node, Status::kUnknown,
                       unit.checkpointer_version.empty() ? "not recorded" : "this node did not say its version"));
  } else if (version_less(node.checkpointer_version, unit.checkpointer_version)) {
    out.push_back(make("checkpointer", unit, node, Status::kRefuse,
                       "was written by " + who + " " + unit.checkpointer_version + ", this node has " + who + " " +
                           node.checkpointer_version + ", which may not read it",
                       "install " + who + " " + unit.checkpointer_version + " or newer" +
                           (who == "criu" ? " (GCP_CRIU selects the binary)" : "")));
  } else {
    out.push_back(make("checkpointer", unit, node, Status::kOk,
                       who + " " + node.checkpointer_version + " (written by " + unit.checkpointer_version + ")"));
  }
  if (!unit.target) {
    out.push_back(make("address", unit, node, Status::kUnknown, "not recorded"));
    out.push_back(make("mount", unit, node, Status::kUnknown, "not recorded"));
    return out;
  }
  if (unit.target->addresses.empty()) {
    out.push_back(make("address", unit, node, Status::kOk, "the unit has no address of its own"));
  }
  for (const auto& a : unit.target->addresses) {
    auto user = node.address_user ? node.address_user(a) : std::nullopt;
    if (user) {
      out.push_back(make("address", unit, node, Status::kRefuse, "address " + a + " is used on this node by " + *user,
                         "stop what uses it, or restart the unit on another node (--place)"));
    } else {
      out.push_back(make("address", unit, node, Status::kOk, "address " + a + " is free"));
    }
  }
  std::vector<std::string> missing;
  std::string present;
  for (const auto& m : unit.target->mounts) {
    if (!node.mount_points.count(m)) missing.push_back(m);
    present += (present.empty() ? "'" : ", '") + m + "'";
  }
  if (!missing.empty()) {
    std::string list;
    for (const auto& m : missing) list += (list.empty() ? "'" : ", '") + m + "'";
    out.push_back(make("mount", unit, node, Status::kRefuse,
                       "the unit uses " + list + ", which " +
                           (missing.size() == 1 ? "is not a mount point" : "are not mount points") + " on this node",
                       "mount them there first, or restart the unit on a node that has them (--place)"));
  } else {
    out.push_back(make("mount", unit, node, Status::kOk,
                       unit.target->mounts.empty() ? "the unit uses no data mount of its node"
                                                   : "the unit's mount points are there: " + present));
  }
  return out;
}

std::vector<std::string> used_mounts(const std::vector<std::string>& paths, const std::string& unit_mountinfo,
                                     const std::string& node_mountinfo) {
  auto unit = parse_mountinfo(unit_mountinfo);
  auto node = parse_mountinfo(node_mountinfo);
  std::set<std::string> out;
  for (const auto& path : paths) {
    // The deepest mount point that holds the path.
    std::string best;
    for (const auto& [point, type] : unit) {
      bool holds = point == "/" || path == point || (path.rfind(point, 0) == 0 && path[point.size()] == '/');
      if (holds && point.size() >= best.size()) best = point;
    }
    if (best.empty() || kNodeOwn.count(unit.at(best))) continue;
    auto it = node.find(best);
    if (it != node.end() && it->second == unit.at(best)) out.insert(best);
  }
  return {out.begin(), out.end()};
}

std::vector<std::string> paths_of(pid_t pid) {
  const std::string proc = "/proc/" + std::to_string(pid);
  std::vector<std::string> out;
  auto add = [&](const std::string& link) {
    char buf[4096];
    ssize_t n = ::readlink(link.c_str(), buf, sizeof buf - 1);
    if (n <= 0 || buf[0] != '/') return;
    std::string path(buf, static_cast<size_t>(n));
    if (path.size() < 10 || path.compare(path.size() - 10, 10, " (deleted)") != 0) out.push_back(path);
  };
  add(proc + "/cwd");
  add(proc + "/exe");
  std::error_code ec;
  for (const auto& fd : std::filesystem::directory_iterator(proc + "/fd", ec)) add(fd.path().string());
  std::istringstream maps(fs::try_read_file(proc + "/maps").value_or(""));
  std::string row;
  while (std::getline(maps, row)) {
    auto slash = row.find(" /");
    if (slash == std::string::npos) continue;
    std::string path = row.substr(slash + 1);
    if (path.size() < 10 || path.compare(path.size() - 10, 10, " (deleted)") != 0) out.push_back(path);
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

std::set<std::string> mount_points(const std::string& mountinfo) {
  std::set<std::string> out;
  for (const auto& [point, type] : parse_mountinfo(mountinfo)) out.insert(point);
  return out;
}

}  // namespace gcp::compat
