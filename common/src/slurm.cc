// SPDX-License-Identifier: MIT
#include "gcp/slurm.h"

#include "gcp/process.h"

#include <cstdio>
#include <ctime>

namespace gcp::slurm {

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
  if (job_id.empty() || job_id.find_first_not_of("0123456789_") != std::string::npos)
    return say("'" + job_id + "' is not a Slurm job id");
  if (!process::find_in_path("squeue")) return say("no squeue in PATH");
  process::Spec spec;
  spec.argv = {"squeue", "--noheader", "--jobs=" + job_id, "--format=%e"};
  spec.timeout = std::chrono::seconds(10);
  auto r = process::run(spec);
  if (!r.ok()) return say("squeue --jobs=" + job_id + ": " + r.describe());
  std::string line = r.out.substr(0, r.out.find('\n'));
  auto end = parse_time(line);
  if (!end) return say("Slurm job " + job_id + " has no end time ('" + line.substr(0, 40) + "')");
  return end;
}

}  // namespace gcp::slurm
