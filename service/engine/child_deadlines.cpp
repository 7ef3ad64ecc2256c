#include "engine/child_deadlines.h"

#include <cmath>

#include "prefect/transient.h"

namespace floodgate::engine {

std::string_view to_string(Breach breach) {
  switch (breach) {
    case Breach::kStartDeadline:
      return "start_deadline";
    case Breach::kRunDeadline:
      return "run_deadline";
    default:
      return "deleted";
  }
}

std::string_view earlier_run_state(Breach breach) {
  switch (breach) {
    case Breach::kStartDeadline:
      return "START_DEADLINE";
    case Breach::kRunDeadline:
      return "RUN_DEADLINE";
    default:
      return "DELETED";
  }
}

bool has_started(std::string_view state_type) {
  return !state_type.empty() && state_type != "SCHEDULED" && state_type != "PENDING";
}

std::optional<Breach> check_deadlines(const DeadlineSpec& deadlines, Item& item,
                                      const prefect::FlowRunInfo& run, core::TimePoint now) {
  if (item.launched_at == core::TimePoint::min()) item.launched_at = now;
  const bool started = has_started(run.state_type);
  if (started && item.started_at == core::TimePoint::min()) item.started_at = now;
  if (prefect::is_final_state_type(run.state_type)) return std::nullopt;
  const double start_s = deadlines.start_s.value_or(0);
  const double run_s = deadlines.run_s.value_or(0);
  if (!started && start_s > 0 && now - item.launched_at >= core::from_seconds(start_s)) {
    return Breach::kStartDeadline;
  }
  if (started && run_s > 0 && now - item.started_at >= core::from_seconds(run_s)) {
    return Breach::kRunDeadline;
  }
  return std::nullopt;
}

std::string breach_message(Breach breach, const DeadlineSpec& deadlines, const Item& item,
                           const prefect::FlowRunInfo* run, core::TimePoint now) {
  auto secs = [](double s) { return std::to_string(static_cast<int64_t>(std::llround(s))) + " s"; };
  const std::string state =
      run != nullptr && !run->state_name.empty() ? run->state_name : item.flow_run_state;
  switch (breach) {
    case Breach::kStartDeadline:
      return "start deadline (" + secs(deadlines.start_s.value_or(0)) + ") passed: run " +
             item.flow_run_id + " still " + state + " " +
             secs(core::to_seconds(now - item.launched_at)) + " after it was created";
    case Breach::kRunDeadline:
      return "run deadline (" + secs(deadlines.run_s.value_or(0)) + ") passed: run " +
             item.flow_run_id + " still " + state + " " +
             secs(core::to_seconds(now - item.started_at)) + " after it started";
    default:
      return "run " + item.flow_run_id + " was deleted in Prefect";
  }
}

}  // namespace floodgate::engine
