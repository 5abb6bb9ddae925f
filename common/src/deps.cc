// SPDX-License-Identifier: MIT
#include "gcp/deps.h"

#include "gcp/error.h"
#include "gcp/fs.h"
#include "gcp/proc.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/sock_diag.h>
#include <linux/unix_diag.h>
#include <netinet/in.h>
#include <sched.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <sstream>
#include <thread>
#include <unordered_map>

namespace gcp::deps {
namespace {

using manifest::json;

// One descriptor of one process.
struct Fd {
  pid_t pid;
  int fd;
  std::string target;  // what /proc/PID/fd/N points to
  std::string mode;    // "r", "w", "rw"
};

// --- sock_diag ---------------------------------------------------------------------

struct UnixSock {
  uint8_t type = 0;
  uint8_t state = 0;
  uint32_t peer = 0;
  std::string name;
};

struct InetSock {
  int proto = 0;
  uint8_t state = 0;
  std::string local, remote;  // "addr:port"
  bool connected = false;
  uint32_t backlog = 0;  // a listener's connections not accepted yet
};

struct Sockets {
  std::unordered_map<uint32_t, UnixSock> unix_socks;
  std::unordered_map<uint32_t, InetSock> inet;
  std::map<std::pair<std::string, std::string>, uint32_t> by_endpoints;  // (local, remote) -> inode
};

constexpr uint8_t kTcpEstablished = 1;
constexpr uint8_t kTcpListen = 10;

// Sends one sock_diag dump request and hands every reply message to `each`. Families
// the kernel has no diag module for (ENOENT) yield nothing.
template <typename Req, typename Each>
void dump(const Req& body, Each each) {
  int fd = ::socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
  if (fd < 0) throw_errno("opening a sock_diag netlink socket");
  struct {
    nlmsghdr nlh;
    Req req;
  } msg{};
  msg.nlh.nlmsg_len = sizeof(msg);
  msg.nlh.nlmsg_type = SOCK_DIAG_BY_FAMILY;
  msg.nlh.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
  msg.req = body;
  sockaddr_nl kernel{};
  kernel.nl_family = AF_NETLINK;
  if (::sendto(fd, &msg, sizeof(msg), 0, reinterpret_cast<sockaddr*>(&kernel), sizeof(kernel)) < 0) {
    ::close(fd);
    throw_errno("sending a sock_diag request");
  }
  alignas(nlmsghdr) static thread_local char buf[64 * 1024];
  bool done = false;
  while (!done) {
    ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      ::close(fd);
      throw_errno("reading sock_diag replies");
    }
    if (n == 0) break;
    for (auto* h = reinterpret_cast<nlmsghdr*>(buf); NLMSG_OK(h, static_cast<unsigned>(n)); h = NLMSG_NEXT(h, n)) {
      if (h->nlmsg_type == NLMSG_DONE) {
        done = true;
        break;
      }
      if (h->nlmsg_type == NLMSG_ERROR) {
        done = true;  // e.g. ENOENT: no diag module for this family
        break;
      }
      each(h);
    }
  }
  ::close(fd);
}

std::string endpoint(int family, const uint32_t* addr, uint16_t port_be) {
  char text[INET6_ADDRSTRLEN] = "?";
  const auto* bytes = reinterpret_cast<const uint8_t*>(addr);
  static const uint8_t kV4Mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  if (family == AF_INET6 && std::memcmp(bytes, kV4Mapped, 12) == 0) {
    ::inet_ntop(AF_INET, bytes + 12, text, sizeof(text));
    return std::string(text) + ":" + std::to_string(ntohs(port_be));
  }
  ::inet_ntop(family, addr, text, sizeof(text));
  std::string host = family == AF_INET6 ? "[" + std::string(text) + "]" : std::string(text);
  return host + ":" + std::to_string(ntohs(port_be));
}

// The peer of a TCP socket that sock_diag does not list (one in state CLOSE, after its
// FIN or RST exchange, is in no hash table) but that was connected, as "127.0.0.1:80";
// "" for anything else. CRIU dumps such a socket without --tcp-established but restores
// it only with it ("Connected TCP socket in image"). SO_PEERNAME, unlike getpeername,
// still answers in state CLOSE; the socket is borrowed through a pidfd.
std::string closed_tcp_peer(pid_t pid, int fd) {
  int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  if (pidfd < 0) return "";
  int sock = static_cast<int>(::syscall(SYS_pidfd_getfd, pidfd, fd, 0));
  ::close(pidfd);
  if (sock < 0) return "";
  std::string peer;
  int proto = 0;
  socklen_t len = sizeof proto;
  // SO_PEERNAME wants no more room than the address takes: v4's first, then v6's.
  sockaddr_storage ss{};
  socklen_t slen = sizeof(sockaddr_in);
  bool ok = ::getsockopt(sock, SOL_SOCKET, SO_PROTOCOL, &proto, &len) == 0 && proto == IPPROTO_TCP &&
            ::getsockopt(sock, SOL_SOCKET, SO_PEERNAME, &ss, &slen) == 0;
  if (ok && ss.ss_family == AF_INET6) {
    slen = sizeof(sockaddr_in6);
    ok = ::getsockopt(sock, SOL_SOCKET, SO_PEERNAME, &ss, &slen) == 0;
  }
  if (ok && ss.ss_family == AF_INET) {
    const auto* a = reinterpret_cast<const sockaddr_in*>(&ss);
    if (a->sin_port) peer = endpoint(AF_INET, reinterpret_cast<const uint32_t*>(&a->sin_addr), a->sin_port);
  } else if (ok && ss.ss_family == AF_INET6) {
    const auto* a = reinterpret_cast<const sockaddr_in6*>(&ss);
    if (a->sin6_port) peer = endpoint(AF_INET6, reinterpret_cast<const uint32_t*>(&a->sin6_addr), a->sin6_port);
  }
  ::close(sock);
  return peer;
}

void read_sockets(Sockets& out) {
  unix_diag_req ureq{};
  ureq.sdiag_family = AF_UNIX;
  ureq.udiag_states = ~0u;
  ureq.udiag_show = UDIAG_SHOW_NAME | UDIAG_SHOW_PEER;
  dump(ureq, [&](nlmsghdr* h) {
    auto* m = static_cast<unix_diag_msg*>(NLMSG_DATA(h));
    UnixSock s;
    s.type = m->udiag_type;
    s.state = m->udiag_state;
    int len = static_cast<int>(h->nlmsg_len - NLMSG_LENGTH(sizeof(*m)));
    for (auto* a = reinterpret_cast<rtattr*>(m + 1); RTA_OK(a, len); a = RTA_NEXT(a, len)) {
      if (a->rta_type == UNIX_DIAG_PEER) {
        std::memcpy(&s.peer, RTA_DATA(a), sizeof(s.peer));
      } else if (a->rta_type == UNIX_DIAG_NAME) {
        std::string name(static_cast<const char*>(RTA_DATA(a)), RTA_PAYLOAD(a));
        if (!name.empty() && name[0] == '\0') name[0] = '@';  // abstract
        s.name = name.c_str();
      }
    }
    out.unix_socks[m->udiag_ino] = s;
  });
  for (int family : {AF_INET, AF_INET6}) {
    for (int proto : {IPPROTO_TCP, IPPROTO_UDP}) {
      inet_diag_req_v2 ireq{};
      ireq.sdiag_family = static_cast<uint8_t>(family);
      ireq.sdiag_protocol = static_cast<uint8_t>(proto);
      ireq.idiag_states = ~0u;
      dump(ireq, [&](nlmsghdr* h) {
        auto* m = static_cast<inet_diag_msg*>(NLMSG_DATA(h));
        if (m->idiag_inode == 0) return;  // TIME_WAIT: no socket left
        InetSock s;
        s.proto = proto;
        s.state = m->idiag_state;
        s.local = endpoint(m->idiag_family, m->id.idiag_src, m->id.idiag_sport);
        s.remote = endpoint(m->idiag_family, m->id.idiag_dst, m->id.idiag_dport);
        s.connected = m->id.idiag_dport != 0 && s.state != kTcpListen;
        if (s.state == kTcpListen) s.backlog = m->idiag_rqueue;
        if (s.connected) out.by_endpoints[{s.local, s.remote}] = m->idiag_inode;
        out.inet[m->idiag_inode] = s;
      });
    }
  }
}

// The sockets of other network namespaces are only visible from inside them: a
// thread joins each one (setns changes the calling thread only) and asks there.
void read_sockets_in(pid_t pid, Sockets& out) {
  std::string error;
  std::thread t([&] {
    std::string path = "/proc/" + std::to_string(pid) + "/ns/net";
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0 || ::setns(fd, CLONE_NEWNET) != 0) {
      error = "entering the network namespace of pid " + std::to_string(pid) + ": " + std::strerror(errno);
      if (fd >= 0) ::close(fd);
      return;
    }
    ::close(fd);
    try {
      read_sockets(out);
    } catch (const std::exception& e) {
      error = e.what();
    }
  });
  t.join();
  if (!error.empty()) throw Error(Exit::kFailed, error, "run gcp-deps as root or as the unit's owner");
}

