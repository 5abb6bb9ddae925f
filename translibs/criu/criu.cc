// SPDX-License-Identifier: MIT
// The CRIU translib: maps gcp's translib ABI onto the criu binary (>= 4.2). Of gcp it
// includes translib.h only, and links nothing: run.h holds what it needs of processes
// and files.
#include "gcp/translib.h"
#include "images.h"
#include "ports.h"
#include "relay.h"
#include "run.h"

#include <nlohmann/json.hpp>

#include <arpa/inet.h>
#include <dlfcn.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <future>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <sstream>

namespace {

using json = nlohmann::ordered_json;
namespace stdfs = std::filesystem;
using gcp::criu::Outcome;

constexpr const char* kTranslibVersion = "0.1.0";
constexpr int kMinMajor = 4;
constexpr int kMinMinor = 2;
const char* kCpuinfoImage = "cpuinfo.img";
const char* kInstallHint = "run scripts/install-deps.sh (it builds CRIU 4.2.1) or set GCP_CRIU to a criu >= 4.2";

// Thrown inside this file only; turned into a status and an error string at the ABI.
struct Failure {
  gcp_translib_status status;
  std::string message;
};

[[noreturn]] void unsupported(std::string message) { throw Failure{GCP_TRANSLIB_UNSUPPORTED, std::move(message)}; }
[[noreturn]] void failed(std::string message) { throw Failure{GCP_TRANSLIB_ERROR, std::move(message)}; }

// A helper program of this translib: <prefix>/libexec/gcp/NAME, found from this
// translib's <prefix>/lib/gcp/translibs. Empty when it is not there.
std::string find_helper(const char* name) {
  Dl_info info{};
  if (::dladdr(reinterpret_cast<void*>(&find_helper), &info) == 0 || !info.dli_fname) return "";
  auto helper =
      stdfs::path(info.dli_fname).parent_path().parent_path().parent_path().parent_path() / "libexec/gcp" / name;
  return ::access(helper.c_str(), X_OK) == 0 ? helper.string() : "";
}

// criu-gate, the action script that holds a dump after CRIU's start-up until gcp has
// frozen the unit: $GCP_CRIU_GATE, else the helper. Empty when there is none (gcp then
// freezes before CRIU starts).
std::string find_gate() {
  if (const char* env = std::getenv("GCP_CRIU_GATE"); env && *env) {
    return ::access(env, X_OK) == 0 ? env : "";
  }
  return find_helper("criu-gate");
}

// Where a program of the translib runs: the cgroups it joins (cgroup.procs files) and
// the network namespace it enters (none: the tool's).
struct Placement {
  std::vector<std::string> join_cgroups;
  std::string netns;
};

// Runs criu (and the iptables tools) under criu-reaper (translibs/criu/reaper.c), in a
// process group of its own, so that nothing criu starts outlives it. CRIU's kernel
// probes fork children and stop them under ptrace. When the tool dies and takes criu
// with it (PR_SET_PDEATHSIG), such a child can stay stopped for ever: killing
// gcp-checkpoint during CRIU's start-up left one in 7 of 30 tries here, and with only a
// process group of its own (the kernel's SIGHUP to orphaned groups) in 4 of 30. The
// reaper, a child subreaper, kills and reaps whatever is left: 0 of 30. A timeout kills
// the whole group. What a successful `criu restore` leaves is the restored unit: the
// reaper keeps it. The reaper also puts the program into the unit's cgroup and network
// namespace, so that this translib's own spawner needs neither.
Outcome run_reaped(std::vector<std::string> argv, std::chrono::seconds timeout, const Placement& where = {},
                   std::vector<std::string> env = {}, std::optional<std::string> input = std::nullopt) {
  static const std::string reaper = find_helper("criu-reaper");
  if (reaper.empty()) failed("no criu-reaper next to the criu translib (<prefix>/libexec/gcp): reinstall gcp");
  std::vector<std::string> command = {reaper};
  if (argv.size() > 1 && argv[1] == "restore") command.push_back("--keep-on-success");
  for (const auto& procs : where.join_cgroups) command.insert(command.end(), {"--join-cgroup", procs});
  if (!where.netns.empty()) command.insert(command.end(), {"--netns", where.netns});
  command.push_back("--");
  command.insert(command.end(), argv.begin(), argv.end());
  return gcp::criu::run({std::move(command), std::move(env), std::move(input), timeout});
}

// The unit's own network namespace, when it has one: criu runs inside it, so that the
// namespace is criu's own and not dumped as a nested one (its macvlan could not be),
// the TCP connections are locked with iptables rules inside it, and a restore binds
// the sockets to the unit's address, which gcp has created there before.
std::string netns_of(const json& req) {
  std::string netns = req.value("netns", std::string());
  if (!netns.empty() && netns[0] != '/') failed("bad request: netns '" + netns + "' is not an absolute path");
  return netns;
}

std::string find_criu() {
  if (const char* env = std::getenv("GCP_CRIU"); env && *env) {
    if (auto path = gcp::criu::find_in_path(env)) return *path;
    unsupported(std::string("GCP_CRIU='") + env + "' is not an executable\nhint: " + kInstallHint);
  }
  if (auto path = gcp::criu::find_in_path("criu")) return *path;
  for (const char* dir : {"/usr/local/sbin/criu", "/usr/local/bin/criu", "/usr/sbin/criu", "/sbin/criu"}) {
    if (auto path = gcp::criu::find_in_path(dir)) return *path;
  }
  unsupported(
      std::string("no criu found in GCP_CRIU, PATH, /usr/local/sbin, /usr/local/bin, /usr/sbin or /sbin\nhint: ") +
      kInstallHint);
}

// "Version: 4.2.1" -> "4.2.1"
std::string ask_criu_version(const std::string& criu) {
  auto r = run_reaped({criu, "--version"}, std::chrono::seconds(10));
  auto pos = r.out.find("Version:");
  std::string version;
  if (pos != std::string::npos) {
    std::istringstream in(r.out.substr(pos + 8));
    in >> version;
  }
  int major = 0, minor = 0;
  if (!r.ok() || std::sscanf(version.c_str(), "%d.%d", &major, &minor) != 2) {
    unsupported("'" + criu + " --version' did not say a version (" + r.describe() + ")\nhint: " + kInstallHint);
  }
  if (major < kMinMajor || (major == kMinMajor && minor < kMinMinor)) {
    unsupported("criu " + version + " at " + criu +
                " is older than 4.2, which this kernel needs\nhint: " + kInstallHint);
  }
  return version;
}

// The lines of a CRIU log that say what went wrong, minus the noise every run has here.
std::vector<std::string> error_lines(const std::string& log) {
  std::vector<std::string> lines;
  std::istringstream in(log);
  std::string line;
  while (std::getline(in, line)) {
    if (line.find("Error (") == std::string::npos) continue;
    if (line.find("RLIMIT_NOFILE") != std::string::npos) continue;  // no CAP_SYS_RESOURCE: harmless
    auto pos = line.find("): ");
    lines.push_back(pos == std::string::npos ? line : line.substr(pos + 3));
  }
  return lines;
}

// The first real error in a CRIU log: the earliest is the cause, later ones are fallout.
std::string first_error(const stdfs::path& log_file, const Outcome& r) {
  std::string log;
  try {
    log = gcp::criu::read_file(log_file).value_or("");
  } catch (const std::exception&) {
  }
  auto lines = error_lines(log.empty() ? r.err : log);
  if (!lines.empty()) return lines.front();
  std::string err = r.err;
  while (!err.empty() && (err.back() == '\n' || err.back() == ' ')) err.pop_back();
  if (auto nl = err.rfind('\n'); nl != std::string::npos) err = err.substr(nl + 1);
  return err.empty() ? r.describe() : err;
}

uint64_t read_varint(const unsigned char*& p, const unsigned char* end) {
  uint64_t value = 0;
  for (int shift = 0; p < end && shift < 64; shift += 7) {
    unsigned char b = *p++;
    value |= static_cast<uint64_t>(b & 0x7f) << shift;
    if (!(b & 0x80)) break;
  }
  return value;
}

// stats-dump: u32 service magic, u32 stats magic, u32 length, then a protobuf
// stats_entry whose field 1 is dump_stats_entry (images/stats.proto in CRIU).
json read_dump_stats(const stdfs::path& file) {
  json stats = json::object();
  std::optional<std::string> data;
  try {
    data = gcp::criu::read_file(file);
  } catch (const std::exception&) {
    return stats;  // statistics only: a dump without them is still a dump
  }
  if (!data || data->size() < 12) return stats;
  const auto* p = reinterpret_cast<const unsigned char*>(data->data()) + 12;
  const auto* end = reinterpret_cast<const unsigned char*>(data->data()) + data->size();
  if (p >= end || *p != 0x0a) return stats;  // field 1, length-delimited
  ++p;
  uint64_t len = read_varint(p, end);
  if (len > static_cast<uint64_t>(end - p)) return stats;
  end = p + len;
  static const char* names[] = {nullptr,        "freezingUs",   "frozenUs",           "memdumpUs",
                                "memwriteUs",   "pagesScanned", "pagesSkippedParent", "pagesWritten",
                                "irmapResolve", "pagesLazy",    "pagePipes",          "pagePipeBufs"};
  while (p < end) {
    uint64_t key = read_varint(p, end);
    uint64_t field = key >> 3, wire = key & 7;
    if (wire != 0) break;  // every dump stat is a varint
    uint64_t value = read_varint(p, end);
    if (field < sizeof names / sizeof names[0] && names[field]) stats[names[field]] = value;
  }
  return stats;
}

// Asked once per binary and process (or taken from what a passing check remembered): a
// checkpoint must not start programs while the job is frozen that it could have
// started before.
std::mutex versions_mutex;
std::map<std::string, std::string> versions;

std::string criu_version(const std::string& criu) {
  std::lock_guard<std::mutex> lock(versions_mutex);
  auto it = versions.find(criu);
  if (it == versions.end()) it = versions.emplace(criu, ask_criu_version(criu)).first;
  return it->second;
}

// A passing `criu check` holds for this boot and this criu binary. It is remembered in
// kCheckedFile (on /run, a tmpfs: gone at reboot) under a key of both, with the version
// the binary said, and a probe with the same key skips the check and `criu --version`
// (0.1-0.2 s of every checkpoint and restart). A failing check is never remembered.
// Without root there is no /run/gcp, and nothing is kept.
constexpr const char* kCheckedFile = "/run/gcp/criu-checked.json";

std::string binary_key(const std::string& criu) {
  struct stat st;
  auto boot = gcp::criu::read_file("/proc/sys/kernel/random/boot_id");
  if (::stat(criu.c_str(), &st) != 0 || !boot) return "";
  while (!boot->empty() && std::isspace(static_cast<unsigned char>(boot->back()))) boot->pop_back();
  return *boot + " " + criu + " " + std::to_string(st.st_dev) + ":" + std::to_string(st.st_ino) + " " +
         std::to_string(st.st_size) + " " + std::to_string(st.st_mtim.tv_sec) + "." +
         std::to_string(st.st_mtim.tv_nsec);
}

// [{"binary": key, "version": "4.2.1"}, ...]; anything else in the file is forgotten.
std::vector<std::pair<std::string, std::string>> checked() {
  std::optional<std::string> text;
  try {
    text = gcp::criu::read_file(kCheckedFile);
  } catch (const std::exception&) {
    return {};
  }
  if (!text) return {};
  json doc = json::parse(*text, nullptr, false);
  if (!doc.is_array()) return {};
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& e : doc) {
    if (e.is_object() && e.value("binary", json()).is_string() && e.value("version", json()).is_string()) {
      out.emplace_back(e["binary"].get<std::string>(), e["version"].get<std::string>());
    }
  }
  return out;
}

