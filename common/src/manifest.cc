// SPDX-License-Identifier: MIT
#include "gcp/manifest.h"

#include "gcp/error.h"
#include "gcp/grouping.h"
#include "gcp/netns.h"

#include <arpa/inet.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cmath>
#include <ctime>
#include <filesystem>
#include <limits>
#include <set>

namespace gcp::manifest {
namespace {

// Reads the fields of one JSON object, naming the field path in every error and
// collecting the keys it did not consume into `extra`.
class Fields {
 public:
  Fields(const json& obj, std::string where, const std::string& source)
      : obj_(obj), where_(std::move(where)), source_(source) {
    if (!obj_.is_object()) fail(where_.empty() ? "document" : where_, "is not a JSON object");
  }

  template <typename T>
  T required(const std::string& key) {
    seen_.insert(key);
    auto it = obj_.find(key);
    if (it == obj_.end()) fail(name(key), "is missing");
    return convert<T>(*it, key);
  }

  template <typename T>
  T optional(const std::string& key, T fallback) {
    seen_.insert(key);
    auto it = obj_.find(key);
    if (it == obj_.end() || it->is_null()) return fallback;
    return convert<T>(*it, key);
  }

  template <typename T>
  std::optional<T> maybe(const std::string& key) {
    seen_.insert(key);
    auto it = obj_.find(key);
    if (it == obj_.end() || it->is_null()) return std::nullopt;
    return convert<T>(*it, key);
  }

  const json& array(const std::string& key, bool needed) {
    seen_.insert(key);
    static const json empty = json::array();
    auto it = obj_.find(key);
    if (it == obj_.end()) {
      if (needed) fail(name(key), "is missing");
      return empty;
    }
    if (!it->is_array()) fail(name(key), "must be an array");
    return *it;
  }

  json object(const std::string& key) {
    seen_.insert(key);
    auto it = obj_.find(key);
    if (it == obj_.end() || it->is_null()) return json::object();
    if (!it->is_object()) fail(name(key), "must be an object");
    return *it;
  }

  /// Marks a key as read by other means (it does not go into extra()).
  void consume(const std::string& key) { seen_.insert(key); }

  std::string name(const std::string& key) const { return where_.empty() ? key : where_ + "." + key; }

  json extra() const {
    json rest = json::object();
    for (auto it = obj_.begin(); it != obj_.end(); ++it) {
      if (!seen_.count(it.key())) rest[it.key()] = it.value();
    }
    return rest;
  }

  [[noreturn]] void fail(const std::string& field, const std::string& why) const {
    throw Error(Exit::kUsage, "reading manifest '" + printable(source_) + "': field '" + printable(field) + "' " + why,
                "see gcp-manifest(5) for the fields of gcp/v1 manifests");
  }

 private:
  template <typename T>
  T convert(const json& value, const std::string& key) {
    try {
      if constexpr (std::is_same_v<T, std::string>) {
        if (!value.is_string()) fail(name(key), "must be a string");
      } else if constexpr (std::is_same_v<T, bool>) {
        if (!value.is_boolean()) fail(name(key), "must be true or false");
      } else if constexpr (std::is_integral_v<T>) {
        if (!value.is_number_integer()) fail(name(key), "must be an integer");
        // nlohmann's get<T> truncates: 2^32 would become a uid of 0.
        if (value.is_number_unsigned()) {
          if (value.get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<T>::max())) {
            fail(name(key), "is out of range (at most " + std::to_string(std::numeric_limits<T>::max()) + ")");
          }
        } else {
          auto v = value.get<int64_t>();
          if (std::is_unsigned_v<T> && v < 0) fail(name(key), "must not be negative");
          if (v < static_cast<int64_t>(std::numeric_limits<T>::min()) ||
              (v > 0 && static_cast<uint64_t>(v) > static_cast<uint64_t>(std::numeric_limits<T>::max()))) {
            fail(name(key), "is out of range");
          }
        }
      }
      return value.get<T>();
    } catch (const json::exception& e) {
      fail(name(key), std::string("has the wrong type: ") + e.what());
    }
  }

