#include "engine/dispatcher.h"

#include <algorithm>
#include <bit>
#include <utility>

#include "metrics/log.h"
#include "prefect/transient.h"

namespace floodgate::engine {

namespace {

core::Duration ms(int64_t n) { return std::chrono::milliseconds(n); }

// The slowest the ramp after a pause paces requests, a second.
constexpr double kMinPacePerS = 2;

// Metric names of the payload kinds, in the order of Payload's alternatives.
constexpr const char* kEndpointNames[] = {
    "read_deployment",  "create_flow_run", "create_flow_run_bulk",
    "filter_flow_runs", "set_state",       "csrf_token",
    "health",           "create_task_run", "filter_flow_runs",
    "bulk_set_state"};
static_assert(std::size(kEndpointNames) == std::variant_size_v<Payload>);

// Requests of one kind and of like size (runs in a bulk create, ids in a read) take like
// times; the adaptive limit compares each answer with the floor of its class.
int sample_class(const Request& r) {
  const int kind = static_cast<int>(r.payload.index());
  size_t size = 0;
  if (const auto* bulk = std::get_if<CreateRuns>(&r.payload)) {
    size = bulk->indexes.size();
  } else if (const auto* read = std::get_if<ReadRuns>(&r.payload)) {
    size = read->indexes.size();
  } else {
    return kind * 8;
  }
  const auto n = static_cast<uint64_t>(std::max<size_t>(1, size));
  const int size_class = std::min(7, static_cast<int>(std::bit_width(n)) - 1);  // 1, 2-3, 4-7…
  return kind * 8 + size_class;
}

bool is_own(const Request& r) {
  return std::holds_alternative<CsrfToken>(r.payload) ||
         std::holds_alternative<HealthProbe>(r.payload);
}

std::unique_ptr<core::ConcurrencyLimit> make_limit(const DispatchOptions& o) {
  if (o.adaptive) {
    return core::make_limit(o.limit_algorithm, o.initial_in_flight, o.min_in_flight,
                            o.max_in_flight);
  }
  return core::make_limit("fixed", o.max_in_flight, o.max_in_flight, o.max_in_flight);
}

double bucket_size(const DispatchOptions& o) {
  return o.rate > 0 ? std::max(1.0, o.burst > 0 ? o.burst : o.rate) : 0;
}

}  // namespace

Dispatcher::Dispatcher(core::Clock& clock, core::WallClock& wall, core::Random& random,
                       core::TimerQueue& timers, DispatchOptions options,
                       core::LaunchScheduler& scheduler, prefect::HttpClient& http,
                       prefect::PrefectApi& api, metrics::Metrics& metrics)
    : clock_(clock),
      wall_(wall),
      timers_(timers),
      options_(std::move(options)),
      scheduler_(scheduler),
      http_(http),
      api_(api),
      metrics_(metrics),
      bucket_(clock_, options_.rate, bucket_size(options_)),
      limit_(make_limit(options_)),
      backoff_(clock_),
      budget_(clock_, options_.retry_budget_ratio, options_.retry_budget_min_per_s),
      breaker_(clock_, random, core::CircuitBreaker::Options{}),
      alive_(std::make_shared<bool>(true)) {}

Dispatcher::~Dispatcher() {
  *alive_ = false;
  if (wake_timer_) timers_.cancel(*wake_timer_);
}

void Dispatcher::enqueue(std::shared_ptr<Request> request) {
  control_queue_.push_back(std::move(request));
}

void Dispatcher::enqueue_after(std::shared_ptr<Request> request, core::Duration delay) {
  std::weak_ptr<bool> alive = alive_;
  timers_.schedule(clock_.now() + delay, [this, alive, request] {
    if (alive.expired()) return;
    control_queue_.push_back(request);
    dispatch();
  });
}

void Dispatcher::retry_at(core::TimePoint due, uint64_t batch, int64_t index, bool charge) {
  retries_.push({due, batch, index, charge});
}

void Dispatcher::wake_at(core::TimePoint when) {
  if (wake_at_ && *wake_at_ <= when) return;
  wake_at_ = when;
  if (wake_timer_) timers_.cancel(*wake_timer_);
  wake_timer_ = timers_.schedule(when, [this] {
    wake_at_.reset();
    wake_timer_.reset();
    dispatch();
  });
}

void Dispatcher::stop_sending(std::function<void()> on_idle) {
  stopped_ = true;
  on_idle_ = std::move(on_idle);
  if (wake_timer_) timers_.cancel(*wake_timer_);
  wake_timer_.reset();
  wake_at_.reset();
  log::info("draining", {{"in_flight", in_flight_}});
  if (in_flight_ == 0 && on_idle_) on_idle_();
}

void Dispatcher::set_share(double share, double peers_limit_ratio) {
  share = std::clamp(share, 0.0, 1.0);
  peers_limit_ratio = std::clamp(peers_limit_ratio, 0.0, 1.0);
  if (share == share_ && peers_limit_ratio == peers_limit_ratio_) return;
  share_ = share;
  peers_limit_ratio_ = peers_limit_ratio;
  if (options_.rate > 0 && share_ > 0) {
    // At least one token of burst, or a small share could never send anything.
    bucket_.set_rate(options_.rate * share_, std::max(1.0, bucket_size(options_) * share_));
  }
  dispatch();
}

double Dispatcher::limit_ratio() const {
  return options_.max_in_flight > 0
             ? std::min(1.0, static_cast<double>(limit_->limit()) / options_.max_in_flight)
             : 1.0;
}

int Dispatcher::effective_limit() const {
  // Replicas sharing one Prefect: this one's share of the ceiling, and the most cautious
  // replica's limit. Its own adaptive limit is not scaled by the share: it is what this replica
  // measured Prefect to take from it.
  const double ceiling = options_.max_in_flight * share_;
  double limit = std::min({static_cast<double>(limit_->limit()), ceiling,
                           peers_limit_ratio_ * options_.max_in_flight}) *
                 backoff_.resume_fraction();
  // Half-open trials go one at a time: two at once can lose to each other on a server that
  // serialises writes (SQLite), and the breaker would reopen for a race it caused.
  if (breaker_.is_half_open()) limit = 1.0;
  return std::max(1, static_cast<int>(limit));
}

Dispatcher::Gates Dispatcher::gates() const {
  Gates g;
  g.prefect_errors = breaker_.state() != core::CircuitBreaker::State::kClosed ||
                     backoff_.paused() || backoff_.ramping();
  g.token_bucket = share_ <= 0 || bucket_.time_until(1) > core::Duration(0);
  g.in_flight_limit = in_flight_ >= effective_limit();
  return g;
}

void Dispatcher::dispatch() {
  const auto now = clock_.now();
  release_due_retries(now);
  gated_ = true;
  while (!stopped_ && send_one(now)) {
  }
  arm_next_wake(now);
}

void Dispatcher::release_due_retries(core::TimePoint now) {
  while (!retries_.empty() && retries_.top().due <= now) {
    RetryEntry e = retries_.top();
    retries_.pop();
    if (!launches_->retry_wanted(e.batch, e.index)) continue;
    // The budget counts requests: one retry token pays for as many items as one request
    // carries, so a failed bulk create costs one retry, not a hundred.
    if (e.charge && retry_credit_ == 0) {
      if (!budget_.try_acquire_retry()) {
        // Counted once per retry, however many times it is looked at again.
        if (!e.deferred) metrics_.retries_denied_by_budget().Increment();
        retries_.push({now + ms(250), e.batch, e.index, true, true});
        retries_blocked_until_ = now + ms(250);
        break;
      }
      retry_credit_ = launches_->max_items();
    }
    if (e.charge) retry_credit_ -= 1;
    launches_->retry_ready(e.batch, e.index);
  }
}

bool Dispatcher::send_one(core::TimePoint now) {
  if (breaker_.state() == core::CircuitBreaker::State::kOpen) {
    if (!probe_in_flight_) {
      if (breaker_.probe_due()) {
        probe_in_flight_ = true;
        auto r = std::make_shared<Request>(Request{HealthProbe{}, this});
        send(r, api_.health());
      } else {
        wake_at(now + breaker_.time_until_probe());
      }
    }
    return false;
  }
  if (backoff_.paused()) {
    wake_at(now + backoff_.remaining());
    return false;
  }
  if (share_ <= 0 || in_flight_ >= effective_limit()) return false;
  if (api_.csrf() == prefect::PrefectApi::Csrf::kUnknown) {
    if (!csrf_in_flight_) {
      csrf_in_flight_ = true;
      auto r = std::make_shared<Request>(Request{CsrfToken{}, this});
      send(r, api_.csrf_token());
    }
    return false;
  }
  auto wait = std::max(bucket_.time_until(1), pace_wait(now));
  if (wait > core::Duration(0)) {
    wake_at(now + wait);
    return false;
  }
  gated_ = false;
  return send_control() || send_launch();
}

core::Duration Dispatcher::pace_wait(core::TimePoint now) const {
  const auto until = backoff_.paused_until();
  // The first request after the pause goes at once; the pace never falls below two a second.
  if (ramp_rate_ <= 0 || !until || !last_sent_ || *last_sent_ < *until || !backoff_.ramping()) {
    return core::Duration(0);
  }
  const double per_s = std::max(kMinPacePerS, backoff_.resume_fraction() * ramp_rate_);
  const auto next =
      std::min(*last_sent_ + core::from_seconds(1.0 / per_s), *until + backoff_.ramp());
  return std::max(core::Duration(0), next - now);
}

void Dispatcher::pause_all(core::TimePoint now, core::TimePoint until) {
  // The ramp after a pause paces requests as well as limiting how many are in flight: a fast
  // Prefect needs one request in flight for a hundred a second, so the limit alone would
  // resume at full speed. The pace is a fraction of the rate before the first pause; a pause
  // while one runs or ramps keeps it, so back-to-back pauses do not ratchet it down to nothing.
  if (!backoff_.paused() && !backoff_.ramping()) {
    ramp_rate_ =
        std::max(1.0, static_cast<double>(sent_.sum(now)) / core::to_seconds(sent_.window()));
  }
  backoff_.pause_until(until);
}

void Dispatcher::arm_next_wake(core::TimePoint now) {
  if (!retries_.empty()) wake_at(std::max(retries_.top().due, retries_blocked_until_));
  // A closed gate (a pause, the breaker, a full limit, the CSRF token, the token bucket, the
  // pace) has armed its own wake-up or waits for an answer; waking because launches are ready
  // would only spin until it opens.
  if (!gated_) {
    if (auto t = scheduler_.time_until_ready()) wake_at(now + *t);
  }
  if (backoff_.resume_fraction() < 1.0 && !backoff_.paused()) wake_at(now + ms(100));
}

bool Dispatcher::send_control() {
  while (!control_queue_.empty()) {
    auto r = std::move(control_queue_.front());
    control_queue_.pop_front();
    auto http = r->owner->build(*r);
    if (!http) continue;
    (void)bucket_.try_consume(1);
    send(std::move(r), std::move(*http));
    return true;
  }
  return false;
}

bool Dispatcher::send_launch() {
  auto grant = scheduler_.next(launches_->max_items());
  if (!grant) return false;
  auto launch = launches_->launch(*grant);
  if (launch) {
    if (launch->first_attempt) budget_.on_request();
    (void)bucket_.try_consume(1);
    send(std::move(launch->request), std::move(launch->http));
  }
  return true;
}

std::optional<prefect::HttpRequest> Dispatcher::build(Request& request) {
  if (std::holds_alternative<CsrfToken>(request.payload)) return api_.csrf_token();
  return api_.health();
}

Dispatcher::EndpointMetrics& Dispatcher::endpoint_metrics(size_t kind) {
  auto it = endpoint_metrics_.find(kind);
  if (it != endpoint_metrics_.end()) return it->second;
  EndpointMetrics m{};
  const std::string name = kEndpointNames[kind];
  m.latency = &metrics_.prefect_latency(name);
  for (int c = 0; c < 6; ++c) m.by_class[c] = &metrics_.prefect_requests(name, c * 100);
  return endpoint_metrics_.emplace(kind, m).first->second;
}

void Dispatcher::send(std::shared_ptr<Request> request, prefect::HttpRequest http) {
  request->sent = clock_.now();
  sent_.add(request->sent, 1);
  last_sent_ = request->sent;
  if (request->attempts == 0) request->first_sent = request->sent;
  in_flight_ += 1;
  metrics_.requests_in_flight().Set(in_flight_);
  metrics_.in_flight_limit().Set(effective_limit());
  std::weak_ptr<bool> alive = alive_;
  http_.send(std::move(http), [this, alive, request](prefect::HttpResponse response) {
    if (alive.expired()) return;
    timers_.post([this, alive, request, r = std::move(response)]() mutable {
      if (alive.expired()) return;
      on_response(request, std::move(r));
    });
  });
}

void Dispatcher::on_response(const std::shared_ptr<Request>& request,
                             prefect::HttpResponse response) {
  Request& r = *request;
  in_flight_ -= 1;
  metrics_.requests_in_flight().Set(in_flight_);
  metrics_.in_flight_limit().Set(effective_limit());
  const auto now = clock_.now();
  const core::Duration rtt = now - r.sent;
  auto c = prefect::classify(response, wall_.now());

  auto& em = endpoint_metrics(r.payload.index());
  em.latency->Observe(core::to_seconds(rtt));
  em.by_class[response.status <= 0 ? 0 : std::clamp(response.status / 100, 1, 5)]->Increment();

  // A pooled connection the server already closed fails at once while writing: that says
  // nothing about Prefect's health or load. The owner may send again (same idempotency key).
  if (prefect::is_stale_connection(response) && r.owner->resend_stale(r)) {
    metrics_.retries("stale_connection").Increment();
  } else {
    record(r, response, c, rtt, now);
    r.owner->on_answer(r, response, c);
  }
  if (stopped_ && in_flight_ == 0 && on_idle_) on_idle_();
  dispatch();
}

void Dispatcher::record(const Request& r, const prefect::HttpResponse& response,
                        const prefect::Classification& c, core::Duration rtt, core::TimePoint now) {
  // Database contention (Prefect's 503 for a locked database, contended runs in a bulk answer)
  // is load: it lowers the limit and pauses all requests briefly, as a Retry-After does, so
  // floodgate writes less while the database is busy instead of each run retrying on its own.
  const bool locked = prefect::is_locked_database(response);
  const bool congested = locked || (std::holds_alternative<CreateRuns>(r.payload) &&
                                    c.verdict == prefect::Verdict::kOk &&
                                    prefect::bulk_contention_count(response.body) > 0);
  if (!is_own(r)) {
    auto outcome = core::ConcurrencyLimit::Outcome::kSuccess;
    if (c.verdict == prefect::Verdict::kRetryable || c.verdict == prefect::Verdict::kRateLimited ||
        congested) {
      outcome = core::ConcurrencyLimit::Outcome::kDropped;
    } else if (c.verdict == prefect::Verdict::kPermanent) {
      outcome = core::ConcurrencyLimit::Outcome::kIgnore;
    }
    limit_->on_sample(now, rtt, in_flight_ + 1, outcome, sample_class(r));
    // A locked database is load on a server that answers, not an outage: the limit and the
    // contention pause slow floodgate down; the breaker stays out of it.
    if (prefect::is_outage(response, c)) {
      breaker_.on_failure();
    } else if (c.verdict != prefect::Verdict::kRateLimited) {
      breaker_.on_success();
    }
  }
  if (c.verdict == prefect::Verdict::kRateLimited) {
    auto pause = c.retry_after.value_or(std::chrono::seconds(1));
    pause_all(now, now + pause);
    log::warn("Prefect asked to slow down; pausing all requests",
              {{"status", response.status}, {"pause_s", core::to_seconds(pause)}});
  } else if (congested && !is_own(r)) {
    const auto pause = contention_.on_signal(now);
    if (pause > core::Duration(0)) {
      pause_all(now, now + pause);
      log::info("Prefect is busy; pausing all requests",
                {{"status", response.status},
                 {"reason", c.verdict == prefect::Verdict::kOk ? "bulk_contention" : c.reason},
                 {"pause_s", core::to_seconds(pause)}});
    }
  }
}

void Dispatcher::on_answer(Request& request, const prefect::HttpResponse& response,
                           const prefect::Classification& c) {
  if (std::holds_alternative<HealthProbe>(request.payload)) {
    probe_in_flight_ = false;
    breaker_.on_probe_result(response.status == 200);
    log::info("health probe",
              {{"status", response.status}, {"breaker", std::string(breaker_.state_name())}});
    return;
  }
  csrf_in_flight_ = false;
  if (api_.on_csrf_response(response)) {
    breaker_.on_success();
    return;
  }
  log::warn("could not get a CSRF token from Prefect; retrying",
            {{"status", response.status}, {"error", c.message}});
  if (c.verdict == prefect::Verdict::kRetryable) breaker_.on_failure();
  wake_at(clock_.now() + ms(1000));
}

nlohmann::json Dispatcher::status_json() const {
  return {{"in_flight", in_flight_},
          {"in_flight_limit", effective_limit()},
          {"limit_algorithm", std::string(limit_->name())},
          {"token_bucket_tokens", bucket_.level()},
          {"paused_s", core::to_seconds(backoff_.remaining())},
          {"breaker", std::string(breaker_.state_name())},
          {"pending_retries", retries_.size()},
          {"retry_budget_tokens", budget_.balance()},
          {"budget_share", share_}};
}

void Dispatcher::update_gauges() {
  metrics_.in_flight_limit().Set(effective_limit());
  if (const auto* g = dynamic_cast<const core::GradientLimit*>(limit_.get())) {
    metrics_.latency_floor_seconds().Set(g->rtt_noload_seconds());
    metrics_.latency_recent_seconds().Set(g->short_rtt_seconds());
  }
  metrics_.token_bucket_tokens().Set(bucket_.level());
  metrics_.budget_share().Set(share_);
  metrics_.paused_seconds_remaining().Set(core::to_seconds(backoff_.remaining()));
  metrics_.breaker_open().Set(breaker_open() ? 1 : 0);
  metrics_.set_breaker_state(breaker_.state_name());
  metrics_.retry_budget_tokens().Set(budget_.balance());
}

}  // namespace floodgate::engine