// --- /proc -------------------------------------------------------------------------

std::string mode_of(int dir, const char* name) {
  struct stat st {};
  if (::fstatat(dir, name, &st, AT_SYMLINK_NOFOLLOW) != 0) return "";
  std::string m;
  if (st.st_mode & S_IRUSR) m += 'r';
  if (st.st_mode & S_IWUSR) m += 'w';
  return m;
}

std::vector<Fd> fds_of(pid_t pid) {
  std::vector<Fd> out;
  std::string path = "/proc/" + std::to_string(pid) + "/fd";
  int dir = ::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir < 0) return out;
  DIR* d = ::fdopendir(dir);
  if (!d) {
    ::close(dir);
    return out;
  }
  char target[4096];
  while (auto* e = ::readdir(d)) {
    if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
    ssize_t n = ::readlinkat(dir, e->d_name, target, sizeof(target) - 1);
    if (n <= 0) continue;
    Fd f{pid, std::atoi(e->d_name), std::string(target, static_cast<size_t>(n)), ""};
    f.mode = mode_of(dir, e->d_name);
    out.push_back(std::move(f));
  }
  ::closedir(d);
  return out;
}

// "pipe:[123]" -> 123; 0 when `target` is not of that kind.
uint32_t bracket_inode(const std::string& target, const char* kind) {
  size_t k = std::strlen(kind);
  if (target.compare(0, k, kind) != 0 || target.size() < k + 3 || target[k] != ':') return 0;
  return static_cast<uint32_t>(std::strtoul(target.c_str() + k + 2, nullptr, 10));
}

std::optional<int> pty_index(pid_t pid, int fd) {
  std::string text;
  try {
    auto t = fs::try_read_file("/proc/" + std::to_string(pid) + "/fdinfo/" + std::to_string(fd));
    if (!t) return std::nullopt;
    text = *t;
  } catch (const std::exception&) {
    return std::nullopt;
  }
  auto pos = text.find("tty-index:");
  if (pos == std::string::npos) return std::nullopt;
  return std::atoi(text.c_str() + pos + 10);
}

