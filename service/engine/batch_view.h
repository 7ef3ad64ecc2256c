#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

#include "core/clock.h"
#include "core/states.h"
#include "store/store.h"

namespace floodgate::engine {

struct Batch;
struct Item;

/// A run of a batch as shown by the API.
struct RunView {
  int64_t index = 0;
  core::ItemState state = core::ItemState::kPending;
  std::string flow_run_id;
  std::string flow_run_state;
  int32_t attempts = 0;
  std::string last_error;
  std::string detail_json;
  int32_t transient_attempts = 0;  // attempts Prefect answered "not now" (busy, timeout, ...)
  double waited_s = 0;             // from the first attempt to the launch (or until now)
};

/// A batch as the API shows it: its spec, state, counts, times and tolerance.
nlohmann::json batch_view(const Batch& b);
/// Item `index` as the API lists it; `now` (steady) measures the wait of an item still waiting.
RunView run_view(const Item& item, int64_t index, core::TimePoint now);
/// An item as the store has it, as the API lists it.
RunView run_view(const store::ItemRecord& record);

}  // namespace floodgate::engine
