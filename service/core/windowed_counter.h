#pragma once

#include <cstdint>
#include <limits>
#include <vector>

#include "core/clock.h"

namespace floodgate::core {

/// A sum over a sliding time window, kept in fixed slots so old values expire exactly.
///
/// The window is split into `slots` equal slots; a value added at time t counts until the slot
/// that holds t leaves the window, so it lives between window - slot and window.
class WindowedCounter {
 public:
  WindowedCounter(Duration window, int slots);

  void add(TimePoint now, int64_t value);
  /// The sum of the values added within the window that ends at `now`.
  int64_t sum(TimePoint now) const;
  void clear();

  Duration window() const { return slot_width_ * static_cast<int64_t>(slots_.size()); }
  Duration slot_width() const { return slot_width_; }

 private:
  struct Slot {
    int64_t index = std::numeric_limits<int64_t>::min();
    int64_t value = 0;
  };

  int64_t slot_index(TimePoint t) const;

  Duration slot_width_;
  std::vector<Slot> slots_;
};

}  // namespace floodgate::core
