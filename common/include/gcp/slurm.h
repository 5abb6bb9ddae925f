// SPDX-License-Identifier: MIT
#pragma once

// What gcp asks of Slurm about the allocation it runs in.

#include <optional>
#include <string>

namespace gcp::slurm {

/// True for a Slurm job id as SLURM_JOB_ID holds it (digits, an array's "_").
bool valid_job_id(const std::string& job_id);

/// A time as squeue prints it (%e, %S: "2026-12-07T18:30:00", local time) in seconds
/// since the epoch; nullopt for "N/A", "Unknown" or anything else.
std::optional<double> parse_time(const std::string& text);

/// When Slurm job `job_id` ends at the latest (its time limit), asked of squeue; nullopt
/// when the job has no limit (`why` then empty), or squeue is missing, fails or does not
/// answer within 10 s (`why` then says which).
std::optional<double> end_time(const std::string& job_id, std::string* why = nullptr);

/// A field of `scontrol show ... -o` output ("GraceTime=60" gives "60"); nullopt when absent.
std::optional<std::string> field(const std::string& line, const std::string& name);

/// The preemption grace time of `partition` in seconds (0: none), asked of scontrol;
/// nullopt when scontrol is missing, fails or does not answer within 10 s (`why` says).
std::optional<double> grace_time(const std::string& partition, std::string* why = nullptr);

/// Requeues Slurm job `job_id` (scontrol requeue): Slurm ends the running batch script
/// and starts it again later, with SLURM_RESTART_COUNT one higher. Throws Error(kFailed)
/// with scontrol's words when it refuses (a job submitted with --no-requeue, say).
void requeue(const std::string& job_id);

}  // namespace gcp::slurm
