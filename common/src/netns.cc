// SPDX-License-Identifier: MIT
#include "gcp/netns.h"

#include "gcp/caller.h"
#include "gcp/error.h"
#include "gcp/fs.h"
#include "gcp/names.h"
#include "gcp/process.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <net/if_arp.h>
#include <netinet/if_ether.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <spdlog/spdlog.h>
#include <nlohmann/json.hpp>

#include <cctype>
#include <cerrno>
#include <cstring>
#include <exception>
#include <fstream>
#include <sstream>
#include <thread>
#include <vector>

namespace gcp::netns {
namespace {

constexpr long kNsfsMagic = 0x6e736673;  // NSFS_MAGIC of linux/magic.h
constexpr const char* kDefaultConfig = "/etc/gcp/gcp.json";

std::string describe_unit(const std::string& job, const std::string& unit) {
  return "unit '" + unit + "' of job '" + job + "'";
}

// Runs f on a thread of its own and waits: setns() and unshare(CLONE_NEWNET) move only
// the calling thread, and the sockets made there belong to its namespace.
template <typename F>
void on_thread(F&& f) {
  std::exception_ptr failure;
  std::thread t([&] {
    try {
      f();
    } catch (...) {
      failure = std::current_exception();
    }
  });
  t.join();
  if (failure) std::rethrow_exception(failure);
}

// Runs f on a thread that has joined the namespace at `file`.
template <typename F>
void in_namespace(const std::string& file, F&& f) {
  on_thread([&] {
    int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) throw_errno("opening network namespace '" + file + "'");
    int rc = ::setns(fd, CLONE_NEWNET);
    ::close(fd);
    if (rc != 0) throw_errno("entering network namespace '" + file + "'");
    f();
  });
}

// IPv4 addresses and their devices in the calling thread's network namespace.
std::vector<std::pair<std::string, std::string>> ipv4_addresses() {
  std::vector<std::pair<std::string, std::string>> out;
  ifaddrs* list = nullptr;
  if (::getifaddrs(&list) != 0) throw_errno("listing network addresses");
  for (auto* a = list; a; a = a->ifa_next) {
    if (!a->ifa_addr || a->ifa_addr->sa_family != AF_INET) continue;
    char text[INET_ADDRSTRLEN];
    ::inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(a->ifa_addr)->sin_addr, text, sizeof text);
    out.emplace_back(text, a->ifa_name ? a->ifa_name : "");
  }
  ::freeifaddrs(list);
  return out;
}

// Makes kDir a shared mount point, as `ip netns` keeps /run/netns: a mount namespace
// made later (a unit's, a service's) then receives our unmounts and lets go of a
// removed namespace instead of keeping it alive. Returns the lock of kDir, held while
// an address is checked and taken, so that two creators neither stack binds nor both
// take one address.
fs::FileLock prepare_dir(const std::string& what) {
  fs::make_dirs(kDir, 0755);
  auto lock = fs::FileLock::acquire(std::string(kDir) + ".lock", false, std::chrono::seconds(30));
  if (!lock) throw Error(Exit::kBusy, what + ": '" + kDir + ".lock' is held by another gcp", "retry");
  if (::mount("", kDir, "none", MS_SHARED | MS_REC, nullptr) == 0) return std::move(*lock);
  if (errno != EINVAL) throw_errno(what + ": making '" + kDir + "' a shared mount");
  // EINVAL: not a mount point yet.
  if (::mount(kDir, kDir, "none", MS_BIND | MS_REC, nullptr) != 0 ||
      ::mount("", kDir, "none", MS_SHARED | MS_REC, nullptr) != 0) {
    throw_errno(what + ": making '" + kDir + "' a shared mount point");
  }
  return std::move(*lock);
}

// The last non-empty line of a program's stderr, or how it ended.
std::string why(const process::Result& r) {
  std::string err = r.err;
  while (!err.empty() && (err.back() == '\n' || err.back() == ' ')) err.pop_back();
  if (auto nl = err.rfind('\n'); nl != std::string::npos) err = err.substr(nl + 1);
  return err.empty() ? r.describe() : err;
}

