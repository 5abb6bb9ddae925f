// SPDX-License-Identifier: MIT
#include "ports.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>

namespace gcp::criu {
namespace {

// "(00.386830)      2: inet: ..." -> "2"; "" for a line that is not a task's.
std::string task_of(const std::string& line) {
  auto close = line.find(')');
  auto colon = line.find(':', close == std::string::npos ? 0 : close);
  if (close == std::string::npos || colon == std::string::npos) return "";
  std::string task = line.substr(close + 1, colon - close - 1);
  task.erase(0, task.find_first_not_of(' '));
  return task.find_first_not_of("0123456789") == std::string::npos ? task : "";
}

// The word after `key` in `line` ("port 45678" -> "45678"); "" when absent.
std::string word_after(const std::string& line, const std::string& key) {
  auto pos = line.find(key);
  if (pos == std::string::npos) return "";
  std::istringstream in(line.substr(pos + key.size()));
  std::string word;
  in >> word;
  return word;
}

// "0100007F:B26E" (as /proc/net/tcp writes an IPv4 address) -> "127.0.0.1:45678".
std::string proc_net_endpoint(const std::string& hex) {
  auto colon = hex.find(':');
  if (colon == std::string::npos) return hex;
  unsigned port = static_cast<unsigned>(std::strtoul(hex.c_str() + colon + 1, nullptr, 16));
  std::string addr = hex.substr(0, colon);
  char text[INET6_ADDRSTRLEN] = "?";
  if (addr.size() == 8) {
    in_addr a{};
    a.s_addr = static_cast<uint32_t>(std::strtoul(addr.c_str(), nullptr, 16));
    ::inet_ntop(AF_INET, &a, text, sizeof(text));
    return std::string(text) + ":" + std::to_string(port);
  }
  if (addr.size() == 32) {
    in6_addr a{};
    for (int w = 0; w < 4; w++) {
      uint32_t word = static_cast<uint32_t>(std::strtoul(addr.substr(w * 8, 8).c_str(), nullptr, 16));
      std::memcpy(a.s6_addr + w * 4, &word, 4);
    }
    ::inet_ntop(AF_INET6, &a, text, sizeof(text));
    return "[" + std::string(text) + "]:" + std::to_string(port);
  }
  return hex;
}

// Socket inode -> local endpoint, of the sockets on `port` in /proc/net/<proto>{,6}.
std::vector<std::pair<unsigned long, std::string>> sockets_on(const std::string& proc, const std::string& proto,
                                                              unsigned port) {
  std::vector<std::pair<unsigned long, std::string>> out;
  for (const char* suffix : {"", "6"}) {
    std::ifstream in(proc + "/net/" + proto + suffix);
    std::string line;
    std::getline(in, line);  // the header
    while (std::getline(in, line)) {
      std::istringstream f(line);
      std::string slot, local, remote, state, queues, timer, retr, uid, timeout;
      unsigned long inode = 0;
      if (!(f >> slot >> local >> remote >> state >> queues >> timer >> retr >> uid >> timeout >> inode)) continue;
      auto colon = local.find(':');
      if (colon == std::string::npos || inode == 0) continue;  // inode 0: TIME_WAIT, no process
      if (std::strtoul(local.c_str() + colon + 1, nullptr, 16) != port) continue;
      out.emplace_back(inode, proc_net_endpoint(local));
    }
  }
  return out;
}

std::string comm_of(const std::string& proc, const std::string& pid) {
  std::ifstream in(proc + "/" + pid + "/comm");
  std::string comm;
  std::getline(in, comm);
  return comm;
}

}  // namespace

BindFailure bind_failure(const std::string& log) {
  std::istringstream in(log);
  std::string line;
  std::vector<std::string> before;
  while (std::getline(in, line)) {
    if (line.find("Can't bind inet socket") == std::string::npos || line.find("Error (") == std::string::npos) {
      before.push_back(line);
      continue;
    }
    std::string task = task_of(line);
    for (auto it = before.rbegin(); it != before.rend(); ++it) {
      if (task_of(*it) != task || it->find("inet:") == std::string::npos || it->find("Restore:") == std::string::npos)
        continue;
      BindFailure b;
      b.proto = word_after(*it, "type ") == "SOCK_DGRAM" ? "udp" : "tcp";
      b.addr = word_after(*it, "src_addr ");
      b.port = static_cast<unsigned>(std::strtoul(word_after(*it, "port ").c_str(), nullptr, 10));
      if (b.port > 65535) b.port = 0;
      return b;
    }
    return {};
  }
  return {};
}

std::vector<PortHolder> port_holders(const std::string& proto, unsigned port, const std::string& proc) {
  std::vector<PortHolder> out;
  auto socks = sockets_on(proc, proto, port);
  if (socks.empty()) return out;
  DIR* d = ::opendir(proc.c_str());
  if (!d) return out;
  std::set<std::pair<std::string, std::string>> seen;  // (pid, local)
  while (auto* e = ::readdir(d)) {
    std::string pid = e->d_name;
    if (pid.find_first_not_of("0123456789") != std::string::npos) continue;
    std::string fd_dir = proc + "/" + pid + "/fd";
    DIR* fds = ::opendir(fd_dir.c_str());
    if (!fds) continue;
    while (auto* f = ::readdir(fds)) {
      char target[64];
      ssize_t n = ::readlinkat(::dirfd(fds), f->d_name, target, sizeof(target) - 1);
      if (n <= 0) continue;
      target[n] = '\0';
      unsigned long inode = 0;
      if (std::sscanf(target, "socket:[%lu]", &inode) != 1) continue;
      for (const auto& [ino, local] : socks) {
        if (ino != inode || !seen.insert({pid, local}).second) continue;
        out.push_back({static_cast<pid_t>(std::atoi(pid.c_str())), comm_of(proc, pid), local});
      }
    }
    ::closedir(fds);
  }
  ::closedir(d);
  return out;
}

PortVerdict explain_bind_failure(const std::string& why, const std::string& log) {
  if (why.find("Can't bind inet socket") == std::string::npos) return {};
  BindFailure b = bind_failure(log);
  if (b.port == 0) return {};
  std::string what = b.addr + ":" + std::to_string(b.port) + "/" + b.proto;
  auto holders = port_holders(b.proto, b.port);
  PortVerdict v;
  if (holders.empty()) {
    v.detail = " (" + what + ": no process of this network namespace holds it now)";
    v.hint = "the port was taken while criu restored, or a socket closing (TIME_WAIT) held it; retry the restart";
    return v;
  }
  std::string by;
  for (const auto& h : holders) {
    by += (by.empty() ? "" : ", ") + std::string("pid ") + std::to_string(h.pid) + " '" + h.comm + "' on " + h.local;
  }
  v.detail = " (" + what + ", held by " + by + ")";
  v.hint = "the unit shares the node's network: stop what holds " + what + " and restart again";
  return v;
}

}  // namespace gcp::criu