  const json& obj_;
  std::string where_;
  const std::string& source_;
  std::set<std::string> seen_;
};

void valid_name(const Fields& f, const std::string& what, const std::string& name, const std::string& key) {
  try {
    check_name(what, name);
  } catch (const Error&) {
    f.fail(f.name(key), std::string("is not a valid ") + what + " name ('" + printable(name) + "')");
  }
}

void valid_grouping(const Fields& f, const std::string& grouping) {
  if (!grouping::parse(grouping)) {
    f.fail(f.name("grouping"), "is '" + printable(grouping) + "', expected 'pidns', 'tree', 'pgid', 'sid' or 'cgroup'");
  }
}

std::string indexed(const std::string& key, size_t i) { return key + "[" + std::to_string(i) + "]"; }

// {family, src, srcPort, dst, dstPort}: the translib makes iptables rules of these, as root.
json tcp_connection(const json& value, const std::string& where, const std::string& source) {
  Fields f(value, where, source);
  auto family = f.required<std::string>("family");
  if (family != "ipv4" && family != "ipv6")
    f.fail(f.name("family"), "is '" + printable(family, 60) + "', expected 'ipv4' or 'ipv6'");
  for (const char* key : {"src", "dst"}) {
    auto address = f.required<std::string>(key);
    unsigned char raw[sizeof(struct in6_addr)];
    if (::inet_pton(family == "ipv6" ? AF_INET6 : AF_INET, address.c_str(), raw) != 1) {
      f.fail(f.name(key),
             "is '" + printable(address, 60) + "', not an " + (family == "ipv6" ? "IPv6" : "IPv4") + " address");
    }
  }
  for (const char* key : {"srcPort", "dstPort"}) {
    auto port = f.required<uint64_t>(key);
    if (port < 1 || port > 65535) f.fail(f.name(key), "is " + std::to_string(port) + ", not a port (1-65535)");
  }
  if (!f.extra().empty()) f.fail(where, "has unknown fields: " + f.extra().dump());
  return value;
}

Mode mode_from(Fields& f, const std::string& key) {
  auto mode = f.optional<std::string>(key, "coordinated");
  if (mode == "coordinated") return Mode::kCoordinated;
  if (mode == "uncoordinated") return Mode::kUncoordinated;
  f.fail(f.name(key), "is '" + printable(mode, 60) + "', expected 'coordinated' or 'uncoordinated'");
}

void check_header(const json& doc, const std::string& kind, const std::string& source) {
  Fields f(doc, "", source);
  auto version = f.required<std::string>("apiVersion");
  if (version != kApiVersion) {
    std::string major = version.substr(0, version.find('.'));
    if (major != kApiVersion) {
      throw Error(Exit::kUsage,
                  "reading manifest '" + printable(source) + "': apiVersion '" + printable(version, 60) +
                      "' is not supported (this gcp reads '" + kApiVersion + "')",
                  "write the manifest as " + std::string(kApiVersion) + " or use the gcp release that wrote it");
    }
    std::string minor = version.substr(version.find('.') + 1);
    if (minor.find_first_not_of('0') != std::string::npos) {
      spdlog::warn("manifest '{}' has apiVersion '{}', newer than this gcp's '{}'; unknown fields are kept",
                   printable(source), printable(version, 60), kApiVersion);
    }
  }
  auto got = f.required<std::string>("kind");
  if (got != kind) {
    throw Error(Exit::kUsage,
                "reading manifest '" + source + "': kind is '" + printable(got) + "', expected '" + kind + "'");
  }
}

void put_extra(json& out, const json& extra) {
  for (auto it = extra.begin(); it != extra.end(); ++it) {
    if (!out.contains(it.key())) out[it.key()] = it.value();
  }
}

// A number of seconds a user or a manifest gives: finite, positive, at most a year.
double seconds_in(Fields& f, const json& obj, const std::string& key) {
  auto v = f.maybe<double>(key);
  (void)obj;
  if (!v) return 0;
  if (!std::isfinite(*v) || *v <= 0) f.fail(f.name(key), "must be a positive number of seconds");
  if (*v > 366.0 * 86400) f.fail(f.name(key), "is over a year (" + std::to_string(static_cast<long long>(*v)) + " s)");
  return *v;
}

CheckpointPolicy policy_from(const json& doc, const std::string& where, const std::string& source) {
  Fields f(doc, where, source);
  CheckpointPolicy p;
  p.kind = f.optional<std::string>("kind", "adaptive");
  if (p.kind != "fixed" && p.kind != "young" && p.kind != "daly" && p.kind != "adaptive") {
    f.fail(f.name("kind"), "is '" + printable(p.kind) + "', expected 'fixed', 'young', 'daly' or 'adaptive'");
  }
  if (double v = seconds_in(f, doc, "intervalS")) p.interval_s = v;
  if (double v = seconds_in(f, doc, "costS")) p.cost_s = v;
  if (double v = seconds_in(f, doc, "mtbfS")) p.mtbf_s = v;
  if (p.kind == "fixed" && !p.interval_s) f.fail(f.name("intervalS"), "is missing: a fixed policy needs its interval");
  p.deadline = f.optional<std::string>("deadline", "");
  if (!p.deadline.empty() && !parse_rfc3339(p.deadline)) {
    f.fail(f.name("deadline"),
           "is '" + printable(p.deadline, 40) + "', not an RFC 3339 time such as 2026-12-08T06:00:00Z");
  }
  p.max_restarts = f.maybe<uint64_t>("maxRestarts");
  if (p.max_restarts && *p.max_restarts > 1000) f.fail(f.name("maxRestarts"), "is over 1000");
  const json& spares = f.array("spares", false);
  for (size_t i = 0; i < spares.size(); ++i) {
    if (!spares[i].is_string() || spares[i].get<std::string>().empty() || spares[i].get<std::string>().size() > 253) {
      f.fail(indexed(f.name("spares"), i), "must be a node name");
    }
    p.spares.push_back(spares[i].get<std::string>());
  }
  p.extra = f.extra();
  return p;
}

History history_from(const json& doc, const std::string& source) {
  Fields f(doc, "history", source);
  History h;
  if (auto c = f.maybe<double>("costS")) {
    if (!std::isfinite(*c) || *c < 0) f.fail("history.costS", "must be a number of seconds");
    h.cost_s = *c;
  }
  h.checkpoints = f.optional<uint64_t>("checkpoints", 0);
  h.failures = f.optional<uint64_t>("failures", 0);
  h.exposure_s = f.optional<double>("exposureS", 0.0);
  if (!std::isfinite(h.exposure_s) || h.exposure_s < 0) f.fail("history.exposureS", "must be a number of seconds");
  h.running_since = f.optional<std::string>("runningSince", "");
  h.restarts = f.optional<uint64_t>("restarts", 0);
  h.backoff_until = f.optional<std::string>("backoffUntil", "");
  h.given_up = f.optional<std::string>("givenUp", "");
  h.job_ties = f.maybe<uint64_t>("jobTies");
  const json& recent = f.array("recent", false);
  for (size_t i = 0; i < recent.size() && i < 10 * History::kKeep; ++i) {
    Fields r(recent[i], indexed("history.recent", i), source);
    History::Checkpoint c;
    c.seq = r.optional<uint64_t>("seq", 0);
    c.at = r.required<std::string>("at");
    c.cost_s = r.optional<double>("costS", 0.0);
    h.recent.push_back(c);
  }
  const json& stops = f.array("stops", false);
  for (size_t i = 0; i < stops.size() && i < 10 * History::kKeep; ++i) {
    Fields r(stops[i], indexed("history.stops", i), source);
    History::Stop s;
    s.at = r.required<std::string>("at");
    s.cause = r.required<std::string>("cause");
    s.detail = r.optional<std::string>("detail", "");
    s.failure = r.optional<bool>("failure", true);
    h.stops.push_back(s);
  }
  h.extra = f.extra();
  return h;
}

json history_to_json(const History& h) {
  json j = json::object();
  if (h.cost_s) j["costS"] = *h.cost_s;
  j["checkpoints"] = h.checkpoints;
  j["failures"] = h.failures;
  j["exposureS"] = h.exposure_s;
  if (!h.running_since.empty()) j["runningSince"] = h.running_since;
  if (h.restarts) j["restarts"] = h.restarts;
  if (!h.backoff_until.empty()) j["backoffUntil"] = h.backoff_until;
  if (!h.given_up.empty()) j["givenUp"] = h.given_up;
  if (h.job_ties) j["jobTies"] = *h.job_ties;
  j["recent"] = json::array();
  for (const auto& c : h.recent) j["recent"].push_back({{"seq", c.seq}, {"at", c.at}, {"costS", c.cost_s}});
  j["stops"] = json::array();
  for (const auto& s : h.stops) {
    json e = {{"at", s.at}, {"cause", s.cause}, {"failure", s.failure}};
    if (!s.detail.empty()) e["detail"] = s.detail;
    j["stops"].push_back(e);
  }
  put_extra(j, h.extra);
  return j;
}

}  // namespace

