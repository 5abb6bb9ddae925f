// SPDX-License-Identifier: MIT
#include "gcp/proc.h"

#include "gcp/fs.h"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/stat.h>
#include <sys/utsname.h>

#include <filesystem>
#include <set>
#include <sstream>
#include <type_traits>

namespace gcp::proc {
namespace {

// The text of /proc/PID/status; nullopt when the process is gone.
std::optional<std::string> status_of(pid_t pid) {
  try {
    return fs::try_read_file("/proc/" + std::to_string(pid) + "/status");
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

std::optional<std::string> status_field(pid_t pid, const std::string& key) {
  auto status = status_of(pid);
  if (!status) return std::nullopt;
  std::istringstream in(*status);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(key + ":", 0) == 0) {
      auto value = line.substr(key.size() + 1);
      value.erase(0, value.find_first_not_of(" \t"));
      return value;
    }
  }
  return std::nullopt;
}

}  // namespace

Credentials parse_credentials(const std::string& status) {
  Credentials c;
  std::istringstream in(status);
  std::string line;
  auto numbers = [](const std::string& text, auto& out) {
    std::istringstream words(text);
    for (unsigned long long n; words >> n;) out.push_back(static_cast<std::remove_reference_t<decltype(out[0])>>(n));
  };
  while (std::getline(in, line)) {
    auto colon = line.find(':');
    if (colon == std::string::npos) continue;
    std::string key = line.substr(0, colon), value = line.substr(colon + 1);
    if (key == "Name") {
      value.erase(0, value.find_first_not_of(" \t"));
      c.name = value;
    } else if (key == "Uid") {
      numbers(value, c.uids);
    } else if (key == "Gid") {
      numbers(value, c.gids);
    } else if (key == "Groups") {
      numbers(value, c.groups);
    } else if (key == "CapPrm") {
      c.cap_prm = std::strtoull(value.c_str(), nullptr, 16);
    }
  }
  return c;
}

std::optional<Credentials> credentials(pid_t pid) {
  auto status = status_of(pid);
  if (!status) return std::nullopt;
  return parse_credentials(*status);
}

bool alive(pid_t pid) {
  auto state = status_field(pid, "State");
  return state && !state->empty() && (*state)[0] != 'Z' && (*state)[0] != 'X';
}

std::vector<pid_t> ns_pids(pid_t pid) {
  std::vector<pid_t> pids;
  auto line = status_field(pid, "NSpid");
  if (!line) return pids;
  std::istringstream in(*line);
  long value;
  while (in >> value) pids.push_back(static_cast<pid_t>(value));
  return pids;
}

std::optional<pid_t> parent(pid_t pid) {
  auto line = status_field(pid, "PPid");
  if (!line) return std::nullopt;
  return static_cast<pid_t>(std::stol(*line));
}

std::vector<pid_t> children(pid_t pid) {
  // /proc/PID/task/TID/children lists the children of each thread.
  std::set<pid_t> kids;
  std::error_code ec;
  std::filesystem::path tasks = "/proc/" + std::to_string(pid) + "/task";
  for (const auto& task : std::filesystem::directory_iterator(tasks, ec)) {
    std::optional<std::string> text;
    try {
      text = fs::try_read_file(task.path() / "children");
    } catch (const std::exception&) {
      continue;
    }
    if (!text) continue;
    std::istringstream in(*text);
    long child;
    while (in >> child) kids.insert(static_cast<pid_t>(child));
  }
  return {kids.begin(), kids.end()};
}

std::vector<pid_t> tree(pid_t pid) {
  std::vector<pid_t> all{pid};
  for (size_t i = 0; i < all.size(); ++i) {
    for (pid_t child : children(all[i])) all.push_back(child);
  }
  return all;
}

std::optional<unsigned long> ns_inode(pid_t pid, const std::string& ns) {
  struct stat st {};
  std::string path = "/proc/" + std::to_string(pid) + "/ns/" + ns;
  if (::stat(path.c_str(), &st) != 0) return std::nullopt;
  return static_cast<unsigned long>(st.st_ino);
}

std::string cmdline(pid_t pid) {
  std::optional<std::string> raw;
  try {
    raw = fs::try_read_file("/proc/" + std::to_string(pid) + "/cmdline");
  } catch (const std::exception&) {
    return {};
  }
  if (!raw) return {};
  for (auto& c : *raw) {
    if (c == '\0') c = ' ';
  }
  while (!raw->empty() && raw->back() == ' ') raw->pop_back();
  return *raw;
}

std::string kernel_release() {
  utsname u{};
  ::uname(&u);
  return u.release;
}

std::vector<std::string> node_addresses() {
  std::vector<std::string> out;
  ifaddrs* all = nullptr;
  if (::getifaddrs(&all) != 0) return out;
  for (auto* a = all; a; a = a->ifa_next) {
    if (!a->ifa_addr || (a->ifa_flags & IFF_LOOPBACK)) continue;
    char text[INET6_ADDRSTRLEN] = "";
    if (a->ifa_addr->sa_family == AF_INET) {
      ::inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(a->ifa_addr)->sin_addr, text, sizeof text);
      out.push_back(text);
    } else if (a->ifa_addr->sa_family == AF_INET6) {
      const auto* v6 = reinterpret_cast<sockaddr_in6*>(a->ifa_addr);
      if (IN6_IS_ADDR_LINKLOCAL(&v6->sin6_addr)) continue;
      ::inet_ntop(AF_INET6, &v6->sin6_addr, text, sizeof text);
      out.push_back("[" + std::string(text) + "]");
    }
  }
  ::freeifaddrs(all);
  return out;
}

std::string node_name() {
  utsname u{};
  ::uname(&u);
  return u.nodename;
}

}  // namespace gcp::proc
