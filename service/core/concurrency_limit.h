#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string_view>
#include <vector>

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
  /// included) were outstanding. `sample_class` groups requests of like cost (kind and size)
  /// for limits that compare latencies; 0 when there is one kind.
  virtual void on_sample(TimePoint now, Duration rtt, int in_flight, Outcome outcome,
                         int sample_class) = 0;
  void on_sample(TimePoint now, Duration rtt, int in_flight, Outcome outcome) {
    on_sample(now, rtt, in_flight, outcome, 0);
  }
  virtual std::string_view name() const = 0;
};

/// A limit that never moves.
class FixedLimit final : public ConcurrencyLimit {
 public:
  explicit FixedLimit(int limit);

  using ConcurrencyLimit::on_sample;
  int limit() const override { return limit_; }
  void on_sample(TimePoint now, Duration rtt, int in_flight, Outcome outcome,
                 int sample_class) override;
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

  using ConcurrencyLimit::on_sample;
  int limit() const override { return limit_; }
  void on_sample(TimePoint now, Duration rtt, int in_flight, Outcome outcome,
                 int sample_class) override;
  std::string_view name() const override { return "aimd"; }
  const Options& options() const { return options_; }

 private:
  Options options_;
  int limit_;
};

/// Latency-gradient limit with a measured no-load floor, after Envoy's adaptive concurrency
/// filter (gradient controller) and Netflix's Gradient2Limit.
///
/// The floor: at start and every `probe_interval`, the limit is pinned to `probe_limit` until
/// `probe_samples` answers to requests sent after the pin have come back; the median of their
/// RTTs is the floor, the latency of the server with (almost) nothing queued. The limit in
/// force before the probe is then restored. A drop during a probe says even `probe_limit` is
/// too many (a SQLite-backed server takes one write at a time and refuses the rest): the pin
/// is lowered by one per drop (down to `min`), and after the first probe the limit starts
/// from the lowered pin without slow start. Requests of different kinds and sizes take
/// different times, so each `sample_class` the caller names has its own floor; a class that
/// no probe has seen takes the least of its first answers until the next probe. A window whose
/// average for a class is under its floor lowers the floor; a limit driven down to the probe
/// limit while latency stays high means the server itself got slower, and starts a probe early
/// (at most every 10 s).
///
/// The limit: samples are gathered for at least `window` and `window_min_samples` answers (or
/// the limit, if smaller; at least 3), counting only requests sent after the window opened,
/// so each window sees the limit it is judged on. Each answer's RTT over its class's floor
/// gives a ratio; the window's median ratio r moves the limit:
///   - slow start (after the first probe): the limit doubles while r <= (1 + tolerance) / 2,
///     that is while nothing queues; the first window above that ends slow start;
///   - then gradient = clamp(tolerance / r, 0.5, 2) and
///     limit = limit * (1 - s) + limit * gradient * s, with s = smoothing when it grows and
///     shrink_smoothing when it shrinks (overload is undone faster than capacity is sought),
///     which settles where the latency is `tolerance` times the floor: about tolerance x the
///     server's concurrency, a short queue. Because the floor is re-measured at low load
///     rather than learnt from loaded windows, the limit does not creep upward under
///     sustained load;
///   - a window with a drop (timeout, 429, 5xx) multiplies the limit by backoff_ratio and ends
///     at once;
///   - while under half the limit is in use the caller is app-limited and the limit holds.
class GradientLimit final : public ConcurrencyLimit {
 public:
  struct Options {
    int min = 1;
    int max = 1000;
    double tolerance = 1.25;        // latency / floor ratio the limit settles at
    double smoothing = 0.2;         // share of the gradient's estimate taken when it grows
    double shrink_smoothing = 0.5;  // ... and when it shrinks
    double backoff_ratio = 0.9;     // applied for a window with a drop
    int probe_limit = 3;            // in flight while the floor is measured (within min, max)
    int probe_samples = 20;         // answers whose median RTT is the floor
    Duration probe_max = std::chrono::seconds(5);        // a probe ends then if it has any answer
    Duration probe_interval = std::chrono::seconds(60);  // zero: the floor is measured once
    Duration window = std::chrono::milliseconds(50);     // zero: update on every sample
    int window_min_samples = 10;
  };
  /// Sample classes beyond this share the last one.
  static constexpr int kMaxClasses = 64;

  GradientLimit();
  explicit GradientLimit(const Options& options);

  using ConcurrencyLimit::on_sample;
  int limit() const override;
  void on_sample(TimePoint now, Duration rtt, int in_flight, Outcome outcome,
                 int sample_class) override;
  std::string_view name() const override { return "gradient"; }

  /// The limit between probes, before rounding down.
  double estimated_limit() const { return estimated_limit_; }
  bool probing() const { return probing_; }
  /// The limit while probing: probe_limit, lowered by one per drop in the probe.
  int probe_pin() const { return probe_pin_; }
  bool slow_start() const { return slow_start_; }
  /// The floor of `sample_class`; 0 before it is known.
  double floor_seconds(int sample_class) const;
  /// The floor and the mean RTT, in the latest window, of the class with the most answers in
  /// that window; 0 before any window.
  double rtt_noload_seconds() const { return shown_floor_s_; }
  double short_rtt_seconds() const { return shown_recent_s_; }
  /// The latest window's median RTT / floor ratio; 0 before any window.
  double ratio() const { return ratio_; }
  /// The latest gradient, clamp(tolerance / ratio, 0.5, 2); 1 before any.
  double gradient() const { return gradient_; }
  /// Windows that have updated the limit, and probes finished.
  int64_t updates() const { return updates_; }
  int64_t probes() const { return probes_; }
  const Options& options() const { return options_; }

 private:
  struct Class {
    double floor_s = 0;              // 0: unknown
    std::vector<double> first_rtts;  // answers before the floor is known (outside probes)
    std::vector<double> probe_rtts;
    double window_sum_s = 0;
    int window_n = 0;
  };
  Class& class_of(int sample_class);
  void start_probe(TimePoint now);
  void finish_probe(TimePoint now);
  void close_window(TimePoint now);
  void open_window(TimePoint now);

  Options options_;
  double estimated_limit_;
  std::vector<Class> classes_;

  bool probing_ = false;
  bool measured_ = false;  // a probe has finished
  bool slow_start_ = false;
  TimePoint probe_started_{};
  TimePoint next_probe_{};
  TimePoint probe_finished_{};
  int probe_count_ = 0;
  int probe_pin_ = 1;
  bool probe_dropped_ = false;
  double limit_before_probe_ = 0;

  bool window_open_ = false;
  TimePoint window_start_{};
  std::vector<double> window_ratios_;
  int window_samples_ = 0;
  int window_max_in_flight_ = 0;
  bool window_dropped_ = false;

  double ratio_ = 0;
  double gradient_ = 1.0;
  double shown_floor_s_ = 0;
  double shown_recent_s_ = 0;
  int64_t updates_ = 0;
  int64_t probes_ = 0;
};

/// Builds a limit by kind: "fixed" (at `initial`), "aimd" (from `initial`) or "gradient" (which
/// measures its floor first and slow-starts from its probe limit, so `initial` is unused);
/// nullptr for any other.
std::unique_ptr<ConcurrencyLimit> make_limit(std::string_view kind, int initial, int min, int max);

}  // namespace floodgate::core
