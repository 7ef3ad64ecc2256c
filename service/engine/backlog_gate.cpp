#include "engine/backlog_gate.h"

#include <algorithm>
#include <cmath>

namespace floodgate::engine {

using core::ItemState;

namespace {

bool unstarted(const Item& item) {
  return item.state == ItemState::kLaunched && item.started_at == core::TimePoint::min();
}

}  // namespace

BacklogGate::BacklogGate(core::Clock& clock) : clock_(clock) {}

void BacklogGate::on_started(Batch& b, int64_t index) {
  if (b.items[index].state != ItemState::kLaunched) return;
  b.backlog.unstarted = std::max<int64_t>(0, b.backlog.unstarted - 1);
  b.backlog.starts.add(clock_.now(), 1);
}

void BacklogGate::recount(Batch& b) {
  int64_t n = 0;
  for (const auto& [index, item] : b.items) n += unstarted(item) ? 1 : 0;
  b.backlog.unstarted = n;
}

void BacklogGate::on_item_state(Batch& b, int64_t index, ItemState from, ItemState to) {
  const Item& item = b.items[index];
  Backlog& g = b.backlog;
  // The run's start time is reset when it is created and kept until the item leaves LAUNCHED.
  const bool not_started = item.started_at == core::TimePoint::min();
  if (to == ItemState::kLaunched && not_started) {
    g.unstarted += 1;
  } else if (from == ItemState::kLaunched && not_started) {
    g.unstarted = std::max<int64_t>(0, g.unstarted - 1);
  }
}

int64_t backlog(const Batch& b) { return b.count(ItemState::kLaunching) + b.backlog.unstarted; }

double start_rate(const Batch& b, core::TimePoint now) {
  if (b.first_launch == core::TimePoint::min()) return 0;
  const double window_s = std::clamp(core::to_seconds(now - b.first_launch), 1.0,
                                     core::to_seconds(b.backlog.starts.window()));
  return static_cast<double>(b.backlog.starts.sum(now)) / window_s;
}

bool backlog_gated(const Batch& b) {
  // Starts are seen only by reading the children.
  return b.spec.track && b.spec.limits.max_backlog.value_or(1) > 0;
}

std::optional<int64_t> max_backlog(const Batch& b, core::TimePoint now) {
  if (!backlog_gated(b)) return std::nullopt;
  if (auto set = b.spec.limits.max_backlog) return *set;
  // Enough created runs to keep the workers busy at their recent pace until the reads show
  // that they started some (two tracking intervals) and a margin beyond.
  const double horizon_s = BacklogGate::kBacklogSeconds + 2 * core::to_seconds(b.track_interval);
  const auto derived = static_cast<int64_t>(std::ceil(start_rate(b, now) * horizon_s));
  return std::max(BacklogGate::kMinBacklog, derived);
}

}  // namespace floodgate::engine
