#pragma once

#include <cstdint>
#include <optional>

#include "core/clock.h"
#include "core/launch_scheduler.h"
#include "engine/batch_book.h"
#include "metrics/metrics.h"

namespace floodgate::engine {

/// Crash-aware start pacing: children that crash soon after they start are a congestion signal,
/// like a 503. An early crash cuts the batch's launch rate and running cap multiplicatively (at
/// most once per kCutInterval, so one burst is one cut); children seen starting raise them again
/// additively (slowly near the rate that crashed). The pace only ever lowers the batch's own
/// limits.
class StartPacer final : public BatchObserver {
 public:
  StartPacer(core::Clock& clock, core::LaunchScheduler& scheduler, metrics::Metrics& metrics);

  /// Tells the pacer how to bring a batch's ready count in line with its running cap.
  void set_resync(std::function<void(Batch&)> resync) { resync_ = std::move(resync); }

  /// A child of `b` ended CRASHED `ran_for` after it was first seen started (nullopt: never seen
  /// started); a crash within kEarlyCrash counts.
  void on_crash(Batch& b, std::optional<core::Duration> ran_for);
  /// A child of `b` was seen started (RUNNING or later) for the first time.
  void on_started(Batch& b);

  void on_item_state(Batch& b, int64_t index, core::ItemState from, core::ItemState to) override;

  /// A crash this soon after the child was seen started is a crash of its start.
  static constexpr std::chrono::seconds kEarlyCrash{60};
  /// One cut per this interval: the crashes of one burst arrive together.
  static constexpr std::chrono::seconds kCutInterval{2};
  static constexpr double kRateCut = 0.5;  // the launch rate is what bursts are made of
  static constexpr double kCapCut = 0.75;  // long-running children are not the problem
  // Launches/s added per second of clean starts (each start adds kRateStep / rate), below
  // kNearCrash of the rate that last crashed; a tenth of it above, so the pace settles just
  // below what the server takes instead of crashing a burst every few seconds.
  static constexpr double kRateStep = 0.5;
  static constexpr double kNearCrash = 0.8;
  static constexpr double kMinRate = 0.2;  // launches/s
  static constexpr int64_t kMinCap = 1;

 private:
  /// The scheduler's quota and the resolver's readiness after the pace changed.
  void apply(Batch& b);

  core::Clock& clock_;
  core::LaunchScheduler& scheduler_;
  metrics::Metrics& metrics_;
  std::function<void(Batch&)> resync_;
};

/// The batch's launch quota: its own limits, lowered by its start pace.
core::BatchQuota effective_quota(const Batch& b);
/// The batch's cap on children not yet final: its own max_running, lowered by its start pace;
/// nullopt when it has none.
std::optional<int64_t> running_cap(const Batch& b);

}  // namespace floodgate::engine
