#include "engine/start_pacer.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <utility>

#include "metrics/log.h"

namespace floodgate::engine {

using core::ItemState;

StartPacer::StartPacer(core::Clock& clock, core::LaunchScheduler& scheduler,
                       metrics::Metrics& metrics)
    : clock_(clock), scheduler_(scheduler), metrics_(metrics) {}

void StartPacer::on_item_state(Batch& b, int64_t /*index*/, ItemState /*from*/, ItemState to) {
  if (to != ItemState::kLaunched) return;
  b.recent_launches.add(clock_.now(), 1);
}

void StartPacer::on_crash(Batch& b, std::optional<core::Duration> ran_for) {
  if (!b.spec.start_pacing || core::is_final(b.rec.state)) return;
  if (ran_for && *ran_for > kEarlyCrash) return;
  StartPace& p = b.pace;
  p.early_crashes += 1;
  const auto now = clock_.now();
  if (p.active && now - p.last_cut < kCutInterval) return;
  // What the batch launched at: its pace, else the last window's rate (its own limit at most).
  // Over the window, or since the first launch when the batch is younger than that.
  const double window_s = std::clamp(core::to_seconds(now - b.first_launch), 1.0,
                                     core::to_seconds(b.recent_launches.window()));
  double base = static_cast<double>(b.recent_launches.sum(now)) / window_s;
  if (b.spec.limits.launches_per_second) base = std::min(base, *b.spec.limits.launches_per_second);
  if (p.active) base = std::min(base > 0 ? base : p.rate, p.rate);
  if (base <= 0) base = 2 * kMinRate;
  const int64_t cap_base = p.active ? p.running_cap : std::max<int64_t>(b.running(), 1);
  p.active = true;
  p.crash_rate = base;
  p.rate = std::max(kMinRate, base * kRateCut);
  p.running_cap = std::max<int64_t>(
      kMinCap, static_cast<int64_t>(std::floor(static_cast<double>(cap_base) * kCapCut)));
  p.cuts += 1;
  p.last_cut = now;
  metrics_.start_pace_cuts().Increment();
  log::info("children crash as they start; slowing the batch's starts",
            {{"batch_id", b.rec.id},
             {"launches_per_second", p.rate},
             {"running_cap", p.running_cap},
             {"early_crashes", p.early_crashes}});
  apply(b);
}

void StartPacer::on_started(Batch& b) {
  StartPace& p = b.pace;
  if (!p.active || core::is_final(b.rec.state)) return;
  const double step = p.rate < kNearCrash * p.crash_rate ? kRateStep : kRateStep / 10;
  p.rate += step / std::max(1.0, p.rate);
  // Never above the batch's size: a cap no batch can reach only confuses whoever reads it.
  p.running_cap = std::min<int64_t>(p.running_cap + 1, std::max<int64_t>(b.rec.total, kMinCap));
  apply(b);
}

void StartPacer::apply(Batch& b) {
  scheduler_.update_quota(b.key, effective_quota(b));
  if (resync_) resync_(b);
}

core::BatchQuota effective_quota(const Batch& b) {
  const LimitSpec& l = b.spec.limits;
  core::BatchQuota q;
  q.priority = b.spec.priority;
  q.max_in_flight = l.max_in_flight.value_or(0);
  q.launches_per_second = l.launches_per_second.value_or(0);
  q.burst = l.burst.value_or(0);
  if (b.pace.active) {
    const double own =
        q.launches_per_second > 0 ? q.launches_per_second : std::numeric_limits<double>::infinity();
    q.launches_per_second = std::min(own, b.pace.rate);
    // No burst beyond a second of the paced rate: bursts are what crash.
    const double burst = std::max(1.0, q.launches_per_second);
    q.burst = q.burst > 0 ? std::min(q.burst, burst) : burst;
  }
  return q;
}

std::optional<int64_t> running_cap(const Batch& b) {
  std::optional<int64_t> cap;
  if (b.spec.limits.max_running) cap = *b.spec.limits.max_running;
  if (b.pace.active) cap = std::min(cap.value_or(b.pace.running_cap), b.pace.running_cap);
  return cap;
}

}  // namespace floodgate::engine