// The text of /proc/PID/<file>; nullopt when the process or the file is gone.
std::optional<std::string> proc_text(pid_t pid, const std::string& file) {
  try {
    return fs::try_read_file("/proc/" + std::to_string(pid) + "/" + file);
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

// The locks a descriptor holds, from the "lock:" lines of its fdinfo
// ("lock:\t1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF"): "flock write",
// "posix read", "ofd write", ... Empty when it holds none or is gone.
std::set<std::string> locks_of(pid_t pid, int fd) {
  std::set<std::string> out;
  auto text = proc_text(pid, "fdinfo/" + std::to_string(fd));
  if (!text) return out;
  std::istringstream in(*text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("lock:", 0) != 0) continue;
    std::istringstream words(line.substr(5));
    std::string id, type, mode, access;
    if (!(words >> id >> type >> mode >> access)) continue;
    if (type == "OFDLCK") type = "OFD";
    if (type != "FLOCK" && type != "POSIX" && type != "OFD") continue;  // leases, delegations
    for (auto* w : {&type, &access}) {
      std::transform(w->begin(), w->end(), w->begin(), [](unsigned char c) { return std::tolower(c); });
    }
    out.insert(type + " " + access);
  }
  return out;
}

// The PID of a process's tracer (TracerPid of /proc/PID/status); 0 for none.
pid_t tracer_of(pid_t pid) {
  auto text = proc_text(pid, "status");
  if (!text) return 0;
  auto pos = text->find("\nTracerPid:");
  return pos == std::string::npos ? 0 : static_cast<pid_t>(std::atol(text->c_str() + pos + 11));
}

// Shared mappings of a process: "dev:inode" -> what is mapped.
std::map<std::string, std::string> shared_maps(pid_t pid) {
  std::map<std::string, std::string> out;
  auto text = proc_text(pid, "maps");
  if (!text) return out;
  std::istringstream in(*text);
  std::string line;
  while (std::getline(in, line)) {
    // "start-end perms offset dev inode path"
    std::istringstream f(line);
    std::string range, perms, offset, dev, path;
    unsigned long inode = 0;
    if (!(f >> range >> perms >> offset >> dev >> inode)) continue;
    // Only a writable shared mapping can change under a checkpoint (read-only ones,
    // e.g. glibc's gconv cache, are shared by half the system).
    if (perms.size() < 4 || perms[3] != 's' || perms[1] != 'w' || inode == 0) continue;
    std::getline(f, path);
    path.erase(0, path.find_first_not_of(' '));
    out[dev + ":" + std::to_string(inode)] = path;
  }
  return out;
}

// The /dev/pts index of a controlling tty (tty_nr), or -1.
int pts_of_tty(unsigned tty_nr) {
  unsigned major = (tty_nr >> 8) & 0xfff;
  unsigned minor = (tty_nr & 0xff) | ((tty_nr >> 12) & 0xfff00);
  if (major < 136 || major > 143) return -1;
  return static_cast<int>((major - 136) * 256 + minor);
}

// --- building ----------------------------------------------------------------------

class Builder {
 public:
  Builder(Graph& g, const Context& c, std::map<pid_t, grouping::Process> all)
      : all_(std::move(all)), g_(g), context_(c) {}

  void run() {
    for (size_t i = 0; i < g_.units.size(); ++i) {
      for (pid_t pid : g_.units[i].members.pids) {
        auto [it, fresh] = unit_of_.emplace(pid, i);
        if (!fresh && it->second != i) {
          throw Error(Exit::kUsage,
                      "pid " + std::to_string(pid) + " belongs to unit '" + g_.units[it->second].name +
                          "' and to unit '" + g_.units[i].name + "'",
                      "a process may be in one unit only");
        }
      }
    }
    scan_descriptors();
    process_ties();
    pipe_and_file_ties();
    socket_ties();
    tty_ties();
    mapping_ties();
    lock_ties();
    state_ties();
    for (auto& t : g_.ties) judge(t);
    // Keep the processes that appear in the graph.
    std::map<pid_t, grouping::Process> kept;
    for (const auto& [pid, unit] : unit_of_) kept[pid] = all_.at(pid);
    for (const auto& t : g_.ties) {
      for (const auto& e : t.ends) {
        if (auto it = all_.find(e.pid); it != all_.end()) kept[e.pid] = it->second;
      }
    }
    g_.processes = std::move(kept);
  }

 private:
  std::map<pid_t, grouping::Process> all_;  // every process of the node, at one moment
  std::optional<size_t> unit(pid_t pid) const {
    auto it = unit_of_.find(pid);
    if (it == unit_of_.end()) return std::nullopt;
    return it->second;
  }
  bool in_units(pid_t pid) const { return unit_of_.count(pid) != 0; }

  End end(pid_t pid, int fd, std::string mode) const { return End{pid, fd, std::move(mode), unit(pid)}; }

  void scan_descriptors() {
    for (const auto& [pid, p] : all_) {
      bool mine = in_units(pid);
      for (auto& f : fds_of(pid)) {
        if (mine) ++g_.descriptors;
        const std::string& t = f.target;
        if (auto ino = bracket_inode(t, "pipe")) {
          by_object_["pipe:[" + std::to_string(ino) + "]"].push_back(f);
        } else if (auto sino = bracket_inode(t, "socket")) {
          sockets_[sino].push_back(f);
          if (mine) unit_sockets_.push_back(sino);
        } else if (t == "/dev/ptmx" || t == "/dev/pts/ptmx") {
          if (auto idx = pty_index(pid, f.fd)) masters_[*idx].push_back(f);
        } else if (t.rfind("/dev/pts/", 0) == 0) {
          by_object_[t].push_back(f);
        } else if (!t.empty() && t[0] == '/') {
          by_path_[t].push_back(f);
        } else if (mine && t.rfind("anon_inode:", 0) == 0) {
          std::string kind = t.substr(11);
          kind.erase(std::remove(kind.begin(), kind.end(), '['), kind.end());
          kind.erase(std::remove(kind.begin(), kind.end(), ']'), kind.end());
          if (kind == "eventpoll") kind = "epoll";
          Tie tie;
          tie.kind = kind;
          tie.object = t;
          tie.ends.push_back(end(pid, f.fd, f.mode));
          g_.ties.push_back(std::move(tie));
        }
      }
    }
  }

  void process_ties() {
    for (size_t i = 0; i < g_.units.size(); ++i) {
      const auto& m = g_.units[i].members;
      std::map<pid_t, std::vector<pid_t>> pgids, sids;
      for (pid_t pid : m.pids) {
        const auto& p = all_.at(pid);
        Tie tie;
        tie.kind = "parent";
        tie.object = "pid " + std::to_string(p.ppid) + " -> pid " + std::to_string(pid);
        tie.ends = {end(p.ppid, -1, "parent"), end(pid, -1, "child")};
        if (!all_.count(p.ppid)) tie.ends.erase(tie.ends.begin());
        if (p.ppid != 0) g_.ties.push_back(std::move(tie));
        if (p.pgid > 0 && unit(p.pgid) != i) pgids[p.pgid].push_back(pid);
        if (p.sid > 0 && unit(p.sid) != i) sids[p.sid].push_back(pid);
      }
      // Only groups and sessions whose leader is not in the unit are ties.
      for (auto* groups : {&pgids, &sids}) {
        bool is_pgid = groups == &pgids;
        for (const auto& [leader, members] : *groups) {
          Tie tie;
          tie.kind = is_pgid ? "pgid" : "sid";
          tie.object = (is_pgid ? "process group " : "session ") + std::to_string(leader);
          if (all_.count(leader)) tie.ends.push_back(end(leader, -1, "leader"));
          for (pid_t pid : members) tie.ends.push_back(end(pid, -1, "member"));
          if (!all_.count(leader)) tie.remote = "leader " + std::to_string(leader) + " (gone)";
          g_.ties.push_back(std::move(tie));
        }
      }
    }
  }

  // A tie of everything that holds one object, when a unit holds it; nullptr otherwise.
  Tie* add_shared(const std::string& kind, const std::string& object, const std::vector<Fd>& holders) {
    bool touches = false;
    for (const auto& f : holders) touches = touches || in_units(f.pid);
    if (!touches) return nullptr;
    Tie tie;
    tie.kind = kind;
    tie.object = object;
    for (const auto& f : holders) tie.ends.push_back(end(f.pid, f.fd, f.mode));
    g_.ties.push_back(std::move(tie));
    return &g_.ties.back();
  }

  void pipe_and_file_ties() {
    for (const auto& [object, holders] : by_object_) {
      if (object.rfind("pipe:", 0) == 0) add_shared("pipe", object, holders);
    }
    for (const auto& [path, holders] : by_path_) {
      bool touches = false;
      for (const auto& f : holders) touches = touches || in_units(f.pid);
      if (!touches) continue;
      struct stat st {};
      if (::stat(path.c_str(), &st) != 0) continue;  // deleted, or not visible from here
      if (S_ISFIFO(st.st_mode)) {
        add_shared("fifo", path, holders);
      } else if (S_ISREG(st.st_mode)) {
        std::vector<Fd> writers;
        for (const auto& f : holders) {
          if (f.mode.find('w') != std::string::npos) writers.push_back(f);
        }
        bool unit_writes = false;
        for (const auto& f : writers) unit_writes = unit_writes || in_units(f.pid);
        if (unit_writes) add_shared("file-write", path, writers);
      }
    }
  }

  // A file locked by a process of a unit, with every holder of a lock on it as an end,
  // whether in a unit or not. The locks of a descriptor are the "lock:" lines of its
  // fdinfo, in /proc/locks' format: flock and OFD locks of its open file, and the POSIX
  // locks its process holds on the file.
  void lock_ties() {
    for (const auto& [path, holders] : by_path_) {
      bool touches = false;
      for (const auto& f : holders) touches = touches || in_units(f.pid);
      if (!touches) continue;
      Tie tie;
      tie.kind = "file-lock";
      std::set<std::string> kinds;
      bool unit_locks = false;
      for (const auto& f : holders) {
        auto locks = locks_of(f.pid, f.fd);
        if (locks.empty()) continue;
        unit_locks = unit_locks || in_units(f.pid);
        kinds.insert(locks.begin(), locks.end());
        tie.ends.push_back(end(f.pid, f.fd, f.mode));
      }
      if (!unit_locks) continue;
      std::string what;
      for (const auto& k : kinds) what += (what.empty() ? "" : ", ") + k;
      tie.object = path + " (" + what + ")";
      g_.ties.push_back(std::move(tie));
    }
  }

  // Stopped and traced processes of the units.
  void state_ties() {
    for (const auto& [pid, u] : unit_of_) {
      const auto& p = all_.at(pid);
      pid_t tracer = tracer_of(pid);
      if (tracer > 0 || p.state == 't') {
        Tie tie;
        tie.kind = "traced";
        tie.object = "pid " + std::to_string(pid) + " (" + p.comm + ")";
        tie.ends.push_back(end(pid, -1, "tracee"));
        if (tracer > 0) tie.ends.push_back(end(tracer, -1, "tracer"));
        g_.ties.push_back(std::move(tie));
      } else if (p.state == 'T') {
        Tie tie;
        tie.kind = "stopped";
        tie.object = "pid " + std::to_string(pid) + " (" + p.comm + ")";
        tie.ends.push_back(end(pid, -1, "stopped"));
        g_.ties.push_back(std::move(tie));
      }
    }
  }

  void tty_ties() {
    // A terminal slave held in a unit, with the master's holders as the other end. A
    // slave whose master every process has closed is "(deleted)" (devpts removes its
    // node): nothing outside holds it, its number may be another terminal's by now, and
    // the checkpointer restores it alone (ZDTM pty04).
    const std::string kDeleted = " (deleted)";
    for (const auto& [object, holders] : by_object_) {
      if (object.rfind("/dev/pts/", 0) != 0) continue;
      int idx = std::atoi(object.c_str() + 9);
      bool orphan = object.size() > kDeleted.size() &&
                    object.compare(object.size() - kDeleted.size(), kDeleted.size(), kDeleted) == 0;
      std::vector<Fd> all = holders;
      auto m = orphan ? masters_.end() : masters_.find(idx);
      if (m != masters_.end()) all.insert(all.end(), m->second.begin(), m->second.end());
      Tie* t = add_shared("pty", object, all);
      if (t && !orphan && m == masters_.end()) t->remote = "terminal master not held by any process here";
    }
    for (size_t i = 0; i < g_.units.size(); ++i) {
      std::map<unsigned, std::vector<pid_t>> ttys;
      for (pid_t pid : g_.units[i].members.pids) {
        if (unsigned tty = all_.at(pid).tty_nr) ttys[tty].push_back(pid);
      }
      for (const auto& [tty, pids] : ttys) {
        Tie tie;
        tie.kind = "tty";
        int pts = pts_of_tty(tty);
        tie.object = pts >= 0 ? "controlling tty /dev/pts/" + std::to_string(pts)
                              : "controlling tty " + std::to_string(major(tty)) + ":" + std::to_string(minor(tty));
        for (pid_t pid : pids) tie.ends.push_back(end(pid, -1, "controlled"));
        bool master_inside = false;
        if (auto m = masters_.find(pts); pts >= 0 && m != masters_.end()) {
          for (const auto& f : m->second) {
            tie.ends.push_back(end(f.pid, f.fd, "master"));
            master_inside = master_inside || unit(f.pid) == i;
          }
        }
        if (!master_inside && tie.ends.size() == pids.size()) tie.remote = "terminal outside the unit";
        g_.ties.push_back(std::move(tie));
      }
    }
  }

  void socket_ties() {
    if (unit_sockets_.empty()) return;
    Sockets socks;
    read_sockets(socks);
    // Sockets of units in another network namespace.
    std::set<unsigned long> seen{all_.count(::getpid()) ? all_.at(::getpid()).netns : 0};
    for (const auto& u : g_.units) {
      for (pid_t pid : u.members.pids) {
        unsigned long ns = all_.at(pid).netns;
        if (ns && seen.insert(ns).second) read_sockets_in(pid, socks);
      }
    }
    std::set<uint32_t> done;
    std::sort(unit_sockets_.begin(), unit_sockets_.end());
    unit_sockets_.erase(std::unique(unit_sockets_.begin(), unit_sockets_.end()), unit_sockets_.end());
    for (uint32_t ino : unit_sockets_) {
      if (done.count(ino)) continue;
      done.insert(ino);
      Tie tie;
      std::vector<Fd> holders = sockets_[ino];
      if (auto u = socks.unix_socks.find(ino); u != socks.unix_socks.end()) {
        const UnixSock& s = u->second;
        static const char* kTypes[] = {"", "stream", "dgram", "raw", "rdm", "seqpacket"};
        std::string type = s.type < 6 ? kTypes[s.type] : "unix";
        tie.kind = "unix-" + type;
        tie.object = "socket:[" + std::to_string(ino) + "]" + (s.name.empty() ? "" : " " + s.name);
        if (s.state == kTcpListen) {
          tie.kind += "-listen";
        } else if (s.peer) {
          done.insert(s.peer);
          auto& peers = sockets_[s.peer];
          holders.insert(holders.end(), peers.begin(), peers.end());
          auto p = socks.unix_socks.find(s.peer);
          std::string peer_name = p != socks.unix_socks.end() ? p->second.name : "";
          tie.object += " <-> socket:[" + std::to_string(s.peer) + "]" + (peer_name.empty() ? "" : " " + peer_name);
          if (peers.empty()) tie.remote = "peer socket:[" + std::to_string(s.peer) + "] held by no process";
        }
      } else if (auto n = socks.inet.find(ino); n != socks.inet.end()) {
        const InetSock& s = n->second;
        std::string proto = s.proto == IPPROTO_TCP ? "tcp" : "udp";
        if (s.proto == IPPROTO_TCP && s.state == kTcpListen) {
          tie.kind = s.backlog ? "tcp-listen-backlog" : "tcp-listen";
          tie.object = s.local + (s.backlog ? " (" + std::to_string(s.backlog) + " connection(s) not accepted)" : "");
        } else {
          tie.kind = proto;
          tie.object = s.local + (s.connected ? " -> " + s.remote : "");
          if (s.connected) {
            auto peer = socks.by_endpoints.find({s.remote, s.local});
            std::vector<Fd> peers;
            if (peer != socks.by_endpoints.end()) {
              done.insert(peer->second);
              peers = sockets_[peer->second];
            }
            holders.insert(holders.end(), peers.begin(), peers.end());
            if (peers.empty()) tie.remote = s.remote;
          }
        }
      } else if (auto peer = holders.empty() ? "" : closed_tcp_peer(holders[0].pid, holders[0].fd); !peer.empty()) {
        tie.kind = "tcp";
        tie.object = "socket:[" + std::to_string(ino) + "] (closed) -> " + peer;
      } else {
        tie.kind = "socket";
        tie.object = "socket:[" + std::to_string(ino) + "]";
      }
      for (const auto& f : holders) tie.ends.push_back(end(f.pid, f.fd, f.mode));
      g_.ties.push_back(std::move(tie));
    }
  }

  void mapping_ties() {
    std::map<std::string, std::pair<std::string, std::vector<pid_t>>> shared;  // key -> (path, pids)
    for (const auto& [pid, unit] : unit_of_) {
      for (const auto& [key, path] : shared_maps(pid)) {
        auto& s = shared[key];
        s.first = path;
        s.second.push_back(pid);
      }
    }
    if (shared.empty()) return;
    for (const auto& [pid, p] : all_) {
      if (in_units(pid)) continue;
      for (const auto& [key, path] : shared_maps(pid)) {
        if (auto it = shared.find(key); it != shared.end()) it->second.second.push_back(pid);
      }
    }
    for (const auto& [key, s] : shared) {
      const auto& [path, pids] = s;
      if (pids.size() < 2) continue;  // mapped by one process: nothing is shared
      Tie tie;
      if (path.rfind("/SYSV", 0) == 0)
        tie.kind = "sysv-shm";
      else if (path.rfind("/dev/shm/", 0) == 0)
        tie.kind = "posix-shm";
      else if (path.rfind("/dev/zero", 0) == 0 || path.empty() || path[0] != '/')
        tie.kind = "shared-anon";
      else
        tie.kind = "shared-file";
      tie.object = path.empty() ? key : path;
      for (pid_t pid : pids) tie.ends.push_back(end(pid, -1, "mapped"));
      g_.ties.push_back(std::move(tie));
    }
  }

  // How far the tie reaches: one process, the unit, the job, or outside it.
  void scope(Tie& t) {
    std::set<size_t> units;
    std::set<pid_t> pids;
    bool outside = !t.remote.empty();
    for (const auto& e : t.ends) {
      pids.insert(e.pid);
      if (e.unit)
        units.insert(*e.unit);
      else
        outside = true;
    }
    // A TCP peer no local process holds, at the address of a unit of the job on
    // another node, is inside the job.
    if (t.kind == "tcp" && !t.remote.empty() &&
        std::all_of(t.ends.begin(), t.ends.end(), [](const End& e) { return e.unit.has_value(); })) {
      auto host = t.remote.substr(0, t.remote.rfind(':'));
      if (auto p = context_.peers.find(host); p != context_.peers.end()) {
        t.remote += " (unit '" + p->second + "')";
        outside = false;
        units.insert(g_.units.size());  // the peer's unit, which this graph does not hold
      }
    }
    // A TCP peer no process holds, on the loopback of units in network namespaces of
    // their own, was in that namespace (it closed): nothing else reaches that loopback.
    if (outside && t.kind == "tcp" && !t.remote.empty() && loopback_host(t.remote) && !t.ends.empty() &&
        std::all_of(t.ends.begin(), t.ends.end(), [&](const End& e) { return e.unit && in_own_netns(e.pid); })) {
      t.remote += " (closed, on the unit's own loopback)";
      outside = false;
    }
    if (outside)
      t.scope = Scope::kExternal;
    else if (units.size() > 1)
      t.scope = Scope::kJob;
    else if (pids.size() > 1)
      t.scope = Scope::kInside;
    else
      t.scope = Scope::kProcess;
  }

  // Where the ends are, and what that means for a checkpoint: a verdict and its advice.
  // A stopped or traced process of a unit: refused at once, saying what to do.
  void judge_process_state(Tie& t) const {
    t.verdict = Verdict::kBreaks;
    if (t.kind == "stopped") {
      // Under gcp's freezer, criu dump waits on a stopped task until the dump's timeout.
      t.advice =
          "it is stopped (SIGSTOP, a shell's job control): the checkpointer would wait on it until its "
          "timeout; continue it (kill -CONT " +
          std::to_string(t.ends.front().pid) + ") or end it before the checkpoint";
      return;
    }
    std::string by = t.ends.size() > 1 ? " by pid " + std::to_string(t.ends.back().pid) : "";
    if (t.ends.size() > 1) {
      if (auto it = all_.find(t.ends.back().pid); it != all_.end()) by += " (" + it->second.comm + ")";
    }
    t.advice = "it is traced" + by +
               " (a debugger, strace): the checkpointer cannot dump a traced process; "
               "detach the tracer before the checkpoint";
  }

  void judge(Tie& t) {
    scope(t);
    auto needs = [&](const char* need, std::string why) {
      t.verdict = Verdict::kNeeds;
      t.need = need;
      t.advice = std::move(why);
    };
    auto breaks = [&](std::string what_to_do) {
      t.verdict = Verdict::kBreaks;
      t.advice = std::move(what_to_do);
    };
    // Only a crossing tie's advice names what is outside.
    std::string others = t.crossing() ? outsiders(t) : "";
    const std::string widen = "widen the unit to take in " + others;
    const std::string coordinated =
        "both ends are units of this job: a coordinated checkpoint (the default) dumps them in one round";

    if (t.kind == "parent") {
      if (t.scope == Scope::kExternal) {
        pid_t child = t.ends.back().pid;
        const auto& m = g_.units[*t.ends.back().unit].members;
        if (m.root && *m.root == child) {
          t.verdict = Verdict::kHarmless;
          t.advice = "the unit's root: its parent is not part of the checkpoint";
        } else {
          breaks("pid " + std::to_string(child) +
                 " is not a descendant of the unit's other processes: "
                 "the checkpointer dumps one process tree; group the unit as a tree, a cgroup or a PID namespace");
        }
      }
      return;
    }
    if (t.kind == "pgid" || t.kind == "sid") {
      needs(kNeedLeaderOutside, std::string(t.kind == "pgid" ? "process group" : "session") +
                                    " leader outside the unit: restored into the restorer's own session");
      return;
    }
    if (t.kind == "tty" || t.kind == "pty") {
      if (t.scope == Scope::kExternal) {
        breaks(
            "a terminal whose master is outside the unit cannot come back (gcp restores without a "
            "terminal): start the unit with stdin, stdout and stderr away from the terminal "
            "(gcp-isolate does), or widen the unit to the terminal's owner");
      } else if (t.scope == Scope::kJob) {
        breaks("a terminal shared by two units: put both in one unit");
      }
      return;
    }
    if (t.kind == "pipe" || t.kind == "fifo") {
      if (t.scope == Scope::kExternal) {
        breaks("data in the " + t.kind + " and its other end stay outside the checkpoint: " + widen);
      } else if (t.scope == Scope::kJob) {
        breaks("a " + t.kind + " between two units cannot be restored on two nodes: put both ends in one unit");
      }
      return;
    }
    if (t.kind.rfind("unix-", 0) == 0) {
      bool dgram = t.kind == "unix-dgram";
      if (t.scope == Scope::kExternal) {
        if (dgram)
          needs(kNeedUnixDatagramOutside, "a datagram socket connected to a socket outside the unit (e.g. a logger)");
        else
          breaks("a unix connection to " + others + " cannot be restored: " + widen +
                 ", or close it in a pre-checkpoint callback and reconnect after the restart (gcp-callbacks(7))");
      } else if (t.scope == Scope::kJob) {
        breaks("a unix connection between two units cannot be restored: put both ends in one unit");
      }
      return;
    }
    if (t.kind == "tcp-listen-backlog") {
      // CRIU cannot dump a connection still in a listener's accept queue ("In-flight
      // connection"); --skip-in-flight would drop it, and what its client sent with it.
      breaks(
          "connections wait in its accept queue, not yet accepted: the checkpointer cannot dump them, and "
          "dropping them would lose what their clients sent; retry once the application has accepted them");
      return;
    }
    if (t.kind == "tcp") {
      if (t.scope == Scope::kInside || t.scope == Scope::kProcess) {
        if (t.object.find(" -> ") != std::string::npos)
          needs(kNeedTcpEstablished, "an established connection inside the unit");
      } else if (t.scope == Scope::kJob) {
        if (context_.coordinated)
          needs(kNeedTcpEstablished, coordinated);
        else
          breaks(
              "a connection between two units checkpointed one by one loses or repeats bytes: "
              "checkpoint the job coordinated");
      } else if (moves_with_unit(t) && context_.stop) {
        needs(kNeedTcpEstablished,
              "the unit's own address moves with it, and it is stopped once dumped: the peer "
              "retransmits until the restored unit answers");
      } else if (moves_with_unit(t)) {
        breaks("the unit's own address moves with it, but the connection to " + others +
               " runs on after the "
               "checkpoint and a restart from it would repeat what the peer has seen: checkpoint with --stop "
               "(as a migration does), or close it in a pre-checkpoint callback (gcp-callbacks(7))");
      } else {
        breaks("bytes in flight to " + others +
               " are lost or repeated after a restart: close the connection "
               "in a pre-checkpoint callback and reconnect after the restart (gcp-callbacks(7)), or " +
               widen);
      }
      return;
    }
    if (t.kind == "sysv-shm" || t.kind == "posix-shm" || t.kind == "shared-anon" || t.kind == "shared-file") {
      if (t.scope == Scope::kExternal) {
        breaks("memory shared with " + others +
               " changes under the checkpoint: widen the unit to take in "
               "every process that maps it");
      } else if (t.scope == Scope::kJob) {
        breaks("memory shared by two units: put them in one unit");
      }
      return;
    }
    if (t.kind == "file-lock") {
      if (t.scope == Scope::kExternal) {
        breaks("a lock on the file is held by " + others +
               " outside the unit as well: the restored unit "
               "would take back a lock that is not its own alone; widen the unit to take in " +
               others + ", or release the lock before the checkpoint");
      } else if (t.scope == Scope::kJob) {
        breaks("locks on one file in two units cannot be restored on two nodes: put both in one unit");
      } else {
        needs(kNeedFileLocks, "a file lock held in the unit: dumped and taken again on restore");
      }
      return;
    }
    if (t.kind == "stopped" || t.kind == "traced") {
      judge_process_state(t);
      return;
    }
    if (t.kind == "file-write") {
      t.advice = "its contents are not part of the checkpoint: a restart finds the file as it is then";
      return;
    }
    if (t.kind == "udp" && t.scope == Scope::kExternal) {
      t.advice = "datagrams in flight may be lost, as on any network";
    }
  }

  // True when every end in a unit is in one with its own address (gcp-isolate --address):
  // the connection's local address comes back wherever the unit is restarted.
  // Whether a process is in another network namespace than this one (a unit's own).
  bool in_own_netns(pid_t pid) const {
    auto p = all_.find(pid);
    unsigned long here = all_.count(::getpid()) ? all_.at(::getpid()).netns : 0;
    return p != all_.end() && p->second.netns != 0 && here != 0 && p->second.netns != here;
  }

  // "127.0.0.1:80", "[::1]:80" (a v4-mapped address is written as v4).
  static bool loopback_host(const std::string& endpoint) {
    return endpoint.rfind("127.", 0) == 0 || endpoint.rfind("[::1]:", 0) == 0;
  }

  bool moves_with_unit(const Tie& t) const {
    bool any = false;
    for (const auto& e : t.ends) {
      if (!e.unit) continue;
      if (!g_.units[*e.unit].own_address) return false;
      any = true;
    }
    return any;
  }

  // "pid 12 (cat), pid 13 (sh)" or the remote endpoint, for advice.
  std::string outsiders(const Tie& t) const {
    std::string out;
    std::set<pid_t> seen;
    for (const auto& e : t.ends) {
      if (e.unit || !seen.insert(e.pid).second) continue;
      if (seen.size() > 3) continue;
      if (!out.empty()) out += ", ";
      auto it = all_.find(e.pid);
      out += "pid " + std::to_string(e.pid) + (it != all_.end() ? " (" + it->second.comm + ")" : "");
    }
    if (seen.size() > 3) out += " and " + std::to_string(seen.size() - 3) + " more";
    if (!t.remote.empty()) out += (out.empty() ? "" : ", ") + t.remote;
    std::set<size_t> units;
    for (const auto& e : t.ends)
      if (e.unit) units.insert(*e.unit);
    if (out.empty() && units.size() > 1) {
      for (size_t u : units) out += (out.empty() ? "unit '" : ", unit '") + g_.units[u].name + "'";
    }
    return out.empty() ? "the other end" : out;
  }

  Graph& g_;
  Context context_;
  std::map<pid_t, size_t> unit_of_;
  std::map<std::string, std::vector<Fd>> by_object_, by_path_;
  std::unordered_map<uint32_t, std::vector<Fd>> sockets_;
  std::vector<uint32_t> unit_sockets_;
  std::map<int, std::vector<Fd>> masters_;
};

std::string dot_quote(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
}

}  // namespace

