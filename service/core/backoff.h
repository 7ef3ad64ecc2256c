#pragma once

#include <chrono>
#include <optional>

#include "core/clock.h"
#include "core/random.h"

namespace floodgate::core {

/// Exponential growth of the retry delay: initial * multiplier^(attempt - 1), capped at max.
struct BackoffPolicy {
  Duration initial = std::chrono::seconds(1);
  Duration max = std::chrono::seconds(60);
  double multiplier = 2.0;
};

/// The exponential ceiling for a retry attempt (1 = first retry), before jitter.
Duration backoff_ceiling(const BackoffPolicy& policy, int attempt);

/// Full jitter: uniform in [0, backoff_ceiling(policy, attempt)). Safe for any attempt.
Duration backoff_delay(const BackoffPolicy& policy, int attempt, Random& random);

/// The share of a server's Retry-After added as jitter at most, as Prefect's client does.
inline constexpr double kRetryAfterJitter = 0.2;

/// The delay before a retry: with a Retry-After from the server, that value plus up to 20%
/// jitter (never less than it); otherwise backoff_delay().
Duration retry_delay(const BackoffPolicy& policy, int attempt, Random& random,
                     std::optional<Duration> retry_after);

/// When to stop retrying: a cap on attempts and on the time since the first attempt.
struct RetryPolicy {
  int max_attempts = 6;                          // attempts in total, the first one included
  Duration max_elapsed = std::chrono::hours(1);  // zero or less: no limit on elapsed time
  BackoffPolicy backoff;

  /// Whether another attempt may be made `next_delay` after `now`, given `attempts_made`
  /// attempts so far, the first at `first_attempt`.
  bool may_retry(int attempts_made, TimePoint first_attempt, TimePoint now,
                 Duration next_delay) const;
};

}  // namespace floodgate::core