CheckpointPolicy checkpoint_policy_from_json(const json& doc, const std::string& where) {
  return policy_from(doc, "", where);
}

json to_json(const CheckpointPolicy& p) {
  json j = {{"kind", p.kind}};
  if (p.interval_s) j["intervalS"] = *p.interval_s;
  if (p.cost_s) j["costS"] = *p.cost_s;
  if (p.mtbf_s) j["mtbfS"] = *p.mtbf_s;
  if (!p.deadline.empty()) j["deadline"] = p.deadline;
  if (p.max_restarts) j["maxRestarts"] = *p.max_restarts;
  if (!p.spares.empty()) j["spares"] = p.spares;
  put_extra(j, p.extra);
  return j;
}

namespace {

json unit_to_json(const Unit& u) {
  json j;
  j["name"] = u.name;
  j["node"] = u.node;
  j["grouping"] = u.grouping;
  j["cgroup"] = u.cgroup;
  j["translib"] = u.translib;
  j["command"] = u.command;
  j["output"] = u.output;
  j["state"] = name(u.state);
  if (u.pid) j["pid"] = *u.pid;
  if (u.restored_from) j["restoredFrom"] = *u.restored_from;
  if (!u.callbacks.socket.empty() || !u.callbacks.hooks.empty() || !u.callbacks.extra.empty()) {
    json cb = json::object();
    if (!u.callbacks.socket.empty()) cb["socket"] = u.callbacks.socket;
    if (!u.callbacks.hooks.empty()) cb["hooks"] = u.callbacks.hooks;
    put_extra(cb, u.callbacks.extra);
    j["callbacks"] = cb;
  }
  if (u.network) {
    json net = {{"address", u.network->address}, {"parent", u.network->parent}};
    if (!u.network->gateway.empty()) net["gateway"] = u.network->gateway;
    net["mac"] = u.network->mac;
    put_extra(net, u.network->extra);
    j["network"] = net;
  }
  if (!u.share.empty()) j["share"] = u.share;
  if (!u.node_addresses.empty()) j["nodeAddresses"] = u.node_addresses;
  if (u.adopted) j["adopted"] = {{"spec", u.adopted->spec}, {"at", u.adopted->at}};
  if (u.processes) j["processes"] = *u.processes;
  if (u.threads) j["threads"] = *u.threads;
  put_extra(j, u.extra);
  return j;
}

// "network": the address must be one gcp can give the unit again on restart.
Network network_from_json(const json& obj, const std::string& where, const std::string& source) {
  Fields f(obj, where, source);
  Network n;
  n.address = f.required<std::string>("address");
  if (!netns::parse_cidr(n.address)) {
    f.fail(f.name("address"),
           "is '" + printable(n.address, 60) + "', expected an IPv4 address with a prefix length ('10.77.0.101/24')");
  }
  n.parent = f.required<std::string>("parent");
  if (!netns::valid_device(n.parent))
    f.fail(f.name("parent"), "is '" + printable(n.parent, 60) + "', expected a network device name");
  n.gateway = f.optional<std::string>("gateway", "");
  if (!n.gateway.empty() && !netns::valid_ipv4(n.gateway)) {
    f.fail(f.name("gateway"), "is '" + printable(n.gateway, 60) + "', expected an IPv4 address");
  }
  n.mac = f.optional<std::string>("mac", "");
  if (n.mac.empty()) n.mac = netns::mac_of(n.address);
  if (!netns::valid_mac(n.mac))
    f.fail(f.name("mac"), "is '" + printable(n.mac, 60) + "', expected a MAC address ('02:67:0a:4d:00:65')");
  n.extra = f.extra();
  return n;
}

Unit unit_from_json(const json& obj, const std::string& where, const std::string& source) {
  Fields f(obj, where, source);
  Unit u;
  u.name = f.required<std::string>("name");
  valid_name(f, "unit", u.name, "name");
  u.node = f.required<std::string>("node");
  u.grouping = f.optional<std::string>("grouping", "pidns");
  valid_grouping(f, u.grouping);
  u.cgroup = f.required<std::string>("cgroup");
  // gcp/<job>/<unit>, each part a valid name: a manifest never moves a unit elsewhere.
  bool cgroup_ok = u.cgroup.rfind("gcp/", 0) == 0;
  size_t parts = 0;
  for (const auto& part : std::filesystem::path(u.cgroup).relative_path()) {
    ++parts;
    if (parts == 1) continue;
    try {
      check_name("cgroup", part.string());
    } catch (const Error&) {
      cgroup_ok = false;
    }
  }
  if (!cgroup_ok || parts != 3)
    f.fail(f.name("cgroup"), "is '" + printable(u.cgroup, 100) + "', expected 'gcp/<job>/<unit>'");
  u.translib = f.optional<std::string>("translib", "criu");
  valid_name(f, "translib", u.translib, "translib");  // a file name, never a path that gcp would load
  u.command = f.optional<std::vector<std::string>>("command", {});
  u.output = f.optional<std::string>("output", "");
  auto state = f.optional<std::string>("state", "running");
  if (state == "running")
    u.state = UnitState::kRunning;
  else if (state == "stopped")
    u.state = UnitState::kStopped;
  else if (state == "exited")
    u.state = UnitState::kExited;
  else if (state == "frozen")
    u.state = UnitState::kFrozen;
  else
    f.fail(f.name("state"), "is '" + printable(state, 60) + "', expected 'running', 'stopped' or 'exited'");
  u.pid = f.maybe<pid_t>("pid");
  u.restored_from = f.maybe<uint64_t>("restoredFrom");
  json cb_obj = f.object("callbacks");
  Fields cb(cb_obj, where + ".callbacks", source);
  u.callbacks.socket = cb.optional<std::string>("socket", "");
  u.callbacks.hooks = cb.optional<std::string>("hooks", "");
  for (const auto* path : {&u.callbacks.socket, &u.callbacks.hooks}) {
    if (!path->empty() && (*path)[0] != '/') {
      cb.fail(cb.name(path == &u.callbacks.socket ? "socket" : "hooks"), "must be an absolute path");
    }
  }
  if (u.callbacks.socket.size() >= 108) cb.fail(cb.name("socket"), "is longer than 107 bytes (sun_path)");
  u.callbacks.extra = cb.extra();
  json net = f.object("network");
  if (obj.contains("network") && !obj["network"].is_null())
    u.network = network_from_json(net, f.name("network"), source);
  u.share = f.optional<std::vector<std::string>>("share", {});
  for (const auto& ns : u.share) {
    if (std::find(std::begin(kShareable), std::end(kShareable), ns) == std::end(kShareable)) {
      f.fail(f.name("share"), "holds '" + printable(ns, 60) + "', not one of ipc, uts, net");
    }
  }
  if (u.network && std::find(u.share.begin(), u.share.end(), "net") != u.share.end()) {
    f.fail(f.name("share"), "holds 'net', but the unit has a network of its own");
  }
  u.node_addresses = f.optional<std::vector<std::string>>("nodeAddresses", {});
  json adopted = f.object("adopted");
  if (!adopted.empty()) {
    Fields a(adopted, f.name("adopted"), source);
    u.adopted = Unit::Adopted{a.required<std::string>("spec"), a.optional<std::string>("at", "")};
  }
  u.processes = f.maybe<uint64_t>("processes");
  u.threads = f.maybe<uint64_t>("threads");
  u.extra = f.extra();
  return u;
}

json image_to_json(const ImageFile& i) {
  json j;
  j["path"] = i.path;
  j["size"] = i.size;
  j["chunkSize"] = i.chunk_size;
  j["chunkCount"] = i.chunk_count();
  put_extra(j, i.extra);
  return j;
}

}  // namespace

