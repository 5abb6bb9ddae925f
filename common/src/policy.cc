// SPDX-License-Identifier: MIT
#include "gcp/policy.h"

#include "gcp/error.h"
#include "gcp/launcher.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <set>

namespace gcp::policy {
namespace {

std::optional<double> time_of(const std::string& text) {
  if (text.empty()) return std::nullopt;
  return manifest::parse_rfc3339(text);
}

template <typename T>
void trim(std::vector<T>& list) {
  if (list.size() > manifest::History::kKeep) list.erase(list.begin(), list.end() - manifest::History::kKeep);
}

double number(const json& obj, const char* key, double fallback, double low, double high, const std::string& where) {
  if (!obj.contains(key)) return fallback;
  const auto& v = obj[key];
  if (!v.is_number() || !std::isfinite(v.get<double>()) || v.get<double>() < low || v.get<double>() > high) {
    throw Error(
        Exit::kUsage,
        where + "." + key + ": must be a number from " + fmt::format("{:g}", low) + " to " + fmt::format("{:g}", high),
        "see gcp-policy(7), SITE SETTINGS");
  }
  return v.get<double>();
}

// Text from a manifest, which anyone who could write the store may have chosen, as
// SVG text.
std::string xml(const std::string& text) {
  std::string out;
  for (char c : text.substr(0, 200)) {
    switch (c) {
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '&':
        out += "&amp;";
        break;
      case '"':
        out += "&quot;";
        break;
      default:
        out += static_cast<unsigned char>(c) < 0x20 ? ' ' : c;
    }
  }
  return out;
}

}  // namespace

double young(double cost_s, double mtbf_s) { return std::sqrt(2 * cost_s * mtbf_s); }

double daly(double cost_s, double mtbf_s) {
  if (cost_s >= 2 * mtbf_s) return mtbf_s;
  double r = cost_s / (2 * mtbf_s);
  return std::sqrt(2 * cost_s * mtbf_s) * (1 + std::sqrt(r) / 3 + r / 9) - cost_s;
}

Site site() { return site_from_json(launcher::config(), launcher::config_path()); }

double cost_of(const manifest::Checkpoint& cp) {
  double ms = cp.timings.value("downtimeMs", 0.0) + cp.timings.value("preCheckpointMs", 0.0) +
              cp.timings.value("postCheckpointMs", 0.0);
  return ms / 1000.0;
}

Site site_from_json(const json& config, const std::string& source) {
  Site site;
  if (!config.is_object() || !config.contains("policy")) return site;
  const json& p = config["policy"];
  const std::string where = source + ": policy";
  if (!p.is_object()) throw Error(Exit::kUsage, where + ": not an object", "see gcp-policy(7), SITE SETTINGS");
  if (p.contains("kind")) {
    if (!p["kind"].is_string()) throw Error(Exit::kUsage, where + ".kind: not a string");
    site.kind = p["kind"].get<std::string>();
    if (site.kind != "young" && site.kind != "daly" && site.kind != "adaptive") {
      throw Error(Exit::kUsage, where + ".kind: '" + site.kind + "' is no default policy",
                  "use \"young\", \"daly\" or \"adaptive\" (a fixed interval is a job's choice)");
    }
  }
  const double year = 366.0 * 86400;
  site.mtbf_prior_s = number(p, "mtbfS", site.mtbf_prior_s, 1, 100 * year, where);
  site.prior_weight = number(p, "priorWeight", site.prior_weight, 0, 1000, where);
  site.first_s = number(p, "firstS", site.first_s, 1, year, where);
  site.min_interval_s = number(p, "minIntervalS", site.min_interval_s, 1, year, where);
  site.max_interval_s = number(p, "maxIntervalS", site.max_interval_s, site.min_interval_s, year, where);
  site.cost_alpha = number(p, "costAlpha", site.cost_alpha, 0.01, 1, where);
  site.max_restarts =
      static_cast<uint64_t>(number(p, "maxRestarts", static_cast<double>(site.max_restarts), 0, 1000, where));
  site.grace_s = number(p, "graceS", site.grace_s, 0, year, where);
  site.backoff_s = number(p, "backoffS", site.backoff_s, 0, year, where);
  if (p.contains("spares")) {
    const auto& s = p["spares"];
    if (!s.is_array()) throw Error(Exit::kUsage, where + ".spares: not a list of node names");
    for (const auto& n : s) {
      if (!n.is_string() || n.get<std::string>().empty())
        throw Error(Exit::kUsage, where + ".spares: not a list of node names");
      site.spares.push_back(n.get<std::string>());
    }
  }
  return site;
}

double prior_weight(double weight, uint64_t failures) {
  double k = 1.0 + static_cast<double>(failures);
  return weight / (k * k);
}

double exposure(const manifest::History& h, double now) {
  double e = h.exposure_s;
  if (auto since = time_of(h.running_since)) e += std::max(0.0, now - *since);  // a clock gone back adds nothing
  return e;
}

Mtbf estimate_mtbf(const manifest::History& h, const Site& site, double now) {
  Mtbf m;
  m.exposure_s = exposure(h, now);
  m.failures = h.failures;
  m.prior_weight = prior_weight(site.prior_weight, h.failures);
  double weight = m.prior_weight + static_cast<double>(h.failures);
  if (weight <= 0) {
    // No prior and no failure: nothing says the job fails; the longest interval rules.
    m.mtbf_s = std::max(m.exposure_s, site.mtbf_prior_s);
    return m;
  }
  m.mtbf_s = (m.exposure_s + m.prior_weight * site.mtbf_prior_s) / weight;
  // A failure at once after a start leaves no exposure: a second is the least.
  m.mtbf_s = std::max(m.mtbf_s, 1.0);
  return m;
}

Decision decide(const manifest::Job& job, const Site& site, double now) {
  Decision d;
  manifest::CheckpointPolicy p;
  p.kind = site.kind;
  d.kind_from = "site";
  if (job.checkpoint_policy) {
    p = *job.checkpoint_policy;
    d.kind_from = "job";
  }
  d.kind = p.kind;
  const auto& h = job.history;
  const bool given_ok = p.kind == "young" || p.kind == "daly";

  d.mtbf = estimate_mtbf(h, site, now);
  if (given_ok && p.mtbf_s) {
    d.mtbf.mtbf_s = *p.mtbf_s;
    d.mtbf_from = "given (policy mtbf)";
  } else if (h.failures == 0) {
    d.mtbf_from = fmt::format("site prior of {} (no failure seen in {} of running)", human(site.mtbf_prior_s),
                              human(d.mtbf.exposure_s));
  } else {
    d.mtbf_from = fmt::format("{} failure(s) in {} of running, and the site prior of {} weighing {:.2g} failure(s)",
                              h.failures, human(d.mtbf.exposure_s), human(site.mtbf_prior_s), d.mtbf.prior_weight);
  }
  bool measured = false;
  if (given_ok && p.cost_s) {
    d.cost_s = *p.cost_s;
    d.cost_from = "given (policy cost)";
    measured = true;
  } else if (h.cost_s) {
    d.cost_s = *h.cost_s;
    d.cost_from =
        fmt::format("measured: moving average over {} checkpoint(s) of downtime and callbacks", h.checkpoints);
    measured = true;
  } else {
    d.cost_from = "none measured yet";
  }

  if (p.kind == "fixed") {
    d.interval_s = p.interval_s.value_or(site.first_s);
  } else if (!measured) {
    d.interval_s = site.first_s;
    d.notes.push_back(
        fmt::format("no checkpoint cost measured yet: the first checkpoint comes {} after the start, "
                    "to measure it",
                    human(site.first_s)));
  } else {
    double raw = p.kind == "young" ? young(d.cost_s, d.mtbf.mtbf_s) : daly(d.cost_s, d.mtbf.mtbf_s);
    d.interval_s = std::clamp(raw, site.min_interval_s, site.max_interval_s);
    if (d.interval_s != raw) {
      d.notes.push_back(fmt::format(
          "{}'s interval {} clamped to the site's {} ({} to {})", p.kind == "young" ? "Young" : "Daly", human(raw),
          raw < d.interval_s ? "minimum" : "maximum", human(site.min_interval_s), human(site.max_interval_s)));
    }
  }

  // Strategy: a job on one node gains nothing from rounds of its own per node.
  std::set<std::string> nodes;
  for (const auto& u : job.units) nodes.insert(u.node);
  if (job.mode == manifest::Mode::kUncoordinated) {
    d.strategy = "uncoordinated";
    d.strategy_why = "the job's policy.mode says so (each node checkpoints its own units)";
  } else if (nodes.size() <= 1) {
    d.strategy_why = "all units run on one node: one round freezes them together at no extra cost";
  } else if (p.kind == "adaptive" && h.job_ties && *h.job_ties == 0) {
    d.strategy = "uncoordinated";
    d.strategy_why =
        "no unit has a tie to another unit (gcp-deps at the last checkpoint): each node's units can be "
        "checkpointed on their own, and no node waits for the slowest (applied once policy.mode is "
        "uncoordinated: 'gcp-isolate run --uncoordinated', and --if-due on every node)";
  } else if (h.job_ties) {
    d.strategy_why = fmt::format(
        "{} tie(s) between units (gcp-deps at the last checkpoint): only a coordinated round "
        "keeps them consistent",
        *h.job_ties);
  } else {
    d.strategy_why = "the ties between its units are not known yet (they are, after its first checkpoint)";
  }

  const bool running = std::any_of(job.units.begin(), job.units.end(),
                                   [](const manifest::Unit& u) { return u.state == manifest::UnitState::kRunning; });
  std::optional<double> last;
  if (!h.recent.empty()) last = time_of(h.recent.back().at);
  if (auto since = time_of(h.running_since)) last = last ? std::max(*last, *since) : *since;
  if (!last) last = time_of(job.created);
  d.last_s = last;
  if (!running) {
    d.why = "no unit of the job runs";
    return d;
  }
  double ref = last.value_or(now);
  if (ref > now + 60) {
    d.notes.push_back(
        fmt::format("the last checkpoint or start ({}) is {} in the future: the clock went back; "
                    "checkpointing now",
                    manifest::rfc3339(ref), human(ref - now)));
    ref = now - d.interval_s;
  }
  d.due_s = ref + d.interval_s;
  auto end = time_of(p.deadline);
  // A deadline taken from a Slurm allocation (gcp-isolate run in it) ends with it; a job
  // that runs on past it (requeued, restarted elsewhere) has no deadline from it.
  const auto from = p.extra.find("deadlineFrom");
  if (end && now >= *end && from != p.extra.end() && from->is_string() &&
      from->get<std::string>().rfind("slurm job ", 0) == 0) {
    d.notes.push_back(fmt::format("the deadline {} ({}'s time limit) has passed and the job runs on: ignored",
                                  p.deadline, from->get<std::string>()));
    end.reset();
  }
  if (end) {
    double margin = std::max(60.0, d.cost_s);
    double latest = *end - d.cost_s - margin;
    if (now >= *end) {
      d.due_s.reset();
      d.why = "past its deadline " + p.deadline;
      return d;
    }
    if (ref >= latest && !h.recent.empty()) {
      d.due_s.reset();
      d.why = "its last checkpoint before the deadline " + p.deadline + " is taken";
      return d;
    }
    if (*d.due_s > latest) {
      d.due_s = std::max(latest, ref);
      d.notes.push_back(
          fmt::format("moved before the deadline {}: the checkpoint ends {} before it", p.deadline, human(margin)));
    }
  }
  d.due = now >= *d.due_s;
  d.why = d.due ? fmt::format("due since {} (every {})", manifest::rfc3339(*d.due_s), human(d.interval_s))
                : fmt::format("next due {} (in {}, every {})", manifest::rfc3339(*d.due_s), human(*d.due_s - now),
                              human(d.interval_s));
  return d;
}

json to_json(const Decision& d, const manifest::Job& job) {
  json j;
  j["job"] = job.name;
  j["kind"] = d.kind;
  j["kindFrom"] = d.kind_from;
  j["costS"] = d.cost_s;
  j["costFrom"] = d.cost_from;
  j["mtbfS"] = d.mtbf.mtbf_s;
  j["mtbfFrom"] = d.mtbf_from;
  j["exposureS"] = d.mtbf.exposure_s;
  j["failures"] = d.mtbf.failures;
  j["intervalS"] = d.interval_s;
  j["last"] = d.last_s ? json(manifest::rfc3339(*d.last_s)) : json(nullptr);
  j["nextDue"] = d.due_s ? json(manifest::rfc3339(*d.due_s)) : json(nullptr);
  j["due"] = d.due;
  j["why"] = d.why;
  j["strategy"] = d.strategy;
  j["strategyWhy"] = d.strategy_why;
  j["notes"] = d.notes;
  json stops = json::array();
  for (const auto& s : job.history.stops) {
    stops.push_back({{"at", s.at},
                     {"cause", s.cause},
                     {"detail", s.detail},
                     {"counted", s.failure},
                     {"why", s.failure ? "a unit or node failed without a stop through gcp"
                                       : "a planned stop (" + s.cause + "): not a failure"}});
  }
  j["stops"] = stops;
  j["restarts"] = job.history.restarts;
  if (!job.history.backoff_until.empty()) j["backoffUntil"] = job.history.backoff_until;
  if (!job.history.given_up.empty()) j["givenUp"] = job.history.given_up;
  return j;
}

std::string svg(const manifest::Job& job, const Decision& d, double now) {
  const auto& h = job.history;
  double t0 = now, t1 = now, top = 0;
  for (const auto& c : h.recent) {
    if (auto t = time_of(c.at)) {
      t0 = std::min(t0, *t);
      t1 = std::max(t1, *t);
    }
    top = std::max(top, c.cost_s);
  }
  for (const auto& s : h.stops) {
    if (auto t = time_of(s.at)) t0 = std::min(t0, *t);
  }
  if (d.due_s) t1 = std::max(t1, *d.due_s);
  if (t1 - t0 < 1) t1 = t0 + 1;
  if (top <= 0) top = 1;
  const double w = 800, ht = 240, left = 60, right = 20, base = 200, up = 160;
  auto x = [&](double t) { return left + (t - t0) / (t1 - t0) * (w - left - right); };
  std::string out = fmt::format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{}\" font-family=\"sans-serif\" "
      "font-size=\"11\">\n"
      "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
      "<text x=\"{}\" y=\"16\">job {}: {} policy, interval {}, cost {}, MTBF {}</text>\n"
      "<line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"black\"/>\n"
      "<text x=\"4\" y=\"{}\">{}</text><text x=\"4\" y=\"{}\">cost</text>\n",
      w, ht, left, job.name, d.kind, human(d.interval_s), human(d.cost_s), human(d.mtbf.mtbf_s), left, base, w - right,
      base, base - up, human(top), base - up + 14);
  for (const auto& c : h.recent) {
    auto t = time_of(c.at);
    if (!t) continue;
    out += fmt::format(
        "<line x1=\"{:.1f}\" y1=\"{}\" x2=\"{:.1f}\" y2=\"{:.1f}\" stroke=\"steelblue\" stroke-width=\"3\">"
        "<title>checkpoint {} at {}: {}</title></line>\n",
        x(*t), base, x(*t), base - std::max(2.0, c.cost_s / top * up), c.seq, xml(c.at), human(c.cost_s));
  }
  for (const auto& s : h.stops) {
    auto t = time_of(s.at);
    if (!t) continue;
    out += fmt::format(
        "<line x1=\"{:.1f}\" y1=\"30\" x2=\"{:.1f}\" y2=\"{}\" stroke=\"{}\" stroke-width=\"2\">"
        "<title>{} at {}: {}</title></line>\n",
        x(*t), x(*t), base, s.failure ? "red" : "grey", s.failure ? "failure" : "planned stop", xml(s.at),
        xml(s.cause));
  }
  if (d.due_s) {
    out += fmt::format(
        "<line x1=\"{:.1f}\" y1=\"30\" x2=\"{:.1f}\" y2=\"{}\" stroke=\"green\" stroke-dasharray=\"4\">"
        "<title>next due {}</title></line>\n",
        x(*d.due_s), x(*d.due_s), base, manifest::rfc3339(*d.due_s));
  }
  out += fmt::format("<text x=\"{}\" y=\"{}\">{}</text><text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>\n", left,
                     base + 16, manifest::rfc3339(t0), w - right, base + 16, manifest::rfc3339(t1));
  out += fmt::format(
      "<text x=\"{}\" y=\"{}\">blue: checkpoints (height: cost)  red: failures  grey: planned stops  "
      "green: next due</text>\n</svg>\n",
      left, base + 34);
  return out;
}

