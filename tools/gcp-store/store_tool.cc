// SPDX-License-Identifier: MIT
#include "store_tool.h"

#include "gcp/caller.h"
#include "gcp/cgroup.h"
#include "gcp/error.h"
#include "gcp/fs.h"
#include "gcp/jobs.h"
#include "gcp/main.h"
#include "gcp/policy.h"
#include "gcp/store.h"
#include "gcp/unit.h"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>

namespace gcp::store_tool {
namespace {

using manifest::json;

std::string human_bytes(uint64_t n) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(n);
  int u = 0;
  while (v >= 1024 && u < 4) {
    v /= 1024;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, u == 0 ? "%.0f %s" : "%.1f %s", v, units[u]);
  return buf;
}

// a/b rounded to hundredths; null when b is 0 (nothing new: no ratio to speak of).
json ratio(uint64_t a, uint64_t b) { return b ? json(std::round(100.0 * a / b) / 100) : json(); }

std::string ratio_text(const json& r) {
  if (r.is_null()) return "-";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2fx", r.get<double>());
  return buf;
}

bool as_table(const Options& opt) { return opt.human || ::isatty(STDOUT_FILENO) == 1; }

uint64_t bytes_of(const json& bytes, const char* key) { return manifest::count_or(bytes, key); }

json checkpoint_row(const manifest::Checkpoint& cp) {
  uint64_t raw = bytes_of(cp.bytes, "raw"), fresh = bytes_of(cp.bytes, "new"), stored = bytes_of(cp.bytes, "stored");
  return {{"seq", cp.seq},
          {"created", cp.created},
          {"mode", manifest::name(cp.mode)},
          {"units", cp.units.size()},
          {"bytes", cp.bytes},
          {"dedupRatio", ratio(raw, fresh)},
          {"compressionRatio", ratio(fresh, stored)},
          {"downtimeMs", manifest::number_or(cp.timings, "downtimeMs")},
          {"storeMs", manifest::number_or(cp.timings, "storeMs")}};
}

// The jobs the caller may see: all for root, their own for a user.
std::vector<std::string> visible_jobs(store::Store& store) {
  std::vector<std::string> out;
  for (const auto& name : store.jobs()) {
    try {
      jobs::load(store, name);
      out.push_back(name);
    } catch (const Error& e) {
      // A job whose owner cannot be read is root's to see, not a user's.
      if (e.code() != Exit::kNotPermitted && !caller::for_user()) spdlog::warn("{}", e.what());
    }
  }
  return out;
}

}  // namespace

void ls(const Options& opt) {
  auto store = store::open(opt.store);
  json out = json::array();
  std::vector<std::vector<std::string>> rows;
  if (opt.job.empty()) {
    rows.push_back({"JOB", "OWNER", "UNITS", "CHECKPOINTS", "LATEST", "RAW", "STORED (ALL)"});
    for (const auto& name : visible_jobs(*store)) {
      auto job = jobs::load(*store, name);
      auto seqs = store->checkpoints(name);
      uint64_t stored = 0, raw = 0;
      // A damaged manifest is warned about and counted as nothing: it hides no other.
      for (auto seq : seqs) {
        auto cp = jobs::readable_metadata(*store, name, seq);
        if (!cp) continue;
        stored += bytes_of(cp->bytes, "stored");
        if (seq == seqs.back()) raw = bytes_of(cp->bytes, "raw");
      }
      out.push_back({{"job", name},
                     {"owner", job.owner},
                     {"units", job.units.size()},
                     {"checkpoints", seqs.size()},
                     {"latest", seqs.empty() ? json() : json(seqs.back())},
                     {"latestRaw", raw},
                     {"stored", stored}});
      rows.push_back({name, std::to_string(job.owner), std::to_string(job.units.size()), std::to_string(seqs.size()),
                      seqs.empty() ? "-" : std::to_string(seqs.back()), human_bytes(raw), human_bytes(stored)});
    }
  } else {
    jobs::load(*store, opt.job);
    rows.push_back({"SEQ", "CREATED", "RAW", "NEW", "STORED", "DEDUP", "COMPRESSION", "DOWNTIME", "STORE"});
    for (auto seq : store->checkpoints(opt.job)) {
      auto cp = jobs::readable_metadata(*store, opt.job, seq);
      if (!cp) {
        rows.push_back({std::to_string(seq), "(damaged)", "-", "-", "-", "-", "-", "-", "-"});
        out.push_back({{"seq", seq}, {"error", "its manifest cannot be read"}});
        continue;
      }
      auto row = checkpoint_row(*cp);
      const auto& b = row["bytes"];
      char down[32], st[32];
      std::snprintf(down, sizeof down, "%.0f ms", row["downtimeMs"].get<double>());
      std::snprintf(st, sizeof st, "%.0f ms", row["storeMs"].get<double>());
      rows.push_back({std::to_string(seq), row["created"].get<std::string>(), human_bytes(bytes_of(b, "raw")),
                      human_bytes(bytes_of(b, "new")), human_bytes(bytes_of(b, "stored")),
                      ratio_text(row["dedupRatio"]), ratio_text(row["compressionRatio"]), down, st});
      out.push_back(std::move(row));
    }
  }
  if (as_table(opt))
    print_table(rows);
  else
    print_json(gcp::manifest::dump(out));
}