bool plain_absolute_path(std::string_view path) {
  if (path.size() < 2 || path.size() > 4096 || path[0] != '/' || path.back() == '/') return false;
  if (path.find('\0') != std::string_view::npos) return false;
  size_t start = 1;
  while (start <= path.size()) {
    size_t end = path.find('/', start);
    if (end == std::string_view::npos) end = path.size();
    std::string_view part = path.substr(start, end - start);
    if (part.empty() || part == "." || part == "..") return false;
    start = end + 1;
  }
  return true;
}

namespace {

json written_file_to_json(const WrittenFile& w) {
  json j = {{"path", w.path}, {"size", w.size},     {"mtimeNs", w.mtime_ns},    {"uid", w.uid},
            {"mode", w.mode}, {"append", w.append}, {"writeOnly", w.write_only}};
  if (!w.sha256.empty()) j["sha256"] = w.sha256;
  if (!w.kept.empty()) j["kept"] = w.kept;
  return j;
}

// The paths are what a restart acts on (it may truncate or create the file): only plain
// absolute ones, and a kept copy only inside the unit's image directory.
WrittenFile written_file_from_json(const json& obj, const std::string& where, const std::string& source) {
  Fields f(obj, where, source);
  WrittenFile w;
  w.path = f.required<std::string>("path");
  if (!plain_absolute_path(w.path)) {
    f.fail(f.name("path"), "must be an absolute path without '.', '..' or empty parts, of at most 4096 bytes");
  }
  w.size = f.required<uint64_t>("size");
  w.mtime_ns = f.required<int64_t>("mtimeNs");
  w.uid = f.required<uid_t>("uid");
  w.mode = f.optional<uint32_t>("mode", 0644);
  if (w.mode > 0777) f.fail(f.name("mode"), "must be permission bits (0 to 0777)");
  w.append = f.optional<bool>("append", false);
  w.write_only = f.optional<bool>("writeOnly", false);
  w.sha256 = f.optional<std::string>("sha256", "");
  if (!w.sha256.empty() &&
      (w.sha256.size() != 64 || w.sha256.find_first_not_of("0123456789abcdef") != std::string::npos)) {
    f.fail(f.name("sha256"), "is not a SHA-256 digest in lowercase hex");
  }
  w.kept = f.optional<std::string>("kept", "");
  if (!w.kept.empty() && (w.kept.rfind("gcp-files/", 0) != 0 || !plain_absolute_path("/" + w.kept))) {
    f.fail(f.name("kept"), "must be a plain path below gcp-files/ in the unit's images");
  }
  if (!w.kept.empty() && w.sha256.empty()) f.fail(f.name("kept"), "needs sha256 (the copy is checked against it)");
  return w;
}

ImageFile image_from_json(const json& obj, const std::string& where, const std::string& source) {
  Fields f(obj, where, source);
  ImageFile i;
  i.path = f.required<std::string>("path");
  bool escapes = i.path.empty() || i.path[0] == '/';
  for (const auto& part : std::filesystem::path(i.path)) escapes = escapes || part == "..";
  if (escapes) f.fail(f.name("path"), "must be a relative path inside the image directory");
  i.size = f.required<uint64_t>("size");
  if (i.size > kMaxImageBytes)
    f.fail(f.name("size"), "is larger than 1 PiB (" + std::to_string(kMaxImageBytes) + " bytes)");
  i.chunk_size = f.required<uint32_t>("chunkSize");
  if (i.chunk_size == 0 || i.chunk_size > kMaxChunkSize) {
    f.fail(f.name("chunkSize"), "must be 1 to " + std::to_string(kMaxChunkSize) + " bytes");
  }
  uint64_t expected = i.chunk_count();
  if (f.required<uint64_t>("chunkCount") != expected) {
    f.fail(f.name("chunkCount"), "is not " + std::to_string(expected) + ", what size and chunkSize need");
  }
  auto hex = f.optional<std::string>("chunks", "");
  if (!hex.empty() && hex.size() != expected * 2 * ImageFile::kDigestBytes) {
    f.fail(f.name("chunks"), "has " + std::to_string(hex.size()) + " hex digits, size and chunkSize need " +
                                 std::to_string(expected) + " hashes of 64");
  }
  auto nibble = [](char c) { return c <= '9' ? c - '0' : c - 'a' + 10; };
  if (auto bad = hex.find_first_not_of("0123456789abcdef"); bad != std::string::npos) {
    f.fail(f.name("chunks"), "is not SHA-256 digests in lowercase hex (hash " +
                                 std::to_string(bad / (2 * ImageFile::kDigestBytes)) + ")");
  }
  i.digests.resize(hex.size() / 2);
  for (size_t b = 0; b < i.digests.size(); ++b) {
    i.digests[b] = static_cast<char>(nibble(hex[2 * b]) << 4 | nibble(hex[2 * b + 1]));
  }
  i.extra = f.extra();
  return i;
}

// A non-negative integer: unsigned as parsed, signed when built in C++ from an int.
bool is_count(const json& value) {
  return value.is_number_unsigned() || (value.is_number_integer() && value.get<int64_t>() >= 0);
}

// "bytes" of a checkpoint or unit: counts only (tools add them up and print them).
json counts(Fields& f, const std::string& key) {
  json obj = f.object(key);
  for (auto it = obj.begin(); it != obj.end(); ++it) {
    if (!is_count(*it)) f.fail(f.name(key) + "." + it.key(), "must be a non-negative integer");
  }
  return obj;
}

// "timings": milliseconds, as numbers or, per callback event, an object of numbers.
json milliseconds(Fields& f, const std::string& key) {
  json obj = f.object(key);
  for (auto it = obj.begin(); it != obj.end(); ++it) {
    bool ok = it->is_number() ||
              (it->is_object() && std::all_of(it->begin(), it->end(), [](const json& v) { return v.is_number(); }));
    if (!ok) f.fail(f.name(key) + "." + it.key(), "must be a number of milliseconds");
  }
  return obj;
}

}  // namespace

