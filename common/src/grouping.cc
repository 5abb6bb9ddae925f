// SPDX-License-Identifier: MIT
#include "gcp/grouping.h"

#include "gcp/error.h"
#include "gcp/fs.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <set>
#include <sstream>

namespace gcp::grouping {
namespace {

bool all_digits(const char* s) {
  if (!*s) return false;
  for (; *s; ++s) {
    if (*s < '0' || *s > '9') return false;
  }
  return true;
}

// Reads a small /proc file relative to a directory descriptor in one read.
std::optional<std::string> read_at(int dir, const char* name) {
  int fd = ::openat(dir, name, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return std::nullopt;
  char buf[4096];
  ssize_t n = ::read(fd, buf, sizeof(buf));
  ::close(fd);
  if (n <= 0) return std::nullopt;
  return std::string(buf, static_cast<size_t>(n));
}

unsigned long ns_inode_at(int dir, const char* ns) {
  struct stat st {};
  if (::fstatat(dir, ns, &st, 0) != 0) return 0;
  return static_cast<unsigned long>(st.st_ino);
}

// "pid (comm) S ppid pgrp session tty_nr ...": comm may hold spaces and ')'.
std::optional<Process> parse_stat(pid_t pid, const std::string& stat) {
  auto open = stat.find('(');
  auto close = stat.rfind(')');
  if (open == std::string::npos || close == std::string::npos || close < open) return std::nullopt;
  Process p;
  p.pid = pid;
  p.comm = stat.substr(open + 1, close - open - 1);
  std::istringstream rest(stat.substr(close + 1));
  char state = 0;
  long ppid = 0, pgid = 0, sid = 0;
  unsigned long tty = 0;
  if (!(rest >> state >> ppid >> pgid >> sid >> tty)) return std::nullopt;
  if (state == 'Z' || state == 'X') return std::nullopt;
  p.state = state;
  p.ppid = static_cast<pid_t>(ppid);
  p.pgid = static_cast<pid_t>(pgid);
  p.sid = static_cast<pid_t>(sid);
  p.tty_nr = static_cast<unsigned>(tty);
  return p;
}

std::vector<pid_t> threads_of(pid_t pid) {
  std::vector<pid_t> tids{pid};
  std::string dir = "/proc/" + std::to_string(pid) + "/task";
  DIR* d = ::opendir(dir.c_str());
  if (!d) return tids;
  while (auto* e = ::readdir(d)) {
    if (!all_digits(e->d_name)) continue;
    pid_t tid = static_cast<pid_t>(std::atol(e->d_name));
    if (tid != pid) tids.push_back(tid);
  }
  ::closedir(d);
  std::sort(tids.begin() + 1, tids.end());
  return tids;
}

std::vector<pid_t> read_procs(const std::string& file) {
  std::vector<pid_t> pids;
  auto text = fs::try_read_file(file);
  if (!text) return pids;
  std::istringstream in(*text);
  long pid;
  while (in >> pid) pids.push_back(static_cast<pid_t>(pid));
  return pids;
}

const Process& find_process(const std::map<pid_t, Process>& processes, pid_t pid, const Spec& spec) {
  auto it = processes.find(pid);
  if (it == processes.end()) {
    throw Error(Exit::kUsage, describe(spec) + ": no process " + std::to_string(pid),
                "check the PID with 'ps -p " + std::to_string(pid) + "'");
  }
  return it->second;
}

}  // namespace

size_t Members::threads() const {
  size_t n = 0;
  for (const auto& [pid, tids] : tids) n += tids.size();
  return n;
}

std::map<pid_t, Process> snapshot() {
  std::map<pid_t, Process> all;
  int proc = ::open("/proc", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (proc < 0) throw_errno("opening /proc");
  DIR* d = ::fdopendir(proc);
  if (!d) {
    ::close(proc);
    throw_errno("reading /proc");
  }
  while (auto* e = ::readdir(d)) {
    if (!all_digits(e->d_name)) continue;
    int dir = ::openat(proc, e->d_name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir < 0) continue;  // gone meanwhile
    pid_t pid = static_cast<pid_t>(std::atol(e->d_name));
    auto stat = read_at(dir, "stat");
    std::optional<Process> p = stat ? parse_stat(pid, *stat) : std::nullopt;
    if (p) {
      struct stat st {};
      if (::fstat(dir, &st) == 0) p->uid = st.st_uid;
      p->pidns = ns_inode_at(dir, "ns/pid");
      p->netns = ns_inode_at(dir, "ns/net");
      all.emplace(pid, std::move(*p));
    }
    ::close(dir);
  }
  ::closedir(d);
  return all;
}

std::string name(Kind kind) {
  switch (kind) {
    case Kind::kTree:
      return "tree";
    case Kind::kPgid:
      return "pgid";
    case Kind::kSid:
      return "sid";
    case Kind::kCgroup:
      return "cgroup";
    case Kind::kPidns:
      return "pidns";
  }
  return "?";
}

std::optional<Kind> parse(const std::string& text) {
  for (Kind k : {Kind::kTree, Kind::kPgid, Kind::kSid, Kind::kCgroup, Kind::kPidns}) {
    if (name(k) == text) return k;
  }
  return std::nullopt;
}

std::string describe(const Spec& spec) {
  std::string pid = std::to_string(spec.pid);
  switch (spec.kind) {
    case Kind::kTree:
      return "the process tree of pid " + pid;
    case Kind::kPgid:
      return "process group " + pid;
    case Kind::kSid:
      return "session " + pid;
    case Kind::kCgroup:
      return "cgroup '" + spec.cgroup + "'";
    case Kind::kPidns:
      return "the PID namespace of pid " + pid;
  }
  return "?";
}

std::optional<std::string> cgroup_procs_file(const std::string& cgroup) {
  namespace stdfs = std::filesystem;
  std::error_code ec;
  auto procs_in = [&](const stdfs::path& dir) -> std::optional<std::string> {
    auto file = dir / "cgroup.procs";
    if (stdfs::exists(file, ec)) return file.string();
    return std::nullopt;
  };
  if (!cgroup.empty() && cgroup[0] == '/') {
    if (cgroup.rfind("/sys/fs/cgroup/", 0) != 0) return std::nullopt;
    return procs_in(cgroup);
  }
  std::string rel = cgroup;
  if (rel.find("..") != std::string::npos) return std::nullopt;
  std::vector<stdfs::path> roots = {"/sys/fs/cgroup/freezer", "/sys/fs/cgroup/unified", "/sys/fs/cgroup"};
  for (const auto& e : stdfs::directory_iterator("/sys/fs/cgroup", ec)) {
    if (e.is_directory(ec) && std::find(roots.begin(), roots.end(), e.path()) == roots.end()) {
      roots.push_back(e.path());
    }
  }
  for (const auto& root : roots) {
    if (auto file = procs_in(root / rel)) return file;
  }
  return std::nullopt;
}

Members resolve(const Spec& spec, const std::map<pid_t, Process>& processes) {
  std::map<pid_t, std::vector<pid_t>> children;
  for (const auto& [pid, p] : processes) children[p.ppid].push_back(pid);
  auto descendants = [&](std::set<pid_t>& into, pid_t from) {
    std::vector<pid_t> todo{from};
    while (!todo.empty()) {
      pid_t p = todo.back();
      todo.pop_back();
      if (!into.insert(p).second && p != from) continue;
      auto it = children.find(p);
      if (it != children.end()) todo.insert(todo.end(), it->second.begin(), it->second.end());
    }
  };

  std::set<pid_t> set;
  switch (spec.kind) {
    case Kind::kTree:
      find_process(processes, spec.pid, spec);
      descendants(set, spec.pid);
      break;
    case Kind::kPgid:
    case Kind::kSid:
      for (const auto& [pid, p] : processes) {
        if ((spec.kind == Kind::kPgid ? p.pgid : p.sid) == spec.pid) set.insert(pid);
      }
      if (set.empty()) {
        throw Error(Exit::kUsage, describe(spec) + " has no process",
                    "list groups and sessions with 'ps -eo pid,pgid,sid,comm'");
      }
      break;
    case Kind::kCgroup: {
      auto file = cgroup_procs_file(spec.cgroup);
      if (!file) {
        throw Error(Exit::kUsage, "no cgroup '" + spec.cgroup + "'",
                    "give a directory under /sys/fs/cgroup or a path relative to a hierarchy, "
                    "e.g. 'gcp/JOB/UNIT'");
      }
      for (pid_t pid : read_procs(*file)) {
        if (processes.count(pid)) set.insert(pid);
      }
      if (set.empty()) {
        throw Error(Exit::kUsage, describe(spec) + " (" + *file + ") has no process", "start something in it first");
      }
      break;
    }
    case Kind::kPidns: {
      const Process& init = find_process(processes, spec.pid, spec);
      // Everything in its namespace, and below it (nested namespaces are descendants).
      for (const auto& [pid, p] : processes) {
        if (p.pidns == init.pidns) descendants(set, pid);
      }
      descendants(set, spec.pid);
      break;
    }
  }

  Members m;
  // Parents before children: breadth first from the tops, in PID order.
  for (pid_t pid : set) {
    auto it = processes.find(pid);
    if (it == processes.end() || !set.count(it->second.ppid)) m.tops.push_back(pid);
  }
  std::vector<pid_t> order = m.tops;
  for (size_t i = 0; i < order.size(); ++i) {
    auto it = children.find(order[i]);
    if (it == children.end()) continue;
    for (pid_t c : it->second) {
      if (set.count(c)) order.push_back(c);
    }
  }
  m.pids = std::move(order);
  if (m.tops.size() == 1) m.root = m.tops.front();
  for (pid_t pid : m.pids) m.tids[pid] = threads_of(pid);
  return m;
}

}  // namespace gcp::grouping