void show(const Options& opt) {
  auto store = store::open(opt.store);
  jobs::load(*store, opt.job);
  auto seqs = store->checkpoints(opt.job);
  if (!opt.seq && seqs.empty()) {
    throw Error(Exit::kUsage, "job '" + opt.job + "' has no committed checkpoint");
  }
  uint64_t seq = opt.seq.value_or(seqs.empty() ? 0 : seqs.back());
  auto cp = opt.chunks ? store->load_checkpoint(opt.job, seq) : store->load_checkpoint_metadata(opt.job, seq);
  print_json(gcp::manifest::dump(manifest::to_json(cp, opt.chunks)));
}

void verify(const Options& opt) {
  auto store = store::open(opt.store);
  if (opt.seq && opt.job.empty()) {
    throw Error(Exit::kUsage, "verify --seq needs a job", "run 'gcp-store verify JOB --seq N'");
  }
  std::vector<std::pair<std::string, uint64_t>> todo;
  std::vector<std::string> names = opt.job.empty() ? visible_jobs(*store) : std::vector<std::string>{opt.job};
  for (const auto& name : names) {
    jobs::load(*store, name);
    if (opt.seq) {
      todo.emplace_back(name, *opt.seq);
      continue;
    }
    for (auto seq : store->checkpoints(name)) todo.emplace_back(name, seq);
  }
  json checked = json::array();
  size_t bad = 0;
  std::string first_problem;
  std::vector<std::vector<std::string>> rows{{"JOB", "SEQ", "CHUNKS", "BYTES", "RESULT"}};
  for (const auto& [name, seq] : todo) {
    json entry = {{"job", name}, {"seq", seq}};
    try {
      auto report = store->verify(store->load_checkpoint(name, seq));
      entry["chunks"] = report.chunks;
      entry["bytes"] = report.bytes;
      entry["ok"] = report.problems.empty();
      entry["problems"] = report.problems;
      if (!report.problems.empty() && first_problem.empty()) {
        first_problem = "checkpoint " + std::to_string(seq) + " of job '" + name + "': " + report.problems.front();
      }
      rows.push_back({name, std::to_string(seq), std::to_string(report.chunks), human_bytes(report.bytes),
                      report.problems.empty() ? "ok" : report.problems.front()});
    } catch (const Error& e) {
      // A manifest that cannot be read is a bad checkpoint too.
      entry["ok"] = false;
      entry["problems"] = json::array({e.what()});
      if (first_problem.empty()) first_problem = e.what();
      rows.push_back({name, std::to_string(seq), "-", "-", e.what()});
    }
    if (!entry["ok"].get<bool>()) ++bad;
    checked.push_back(std::move(entry));
  }
  if (as_table(opt))
    print_table(rows);
  else
    print_json(gcp::manifest::dump(json{{"ok", bad == 0}, {"checkpoints", checked}}));
  if (bad) {
    // One line: the first problem; every problem is in the report on stdout.
    throw Error(Exit::kFailed,
                bad == 1 ? first_problem
                         : std::to_string(bad) + " of " + std::to_string(todo.size()) +
                               " checkpoints do not verify; the first: " + first_problem,
                "restart an earlier one with 'gcp-restart JOB --seq N' or '--fallback'; "
                "remove a bad one with 'gcp-store rm JOB --seq N'");
  }
}

