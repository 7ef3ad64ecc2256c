#pragma once

#include <chrono>
#include <optional>
#include <string_view>

#include "core/clock.h"

namespace floodgate::core {

/// A token bucket with fractional tokens that refills lazily from the clock on each call.
///
/// Not thread-safe. A rate <= 0 together with a burst <= 0 means unlimited: every consume
/// succeeds and level() and burst() report +infinity. A positive rate with burst <= 0 gets a
/// burst of one second's worth of tokens, at least 1. A burst with rate <= 0 is an allowance
/// that never refills. The bucket starts full.
class TokenBucket {
 public:
  /// What time_until() answers when the tokens will never (or not within an hour) be there.
  static constexpr Duration kMaxWait = std::chrono::hours(1);

  TokenBucket(const Clock& clock, double rate_per_s, double burst);

  /// Takes n tokens if the bucket holds at least n now; takes nothing otherwise.
  bool try_consume(double n = 1);
  /// Time until n tokens are available: zero if they are now, kMaxWait at most (also when
  /// n exceeds the burst or the bucket never refills).
  Duration time_until(double n = 1) const;
  /// Tokens available now.
  double level() const;

  /// Changes rate and burst; tokens earned so far are kept, clamped to the new burst.
  void set_rate(double rate_per_s, double burst);
  double rate() const { return unlimited_ ? 0.0 : rate_; }
  double burst() const;
  bool unlimited() const { return unlimited_; }
  /// Empties the bucket, so traffic restarts at the refill rate (after a global back-off).
  void drain();
  /// Puts back n tokens taken for something that was not done (at most up to the burst).
  void refund(double n);

  /// Parses "N/s", "N/min" (or "N/m"), "N/h", a bare "N" (per second), and "0", "off" or
  /// "unlimited" (all 0, meaning no limit). Returns tokens per second, or nothing for junk.
  static std::optional<double> parse_rate(std::string_view text);

 private:
  double level_at(TimePoint now) const;
  void refill(TimePoint now);

  const Clock& clock_;
  double rate_ = 0;
  double burst_ = 0;
  bool unlimited_ = false;
  double tokens_ = 0;
  TimePoint last_;
};

}  // namespace floodgate::core
