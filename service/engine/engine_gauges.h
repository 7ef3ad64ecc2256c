#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "core/clock.h"
#include "core/launch_scheduler.h"
#include "engine/batch_book.h"
#include "engine/batch_progress.h"
#include "engine/dispatcher.h"
#include "metrics/metrics.h"

namespace floodgate::engine {

/// The engine's gauges of items and batches: counts by state kept by observing the book, and
/// per-batch progress, children by state, ready items and the oldest wait sampled each second.
class EngineGauges final : public BatchObserver {
 public:
  EngineGauges(core::Clock& clock, core::WallClock& wall, BatchBook& book,
               metrics::Metrics& metrics);

  void on_batch_held(Batch& b) override;
  void on_items_reloaded(Batch& b,
                         const std::array<int64_t, core::kItemStateCount>& before) override;
  void on_item_state(Batch& b, int64_t index, core::ItemState from, core::ItemState to) override;
  void on_batch_state(Batch& b, core::BatchState from, core::BatchState to) override;

  /// Samples the gauges that are not kept by observing, and each active batch's progress and
  /// what it waits on (called each second, with the global gates as they are now).
  void update(const Dispatcher::Gates& gates, const core::LaunchScheduler& scheduler);
  /// Items ready to launch at the last update.
  int64_t ready_items() const { return ready_items_; }
  /// Launch rate, completion rate, ETA and running children of each active batch, by id.
  nlohmann::json batch_views() const;

 private:
  void update_batch(Batch& b, const Dispatcher::Gates& gates, bool own_limits,
                    std::map<std::string, int64_t>& children,
                    std::map<std::string_view, int64_t>& waiting);

  core::Clock& clock_;
  core::WallClock& wall_;
  BatchBook& book_;
  metrics::Metrics& metrics_;
  int64_t ready_items_ = 0;
};

}  // namespace floodgate::engine
