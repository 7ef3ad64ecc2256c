#include "engine/child_deadlines.h"

#include <algorithm>
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

core::TimePoint steady_from_wall(std::chrono::system_clock::time_point t, core::TimePoint now,
                                 std::chrono::system_clock::time_point wall_now) {
  // A time ahead of this host's clock (Prefect's server clock runs ahead) counts as now.
  const auto ago = std::max<core::Duration>(
      core::Duration{}, std::chrono::duration_cast<core::Duration>(wall_now - t));
  return now - ago;
}

std::optional<Breach> check_deadlines(const DeadlineSpec& deadlines, Item& item,
                                      const prefect::FlowRunInfo& run, core::TimePoint now,
                                      std::chrono::system_clock::time_point wall_now) {
  if (item.launched_at == core::TimePoint::min()) item.launched_at = now;
  if (item.times_from_prefect && run.created) {
    // Never later than where it stood (now at the restart): a server clock ahead of this host's
    // must not push the deadline further on each read.
    item.launched_at = std::min(item.launched_at, steady_from_wall(*run.created, now, wall_now));
  }
  const bool started = has_started(run.state_type);
  if (started && item.started_at == core::TimePoint::min()) {
    item.started_at = item.times_from_prefect && run.start_time
                          ? steady_from_wall(*run.start_time, now, wall_now)
                          : now;
  }
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
