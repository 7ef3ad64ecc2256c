#include "core/concurrency_limit.h"

#include <algorithm>
#include <cmath>

namespace floodgate::core {
namespace {

struct Bounds {
  int min;
  int max;
};

Bounds sane_bounds(int min, int max) {
  int lo = std::max(1, min);
  return {lo, std::max(lo, max)};
}

// Below this an RTT is treated as measurement noise rather than a real latency.
constexpr double kMinRttSeconds = 1e-9;
// When the long-term RTT is this many times the latest one, load has gone away; the average
// is pulled down faster than the exponential decay would.
constexpr double kLongRttDecayTrigger = 2.0;
constexpr double kLongRttDecay = 0.95;

}  // namespace

FixedLimit::FixedLimit(int limit) : limit_(std::max(1, limit)) {}

void FixedLimit::on_sample(TimePoint /*now*/, Duration /*rtt*/, int /*in_flight*/,
                           Outcome /*outcome*/) {}

AimdLimit::AimdLimit() : AimdLimit(Options{}) {}

AimdLimit::AimdLimit(const Options& options) : options_(options) {
  Bounds b = sane_bounds(options.min, options.max);
  options_.min = b.min;
  options_.max = b.max;
  if (!(options_.backoff_ratio >= 0.5 && options_.backoff_ratio < 1.0)) {
    options_.backoff_ratio = 0.9;
  }
  limit_ = std::clamp(options.initial, b.min, b.max);
}

void AimdLimit::on_sample(TimePoint /*now*/, Duration rtt, int in_flight, Outcome outcome) {
  if (outcome == Outcome::kIgnore) return;
  int next = limit_;
  if (outcome == Outcome::kDropped || rtt > options_.timeout) {
    next = static_cast<int>(limit_ * options_.backoff_ratio);
  } else if (in_flight * 2 >= limit_) {
    next = limit_ + 1;
  }
  limit_ = std::clamp(next, options_.min, options_.max);
}

GradientLimit::GradientLimit() : GradientLimit(Options{}) {}

GradientLimit::GradientLimit(const Options& options) : options_(options) {
  Bounds b = sane_bounds(options.min, options.max);
  options_.min = b.min;
  options_.max = b.max;
  options_.smoothing = std::clamp(options_.smoothing, 0.0, 1.0);
  options_.tolerance = std::max(1.0, options_.tolerance);
  if (!(options_.backoff_ratio >= 0.5 && options_.backoff_ratio < 1.0)) {
    options_.backoff_ratio = 0.9;
  }
  options_.long_window = std::max(1, options_.long_window);
  options_.warmup = std::max(0, options_.warmup);
  options_.min_queue_size = std::max(0.0, options_.min_queue_size);
  options_.window = std::max(Duration::zero(), options_.window);
  options_.window_min_samples = std::max(1, options_.window_min_samples);
  estimated_limit_ = std::clamp<double>(options.initial, b.min, b.max);
}

double GradientLimit::queue_size() const {
  return std::max(options_.min_queue_size, std::sqrt(static_cast<double>(limit())));
}

void GradientLimit::on_sample(TimePoint now, Duration rtt, int in_flight, Outcome outcome) {
  if (outcome == Outcome::kIgnore) return;
  if (!window_open_) {
    window_open_ = true;
    window_end_ = now + options_.window;
  }
  if (outcome == Outcome::kDropped) {
    // The RTT of a drop (often a timeout) is not a latency of the server; keep it out of the
    // averages.
    window_dropped_ = true;
  } else {
    window_rtt_sum_s_ += std::max(kMinRttSeconds, to_seconds(rtt));
    ++window_samples_;
  }
  window_max_in_flight_ = std::max(window_max_in_flight_, in_flight);
  if (now < window_end_) return;
  if (window_samples_ < options_.window_min_samples && !window_dropped_) return;

  update(window_dropped_, window_max_in_flight_);
  window_open_ = false;
  window_rtt_sum_s_ = 0;
  window_samples_ = 0;
  window_max_in_flight_ = 0;
  window_dropped_ = false;
}

void GradientLimit::update(bool dropped, int max_in_flight) {
  const auto lo = static_cast<double>(options_.min);
  const auto hi = static_cast<double>(options_.max);
  ++updates_;

  if (window_samples_ > 0) {
    const double sample = window_rtt_sum_s_ / window_samples_;
    short_rtt_s_ = sample;
    if (long_samples_ == 0) {
      long_rtt_s_ = sample;
    } else if (long_samples_ < options_.warmup) {
      // A plain mean while warming up, so the first windows do not dominate for long.
      long_rtt_s_ += (sample - long_rtt_s_) / (long_samples_ + 1);
    } else {
      const double factor = 2.0 / (options_.long_window + 1);
      long_rtt_s_ = long_rtt_s_ * (1 - factor) + sample * factor;
    }
    if (long_samples_ < options_.warmup || long_samples_ == 0) ++long_samples_;
    if (long_rtt_s_ / short_rtt_s_ > kLongRttDecayTrigger) long_rtt_s_ *= kLongRttDecay;
  }

  if (dropped) {
    estimated_limit_ = std::clamp(estimated_limit_ * options_.backoff_ratio, lo, hi);
    return;
  }
  // An app-limited caller says nothing about the server's capacity.
  if (max_in_flight < estimated_limit_ / 2) return;

  gradient_ = std::clamp(options_.tolerance * long_rtt_s_ / short_rtt_s_, 0.5, 1.0);
  double next = estimated_limit_ * gradient_ + queue_size();
  next = estimated_limit_ * (1 - options_.smoothing) + next * options_.smoothing;
  estimated_limit_ = std::clamp(next, lo, hi);
}

std::unique_ptr<ConcurrencyLimit> make_limit(std::string_view kind, int initial, int min, int max) {
  Bounds b = sane_bounds(min, max);
  if (kind == "fixed") return std::make_unique<FixedLimit>(std::clamp(initial, b.min, b.max));
  if (kind == "aimd") {
    AimdLimit::Options options;
    options.initial = initial;
    options.min = b.min;
    options.max = b.max;
    return std::make_unique<AimdLimit>(options);
  }
  if (kind == "gradient") {
    GradientLimit::Options options;
    options.initial = initial;
    options.min = b.min;
    options.max = b.max;
    return std::make_unique<GradientLimit>(options);
  }
  return nullptr;
}

}  // namespace floodgate::core
