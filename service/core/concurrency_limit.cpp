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
// The soonest a probe follows the last one when the floor looks stale.
constexpr Duration kEarlyProbeGap = std::chrono::seconds(10);

}  // namespace

FixedLimit::FixedLimit(int limit) : limit_(std::max(1, limit)) {}

void FixedLimit::on_sample(TimePoint /*now*/, Duration /*rtt*/, int /*in_flight*/,
                           Outcome /*outcome*/, int /*sample_class*/) {}

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

void AimdLimit::on_sample(TimePoint /*now*/, Duration rtt, int in_flight, Outcome outcome,
                          int /*sample_class*/) {
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
  options_.tolerance = std::max(1.0, options_.tolerance);
  options_.smoothing = std::clamp(options_.smoothing, 0.01, 1.0);
  options_.shrink_smoothing = std::clamp(options_.shrink_smoothing, 0.01, 1.0);
  if (!(options_.backoff_ratio >= 0.5 && options_.backoff_ratio < 1.0)) {
    options_.backoff_ratio = 0.9;
  }
  options_.probe_limit = std::clamp(options_.probe_limit, b.min, b.max);
  options_.probe_samples = std::max(1, options_.probe_samples);
  options_.probe_max = std::max(Duration::zero(), options_.probe_max);
  options_.probe_interval = std::max(Duration::zero(), options_.probe_interval);
  options_.window = std::max(Duration::zero(), options_.window);
  options_.window_min_samples = std::max(1, options_.window_min_samples);
  estimated_limit_ = options_.probe_limit;
  probe_pin_ = options_.probe_limit;
  // The first sample starts the first probe.
  probing_ = true;
  probe_started_ = TimePoint::min();
}

int GradientLimit::limit() const {
  if (probing_) return probe_pin_;
  return std::clamp(static_cast<int>(estimated_limit_), options_.min, options_.max);
}

double GradientLimit::floor_seconds(int sample_class) const {
  if (sample_class < 0 || sample_class >= static_cast<int>(classes_.size())) return 0;
  return classes_[static_cast<size_t>(sample_class)].floor_s;
}

GradientLimit::Class& GradientLimit::class_of(int sample_class) {
  const auto i = static_cast<size_t>(std::clamp(sample_class, 0, kMaxClasses - 1));
  if (i >= classes_.size()) classes_.resize(i + 1);
  return classes_[i];
}

void GradientLimit::on_sample(TimePoint now, Duration rtt, int in_flight, Outcome outcome,
                              int sample_class) {
  if (outcome == Outcome::kIgnore) return;
  const double rtt_s = std::max(kMinRttSeconds, to_seconds(rtt));
  const TimePoint sent = now - rtt;
  Class& c = class_of(sample_class);

  if (probing_) {
    if (probe_started_ == TimePoint::min()) probe_started_ = sent;
    // Only requests sent under the pinned limit measure the floor. A drop does not; it says
    // the pin is too high even so, and lowers it.
    if (sent >= probe_started_) {
      if (outcome == Outcome::kSuccess) {
        c.probe_rtts.push_back(rtt_s);
        ++probe_count_;
      } else {
        probe_pin_ = std::max(options_.min, probe_pin_ - 1);
        probe_dropped_ = true;
      }
    }
    const bool enough = probe_count_ >= options_.probe_samples;
    const bool too_long = probe_count_ > 0 && now - probe_started_ >= options_.probe_max;
    if (enough || too_long) finish_probe(now);
    return;
  }

  if (!window_open_) open_window(now);
  if (outcome == Outcome::kDropped) {
    // The RTT of a drop (often a timeout) is not a latency of the server.
    window_dropped_ = true;
  } else if (sent >= window_start_) {
    if (c.floor_s <= 0) {
      // No probe has seen this class yet: the least of its first answers stands in.
      c.first_rtts.push_back(rtt_s);
      if (c.first_rtts.size() >= 3) {
        c.floor_s = *std::min_element(c.first_rtts.begin(), c.first_rtts.end());
        c.first_rtts.clear();
      }
    } else {
      window_ratios_.push_back(rtt_s / c.floor_s);
      ++window_samples_;
      c.window_sum_s += rtt_s;
      ++c.window_n;
    }
  }
  window_max_in_flight_ = std::max(window_max_in_flight_, in_flight);

  const int need = std::max(
      1, std::min(options_.window_min_samples, std::max(3, static_cast<int>(estimated_limit_))));
  const bool ripe = now - window_start_ >= options_.window && window_samples_ >= need;
  if (window_dropped_ || ripe) close_window(now);
}