std::string scope_name(Scope scope) {
  switch (scope) {
    case Scope::kProcess:
      return "process";
    case Scope::kInside:
      return "inside";
    case Scope::kJob:
      return "job";
    case Scope::kExternal:
      return "external";
  }
  return "?";
}

std::string verdict_name(Verdict verdict) {
  switch (verdict) {
    case Verdict::kHarmless:
      return "harmless";
    case Verdict::kNeeds:
      return "needs";
    case Verdict::kBreaks:
      return "breaks";
  }
  return "?";
}

std::set<std::string> Graph::needs(size_t unit) const {
  std::set<std::string> out;
  for (const auto& t : ties) {
    if (t.verdict != Verdict::kNeeds) continue;
    for (const auto& e : t.ends) {
      if (e.unit == unit) {
        out.insert(t.need);
        break;
      }
    }
  }
  return out;
}

std::vector<const Tie*> Graph::breaking(size_t unit) const {
  std::vector<const Tie*> out;
  for (const auto& t : ties) {
    if (t.verdict != Verdict::kBreaks) continue;
    for (const auto& e : t.ends) {
      if (e.unit == unit) {
        out.push_back(&t);
        break;
      }
    }
  }
  return out;
}

grouping::Spec spec_of(const manifest::Unit& unit) {
  auto kind = grouping::parse(unit.grouping).value_or(grouping::Kind::kPidns);
  if (kind == grouping::Kind::kPidns || kind == grouping::Kind::kTree) {
    return {kind, unit.pid.value_or(0), {}};
  }
  return {grouping::Kind::kCgroup, 0, unit.cgroup};
}

