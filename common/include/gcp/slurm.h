// SPDX-License-Identifier: MIT
#pragma once

// What gcp asks of Slurm about the allocation it runs in.

#include <optional>
#include <string>

namespace gcp::slurm {

/// A time as squeue prints it (%e, %S: "2026-12-07T18:30:00", local time) in seconds
/// since the epoch; nullopt for "N/A", "Unknown" or anything else.
std::optional<double> parse_time(const std::string& text);

/// When Slurm job `job_id` ends at the latest (its time limit), asked of squeue; nullopt
/// when the job has no limit, or squeue is missing, fails or does not answer within 10 s
/// (`why` then says which).
std::optional<double> end_time(const std::string& job_id, std::string* why = nullptr);

}  // namespace gcp::slurm