void remember_checked(const std::string& key, const std::string& version) {
  if (key.empty() || ::geteuid() != 0) return;
  auto entries = checked();
  entries.emplace_back(key, version);
  if (entries.size() > 16) entries.erase(entries.begin(), entries.end() - 16);  // other binaries, older boots
  json doc = json::array();
  for (const auto& [k, v] : entries) doc.push_back({{"binary", k}, {"version", v}});
  try {
    gcp::criu::make_dirs(stdfs::path(kCheckedFile).parent_path(), 0755);
    gcp::criu::write_file_atomic(kCheckedFile, doc.dump() + "\n", 0644);
  } catch (const std::exception&) {
    // Not remembering costs the next probe 0.1-0.2 s, nothing else.
  }
}

json probe(const json&) {
  std::string criu = find_criu();
  std::string key = binary_key(criu);
  std::string version;
  for (const auto& [k, v] : key.empty() ? decltype(checked()){} : checked()) {
    if (k == key) version = v;
  }
  if (!version.empty()) {
    std::lock_guard<std::mutex> lock(versions_mutex);
    versions.emplace(criu, version);
  } else {
    version = criu_version(criu);
    auto r = run_reaped({criu, "check"}, std::chrono::seconds(60));
    if (!r.ok()) {
      auto lines = error_lines(r.err + r.out);
      unsupported("'" + criu + " check' failed: " + (lines.empty() ? r.describe() : lines.front()) +
                  "\nhint: " + kInstallHint);
    }
    remember_checked(key, version);
  }
  // What this translib can do beyond that is in its descriptor's bits (descriptor()).
  return {{"checkpointer", "criu"}, {"version", version}, {"path", criu}};
}