void gc(const Options& opt) {
  caller::refuse_for_user("gcp-store gc", "gc is root's maintenance of the whole store (from cron, say)");
  if (::geteuid() != 0) {
    throw Error(Exit::kNotPermitted, "gc of a store works on every owner's chunks: it needs root");
  }
  auto store = store::open(opt.store);
  auto report = store->gc(std::chrono::seconds(opt.wait_s));
  json out = {{"stagingRemoved", report.staging_removed}, {"packsRemoved", report.packs_removed},
              {"packsRepacked", report.packs_repacked},   {"chunksRemoved", report.chunks_removed},
              {"bytesFreed", report.bytes_freed},         {"busyOwners", report.busy_owners}};
  if (as_table(opt)) {
    std::printf("removed %llu abandoned staging dir(s), %llu pack(s), rewrote %llu pack(s): %s freed\n",
                static_cast<unsigned long long>(report.staging_removed),
                static_cast<unsigned long long>(report.packs_removed),
                static_cast<unsigned long long>(report.packs_repacked), human_bytes(report.bytes_freed).c_str());
  } else {
    print_json(gcp::manifest::dump(out));
  }
  if (!report.busy_owners.empty()) {
    std::string owners;
    for (auto o : report.busy_owners) owners += (owners.empty() ? "" : ", ") + std::to_string(o);
    throw Error(Exit::kBusy,
                "gc skipped the chunks of uid " + owners + ": a checkpoint or restart kept using them for " +
                    std::to_string(opt.wait_s) + " s",
                "run gc again later");
  }
}

void rm(const Options& opt) {
  auto store = store::open(opt.store);
  auto job = jobs::load(*store, opt.job);
  auto held = store->try_lock_job(opt.job);
  if (!held) {
    throw Error(Exit::kBusy, "job '" + opt.job + "' is busy: a checkpoint or restart holds its lock",
                "retry when it has finished");
  }
  if (opt.seq) {
    store->remove_checkpoint(opt.job, *opt.seq);
    store->append_event(opt.job, {{"event", "checkpoint-removed"}, {"seq", *opt.seq}});
    spdlog::info("removed checkpoint {} of job '{}'; 'gcp-store gc' frees its chunks", *opt.seq, opt.job);
    print_json(gcp::manifest::dump(json{{"job", opt.job}, {"removed", json::array({*opt.seq})}}));
    return;
  }
  auto cgroups = cgroup::system_cgroups();
  for (const auto& u : job.units) {
    auto state = unit::live_state(*cgroups, u);
    if (state == manifest::UnitState::kRunning || state == manifest::UnitState::kFrozen) {
      throw Error(Exit::kFailed,
                  "job '" + opt.job + "' still runs (unit '" + u.name + "' is " + manifest::name(state) + ")",
                  "stop it first with 'gcp-isolate kill " + opt.job + "'");
    }
  }
  auto seqs = store->checkpoints(opt.job);
  store->remove_job(opt.job);  // the lock goes with the directory
  spdlog::info("removed job '{}' and its {} checkpoint(s); 'gcp-store gc' frees their chunks", opt.job, seqs.size());
  print_json(gcp::manifest::dump(json{{"job", opt.job}, {"removed", seqs}}));
}

