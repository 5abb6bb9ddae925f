// SPDX-License-Identifier: MIT
#pragma once

// When a job is checkpointed, and what its failures say (gcp-policy(7)): Young's and
// Daly's intervals, the checkpoint cost and MTBF a job's history gives, and the
// decision --if-due and --explain print. Pure functions of a Job manifest, the site's
// settings and the time, so that the simulator and the unit tests run them as they are.

#include "gcp/manifest.h"

#include <optional>
#include <string>
#include <vector>

namespace gcp::policy {

using manifest::json;

/// Young's interval: sqrt(2 δ M), seconds.
double young(double cost_s, double mtbf_s);
/// Daly's higher-order interval: sqrt(2δM)·[1 + ⅓·sqrt(δ/2M) + ⅑·(δ/2M)] − δ for
/// δ < 2M, else M; seconds.
double daly(double cost_s, double mtbf_s);

/// The site's policy settings: the "policy" object of /etc/gcp/gcp.json (gcp-policy(7)).
struct Site {
  std::string kind = "adaptive";    ///< for jobs without a policy of their own
  double mtbf_prior_s = 86400;      ///< the MTBF assumed before a job has failed: mtbfS
  double prior_weight = 1;          ///< how many failures the prior counts as: priorWeight
  double first_s = 60;              ///< the first checkpoint of a job after it started: firstS
  double min_interval_s = 30;       ///< no interval is shorter: minIntervalS
  double max_interval_s = 86400;    ///< nor longer: maxIntervalS
  double cost_alpha = 0.3;          ///< weight of the newest cost in its moving average: costAlpha
  uint64_t max_restarts = 3;        ///< automatic restarts without a checkpoint in between: maxRestarts
  double grace_s = 120;             ///< a node unreachable this long has failed: graceS
  double backoff_s = 60;            ///< the wait after a restart that failed, doubled each time: backoffS
  std::vector<std::string> spares;  ///< nodes a unit may restart on when its node is gone
};

/// The site's settings from the site configuration (launcher::config()).
Site site();

/// Reads the site's settings from a configuration document (its "policy" object);
/// throws Error(kUsage) naming `source` and the field when one is wrong.
Site site_from_json(const json& config, const std::string& source);

/// The MTBF estimate from a history: (exposure + w·prior) / (failures + w), where the
/// prior's weight w = priorWeight / (1 + failures)² fades as the job's own failures
/// come in. Planned stops are not failures and their downtime is no exposure.
struct Mtbf {
  double mtbf_s = 0;
  double exposure_s = 0;    ///< seconds the job ran
  uint64_t failures = 0;    ///< failures counted
  double prior_weight = 0;  ///< what the site's prior still counted for
};
Mtbf estimate_mtbf(const manifest::History& history, const Site& site, double now);

/// The weight of the site's prior after `failures` failures.
double prior_weight(double weight, uint64_t failures);

/// Seconds the job ran until `now`: the recorded exposure plus the current run.
double exposure(const manifest::History& history, double now);

/// What the policy decided for a job at a time.
struct Decision {
  std::string kind;              ///< the policy kind in force
  std::string kind_from;         ///< "job" or "site"
  double cost_s = 0;             ///< δ used
  std::string cost_from;         ///< "measured (moving average of N)", "given", "none yet"
  Mtbf mtbf;                     ///< M used, and from what
  std::string mtbf_from;         ///< "estimated", "given", "site prior"
  double interval_s = 0;         ///< the interval between checkpoints
  std::optional<double> last_s;  ///< when the job was last checkpointed (or started)
  std::optional<double> due_s;   ///< when the next checkpoint is due; nullopt: never (not running, past its deadline)
  bool due = false;              ///< due at `now`
  std::string why;               ///< one line: why due or not, and since when
  std::string strategy = "coordinated";  ///< "coordinated" or "uncoordinated"
  std::string strategy_why;
  std::vector<std::string> notes;  ///< clamps, clock jumps, back-off
};

/// Decides at `now` (seconds since the epoch) for `job`.
Decision decide(const manifest::Job& job, const Site& site, double now);

/// The decision as JSON (what gcp-store policy prints).
json to_json(const Decision& decision, const manifest::Job& job);

/// An SVG of the job's history over time: each checkpoint as a tick whose height is
/// its cost, each failure as a red line, each planned stop as a grey one, the next due
/// time dashed.
std::string svg(const manifest::Job& job, const Decision& decision, double now);

/// Parses a policy spec of the command line: KIND[,key=value...] with keys interval,
/// cost, mtbf (durations: 90, 90s, 15m, 2h, 1d), deadline (RFC 3339, or +DURATION from
/// now), max-restarts, spares (nodes joined by '+'). Starts from `base` (keys not given
/// keep its values). Throws Error(kUsage) naming the key.
manifest::CheckpointPolicy parse_spec(const std::string& spec, const manifest::CheckpointPolicy& base, double now);

/// Parses a duration ("90", "90s", "15m", "2h", "1d") into seconds; nullopt when wrong.
std::optional<double> parse_duration(const std::string& text);

/// "1h 5m", "42 s", "3.2 d": a duration for people.
std::string human(double seconds);

/// What a committed checkpoint cost the job, in seconds: its downtime (freeze to thaw)
/// plus the time its applications spent in pre- and post-checkpoint callbacks.
double cost_of(const manifest::Checkpoint& checkpoint);

/// Records a committed checkpoint and what it cost the job (seconds): the moving
/// average, the counters, and the job runs (restarts without a checkpoint reset).
void record_checkpoint(manifest::History& history, uint64_t seq, double cost_s, double now, const Site& site);
/// Records a failure (counted in the MTBF) or a planned stop (not counted); either way
/// the job no longer runs from `now` on.
void record_stop(manifest::History& history, const std::string& cause, const std::string& detail, bool failure,
                 double now);
/// Records that the job runs again from `now` on.
void record_running(manifest::History& history, double now);

/// The current time, seconds since the epoch ($GCP_NOW, RFC 3339, overrides it for tests
/// of clock jumps).
double now();

}  // namespace gcp::policy