// Options that make a whole PID + mount namespace dump and restore here
// (MACHINE-FACTS.md: measured with CRIU 4.2.1 on kernel 6.18).
const std::vector<std::string> kNamespaceOptions = {"--ext-mount-map", "auto", "--enable-external-masters"};

// CRIU's -v level: $GCP_CRIU_LOG_LEVEL (0-4) for dumps and restores, else 3 (info)
// for a dump, where every debug line (-v4: 0.8 MB at 1 GiB) is written while the job
// is frozen (measured at 1 GiB: ~10% of CRIU's frozen time), and 4 for a restore.
std::string log_level(int fallback) {
  const char* env = std::getenv("GCP_CRIU_LOG_LEVEL");
  if (!env || !*env) return "-v" + std::to_string(fallback);
  std::string v = env;
  if (v.size() != 1 || v[0] < '0' || v[0] > '4') {
    failed("bad GCP_CRIU_LOG_LEVEL '" + v + "': not one of 0 to 4 (CRIU's -v levels)");
  }
  return "-v" + v;
}

// TCP connections across a dump and its restore. CRIU locks each connection of a dump
// with two iptables rules that drop every packet but its own (mark 0xC114); with
// --leave-running it unlocks them when the dump ends. `criu restore` expects them back
// (after a dump without --leave-running they never went away) and deletes them once
// every socket is restored. Without them, a restored socket that sends what it had not
// sent yet can find its peer in the same restore not there yet, and the kernel answers
// with a reset ("Can't restore not-sent send queue data: Connection reset by peer").
// So a dump says its connections, read from files.img, and a restore puts CRIU's very
// rules back before it starts CRIU, and removes any that CRIU left.

using gcp::criu::TcpConnection;

json connections_json(const std::vector<TcpConnection>& conns) {
  json out = json::array();
  for (const auto& c : conns) {
    out.push_back(
        {{"family", c.family}, {"src", c.src}, {"srcPort", c.src_port}, {"dst", c.dst}, {"dstPort", c.dst_port}});
  }
  return out;
}