void check_name(const std::string& what, const std::string& name) {
  auto bad = [&](const std::string& why) {
    throw Error(Exit::kUsage, what + " name '" + printable(name) + "' " + why,
                "use 1 to 64 letters, digits, '.', '_' or '-', not starting with '.' or '-'");
  };
  if (name.empty()) bad("is empty");
  if (name.size() > 64) bad("is longer than 64 characters");
  if (name[0] == '.' || name[0] == '-') bad("starts with '" + name.substr(0, 1) + "'");
  for (char c : name) {
    bool ok =
        (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
    if (!ok) bad("contains '" + printable(std::string_view(&c, 1)) + "'");
  }
}

const char* name(Mode mode) { return mode == Mode::kUncoordinated ? "uncoordinated" : "coordinated"; }

const char* name(UnitState state) {
  switch (state) {
    case UnitState::kRunning:
      return "running";
    case UnitState::kFrozen:
      return "frozen";
    case UnitState::kStopped:
      return "stopped";
    case UnitState::kExited:
      return "exited";
  }
  return "running";
}

Launcher launcher_from_json(const json& doc, const std::string& where) {
  if (doc.is_string()) return launcher_from_json(json{{"kind", doc}}, where);
  if (!doc.is_object()) throw Error(Exit::kUsage, where + ": a launcher is an object {\"kind\": ...}");
  Launcher l;
  if (!doc.contains("kind") || !doc["kind"].is_string()) {
    throw Error(Exit::kUsage, where + ".kind: missing or not a string", "use \"local\", \"ssh\" or \"srun\"");
  }
  l.kind = doc["kind"].get<std::string>();
  if (l.kind != "local" && l.kind != "ssh" && l.kind != "srun") {
    throw Error(Exit::kUsage, where + ".kind: unknown launcher '" + printable(l.kind) + "'",
                "use \"local\", \"ssh\" or \"srun\"");
  }
  if (doc.contains("command")) {
    const auto& c = doc["command"];
    if (!c.is_array() || c.empty() || !std::all_of(c.begin(), c.end(), [](const json& w) { return w.is_string(); })) {
      throw Error(Exit::kUsage, where + ".command: not a list of words",
                  "e.g. [\"ssh\", \"-o\", \"BatchMode=yes\", \"{node}\"]");
    }
    l.command = c.get<std::vector<std::string>>();
  }
  if (doc.contains("slurmJob")) {
    const auto& j = doc["slurmJob"];
    if (j.is_number_integer() && j.get<long long>() > 0)
      l.slurm_job = std::to_string(j.get<long long>());
    else if (j.is_string())
      l.slurm_job = j.get<std::string>();
    else
      throw Error(Exit::kUsage, where + ".slurmJob: not a job id");
  }
  return l;
}

json to_json(const Launcher& l) {
  json j = {{"kind", l.kind}};
  if (!l.command.empty()) j["command"] = l.command;
  if (!l.slurm_job.empty()) j["slurmJob"] = l.slurm_job;
  return j;
}

Unit* Job::find_unit(const std::string& unit) {
  for (auto& u : units) {
    if (u.name == unit) return &u;
  }
  return nullptr;
}

const Unit* Job::find_unit(const std::string& unit) const { return const_cast<Job*>(this)->find_unit(unit); }

const CheckpointUnit* Checkpoint::find_unit(const std::string& unit) const {
  for (const auto& u : units) {
    if (u.name == unit) return &u;
  }
  return nullptr;
}

std::string Checkpoint::name() const { return "checkpoint " + std::to_string(seq) + " of job '" + job + "'"; }

json to_json(const Job& job) {
  json j;
  j["apiVersion"] = kApiVersion;
  j["kind"] = "Job";
  j["name"] = job.name;
  j["owner"] = json{{"uid", job.owner}};
  j["created"] = job.created;
  // Policy fields this gcp does not know stay as they were.
  json policy = json::object();
  if (job.keep) policy["keep"] = *job.keep;
  if (job.callback_timeout_ms) policy["callbackTimeoutMs"] = *job.callback_timeout_ms;
  if (job.mode != Mode::kCoordinated) policy["mode"] = name(job.mode);
  if (job.checkpoint_policy) policy["checkpoint"] = to_json(*job.checkpoint_policy);
  if (job.extra.contains("policy") && job.extra["policy"].is_object()) {
    for (const auto& [key, value] : job.extra["policy"].items()) {
      if (!policy.contains(key)) policy[key] = value;
    }
  }
  if (!policy.empty()) j["policy"] = policy;
  j["units"] = json::array();
  for (const auto& u : job.units) j["units"].push_back(unit_to_json(u));
  if (job.launcher) j["launcher"] = to_json(*job.launcher);
  if (!job.history.empty()) j["history"] = history_to_json(job.history);
  put_extra(j, job.extra);
  return j;
}

Job job_from_json(const json& doc, const std::string& source) {
  check_header(doc, "Job", source);
  Fields f(doc, "", source);
  f.required<std::string>("apiVersion");
  f.required<std::string>("kind");
  Job job;
  job.name = f.required<std::string>("name");
  valid_name(f, "job", job.name, "name");
  json owner_obj = f.object("owner");
  Fields owner(owner_obj, "owner", source);
  job.owner = owner.optional<uid_t>("uid", 0);
  job.created = f.optional<std::string>("created", "");
  json policy_obj = f.object("policy");
  Fields policy(policy_obj, "policy", source);
  job.keep = policy.maybe<uint64_t>("keep");
  if (job.keep && *job.keep == 0) policy.fail("policy.keep", "must be at least 1");
  job.callback_timeout_ms = policy.maybe<uint64_t>("callbackTimeoutMs");
  if (job.callback_timeout_ms && *job.callback_timeout_ms == 0) {
    policy.fail("policy.callbackTimeoutMs", "must be at least 1");
  }
  job.mode = mode_from(policy, "mode");
  if (policy_obj.contains("checkpoint") && !policy_obj["checkpoint"].is_null()) {
    policy.consume("checkpoint");
    job.checkpoint_policy = policy_from(policy_obj["checkpoint"], "policy.checkpoint", source);
  }
  json unknown_policy = policy.extra();
  if (doc.contains("launcher") && !doc["launcher"].is_null()) {
    f.consume("launcher");
    job.launcher = launcher_from_json(doc["launcher"], "reading manifest '" + source + "': launcher");
  }
  const json& units = f.array("units", true);
  for (size_t i = 0; i < units.size(); ++i) {
    job.units.push_back(unit_from_json(units[i], indexed("units", i), source));
    for (size_t k = 0; k < i; ++k) {
      if (job.units[k].name == job.units[i].name) {
        f.fail(indexed("units", i) + ".name", "repeats unit '" + job.units[i].name + "'");
      }
    }
  }
  json history_obj = f.object("history");
  job.history = history_from(history_obj, source);
  job.extra = f.extra();
  if (!unknown_policy.empty()) job.extra["policy"] = unknown_policy;
  return job;
}

namespace {

// A unit's "target": names and paths a restart uses to look at this node, so each
// is checked for what it must be.
Target target_from(Fields& unit, const std::string& where, const std::string& source) {
  json obj = unit.object("target");
  Fields f(obj, where + ".target", source);
  Target t;
  t.kernel = f.optional<std::string>("kernel", "");
  t.check_images = f.optional<std::vector<std::string>>("checkImages", {});
  for (const auto& image : t.check_images) {
    if (image.empty() || image.size() > 255 || image.find('/') != std::string::npos || image == "." || image == "..") {
      f.fail(f.name("checkImages"),
             "holds '" + printable(image, 100) + "', expected the file name of one of the unit's images");
    }
  }
  t.addresses = f.optional<std::vector<std::string>>("addresses", {});
  for (const auto& a : t.addresses) {
    if (!netns::valid_ipv4(a))
      f.fail(f.name("addresses"), "holds '" + printable(a, 60) + "', expected an IPv4 address");
  }
  t.mounts = f.optional<std::vector<std::string>>("mounts", {});
  for (const auto& m : t.mounts) {
    if (m.empty() || m[0] != '/' || m.size() > 4096 || m.find('\0') != std::string::npos) {
      f.fail(f.name("mounts"), "holds '" + printable(m, 100) + "', expected an absolute path");
    }
  }
  return t;
}

}  // namespace

json to_json(const Checkpoint& c, bool chunk_lists) {
  json j;
  j["apiVersion"] = kApiVersion;
  j["kind"] = "Checkpoint";
  j["job"] = c.job;
  j["seq"] = c.seq;
  j["created"] = c.created;
  j["mode"] = name(c.mode);
  j["kernel"] = c.kernel;
  j["timings"] = c.timings;
  j["bytes"] = c.bytes;
  if (!c.chunk_list.empty()) j["chunkList"] = c.chunk_list;
  j["units"] = json::array();
  for (const auto& u : c.units) {
    json ju;
    ju["name"] = u.name;
    ju["node"] = u.node;
    ju["grouping"] = u.grouping;
    ju["translib"] = json{{"name", u.translib}, {"version", u.translib_version}};
    ju["checkpointer"] = json{{"name", u.checkpointer}, {"version", u.checkpointer_version}};
    if (!u.options.empty()) ju["checkpointerOptions"] = u.options;
    if (!u.tcp_connections.empty()) ju["tcpConnections"] = u.tcp_connections;
    ju["timings"] = u.timings;
    if (!u.callbacks.empty()) ju["callbacks"] = u.callbacks;
    ju["bytes"] = u.bytes;
    ju["stats"] = u.stats;
    ju["images"] = json::array();
    for (const auto& i : u.images) {
      json ji = image_to_json(i);
      if (chunk_lists && !i.digests.empty()) {
        std::string hex;
        hex.reserve(2 * i.digests.size());
        for (size_t c = 0; c < i.chunk_count(); ++c) hex += i.digest_hex(c);
        ji["chunks"] = std::move(hex);
      }
      ju["images"].push_back(std::move(ji));
    }
    if (!u.job_ties.empty()) ju["jobTies"] = u.job_ties;
    if (u.zstd_level) ju["zstdLevel"] = *u.zstd_level;
    for (const auto& w : u.written_files) ju["writtenFiles"].push_back(written_file_to_json(w));
    if (u.target) {
      ju["target"] = {{"kernel", u.target->kernel},
                      {"checkImages", u.target->check_images},
                      {"addresses", u.target->addresses},
                      {"mounts", u.target->mounts}};
    }
    put_extra(ju, u.extra);
    j["units"].push_back(ju);
  }
  if (!c.kernels.empty()) j["kernels"] = c.kernels;
  if (c.partial) j["partial"] = true;
  put_extra(j, c.extra);
  return j;
}

Checkpoint checkpoint_from_json(const json& doc, const std::string& source) {
  check_header(doc, "Checkpoint", source);
  Fields f(doc, "", source);
  f.required<std::string>("apiVersion");
  f.required<std::string>("kind");
  Checkpoint c;
  c.job = f.required<std::string>("job");
  valid_name(f, "job", c.job, "job");
  c.seq = f.required<uint64_t>("seq");
  c.created = f.optional<std::string>("created", "");
  c.mode = mode_from(f, "mode");
  c.partial = f.optional<bool>("partial", false);
  c.kernel = f.optional<std::string>("kernel", "");
  c.kernels = f.optional<std::map<std::string, std::string>>("kernels", {});
  c.timings = milliseconds(f, "timings");
  c.bytes = counts(f, "bytes");
  c.chunk_list = f.object("chunkList");
  if (!c.chunk_list.empty()) {
    Fields cl(c.chunk_list, "chunkList", source);
    if (cl.required<std::string>("path") != "chunks.bin") cl.fail("chunkList.path", "must be 'chunks.bin'");
    cl.required<uint64_t>("count");
    cl.required<std::string>("sha256");
  }
  const json& units = f.array("units", true);
  if (units.empty()) f.fail("units", "is empty");
  for (size_t i = 0; i < units.size(); ++i) {
    std::string where = indexed("units", i);
    Fields fu(units[i], where, source);
    CheckpointUnit u;
    u.name = fu.required<std::string>("name");
    valid_name(fu, "unit", u.name, "name");
    u.node = fu.optional<std::string>("node", "");
    u.grouping = fu.optional<std::string>("grouping", "pidns");
    valid_grouping(fu, u.grouping);
    json tl_obj = fu.object("translib");
    Fields tl(tl_obj, where + ".translib", source);
    u.translib = tl.required<std::string>("name");
    valid_name(tl, "translib", u.translib, "name");
    u.translib_version = tl.optional<std::string>("version", "");
    json cp_obj = fu.object("checkpointer");
    Fields cp(cp_obj, where + ".checkpointer", source);
    u.checkpointer = cp.optional<std::string>("name", "");
    u.checkpointer_version = cp.optional<std::string>("version", "");
    for (const auto& o : fu.array("checkpointerOptions", false)) {
      // The translib's own words, which it gets back verbatim at the restart and checks
      // there: only it knows which of its checkpointer's options are safe to run as root
      // (gcp-translib(7)). Here: words, not whatever bytes.
      const std::string* text = o.is_string() ? o.get_ptr<const std::string*>() : nullptr;
      bool word = text && !text->empty() && text->size() <= 128 &&
                  std::all_of(text->begin(), text->end(), [](unsigned char c) { return c > 0x20 && c < 0x7f; });
      if (!word) {
        fu.fail(fu.name("checkpointerOptions"),
                "holds " + o.dump() + ", expected the checkpointer's options as printable words of 1-128 bytes");
      }
      u.options.push_back(o.get<std::string>());
    }
    const json& connections = fu.array("tcpConnections", false);
    for (size_t k = 0; k < connections.size(); ++k) {
      u.tcp_connections.push_back(tcp_connection(connections[k], where + "." + indexed("tcpConnections", k), source));
    }
    u.timings = milliseconds(fu, "timings");
    u.callbacks = fu.optional<std::string>("callbacks", "");
    u.bytes = counts(fu, "bytes");
    u.stats = fu.object("stats");
    u.job_ties = fu.optional<std::vector<std::string>>("jobTies", {});
    u.zstd_level = fu.maybe<int>("zstdLevel");
    if (units[i].contains("target") && !units[i]["target"].is_null()) u.target = target_from(fu, where, source);
    const json& images = fu.array("images", true);
    for (size_t k = 0; k < images.size(); ++k) {
      u.images.push_back(image_from_json(images[k], where + "." + indexed("images", k), source));
    }
    const json& written = fu.array("writtenFiles", false);
    std::set<std::string> written_paths;
    for (size_t k = 0; k < written.size(); ++k) {
      std::string at = where + "." + indexed("writtenFiles", k);
      u.written_files.push_back(written_file_from_json(written[k], at, source));
      if (!written_paths.insert(u.written_files.back().path).second) {
        fu.fail(at + ".path", "repeats '" + printable(u.written_files.back().path) + "'");
      }
    }
    u.extra = fu.extra();
    c.units.push_back(std::move(u));
  }
  // Each image has at most 2^50 chunks; many of them must not wrap the chunk list's count.
  uint64_t chunks = 0;
  for (const auto& u : c.units) {
    for (const auto& image : u.images) {
      chunks += image.chunk_count();
      if (chunks > kMaxImageBytes) f.fail("units", "list more than 2^50 chunks in all");
    }
  }
  c.extra = f.extra();
  return c;
}

namespace {

// Nesting and member counts, checked before nlohmann builds anything: its parser does
// not recurse, but copying, comparing and destroying a document do (a job.json of 100k
// brackets overflowed the stack of every tool that listed the store). Returns what is
// wrong, or "".
std::string check_shape(std::string_view text) {
  struct Level {
    bool object;
    size_t members;
  };
  std::vector<Level> open;
  bool in_string = false, escaped = false;
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (in_string) {
      if (escaped)
        escaped = false;
      else if (c == '\\')
        escaped = true;
      else if (c == '"')
        in_string = false;
      continue;
    }
    if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (open.size() == kMaxDepth) {
        return "it nests deeper than " + std::to_string(kMaxDepth) + " levels (at byte " + std::to_string(i) + ")";
      }
      open.push_back({c == '{', 1});
    } else if (c == ']' || c == '}') {
      if (!open.empty()) open.pop_back();
    } else if (c == ',' && !open.empty() && open.back().object && ++open.back().members > kMaxMembers) {
      return "an object has more than " + std::to_string(kMaxMembers) + " members (at byte " + std::to_string(i) + ")";
    }
  }
  return "";
}

