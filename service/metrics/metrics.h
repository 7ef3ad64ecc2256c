#pragma once

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <array>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/states.h"
#include "metrics/batch_rate.h"

namespace floodgate::metrics {

/// Every metric floodgate exports, registered once at start-up. Names follow Prometheus
/// conventions: one `floodgate_` prefix, base units, counters end in `_total`.
class Metrics {
 public:
  explicit Metrics(const std::string& version);

  /// The text exposition format of everything registered.
  std::string serialize() const;

  /// launches by outcome: created, existing, failed
  prometheus::Counter& launches(std::string_view outcome);
  /// Prefect requests by endpoint and status class ("2xx", "4xx", "5xx", "error")
  prometheus::Counter& prefect_requests(const std::string& endpoint, int status);
  prometheus::Histogram& prefect_latency(const std::string& endpoint);
  prometheus::Counter& retries(const std::string& reason);

  prometheus::Gauge& requests_in_flight() { return *in_flight_; }
  prometheus::Gauge& in_flight_limit() { return *in_flight_limit_; }
  prometheus::Gauge& token_bucket_tokens() { return *tokens_; }
  prometheus::Gauge& budget_share() { return *budget_share_; }
  prometheus::Gauge& replicas_live() { return *replicas_live_; }
  prometheus::Gauge& latency_floor_seconds() { return *latency_floor_; }
  prometheus::Gauge& latency_recent_seconds() { return *latency_recent_; }
  prometheus::Gauge& paused_seconds_remaining() { return *paused_remaining_; }
  prometheus::Gauge& breaker_open() { return *breaker_open_; }
  prometheus::Counter& retries_denied_by_budget() { return *retries_denied_; }
  prometheus::Gauge& items(core::ItemState s) { return *items_[static_cast<int>(s)]; }
  prometheus::Gauge& batches(core::BatchState s) { return *batches_[static_cast<int>(s)]; }
  prometheus::Gauge& ready_items() { return *ready_items_; }
  prometheus::Gauge& held_items() { return *held_items_; }
  prometheus::Gauge& oldest_pending_seconds() { return *oldest_pending_; }
  prometheus::Counter& store_flushes() { return *store_flushes_; }
  prometheus::Histogram& store_flush_seconds() { return *store_flush_seconds_; }
  prometheus::Counter& api_requests(const std::string& route, int status);
  /// Time from a request's arrival to its answer, by route template.
  prometheus::Histogram& api_request_duration(const std::string& route);
  /// Retry tokens the retry budget holds now.
  prometheus::Gauge& retry_budget_tokens() { return *retry_budget_tokens_; }
  /// Sets the breaker's state series: 1 for the current state ("closed", "open", "half_open").
  void set_breaker_state(std::string_view state);
  /// Batches that reached a final state, by that state.
  prometheus::Counter& batches_finished(core::BatchState s);
  /// Children given up on, by reason (start_deadline, run_deadline, deleted) and by what was
  /// done (report, fail, relaunch).
  prometheus::Counter& child_deadlines(std::string_view reason, std::string_view action);
  /// Cuts of a batch's start pace after children crashed as they started.
  prometheus::Counter& start_pace_cuts() { return *start_pace_cuts_; }

  /// What the per-batch series show for an active batch.
  struct BatchView {
    double launch_rate = 0;      // items started per second (last minute)
    double completion_rate = 0;  // items finished per second (last minute)
    std::optional<double> eta_s;
    int64_t children_running = 0;
    std::vector<std::string_view> waiting_on;  // reasons, most binding first
  };
  /// Sets an active batch's progress, remaining, launch rate, ETA, running-children and
  /// waiting-on series (first kMaxBatchSeries batches only; called once a second).
  void update_batch(const std::string& batch_id, const BatchSample& sample, const BatchView& view);
  /// Active batches by what they wait on (every active batch; a batch may wait on several).
  void set_batches_waiting(const std::map<std::string_view, int64_t>& by_reason);

  /// Children by the Prefect state name last seen ("Scheduled", "Running", "Late", ...).
  void set_children(const std::map<std::string, int64_t>& by_state);
  /// Progress of an active batch; only the first kMaxBatchSeries batches get series.
  void set_batch_progress(const std::string& batch_id, double done_ratio, int64_t remaining);
  /// Drops the series of a batch that ended.
  void remove_batch(const std::string& batch_id);
  static constexpr size_t kMaxBatchSeries = 50;

 private:
  // The constructor's parts, by what the metrics are about.
  void register_request_metrics(prometheus::Registry& r);
  void register_limiter_metrics(prometheus::Registry& r);
  void register_work_metrics(prometheus::Registry& r);
  void register_batch_metrics(prometheus::Registry& r);

  std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Family<prometheus::Counter>* launches_family_;
  prometheus::Family<prometheus::Counter>* requests_family_;
  prometheus::Family<prometheus::Histogram>* latency_family_;
  prometheus::Family<prometheus::Counter>* retries_family_;
  prometheus::Family<prometheus::Counter>* api_family_;
  prometheus::Gauge* in_flight_;
  prometheus::Gauge* in_flight_limit_;
  prometheus::Gauge* tokens_;
  prometheus::Gauge* budget_share_;
  prometheus::Gauge* replicas_live_;
  prometheus::Gauge* latency_floor_;
  prometheus::Gauge* latency_recent_;
  prometheus::Gauge* paused_remaining_;
  prometheus::Gauge* breaker_open_;
  prometheus::Counter* retries_denied_;
  std::array<prometheus::Gauge*, core::kItemStateCount> items_{};
  std::array<prometheus::Gauge*, core::kBatchStateCount> batches_{};
  prometheus::Gauge* ready_items_;
  prometheus::Gauge* held_items_;
  prometheus::Gauge* oldest_pending_;
  prometheus::Counter* store_flushes_;
  prometheus::Histogram* store_flush_seconds_;
  prometheus::Family<prometheus::Gauge>* children_family_;
  prometheus::Family<prometheus::Gauge>* progress_family_;
  prometheus::Family<prometheus::Gauge>* remaining_family_;
  std::map<std::string, prometheus::Gauge*> children_;
  std::map<std::string, std::pair<prometheus::Gauge*, prometheus::Gauge*>> batch_series_;
  prometheus::Family<prometheus::Histogram>* api_latency_family_;
  prometheus::Gauge* retry_budget_tokens_;
  prometheus::Family<prometheus::Gauge>* breaker_state_family_;
  prometheus::Family<prometheus::Counter>* batches_finished_family_;
  prometheus::Family<prometheus::Counter>* child_deadlines_family_;
  prometheus::Counter* start_pace_cuts_;
  prometheus::Family<prometheus::Gauge>* launch_rate_family_;
  prometheus::Family<prometheus::Gauge>* eta_family_;
  prometheus::Family<prometheus::Gauge>* running_family_;
  prometheus::Family<prometheus::Gauge>* waiting_family_;
  prometheus::Family<prometheus::Gauge>* batches_waiting_family_;
  struct BatchRates {
    prometheus::Gauge* launch_rate = nullptr;
    prometheus::Gauge* eta = nullptr;  // present only while an ETA is known
    prometheus::Gauge* running = nullptr;
    std::map<std::string_view, prometheus::Gauge*> waiting;  // present while it waits on that
  };
  std::map<std::string, BatchRates> batch_rates_;
};

}  // namespace floodgate::metrics