// An address as inet_ntop prints it, or nullopt when `text` is not one of `family`.
std::optional<std::string> canonical_address(const std::string& family, const std::string& text) {
  int af = family == "ipv6" ? AF_INET6 : AF_INET;
  unsigned char raw[sizeof(struct in6_addr)];
  char back[INET6_ADDRSTRLEN];
  if (::inet_pton(af, text.c_str(), raw) != 1 || !::inet_ntop(af, raw, back, sizeof back)) return std::nullopt;
  return std::string(back);
}

// What a request says; anything else is refused (the rules are fed to iptables as root).
std::vector<TcpConnection> connections_of(const json& req) {
  std::vector<TcpConnection> out;
  if (!req.contains("tcpConnections")) return out;
  const json& list = req.at("tcpConnections");
  if (!list.is_array()) failed("bad request: tcpConnections is not an array");
  for (const auto& e : list) {
    auto bad = [&] { failed("bad request: tcpConnections holds " + e.dump() + ", not a TCP connection"); };
    if (!e.is_object()) bad();
    TcpConnection c;
    c.family = e.value("family", std::string());
    if (c.family != "ipv4" && c.family != "ipv6") bad();
    auto src = canonical_address(c.family, e.value("src", std::string()));
    auto dst = canonical_address(c.family, e.value("dst", std::string()));
    int sport = e.value("srcPort", 0), dport = e.value("dstPort", 0);
    if (!src || !dst || sport < 1 || sport > 65535 || dport < 1 || dport > 65535) bad();
    c.src = *src;
    c.dst = *dst;
    c.src_port = static_cast<uint16_t>(sport);
    c.dst_port = static_cast<uint16_t>(dport);
    out.push_back(std::move(c));
  }
  return out;
}

// A rule as "CHAIN SOURCE SPORT DESTINATION DPORT", how both sides are compared.
struct LockRule {
  std::string chain, source, destination;
  int sport = 0, dport = 0;
  std::string key() const {
    return chain + " " + source + " " + std::to_string(sport) + " " + destination + " " + std::to_string(dport);
  }
};

// CRIU's pair of rules for a connection (IPTABLES_CONN_CMD in criu/netfilter.c): what
// comes in from the peer, and what goes out to it.
std::vector<LockRule> lock_rules(const TcpConnection& c) {
  return {{"INPUT", c.dst, c.src, c.dst_port, c.src_port}, {"OUTPUT", c.src, c.dst, c.src_port, c.dst_port}};
}

std::string rule_spec(const LockRule& r) {
  return r.chain + " --protocol tcp -m mark ! --mark 0xC114 --source " + r.source + " --sport " +
         std::to_string(r.sport) + " --destination " + r.destination + " --dport " + std::to_string(r.dport) +
         " -j DROP";
}

const char* restore_tool(const std::string& family) {
  return family == "ipv6" ? "ip6tables-restore" : "iptables-restore";
}

// Runs an iptables tool in the unit's network namespace (none: this one).
Outcome run_iptables(std::vector<std::string> argv, const std::string& netns,
                     std::optional<std::string> input = std::nullopt) {
  return run_reaped(std::move(argv), std::chrono::seconds(60), {{}, netns}, {}, std::move(input));
}

void iptables_restore(const std::string& family, const std::string& commands, const std::string& netns) {
  auto r = run_iptables({restore_tool(family), "-w", "--noflush"}, netns, "*filter\n" + commands + "COMMIT\n");
  if (!r.ok()) {
    std::string err = r.err;
    while (!err.empty() && err.back() == '\n') err.pop_back();
    if (auto nl = err.rfind('\n'); nl != std::string::npos) err = err.substr(nl + 1);  // its last word
    std::string tool = restore_tool(family);
    if (err.rfind(tool + ":", 0) != 0) err = tool + ": " + (err.empty() ? r.describe() : err);
    throw std::runtime_error(err);
  }
}

// The lock rules of `conns` still in place: iptables-save's lines, e.g.
// "-A INPUT -s 127.0.0.1/32 -d 127.0.0.1/32 -p tcp -m mark ! --mark 0xc114 -m tcp --sport 1 --dport 2 -j DROP".
std::vector<std::string> leftover_rules(const std::string& family, const std::vector<TcpConnection>& conns,
                                        const std::string& netns) {
  std::set<std::string> ours;
  for (const auto& c : conns) {
    if (c.family != family) continue;
    for (const auto& r : lock_rules(c)) ours.insert(r.key());
  }
  std::vector<std::string> left;
  if (ours.empty()) return left;
  auto r = run_iptables({family == "ipv6" ? "ip6tables-save" : "iptables-save", "-t", "filter"}, netns);
  if (!r.ok()) throw std::runtime_error("iptables-save: " + r.describe());
  std::istringstream lines(r.out);
  for (std::string line; std::getline(lines, line);) {
    if (line.rfind("-A ", 0) != 0 || line.find("0xc114") == std::string::npos ||
        line.find("-j DROP") == std::string::npos) {
      continue;
    }
    std::istringstream words(line.substr(3));
    LockRule rule;
    words >> rule.chain;
    for (std::string w; words >> w;) {
      std::string v;
      if (w == "-s" && words >> v) rule.source = v.substr(0, v.find('/'));
      if (w == "-d" && words >> v) rule.destination = v.substr(0, v.find('/'));
      if (w == "--sport" && words >> v) rule.sport = std::atoi(v.c_str());
      if (w == "--dport" && words >> v) rule.dport = std::atoi(v.c_str());
    }
    auto src = canonical_address(family, rule.source), dst = canonical_address(family, rule.destination);
    if (!src || !dst) continue;
    rule.source = *src;
    rule.destination = *dst;
    if (ours.count(rule.key())) left.push_back(line.substr(3));
  }
  return left;
}