std::optional<json> parse_bounded(std::string_view text, std::string& why) {
  why = check_shape(text);
  if (!why.empty()) return std::nullopt;
  try {
    return json::parse(text.begin(), text.end());
  } catch (const json::exception& e) {
    // parse_error, and out_of_range for a number such as 1e999
    std::string what = e.what();
    auto pos = what.find("] ");
    why = printable(pos == std::string::npos ? what : what.substr(pos + 2), 300);
    return std::nullopt;
  }
}

}  // namespace

json parse(std::string_view text, const std::string& source) {
  std::string why;
  auto doc = parse_bounded(text, why);
  if (!doc) {
    throw Error(Exit::kUsage, "reading manifest '" + printable(source) + "': not valid JSON (" + why + ")",
                "check the file; gcp manifests are JSON documents (gcp-manifest(5))");
  }
  return std::move(*doc);
}

std::optional<json> try_parse(std::string_view text, std::string* why) {
  std::string problem;
  auto doc = parse_bounded(text, problem);
  if (why) *why = problem;
  return doc;
}

std::string dump(const json& doc, int indent) { return doc.dump(indent, ' ', false, json::error_handler_t::replace); }

uint64_t count_or(const json& obj, const char* key, uint64_t fallback) {
  if (!obj.is_object()) return fallback;
  auto it = obj.find(key);
  return it != obj.end() && is_count(*it) ? it->get<uint64_t>() : fallback;
}

