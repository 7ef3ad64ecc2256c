#include "engine/batch_spec.h"

#include <algorithm>
#include <cmath>

namespace floodgate::engine {

using nlohmann::json;

namespace {
template <typename T>
json opt(const std::optional<T>& v) {
  return v ? json(*v) : json(nullptr);
}
template <typename T>
std::optional<T> read_opt(const json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return std::nullopt;
  return it->get<T>();
}
}  // namespace

json to_json(const BatchSpec& s) {
  return json{{"deployment", s.deployment},
              {"tags", s.tags},
              {"parent_flow_run_id",
               s.parent_flow_run_id.empty() ? json(nullptr) : json(s.parent_flow_run_id)},
              {"limits",
               {{"max_in_flight", opt(s.limits.max_in_flight)},
                {"max_running", opt(s.limits.max_running)},
                {"launches_per_second", opt(s.limits.launches_per_second)},
                {"burst", opt(s.limits.burst)},
                {"max_backlog", opt(s.limits.max_backlog)}}},
              {"retry",
               {{"max_attempts", s.retry.max_attempts},
                {"initial_delay_s", s.retry.initial_delay_s},
                {"max_delay_s", s.retry.max_delay_s},
                {"max_elapsed_s", s.retry.max_elapsed_s}}},
              {"track", s.track},
              {"relaunch_crashed", s.relaunch_crashed},
              {"tolerated_failure_percentage", s.tolerated_failure_percentage},
              {"tolerated_failure_count", opt(s.tolerated_failure_count)},
              {"on_cancel", std::string(to_string(s.on_cancel))},
              {"start_deadline_s", opt(s.deadlines.start_s)},
              {"run_deadline_s", opt(s.deadlines.run_s)},
              {"on_deadline", s.deadlines.on_deadline
                                  ? json(std::string(to_string(*s.deadlines.on_deadline)))
                                  : json(nullptr)},
              {"start_pacing", s.start_pacing},
              {"priority", s.priority},
              {"labels", s.labels}};
}

BatchSpec spec_from_json(const json& j) {
  BatchSpec s;
  s.deployment = j.value("deployment", "");
  if (j.contains("tags")) s.tags = j["tags"].get<std::vector<std::string>>();
  if (auto p = read_opt<std::string>(j, "parent_flow_run_id")) s.parent_flow_run_id = *p;
  if (auto it = j.find("limits"); it != j.end() && it->is_object()) {
    s.limits.max_in_flight = read_opt<int>(*it, "max_in_flight");
    s.limits.max_running = read_opt<int>(*it, "max_running");
    s.limits.launches_per_second = read_opt<double>(*it, "launches_per_second");
    s.limits.burst = read_opt<double>(*it, "burst");
    s.limits.max_backlog = read_opt<int>(*it, "max_backlog");
  }
  if (auto it = j.find("retry"); it != j.end() && it->is_object()) {
    s.retry.max_attempts = it->value("max_attempts", s.retry.max_attempts);
    s.retry.initial_delay_s = it->value("initial_delay_s", s.retry.initial_delay_s);
    s.retry.max_delay_s = it->value("max_delay_s", s.retry.max_delay_s);
    s.retry.max_elapsed_s = it->value("max_elapsed_s", s.retry.max_elapsed_s);
  }
  s.track = j.value("track", true);
  s.relaunch_crashed = j.value("relaunch_crashed", 0);
  s.tolerated_failure_percentage = j.value("tolerated_failure_percentage", 0.0);
  s.tolerated_failure_count = read_opt<int64_t>(j, "tolerated_failure_count");
  s.on_cancel = parse_on_cancel(j.value("on_cancel", "abandon")).value_or(OnCancel::kAbandon);
  s.deadlines.start_s = read_opt<double>(j, "start_deadline_s");
  s.deadlines.run_s = read_opt<double>(j, "run_deadline_s");
  if (auto d = read_opt<std::string>(j, "on_deadline"))
    s.deadlines.on_deadline = parse_on_deadline(*d);
  s.start_pacing = j.value("start_pacing", true);
  s.priority = j.value("priority", 0);
  if (auto it = j.find("labels"); it != j.end() && it->is_object()) s.labels = *it;
  return s;
}

int64_t failure_allowance(const BatchSpec& spec, int64_t total) {
  auto by_pct = static_cast<int64_t>(
      std::floor(spec.tolerated_failure_percentage / 100.0 * static_cast<double>(total) + 1e-9));
  if (spec.tolerated_failure_count) {
    // Both given: the stricter one wins, as in Step Functions' Distributed Map.
    return spec.tolerated_failure_percentage > 0 ? std::min(by_pct, *spec.tolerated_failure_count)
                                                 : *spec.tolerated_failure_count;
  }
  return by_pct;
}

std::string_view to_string(OnCancel on_cancel) {
  return on_cancel == OnCancel::kCancelChildren ? "cancel_children" : "abandon";
}

std::optional<OnCancel> parse_on_cancel(std::string_view text) {
  if (text == "abandon") return OnCancel::kAbandon;
  if (text == "cancel_children") return OnCancel::kCancelChildren;
  return std::nullopt;
}

std::string_view to_string(OnDeadline on_deadline) {
  switch (on_deadline) {
    case OnDeadline::kFail:
      return "fail";
    case OnDeadline::kRelaunch:
      return "relaunch";
    default:
      return "report";
  }
}

std::optional<OnDeadline> parse_on_deadline(std::string_view text) {
  if (text == "report") return OnDeadline::kReport;
  if (text == "fail") return OnDeadline::kFail;
  if (text == "relaunch") return OnDeadline::kRelaunch;
  return std::nullopt;
}

int relaunch_budget(const BatchSpec& spec) {
  return spec.deadlines.on_deadline == OnDeadline::kRelaunch ? std::max(spec.relaunch_crashed, 1)
                                                             : spec.relaunch_crashed;
}

RunSpec parse_run_spec(std::string_view text) {
  RunSpec spec;
  json j = json::parse(text, nullptr, false);
  if (!j.is_object()) {
    spec.fields = json::object();
    return spec;
  }
  if (auto it = j.find("deployment"); it != j.end()) {
    if (it->is_string()) spec.deployment = it->get<std::string>();
    j.erase(it);
  }
  if (auto it = j.find("idempotency_key"); it != j.end()) {
    if (it->is_string()) spec.idempotency_key = it->get<std::string>();
    j.erase(it);
  }
  spec.fields = std::move(j);
  return spec;
}

}  // namespace floodgate::engine
