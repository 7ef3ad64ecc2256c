#include "core/retry_budget.h"

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "core/clock.h"
#include "core/random.h"

namespace floodgate::core {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

TEST(RetryBudgetTest, ReserveAllowsRetriesWithoutRequests) {
  SimulatedClock clock;
  RetryBudget budget(clock, 0.2, 1, seconds(10));  // reserve of 10
  EXPECT_DOUBLE_EQ(budget.balance(), 10);
  for (int i = 0; i < 10; ++i) EXPECT_TRUE(budget.try_acquire_retry()) << i;
  EXPECT_FALSE(budget.try_acquire_retry());
  EXPECT_EQ(budget.retries_allowed(), 10);
  EXPECT_EQ(budget.retries_denied(), 1);
  EXPECT_DOUBLE_EQ(budget.balance(), 0);
}

TEST(RetryBudgetTest, DepositsAreExactInMilliTokens) {
  SimulatedClock clock;
  RetryBudget budget(clock, 0.1, 0, seconds(10));
  for (int i = 0; i < 9; ++i) budget.on_request();
  EXPECT_DOUBLE_EQ(budget.balance(), 0.9);
  EXPECT_FALSE(budget.try_acquire_retry());
  budget.on_request();  // ten deposits of 0.1 make exactly one token
  EXPECT_DOUBLE_EQ(budget.balance(), 1.0);
  EXPECT_TRUE(budget.try_acquire_retry());
  EXPECT_FALSE(budget.try_acquire_retry());
  EXPECT_EQ(budget.requests(), 10);
}

TEST(RetryBudgetTest, RatioOfRequests) {
  SimulatedClock clock;
  RetryBudget budget(clock, 0.2, 0, seconds(10));
  for (int i = 0; i < 100; ++i) budget.on_request();
  int allowed = 0;
  while (budget.try_acquire_retry()) ++allowed;
  EXPECT_EQ(allowed, 20);
}

TEST(RetryBudgetTest, DepositsExpireAfterTheWindow) {
  SimulatedClock clock;
  RetryBudget budget(clock, 0.5, 0, seconds(10));
  for (int i = 0; i < 10; ++i) budget.on_request();
  EXPECT_DOUBLE_EQ(budget.balance(), 5);
  clock.advance(seconds(9));
  EXPECT_DOUBLE_EQ(budget.balance(), 5);
  clock.advance(seconds(1));
  EXPECT_DOUBLE_EQ(budget.balance(), 0);
  EXPECT_FALSE(budget.try_acquire_retry());
}

TEST(RetryBudgetTest, ReserveRefillsAsWithdrawalsExpire) {
  SimulatedClock clock;
  RetryBudget budget(clock, 0.2, 2, seconds(5));  // reserve of 10
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(budget.try_acquire_retry());
  EXPECT_FALSE(budget.try_acquire_retry());
  clock.advance(seconds(4));
  EXPECT_FALSE(budget.try_acquire_retry());
  clock.advance(seconds(1));
  EXPECT_DOUBLE_EQ(budget.balance(), 10);
  EXPECT_TRUE(budget.try_acquire_retry());
}

TEST(RetryBudgetTest, SlidingWindowExpiresSlotBySlot) {
  SimulatedClock clock;
  RetryBudget budget(clock, 1.0, 0, seconds(3));
  budget.on_request();
  clock.advance(seconds(1));
  budget.on_request();
  clock.advance(seconds(1));
  budget.on_request();
  EXPECT_DOUBLE_EQ(budget.balance(), 3);
  clock.advance(seconds(1));
  EXPECT_DOUBLE_EQ(budget.balance(), 2);
  clock.advance(seconds(1));
  EXPECT_DOUBLE_EQ(budget.balance(), 1);
  clock.advance(seconds(1));
  EXPECT_DOUBLE_EQ(budget.balance(), 0);
}

TEST(RetryBudgetTest, BalanceCanDipBelowZeroWhenDepositsExpireFirst) {
  SimulatedClock clock;
  RetryBudget budget(clock, 1.0, 0, seconds(10));
  for (int i = 0; i < 5; ++i) budget.on_request();
  clock.advance(seconds(5));
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(budget.try_acquire_retry());
  clock.advance(seconds(5));  // the deposits expire, the withdrawals not yet
  EXPECT_DOUBLE_EQ(budget.balance(), -5);
  EXPECT_FALSE(budget.try_acquire_retry());
  clock.advance(seconds(5));
  EXPECT_DOUBLE_EQ(budget.balance(), 0);
}

TEST(RetryBudgetTest, ZeroRatioAndZeroFloorAllowsNothing) {
  SimulatedClock clock;
  RetryBudget budget(clock, 0, 0, seconds(10));
  for (int i = 0; i < 1000; ++i) budget.on_request();
  EXPECT_FALSE(budget.try_acquire_retry());
  EXPECT_EQ(budget.retries_denied(), 1);
}

TEST(RetryBudgetTest, NegativeSettingsAreZero) {
  SimulatedClock clock;
  RetryBudget budget(clock, -1, -5, seconds(10));
  EXPECT_DOUBLE_EQ(budget.ratio(), 0);
  EXPECT_DOUBLE_EQ(budget.reserve(), 0);
  budget.on_request();
  EXPECT_FALSE(budget.try_acquire_retry());
}

TEST(RetryBudgetTest, Defaults) {
  SimulatedClock clock;
  RetryBudget budget(clock);
  EXPECT_DOUBLE_EQ(budget.ratio(), 0.2);
  EXPECT_DOUBLE_EQ(budget.reserve(), 100);  // 10 per second over 10 seconds
  EXPECT_DOUBLE_EQ(budget.balance(), 100);
}

TEST(RetryBudgetTest, SubSecondWindow) {
  SimulatedClock clock;
  RetryBudget budget(clock, 1.0, 0, milliseconds(500));
  budget.on_request();
  EXPECT_DOUBLE_EQ(budget.balance(), 1);
  clock.advance(milliseconds(500));
  EXPECT_DOUBLE_EQ(budget.balance(), 0);
}

// Every request fails and is retried as often as the budget lets it; over a long run the
// retries stay under ratio * requests + floor * time (plus one reserve for the first window).
TEST(RetryBudgetTest, LongRunOfFailuresStaysWithinBudget) {
  struct Case {
    double ratio;
    double floor;
    double requests_per_s;
  };
  for (Case c : {Case{0.2, 10, 100}, Case{0.2, 10, 5}, Case{0.1, 1, 1000}, Case{0.5, 0, 50},
                 Case{0.2, 10, 0}}) {
    SimulatedClock clock;
    MtRandom random(99);
    const Duration window = seconds(10);
    RetryBudget budget(clock, c.ratio, c.floor, window);
    const Duration run = std::chrono::minutes(10);
    const TimePoint end = clock.now() + run;
    int64_t requests = 0;
    int64_t retries = 0;
    int64_t retries_in_window = 0;
    while (clock.now() < end) {
      // Poisson-ish arrivals: exponential gaps drawn from the random source.
      double gap_s =
          c.requests_per_s > 0 ? -std::log(1.0 - random.uniform01()) / c.requests_per_s : 0.05;
      clock.advance(from_seconds(gap_s));
      if (c.requests_per_s > 0) {
        budget.on_request();
        ++requests;
      }
      // Each failure asks for a retry, and so does each failed retry: with 100% failures
      // demand always exceeds the budget.
      for (int attempt = 0; attempt < 5; ++attempt) {
        if (!budget.try_acquire_retry()) break;
        ++retries;
        ++retries_in_window;
      }
    }
    double seconds_run = to_seconds(run);
    double bound = c.ratio * static_cast<double>(requests) + c.floor * seconds_run +
                   c.floor * to_seconds(window);
    EXPECT_LE(static_cast<double>(retries), bound)
        << c.ratio << " " << c.floor << " " << c.requests_per_s;
    // And the budget is actually used: most of it is spent when demand is unbounded.
    EXPECT_GE(static_cast<double>(retries), 0.8 * (bound - c.floor * to_seconds(window)))
        << c.ratio << " " << c.floor << " " << c.requests_per_s;
    EXPECT_EQ(budget.retries_allowed(), retries);
    EXPECT_GT(budget.retries_denied(), 0);
  }
}

// The budget's promise, window by window: for a slot in which a retry was allowed, the retries
// in the window ending with that slot stay under the deposits in it plus the reserve. (Windows
// ending in a slot without retries may also hold deposits that expired before them.)
TEST(RetryBudgetTest, WindowEndingInARetryStaysWithinDepositsPlusReserve) {
  SimulatedClock clock;
  MtRandom random(5);
  RetryBudget budget(clock, 0.2, 2, seconds(10));  // reserve 20
  // Per-second tallies; the budget's slots are whole seconds, so windows of ten slots are
  // exactly what it promises about.
  std::vector<int64_t> requests(600, 0);
  std::vector<int64_t> retries(600, 0);
  TimePoint start = clock.now();
  for (int i = 0; i < 60'000; ++i) {
    clock.advance(milliseconds(10));
    auto second = static_cast<size_t>((clock.now() - start) / seconds(1));
    if (second >= requests.size()) break;
    if (random.uniform01() < 0.3) {
      budget.on_request();
      ++requests[second];
    }
    if (random.uniform01() < 0.6 && budget.try_acquire_retry()) ++retries[second];
  }
  int checked = 0;
  for (size_t s = 0; s + 10 <= requests.size(); ++s) {
    if (retries[s + 9] == 0) continue;
    ++checked;
    int64_t req = 0;
    int64_t ret = 0;
    for (size_t k = s; k < s + 10; ++k) {
      req += requests[k];
      ret += retries[k];
    }
    ASSERT_LE(static_cast<double>(ret), 0.2 * static_cast<double>(req) + 20.0 + 1e-9) << s;
  }
  EXPECT_GT(checked, 400);
}

}  // namespace
}  // namespace floodgate::core