double number_or(const json& obj, const char* key, double fallback) {
  if (!obj.is_object()) return fallback;
  auto it = obj.find(key);
  return it != obj.end() && it->is_number() ? it->get<double>() : fallback;
}

std::string rfc3339(double epoch_s) {
  auto ms_total = static_cast<long long>(std::llround(epoch_s * 1000.0));
  time_t secs = static_cast<time_t>(ms_total / 1000);
  long long ms = ms_total % 1000;
  if (ms < 0) {
    ms += 1000;
    --secs;
  }
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[40];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  char out[48];
  std::snprintf(out, sizeof out, "%s.%03dZ", buf, static_cast<int>(ms));
  return out;
}

std::optional<double> parse_rfc3339(const std::string& text) {
  int y, mo, d, h, mi;
  double sec;
  int used = 0;
  if (text.size() < 20 || text.size() > 40) return std::nullopt;
  if (std::sscanf(text.c_str(), "%4d-%2d-%2dT%2d:%2d:%lf%n", &y, &mo, &d, &h, &mi, &sec, &used) != 6) {
    return std::nullopt;
  }
  if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || !(sec >= 0 && sec < 61)) return std::nullopt;
  std::string zone = text.substr(static_cast<size_t>(used));
  double offset = 0;
  if (zone == "Z" || zone == "z") {
    offset = 0;
  } else if (zone.size() == 6 && (zone[0] == '+' || zone[0] == '-') && zone[3] == ':' &&
             std::isdigit(static_cast<unsigned char>(zone[1])) && std::isdigit(static_cast<unsigned char>(zone[2])) &&
             std::isdigit(static_cast<unsigned char>(zone[4])) && std::isdigit(static_cast<unsigned char>(zone[5]))) {
    offset = (std::stoi(zone.substr(1, 2)) * 60 + std::stoi(zone.substr(4, 2))) * 60.0 * (zone[0] == '-' ? -1 : 1);
  } else {
    return std::nullopt;
  }
  std::tm tm{};
  tm.tm_year = y - 1900;
  tm.tm_mon = mo - 1;
  tm.tm_mday = d;
  tm.tm_hour = h;
  tm.tm_min = mi;
  tm.tm_sec = 0;
  return static_cast<double>(timegm(&tm)) + sec - offset;
}

std::string now_rfc3339() {
  auto now = std::chrono::system_clock::now();
  auto secs = std::chrono::system_clock::to_time_t(now);
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()) % 1000;
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[40];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  char out[48];
  std::snprintf(out, sizeof out, "%s.%03dZ", buf, static_cast<int>(ms.count()));
  return out;
}

std::string ImageFile::digest_hex(size_t i, size_t digits) const {
  static const char* hex = "0123456789abcdef";
  std::string out;
  for (unsigned char c : digest(i)) {
    out += hex[c >> 4];
    out += hex[c & 15];
  }
  return out.substr(0, digits);
}

}  // namespace gcp::manifest
