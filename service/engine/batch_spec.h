#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace floodgate::engine {

/// A batch's own limits; unset means "only the global limits apply".
struct LimitSpec {
  std::optional<int> max_in_flight;
  std::optional<int> max_running;
  std::optional<double> launches_per_second;
  std::optional<double> burst;
  // Children created and not yet started that the batch may have; unset: derived from the rate
  // at which workers start its runs; 0: no backlog gating.
  std::optional<int> max_backlog;
};

/// How launches of a batch are retried.
struct RetrySpec {
  int max_attempts = 8;
  double initial_delay_s = 1;
  double max_delay_s = 60;
  double max_elapsed_s = 3600;
};

/// What ending a batch early (cancelled, failed, parent ended) does to its running children.
enum class OnCancel { kAbandon, kCancelChildren };
std::string_view to_string(OnCancel on_cancel);
/// "abandon" or "cancel_children"; nullopt for anything else.
std::optional<OnCancel> parse_on_cancel(std::string_view text);

/// What floodgate does with a child past its start or run deadline, or deleted in Prefect:
/// leave it to the parent as STUCK, cancel it and count it FAILED, or cancel it and launch a new
/// run in its place.
enum class OnDeadline { kReport, kFail, kRelaunch };
std::string_view to_string(OnDeadline on_deadline);
/// "report", "fail" or "relaunch"; nullopt for anything else.
std::optional<OnDeadline> parse_on_deadline(std::string_view text);

/// Deadlines for a batch's children; unset takes the server's default when the batch is
/// accepted, 0 is "no deadline".
struct DeadlineSpec {
  std::optional<double> start_s;  // created -> started (RUNNING or later)
  std::optional<double> run_s;    // started -> final
  std::optional<OnDeadline> on_deadline;
};

/// Everything about a batch except its runs; persisted as JSON in the store.
struct BatchSpec {
  std::string deployment;  // "flow/deployment" or a deployment id
  std::vector<std::string> tags;
  std::string parent_flow_run_id;
  LimitSpec limits;
  RetrySpec retry;
  bool track = true;
  int relaunch_crashed = 0;
  double tolerated_failure_percentage = 0;
  std::optional<int64_t> tolerated_failure_count;
  OnCancel on_cancel = OnCancel::kAbandon;
  DeadlineSpec deadlines;
  bool start_pacing = true;  // children that crash as they start slow the batch's starts
  int priority = 0;
  nlohmann::json labels = nlohmann::json::object();
};

nlohmann::json to_json(const BatchSpec& spec);
/// Reads a spec written by to_json (trusted input; missing keys take defaults).
BatchSpec spec_from_json(const nlohmann::json& j);

/// One run's own part of a batch, parsed once at intake.
struct RunSpec {
  std::string deployment;       // empty: the batch's deployment
  std::string idempotency_key;  // empty: floodgate's own, from the batch id and the index
  nlohmann::json fields;        // the create body's fields (parameters, name, tags, ...)
};
/// Parses one run's spec JSON (validated by the API; anything else gives an empty spec).
RunSpec parse_run_spec(std::string_view text);

/// How many times one item's run may be replaced by a new one (after a crash, a deadline or its
/// deletion): relaunch_crashed, and at least once when on_deadline is "relaunch".
int relaunch_budget(const BatchSpec& spec);

/// How many failed items the batch tolerates before it fails.
int64_t failure_allowance(const BatchSpec& spec, int64_t total);

}  // namespace floodgate::engine
