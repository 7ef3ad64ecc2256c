#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string_view>

#include "core/clock.h"

namespace floodgate::core {

/// A cap on requests in flight that adapts to how the server answers, in the manner of
/// Netflix concurrency-limits. Pure logic: the caller counts in-flight requests and reports
/// every finished request with on_sample().
class ConcurrencyLimit {
 public:
  /// How a finished request should move the limit.
  enum class Outcome {
    kSuccess,  // answered
    kDropped,  // overload: timeout, 429, 503 and other 5xx, transport error
    kIgnore,   // says nothing about load (permanent 4xx errors): the limit does not move
  };

  virtual ~ConcurrencyLimit() = default;

  /// Requests that may be in flight now; at least 1.
  virtual int limit() const = 0;
  /// A request finished at `now`, `rtt` after it was sent, while `in_flight` requests (itself
  /// included) were outstanding.
  virtual void on_sample(TimePoint now, Duration rtt, int in_flight, Outcome outcome) = 0;
  virtual std::string_view name() const = 0;
};

/// A limit that never moves.
class FixedLimit final : public ConcurrencyLimit {
 public:
  explicit FixedLimit(int limit);

  int limit() const override { return limit_; }
  void on_sample(TimePoint now, Duration rtt, int in_flight, Outcome outcome) override;
  std::string_view name() const override { return "fixed"; }

 private:
  int limit_;
};

/// Additive increase, multiplicative decrease (Netflix AIMDLimit): +1 on a success while at
/// least half the limit is in use, limit * backoff_ratio on a drop or an RTT over the timeout.
/// Both steps are per sample, as in Netflix's: while saturated the limit roughly doubles per
/// round trip, and a burst of drops cuts it steeply, so it saws around the overload point.
class AimdLimit final : public ConcurrencyLimit {
 public:
  struct Options {
    int initial = 20;
    int min = 1;
    int max = 1000;
    double backoff_ratio = 0.9;                  // in [0.5, 1)
    Duration timeout = std::chrono::seconds(5);  // a slower success counts as a drop
  };

  AimdLimit();
  explicit AimdLimit(const Options& options);

  int limit() const override { return limit_; }
  void on_sample(TimePoint now, Duration rtt, int in_flight, Outcome outcome) override;
  std::string_view name() const override { return "aimd"; }
  const Options& options() const { return options_; }

 private:
  Options options_;
  int limit_;
};

/// Latency-gradient limit after Netflix Gradient2Limit, behind a sample window as Netflix's
/// WindowedLimit wraps it. Samples are gathered for `window` (and at least `window_min_samples`
/// of them); then the window's average RTT becomes the short-term RTT and feeds a long-term
/// exponential average over `long_window` windows. While the short RTT stays within
/// `tolerance` of the long one the limit grows by a queue allowance of sqrt(limit); beyond
/// that it shrinks by their ratio (at most by half), smoothed. A window with a drop multiplies
/// the limit by backoff_ratio instead. The limit does not grow while under half of it is used.
/// As in Gradient2, the long RTT also learns from loaded windows: under load that never lets
/// up, the limit settles near tolerance x the no-load point at first and then creeps upward
/// over minutes, held in the end by drops and `max`.
class GradientLimit final : public ConcurrencyLimit {
 public:
  struct Options {
    int initial = 20;
    int min = 1;
    int max = 1000;
    double smoothing = 0.2;      // share of the new estimate taken per update
    double tolerance = 1.5;      // short/long RTT ratio tolerated before the limit shrinks
    double backoff_ratio = 0.9;  // applied for a window with a drop
    int long_window = 600;       // updates in the long-term exponential average
    int warmup = 10;             // updates averaged plainly before the exponential average
    double min_queue_size = 4;   // queue allowance is max(this, sqrt(limit))
    Duration window = std::chrono::seconds(1);  // zero: update on every sample
    int window_min_samples = 10;                // a window also closes early on a drop
  };

  GradientLimit();
  explicit GradientLimit(const Options& options);

  int limit() const override { return static_cast<int>(estimated_limit_); }
  void on_sample(TimePoint now, Duration rtt, int in_flight, Outcome outcome) override;
  std::string_view name() const override { return "gradient"; }

  /// The limit before rounding down.
  double estimated_limit() const { return estimated_limit_; }
  /// The long-term RTT average: the latency the limit treats as "no load"; 0 before samples.
  double long_rtt_seconds() const { return long_rtt_s_; }
  double rtt_noload_seconds() const { return long_rtt_s_; }
  /// The average RTT of the latest window; 0 before samples.
  double short_rtt_seconds() const { return short_rtt_s_; }
  /// The latest gradient: tolerance * long / short RTT, clamped to [0.5, 1].
  double gradient() const { return gradient_; }
  /// The queue allowance at the current limit.
  double queue_size() const;
  /// Windows that have updated the limit.
  int64_t updates() const { return updates_; }
  const Options& options() const { return options_; }

 private:
  void update(bool dropped, int max_in_flight);

  Options options_;
  double estimated_limit_;
  double long_rtt_s_ = 0;
  double short_rtt_s_ = 0;
  double gradient_ = 1.0;
  int long_samples_ = 0;
  int64_t updates_ = 0;

  // The window being gathered.
  bool window_open_ = false;
  TimePoint window_end_;
  double window_rtt_sum_s_ = 0;
  int window_samples_ = 0;
  int window_max_in_flight_ = 0;
  bool window_dropped_ = false;
};

/// Builds a limit by kind: "fixed" (at `initial`), "aimd" or "gradient"; nullptr for any other.
std::unique_ptr<ConcurrencyLimit> make_limit(std::string_view kind, int initial, int min, int max);

}  // namespace floodgate::core