void du(const Options& opt) {
  auto store = store::open(opt.store);
  auto usage = store->usage();
  if (caller::uid() != 0) {
    json mine = json::array();
    for (const auto& o : usage) {
      if (o["uid"] == caller::uid()) mine.push_back(o);
    }
    usage = mine;
  }
  if (!as_table(opt)) {
    print_json(gcp::manifest::dump(usage));
    return;
  }
  std::vector<std::vector<std::string>> rows{
      {"UID", "JOBS", "CHECKPOINTS", "REFERENCED", "UNIQUE", "ON DISK", "DEDUP", "COMPRESSION"}};
  for (const auto& o : usage) {
    rows.push_back(
        {std::to_string(o["uid"].get<uid_t>()), std::to_string(o["jobs"].get<size_t>()),
         std::to_string(o["checkpoints"].get<uint64_t>()), human_bytes(o["bytes"]["referenced"].get<uint64_t>()),
         human_bytes(o["bytes"]["unique"].get<uint64_t>()), human_bytes(o["bytes"]["stored"].get<uint64_t>()),
         ratio_text(o["dedupRatio"]), ratio_text(o["compressionRatio"])});
  }
  print_table(rows);
}

}  // namespace gcp::store_tool

namespace gcp::store_tool {

void policy(const Options& opt) {
  auto store = store::open(opt.store);
  manifest::Job job = jobs::load(*store, opt.job);
  const double now = policy::now();
  if (!opt.set_policy.empty()) {
    auto lock = jobs::lock_job(*store, opt.job);
    job = jobs::load(*store, opt.job);
    job.checkpoint_policy =
        policy::parse_spec(opt.set_policy, job.checkpoint_policy.value_or(manifest::CheckpointPolicy{}), now);
    store->save_job(job);
    spdlog::info("job '{}': policy set to {}", opt.job, manifest::to_json(*job.checkpoint_policy).dump());
  }
  auto decision = policy::decide(job, policy::site(), now);
  json out = policy::to_json(decision, job);
  if (opt.plot == "-") {
    std::fputs(policy::svg(job, decision, now).c_str(), stdout);
    return;
  }
  if (!opt.plot.empty()) {
    // Root writes no file a user names: '--plot -' gives the user the SVG on stdout.
    caller::refuse_for_user("--plot FILE", "use '--plot -' and redirect stdout");
    fs::write_file_atomic(opt.plot, policy::svg(job, decision, now));
    spdlog::info("job '{}': plot written to '{}'", opt.job, opt.plot);
  }
  if (!as_table(opt)) {
    print_json(out.dump(2));
    return;
  }
  auto text = [](const json& v) {
    return v.is_string() ? v.get<std::string>() : v.is_null() ? std::string("-") : v.dump();
  };
  std::vector<std::vector<std::string>> rows = {{"", ""}};
  rows.push_back({"policy", decision.kind + " (" + decision.kind_from + ")"});
  rows.push_back({"cost", policy::human(decision.cost_s) + ": " + decision.cost_from});
  rows.push_back({"MTBF", policy::human(decision.mtbf.mtbf_s) + ": " + decision.mtbf_from});
  rows.push_back({"interval", policy::human(decision.interval_s)});
  rows.push_back({"last", text(out["last"])});
  rows.push_back({"next due", decision.due_s ? decision.why : text(out["nextDue"]) + " (" + decision.why + ")"});
  rows.push_back({"strategy", decision.strategy + ": " + decision.strategy_why});
  for (const auto& n : decision.notes) rows.push_back({"note", n});
  for (const auto& s : job.history.stops) {
    rows.push_back({s.failure ? "failure" : "planned stop", s.at + " " + s.cause +
                                                                (s.detail.empty() ? "" : " (" + s.detail + ")") +
                                                                (s.failure ? ": counted" : ": not counted")});
  }
  if (!job.history.given_up.empty()) rows.push_back({"given up", job.history.given_up});
  rows.erase(rows.begin());
  print_table(rows);
}

}  // namespace gcp::store_tool