void GradientLimit::open_window(TimePoint now) {
  window_open_ = true;
  window_start_ = now;
  window_ratios_.clear();
  window_samples_ = 0;
  window_max_in_flight_ = 0;
  window_dropped_ = false;
  for (Class& c : classes_) {
    c.window_sum_s = 0;
    c.window_n = 0;
  }
}

void GradientLimit::close_window(TimePoint now) {
  const auto lo = static_cast<double>(options_.min);
  const auto hi = static_cast<double>(options_.max);
  ++updates_;

  // What the metrics show: the busiest class of this window. A class whose average came in
  // under its floor lowers the floor.
  int busiest = 0;
  for (Class& c : classes_) {
    if (c.window_n == 0) continue;
    const double mean = c.window_sum_s / c.window_n;
    c.floor_s = std::min(c.floor_s, mean);
    if (c.window_n > busiest) {
      busiest = c.window_n;
      shown_floor_s_ = c.floor_s;
      shown_recent_s_ = mean;
    }
  }

  if (window_dropped_) {
    estimated_limit_ = std::clamp(estimated_limit_ * options_.backoff_ratio, lo, hi);
    slow_start_ = false;
  } else if (window_samples_ > 0) {
    // The median: one slow answer (a checkpoint, a pause) does not move the limit.
    auto mid = window_ratios_.begin() + static_cast<std::ptrdiff_t>(window_ratios_.size() / 2);
    std::nth_element(window_ratios_.begin(), mid, window_ratios_.end());
    ratio_ = *mid;
    // An app-limited caller says nothing about the server's capacity.
    if (window_max_in_flight_ * 2 >= static_cast<int>(estimated_limit_)) {
      if (slow_start_ && ratio_ <= (1 + options_.tolerance) / 2) {
        estimated_limit_ = std::clamp(estimated_limit_ * 2, lo, hi);
      } else {
        slow_start_ = false;
        gradient_ = std::clamp(options_.tolerance / ratio_, 0.5, 2.0);
        const double next = estimated_limit_ * gradient_;
        const double share = gradient_ < 1 ? options_.shrink_smoothing : options_.smoothing;
        double target = estimated_limit_ * (1 - share) + next * share;
        // Latency alone does not take the limit under the probe pin: the floor was measured
        // with that many in flight, so a slow answer there says the floor is stale (or
        // floodgated itself is starved of CPU), not that it sends too much. Drops still do.
        if (gradient_ < 1) {
          target = std::max(target, std::min(estimated_limit_, static_cast<double>(probe_pin_)));
        }
        estimated_limit_ = std::clamp(target, lo, hi);
      }
    }
  }
  // The next window starts now: answers to requests sent from here on judge the new limit.
  open_window(now);
  // Down at the probe limit and still slow: the server itself got slower, not busier. Measure
  // the floor again now rather than at the next scheduled probe.
  const bool floor_suspect = estimated_limit_ <= options_.probe_limit &&
                             ratio_ > options_.tolerance && now - probe_finished_ >= kEarlyProbeGap;
  if (options_.probe_interval > Duration::zero() && (now >= next_probe_ || floor_suspect)) {
    start_probe(now);
  }
}

void GradientLimit::start_probe(TimePoint now) {
  probing_ = true;
  probe_started_ = now;
  probe_count_ = 0;
  probe_pin_ = options_.probe_limit;
  probe_dropped_ = false;
  limit_before_probe_ = estimated_limit_;
  for (Class& c : classes_) c.probe_rtts.clear();
}

void GradientLimit::finish_probe(TimePoint now) {
  for (Class& c : classes_) {
    if (c.probe_rtts.empty()) continue;
    auto mid = c.probe_rtts.begin() + static_cast<std::ptrdiff_t>(c.probe_rtts.size() / 2);
    std::nth_element(c.probe_rtts.begin(), mid, c.probe_rtts.end());
    c.floor_s = *mid;
    c.first_rtts.clear();
    c.probe_rtts.clear();
  }
  probing_ = false;
  ++probes_;
  if (!measured_) {
    // The first floor: slow-start from the probe limit, unless the server refused even that.
    measured_ = true;
    slow_start_ = !probe_dropped_;
    estimated_limit_ = probe_pin_;
  } else if (!probe_dropped_ && limit_before_probe_ <= probe_pin_) {
    // The limit had been driven down to the pin against the old floor: judged against the new
    // one it starts again from the pin, in slow start, as after the first probe.
    slow_start_ = true;
    estimated_limit_ = probe_pin_;
  } else {
    estimated_limit_ = limit_before_probe_;
  }
  next_probe_ = now + options_.probe_interval;
  probe_finished_ = now;
  open_window(now);
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
    options.min = b.min;
    options.max = b.max;
    return std::make_unique<GradientLimit>(options);
  }
  return nullptr;
}

}  // namespace floodgate::core
