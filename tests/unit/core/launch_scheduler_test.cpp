#include "core/launch_scheduler.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <map>
#include <vector>

#include "core/clock.h"

namespace floodgate::core {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using Key = LaunchScheduler::BatchKey;

constexpr int64_t kPlenty = 1'000'000;

BatchQuota quota_with_priority(int priority) {
  BatchQuota q;
  q.priority = priority;
  return q;
}

BatchQuota quota_with_in_flight(int max_in_flight) {
  BatchQuota q;
  q.max_in_flight = max_in_flight;
  return q;
}

BatchQuota quota_with_rate(double launches_per_second, double burst = 0) {
  BatchQuota q;
  q.launches_per_second = launches_per_second;
  q.burst = burst;
  return q;
}

// Takes `n` single-item grants, finishing each request at once, and counts them per batch.
std::map<Key, int> take_grants(LaunchScheduler& scheduler, int n) {
  std::map<Key, int> counts;
  for (int i = 0; i < n; ++i) {
    auto grant = scheduler.next(1);
    if (!grant) {
      ADD_FAILURE() << "no grant at step " << i;
      break;
    }
    EXPECT_EQ(grant->items, 1);
    counts[grant->batch] += 1;
    scheduler.on_request_done(grant->batch);
  }
  return counts;
}

std::vector<Key> grant_sequence(LaunchScheduler& scheduler, int n) {
  std::vector<Key> out;
  for (int i = 0; i < n; ++i) {
    auto grant = scheduler.next(1);
    if (!grant) break;
    out.push_back(grant->batch);
    scheduler.on_request_done(grant->batch);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Basics

TEST(LaunchSchedulerTest, EmptySchedulerGrantsNothing) {
  SimulatedClock clock;
  LaunchScheduler scheduler(clock);
  EXPECT_EQ(scheduler.size(), 0u);
  EXPECT_FALSE(scheduler.next(10).has_value());
  EXPECT_FALSE(scheduler.time_until_ready().has_value());
}

TEST(LaunchSchedulerTest, BatchWithoutReadyItemsGetsNoGrant) {
  SimulatedClock clock;
  LaunchScheduler scheduler(clock);
  scheduler.add_batch(1, BatchQuota{});
  EXPECT_TRUE(scheduler.has_batch(1));
  EXPECT_EQ(scheduler.size(), 1u);
  EXPECT_FALSE(scheduler.next(1).has_value());
  scheduler.set_ready(1, 1);
  auto grant = scheduler.next(1);
  ASSERT_TRUE(grant.has_value());
  EXPECT_EQ(grant->batch, 1u);
  EXPECT_EQ(grant->items, 1);
  EXPECT_FALSE(scheduler.next(1).has_value());  // the one ready item is taken
}

TEST(LaunchSchedulerTest, NegativeReadyCountsAsNone) {
  SimulatedClock clock;
  LaunchScheduler scheduler(clock);
  scheduler.add_batch(1, BatchQuota{});
  scheduler.set_ready(1, -5);
  EXPECT_FALSE(scheduler.next(1).has_value());
}

TEST(LaunchSchedulerTest, MaxItemsBelowOneGrantsNothingAndTakesNothing) {
  SimulatedClock clock;
  LaunchScheduler scheduler(clock);
  scheduler.add_batch(1, quota_with_rate(1, 1));
  scheduler.set_ready(1, 5);
  EXPECT_FALSE(scheduler.next(0).has_value());
  EXPECT_FALSE(scheduler.next(-3).has_value());
  EXPECT_EQ(scheduler.in_flight(1), 0);
  auto grant = scheduler.next(1);  // the rate token is still there
  ASSERT_TRUE(grant.has_value());
  EXPECT_EQ(grant->items, 1);
}

TEST(LaunchSchedulerTest, CallsOnUnknownBatchesAreHarmless) {
  SimulatedClock clock;
  LaunchScheduler scheduler(clock);
  scheduler.set_ready(9, 10);
  scheduler.set_paused(9, true);
  scheduler.update_quota(9, quota_with_in_flight(1));
  scheduler.on_request_done(9);
  scheduler.remove_batch(9);
  EXPECT_FALSE(scheduler.has_batch(9));
  EXPECT_EQ(scheduler.in_flight(9), 0);
  EXPECT_EQ(scheduler.size(), 0u);
  EXPECT_FALSE(scheduler.next(1).has_value());
}

// ---------------------------------------------------------------------------------------------
// Bulk grant sizes

TEST(LaunchSchedulerTest, GrantCarriesUpToMaxItems) {
  SimulatedClock clock;
  LaunchScheduler scheduler(clock);
  scheduler.add_batch(1, BatchQuota{});
  scheduler.set_ready(1, 250);
  std::vector<int> sizes;
  while (auto grant = scheduler.next(100)) sizes.push_back(grant->items);
  EXPECT_EQ(sizes, (std::vector<int>{100, 100, 50}));
  EXPECT_EQ(scheduler.in_flight(1), 3);  // one per request, not per item
}

TEST(LaunchSchedulerTest, SetReadyReplacesTheCount) {
  SimulatedClock clock;
  LaunchScheduler scheduler(clock);
  scheduler.add_batch(1, BatchQuota{});
  scheduler.set_ready(1, 10);
  scheduler.set_ready(1, 3);
  auto grant = scheduler.next(100);
  ASSERT_TRUE(grant.has_value());
  EXPECT_EQ(grant->items, 3);
}

TEST(LaunchSchedulerTest, BulkGrantIsCappedByRateTokens) {
  SimulatedClock clock;
  LaunchScheduler scheduler(clock);
  scheduler.add_batch(1, quota_with_rate(10, 5));
  scheduler.set_ready(1, 1000);
  auto first = scheduler.next(100);
  ASSERT_TRUE(first.has_value());
  EXPECT_EQ(first->items, 5);  // the whole burst, not 100
  EXPECT_FALSE(scheduler.next(100).has_value());

  clock.advance(milliseconds(250));  // 2.5 tokens: whole items only
  auto second = scheduler.next(100);
  ASSERT_TRUE(second.has_value());
  EXPECT_EQ(second->items, 2);
  EXPECT_FALSE(scheduler.next(100).has_value());  // half a token left

  clock.advance(milliseconds(60));  // 0.5 + 0.6 tokens
  auto third = scheduler.next(100);
  ASSERT_TRUE(third.has_value());
  EXPECT_EQ(third->items, 1);
}

TEST(LaunchSchedulerTest, BulkGrantIsCappedByReadyEvenWithTokens) {
  SimulatedClock clock;
  LaunchScheduler scheduler(clock);
  scheduler.add_batch(1, quota_with_rate(10, 50));
  scheduler.set_ready(1, 7);
  auto grant = scheduler.next(100);
  ASSERT_TRUE(grant.has_value());
  EXPECT_EQ(grant->items, 7);
  // Only the 7 granted items took tokens.
  scheduler.set_ready(1, 100);
  auto rest = scheduler.next(100);
  ASSERT_TRUE(rest.has_value());
  EXPECT_EQ(rest->items, 43);
}

// ---------------------------------------------------------------------------------------------
// Weighted round-robin by priority

TEST(LaunchSchedulerTest, EqualPrioritiesShareEqually) {
  SimulatedClock clock;
  LaunchScheduler scheduler(clock);
  for (Key k : {1, 2, 3}) {
    scheduler.add_batch(k, BatchQuota{});
    scheduler.set_ready(k, kPlenty);
  }
  auto counts = take_grants(scheduler, 3000);
  EXPECT_EQ(counts[1], 1000);
  EXPECT_EQ(counts[2], 1000);
  EXPECT_EQ(counts[3], 1000);
}

TEST(LaunchSchedulerTest, ProportionsFollowOnePlusPriority) {
  SimulatedClock clock;
  LaunchScheduler scheduler(clock);
  // Weights 1, 2, 4 and 11.
  const std::map<Key, int> priorities = {{1, 0}, {2, 1}, {3, 3}, {4, 10}};
  int total_weight = 0;
  for (const auto& [key, priority] : priorities) {
    scheduler.add_batch(key, quota_with_priority(priority));
    scheduler.set_ready(key, kPlenty);
    total_weight += 1 + priority;
  }
  const int rounds = 500;
  auto counts = take_grants(scheduler, rounds * total_weight);
  for (const auto& [key, priority] : priorities) {
    EXPECT_EQ(counts[key], rounds * (1 + priority)) << "batch " << key;
  }
}

TEST(LaunchSchedulerTest, ProportionsHoldOverEveryPrefix) {
  SimulatedClock clock;
  LaunchScheduler scheduler(clock);
  scheduler.add_batch(1, quota_with_priority(0));  // weight 1
  scheduler.add_batch(2, quota_with_priority(3));  // weight 4
  scheduler.set_ready(1, kPlenty);
  scheduler.set_ready(2, kPlenty);
  int low = 0;
  for (int n = 1; n <= 1000; ++n) {
    auto grant = scheduler.next(1);
    ASSERT_TRUE(grant.has_value());
    if (grant->batch == 1) ++low;
    scheduler.on_request_done(grant->batch);
    // Smooth WRR never drifts more than one grant from the exact share.
    EXPECT_LE(std::abs(low * 5 - n), 5) << "after " << n << " grants";
  }
}

TEST(LaunchSchedulerTest, NegativePriorityWeighsLikeZero) {
  SimulatedClock clock;
  LaunchScheduler scheduler(clock);
  scheduler.add_batch(1, quota_with_priority(-50));
  scheduler.add_batch(2, quota_with_priority(0));
  scheduler.set_ready(1, kPlenty);
  scheduler.set_ready(2, kPlenty);
  auto counts = take_grants(scheduler, 1000);
  EXPECT_EQ(counts[1], 500);
  EXPECT_EQ(counts[2], 500);
}

TEST(LaunchSchedulerTest, SmoothSequenceInterleavesHeavyBatch) {
  SimulatedClock clock;
  LaunchScheduler scheduler(clock);
  scheduler.add_batch(10, quota_with_priority(4));  // weight 5
  scheduler.add_batch(20, quota_with_priority(0));  // weight 1
  scheduler.add_batch(30, quota_with_priority(0));  // weight 1
  for (Key k : {10, 20, 30}) scheduler.set_ready(k, kPlenty);
  // The classic smooth weighted round-robin order for weights {5, 1, 1}.
  const std::vector<Key> cycle = {10, 10, 20, 10, 30, 10, 10};
  std::vector<Key> expected;
  for (int i = 0; i < 3; ++i) expected.insert(expected.end(), cycle.begin(), cycle.end());
  EXPECT_EQ(grant_sequence(scheduler, 21), expected);
}

TEST(LaunchSchedulerTest, TiesGoToTheEarlierAddedBatch) {
  SimulatedClock clock;
  LaunchScheduler scheduler(clock);
  // Keys in descending order, so insertion order and key order disagree.
  scheduler.add_batch(7, BatchQuota{});
  scheduler.add_batch(3, BatchQuota{});
  scheduler.add_batch(5, BatchQuota{});
  for (Key k : {7, 3, 5}) scheduler.set_ready(k, kPlenty);
  EXPECT_EQ(grant_sequence(scheduler, 6), (std::vector<Key>{7, 3, 5, 7, 3, 5}));
}

TEST(LaunchSchedulerTest, SameInputsGiveSameSequence) {
  auto run = [] {
    SimulatedClock clock;
    LaunchScheduler scheduler(clock);
    for (Key k = 100; k > 90; --k) {
      scheduler.add_batch(k, quota_with_priority(static_cast<int>(k % 4)));
      scheduler.set_ready(k, kPlenty);
    }
    return grant_sequence(scheduler, 500);
  };
  auto first = run();
  ASSERT_EQ(first.size(), 500u);
  EXPECT_EQ(run(), first);
}

TEST(LaunchSchedulerTest, ReAddingABatchDoesNotGiveItExtraTurns) {
  SimulatedClock clock;
  LaunchScheduler scheduler(clock);
  scheduler.add_batch(1, BatchQuota{});
  scheduler.add_batch(2, BatchQuota{});
  scheduler.add_batch(1, BatchQuota{});  // same key again: a quota update
  EXPECT_EQ(scheduler.size(), 2u);
  scheduler.set_ready(1, kPlenty);
  scheduler.set_ready(2, kPlenty);
  auto counts = take_grants(scheduler, 1000);
  EXPECT_EQ(counts[1], 500);
  EXPECT_EQ(counts[2], 500);
}

TEST(LaunchSchedulerTest, UpdateQuotaChangesTheWeight) {
  SimulatedClock clock;
  LaunchScheduler scheduler(clock);
  scheduler.add_batch(1, BatchQuota{});
  scheduler.add_batch(2, BatchQuota{});
  scheduler.set_ready(1, kPlenty);
  scheduler.set_ready(2, kPlenty);
  auto before = take_grants(scheduler, 100);
  EXPECT_EQ(before[1], 50);
  scheduler.update_quota(2, quota_with_priority(2));  // weight 3
  auto after = take_grants(scheduler, 400);
  EXPECT_NEAR(after[1], 100, 1);
  EXPECT_NEAR(after[2], 300, 1);
}

TEST(LaunchSchedulerTest, BatchWithFewReadyItemsDoesNotHoldOthersBack) {
  SimulatedClock clock;
  LaunchScheduler scheduler(clock);
  scheduler.add_batch(1, quota_with_priority(10));
  scheduler.add_batch(2, BatchQuota{});
  scheduler.set_ready(1, 3);
  scheduler.set_ready(2, kPlenty);
  auto counts = take_grants(scheduler, 100);
  EXPECT_EQ(counts[1], 3);
  EXPECT_EQ(counts[2], 97);
}

// ---------------------------------------------------------------------------------------------
// Per-batch in-flight cap

TEST(LaunchSchedulerTest, MaxInFlightStopsGrantsUntilRequestsFinish) {
  SimulatedClock clock;
  LaunchScheduler scheduler(clock);
  scheduler.add_batch(1, quota_with_in_flight(2));
  scheduler.set_ready(1, 100);
  ASSERT_TRUE(scheduler.next(1).has_value());
  ASSERT_TRUE(scheduler.next(1).has_value());
  EXPECT_EQ(scheduler.in_flight(1), 2);
  EXPECT_FALSE(scheduler.next(1).has_value());
  // Waiting on in-flight requests, not on a rate: no timer to arm.
  EXPECT_FALSE(scheduler.time_until_ready().has_value());

  scheduler.on_request_done(1);
  EXPECT_EQ(scheduler.in_flight(1), 1);
  auto grant = scheduler.next(1);
  ASSERT_TRUE(grant.has_value());
  EXPECT_EQ(grant->batch, 1u);
  EXPECT_FALSE(scheduler.next(1).has_value());
}

TEST(LaunchSchedulerTest, InFlightNeverExceedsCapOverManyRequests) {
  SimulatedClock clock;
  LaunchScheduler scheduler(clock);
  scheduler.add_batch(1, quota_with_in_flight(3));
  scheduler.add_batch(2, BatchQuota{});
  scheduler.set_ready(1, kPlenty);
  scheduler.set_ready(2, kPlenty);
  std::vector<Key> open;
  int granted_to_1 = 0;
  for (int step = 0; step < 2000; ++step) {
    auto grant = scheduler.next(1);
    ASSERT_TRUE(grant.has_value());  // batch 2 has no cap, so someone can always send
    open.push_back(grant->batch);
    if (grant->batch == 1) ++granted_to_1;
    EXPECT_LE(scheduler.in_flight(1), 3);
    // Finish the oldest request every other step, so requests pile up.
    if (step % 2 == 1) {
      scheduler.on_request_done(open.front());
      open.erase(open.begin());
    }
  }
  EXPECT_GT(granted_to_1, 0);
  EXPECT_EQ(scheduler.in_flight(1) + scheduler.in_flight(2), static_cast<int>(open.size()));
}

TEST(LaunchSchedulerTest, OtherBatchesAreServedWhileOneIsAtItsCap) {
  SimulatedClock clock;
  LaunchScheduler scheduler(clock);
  scheduler.add_batch(1, quota_with_in_flight(1));
  scheduler.add_batch(2, BatchQuota{});
  scheduler.set_ready(1, kPlenty);
  scheduler.set_ready(2, kPlenty);
  auto first = scheduler.next(1);
  ASSERT_TRUE(first.has_value());
  EXPECT_EQ(first->batch, 1u);
  for (int i = 0; i < 5; ++i) {
    auto grant = scheduler.next(1);
    ASSERT_TRUE(grant.has_value());
    EXPECT_EQ(grant->batch, 2u);
  }
  EXPECT_EQ(scheduler.in_flight(2), 5);
}

TEST(LaunchSchedulerTest, OnRequestDoneNeverGoesBelowZero) {
  SimulatedClock clock;
  LaunchScheduler scheduler(clock);
  scheduler.add_batch(1, quota_with_in_flight(1));
  scheduler.on_request_done(1);
  scheduler.on_request_done(1);
  EXPECT_EQ(scheduler.in_flight(1), 0);
  scheduler.set_ready(1, 5);
  ASSERT_TRUE(scheduler.next(1).has_value());
  EXPECT_FALSE(scheduler.next(1).has_value());  // the cap is still one, not three
}

TEST(LaunchSchedulerTest, RaisingTheCapLetsMoreRequestsOut) {
  SimulatedClock clock;
  LaunchScheduler scheduler(clock);
  scheduler.add_batch(1, quota_with_in_flight(1));
  scheduler.set_ready(1, 10);
  ASSERT_TRUE(scheduler.next(1).has_value());
  EXPECT_FALSE(scheduler.next(1).has_value());
  scheduler.update_quota(1, quota_with_in_flight(3));
  EXPECT_TRUE(scheduler.next(1).has_value());
  EXPECT_TRUE(scheduler.next(1).has_value());
  EXPECT_FALSE(scheduler.next(1).has_value());
  scheduler.update_quota(1, BatchQuota{});  // 0: no cap of its own
  EXPECT_TRUE(scheduler.next(1).has_value());
  EXPECT_EQ(scheduler.in_flight(1), 4);
}

// ---------------------------------------------------------------------------------------------
// Launch rate

TEST(LaunchSchedulerTest, RateAllowsTheBurstThenWaits) {
  SimulatedClock clock;
  LaunchScheduler scheduler(clock);
  scheduler.add_batch(1, quota_with_rate(5));  // burst defaults to max(1, 5)
  scheduler.set_ready(1, 100);
  for (int i = 0; i < 5; ++i) {
    auto grant = scheduler.next(1);
    ASSERT_TRUE(grant.has_value()) << i;
    scheduler.on_request_done(1);
  }
  EXPECT_FALSE(scheduler.next(1).has_value());
  auto wait = scheduler.time_until_ready();
  ASSERT_TRUE(wait.has_value());
  EXPECT_GE(*wait, milliseconds(200));
  EXPECT_LE(*wait, milliseconds(201));

  clock.advance(*wait);
  EXPECT_TRUE(scheduler.next(1).has_value());
  EXPECT_FALSE(scheduler.next(1).has_value());
}

TEST(LaunchSchedulerTest, SlowRateHasBurstOfOne) {
  SimulatedClock clock;
  LaunchScheduler scheduler(clock);
  scheduler.add_batch(1, quota_with_rate(0.5));
  scheduler.set_ready(1, 100);
  auto grant = scheduler.next(10);
  ASSERT_TRUE(grant.has_value());
  EXPECT_EQ(grant->items, 1);
  EXPECT_FALSE(scheduler.next(10).has_value());
  clock.advance(milliseconds(1999));
  EXPECT_FALSE(scheduler.next(10).has_value());
  clock.advance(milliseconds(1));
  EXPECT_TRUE(scheduler.next(10).has_value());
}

TEST(LaunchSchedulerTest, GrantsOverSimulatedTimeMatchTheRate) {
  struct Case {
    double rate;
    double burst;
    int max_items;
  };
  for (const Case& c :
       {Case{5, 0, 1}, Case{5, 20, 1}, Case{2.5, 0, 10}, Case{40, 10, 25}, Case{0.2, 3, 5}}) {
    SCOPED_TRACE(testing::Message()
                 << "rate " << c.rate << " burst " << c.burst << " max_items " << c.max_items);
    SimulatedClock clock;
    LaunchScheduler scheduler(clock);
    scheduler.add_batch(1, quota_with_rate(c.rate, c.burst));
    scheduler.set_ready(1, kPlenty);
    const double burst = c.burst > 0 ? c.burst : std::max(1.0, c.rate);
    const auto horizon = seconds(60);
    const auto step = milliseconds(7);
    int64_t items = 0;
    for (auto t = Duration::zero(); t <= horizon; t += step) {
      while (auto grant = scheduler.next(c.max_items)) {
        EXPECT_GE(grant->items, 1);
        EXPECT_LE(grant->items, c.max_items);
        items += grant->items;
        scheduler.on_request_done(grant->batch);
      }
      clock.advance(step);
    }
    const double expected = c.rate * std::chrono::duration<double>(horizon).count();
    EXPECT_LE(std::abs(static_cast<double>(items) - expected), 1 + burst) << "items " << items;
    // Never more than the bucket could have held.
    EXPECT_LE(static_cast<double>(items), expected + burst + 1e-9);
  }
}

TEST(LaunchSchedulerTest, EachBatchKeepsItsOwnRate) {
  SimulatedClock clock;
  LaunchScheduler scheduler(clock);
  scheduler.add_batch(1, quota_with_rate(10, 1));
  scheduler.add_batch(2, quota_with_rate(2, 1));
  scheduler.add_batch(3, BatchQuota{});  // no rate of its own
  for (Key k : {1, 2, 3}) scheduler.set_ready(k, kPlenty);
  std::map<Key, int64_t> items;
  const auto step = milliseconds(10);
  for (int i = 0; i < 1000; ++i) {  // 10 s
    // Unrated batch 3 would take every turn, so serve only a few requests per step.
    for (int j = 0; j < 4; ++j) {
      auto grant = scheduler.next(1);
      if (!grant) break;
      items[grant->batch] += grant->items;
      scheduler.on_request_done(grant->batch);
    }
    clock.advance(step);
  }
  EXPECT_NEAR(static_cast<double>(items[1]), 100, 2);
  EXPECT_NEAR(static_cast<double>(items[2]), 20, 2);
  EXPECT_GT(items[3], 1000);
}

TEST(LaunchSchedulerTest, RateLimitedBatchYieldsItsTurnToOthers) {
  SimulatedClock clock;
  LaunchScheduler scheduler(clock);
  scheduler.add_batch(1, quota_with_rate(1, 1));
  scheduler.add_batch(2, BatchQuota{});
  scheduler.set_ready(1, kPlenty);
  scheduler.set_ready(2, kPlenty);
  auto counts = take_grants(scheduler, 10);
  EXPECT_EQ(counts[1], 1);
  EXPECT_EQ(counts[2], 9);
}

TEST(LaunchSchedulerTest, RemovingTheRateMakesTheBatchUnlimited) {
  SimulatedClock clock;
  LaunchScheduler scheduler(clock);
  scheduler.add_batch(1, quota_with_rate(1, 1));
  scheduler.set_ready(1, 100);
  ASSERT_TRUE(scheduler.next(50).has_value());
  EXPECT_FALSE(scheduler.next(50).has_value());
  scheduler.update_quota(1, BatchQuota{});
  auto grant = scheduler.next(50);
  ASSERT_TRUE(grant.has_value());
  EXPECT_EQ(grant->items, 50);
  EXPECT_FALSE(scheduler.time_until_ready().has_value());
}

TEST(LaunchSchedulerTest, UpdatingTheRateKeepsEarnedTokensWithinTheNewBurst) {
  SimulatedClock clock;
  LaunchScheduler scheduler(clock);
  scheduler.add_batch(1, quota_with_rate(1, 10));
  scheduler.set_ready(1, 100);
  scheduler.update_quota(1, quota_with_rate(1, 4));
  auto grant = scheduler.next(100);
  ASSERT_TRUE(grant.has_value());
  EXPECT_EQ(grant->items, 4);
  EXPECT_FALSE(scheduler.next(100).has_value());
  // A faster rate refills faster from here on, without a fresh burst.
  scheduler.update_quota(1, quota_with_rate(100, 4));
  EXPECT_FALSE(scheduler.next(100).has_value());
  clock.advance(milliseconds(25));
  grant = scheduler.next(100);
  ASSERT_TRUE(grant.has_value());
  EXPECT_EQ(grant->items, 2);
}

// ---------------------------------------------------------------------------------------------
// time_until_ready

TEST(LaunchSchedulerTest, TimeUntilReadyIsNothingWithoutRateLimitedWaiters) {
  SimulatedClock clock;
  LaunchScheduler scheduler(clock);
  scheduler.add_batch(1, BatchQuota{});  // no rate
  scheduler.set_ready(1, 10);
  EXPECT_FALSE(scheduler.time_until_ready().has_value());

  scheduler.add_batch(2, quota_with_rate(1, 1));  // rate, but nothing ready
  EXPECT_FALSE(scheduler.time_until_ready().has_value());
}

TEST(LaunchSchedulerTest, TimeUntilReadyIsZeroWhileTokensAreThere) {
  SimulatedClock clock;
  LaunchScheduler scheduler(clock);
  scheduler.add_batch(1, quota_with_rate(1, 2));
  scheduler.set_ready(1, 10);
  auto wait = scheduler.time_until_ready();
  ASSERT_TRUE(wait.has_value());
  EXPECT_EQ(*wait, Duration::zero());
}

TEST(LaunchSchedulerTest, TimeUntilReadyIsTheSoonestBatch) {
  SimulatedClock clock;
  LaunchScheduler scheduler(clock);
  scheduler.add_batch(1, quota_with_rate(1, 1));   // 1 s per token
  scheduler.add_batch(2, quota_with_rate(4, 1));   // 250 ms per token
  scheduler.add_batch(3, quota_with_rate(10, 1));  // 100 ms, but nothing ready later
  for (Key k : {1, 2, 3}) scheduler.set_ready(k, 1);
  take_grants(scheduler, 3);
  for (Key k : {1, 2}) scheduler.set_ready(k, 10);
  auto wait = scheduler.time_until_ready();
  ASSERT_TRUE(wait.has_value());
  EXPECT_GE(*wait, milliseconds(250));
  EXPECT_LE(*wait, milliseconds(251));

  clock.advance(*wait);
  auto grant = scheduler.next(1);
  ASSERT_TRUE(grant.has_value());
  EXPECT_EQ(grant->batch, 2u);
}

TEST(LaunchSchedulerTest, TimeUntilReadySkipsPausedAndCappedBatches) {
  SimulatedClock clock;
  LaunchScheduler scheduler(clock);
  BatchQuota capped = quota_with_rate(100, 1);
  capped.max_in_flight = 1;
  scheduler.add_batch(1, capped);
  scheduler.add_batch(2, quota_with_rate(100, 1));
  scheduler.add_batch(3, quota_with_rate(1, 1));
  for (Key k : {1, 2, 3}) scheduler.set_ready(k, 10);
  // Drain every bucket; batch 1's request stays in flight.
  std::map<Key, int> counts;
  while (auto grant = scheduler.next(1)) {
    counts[grant->batch] += 1;
    if (grant->batch != 1) scheduler.on_request_done(grant->batch);
  }
  ASSERT_EQ(counts[1], 1);
  scheduler.set_paused(2, true);
  auto wait = scheduler.time_until_ready();
  ASSERT_TRUE(wait.has_value());
  // Only batch 3 (1/s) counts: 1 is at its cap, 2 is paused.
  EXPECT_GE(*wait, milliseconds(990));

  scheduler.set_paused(3, true);
  EXPECT_FALSE(scheduler.time_until_ready().has_value());
}

// ---------------------------------------------------------------------------------------------
// Pause and removal

TEST(LaunchSchedulerTest, PausedBatchIsSkippedUntilResumed) {
  SimulatedClock clock;
  LaunchScheduler scheduler(clock);
  scheduler.add_batch(1, quota_with_priority(5));
  scheduler.add_batch(2, BatchQuota{});
  scheduler.set_ready(1, kPlenty);
  scheduler.set_ready(2, kPlenty);
  scheduler.set_paused(1, true);
  auto counts = take_grants(scheduler, 50);
  EXPECT_EQ(counts[1], 0);
  EXPECT_EQ(counts[2], 50);

  scheduler.set_paused(2, true);
  EXPECT_FALSE(scheduler.next(1).has_value());

  scheduler.set_paused(1, false);
  scheduler.set_paused(2, false);
  counts = take_grants(scheduler, 700);  // weights 6 and 1
  EXPECT_NEAR(counts[1], 600, 1);
  EXPECT_NEAR(counts[2], 100, 1);
}

TEST(LaunchSchedulerTest, PausedBatchKeepsItsRateTokens) {
  SimulatedClock clock;
  LaunchScheduler scheduler(clock);
  scheduler.add_batch(1, quota_with_rate(1, 3));
  scheduler.set_ready(1, 10);
  scheduler.set_paused(1, true);
  EXPECT_FALSE(scheduler.next(10).has_value());
  scheduler.set_paused(1, false);
  auto grant = scheduler.next(10);
  ASSERT_TRUE(grant.has_value());
  EXPECT_EQ(grant->items, 3);
}

TEST(LaunchSchedulerTest, CancelledGrantGivesBackItsItemsTokensAndSlot) {
  SimulatedClock clock;
  LaunchScheduler scheduler(clock);
  BatchQuota q = quota_with_rate(0.1, 2);
  q.max_in_flight = 1;
  scheduler.add_batch(1, q);
  scheduler.set_ready(1, 5);
  auto g = scheduler.next(10);
  ASSERT_TRUE(g.has_value());
  EXPECT_EQ(g->items, 2);  // the burst
  EXPECT_EQ(scheduler.in_flight(1), 1);
  EXPECT_FALSE(scheduler.next(10).has_value());  // in flight at its cap, no tokens
  scheduler.cancel(*g);
  EXPECT_EQ(scheduler.in_flight(1), 0);
  // The same grant again, at once: nothing was lost.
  auto again = scheduler.next(10);
  ASSERT_TRUE(again.has_value());
  EXPECT_EQ(again->items, 2);
  scheduler.cancel(LaunchScheduler::Grant{99, 3});  // an unknown batch is ignored
}

TEST(LaunchSchedulerTest, RefundGivesBackRateTokensOnly) {
  SimulatedClock clock;
  LaunchScheduler scheduler(clock);
  scheduler.add_batch(1, quota_with_rate(0.1, 1));
  scheduler.set_ready(1, 5);
  auto g = scheduler.next(10);
  ASSERT_TRUE(g.has_value());
  EXPECT_EQ(g->items, 1);
  scheduler.on_request_done(1);
  EXPECT_FALSE(scheduler.next(10).has_value());  // no token for 10 s
  scheduler.refund(1, 1);
  auto again = scheduler.next(10);
  ASSERT_TRUE(again.has_value());
  EXPECT_EQ(again->items, 1);
  EXPECT_EQ(scheduler.in_flight(1), 1);
  scheduler.refund(42, 1);  // unknown batch: ignored
}

TEST(LaunchSchedulerTest, RemovedBatchIsNeverServed) {
  SimulatedClock clock;
  LaunchScheduler scheduler(clock);
  scheduler.add_batch(1, BatchQuota{});
  scheduler.add_batch(2, BatchQuota{});
  scheduler.add_batch(3, BatchQuota{});
  for (Key k : {1, 2, 3}) scheduler.set_ready(k, kPlenty);
  scheduler.remove_batch(2);
  EXPECT_FALSE(scheduler.has_batch(2));
  EXPECT_EQ(scheduler.size(), 2u);
  EXPECT_EQ(scheduler.in_flight(2), 0);
  auto counts = take_grants(scheduler, 100);
  EXPECT_EQ(counts.count(2), 0u);
  EXPECT_EQ(counts[1], 50);
  EXPECT_EQ(counts[3], 50);
  scheduler.remove_batch(2);  // twice is harmless
  EXPECT_EQ(scheduler.size(), 2u);
}

TEST(LaunchSchedulerTest, RemovingTheLastBatchLeavesNothingToServe) {
  SimulatedClock clock;
  LaunchScheduler scheduler(clock);
  scheduler.add_batch(1, quota_with_rate(1, 1));
  scheduler.set_ready(1, 5);
  ASSERT_TRUE(scheduler.next(1).has_value());
  scheduler.remove_batch(1);
  EXPECT_EQ(scheduler.size(), 0u);
  EXPECT_FALSE(scheduler.next(1).has_value());
  EXPECT_FALSE(scheduler.time_until_ready().has_value());
  scheduler.on_request_done(1);  // a late completion of a removed batch
  EXPECT_EQ(scheduler.in_flight(1), 0);
}

TEST(LaunchSchedulerTest, ReAddedBatchStartsFreshAndGoesLastInTies) {
  SimulatedClock clock;
  LaunchScheduler scheduler(clock);
  scheduler.add_batch(1, quota_with_in_flight(1));
  scheduler.add_batch(2, BatchQuota{});
  scheduler.set_ready(1, 10);
  ASSERT_TRUE(scheduler.next(1).has_value());
  EXPECT_EQ(scheduler.in_flight(1), 1);
  scheduler.remove_batch(1);
  scheduler.add_batch(1, quota_with_in_flight(1));
  EXPECT_EQ(scheduler.in_flight(1), 0);
  EXPECT_FALSE(scheduler.next(1).has_value());  // ready was reset too

  scheduler.set_ready(1, kPlenty);
  scheduler.set_ready(2, kPlenty);
  scheduler.update_quota(1, BatchQuota{});
  // Batch 2 is now the earlier one in insertion order.
  EXPECT_EQ(grant_sequence(scheduler, 4), (std::vector<Key>{2, 1, 2, 1}));
}

}  // namespace
}  // namespace floodgate::core
