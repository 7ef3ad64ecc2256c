#include "core/windowed_counter.h"

#include <algorithm>

namespace floodgate::core {

WindowedCounter::WindowedCounter(Duration window, int slots)
    : slot_width_(std::max(Duration(1), window / std::max(1, slots))),
      slots_(static_cast<size_t>(std::max(1, slots))) {}

int64_t WindowedCounter::slot_index(TimePoint t) const {
  // Floor division, so times before the clock's epoch still map to distinct slots.
  int64_t ticks = t.time_since_epoch().count();
  int64_t width = slot_width_.count();
  int64_t q = ticks / width;
  if (ticks % width != 0 && ticks < 0) --q;
  return q;
}

void WindowedCounter::add(TimePoint now, int64_t value) {
  int64_t index = slot_index(now);
  auto n = static_cast<int64_t>(slots_.size());
  Slot& slot = slots_[static_cast<size_t>(((index % n) + n) % n)];
  if (slot.index != index) {
    slot.index = index;
    slot.value = 0;
  }
  slot.value += value;
}

int64_t WindowedCounter::sum(TimePoint now) const {
  int64_t current = slot_index(now);
  auto n = static_cast<int64_t>(slots_.size());
  int64_t total = 0;
  for (const Slot& slot : slots_) {
    if (slot.index > current - n && slot.index <= current) total += slot.value;
  }
  return total;
}

void WindowedCounter::clear() { std::fill(slots_.begin(), slots_.end(), Slot{}); }

}  // namespace floodgate::core
