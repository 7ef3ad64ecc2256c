#pragma once

#include <cstdint>
#include <deque>
#include <optional>

namespace floodgate::metrics {

/// One look at an active batch: when (seconds on any steady clock) and its item counts.
struct BatchSample {
  double t_s = 0;
  int64_t total = 0;
  int64_t started = 0;  // items that left the queue (launched, failed to launch, skipped)
  int64_t done = 0;     // items in a final state
};

/// A batch's launch and completion rates over a sliding window, and the ETA they imply.
/// Pure: fed samples by the engine's once-a-second gauge update, so it runs on a simulated
/// clock in tests.
class BatchRate {
 public:
  explicit BatchRate(double window_s = 60) : window_s_(window_s) {}

  void add(const BatchSample& s);
  /// Items started per second over the window (0 until two samples a second apart).
  double launch_rate() const;
  /// Items finished per second over the window.
  double completion_rate() const;
  /// Seconds until every item is done at the current completion rate; none while nothing
  /// finishes (an ETA of "never" would mislead more than no ETA).
  std::optional<double> eta_s() const;

 private:
  double rate(int64_t BatchSample::*field) const;

  double window_s_;
  std::deque<BatchSample> samples_;
};

}  // namespace floodgate::metrics