// Removes what CRIU left of the lock (all of it when it failed before its end; a copy
// from a dump without --leave-running that never unlocked). An empty string, or what
// went wrong: the restored connections would stay blocked.
std::string unlock_connections(const std::vector<TcpConnection>& conns, const std::string& netns) {
  for (const char* family : {"ipv4", "ipv6"}) {
    try {
      std::string commands;
      for (const auto& rule : leftover_rules(family, conns, netns)) commands += "-D " + rule + "\n";
      if (!commands.empty()) iptables_restore(family, commands, netns);
    } catch (const std::exception& e) {
      return std::string("removing the lock of the unit's TCP connections failed: ") + e.what() +
             " (any rule CRIU left blocks its connection until the rules with mark 0xc114 for the unit's ports "
             "are deleted: iptables-save -t filter | grep -i 0xc114)";
    }
  }
  return {};
}

void lock_connections(const std::vector<TcpConnection>& conns, const std::string& netns) {
  for (const char* family : {"ipv4", "ipv6"}) {
    std::string commands;
    for (const auto& c : conns) {
      if (c.family != family) continue;
      for (const auto& r : lock_rules(c)) commands += "-I " + rule_spec(r) + "\n";
    }
    if (commands.empty()) continue;
    try {
      iptables_restore(family, commands, netns);
    } catch (const std::exception& e) {
      // iptables-restore commits a table whole or not at all; the other family's may be in.
      std::string left = unlock_connections(conns, netns);
      failed(std::string("locking the unit's TCP connections for the restore failed: ") + e.what() +
             "\nhint: criu needs iptables for --tcp-established (Debian package iptables)" +
             (left.empty() ? "" : "\nhint: " + left));
    }
  }
}

std::chrono::seconds timeout_of(const json& req) { return std::chrono::seconds(req.value("timeoutSec", 600)); }

// CRIU's option for each need of gcp's dependency check (gcp-deps(1), gcp-criu(7)).
const std::map<std::string, std::string> kNeedOptions = {
    {"leader-outside", "--shell-job"},           // restored into the restorer's session
    {"tcp-established", "--tcp-established"},    // dumped in repair mode, locked with iptables
    {"unix-datagram-outside", "--ext-unix-sk"},  // its peer is not dumped; connected again by name
    {"file-locks", "--file-locks"},              // flock, POSIX and OFD locks dumped and taken again
};

// A request's array of strings `field` (absent: empty).
std::vector<std::string> strings_of(const json& req, const char* field) {
  std::vector<std::string> out;
  if (!req.contains(field)) return out;
  const json& list = req.at(field);
  if (!list.is_array()) failed(std::string("bad request: ") + field + " is not an array");
  for (const auto& e : list) {
    if (!e.is_string()) failed(std::string("bad request: ") + field + " holds " + e.dump() + ", not a string");
    out.push_back(e.get<std::string>());
  }
  return out;
}

// Whether a need maps to `option`.
bool needed_option(const std::string& option) {
  return std::any_of(kNeedOptions.begin(), kNeedOptions.end(), [&](const auto& e) { return e.second == option; });
}

// "--shell-job, --tcp-established, --ext-unix-sk" (or the needs, with `needs`).
std::string known(bool needs) {
  std::string list;
  for (const auto& [need, option] : kNeedOptions) list += (list.empty() ? "" : ", ") + (needs ? need : option);
  return list;
}

// What criu dumps with: an option for each need (sorted, once each). A checkpoint
// request's "options" comes from a host of ABI 1.0, which said them in CRIU's words.
std::set<std::string> dump_options(const json& req) {
  std::set<std::string> options;
  for (const auto& need : strings_of(req, "needs")) {
    auto it = kNeedOptions.find(need);
    if (it == kNeedOptions.end()) {
      unsupported("the unit needs '" + need + "', which this translib cannot meet (it meets " + known(true) + ")");
    }
    options.insert(it->second);
  }
  for (const auto& option : strings_of(req, "options")) {
    if (!needed_option(option)) {
      failed("bad request: option '" + option + "' (this translib dumps with " + known(false) + " only)");
    }
    options.insert(option);
  }
  return options;
}

// What criu restores with: the options the dump returned, which gcp passes back from
// the Checkpoint manifest. Anyone who can write the store may have written that, and
// criu runs as root: only options a need maps to get through.
std::vector<std::string> restore_options(const json& req) {
  auto options = strings_of(req, "options");
  for (const auto& option : options) {
    if (!needed_option(option)) {
      failed("bad request: option '" + option + "' (this translib restores with " + known(false) +
             " only)\nhint: the checkpoint's units[].checkpointerOptions hold it: a checkpoint this translib "
             "wrote does not");
    }
  }
  return options;
}

