#include "core/backoff.h"

#include <algorithm>
#include <cmath>
#include <cstdint>

namespace floodgate::core {
namespace {

// Scales a duration by a factor in [0, 1.x] without leaving the representable range.
Duration scale(Duration d, double factor) {
  double ns = static_cast<double>(d.count()) * factor;
  if (!(ns > 0)) return Duration::zero();
  constexpr auto kLimit = static_cast<double>(Duration::max().count() / 2);
  if (ns >= kLimit) return Duration(static_cast<int64_t>(kLimit));
  return Duration(static_cast<int64_t>(ns));
}

}  // namespace

Duration backoff_ceiling(const BackoffPolicy& policy, int attempt) {
  Duration cap = std::max(Duration::zero(), policy.max);
  Duration initial = std::clamp(policy.initial, Duration::zero(), cap);
  double multiplier = std::isfinite(policy.multiplier) ? std::max(1.0, policy.multiplier) : 1.0;
  int exponent = std::max(attempt, 1) - 1;
  // Work in doubles: initial * multiplier^exponent overflows integers long before it
  // overflows a double, and pow() gives +inf rather than undefined behaviour.
  double ns = static_cast<double>(initial.count()) * std::pow(multiplier, exponent);
  if (!(ns < static_cast<double>(cap.count()))) return cap;
  return Duration(static_cast<int64_t>(ns));
}

Duration backoff_delay(const BackoffPolicy& policy, int attempt, Random& random) {
  double u = std::clamp(random.uniform01(), 0.0, 1.0);
  Duration ceiling = backoff_ceiling(policy, attempt);
  return std::min(scale(ceiling, u), ceiling);
}

Duration retry_delay(const BackoffPolicy& policy, int attempt, Random& random,
                     std::optional<Duration> retry_after) {
  if (!retry_after) return backoff_delay(policy, attempt, random);
  Duration base = std::clamp(*retry_after, Duration::zero(), Duration::max() / 2);
  double u = std::clamp(random.uniform01(), 0.0, 1.0);
  return base + scale(base, kRetryAfterJitter * u);
}

bool RetryPolicy::may_retry(int attempts_made, TimePoint first_attempt, TimePoint now,
                            Duration next_delay) const {
  if (attempts_made >= max_attempts) return false;
  if (max_elapsed <= Duration::zero()) return true;
  Duration elapsed = std::max(Duration::zero(), now - first_attempt);
  if (elapsed > max_elapsed) return false;
  return std::max(Duration::zero(), next_delay) <= max_elapsed - elapsed;
}

}  // namespace floodgate::core
