// SPDX-License-Identifier: MIT
#include "gcp/slurm.h"

#include <doctest/doctest.h>

#include <cstdlib>
#include <ctime>
#include <string>

namespace slurm = gcp::slurm;

TEST_CASE("slurm::parse_time reads squeue's local times and nothing else") {
  // A time as local time: compare with mktime's own reading of the same fields.
  std::tm tm{};
  tm.tm_year = 2026 - 1900;
  tm.tm_mon = 11;
  tm.tm_mday = 7;
  tm.tm_hour = 18;
  tm.tm_min = 30;
  tm.tm_isdst = -1;
  auto t = slurm::parse_time("2026-12-07T18:30:00");
  REQUIRE(t);
  CHECK(*t == static_cast<double>(std::mktime(&tm)));
  for (const char* bad : {"N/A", "Unknown", "", "2026-12-07", "2026-13-07T18:30:00", "2026-12-07T24:00:00",
                          "2026-12-07T18:30:00x", "1969-12-31T23:59:59", "INVALID", "2026-12-07T18:30"}) {
    CAPTURE(bad);
    CHECK_FALSE(slurm::parse_time(bad));
  }
}

TEST_CASE("slurm::end_time says why it has none") {
  std::string why;
  CHECK_FALSE(slurm::end_time("42; rm -rf /", &why));
  CHECK(why.find("not a Slurm job id") != std::string::npos);
  const char* path = std::getenv("PATH");
  std::string saved = path ? path : "";
  ::setenv("PATH", "/nonexistent", 1);
  CHECK_FALSE(slurm::end_time("42", &why));
  ::setenv("PATH", saved.c_str(), 1);
  CHECK(why == "no squeue in PATH");
}

TEST_CASE("slurm::field takes a whole field of scontrol's one-line output") {
  const std::string line =
      "PartitionName=low AllowGroups=ALL DefaultTime=NONE GraceTime=60 MaxGraceTime=5 Nodes=n[1-2] PreemptMode=REQUEUE";
  CHECK(slurm::field(line, "GraceTime") == std::optional<std::string>("60"));
  CHECK(slurm::field(line, "PartitionName") == std::optional<std::string>("low"));
  CHECK(slurm::field(line, "PreemptMode") == std::optional<std::string>("REQUEUE"));
  CHECK(slurm::field("JobId=3 JobState=RUNNING\n", "JobState") == std::optional<std::string>("RUNNING"));
  // Not the tail of another field's name, not a value that looks like a field.
  CHECK(slurm::field("MaxGraceTime=5", "GraceTime") == std::nullopt);
  CHECK(slurm::field("Comment=GraceTime=9", "GraceTime") == std::nullopt);
  CHECK(slurm::field("", "GraceTime") == std::nullopt);
  CHECK(slurm::field("GraceTime=", "GraceTime") == std::optional<std::string>(""));
}

TEST_CASE("slurm::grace_time and requeue refuse names that are not a partition or a job id") {
  std::string why;
  CHECK_FALSE(slurm::grace_time("low -o", &why));
  CHECK(why.find("not a partition name") != std::string::npos);
  CHECK_FALSE(slurm::grace_time("", &why));
  CHECK_THROWS_WITH(slurm::requeue("12; rm -rf /"), doctest::Contains("is not a Slurm job id"));
  CHECK_THROWS_WITH(slurm::requeue(""), doctest::Contains("is not a Slurm job id"));
}