Graph build(const std::string& job, const std::vector<UnitSpec>& units, const Context& context) {
  auto t0 = std::chrono::steady_clock::now();
  Graph g;
  g.job = job;
  g.node = proc::node_name();
  g.created = manifest::now_rfc3339();
  auto all = grouping::snapshot();
  for (const auto& u : units) {
    try {
      g.units.push_back({u.name, u.spec, grouping::resolve(u.spec, all), u.own_address});
    } catch (const Error& e) {
      throw e.within("unit '" + u.name + "'");
    }
  }
  Builder(g, context, std::move(all)).run();
  g.build_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  return g;
}

json to_json(const Graph& g) {
  json doc;
  doc["apiVersion"] = manifest::kApiVersion;
  doc["kind"] = "DependencyGraph";
  if (!g.job.empty()) doc["job"] = g.job;
  doc["node"] = g.node;
  doc["created"] = g.created;
  json units = json::array();
  for (size_t i = 0; i < g.units.size(); ++i) {
    const auto& u = g.units[i];
    json ju;
    ju["name"] = u.name;
    ju["grouping"] = grouping::name(u.spec.kind);
    if (u.spec.kind == grouping::Kind::kCgroup)
      ju["cgroup"] = u.spec.cgroup;
    else
      ju["pid"] = u.spec.pid;
    ju["root"] = u.members.root ? json(*u.members.root) : json();
    ju["processes"] = u.members.pids;
    ju["threads"] = u.members.threads();
    auto needs = g.needs(i);
    ju["needs"] = std::vector<std::string>(needs.begin(), needs.end());
    ju["consistent"] = g.breaking(i).empty();
    units.push_back(ju);
  }
  doc["units"] = units;
  json procs = json::array();
  for (const auto& [pid, p] : g.processes) {
    json jp = {{"pid", pid}, {"ppid", p.ppid}, {"pgid", p.pgid}, {"sid", p.sid}, {"uid", p.uid}, {"comm", p.comm}};
    for (size_t i = 0; i < g.units.size(); ++i) {
      const auto& tids = g.units[i].members.tids;
      if (auto it = tids.find(pid); it != tids.end()) {
        jp["unit"] = g.units[i].name;
        jp["threads"] = it->second;
      }
    }
    if (!jp.contains("unit")) jp["unit"] = nullptr;
    procs.push_back(jp);
  }
  doc["processes"] = procs;
  json ties = json::array();
  size_t crossing = 0, breaking = 0;
  for (const auto& t : g.ties) {
    json jt = {{"kind", t.kind}, {"object", t.object}};
    json ends = json::array();
    for (const auto& e : t.ends) {
      json je = {{"pid", e.pid}};
      if (e.fd >= 0) je["fd"] = e.fd;
      if (!e.mode.empty()) je["mode"] = e.mode;
      je["unit"] = e.unit ? json(g.units[*e.unit].name) : json();
      ends.push_back(je);
    }
    jt["ends"] = ends;
    if (!t.remote.empty()) jt["remote"] = t.remote;
    jt["scope"] = scope_name(t.scope);
    jt["verdict"] = verdict_name(t.verdict);
    if (!t.need.empty()) jt["need"] = t.need;
    if (!t.advice.empty()) jt["advice"] = t.advice;
    ties.push_back(jt);
    crossing += t.crossing();
    breaking += t.verdict == Verdict::kBreaks;
  }
  doc["ties"] = ties;
  doc["summary"] = {{"processes", g.processes.size()},
                    {"descriptors", g.descriptors},
                    {"ties", g.ties.size()},
                    {"crossing", crossing},
                    {"breaking", breaking},
                    {"buildMs", std::round(g.build_ms * 10) / 10}};
  return doc;
}