// Runs a system tool, inside the namespace `ns` when given, with `input` on its stdin;
// `package` is what to install when it is missing.
void run_tool(const std::string& what, std::vector<std::string> argv, const std::optional<std::string>& ns,
              const std::optional<std::string>& input, const std::string& package) {
  process::Spec spec;
  spec.argv = std::move(argv);
  spec.netns = ns;
  spec.input = input;
  spec.timeout = std::chrono::seconds(30);
  process::Result r;
  try {
    r = process::run(spec);
  } catch (const Error& e) {
    throw Error(Exit::kFailed, what + ": " + e.what(), "install " + package);
  }
  if (!r.ok()) {
    std::string cmd;
    for (const auto& a : spec.argv) cmd += (cmd.empty() ? "" : " ") + a;
    throw Error(Exit::kFailed, what + ": '" + cmd + "' failed: " + why(r));
  }
}

// Runs ip(8), inside `ns` when given, with `input` for -batch.
void ip(const std::string& what, std::vector<std::string> args, const std::optional<std::string>& ns = {},
        const std::optional<std::string>& input = {}) {
  args.insert(args.begin(), "ip");
  run_tool(what, std::move(args), ns, input, "iproute2 (it provides ip(8))");
}

// Binds a new, empty network namespace at `file` (which exists), from a thread:
// unshare(CLONE_NEWNET) changes only the thread, and the mount keeps the namespace
// alive after the thread ends.
void bind_new_namespace(const std::string& file) {
  on_thread([&] {
    if (::unshare(CLONE_NEWNET) != 0) throw_errno("creating a network namespace");
    if (::mount("/proc/thread-self/ns/net", file.c_str(), nullptr, MS_BIND, nullptr) != 0) {
      throw_errno("binding the new network namespace at '" + file + "'");
    }
  });
}

// The lock: every packet in or out through eth0 dropped, in one iptables-restore (so
// both rules come and go together), as CRIU locks a network namespace it dumps. Not by
// taking the link down: CRIU's restore of a connected TCP socket looks up a route to
// the peer (connect() in repair mode) and fails with "Network is unreachable" without
// the link's route. iptables is what CRIU locks connections with anyway.
void lock_rules(const std::string& what, const std::string& ns, bool add) {
  const char* op = add ? "-I" : "-D";
  std::string rules = std::string("*filter\n") + op + " INPUT -i " + kDevice + " -j DROP\n" + op + " OUTPUT -o " +
                      kDevice + " -j DROP\nCOMMIT\n";
  run_tool(what, {"iptables-restore", "-w", "--noflush"}, ns, rules,
           "iptables (CRIU needs it for TCP connections too)");
}

std::array<uint8_t, 6> mac_bytes(const std::string& mac) {
  std::array<unsigned, 6> v{};
  std::array<uint8_t, 6> out{};
  if (std::sscanf(mac.c_str(), "%2x:%2x:%2x:%2x:%2x:%2x", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5]) != 6) {
    throw Error(Exit::kUsage, "MAC address '" + mac + "' is malformed");
  }
  for (size_t i = 0; i < 6; ++i) out[i] = static_cast<uint8_t>(v[i]);
  return out;
}

}  // namespace

void check(const std::string& what, const Config& config) {
  if (!parse_cidr(config.address)) {
    throw Error(Exit::kUsage, what + ": address '" + config.address + "' is not an IPv4 address with a prefix length",
                "write it as in '10.77.0.101/24'");
  }
  if (!config.gateway.empty() && !valid_ipv4(config.gateway)) {
    throw Error(Exit::kUsage, what + ": gateway '" + config.gateway + "' is not an IPv4 address",
                "write it as in '10.77.0.1'");
  }
  if (!valid_device(config.parent)) {
    throw Error(Exit::kUsage, what + ": parent device '" + config.parent + "' is not a device name",
                "name the lower device, e.g. --via eth0 ('ip link' lists them)");
  }
  if (!config.mac.empty() && !valid_mac(config.mac)) {
    throw Error(Exit::kUsage, what + ": MAC '" + config.mac + "' is not like '02:67:0a:4d:00:65'");
  }
}

