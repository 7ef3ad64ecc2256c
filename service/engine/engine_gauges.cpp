#include "engine/engine_gauges.h"

#include <algorithm>
#include <map>
#include <string>

namespace floodgate::engine {

using core::ItemState;
using nlohmann::json;

EngineGauges::EngineGauges(core::Clock& clock, core::WallClock& wall, BatchBook& book,
                           metrics::Metrics& metrics)
    : clock_(clock), wall_(wall), book_(book), metrics_(metrics) {}

void EngineGauges::on_batch_held(Batch& b) {
  for (int i = 0; i < core::kItemStateCount; ++i) {
    metrics_.items(static_cast<ItemState>(i)).Increment(static_cast<double>(b.counts[i]));
  }
  metrics_.batches(b.rec.state).Increment();
}

void EngineGauges::on_items_reloaded(Batch& b,
                                     const std::array<int64_t, core::kItemStateCount>& before) {
  for (int i = 0; i < core::kItemStateCount; ++i) {
    metrics_.items(static_cast<ItemState>(i))
        .Increment(static_cast<double>(b.counts[i] - before[i]));
  }
}

void EngineGauges::on_item_state(Batch& /*b*/, int64_t /*index*/, ItemState from, ItemState to) {
  metrics_.items(from).Decrement();
  metrics_.items(to).Increment();
}

void EngineGauges::on_batch_state(Batch& /*b*/, core::BatchState from, core::BatchState to) {
  metrics_.batches(from).Decrement();
  metrics_.batches(to).Increment();
  if (core::is_final(to)) metrics_.batches_finished(to).Increment();
}

void EngineGauges::update(const Dispatcher::Gates& global, const core::LaunchScheduler& scheduler) {
  int64_t ready = 0;
  int64_t held = 0;
  int64_t oldest_ms = 0;
  const int64_t now_ms = wall_.unix_ms();
  std::map<std::string, int64_t> children;
  std::map<std::string_view, int64_t> waiting;
  for (std::string_view reason : kWaitNames) waiting[reason] = 0;
  for (const auto& [key, bp] : book_.batches()) {
    Batch& b = *bp;
    const bool own_limits = scheduler.held_by_own_limits(b.key);
    update_batch(b, global, own_limits, children, waiting);
    held += static_cast<int64_t>(b.items.size());
    if (core::is_final(b.rec.state)) continue;
    ready += static_cast<int64_t>(b.ready.size());
    if ((!b.ready.empty() || !b.deployments.empty()) &&
        b.count(ItemState::kPending) + b.count(ItemState::kRetryWait) > 0) {
      oldest_ms = std::max(oldest_ms, now_ms - b.rec.created_at_ms);
    }
  }
  ready_items_ = ready;
  metrics_.set_children(children);
  metrics_.set_batches_waiting(waiting);
  metrics_.ready_items().Set(static_cast<double>(ready));
  metrics_.held_items().Set(static_cast<double>(held));
  metrics_.oldest_pending_seconds().Set(static_cast<double>(oldest_ms) / 1000.0);
}

void EngineGauges::update_batch(Batch& b, const Dispatcher::Gates& gates, bool own_limits,
                                std::map<std::string, int64_t>& children,
                                std::map<std::string_view, int64_t>& waiting) {
  int64_t running = 0;
  if (b.count(ItemState::kLaunched) > 0) {
    for (const auto& [index, item] : b.items) {
      if (item.state == ItemState::kLaunched && !item.flow_run_state.empty()) {
        children[item.flow_run_state] += 1;
        if (item.flow_run_state == "Running") ++running;
      }
    }
  }
  if (core::is_final(b.rec.state)) {
    metrics_.remove_batch(b.rec.id);
  } else if (b.rec.total > 0) {
    const int64_t queued = b.count(ItemState::kPending) + b.count(ItemState::kLaunching) +
                           b.count(ItemState::kRetryWait);
    metrics::BatchSample sample{core::to_seconds(clock_.now().time_since_epoch()), b.rec.total,
                                b.rec.total - queued, b.done()};
    Progress& p = b.progress;
    p.rate.add(sample);
    p.waiting_on = waiting_on(b, gates, own_limits);
    p.children_running = running;
    metrics::Metrics::BatchView view{
        p.rate.launch_rate(), p.rate.completion_rate(), p.rate.eta_s(), running, {}};
    for (Wait w : p.waiting_on) {
      view.waiting_on.push_back(kWaitNames[static_cast<size_t>(w)]);
      waiting[kWaitNames[static_cast<size_t>(w)]] += 1;
    }
    metrics_.update_batch(b.rec.id, sample, view);
  }
}

json EngineGauges::batch_views() const {
  // Rates, ETA and running children of active batches, for the status page.
  json out = json::object();
  for (const auto& [k, b] : book_.batches()) {
    if (core::is_final(b->rec.state)) continue;
    const auto& max_running = b->spec.limits.max_running;
    json v = progress_json(*b);
    v["children_running"] = b->progress.children_running;
    v["max_running"] = max_running ? json(*max_running) : json(nullptr);
    v["at_running_cap"] = max_running.has_value() && b->running() >= *max_running;
    out[b->rec.id] = std::move(v);
  }
  return out;
}

}  // namespace floodgate::engine
