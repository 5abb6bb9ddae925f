// SPDX-License-Identifier: MIT
#include "gcp/rounds.h"

#include <limits>

#include "gcp/error.h"

#include <future>

namespace gcp::rounds {
namespace {

// Requests and answers travel between the job checkpointer and a node's command: a
// field that is missing or of the wrong type is a usage error naming the field.
template <typename T>
T field(const json& doc, const char* key) {
  try {
    const json& value = doc.at(key);
    // get<T> would truncate an integer out of T's range and cast a float to one (1e300
    // as a pid is undefined behaviour): integers are checked first.
    if constexpr (std::is_integral_v<T> && !std::is_same_v<T, bool>) {
      bool fits = value.is_number_unsigned()
                      ? value.get<uint64_t>() <= static_cast<uint64_t>(std::numeric_limits<T>::max())
                      : value.is_number_integer() &&
                            value.get<int64_t>() >= static_cast<int64_t>(std::numeric_limits<T>::min()) &&
                            (value.get<int64_t>() < 0 || static_cast<uint64_t>(value.get<int64_t>()) <=
                                                             static_cast<uint64_t>(std::numeric_limits<T>::max()));
      if (!fits) {
        throw Error(Exit::kUsage, std::string("a message of the round: field '") + key + "': not an integer in range");
      }
    }
    return value.get<T>();
  } catch (const json::exception& e) {
    throw Error(Exit::kUsage, std::string("a message of the round: field '") + key + "': " + e.what());
  }
}

template <typename T>
T field(const json& doc, const char* key, T fallback) {
  return doc.contains(key) ? field<T>(doc, key) : fallback;
}

}  // namespace

std::vector<std::exception_ptr> run_all(size_t count, const char* phase, Clock::time_point deadline,
                                        const std::function<void(size_t)>& call,
                                        const std::function<void(size_t)>& cancel) {
  std::vector<std::future<void>> running;
  for (size_t i = 0; i < count; ++i) running.push_back(std::async(std::launch::async, [&call, i] { call(i); }));
  std::vector<std::exception_ptr> failed(count);
  for (size_t i = 0; i < count; ++i) {
    if (running[i].wait_until(deadline) == std::future_status::timeout) {
      failed[i] = std::make_exception_ptr(
          Error(Exit::kFailed, std::string("no answer within the deadline (waiting for '") + phase + "')"));
      cancel(i);
    }
  }
  for (size_t i = 0; i < count; ++i) {
    try {
      running[i].get();
    } catch (...) {
      if (!failed[i]) failed[i] = std::current_exception();
    }
  }
  return failed;
}

Machine system_machine(cgroup::Cgroups& cgroups) {
  return {cgroups, [](const std::string& job, const std::vector<deps::UnitSpec>& units, const deps::Context& context) {
            return deps::build(job, units, context);
          }};
}

std::chrono::milliseconds callback_deadline(const std::optional<std::chrono::milliseconds>& option,
                                            const manifest::Job& job) {
  if (option) return *option;
  if (job.callback_timeout_ms) return std::chrono::milliseconds(*job.callback_timeout_ms);
  return names::kDefaultCallbackDeadline;
}

json to_json(const CheckpointRequest& r) {
  return {{"job", r.job},
          {"seq", r.seq},
          {"units", r.units},
          {"hold", r.hold},
          {"spans", r.spans},
          {"uncoordinated", r.uncoordinated},
          {"force", r.force},
          {"freezeTimeoutMs", r.freeze_timeout.count()},
          {"maxFrozenS", r.max_frozen.count()},
          {"callbackTimeoutMs", r.callback_deadline.count()},
          {"peers", r.peers}};
}

CheckpointRequest checkpoint_request_from_json(const json& doc) {
  CheckpointRequest r;
  r.job = field<std::string>(doc, "job");
  r.seq = field<uint64_t>(doc, "seq");
  r.units = field<std::vector<std::string>>(doc, "units");
  r.hold = field<bool>(doc, "hold", false);
  r.spans = field<bool>(doc, "spans", false);
  r.uncoordinated = field<bool>(doc, "uncoordinated", false);
  r.force = field<bool>(doc, "force", false);
  r.freeze_timeout = std::chrono::milliseconds(field<int64_t>(doc, "freezeTimeoutMs", r.freeze_timeout.count()));
  r.max_frozen = std::chrono::seconds(field<int64_t>(doc, "maxFrozenS", r.max_frozen.count()));
  r.callback_deadline =
      std::chrono::milliseconds(field<int64_t>(doc, "callbackTimeoutMs", r.callback_deadline.count()));
  r.peers = field<std::map<std::string, std::string>>(doc, "peers", {});
  return r;
}

json to_json(const RestartRequest& r) {
  return {{"job", r.job},
          {"units", r.units},
          {"materialize", r.materialize},
          {"leaveStopped", r.leave_stopped},
          {"files", files::name(r.files)},
          {"callbackTimeoutMs", r.callback_deadline.count()}};
}

RestartRequest restart_request_from_json(const json& doc) {
  RestartRequest r;
  r.job = field<std::string>(doc, "job");
  json units = field<json>(doc, "units");
  if (!units.is_object()) throw Error(Exit::kUsage, "a message of the round: field 'units': not an object");
  for (const auto& [name, seq] : units.items()) r.units[name] = field<uint64_t>(units, name.c_str());
  r.materialize = field<bool>(doc, "materialize", false);
  r.leave_stopped = field<bool>(doc, "leaveStopped", false);
  r.files = files::policy_from(field<std::string>(doc, "files", "refuse"));
  r.callback_deadline =
      std::chrono::milliseconds(field<int64_t>(doc, "callbackTimeoutMs", r.callback_deadline.count()));
  return r;
}

json to_json(const Restored& r) {
  json j = {{"unit", r.unit}, {"seq", r.seq},       {"node", r.node},
            {"pid", r.pid},   {"cgroup", r.cgroup}, {"nodeAddresses", r.node_addresses}};
  if (!r.network_parent.empty()) j["networkParent"] = r.network_parent;
  return j;
}

Restored restored_from_json(const json& doc) {
  Restored r;
  r.unit = field<std::string>(doc, "unit");
  r.seq = field<uint64_t>(doc, "seq");
  r.node = field<std::string>(doc, "node");
  r.pid = field<pid_t>(doc, "pid");
  r.cgroup = field<std::string>(doc, "cgroup");
  r.node_addresses = field<std::vector<std::string>>(doc, "nodeAddresses", {});
  r.network_parent = field<std::string>(doc, "networkParent", "");
  return r;
}

}  // namespace gcp::rounds
