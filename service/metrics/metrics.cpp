#include "metrics/metrics.h"

#include <prometheus/text_serializer.h>

#include <algorithm>
#include <sstream>

namespace floodgate::metrics {

namespace {
const prometheus::Histogram::BucketBoundaries kLatencyBuckets = {
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30};

prometheus::Family<prometheus::Counter>& counter_family(prometheus::Registry& r, const char* name,
                                                        const char* help) {
  return prometheus::BuildCounter().Name(name).Help(help).Register(r);
}

prometheus::Family<prometheus::Gauge>& gauge_family(prometheus::Registry& r, const char* name,
                                                    const char* help) {
  return prometheus::BuildGauge().Name(name).Help(help).Register(r);
}

prometheus::Family<prometheus::Histogram>& histogram_family(prometheus::Registry& r,
                                                            const char* name, const char* help) {
  return prometheus::BuildHistogram().Name(name).Help(help).Register(r);
}

std::string status_class(int status) {
  if (status <= 0) return "error";
  return std::to_string(status / 100) + "xx";
}
}  // namespace

Metrics::Metrics(const std::string& version) : registry_(std::make_shared<prometheus::Registry>()) {
  auto& r = *registry_;
  gauge_family(r, "floodgate_build_info", "Build information; always 1.")
      .Add({{"version", version}})
      .Set(1);
  register_request_metrics(r);
  register_limiter_metrics(r);
  register_work_metrics(r);
  register_batch_metrics(r);
}

void Metrics::register_request_metrics(prometheus::Registry& r) {
  launches_family_ =
      &counter_family(r, "floodgate_launches_total",
                      "Child runs launched, by outcome (created, existing, failed).");
  requests_family_ = &counter_family(r, "floodgate_prefect_requests_total",
                                     "Requests sent to Prefect, by endpoint and status class.");
  latency_family_ = &histogram_family(r, "floodgate_prefect_request_duration_seconds",
                                      "Latency of requests to Prefect, by endpoint.");
  retries_family_ = &counter_family(
      r, "floodgate_retries_total",
      "Retries, by reason (timeout, connection, http_503, ...): a launch counts once per run, "
      "so a failed bulk create counts once for each run in it.");
  api_family_ = &counter_family(r, "floodgate_api_requests_total",
                                "Requests to floodgate's own REST API, by route and status code.");
  api_latency_family_ =
      &histogram_family(r, "floodgate_api_request_duration_seconds",
                        "Time to answer a request to floodgate's REST API, by route.");
}

void Metrics::register_limiter_metrics(prometheus::Registry& r) {
  in_flight_ = &gauge_family(r, "floodgate_prefect_requests_in_flight",
                             "Requests to Prefect awaiting an answer.")
                    .Add({});
  in_flight_limit_ = &gauge_family(r, "floodgate_prefect_in_flight_limit",
                                   "Current cap on requests in flight (adaptive or fixed).")
                          .Add({});
  tokens_ = &gauge_family(r, "floodgate_token_bucket_tokens",
                          "Tokens in the global token bucket (requests that may start now).")
                 .Add({});
  budget_share_ = &gauge_family(r, "floodgate_budget_share",
                                "The part of the global rate and in-flight ceiling this replica "
                                "may use (1 with one replica).")
                       .Add({});
  budget_share_->Set(1);
  replicas_live_ = &gauge_family(r, "floodgate_replicas_live",
                                 "Replicas sharing the PostgreSQL store whose heartbeat is "
                                 "fresh, this one included (1 without sharing).")
                        .Add({});
  replicas_live_->Set(1);
  latency_floor_ = &gauge_family(r, "floodgate_prefect_latency_floor_seconds",
                                 "The adaptive limit's estimate of Prefect's no-load latency.")
                        .Add({});
  latency_recent_ = &gauge_family(r, "floodgate_prefect_latency_recent_seconds",
                                  "The adaptive limit's recent latency estimate.")
                         .Add({});
  paused_remaining_ = &gauge_family(r, "floodgate_prefect_backoff_remaining_seconds",
                                    "Seconds left of a global pause ordered by Retry-After.")
                           .Add({});
  breaker_open_ = &gauge_family(r, "floodgate_circuit_breaker_open",
                                "1 while the circuit breaker keeps requests from Prefect.")
                       .Add({});
  retries_denied_ = &counter_family(r, "floodgate_retries_deferred_total",
                                    "Retries deferred because the retry budget was spent.")
                         .Add({});
  retry_budget_tokens_ = &gauge_family(r, "floodgate_retry_budget_tokens",
                                       "Retries the retry budget allows now (0: retries wait).")
                              .Add({});
  breaker_state_family_ = &gauge_family(r, "floodgate_circuit_breaker_state",
                                        "1 for the circuit breaker's current state (closed, open, "
                                        "half_open), 0 for the others.");
  for (const char* st : {"closed", "open", "half_open"}) {
    breaker_state_family_->Add({{"state", st}}).Set(std::string_view(st) == "closed" ? 1 : 0);
  }
}

void Metrics::register_work_metrics(prometheus::Registry& r) {
  auto& items = gauge_family(r, "floodgate_items", "Items of all known batches, by state.");
  for (int i = 0; i < core::kItemStateCount; ++i) {
    items_[i] = &items.Add({{"state", std::string(core::kItemStateNames[i])}});
  }
  auto& batches = gauge_family(r, "floodgate_batches", "Batches, by state.");
  for (int i = 0; i < core::kBatchStateCount; ++i) {
    batches_[i] = &batches.Add({{"state", std::string(core::kBatchStateNames[i])}});
  }
  child_deadlines_family_ = &counter_family(
      r, "floodgate_child_deadlines_total",
      "Children given up on: past their start or run deadline, or deleted in Prefect; by reason "
      "and by what was done (report: STUCK, fail: cancelled and FAILED, relaunch).");
  start_pace_cuts_ = &counter_family(r, "floodgate_start_pace_cuts_total",
                                     "Cuts of a batch's start pace (launch rate and running cap) "
                                     "after children crashed soon after they started.")
                          .Add({});
  batches_finished_family_ = &counter_family(r, "floodgate_batches_finished_total",
                                             "Batches that reached a final state, by that state.");
  for (int i = 0; i < core::kBatchStateCount; ++i) {
    if (core::is_final(static_cast<core::BatchState>(i))) {
      batches_finished_family_->Add({{"state", std::string(core::kBatchStateNames[i])}});
    }
  }
  ready_items_ = &gauge_family(r, "floodgate_items_ready",
                               "Items that may be launched now, waiting for a slot or a token.")
                      .Add({});
  held_items_ = &gauge_family(r, "floodgate_items_held",
                              "Items held in memory (being launched, followed or written); the "
                              "others are in the store only.")
                     .Add({});
  oldest_pending_ = &gauge_family(r, "floodgate_oldest_pending_age_seconds",
                                  "Age of the oldest batch that still has items to launch.")
                         .Add({});
  store_flushes_ = &counter_family(r, "floodgate_store_flushes_total",
                                   "Batched transactions written to the store.")
                        .Add({});
  store_flush_seconds_ = &histogram_family(r, "floodgate_store_flush_duration_seconds",
                                           "Time to write one batched transaction to the store.")
                              .Add({}, kLatencyBuckets);
}

void Metrics::register_batch_metrics(prometheus::Registry& r) {
  children_family_ = &gauge_family(r, "floodgate_children",
                                   "Launched children followed, by the Prefect state last seen.");
  progress_family_ = &gauge_family(r, "floodgate_batch_progress_ratio",
                                   "Share of an active batch's items that are done (first 50 "
                                   "active batches; removed when the batch ends).");
  remaining_family_ = &gauge_family(r, "floodgate_batch_remaining_items",
                                    "Items of an active batch not yet done (first 50 active "
                                    "batches; removed when the batch ends).");
  launch_rate_family_ = &gauge_family(r, "floodgate_batch_launch_rate",
                                      "Items of an active batch started per second over the last "
                                      "minute (first 50 active batches; removed when it ends).");
  eta_family_ = &gauge_family(r, "floodgate_batch_eta_seconds",
                              "Seconds until an active batch is done at its last minute's "
                              "completion rate; absent while nothing completes.");
  running_family_ = &gauge_family(r, "floodgate_batch_children_running",
                                  "Children of an active batch that Prefect last showed Running.");
  waiting_family_ = &gauge_family(
      r, "floodgate_batch_waiting",
      "1 for each reason an active batch waits on now (paused, deployment, parent, "
      "prefect_errors, start_pacing, running_cap, backlog, batch_rate, token_bucket, "
      "in_flight_limit, children; first 50 active batches; removed when it no longer holds).");
  batches_waiting_family_ =
      &gauge_family(r, "floodgate_batches_waiting",
                    "Active batches waiting on each reason (a batch may wait on several at once).");
}

prometheus::Histogram& Metrics::api_request_duration(const std::string& route) {
  return api_latency_family_->Add({{"route", route}}, kLatencyBuckets);
}

void Metrics::set_breaker_state(std::string_view state) {
  for (const char* st : {"closed", "open", "half_open"}) {
    breaker_state_family_->Add({{"state", st}}).Set(state == st ? 1 : 0);
  }
}

prometheus::Counter& Metrics::child_deadlines(std::string_view reason, std::string_view action) {
  return child_deadlines_family_->Add(
      {{"reason", std::string(reason)}, {"action", std::string(action)}});
}

prometheus::Counter& Metrics::batches_finished(core::BatchState s) {
  return batches_finished_family_->Add({{"state", std::string(core::to_string(s))}});
}

void Metrics::update_batch(const std::string& batch_id, const BatchSample& sample,
                           const BatchView& view) {
  const int64_t remaining = sample.total - sample.done;
  set_batch_progress(
      batch_id, sample.total > 0 ? static_cast<double>(sample.done) / sample.total : 0, remaining);
  auto it = batch_rates_.find(batch_id);
  if (it == batch_rates_.end()) {
    if (batch_rates_.size() >= kMaxBatchSeries) return;
    it = batch_rates_.emplace(batch_id, BatchRates{}).first;
    it->second.launch_rate = &launch_rate_family_->Add({{"batch_id", batch_id}});
    it->second.running = &running_family_->Add({{"batch_id", batch_id}});
  }
  BatchRates& br = it->second;
  br.launch_rate->Set(view.launch_rate);
  br.running->Set(static_cast<double>(view.children_running));
  if (view.eta_s) {
    if (br.eta == nullptr) br.eta = &eta_family_->Add({{"batch_id", batch_id}});
    br.eta->Set(*view.eta_s);
  } else if (br.eta != nullptr) {
    eta_family_->Remove(br.eta);
    br.eta = nullptr;
  }
  // One series per reason the batch waits on now; a reason that no longer holds is removed.
  for (auto w = br.waiting.begin(); w != br.waiting.end();) {
    if (std::find(view.waiting_on.begin(), view.waiting_on.end(), w->first) ==
        view.waiting_on.end()) {
      waiting_family_->Remove(w->second);
      w = br.waiting.erase(w);
    } else {
      ++w;
    }
  }
  for (std::string_view reason : view.waiting_on) {
    auto& g = br.waiting[reason];
    if (g == nullptr) {
      g = &waiting_family_->Add({{"batch_id", batch_id}, {"reason", std::string(reason)}});
    }
    g->Set(1);
  }
}

void Metrics::set_batches_waiting(const std::map<std::string_view, int64_t>& by_reason) {
  for (const auto& [reason, n] : by_reason) {
    batches_waiting_family_->Add({{"reason", std::string(reason)}}).Set(static_cast<double>(n));
  }
}

void Metrics::set_children(const std::map<std::string, int64_t>& by_state) {
  for (auto& [name, gauge] : children_) {
    if (by_state.count(name) == 0) gauge->Set(0);
  }
  for (const auto& [name, n] : by_state) {
    auto it = children_.find(name);
    if (it == children_.end()) {
      if (children_.size() >= 64) continue;  // custom state names: keep the label set bounded
      it = children_.emplace(name, &children_family_->Add({{"state", name}})).first;
    }
    it->second->Set(static_cast<double>(n));
  }
}

void Metrics::set_batch_progress(const std::string& batch_id, double done_ratio,
                                 int64_t remaining) {
  auto it = batch_series_.find(batch_id);
  if (it == batch_series_.end()) {
    if (batch_series_.size() >= kMaxBatchSeries) return;
    it = batch_series_
             .emplace(batch_id, std::make_pair(&progress_family_->Add({{"batch_id", batch_id}}),
                                               &remaining_family_->Add({{"batch_id", batch_id}})))
             .first;
  }
  it->second.first->Set(done_ratio);
  it->second.second->Set(static_cast<double>(remaining));
}

void Metrics::remove_batch(const std::string& batch_id) {
  if (auto r = batch_rates_.find(batch_id); r != batch_rates_.end()) {
    launch_rate_family_->Remove(r->second.launch_rate);
    running_family_->Remove(r->second.running);
    if (r->second.eta != nullptr) eta_family_->Remove(r->second.eta);
    for (auto& [reason, g] : r->second.waiting) waiting_family_->Remove(g);
    batch_rates_.erase(r);
  }
  auto it = batch_series_.find(batch_id);
  if (it == batch_series_.end()) return;
  progress_family_->Remove(it->second.first);
  remaining_family_->Remove(it->second.second);
  batch_series_.erase(it);
}

std::string Metrics::serialize() const {
  std::ostringstream out;
  prometheus::TextSerializer().Serialize(out, registry_->Collect());
  return out.str();
}

prometheus::Counter& Metrics::launches(std::string_view outcome) {
  return launches_family_->Add({{"outcome", std::string(outcome)}});
}

prometheus::Counter& Metrics::prefect_requests(const std::string& endpoint, int status) {
  return requests_family_->Add({{"endpoint", endpoint}, {"status_class", status_class(status)}});
}

prometheus::Histogram& Metrics::prefect_latency(const std::string& endpoint) {
  return latency_family_->Add({{"endpoint", endpoint}}, kLatencyBuckets);
}

prometheus::Counter& Metrics::retries(const std::string& reason) {
  return retries_family_->Add({{"reason", reason}});
}

prometheus::Counter& Metrics::api_requests(const std::string& route, int status) {
  return api_family_->Add({{"route", route}, {"code", std::to_string(status)}});
}

}  // namespace floodgate::metrics
