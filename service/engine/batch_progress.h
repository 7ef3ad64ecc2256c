#pragma once

#include <array>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string_view>
#include <vector>

#include "engine/batch.h"
#include "engine/dispatcher.h"

namespace floodgate::engine {

/// What holds a batch's launches back (or, once everything is launched, its end), most binding
/// first.
enum class Wait : uint8_t {
  kPaused,         // the batch is paused
  kDeployment,     // its deployment is being read
  kParent,         // a fresh read of its parent flow run
  kPrefectErrors,  // Prefect answered 429/503/errors: paused, breaker, or items retrying
  kStartPacing,    // its start pace after children crashed as they started
  kRunningCap,     // its own max_running
  kBacklog,        // its children wait to start beyond max_backlog
  kBatchRate,      // its own launches_per_second or max_in_flight
  kTokenBucket,    // the global --rate
  kInFlightLimit,  // the global (adaptive) in-flight limit
  kChildren,       // nothing left to launch: its children are still running
};
inline constexpr std::array<std::string_view, 11> kWaitNames = {
    "paused",  "deployment", "parent",       "prefect_errors",  "start_pacing", "running_cap",
    "backlog", "batch_rate", "token_bucket", "in_flight_limit", "children"};

/// What batch `b` waits on now, given the dispatcher's global gates and whether the scheduler
/// holds its ready items on its own quota; empty while it launches as fast as it is let.
std::vector<Wait> waiting_on(const Batch& b, const Dispatcher::Gates& gates, bool own_limits);

/// The batch's progress for the API: launch and completion rates, ETA, what it waits on and its
/// backlog; null for a finished batch.
nlohmann::json progress_json(const Batch& b);

}  // namespace floodgate::engine
