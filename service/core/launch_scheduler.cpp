#include "core/launch_scheduler.h"

#include <algorithm>
#include <cmath>

namespace floodgate::core {

void LaunchScheduler::apply_quota(Entry& e, const BatchQuota& quota) {
  e.quota = quota;
  if (quota.launches_per_second > 0) {
    double burst = quota.burst > 0 ? quota.burst : std::max(1.0, quota.launches_per_second);
    if (e.rate) {
      e.rate->set_rate(quota.launches_per_second, burst);
    } else {
      e.rate.emplace(clock_, quota.launches_per_second, burst);
    }
  } else {
    e.rate.reset();
  }
}

void LaunchScheduler::add_batch(BatchKey key, const BatchQuota& quota) {
  auto [it, inserted] = batches_.try_emplace(key);
  if (inserted) order_.push_back(key);
  apply_quota(it->second, quota);
}

void LaunchScheduler::update_quota(BatchKey key, const BatchQuota& quota) {
  auto it = batches_.find(key);
  if (it != batches_.end()) apply_quota(it->second, quota);
}

void LaunchScheduler::remove_batch(BatchKey key) {
  if (batches_.erase(key) != 0) order_.erase(std::find(order_.begin(), order_.end(), key));
}

void LaunchScheduler::set_ready(BatchKey key, int64_t ready) {
  auto it = batches_.find(key);
  if (it != batches_.end()) it->second.ready = std::max<int64_t>(0, ready);
}

void LaunchScheduler::set_paused(BatchKey key, bool paused) {
  auto it = batches_.find(key);
  if (it != batches_.end()) it->second.paused = paused;
}

bool LaunchScheduler::eligible(const Entry& e) const {
  if (e.paused || e.ready <= 0) return false;
  if (e.quota.max_in_flight > 0 && e.in_flight >= e.quota.max_in_flight) return false;
  if (e.rate && e.rate->level() < 1.0) return false;
  return true;
}

std::optional<LaunchScheduler::Grant> LaunchScheduler::next(int max_items) {
  if (max_items < 1) return std::nullopt;
  int64_t total_weight = 0;
  Entry* best = nullptr;
  BatchKey best_key = 0;
  for (BatchKey key : order_) {
    Entry& e = batches_.at(key);
    if (!eligible(e)) continue;
    int w = weight(e.quota);
    e.current += w;
    total_weight += w;
    if (best == nullptr || e.current > best->current) {
      best = &e;
      best_key = key;
    }
  }
  if (best == nullptr) return std::nullopt;
  best->current -= total_weight;

  int64_t items = std::min<int64_t>(best->ready, max_items);
  if (best->rate) {
    items = std::min<int64_t>(items, static_cast<int64_t>(std::floor(best->rate->level())));
    items = std::max<int64_t>(items, 1);
    (void)best->rate->try_consume(static_cast<double>(items));
  }
  best->ready -= items;
  best->in_flight += 1;
  return Grant{best_key, static_cast<int>(items)};
}

void LaunchScheduler::cancel(const Grant& grant) {
  auto it = batches_.find(grant.batch);
  if (it == batches_.end()) return;
  Entry& e = it->second;
  if (e.in_flight > 0) e.in_flight -= 1;
  e.ready += grant.items;
  if (e.rate) e.rate->refund(static_cast<double>(grant.items));
}

void LaunchScheduler::refund(BatchKey key, int items) {
  auto it = batches_.find(key);
  if (it != batches_.end() && it->second.rate) it->second.rate->refund(static_cast<double>(items));
}

void LaunchScheduler::on_request_done(BatchKey key) {
  auto it = batches_.find(key);
  if (it != batches_.end() && it->second.in_flight > 0) it->second.in_flight -= 1;
}

std::optional<Duration> LaunchScheduler::time_until_ready() const {
  std::optional<Duration> soonest;
  for (const auto& [key, e] : batches_) {
    if (e.paused || e.ready <= 0 || !e.rate) continue;
    if (e.quota.max_in_flight > 0 && e.in_flight >= e.quota.max_in_flight) continue;
    Duration d = e.rate->time_until(1.0);
    if (!soonest || d < *soonest) soonest = d;
  }
  return soonest;
}

bool LaunchScheduler::held_by_own_limits(BatchKey key) const {
  auto it = batches_.find(key);
  if (it == batches_.end()) return false;
  const Entry& e = it->second;
  if (e.paused || e.ready <= 0) return false;
  if (e.quota.max_in_flight > 0 && e.in_flight >= e.quota.max_in_flight) return true;
  return e.rate && e.rate->time_until(1.0) > Duration(0);
}

int LaunchScheduler::in_flight(BatchKey key) const {
  auto it = batches_.find(key);
  return it == batches_.end() ? 0 : it->second.in_flight;
}

}  // namespace floodgate::core
