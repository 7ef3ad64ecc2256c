#include "core/token_bucket.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "core/clock.h"
#include "core/random.h"

namespace floodgate::core {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

TEST(TokenBucketTest, StartsFullAndConsumesUpToBurst) {
  SimulatedClock clock;
  TokenBucket bucket(clock, 10, 5);
  EXPECT_DOUBLE_EQ(bucket.level(), 5);
  for (int i = 0; i < 5; ++i) EXPECT_TRUE(bucket.try_consume()) << i;
  EXPECT_FALSE(bucket.try_consume());
  EXPECT_DOUBLE_EQ(bucket.level(), 0);
}

TEST(TokenBucketTest, RefillsLazilyAtRate) {
  SimulatedClock clock;
  TokenBucket bucket(clock, 10, 5);
  ASSERT_TRUE(bucket.try_consume(5));
  clock.advance(milliseconds(100));
  EXPECT_NEAR(bucket.level(), 1.0, 1e-9);
  EXPECT_TRUE(bucket.try_consume());
  EXPECT_FALSE(bucket.try_consume());
  clock.advance(milliseconds(250));
  EXPECT_NEAR(bucket.level(), 2.5, 1e-9);
}

TEST(TokenBucketTest, NeverExceedsBurst) {
  SimulatedClock clock;
  TokenBucket bucket(clock, 100, 3);
  clock.advance(std::chrono::hours(10));
  EXPECT_DOUBLE_EQ(bucket.level(), 3);
  ASSERT_TRUE(bucket.try_consume(3));
  clock.advance(seconds(1));
  EXPECT_DOUBLE_EQ(bucket.level(), 3);
}

TEST(TokenBucketTest, FractionalTokens) {
  SimulatedClock clock;
  TokenBucket bucket(clock, 1, 2);
  EXPECT_TRUE(bucket.try_consume(0.5));
  EXPECT_TRUE(bucket.try_consume(1.25));
  EXPECT_NEAR(bucket.level(), 0.25, 1e-12);
  EXPECT_FALSE(bucket.try_consume(0.5));
  EXPECT_NEAR(bucket.level(), 0.25, 1e-12);  // a failed consume takes nothing
  clock.advance(milliseconds(250));
  EXPECT_TRUE(bucket.try_consume(0.5));
}

TEST(TokenBucketTest, ConsumeOfZeroOrLessAlwaysSucceeds) {
  SimulatedClock clock;
  TokenBucket bucket(clock, 1, 1);
  ASSERT_TRUE(bucket.try_consume());
  EXPECT_TRUE(bucket.try_consume(0));
  EXPECT_TRUE(bucket.try_consume(-1));
  EXPECT_EQ(bucket.time_until(0), Duration::zero());
  EXPECT_DOUBLE_EQ(bucket.level(), 0);
}

TEST(TokenBucketTest, TimeUntilIsZeroWhenAvailable) {
  SimulatedClock clock;
  TokenBucket bucket(clock, 2, 4);
  EXPECT_EQ(bucket.time_until(), Duration::zero());
  EXPECT_EQ(bucket.time_until(4), Duration::zero());
}

TEST(TokenBucketTest, TimeUntilIsExact) {
  SimulatedClock clock;
  TokenBucket bucket(clock, 4, 4);
  ASSERT_TRUE(bucket.try_consume(4));
  EXPECT_EQ(bucket.time_until(1), milliseconds(250));
  EXPECT_EQ(bucket.time_until(2), milliseconds(500));
  clock.advance(milliseconds(100));
  EXPECT_EQ(bucket.time_until(1), milliseconds(150));
}

TEST(TokenBucketTest, TokensAreThereWhenTheWaitIsOver) {
  // Awkward rates produce wait times that do not divide evenly into nanoseconds; the answer
  // must still never be short, or a driver would spin on a zero-length timer.
  for (double rate : {3.0, 7.0, 0.3, 1.0 / 3.0, 625.0 / 60.0, 5000.0 / 60.0, 12345.678}) {
    SimulatedClock clock;
    TokenBucket bucket(clock, rate, 10);
    ASSERT_TRUE(bucket.try_consume(10));
    for (int i = 0; i < 200; ++i) {
      Duration wait = bucket.time_until(1);
      ASSERT_GT(wait, Duration::zero()) << rate << " " << i;
      clock.advance(wait - Duration(1));
      ASSERT_FALSE(bucket.try_consume(1)) << rate << " " << i;
      clock.advance(Duration(1));
      ASSERT_GE(bucket.level(), 1.0) << rate << " " << i;
      ASSERT_TRUE(bucket.try_consume(1)) << rate << " " << i;
    }
  }
}

TEST(TokenBucketTest, TimeUntilLevelAndConsumeAgreeUnderRandomPolling) {
  MtRandom random(42);
  SimulatedClock clock;
  TokenBucket bucket(clock, 625.0 / 60.0, 3);
  int granted = 0;
  for (int i = 0; i < 20'000; ++i) {
    clock.advance(Duration(static_cast<int64_t>(random.uniform01() * 2e8)));
    double n = random.uniform01() < 0.5 ? 1.0 : 0.5 + random.uniform01();
    bool ready = bucket.time_until(n) == Duration::zero();
    ASSERT_EQ(ready, bucket.level() >= n) << i;
    ASSERT_EQ(ready, bucket.try_consume(n)) << i;
    granted += ready ? 1 : 0;
  }
  EXPECT_GT(granted, 0);
}

TEST(TokenBucketTest, LevelAndTimeUntilAgree) {
  SimulatedClock clock;
  TokenBucket bucket(clock, 1.0 / 3.0, 1);
  ASSERT_TRUE(bucket.try_consume());
  clock.advance(bucket.time_until(1));
  EXPECT_GE(bucket.level(), 1.0);
  EXPECT_EQ(bucket.time_until(1), Duration::zero());
}

TEST(TokenBucketTest, RateLimitsOverALongRun) {
  SimulatedClock clock;
  TokenBucket bucket(clock, 10, 20);
  int granted = 0;
  for (int ms = 0; ms < 60'000; ++ms) {
    while (bucket.try_consume()) ++granted;
    clock.advance(milliseconds(1));
  }
  // The burst plus 10 per second for 60 seconds.
  EXPECT_GE(granted, 20 + 600 - 1);
  EXPECT_LE(granted, 20 + 600);
}

TEST(TokenBucketTest, TimeUntilMoreThanBurstIsMaxWait) {
  SimulatedClock clock;
  TokenBucket bucket(clock, 10, 5);
  EXPECT_EQ(bucket.time_until(6), TokenBucket::kMaxWait);
  EXPECT_FALSE(bucket.try_consume(6));
  EXPECT_DOUBLE_EQ(bucket.level(), 5);
}

TEST(TokenBucketTest, TimeUntilIsCappedForSlowRates) {
  SimulatedClock clock;
  TokenBucket bucket(clock, 1.0 / 7200, 1);  // one token per two hours
  ASSERT_TRUE(bucket.try_consume());
  EXPECT_EQ(bucket.time_until(), TokenBucket::kMaxWait);
}

TEST(TokenBucketTest, ZeroRateWithBurstIsAnAllowanceThatNeverRefills) {
  SimulatedClock clock;
  TokenBucket bucket(clock, 0, 3);
  EXPECT_FALSE(bucket.unlimited());
  EXPECT_TRUE(bucket.try_consume(3));
  EXPECT_FALSE(bucket.try_consume());
  EXPECT_EQ(bucket.time_until(), TokenBucket::kMaxWait);
  clock.advance(std::chrono::hours(100));
  EXPECT_FALSE(bucket.try_consume());
  EXPECT_DOUBLE_EQ(bucket.level(), 0);
}

TEST(TokenBucketTest, ZeroRateAndZeroBurstIsUnlimited) {
  SimulatedClock clock;
  TokenBucket bucket(clock, 0, 0);
  EXPECT_TRUE(bucket.unlimited());
  for (int i = 0; i < 100'000; ++i) ASSERT_TRUE(bucket.try_consume());
  EXPECT_TRUE(bucket.try_consume(1e12));
  EXPECT_EQ(bucket.time_until(1e12), Duration::zero());
  EXPECT_TRUE(std::isinf(bucket.level()));
  EXPECT_TRUE(std::isinf(bucket.burst()));
  EXPECT_DOUBLE_EQ(bucket.rate(), 0);
  bucket.drain();  // no effect on an unlimited bucket
  EXPECT_TRUE(bucket.try_consume());
}

TEST(TokenBucketTest, NegativeRateAndBurstIsUnlimited) {
  SimulatedClock clock;
  TokenBucket bucket(clock, -1, -1);
  EXPECT_TRUE(bucket.unlimited());
  EXPECT_TRUE(bucket.try_consume(50));
}

TEST(TokenBucketTest, PositiveRateWithoutBurstGetsOneSecondOfTokens) {
  SimulatedClock clock;
  TokenBucket fast(clock, 50, 0);
  EXPECT_DOUBLE_EQ(fast.burst(), 50);
  TokenBucket slow(clock, 0.1, 0);
  EXPECT_DOUBLE_EQ(slow.burst(), 1);
  EXPECT_TRUE(slow.try_consume());
  EXPECT_EQ(slow.time_until(), seconds(10));
}

TEST(TokenBucketTest, SetRateKeepsLevelClampedToNewBurst) {
  SimulatedClock clock;
  TokenBucket bucket(clock, 10, 10);
  ASSERT_TRUE(bucket.try_consume(4));  // 6 left
  bucket.set_rate(1, 3);
  EXPECT_DOUBLE_EQ(bucket.level(), 3);
  EXPECT_DOUBLE_EQ(bucket.rate(), 1);
  EXPECT_DOUBLE_EQ(bucket.burst(), 3);
  ASSERT_TRUE(bucket.try_consume(3));
  bucket.set_rate(2, 100);
  EXPECT_DOUBLE_EQ(bucket.level(), 0);  // a larger burst does not add tokens
  clock.advance(seconds(1));
  EXPECT_NEAR(bucket.level(), 2, 1e-9);
}

TEST(TokenBucketTest, SetRateCreditsTimeAtTheOldRate) {
  SimulatedClock clock;
  TokenBucket bucket(clock, 10, 100);
  ASSERT_TRUE(bucket.try_consume(100));
  clock.advance(seconds(2));  // 20 tokens at the old rate
  bucket.set_rate(1, 100);
  EXPECT_NEAR(bucket.level(), 20, 1e-9);
  clock.advance(seconds(2));
  EXPECT_NEAR(bucket.level(), 22, 1e-9);
}

TEST(TokenBucketTest, SetRateBetweenUnlimitedAndLimited) {
  SimulatedClock clock;
  TokenBucket bucket(clock, 0, 0);
  bucket.set_rate(5, 10);
  EXPECT_FALSE(bucket.unlimited());
  EXPECT_DOUBLE_EQ(bucket.level(), 10);  // starts full, as a new bucket would
  ASSERT_TRUE(bucket.try_consume(10));
  bucket.set_rate(0, 0);
  EXPECT_TRUE(bucket.unlimited());
  EXPECT_TRUE(bucket.try_consume(1000));
}

TEST(TokenBucketTest, DrainEmptiesAndRefillsFromZero) {
  SimulatedClock clock;
  TokenBucket bucket(clock, 10, 50);
  bucket.drain();
  EXPECT_DOUBLE_EQ(bucket.level(), 0);
  EXPECT_FALSE(bucket.try_consume());
  EXPECT_EQ(bucket.time_until(), milliseconds(100));
  clock.advance(milliseconds(500));
  EXPECT_NEAR(bucket.level(), 5, 1e-9);
}

TEST(TokenBucketTest, RefundPutsTokensBackUpToTheBurst) {
  SimulatedClock clock;
  TokenBucket bucket(clock, 0.1, 1);
  ASSERT_TRUE(bucket.try_consume());
  EXPECT_FALSE(bucket.try_consume());
  bucket.refund(1);
  EXPECT_DOUBLE_EQ(bucket.level(), 1);
  bucket.refund(5);  // never above the burst
  EXPECT_DOUBLE_EQ(bucket.level(), 1);
  bucket.refund(-3);  // nothing
  EXPECT_DOUBLE_EQ(bucket.level(), 1);
  EXPECT_TRUE(bucket.try_consume());
  TokenBucket unlimited(clock, 0, 0);
  unlimited.refund(2);
  EXPECT_TRUE(unlimited.unlimited());
}

TEST(TokenBucketTest, ParseRate) {
  EXPECT_EQ(TokenBucket::parse_rate("5/s"), 5.0);
  EXPECT_EQ(TokenBucket::parse_rate("5"), 5.0);
  EXPECT_EQ(TokenBucket::parse_rate("0.5"), 0.5);
  EXPECT_EQ(TokenBucket::parse_rate("600/min"), 10.0);
  EXPECT_EQ(TokenBucket::parse_rate("600/m"), 10.0);
  EXPECT_EQ(TokenBucket::parse_rate("3600/h"), 1.0);
  EXPECT_EQ(TokenBucket::parse_rate("7200/hour"), 2.0);
  EXPECT_EQ(TokenBucket::parse_rate("30/sec"), 30.0);
  EXPECT_EQ(TokenBucket::parse_rate(" 120 / MIN "), 2.0);
  EXPECT_NEAR(*TokenBucket::parse_rate("625/min"), 625.0 / 60.0, 1e-12);
  EXPECT_EQ(TokenBucket::parse_rate("0"), 0.0);
  EXPECT_EQ(TokenBucket::parse_rate("0/s"), 0.0);
  EXPECT_EQ(TokenBucket::parse_rate("off"), 0.0);
  EXPECT_EQ(TokenBucket::parse_rate("OFF"), 0.0);
  EXPECT_EQ(TokenBucket::parse_rate("unlimited"), 0.0);
}

TEST(TokenBucketTest, ParseRateRejectsJunk) {
  for (const char* junk : {"", " ", "/s", "5/", "5/d", "5/ss", "-5/s", "+5", "abc", "5x", "1e3",
                           "inf", "nan", "5/s/s", "1.2.3", ".", "5 5", "0x10"}) {
    EXPECT_FALSE(TokenBucket::parse_rate(junk).has_value()) << '"' << junk << '"';
  }
}

}  // namespace
}  // namespace floodgate::core
