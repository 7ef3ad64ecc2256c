#include "core/circuit_breaker.h"

#include <algorithm>
#include <cmath>

namespace floodgate::core {
namespace {

constexpr int kWindowSlots = 10;
constexpr double kProbeJitter = 0.2;

}  // namespace

CircuitBreaker::CircuitBreaker(const Clock& clock, Random& random)
    : CircuitBreaker(clock, random, Options{}) {}

CircuitBreaker::CircuitBreaker(const Clock& clock, Random& random, const Options& options)
    : clock_(clock),
      random_(random),
      options_(options),
      successes_(std::max(options.window, Duration(1)), kWindowSlots),
      failures_(std::max(options.window, Duration(1)), kWindowSlots) {}

std::string_view CircuitBreaker::to_string(State state) {
  switch (state) {
    case State::kClosed:
      return "closed";
    case State::kOpen:
      return "open";
    case State::kHalfOpen:
      return "half_open";
  }
  return "unknown";
}

void CircuitBreaker::on_success() {
  switch (state_) {
    case State::kClosed:
      consecutive_failures_ = 0;
      successes_.add(clock_.now(), 1);
      break;
    case State::kHalfOpen:
      // Closed once the failures left in the trials can no longer reach the reopen mark.
      if (++half_open_successes_ > options_.half_open_trials - half_open_failures_to_reopen()) {
        close();
      }
      break;
    case State::kOpen:
      // A straggler sent before the trip; the probe decides when to come back.
      break;
  }
}

void CircuitBreaker::on_failure() {
  switch (state_) {
    case State::kClosed: {
      TimePoint now = clock_.now();
      ++consecutive_failures_;
      failures_.add(now, 1);
      if (should_trip(now)) trip();
      break;
    }
    case State::kHalfOpen:
      if (++half_open_failures_ >= half_open_failures_to_reopen()) {
        ++backoff_level_;
        trip();
      }
      break;
    case State::kOpen:
      break;
  }
}

bool CircuitBreaker::should_trip(TimePoint now) const {
  if (options_.failure_threshold > 0 && consecutive_failures_ >= options_.failure_threshold) {
    return true;
  }
  int64_t failed = failures_.sum(now);
  int64_t total = failed + successes_.sum(now);
  if (total <= 0 || total < options_.min_requests) return false;
  return static_cast<double>(failed) >= options_.failure_ratio * static_cast<double>(total);
}

int CircuitBreaker::half_open_failures_to_reopen() const {
  const double ratio = std::clamp(options_.failure_ratio, 0.0, 1.0);
  const int trials = std::max(1, options_.half_open_trials);
  return std::clamp(static_cast<int>(std::ceil(ratio * trials)), 1, trials);
}

bool CircuitBreaker::allow_request() const { return state_ != State::kOpen; }

bool CircuitBreaker::probe_due() const {
  return state_ == State::kOpen && clock_.now() >= probe_at_;
}

Duration CircuitBreaker::time_until_probe() const {
  if (state_ != State::kOpen) return Duration::zero();
  return std::max(Duration::zero(), probe_at_ - clock_.now());
}

void CircuitBreaker::on_probe_result(bool healthy) {
  if (state_ != State::kOpen) return;
  if (healthy) {
    state_ = State::kHalfOpen;
    half_open_successes_ = 0;
    half_open_failures_ = 0;
    if (options_.half_open_trials <= 0) close();
    return;
  }
  ++backoff_level_;
  reopen();
}

void CircuitBreaker::trip() {
  ++open_count_;
  reopen();
}

void CircuitBreaker::reopen() {
  state_ = State::kOpen;
  consecutive_failures_ = 0;
  half_open_successes_ = 0;
  half_open_failures_ = 0;
  successes_.clear();
  failures_.clear();
  Duration cap = std::max(Duration::zero(), options_.open_max);
  Duration base = std::clamp(options_.open_base, Duration::zero(), cap);
  // Doubling in doubles: 2^level stays finite far beyond any level the cap lets matter.
  double ns = static_cast<double>(base.count()) * std::exp2(std::min(backoff_level_, 1000));
  double u = std::clamp(random_.uniform01(), 0.0, 1.0);
  double jitter = 1.0 - kProbeJitter + 2.0 * kProbeJitter * u;
  ns *= jitter;
  Duration wait = ns < static_cast<double>(cap.count()) ? Duration(static_cast<int64_t>(ns)) : cap;
  probe_at_ = clock_.now() + wait;
}

void CircuitBreaker::close() {
  state_ = State::kClosed;
  consecutive_failures_ = 0;
  half_open_successes_ = 0;
  half_open_failures_ = 0;
  backoff_level_ = 0;
  successes_.clear();
  failures_.clear();
}

}  // namespace floodgate::core
