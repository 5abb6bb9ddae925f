// SPDX-License-Identifier: MIT
#include "gcp/slurm.h"

#include "gcp/error.h"
#include "gcp/process.h"

#include <chrono>
#include <cstdio>
#include <ctime>
#include <vector>

namespace gcp::slurm {

bool valid_job_id(const std::string& job_id) {
  return !job_id.empty() && job_id.size() < 32 && job_id.find_first_not_of("0123456789_") == std::string::npos;
}

namespace {

process::Result scontrol(std::vector<std::string> args) {
  process::Spec spec;
  spec.argv = {"scontrol"};
  spec.argv.insert(spec.argv.end(), args.begin(), args.end());
  spec.timeout = std::chrono::seconds(10);
  return process::run(spec);
}

}  // namespace

std::optional<double> parse_time(const std::string& text) {
  std::tm tm{};
  char rest = 0;
  if (std::sscanf(text.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d%c", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour,
                  &tm.tm_min, &tm.tm_sec, &rest) != 6) {
    return std::nullopt;
  }
  if (tm.tm_year < 1970 || tm.tm_mon < 1 || tm.tm_mon > 12 || tm.tm_mday < 1 || tm.tm_mday > 31 || tm.tm_hour > 23 ||
      tm.tm_min > 59 || tm.tm_sec > 60) {
    return std::nullopt;
  }
  tm.tm_year -= 1900;
  tm.tm_mon -= 1;
  tm.tm_isdst = -1;  // local time, with or without summer time as it was then
  std::time_t t = std::mktime(&tm);
  if (t == static_cast<std::time_t>(-1)) return std::nullopt;
  return static_cast<double>(t);
}

std::optional<double> end_time(const std::string& job_id, std::string* why) {
  auto say = [&](const std::string& text) {
    if (why) *why = text;
    return std::nullopt;
  };
  if (!valid_job_id(job_id)) return say("'" + printable(job_id, 40) + "' is not a Slurm job id");
  if (!process::find_in_path("squeue")) return say("no squeue in PATH");
  process::Spec spec;
  spec.argv = {"squeue", "--noheader", "--jobs=" + job_id, "--format=%e"};
  spec.timeout = std::chrono::seconds(10);
  auto r = process::run(spec);
  if (!r.ok()) return say("squeue --jobs=" + job_id + ": " + r.describe());
  std::string line = r.out.substr(0, r.out.find('\n'));
  if (line == "NONE" || line == "UNLIMITED") return say("");  // no time limit
  auto end = parse_time(line);
  if (!end) return say("Slurm job " + job_id + " has no end time ('" + line.substr(0, 40) + "')");
  return end;
}

std::optional<std::string> field(const std::string& line, const std::string& name) {
  const std::string key = name + "=";
  for (size_t pos = 0; (pos = line.find(key, pos)) != std::string::npos; pos += key.size()) {
    if (pos != 0 && line[pos - 1] != ' ') continue;
    size_t start = pos + key.size();
    size_t end = line.find_first_of(" \n", start);
    return line.substr(start, end == std::string::npos ? std::string::npos : end - start);
  }
  return std::nullopt;
}

std::optional<double> grace_time(const std::string& partition, std::string* why) {
  auto say = [&](const std::string& text) {
    if (why) *why = text;
    return std::nullopt;
  };
  if (partition.empty() || partition.size() > 64 || partition.find_first_of(" =\n\t") != std::string::npos)
    return say("'" + printable(partition, 64) + "' is not a partition name");
  if (!process::find_in_path("scontrol")) return say("no scontrol in PATH");
  auto r = scontrol({"show", "partition", partition, "-o"});
  if (!r.ok()) return say("scontrol show partition " + partition + ": " + r.describe());
  auto grace = field(r.out, "GraceTime");
  if (!grace || grace->empty() || grace->size() > 9 || grace->find_first_not_of("0123456789") != std::string::npos)
    return say("partition " + partition + " shows no GraceTime in seconds");
  return std::stod(*grace);
}

void requeue(const std::string& job_id) {
  if (!valid_job_id(job_id)) throw Error(Exit::kUsage, "'" + printable(job_id, 40) + "' is not a Slurm job id");
  if (!process::find_in_path("scontrol")) {
    throw Error(Exit::kFailed, "requeueing Slurm job " + job_id + ": no scontrol in PATH", "install slurm-client");
  }
  auto r = scontrol({"requeue", job_id});
  if (!r.ok()) {
    std::string said = r.err.substr(0, r.err.find('\n'));
    throw Error(Exit::kFailed, "scontrol requeue " + job_id + " failed (" + r.describe() + "): " + printable(said, 200),
                "submit the job with --requeue (or JobRequeue=1 in slurm.conf) so that Slurm may start it again");
  }
}

}  // namespace gcp::slurm
