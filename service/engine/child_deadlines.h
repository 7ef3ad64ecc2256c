#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

#include "core/clock.h"
#include "engine/batch.h"
#include "engine/batch_spec.h"
#include "prefect/prefect_api.h"

namespace floodgate::engine {

/// Why floodgate gives up on a followed child: past its start or run deadline, or deleted in
/// Prefect.
enum class Breach { kStartDeadline, kRunDeadline, kDeleted };
/// "start_deadline", "run_deadline" or "deleted" (the metric's label).
std::string_view to_string(Breach breach);
/// How an item's `earlier_runs` names a run replaced after `breach`: START_DEADLINE,
/// RUN_DEADLINE or DELETED.
std::string_view earlier_run_state(Breach breach);

/// Whether a Prefect state type says the run has started: anything but SCHEDULED (Late and
/// AwaitingConcurrencySlot included) and PENDING.
bool has_started(std::string_view state_type);

/// A time on the wall clock (`wall_now` being `now` there) as a point on the steady clock; never
/// later than `now`.
core::TimePoint steady_from_wall(std::chrono::system_clock::time_point t, core::TimePoint now,
                                 std::chrono::system_clock::time_point wall_now);

/// Notes from a read of `item`'s run when it was created and when it started, and says whether
/// the run is past one of the batch's deadlines at `now` (`wall_now` on the wall clock). Items
/// this process saw created take the steady clock's times (the launch; the first read that found
/// the run started); items with times_from_prefect take the run's created and start_time.
std::optional<Breach> check_deadlines(const DeadlineSpec& deadlines, Item& item,
                                      const prefect::FlowRunInfo& run, core::TimePoint now,
                                      std::chrono::system_clock::time_point wall_now);

/// What the item's last_error says of a breach (`run` is the run as last read; null when it is
/// gone).
std::string breach_message(Breach breach, const DeadlineSpec& deadlines, const Item& item,
                           const prefect::FlowRunInfo* run, core::TimePoint now);

/// Successive reads that must miss a run before it counts as deleted: one miss could be a read
/// that raced the run's creation on a replicated database.
inline constexpr int kMissingReadsForDeleted = 2;

}  // namespace floodgate::engine