std::string Cidr::host() const {
  return std::to_string(octets[0]) + "." + std::to_string(octets[1]) + "." + std::to_string(octets[2]) + "." +
         std::to_string(octets[3]);
}

std::optional<Cidr> parse_cidr(const std::string& text) {
  auto slash = text.find('/');
  if (slash == std::string::npos || !valid_ipv4(text.substr(0, slash))) return std::nullopt;
  std::string prefix = text.substr(slash + 1);
  if (prefix.empty() || prefix.size() > 2 || prefix.find_first_not_of("0123456789") != std::string::npos) {
    return std::nullopt;
  }
  Cidr c;
  c.prefix = std::stoi(prefix);
  if (c.prefix < 1 || c.prefix > 32) return std::nullopt;
  in_addr a{};
  ::inet_pton(AF_INET, text.substr(0, slash).c_str(), &a);
  std::memcpy(c.octets.data(), &a.s_addr, 4);
  return c;
}

bool valid_ipv4(const std::string& text) {
  in_addr a{};
  // inet_pton takes exactly a dotted quad (no "10.1", no leading zeros).
  return ::inet_pton(AF_INET, text.c_str(), &a) == 1;
}

bool valid_device(const std::string& name) {
  if (name.empty() || name.size() >= IFNAMSIZ || name == "." || name == "..") return false;
  for (char c : name) {
    if (c == '/' || c == ':' || std::isspace(static_cast<unsigned char>(c)) ||
        !std::isprint(static_cast<unsigned char>(c))) {
      return false;
    }
  }
  return true;
}