json checkpoint(const json& req) {
  auto options = dump_options(req);
  std::string criu = find_criu();
  std::string version = criu_version(criu);
  int pid = req.at("pid").get<int>();
  stdfs::path dir = req.at("imagesDir").get<std::string>();
  std::string grouping = req.value("grouping", "pidns");
  gcp::criu::make_dirs(dir, 0700);
  std::vector<std::string> argv = {criu,         "dump", "-t",       std::to_string(pid), "-D",
                                   dir.string(), "-o",   "dump.log", log_level(3)};
  // No --link-remap: with --leave-running CRIU removes its remap links once the dump
  // is done, so a checkpoint that needed one could not be restored. Without it CRIU
  // refuses such a dump ("Use link-remap option"), and the job keeps running.
  if (grouping == "pidns") {
    argv.insert(argv.end(), kNamespaceOptions.begin(), kNamespaceOptions.end());
  } else if (grouping != "tree" && grouping != "pgid" && grouping != "sid" && grouping != "cgroup") {
    unsupported("grouping '" + grouping + "' (this translib dumps 'pidns', 'tree', 'pgid', 'sid' and 'cgroup')");
  }
  if (auto cg = req.value("freezeCgroup", std::string()); !cg.empty()) {
    argv.insert(argv.end(), {"--freeze-cgroup", cg});
  }
  if (req.value("leaveRunning", true)) argv.push_back("--leave-running");
  argv.insert(argv.end(), options.begin(), options.end());
  // A gate: CRIU starts up (probing the kernel: 0.1 s here) while the unit runs, says
  // "ready" at its pre-dump action and waits there until gcp, having frozen the unit,
  // says "go".
  std::vector<std::string> env;
  if (req.contains("gate")) {
    const auto& gate = req.at("gate");
    std::string script = find_gate();
    if (script.empty()) failed("bad request: a gate, but no criu-gate helper (set GCP_CRIU_GATE or reinstall gcp)");
    argv.insert(argv.end(), {"--action-script", script});
    env = {"GCP_GATE_READY=" + gate.at("ready").get<std::string>(), "GCP_GATE_GO=" + gate.at("go").get<std::string>(),
           "GCP_GATE_WAIT_SEC=" + std::to_string(timeout_of(req).count())};
  }
  // Without CAP_SYS_RESOURCE (none here), root may not read the limits of a unit that
  // runs as a user: criu-rlimits.so reads them from /proc (translibs/criu/rlimits.c).
  if (auto rlimits = find_helper("criu-rlimits.so"); !rlimits.empty()) env.push_back("LD_PRELOAD=" + rlimits);
  // What a node that restores the unit must offer, written beside the images while the
  // dump runs (`criu cpuinfo dump`: 0.17 s here, which would otherwise be frozen time).
  // `criu restore` reads cpuinfo.img only with --cpu-cap, which gcp does not pass.
  auto cpuinfo = std::async(std::launch::async, [&] {
    return run_reaped({criu, "cpuinfo", "dump", "-D", dir.string()}, std::chrono::seconds(60));
  });
  auto r = run_reaped(argv, timeout_of(req), {{}, netns_of(req)}, env);
  json check_images = json::array();
  if (cpuinfo.get().ok() && stdfs::exists(dir / kCpuinfoImage)) check_images.push_back(kCpuinfoImage);
  auto log = dir / "dump.log";
  if (!r.ok()) {
    failed("criu dump of pid " + std::to_string(pid) + " failed: " + first_error(log, r) + " (log: " + log.string() +
           ")");
  }
  json connections = json::array();
  // A unit in a network namespace of its own that CRIU dumped (netns-*.img) gets it back
  // fresh from CRIU, which locks its connections there itself: rules in the restorer's
  // namespace would only hold up the node's own connections on the same ports.
  bool own_netns = false;
  for (const auto& e : stdfs::directory_iterator(dir)) {
    std::string name = e.path().filename();
    if (name.rfind("netns-", 0) == 0 && e.path().extension() == ".img") own_netns = true;
  }
  if (options.count("--tcp-established") && !own_netns) {
    try {
      if (auto files = gcp::criu::read_file(dir / "files.img")) {
        connections = connections_json(
            gcp::criu::tcp_connections({reinterpret_cast<const uint8_t*>(files->data()), files->size()}));
      }
    } catch (const std::exception& e) {
      failed("reading the TCP connections of the dump in '" + (dir / "files.img").string() + "': " + e.what());
    }
  }
  // CRIU writes memory as whole pages into pages-<id>.img: the store cuts these
  // into page-sized chunks, so that a rewritten page costs one chunk.
  json aligned = json::array();
  for (const auto& e : stdfs::directory_iterator(dir)) {
    std::string name = e.path().filename();
    if (name.rfind("pages-", 0) == 0 && e.path().extension() == ".img") aligned.push_back(name);
  }
  return {{"checkpointer", "criu"},
          {"version", version},
          {"log", log.string()},
          {"pageAligned", aligned},
          {"stats", read_dump_stats(dir / "stats-dump")},
          {"tcpConnections", connections},
          {"checkImages", check_images},
          {"options", options}};
}