std::string to_dot(const Graph& g) {
  std::ostringstream out;
  out << "digraph " << dot_quote(g.job.empty() ? "units" : g.job) << " {\n"
      << "  graph [rankdir=LR, fontname=\"Helvetica\"];\n"
      << "  node [shape=box, fontname=\"Helvetica\", fontsize=10];\n"
      << "  edge [fontname=\"Helvetica\", fontsize=9];\n";
  auto node = [](pid_t pid) { return "p" + std::to_string(pid); };
  auto label = [&](pid_t pid) {
    auto it = g.processes.find(pid);
    return std::to_string(pid) + (it != g.processes.end() ? "\\n" + it->second.comm : "");
  };
  std::set<pid_t> placed;
  for (size_t i = 0; i < g.units.size(); ++i) {
    out << "  subgraph " << dot_quote("cluster_" + std::to_string(i)) << " {\n"
        << "    label=" << dot_quote("unit " + g.units[i].name + " (" + grouping::name(g.units[i].spec.kind) + ")")
        << "; style=rounded; color=\"#4060a0\";\n";
    for (pid_t pid : g.units[i].members.pids) {
      out << "    " << node(pid) << " [label=" << dot_quote(label(pid)) << "];\n";
      placed.insert(pid);
    }
    out << "  }\n";
  }
  for (const auto& [pid, p] : g.processes) {
    if (!placed.count(pid)) out << "  " << node(pid) << " [label=" << dot_quote(label(pid)) << ", style=dashed];\n";
  }
  size_t remotes = 0;
  for (const auto& t : g.ties) {
    std::string color = t.verdict == Verdict::kBreaks  ? "red"
                        : t.verdict == Verdict::kNeeds ? "orange"
                                                       : (t.crossing() ? "gray40" : "gray70");
    std::string attrs = "label=" + dot_quote(t.kind + (t.need.empty() ? "" : "\\n" + t.need)) + ", color=" + color +
                        (t.crossing() ? ", penwidth=2" : "");
    std::vector<pid_t> pids;
    for (const auto& e : t.ends) {
      if (std::find(pids.begin(), pids.end(), e.pid) == pids.end()) pids.push_back(e.pid);
    }
    if (!t.remote.empty()) {
      std::string r = "r" + std::to_string(remotes++);
      out << "  " << r << " [label=" << dot_quote(t.remote) << ", shape=ellipse, style=dashed];\n";
      for (pid_t p : pids) out << "  " << node(p) << " -> " << r << " [" << attrs << "];\n";
      continue;
    }
    if (pids.size() < 2) continue;  // a tie of one process is not an edge
    for (size_t k = 1; k < pids.size(); ++k) {
      out << "  " << node(pids[0]) << " -> " << node(pids[k]) << " [" << attrs << ", dir=none];\n";
    }
  }
  out << "}\n";
  return out.str();
}

