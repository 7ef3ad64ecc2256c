#pragma once

#include <chrono>
#include <cstdint>
#include <string_view>

#include "core/clock.h"
#include "core/random.h"
#include "core/windowed_counter.h"

namespace floodgate::core {

/// Stops traffic to a server that looks unhealthy and lets it back in through a health probe
/// and a ramp of trial requests.
///
/// Closed: requests flow; the breaker trips on `failure_threshold` consecutive failures, or when
/// the window holds at least `min_requests` outcomes of which a share >= `failure_ratio` failed.
/// Open: no requests; once probe_due(), the driver sends a health probe and reports it with
/// on_probe_result(). The wait before a probe doubles with each failed probe or failed ramp
/// (±20% jitter, capped at open_max). Half-open: requests flow, but the caller should keep
/// concurrency low; the next `half_open_trials` outcomes are judged together, as Resilience4j
/// does: the breaker reopens once failures reach `failure_ratio` of the trials and closes once
/// they no longer can. A single failure does not reopen it: a server that answers most
/// requests but loses some to contention (a SQLite-backed Prefect answers "database is
/// locked" with 503) must not be held off for the open wait each time one trial loses a race.
class CircuitBreaker {
 public:
  enum class State { kClosed, kOpen, kHalfOpen };

  struct Options {
    int failure_threshold = 20;  // consecutive failures that trip; 0 or less: rule off
    double failure_ratio = 0.5;  // failure share in the window that trips
    int min_requests = 20;       // outcomes in the window before the ratio counts
    Duration window = std::chrono::seconds(10);
    Duration open_base = std::chrono::seconds(1);
    Duration open_max = std::chrono::seconds(30);
    int half_open_trials = 10;  // outcomes judged in half-open; 0: a healthy probe closes
  };

  CircuitBreaker(const Clock& clock, Random& random);
  CircuitBreaker(const Clock& clock, Random& random, const Options& options);

  /// A request got an answer that says the server is healthy (2xx, and also 4xx).
  void on_success();
  /// A request failed in a way that says the server is unhealthy: transport error, timeout,
  /// 5xx. Not for 4xx, nor for 429 (the global back-off handles that).
  void on_failure();
  /// Whether a request may be sent: true when closed or half-open, false when open.
  bool allow_request() const;

  /// Open and the wait before the next health probe is over.
  bool probe_due() const;
  /// Time until the next health probe is due; zero unless open.
  Duration time_until_probe() const;
  /// The result of the health probe: healthy moves open to half-open; unhealthy stays open
  /// with a longer wait. Ignored unless open.
  void on_probe_result(bool healthy);

  State state() const { return state_; }
  bool is_half_open() const { return state_ == State::kHalfOpen; }
  std::string_view state_name() const { return to_string(state_); }
  /// Times the breaker has tripped (closed or half-open to open).
  int open_count() const { return open_count_; }
  int consecutive_failures() const { return consecutive_failures_; }
  const Options& options() const { return options_; }

  static std::string_view to_string(State state);

 private:
  void trip();
  void reopen();
  void close();
  bool should_trip(TimePoint now) const;
  int half_open_failures_to_reopen() const;

  const Clock& clock_;
  Random& random_;
  Options options_;
  State state_ = State::kClosed;
  WindowedCounter successes_;
  WindowedCounter failures_;
  int consecutive_failures_ = 0;
  int half_open_successes_ = 0;
  int half_open_failures_ = 0;
  int backoff_level_ = 0;  // failed probes and failed ramps since the breaker last closed
  int open_count_ = 0;
  TimePoint probe_at_;
};

}  // namespace floodgate::core