bool valid_mac(const std::string& text) {
  if (text.size() != 17) return false;
  for (size_t i = 0; i < text.size(); ++i) {
    bool colon = i % 3 == 2;
    char c = text[i];
    if (colon ? c != ':' : !((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

std::string mac_of(const std::string& cidr) {
  auto c = parse_cidr(cidr);
  if (!c) {
    throw Error(Exit::kUsage, "address '" + cidr + "' is not an IPv4 address with a prefix length",
                "write it as in '10.77.0.101/24'");
  }
  char out[18];
  std::snprintf(out, sizeof out, "02:67:%02x:%02x:%02x:%02x", c->octets[0], c->octets[1], c->octets[2], c->octets[3]);
  return out;
}

std::string path(const std::string& job, const std::string& unit) { return std::string(kDir) + "/" + job + "/" + unit; }

bool exists(const std::string& job, const std::string& unit) {
  struct statfs st {};
  return ::statfs(path(job, unit).c_str(), &st) == 0 && static_cast<long>(st.f_type) == kNsfsMagic;
}

void create(const std::string& job, const std::string& unit, const Config& config, bool locked) {
  std::string what = "creating the network namespace of " + describe_unit(job, unit);
  check(what, config);
  if (::geteuid() != 0) {
    throw Error(Exit::kNotPermitted, what + ": only root may create network namespaces",
                "run it as root, or start the unit without --address");
  }
  if (::if_nametoindex(config.parent.c_str()) == 0) {
    throw Error(Exit::kFailed, what + ": parent device '" + config.parent + "' does not exist on this node",
                "name an existing device ('ip link' lists them) with --via, or as network.parent in " +
                    std::string(kDefaultConfig) + " or $" + names::kEnvConfig);
  }
  std::string file = path(job, unit);
  if (exists(job, unit)) {
    throw Error(Exit::kFailed, what + ": '" + file + "' exists already",
                "the unit still has its namespace: 'gcp-isolate kill " + job + " --unit " + unit + "' removes it");
  }
  auto lock = prepare_dir(what);
  auto cidr = *parse_cidr(config.address);
  if (auto user = address_user(cidr.host())) {
    throw Error(Exit::kFailed, what + ": address " + cidr.host() + " is used on this node by " + *user,
                "give the unit another address, or stop what uses it first");
  }
  fs::make_dirs(std::filesystem::path(file).parent_path(), 0755);
  // A plain file left by a crash between creating and binding it is taken over.
  int fd = ::open(file.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0444);
  if (fd < 0) throw_errno(what + ": creating '" + file + "'");
  ::close(fd);
  try {
    bind_new_namespace(file);
    std::string mac = config.mac.empty() ? mac_of(config.address) : config.mac;
    // Made inside the namespace at once (IFLA_NET_NS_FD): no device named eth0 ever
    // shows up next to the parent, and a failure leaves nothing on the host.
    ip(what, {"link", "add", "link", config.parent, "name", kDevice, "netns", file, "address", mac, "type", "macvlan",
              "mode", "bridge"});
    if (locked) lock_rules(what, file, true);
    std::string batch = std::string("link set lo up\naddr add ") + config.address + " dev " + kDevice + "\nlink set " +
                        kDevice + " up\n";
    if (!config.gateway.empty()) batch += "route add default via " + config.gateway + " dev " + kDevice + "\n";
    ip(what, {"-batch", "-"}, file, batch);
  } catch (...) {
    remove(job, unit);
    throw;
  }
}

std::optional<std::string> address_user(const std::string& host, const std::string& except_job,
                                        const std::string& except_unit) {
  for (const auto& [addr, dev] : ipv4_addresses()) {
    if (addr == host) return "this node's own network namespace (device '" + dev + "')";
  }
  std::error_code ec;
  for (const auto& job : std::filesystem::directory_iterator(kDir, ec)) {
    if (!job.is_directory(ec)) continue;
    for (const auto& unit : std::filesystem::directory_iterator(job.path(), ec)) {
      std::string j = job.path().filename(), u = unit.path().filename();
      if ((j == except_job && u == except_unit) || !exists(j, u)) continue;
      bool used = false;
      try {
        in_namespace(unit.path().string(), [&] {
          for (const auto& [addr, dev] : ipv4_addresses()) used = used || addr == host;
        });
      } catch (const Error& e) {
        spdlog::warn("looking for address {} in {}: {}", host, unit.path().string(), e.what());
      }
      if (used) return describe_unit(j, u) + " (" + unit.path().string() + ")";
    }
  }
  return std::nullopt;
}

void lock(const std::string& job, const std::string& unit) {
  lock_rules("locking the network of " + describe_unit(job, unit), path(job, unit), true);
}

void unlock(const std::string& job, const std::string& unit) {
  lock_rules("unlocking the network of " + describe_unit(job, unit), path(job, unit), false);
}

void announce(const std::string& job, const std::string& unit, const Config& config) {
  std::string what = "announcing the address of " + describe_unit(job, unit);
  auto cidr = parse_cidr(config.address);
  if (!cidr) throw Error(Exit::kUsage, what + ": address '" + config.address + "' is malformed");
  auto mac = mac_bytes(config.mac.empty() ? mac_of(config.address) : config.mac);
  in_namespace(path(job, unit), [&] {
    unsigned index = ::if_nametoindex(kDevice);
    if (index == 0) throw_errno(what + ": finding " + kDevice);
    int fd = ::socket(AF_PACKET, SOCK_DGRAM | SOCK_CLOEXEC, htons(ETH_P_ARP));
    if (fd < 0) throw_errno(what + ": opening a packet socket");
    // An ARP announcement (RFC 5227): a request for our own address, from it.
    ether_arp arp{};
    arp.arp_hrd = htons(ARPHRD_ETHER);
    arp.arp_pro = htons(ETH_P_IP);
    arp.arp_hln = ETH_ALEN;
    arp.arp_pln = 4;
    arp.arp_op = htons(ARPOP_REQUEST);
    std::memcpy(arp.arp_sha, mac.data(), ETH_ALEN);
    std::memcpy(arp.arp_spa, cidr->octets.data(), 4);
    std::memcpy(arp.arp_tpa, cidr->octets.data(), 4);
    sockaddr_ll to{};
    to.sll_family = AF_PACKET;
    to.sll_protocol = htons(ETH_P_ARP);
    to.sll_ifindex = static_cast<int>(index);
    to.sll_halen = ETH_ALEN;
    std::memset(to.sll_addr, 0xff, ETH_ALEN);
    for (int i = 0; i < 3; ++i) {
      if (i) std::this_thread::sleep_for(std::chrono::milliseconds(50));
      if (::sendto(fd, &arp, sizeof arp, 0, reinterpret_cast<sockaddr*>(&to), sizeof to) < 0) {
        int err = errno;
        ::close(fd);
        errno = err;
        throw_errno(what + ": sending gratuitous ARP");
      }
    }
    ::close(fd);
  });
}

void remove(const std::string& job, const std::string& unit) noexcept {
  std::string file = path(job, unit);
  try {
    if (exists(job, unit)) {
      try {
        ip("removing the network device of " + describe_unit(job, unit), {"link", "del", kDevice}, file);
      } catch (const Error& e) {
        spdlog::debug("{}", e.what());  // never made, or gone already
      }
    }
    // Binds may be stacked (a crash between two creates); unmount them all.
    for (int i = 0; i < 16 && ::umount2(file.c_str(), MNT_DETACH) == 0; ++i) {
    }
    if (::unlink(file.c_str()) != 0 && errno != ENOENT) {
      spdlog::warn("removing network namespace file '{}': {}", file, std::strerror(errno));
    }
    ::rmdir(std::filesystem::path(file).parent_path().c_str());  // the job's last one
  } catch (const std::exception& e) {
    spdlog::warn("removing the network namespace of {}: {}", describe_unit(job, unit), e.what());
  }
}

std::optional<std::string> configured_parent() {
  const char* env = caller::for_user() ? nullptr : std::getenv(names::kEnvConfig);
  std::string file = env && *env ? env : kDefaultConfig;
  auto text = fs::try_read_file(file);
  if (!text) {
    if (env && *env) {
      throw Error(Exit::kUsage, "reading gcp's configuration '" + file + "': no such file",
                  "fix " + std::string(names::kEnvConfig) + " or unset it");
    }
    return std::nullopt;
  }
  auto doc = nlohmann::json::parse(*text, nullptr, false);
  std::string bad;
  if (doc.is_discarded() || !doc.is_object()) {
    bad = "is not a JSON object";
  } else if (auto net = doc.find("network"); net != doc.end()) {
    if (!net->is_object()) {
      bad = "field 'network' must be an object";
    } else if (auto parent = net->find("parent"); parent != net->end()) {
      if (!parent->is_string() || !valid_device(parent->get<std::string>())) {
        bad = "field 'network.parent' must be a device name";
      } else {
        return parent->get<std::string>();
      }
    }
  }
  if (!bad.empty()) {
    throw Error(Exit::kUsage, "reading gcp's configuration '" + file + "': " + bad,
                "write it as {\"network\": {\"parent\": \"eth0\"}} (gcp-isolate(1), FILES)");
  }
  return std::nullopt;
}

std::optional<std::string> default_route_device() {
  std::ifstream in("/proc/net/route");
  std::string line;
  std::getline(in, line);  // header
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::string dev, dest, gateway, flags, refcnt, use, metric, mask;
    if (!(fields >> dev >> dest >> gateway >> flags >> refcnt >> use >> metric >> mask)) continue;
    if (dest == "00000000" && mask == "00000000") return dev;
  }
  return std::nullopt;
}

}  // namespace gcp::netns
