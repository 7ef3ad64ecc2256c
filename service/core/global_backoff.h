#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string_view>

#include "core/clock.h"

namespace floodgate::core {

/// A pause of all traffic to one server (after a 429 or 503 with Retry-After), followed by a
/// linear ramp back to full speed.
///
/// While paused resume_fraction() is 0; when the pause ends it rises linearly from
/// `start_fraction` (0.1) to 1 over `ramp`. The driver multiplies its in-flight limit by it.
class GlobalBackoff {
 public:
  explicit GlobalBackoff(const Clock& clock, Duration ramp = std::chrono::seconds(5),
                         double start_fraction = 0.1);

  /// Pauses until t; a pause already running longer is kept (extends, never shortens).
  /// A t at or before now pauses nothing but still starts the ramp at t.
  void pause_until(TimePoint t);
  /// pause_until(now + d).
  void pause_for(Duration d);

  bool paused() const;
  /// Time left in the pause; zero when not paused.
  Duration remaining() const;
  /// 0 while paused, then start_fraction rising linearly to 1 over the ramp; 1 if never paused.
  double resume_fraction() const;
  /// Whether the ramp after a pause is still under way (not paused, fraction below 1).
  bool ramping() const;

  /// The end of the latest pause; nothing if there has never been one.
  std::optional<TimePoint> paused_until() const { return until_; }
  /// Pauses requested so far (each pause_until() that extended or restarted the pause).
  int64_t pause_count() const { return pause_count_; }
  Duration ramp() const { return ramp_; }

 private:
  const Clock& clock_;
  Duration ramp_;
  double start_fraction_;
  std::optional<TimePoint> until_;
  int64_t pause_count_ = 0;
};

/// The longest pause parse_retry_after() reports; larger values are clamped to it.
inline constexpr Duration kMaxRetryAfter = std::chrono::hours(24);

/// Parses an HTTP Retry-After value: delta-seconds ("120", also "1.5") or an HTTP-date
/// (IMF-fixdate "Wed, 21 Oct 2015 07:28:00 GMT", and the obsolete RFC 850 and asctime forms).
/// A date in the past gives zero. Nothing for junk. Clamped to kMaxRetryAfter.
std::optional<Duration> parse_retry_after(std::string_view value,
                                          std::chrono::system_clock::time_point wall_now);

}  // namespace floodgate::core