// Can this node restore images whose cpuinfo.img is in imagesDir: `criu cpuinfo check`,
// with CRIU's own reason when it cannot.
json check(const json& req) {
  stdfs::path dir = req.at("imagesDir").get<std::string>();
  json checks = json::array();
  if (!stdfs::exists(dir / kCpuinfoImage)) return {{"checks", checks}};
  std::string criu = find_criu();
  auto r = run_reaped({criu, "cpuinfo", "check", "-D", dir.string()}, std::chrono::seconds(60));
  if (r.ok()) {
    checks.push_back({{"check", "cpu"}, {"status", "ok"}, {"reason", "criu cpuinfo check passed"}});
    return {{"checks", checks}};
  }
  auto lines = error_lines(r.err + "\n" + r.out);
  std::string why = lines.empty() ? "criu cpuinfo check failed (" + r.describe() + ")" : lines.front();
  checks.push_back({{"check", "cpu"},
                    {"status", "refuse"},
                    {"reason", "this node's CPU lacks what the images need: " + why},
                    {"hint", "restart the unit on a node whose CPU has it (--place UNIT=NODE)"}});
  return {{"checks", checks}};
}

// A directory of its own for one `criu restore --stream`: CRIU finds its streamer at
// DIR/streamer-serve.sock, where DIR is its -D, and a unix socket path has 108 bytes at
// most. imagesDir (deep in gcp's scratch) may be longer; this one never is.
class StreamDir {
 public:
  StreamDir() {
    char name[] = "/tmp/gcp-criu-stream-XXXXXX";
    if (!::mkdtemp(name)) {
      failed(std::string("creating a directory for criu's image streamer in /tmp: ") + std::strerror(errno));
    }
    path_ = name;
  }
  ~StreamDir() {
    std::error_code ec;
    stdfs::remove_all(path_, ec);
  }
  StreamDir(const StreamDir&) = delete;
  StreamDir& operator=(const StreamDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// A network namespace that CRIU restores comes back without the lock of its TCP
// connections: CRIU puts its rules in at the dump with iptables-restore, which is
// iptables-nft here, and dumps the namespace's rules with iptables-legacy-save, so the
// image lacks them, and a restored socket that sends before its peer in the same
// namespace is restored is answered with a reset ("Can't restore not-sent send queue
// data": 1 restart in 1 here). This action script puts CRIU's very rules (chain CRIU)
// into the namespace as soon as CRIU has made it (setup-namespaces); CRIU's own unlock
// at the end of the restore removes that chain. It does nothing to a unit restored in
// the restorer's own network namespace, where gcp locks the connections one by one.
constexpr const char* kNetnsLockScript = R"SH(#!/bin/sh
[ "$CRTOOLS_SCRIPT_ACTION" = setup-namespaces ] || exit 0
[ -n "$CRTOOLS_INIT_PID" ] || exit 0
ns=$(readlink "/proc/$CRTOOLS_INIT_PID/ns/net") || exit 1
[ "$ns" != "$(readlink /proc/self/ns/net)" ] || exit 0
for tool in iptables-restore ip6tables-restore; do
  nsenter --net="/proc/$CRTOOLS_INIT_PID/ns/net" $tool -w --noflush <<RULES || exit 1
*filter
:CRIU - [0:0]
-I INPUT -j CRIU
-I OUTPUT -j CRIU
-A CRIU -m mark --mark 0xc114 -j ACCEPT
-A CRIU -j DROP
COMMIT
RULES
done
)SH";

json restart(const json& req) {
  auto options = restore_options(req);
  std::string source = req.value("imageSource", std::string());
  if (req.contains("imageSource") && (source.empty() || source[0] != '/')) {
    failed("bad request: imageSource '" + source + "' is not an absolute path");
  }
  std::string criu = find_criu();
  std::string version = criu_version(criu);
  stdfs::path dir = req.at("imagesDir").get<std::string>();
  stdfs::path work = req.at("workDir").get<std::string>();
  std::string grouping = req.value("grouping", "pidns");
  gcp::criu::make_dirs(work, 0700);
  auto pidfile = work / "restored.pid";
  std::error_code ec;
  stdfs::remove(pidfile, ec);
  // The images come from gcp's image source: CRIU reads them as a stream (--stream) from
  // the relay, which hands each of CRIU's pipes on to gcp.
  std::optional<StreamDir> stream_dir;
  std::optional<gcp::criu::StreamRelay> relay;
  if (!source.empty()) {
    stream_dir.emplace();
    try {
      relay.emplace(stream_dir->path(), source);
    } catch (const std::exception& e) {
      failed(std::string("restoring from gcp's image source: ") + e.what());
    }
  }
  std::vector<std::string> argv = {criu, "restore", "-D", relay ? stream_dir->path() : dir.string(), "-W",
                                   work.string(), "-o", "restore.log", log_level(4), "--restore-detached", "--pidfile",
                                   pidfile.string(),
                                   // The restored unit belongs to the cgroup criu runs in
                                   // (the unit's new one), not to the one it was dumped from.
                                   "--manage-cgroups=ignore"};
  if (req.value("leaveStopped", false)) argv.push_back("--leave-stopped");
  if (grouping == "pidns") {
    argv.insert(argv.end(), kNamespaceOptions.begin(), kNamespaceOptions.end());
    argv.insert(argv.end(), {"--root", "/"});
  }
  if (relay) argv.push_back("--stream");
  argv.insert(argv.end(), options.begin(), options.end());
  std::optional<StreamDir> script_dir;
  if (std::find(options.begin(), options.end(), "--tcp-established") != options.end()) {
    script_dir.emplace();
    auto script = stdfs::path(script_dir->path()) / "lock-netns";
    try {
      gcp::criu::write_file_atomic(script, kNetnsLockScript, 0700);
    } catch (const std::exception& e) {
      failed(std::string("writing criu's action script: ") + e.what());
    }
    argv.insert(argv.end(), {"--action-script", script.string()});
  }
  auto connections = connections_of(req);
  std::string netns = netns_of(req);
  lock_connections(connections, netns);
  auto r = run_reaped(argv, timeout_of(req), {strings_of(req, "joinCgroups"), netns});
  // CRIU has exited: it reads no more images.
  std::string relay_failure = relay ? relay->finish() : std::string();
  std::string unlocked = connections.empty() ? std::string() : unlock_connections(connections, netns);
  auto log = work / "restore.log";
  std::string from = relay ? "gcp's image source" : "'" + dir.string() + "'";
  if (!r.ok()) {
    std::string why = first_error(log, r);
    if (!relay_failure.empty()) why += " (relaying its images: " + relay_failure + ")";
    std::string hint;
    std::string log_text;
    try {
      log_text = gcp::criu::read_file(log).value_or("");
    } catch (const std::exception&) {
    }
    if (auto port = gcp::criu::explain_bind_failure(why, log_text); !port.detail.empty()) {
      why += port.detail;
      hint += "\nhint: " + port.hint;
    }
    if (grouping != "pidns" && why.find("File exists") != std::string::npos) {
      hint =
          "\nhint: a plain process tree comes back only with its own PIDs and one is taken; "
          "stop what holds it, or start the job with gcp-isolate so it gets its own PID namespace";
    }
    if (!unlocked.empty()) hint += "\nhint: " + unlocked;
    failed("criu restore from " + from + " failed: " + why + " (log: " + log.string() + ")" + hint);
  }
  std::optional<std::string> text;
  try {
    text = gcp::criu::read_file(pidfile);
  } catch (const std::exception&) {
  }
  if (!text || std::atoi(text->c_str()) <= 0) {
    failed("criu restore from " + from + " wrote no pid file (log: " + log.string() + ")");
  }
  pid_t root = std::atoi(text->c_str());
  json result = {{"checkpointer", "criu"},
                 {"version", version},
                 {"pid", root},
                 {"pids", gcp::criu::process_tree(root)},
                 {"log", log.string()}};
  json warnings = json::array();
  if (!unlocked.empty()) warnings.push_back(unlocked);
  if (!relay_failure.empty()) warnings.push_back("relaying the images to criu: " + relay_failure);
  if (!warnings.empty()) result["warnings"] = warnings;
  return result;
}

char* dup_string(const std::string& s) {
  char* out = static_cast<char*>(std::malloc(s.size() + 1));
  if (out) std::memcpy(out, s.c_str(), s.size() + 1);
  return out;
}

// The ABI boundary: no exception crosses it.
gcp_translib_status call(json (*fn)(const json&), const char* request, char** result, char** error) {
  *result = nullptr;
  *error = nullptr;
  try {
    json req = json::parse(request ? request : "{}");
    *result = dup_string(fn(req).dump());
    return GCP_TRANSLIB_OK;
  } catch (const Failure& f) {
    *error = dup_string(f.message);
    return f.status;
  } catch (const json::exception& e) {
    *error = dup_string(std::string("bad request: ") + e.what());
  } catch (const std::exception& e) {
    *error = dup_string(e.what());
  } catch (...) {
    *error = dup_string("unknown failure");
  }
  return GCP_TRANSLIB_ERROR;
}

gcp_translib_status do_probe(const char* req, char** res, char** err) { return call(probe, req, res, err); }
gcp_translib_status do_checkpoint(const char* req, char** res, char** err) { return call(checkpoint, req, res, err); }
gcp_translib_status do_restart(const char* req, char** res, char** err) { return call(restart, req, res, err); }
gcp_translib_status do_check(const char* req, char** res, char** err) { return call(check, req, res, err); }
void free_string(char* s) { std::free(s); }

// What this translib can do. A gate needs criu-gate: without it (not installed, or
// GCP_CRIU_GATE naming no executable) gcp freezes a unit before CRIU starts.
const gcp_translib_descriptor* descriptor() {
  static const gcp_translib_descriptor d = {
      GCP_TRANSLIB_ABI_MAJOR,
      GCP_TRANSLIB_ABI_MINOR,
      sizeof(gcp_translib_descriptor),
      "checkpointer/criu",
      "criu",
      kTranslibVersion,
      GCP_CAP_PROCESS_TREE | GCP_CAP_PID_NAMESPACE | GCP_CAP_TCP | GCP_CAP_LEAVE_RUNNING | GCP_CAP_IMAGE_SOURCE |
          (find_gate().empty() ? 0u : static_cast<unsigned>(GCP_CAP_DUMP_GATE)),
      do_probe,
      do_checkpoint,
      do_restart,
      free_string,
      do_check,
  };
  return &d;
}

}  // namespace

extern "C" __attribute__((visibility("default"))) const gcp_translib_descriptor* gcp_translib_open(
    const gcp_translib_host*) {
  return descriptor();
}