std::string to_text(const Graph& g) {
  std::ostringstream out;
  for (size_t i = 0; i < g.units.size(); ++i) {
    const auto& u = g.units[i];
    std::map<std::string, size_t> kinds;
    for (const auto& t : g.ties) {
      for (const auto& e : t.ends) {
        if (e.unit == i) {
          ++kinds[t.kind];
          break;
        }
      }
    }
    out << "unit '" << u.name << "' (" << grouping::describe(u.spec) << "): " << u.members.pids.size()
        << " process(es), " << u.members.threads() << " thread(s)";
    if (!u.members.root) out << ", NOT one process tree";
    out << "\n  ties:";
    for (const auto& [k, n] : kinds) out << " " << k << "=" << n;
    out << "\n";
    for (const auto& t : g.ties) {
      bool mine = false;
      for (const auto& e : t.ends) mine = mine || e.unit == i;
      if (!mine || t.verdict == Verdict::kHarmless) continue;
      out << "  " << (t.verdict == Verdict::kBreaks ? "BREAKS" : "needs " + t.need) << ": " << t.kind << " " << t.object
          << " (" << scope_name(t.scope) << "): " << t.advice << "\n";
    }
    auto needs = g.needs(i);
    out << "  verdict: " << (g.breaking(i).empty() ? "consistent" : "would restart broken");
    if (!needs.empty()) {
      out << ", needs of the checkpointer:";
      for (const auto& n : needs) out << " " << n;
    }
    out << "\n";
  }
  out << "built in " << static_cast<long>(g.build_ms + 0.5) << " ms\n";
  return out.str();
}

}  // namespace gcp::deps
