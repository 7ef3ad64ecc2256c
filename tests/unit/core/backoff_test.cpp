#include "core/backoff.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "core/clock.h"
#include "core/random.h"

namespace floodgate::core {
namespace {

using std::chrono::hours;
using std::chrono::milliseconds;
using std::chrono::seconds;

TEST(BackoffTest, CeilingGrowsExponentiallyToTheCap) {
  BackoffPolicy policy;  // 1 s, x2, max 60 s
  std::vector<Duration> expected = {seconds(1),  seconds(2),  seconds(4),  seconds(8),
                                    seconds(16), seconds(32), seconds(60), seconds(60)};
  for (size_t i = 0; i < expected.size(); ++i) {
    EXPECT_EQ(backoff_ceiling(policy, static_cast<int>(i) + 1), expected[i]) << i;
  }
}

TEST(BackoffTest, ExactSequenceWithFixedRandom) {
  BackoffPolicy policy{milliseconds(100), seconds(5), 3.0};
  FixedRandom half(0.5);
  std::vector<Duration> expected = {milliseconds(50),   milliseconds(150),  milliseconds(450),
                                    milliseconds(1350), milliseconds(2500), milliseconds(2500)};
  for (size_t i = 0; i < expected.size(); ++i) {
    EXPECT_EQ(backoff_delay(policy, static_cast<int>(i) + 1, half), expected[i]) << i;
  }
}

TEST(BackoffTest, FullJitterSpansZeroToCeiling) {
  BackoffPolicy policy;
  FixedRandom zero(0.0);
  EXPECT_EQ(backoff_delay(policy, 3, zero), Duration::zero());
  FixedRandom almost_one(std::nextafter(1.0, 0.0));
  Duration d = backoff_delay(policy, 3, almost_one);
  EXPECT_LE(d, seconds(4));
  EXPECT_GT(d, seconds(4) - milliseconds(1));
}

TEST(BackoffTest, DrawsStayWithinBoundsAndCoverTheRange) {
  BackoffPolicy policy{milliseconds(200), seconds(10), 2.0};
  MtRandom random(7);
  for (int attempt = 1; attempt <= 12; ++attempt) {
    Duration ceiling = backoff_ceiling(policy, attempt);
    Duration lo = Duration::max();
    Duration hi = Duration::zero();
    double sum = 0;
    constexpr int kDraws = 5000;
    for (int i = 0; i < kDraws; ++i) {
      Duration d = backoff_delay(policy, attempt, random);
      ASSERT_GE(d, Duration::zero());
      ASSERT_LT(d, ceiling);
      lo = std::min(lo, d);
      hi = std::max(hi, d);
      sum += to_seconds(d);
    }
    // Uniform over [0, ceiling): mean near half, extremes near the ends.
    EXPECT_NEAR(sum / kDraws, to_seconds(ceiling) / 2, to_seconds(ceiling) * 0.03) << attempt;
    EXPECT_LT(to_seconds(lo), to_seconds(ceiling) * 0.01) << attempt;
    EXPECT_GT(to_seconds(hi), to_seconds(ceiling) * 0.99) << attempt;
  }
}

TEST(BackoffTest, HugeAttemptsDoNotOverflow) {
  BackoffPolicy policy{seconds(1), hours(1), 10.0};
  FixedRandom high(0.999);
  for (int attempt : {30, 100, 1000, 100'000, std::numeric_limits<int>::max()}) {
    EXPECT_EQ(backoff_ceiling(policy, attempt), hours(1)) << attempt;
    Duration d = backoff_delay(policy, attempt, high);
    EXPECT_GT(d, Duration::zero());
    EXPECT_LE(d, hours(1));
  }
  BackoffPolicy huge{hours(1), Duration::max(), 2.0};
  EXPECT_EQ(backoff_ceiling(huge, 10'000), Duration::max());
  EXPECT_GT(backoff_delay(huge, 10'000, high), Duration::zero());
}

TEST(BackoffTest, OddPoliciesAreTamed) {
  FixedRandom one(1.0);
  // Attempt 0 or negative counts as the first retry.
  EXPECT_EQ(backoff_ceiling(BackoffPolicy{}, 0), seconds(1));
  EXPECT_EQ(backoff_ceiling(BackoffPolicy{}, -5), seconds(1));
  // Initial above max: max wins.
  EXPECT_EQ(backoff_ceiling(BackoffPolicy{seconds(90), seconds(60), 2.0}, 1), seconds(60));
  // A multiplier below 1 would shrink the delay; it is treated as 1 (constant backoff).
  EXPECT_EQ(backoff_ceiling(BackoffPolicy{seconds(2), seconds(60), 0.5}, 5), seconds(2));
  EXPECT_EQ(
      backoff_ceiling(
          BackoffPolicy{seconds(2), seconds(60), std::numeric_limits<double>::quiet_NaN()}, 5),
      seconds(2));
  // Zero durations give zero delays.
  EXPECT_EQ(backoff_delay(BackoffPolicy{Duration::zero(), seconds(60), 2.0}, 9, one),
            Duration::zero());
  EXPECT_EQ(backoff_delay(BackoffPolicy{seconds(1), Duration::zero(), 2.0}, 3, one),
            Duration::zero());
}

TEST(BackoffTest, RetryDelayWithoutRetryAfterIsBackoff) {
  BackoffPolicy policy;
  FixedRandom half(0.5);
  EXPECT_EQ(retry_delay(policy, 4, half, std::nullopt), seconds(4));
}

TEST(BackoffTest, RetryAfterGetsUpToTwentyPercentJitter) {
  BackoffPolicy policy;
  FixedRandom zero(0.0);
  EXPECT_EQ(retry_delay(policy, 9, zero, seconds(10)), seconds(10));
  FixedRandom half(0.5);
  EXPECT_EQ(retry_delay(policy, 1, half, seconds(10)), seconds(11));
  MtRandom random(3);
  for (int i = 0; i < 10'000; ++i) {
    Duration d = retry_delay(policy, 1, random, seconds(30));
    ASSERT_GE(d, seconds(30));
    ASSERT_LT(d, seconds(36));
  }
}

TEST(BackoffTest, RetryAfterIgnoresTheBackoffCap) {
  // The server knows best: a Retry-After longer than max is still honoured.
  BackoffPolicy policy{seconds(1), seconds(5), 2.0};
  FixedRandom zero(0.0);
  EXPECT_EQ(retry_delay(policy, 1, zero, seconds(120)), seconds(120));
}

TEST(BackoffTest, RetryAfterEdgeValues) {
  BackoffPolicy policy;
  FixedRandom one(1.0);
  EXPECT_EQ(retry_delay(policy, 1, one, Duration::zero()), Duration::zero());
  EXPECT_EQ(retry_delay(policy, 1, one, seconds(-3)), Duration::zero());
  Duration d = retry_delay(policy, 1, one, Duration::max());
  EXPECT_GT(d, Duration::max() / 2);  // no overflow into negative values
}

TEST(RetryPolicyTest, StopsAtMaxAttempts) {
  RetryPolicy policy;
  policy.max_attempts = 3;
  TimePoint t0 = SimulatedClock().now();
  EXPECT_TRUE(policy.may_retry(1, t0, t0, seconds(1)));
  EXPECT_TRUE(policy.may_retry(2, t0, t0, seconds(1)));
  EXPECT_FALSE(policy.may_retry(3, t0, t0, seconds(1)));
  EXPECT_FALSE(policy.may_retry(4, t0, t0, seconds(1)));
}

TEST(RetryPolicyTest, StopsWhenTheRetryWouldPassMaxElapsed) {
  RetryPolicy policy;
  policy.max_attempts = 100;
  policy.max_elapsed = seconds(60);
  TimePoint t0 = SimulatedClock().now();
  EXPECT_TRUE(policy.may_retry(1, t0, t0 + seconds(50), seconds(10)));  // exactly at the limit
  EXPECT_FALSE(policy.may_retry(1, t0, t0 + seconds(50), seconds(10) + Duration(1)));
  EXPECT_FALSE(policy.may_retry(1, t0, t0 + seconds(61), Duration::zero()));
  EXPECT_FALSE(policy.may_retry(1, t0, t0, Duration::max()));
}

TEST(RetryPolicyTest, NonPositiveMaxElapsedMeansNoTimeLimit) {
  RetryPolicy policy;
  policy.max_attempts = 5;
  policy.max_elapsed = Duration::zero();
  TimePoint t0 = SimulatedClock().now();
  EXPECT_TRUE(policy.may_retry(4, t0, t0 + hours(1000), hours(1000)));
  EXPECT_FALSE(policy.may_retry(5, t0, t0, Duration::zero()));
}

TEST(RetryPolicyTest, DefaultsMatchTheRestContractExample) {
  RetryPolicy policy;
  EXPECT_EQ(policy.max_attempts, 6);
  EXPECT_EQ(policy.max_elapsed, hours(1));
  EXPECT_EQ(policy.backoff.initial, seconds(1));
  EXPECT_EQ(policy.backoff.max, seconds(60));
  EXPECT_DOUBLE_EQ(policy.backoff.multiplier, 2.0);
}

TEST(RetryPolicyTest, DrivingALoopEndsWithinBothLimits) {
  RetryPolicy policy;
  policy.max_attempts = 50;
  policy.max_elapsed = seconds(100);
  MtRandom random(11);
  SimulatedClock clock;
  TimePoint first = clock.now();
  int attempts = 1;
  while (true) {
    Duration delay = backoff_delay(policy.backoff, attempts, random);
    if (!policy.may_retry(attempts, first, clock.now(), delay)) break;
    clock.advance(delay);
    ++attempts;
  }
  EXPECT_LE(attempts, 50);
  EXPECT_LE(clock.now() - first, seconds(100));
}

}  // namespace
}  // namespace floodgate::core
