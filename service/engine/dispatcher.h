#pragma once

#include <array>
#include <deque>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <queue>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/circuit_breaker.h"
#include "core/clock.h"
#include "core/concurrency_limit.h"
#include "core/contention_pause.h"
#include "core/global_backoff.h"
#include "core/launch_scheduler.h"
#include "core/random.h"
#include "core/retry_budget.h"
#include "core/timer_queue.h"
#include "core/token_bucket.h"
#include "core/windowed_counter.h"
#include "engine/request.h"
#include "metrics/metrics.h"
#include "prefect/http_client.h"
#include "prefect/prefect_api.h"

namespace floodgate::engine {

/// The global limits of the dispatcher.
struct DispatchOptions {
  double rate = 0;   // requests per second to Prefect; 0 = no token bucket
  double burst = 0;  // tokens; 0 = max(1, rate)
  int max_in_flight = 256;
  bool adaptive = true;
  std::string limit_algorithm = "gradient";  // when adaptive: "gradient" or "aimd"
  int min_in_flight = 1;
  int initial_in_flight = 16;
  double retry_budget_ratio = 0.2;
  double retry_budget_min_per_s = 10;
};

/// Decides what may be sent now (token bucket, then the concurrency limit, the global back-off,
/// the circuit breaker, the retry budget and the launch scheduler), sends it, records each
/// answer for the limits once and hands it to the request's owner. Holds the retry heap and
/// the control queue, counts what is in flight and arms the next wake-up.
class Dispatcher final : public Outbox, public RequestOwner {
 public:
  Dispatcher(core::Clock& clock, core::WallClock& wall, core::Random& random,
             core::TimerQueue& timers, DispatchOptions options, core::LaunchScheduler& scheduler,
             prefect::HttpClient& http, prefect::PrefectApi& api, metrics::Metrics& metrics);
  ~Dispatcher() override;
  Dispatcher(const Dispatcher&) = delete;
  Dispatcher& operator=(const Dispatcher&) = delete;

  void set_launch_source(LaunchSource* source) { launches_ = source; }

  // Outbox.
  void enqueue(std::shared_ptr<Request> request) override;
  void enqueue_after(std::shared_ptr<Request> request, core::Duration delay) override;
  void retry_at(core::TimePoint due, uint64_t batch, int64_t index, bool charge) override;
  void wake_at(core::TimePoint when) override;
  void dispatch_now() override { dispatch(); }

  /// Sends no more; `on_idle` runs after each answer while nothing is in flight.
  void stop_sending(std::function<void()> on_idle);
  int in_flight() const { return in_flight_; }
  bool breaker_open() const { return breaker_.state() == core::CircuitBreaker::State::kOpen; }
  int effective_limit() const;
  /// Replicas sharing one Prefect: this one may use `share` (0..1) of the global rate and
  /// in-flight ceiling, and takes the most cautious replica's adaptive limit, as a ratio of the
  /// ceiling, when it is below its own. A share of 0 sends nothing. 1 and 1 alone (the default).
  void set_share(double share, double peers_limit_ratio);
  double share() const { return share_; }
  /// The adaptive limit over the in-flight ceiling, for the other replicas.
  double limit_ratio() const;
  /// Which global gates hold launches back now, for the batches' "waiting on".
  struct Gates {
    bool prefect_errors = false;  // paused after a 429/503/contention, or the breaker open
    bool token_bucket = false;    // the global token bucket is empty
    bool in_flight_limit = false;
  };
  Gates gates() const;
  /// The limits' state for /readyz and the status page.
  nlohmann::json status_json() const;
  void update_gauges();

  // The dispatcher's own requests: the CSRF token and the breaker's health probes.
  std::optional<prefect::HttpRequest> build(Request& request) override;
  void on_answer(Request& request, const prefect::HttpResponse& response,
                 const prefect::Classification& c) override;

 private:
  struct RetryEntry {
    core::TimePoint due;
    uint64_t batch;
    int64_t index;
    bool charge = true;     // false: a re-send at no cost (bulk fallback, CSRF, stale connection)
    bool deferred = false;  // already held back once by the retry budget
    bool operator>(const RetryEntry& o) const { return due > o.due; }
  };
  struct EndpointMetrics {
    prometheus::Histogram* latency;
    std::array<prometheus::Counter*, 6> by_class;  // error,1xx..5xx
  };

  void dispatch();
  void release_due_retries(core::TimePoint now);
  /// One pass of the gates; false when nothing more may go now.
  bool send_one(core::TimePoint now);
  void arm_next_wake(core::TimePoint now);
  /// How long the ramp after a pause holds the next request back; zero when not ramping.
  core::Duration pace_wait(core::TimePoint now) const;
  /// Pauses every request until `until` (a Retry-After, contention).
  void pause_all(core::TimePoint now, core::TimePoint until);
  bool send_control();
  bool send_launch();
  void send(std::shared_ptr<Request> request, prefect::HttpRequest http);
  void on_response(const std::shared_ptr<Request>& request, prefect::HttpResponse response);
  /// Feeds one answer to the limit, the breaker and the pauses.
  void record(const Request& request, const prefect::HttpResponse& response,
              const prefect::Classification& c, core::Duration rtt, core::TimePoint now);
  EndpointMetrics& endpoint_metrics(size_t kind);

  core::Clock& clock_;
  core::WallClock& wall_;
  core::TimerQueue& timers_;
  DispatchOptions options_;
  core::LaunchScheduler& scheduler_;
  prefect::HttpClient& http_;
  prefect::PrefectApi& api_;
  metrics::Metrics& metrics_;
  LaunchSource* launches_ = nullptr;

  core::TokenBucket bucket_;
  std::unique_ptr<core::ConcurrencyLimit> limit_;
  core::GlobalBackoff backoff_;
  core::RetryBudget budget_;
  core::CircuitBreaker breaker_;
  core::ContentionPause contention_;

  std::priority_queue<RetryEntry, std::vector<RetryEntry>, std::greater<>> retries_;
  std::deque<std::shared_ptr<Request>> control_queue_;  // resolves, reads, cancels, lookups
  bool csrf_in_flight_ = false;
  bool probe_in_flight_ = false;
  int in_flight_ = 0;
  int retry_credit_ = 0;                     // items already paid for by a retry-budget token
  core::TimePoint retries_blocked_until_{};  // the retry budget said no until then
  bool gated_ = false;  // the last dispatch stopped at a gate, not for want of work
  core::WindowedCounter sent_{std::chrono::seconds(2), 20};  // requests sent, for the pace
  std::optional<core::TimePoint> last_sent_;
  double ramp_rate_ = 0;  // requests a second before the pause the ramp recovers from
  bool stopped_ = false;
  std::function<void()> on_idle_;
  double share_ = 1.0;
  double peers_limit_ratio_ = 1.0;

  std::optional<core::TimerQueue::Id> wake_timer_;
  std::optional<core::TimePoint> wake_at_;
  std::unordered_map<size_t, EndpointMetrics> endpoint_metrics_;
  std::shared_ptr<bool> alive_;  // answers and delayed requests arriving after destruction
};

}  // namespace floodgate::engine