std::optional<double> parse_duration(const std::string& text) {
  if (text.empty() || text.size() > 32) return std::nullopt;
  char* end = nullptr;
  double v = std::strtod(text.c_str(), &end);
  if (end == text.c_str() || !std::isfinite(v)) return std::nullopt;
  std::string unit(end);
  double scale = unit.empty() || unit == "s" ? 1 : unit == "m" ? 60 : unit == "h" ? 3600 : unit == "d" ? 86400 : 0;
  if (scale == 0) return std::nullopt;
  return v * scale;
}

std::string human(double s) {
  if (!std::isfinite(s)) return "never";
  if (s < 0) return "-" + human(-s);
  if (s < 120) return fmt::format("{:.3g} s", s);
  if (s < 7200) return fmt::format("{:.3g} min", s / 60);
  if (s < 2 * 86400) return fmt::format("{:.3g} h", s / 3600);
  return fmt::format("{:.3g} d", s / 86400);
}

manifest::CheckpointPolicy parse_spec(const std::string& spec, const manifest::CheckpointPolicy& base, double now) {
  auto bad = [&](const std::string& what) -> Error {
    return Error(Exit::kUsage, "policy '" + spec.substr(0, 200) + "': " + what,
                 "e.g. adaptive | fixed,interval=10m | daly,cost=30s,mtbf=6h | adaptive,deadline=+12h,spares=n2+n3 "
                 "(gcp-policy(7))");
  };
  manifest::json j = to_json(base);
  std::vector<std::string> parts;
  size_t start = 0;
  while (start <= spec.size()) {
    size_t comma = spec.find(',', start);
    parts.push_back(spec.substr(start, comma == std::string::npos ? std::string::npos : comma - start));
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  if (parts.empty() || parts[0].empty()) throw bad("no kind");
  if (parts[0].find('=') == std::string::npos) {
    j["kind"] = parts[0];
    parts.erase(parts.begin());
  }
  for (const auto& part : parts) {
    auto eq = part.find('=');
    if (eq == std::string::npos) throw bad("'" + part + "' is not key=value");
    std::string key = part.substr(0, eq), value = part.substr(eq + 1);
    auto duration = [&]() -> double {
      auto d = parse_duration(value);
      if (!d) throw bad(key + "='" + value + "' is not a duration such as 90s, 15m, 2h or 1d");
      if (*d <= 0) throw bad(key + "='" + value + "' must be positive");
      if (*d > 366.0 * 86400) throw bad(key + "='" + value + "' is over a year");
      return *d;
    };
    if (key == "interval")
      j["intervalS"] = duration();
    else if (key == "cost")
      j["costS"] = duration();
    else if (key == "mtbf")
      j["mtbfS"] = duration();
    else if (key == "deadline") {
      if (value.empty() || value == "none") {
        j.erase("deadline");
      } else if (value[0] == '+') {
        auto d = parse_duration(value.substr(1));
        if (!d || *d <= 0) throw bad("deadline='" + value + "' is not +DURATION such as +12h");
        j["deadline"] = manifest::rfc3339(now + *d);
      } else {
        if (!manifest::parse_rfc3339(value))
          throw bad("deadline='" + value + "' is not RFC 3339 (2026-12-08T06:00:00Z) or +12h");
        j["deadline"] = value;
      }
    } else if (key == "max-restarts") {
      char* end = nullptr;
      long n = std::strtol(value.c_str(), &end, 10);
      if (value.empty() || *end || n < 0 || n > 1000)
        throw bad("max-restarts='" + value + "' is not a number from 0 to 1000");
      j["maxRestarts"] = n;
    } else if (key == "spares") {
      json nodes = json::array();
      size_t s = 0;
      while (s <= value.size() && !value.empty()) {
        size_t plus = value.find('+', s);
        std::string node = value.substr(s, plus == std::string::npos ? std::string::npos : plus - s);
        if (node.empty()) throw bad("spares='" + value + "' has an empty node name");
        nodes.push_back(node);
        if (plus == std::string::npos) break;
        s = plus + 1;
      }
      j["spares"] = nodes;
    } else {
      throw bad("unknown key '" + key + "'");
    }
  }
  if (j.value("kind", "") != "fixed") {
    // An interval belongs to a fixed policy; cost and mtbf to young and daly.
    if (j.value("kind", "") == "adaptive") {
      j.erase("costS");
      j.erase("mtbfS");
    }
    j.erase("intervalS");
  }
  try {
    return manifest::checkpoint_policy_from_json(j, "policy '" + spec.substr(0, 200) + "'");
  } catch (const Error& e) {
    throw bad(e.what());
  }
}

void record_checkpoint(manifest::History& h, uint64_t seq, double cost_s, double now, const Site& site) {
  if (!std::isfinite(cost_s) || cost_s < 0) cost_s = 0;
  h.cost_s = h.cost_s ? site.cost_alpha * cost_s + (1 - site.cost_alpha) * *h.cost_s : cost_s;
  ++h.checkpoints;
  h.recent.push_back({seq, manifest::rfc3339(now), cost_s});
  trim(h.recent);
  // It ran long enough to be checkpointed: a failure now is no failure right after a restart.
  h.restarts = 0;
  h.backoff_until.clear();
  if (h.running_since.empty()) h.running_since = manifest::rfc3339(now);
}

void record_stop(manifest::History& h, const std::string& cause, const std::string& detail, bool failure, double now) {
  h.exposure_s = exposure(h, now);
  h.running_since.clear();
  if (failure) ++h.failures;
  h.stops.push_back({manifest::rfc3339(now), cause, detail, failure});
  trim(h.stops);
}

void record_running(manifest::History& h, double now) {
  if (h.running_since.empty()) h.running_since = manifest::rfc3339(now);
}

double now() {
  if (const char* fake = std::getenv("GCP_NOW"); fake && *fake) {
    if (auto t = manifest::parse_rfc3339(fake)) return *t;
  }
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

}  // namespace gcp::policy
