#include "core/concurrency_limit.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <memory>

#include "core/clock.h"
#include "core/random.h"

namespace floodgate::core {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using Outcome = ConcurrencyLimit::Outcome;

// ---------------------------------------------------------------------------------------------
// FixedLimit

TEST(FixedLimitTest, NeverMoves) {
  FixedLimit limit(7);
  EXPECT_EQ(limit.name(), "fixed");
  TimePoint t{};
  for (int i = 0; i < 100; ++i) {
    limit.on_sample(t, milliseconds(10), 7, Outcome::kSuccess);
    limit.on_sample(t, seconds(30), 7, Outcome::kDropped);
  }
  EXPECT_EQ(limit.limit(), 7);
}

TEST(FixedLimitTest, AtLeastOne) {
  EXPECT_EQ(FixedLimit(0).limit(), 1);
  EXPECT_EQ(FixedLimit(-3).limit(), 1);
}

// ---------------------------------------------------------------------------------------------
// AimdLimit

AimdLimit::Options aimd_options(int initial, int min, int max) {
  AimdLimit::Options o;
  o.initial = initial;
  o.min = min;
  o.max = max;
  return o;
}

TEST(AimdLimitTest, Defaults) {
  AimdLimit limit;
  EXPECT_EQ(limit.limit(), 20);
  EXPECT_EQ(limit.name(), "aimd");
  EXPECT_EQ(limit.options().min, 1);
  EXPECT_EQ(limit.options().max, 1000);
  EXPECT_DOUBLE_EQ(limit.options().backoff_ratio, 0.9);
  EXPECT_EQ(limit.options().timeout, seconds(5));
}

TEST(AimdLimitTest, GrowsByOnePerSuccessWhileHalfUsed) {
  AimdLimit limit(aimd_options(10, 1, 100));
  TimePoint t{};
  for (int i = 1; i <= 30; ++i) {
    limit.on_sample(t, milliseconds(50), limit.limit(), Outcome::kSuccess);
    ASSERT_EQ(limit.limit(), 10 + i);
  }
}

TEST(AimdLimitTest, DoesNotGrowWhenAppLimited) {
  AimdLimit limit(aimd_options(10, 1, 100));
  TimePoint t{};
  limit.on_sample(t, milliseconds(50), 4, Outcome::kSuccess);  // 4 * 2 < 10
  EXPECT_EQ(limit.limit(), 10);
  limit.on_sample(t, milliseconds(50), 5, Outcome::kSuccess);  // 5 * 2 >= 10
  EXPECT_EQ(limit.limit(), 11);
}

TEST(AimdLimitTest, BacksOffMultiplicativelyOnDrops) {
  AimdLimit limit(aimd_options(100, 1, 1000));
  TimePoint t{};
  const int expected[] = {90, 81, 72, 64, 57, 51, 45, 40, 36, 32};
  for (int want : expected) {
    limit.on_sample(t, milliseconds(50), 100, Outcome::kDropped);
    ASSERT_EQ(limit.limit(), want);
  }
}

TEST(AimdLimitTest, SlowSuccessCountsAsDrop) {
  AimdLimit::Options o = aimd_options(50, 1, 100);
  o.timeout = seconds(2);
  AimdLimit limit(o);
  TimePoint t{};
  limit.on_sample(t, seconds(2), 50, Outcome::kSuccess);  // at the timeout: still fine
  EXPECT_EQ(limit.limit(), 51);
  limit.on_sample(t, seconds(2) + Duration(1), 50, Outcome::kSuccess);
  EXPECT_EQ(limit.limit(), 45);
}

TEST(AimdLimitTest, IgnoredOutcomesDoNotMove) {
  AimdLimit limit(aimd_options(10, 1, 100));
  TimePoint t{};
  for (int i = 0; i < 10; ++i) limit.on_sample(t, seconds(60), 10, Outcome::kIgnore);
  EXPECT_EQ(limit.limit(), 10);
}

TEST(AimdLimitTest, RespectsMinAndMax) {
  AimdLimit limit(aimd_options(5, 3, 8));
  TimePoint t{};
  for (int i = 0; i < 100; ++i) limit.on_sample(t, milliseconds(1), 100, Outcome::kSuccess);
  EXPECT_EQ(limit.limit(), 8);
  for (int i = 0; i < 100; ++i) limit.on_sample(t, milliseconds(1), 100, Outcome::kDropped);
  EXPECT_EQ(limit.limit(), 3);
}

TEST(AimdLimitTest, NeverBelowOne) {
  AimdLimit limit(aimd_options(2, 0, 10));
  TimePoint t{};
  for (int i = 0; i < 10; ++i) limit.on_sample(t, milliseconds(1), 2, Outcome::kDropped);
  EXPECT_EQ(limit.limit(), 1);
}

TEST(AimdLimitTest, OddOptionsAreTamed) {
  AimdLimit::Options o = aimd_options(500, 10, 5);  // max below min
  o.backoff_ratio = 1.5;
  AimdLimit limit(o);
  EXPECT_EQ(limit.options().min, 10);
  EXPECT_EQ(limit.options().max, 10);
  EXPECT_EQ(limit.limit(), 10);
  EXPECT_DOUBLE_EQ(limit.options().backoff_ratio, 0.9);
}

// ---------------------------------------------------------------------------------------------
// GradientLimit, one update per sample (no window), to check the Gradient2 arithmetic exactly.

GradientLimit::Options per_sample(int initial, int min, int max) {
  GradientLimit::Options o;
  o.initial = initial;
  o.min = min;
  o.max = max;
  o.window = Duration::zero();
  o.window_min_samples = 1;
  return o;
}

TEST(GradientLimitTest, Defaults) {
  GradientLimit limit;
  EXPECT_EQ(limit.name(), "gradient");
  EXPECT_EQ(limit.limit(), 20);
  EXPECT_DOUBLE_EQ(limit.options().smoothing, 0.2);
  EXPECT_DOUBLE_EQ(limit.options().tolerance, 1.5);
  EXPECT_DOUBLE_EQ(limit.options().backoff_ratio, 0.9);
  EXPECT_EQ(limit.options().long_window, 600);
  EXPECT_EQ(limit.options().window, seconds(1));
  EXPECT_EQ(limit.long_rtt_seconds(), 0);
  EXPECT_EQ(limit.short_rtt_seconds(), 0);
  EXPECT_EQ(limit.updates(), 0);
}

TEST(GradientLimitTest, GrowsByQueueAllowanceWhileRttIsFlat) {
  GradientLimit limit(per_sample(20, 1, 1000));
  TimePoint t{};
  double expected = 20;
  for (int i = 0; i < 50; ++i) {
    limit.on_sample(t, milliseconds(100), limit.limit(), Outcome::kSuccess);
    double queue = std::max(4.0, std::sqrt(static_cast<double>(static_cast<int>(expected))));
    expected = expected * 0.8 + (expected + queue) * 0.2;
    ASSERT_NEAR(limit.estimated_limit(), expected, 1e-9) << i;
    ASSERT_DOUBLE_EQ(limit.gradient(), 1.0);
  }
  EXPECT_NEAR(limit.long_rtt_seconds(), 0.1, 1e-12);
  EXPECT_NEAR(limit.short_rtt_seconds(), 0.1, 1e-12);
  EXPECT_NEAR(limit.rtt_noload_seconds(), 0.1, 1e-12);
}

TEST(GradientLimitTest, QueueAllowanceIsSquareRootOfLimit) {
  GradientLimit::Options o = per_sample(400, 1, 1000);
  GradientLimit limit(o);
  EXPECT_DOUBLE_EQ(limit.queue_size(), 20);
  GradientLimit small(per_sample(9, 1, 1000));
  EXPECT_DOUBLE_EQ(small.queue_size(), 4);  // floor of 4, as Netflix's sqrt function
}

TEST(GradientLimitTest, ShrinksWhenLatencyRisesBeyondTolerance) {
  GradientLimit limit(per_sample(100, 1, 1000));
  TimePoint t{};
  for (int i = 0; i < 20; ++i) limit.on_sample(t, milliseconds(100), 100, Outcome::kSuccess);
  double before = limit.estimated_limit();
  double long_rtt = limit.long_rtt_seconds();
  // Short RTT 4x the long one: gradient clamps at 0.5.
  limit.on_sample(t, milliseconds(400), 100, Outcome::kSuccess);
  double long_after = long_rtt * (1 - 2.0 / 601) + 0.4 * (2.0 / 601);
  EXPECT_NEAR(limit.long_rtt_seconds(), long_after, 1e-12);
  EXPECT_DOUBLE_EQ(limit.gradient(), 0.5);
  double queue = std::sqrt(static_cast<double>(static_cast<int>(before)));
  EXPECT_NEAR(limit.estimated_limit(), before * 0.8 + (before * 0.5 + queue) * 0.2, 1e-9);
  EXPECT_LT(limit.estimated_limit(), before);
}

TEST(GradientLimitTest, ToleratesModestLatencyIncrease) {
  GradientLimit limit(per_sample(50, 1, 1000));
  TimePoint t{};
  for (int i = 0; i < 20; ++i) limit.on_sample(t, milliseconds(100), 50, Outcome::kSuccess);
  double before = limit.estimated_limit();
  limit.on_sample(t, milliseconds(140), 50, Outcome::kSuccess);  // within 1.5x
  EXPECT_DOUBLE_EQ(limit.gradient(), 1.0);
  EXPECT_GT(limit.estimated_limit(), before);
}

TEST(GradientLimitTest, DropBacksOff) {
  GradientLimit limit(per_sample(100, 1, 1000));
  TimePoint t{};
  limit.on_sample(t, seconds(30), 100, Outcome::kDropped);
  EXPECT_DOUBLE_EQ(limit.estimated_limit(), 90);
  EXPECT_EQ(limit.long_rtt_seconds(), 0);  // a timeout's RTT does not feed the averages
  limit.on_sample(t, seconds(30), 100, Outcome::kDropped);
  EXPECT_DOUBLE_EQ(limit.estimated_limit(), 81);
}

TEST(GradientLimitTest, IgnoredOutcomesChangeNothing) {
  GradientLimit limit(per_sample(30, 1, 1000));
  TimePoint t{};
  for (int i = 0; i < 10; ++i) limit.on_sample(t, seconds(9), 30, Outcome::kIgnore);
  EXPECT_DOUBLE_EQ(limit.estimated_limit(), 30);
  EXPECT_EQ(limit.long_rtt_seconds(), 0);
  EXPECT_EQ(limit.updates(), 0);
}

TEST(GradientLimitTest, DoesNotGrowWhenAppLimited) {
  GradientLimit limit(per_sample(40, 1, 1000));
  TimePoint t{};
  for (int i = 0; i < 100; ++i) limit.on_sample(t, milliseconds(100), 19, Outcome::kSuccess);
  EXPECT_DOUBLE_EQ(limit.estimated_limit(), 40);
  EXPECT_NEAR(limit.long_rtt_seconds(), 0.1, 1e-12);  // the RTTs are still tracked
  limit.on_sample(t, milliseconds(100), 20, Outcome::kSuccess);
  EXPECT_GT(limit.estimated_limit(), 40);
}

TEST(GradientLimitTest, LongRttWarmsUpAsPlainMean) {
  GradientLimit limit(per_sample(20, 1, 1000));
  TimePoint t{};
  limit.on_sample(t, milliseconds(100), 0, Outcome::kSuccess);
  EXPECT_NEAR(limit.long_rtt_seconds(), 0.1, 1e-12);
  limit.on_sample(t, milliseconds(200), 0, Outcome::kSuccess);
  EXPECT_NEAR(limit.long_rtt_seconds(), 0.15, 1e-12);
  limit.on_sample(t, milliseconds(300), 0, Outcome::kSuccess);
  EXPECT_NEAR(limit.long_rtt_seconds(), 0.2, 1e-12);
}

TEST(GradientLimitTest, LongRttDecaysWhenLatencyFalls) {
  GradientLimit limit(per_sample(20, 1, 1000));
  TimePoint t{};
  for (int i = 0; i < 50; ++i) limit.on_sample(t, milliseconds(500), 0, Outcome::kSuccess);
  ASSERT_NEAR(limit.long_rtt_seconds(), 0.5, 1e-9);
  // A fifth of the long RTT: the long RTT is pulled down by 5% per update on top of the
  // exponential average, until it is within 2x of the short one.
  for (int i = 0; i < 200; ++i) limit.on_sample(t, milliseconds(100), 0, Outcome::kSuccess);
  EXPECT_LE(limit.long_rtt_seconds(), 0.2 + 1e-9);
  EXPECT_GT(limit.long_rtt_seconds(), 0.1);
}

TEST(GradientLimitTest, RespectsMinAndMax) {
  GradientLimit limit(per_sample(10, 5, 30));
  TimePoint t{};
  for (int i = 0; i < 500; ++i) limit.on_sample(t, milliseconds(10), 30, Outcome::kSuccess);
  EXPECT_EQ(limit.limit(), 30);
  for (int i = 0; i < 500; ++i) limit.on_sample(t, milliseconds(10), 30, Outcome::kDropped);
  EXPECT_EQ(limit.limit(), 5);
  // Very slow answers: the gradient bottoms out at 0.5, and the queue allowance holds the
  // limit above 2 * 4 as Gradient2 does; the long RTT then adapts and growth resumes.
  for (int i = 0; i < 500; ++i) {
    limit.on_sample(t, seconds(10), 30, Outcome::kSuccess);
    ASSERT_GE(limit.limit(), 5);
    ASSERT_LE(limit.limit(), 30);
  }
}

TEST(GradientLimitTest, OddOptionsAreTamed) {
  GradientLimit::Options o = per_sample(0, -4, -9);
  o.tolerance = 0.2;
  o.smoothing = 7;
  o.backoff_ratio = 0;
  o.long_window = 0;
  o.warmup = -1;
  GradientLimit limit(o);
  EXPECT_EQ(limit.limit(), 1);
  EXPECT_EQ(limit.options().min, 1);
  EXPECT_EQ(limit.options().max, 1);
  EXPECT_DOUBLE_EQ(limit.options().tolerance, 1.0);
  EXPECT_DOUBLE_EQ(limit.options().smoothing, 1.0);
  EXPECT_DOUBLE_EQ(limit.options().backoff_ratio, 0.9);
  TimePoint t{};
  limit.on_sample(t, Duration::zero(), 1, Outcome::kSuccess);  // zero RTT: no division by 0
  EXPECT_EQ(limit.limit(), 1);
  EXPECT_TRUE(std::isfinite(limit.gradient()));
}

// ---------------------------------------------------------------------------------------------
// GradientLimit with its sample window.

TEST(GradientLimitTest, UpdatesOncePerWindow) {
  GradientLimit limit;  // 1 s windows of at least 10 samples
  TimePoint t = TimePoint{} + seconds(100);
  for (int i = 0; i < 100; ++i) {
    limit.on_sample(t, milliseconds(50), 20, Outcome::kSuccess);
    t += milliseconds(10);
  }
  EXPECT_EQ(limit.updates(), 0);
  EXPECT_DOUBLE_EQ(limit.estimated_limit(), 20);
  limit.on_sample(t, milliseconds(50), 20, Outcome::kSuccess);  // 1 s after the first
  EXPECT_EQ(limit.updates(), 1);
  EXPECT_NEAR(limit.estimated_limit(), 20 * 0.8 + (20 + std::sqrt(20.0)) * 0.2, 1e-9);
  EXPECT_NEAR(limit.short_rtt_seconds(), 0.05, 1e-12);
}

TEST(GradientLimitTest, WindowAveragesRtt) {
  GradientLimit limit;
  TimePoint t{};
  for (int i = 0; i < 10; ++i) {
    limit.on_sample(t, milliseconds(i < 5 ? 100 : 300), 20, Outcome::kSuccess);
    t += milliseconds(200);
  }
  EXPECT_EQ(limit.updates(), 1);
  EXPECT_NEAR(limit.short_rtt_seconds(), 0.2, 1e-12);
}

TEST(GradientLimitTest, WindowWaitsForEnoughSamples) {
  GradientLimit limit;
  TimePoint t{};
  for (int i = 0; i < 9; ++i) {
    limit.on_sample(t, milliseconds(100), 20, Outcome::kSuccess);
    t += seconds(5);  // a quiet service: few samples over a long time
  }
  EXPECT_EQ(limit.updates(), 0);
  limit.on_sample(t, milliseconds(100), 20, Outcome::kSuccess);
  EXPECT_EQ(limit.updates(), 1);
}

TEST(GradientLimitTest, WindowWithADropBacksOffOnce) {
  GradientLimit limit;
  TimePoint t{};
  limit.on_sample(t, milliseconds(100), 20, Outcome::kSuccess);
  for (int i = 0; i < 5; ++i) limit.on_sample(t, seconds(10), 20, Outcome::kDropped);
  EXPECT_EQ(limit.updates(), 0);
  t += seconds(1);
  limit.on_sample(t, seconds(10), 20, Outcome::kDropped);  // the window closes on the drop
  EXPECT_EQ(limit.updates(), 1);
  EXPECT_DOUBLE_EQ(limit.estimated_limit(), 18);
  EXPECT_NEAR(limit.short_rtt_seconds(), 0.1, 1e-12);  // only the success's RTT counts
}

// ---------------------------------------------------------------------------------------------
// Closed-loop simulation against a server of known capacity.

// A processor-sharing server: `capacity` requests in parallel at `base_s` each; more in flight
// share it, so latency grows linearly; beyond `queue_cap` requests are turned away at once
// (503). The client always has work, so it keeps `limit()` requests in flight; each round
// every request finishes after the round's latency.
struct SimServer {
  int capacity;
  double base_s;
  int queue_cap;
};

struct SimStats {
  int min_limit = 1 << 30;
  int max_limit = 0;
  double mean_limit = 0;
  int64_t drops = 0;
};

class Simulation {
 public:
  explicit Simulation(ConcurrencyLimit& limit) : limit_(limit) {}

  SimStats run(const SimServer& server, Duration length) {
    SimStats stats;
    const TimePoint end = now_ + length;
    double limit_time = 0;
    while (now_ < end) {
      const int n = limit_.limit();
      const int served = std::min(n, server.queue_cap);
      const double latency =
          server.base_s * std::max(1.0, static_cast<double>(served) / server.capacity);
      const TimePoint done = now_ + from_seconds(latency);
      for (int i = 0; i < n; ++i) {
        // Up to ±10% noise on every answer.
        const double noise = 0.9 + 0.2 * random_.uniform01();
        if (i < served) {
          limit_.on_sample(done, from_seconds(latency * noise), n, Outcome::kSuccess);
        } else {
          ++stats.drops;
          limit_.on_sample(now_ + milliseconds(1), milliseconds(1), n, Outcome::kDropped);
        }
      }
      now_ = done;
      stats.min_limit = std::min(stats.min_limit, limit_.limit());
      stats.max_limit = std::max(stats.max_limit, limit_.limit());
      limit_time += latency * limit_.limit();
    }
    stats.mean_limit = limit_time / to_seconds(length);
    return stats;
  }

 private:
  ConcurrencyLimit& limit_;
  MtRandom random_{2024};
  TimePoint now_ = TimePoint{} + std::chrono::hours(1);
};

TEST(GradientLimitSimulationTest, ConvergesNearCapacity) {
  GradientLimit limit;  // initial 20, 1..1000
  Simulation sim(limit);
  const SimServer server{50, 0.05, 200};
  // Growth from 20 takes about a minute at +0.2 * sqrt(limit) per one-second window.
  sim.run(server, seconds(90));
  SimStats settled = sim.run(server, seconds(60));
  EXPECT_GE(settled.min_limit, 50);   // uses the capacity...
  EXPECT_LE(settled.max_limit, 125);  // ...with latency at most ~2.5x the unloaded one
  EXPECT_GE(settled.mean_limit, 60);
  EXPECT_LE(settled.mean_limit, 110);
  EXPECT_EQ(settled.drops, 0);
}

// Gradient2's long-term RTT learns from loaded windows too, so under load that never lets up
// the limit creeps upward over minutes; the server's turn-away point (drops) still bounds it.
TEST(GradientLimitSimulationTest, SustainedLoadIsBoundedByDrops) {
  GradientLimit limit;
  Simulation sim(limit);
  const SimServer server{50, 0.05, 200};
  sim.run(server, seconds(120));
  SimStats hour = sim.run(server, std::chrono::minutes(20));
  EXPECT_GE(hour.min_limit, 50);
  EXPECT_LE(hour.max_limit, 200 + 30);  // a window's growth past the turn-away point at most
  EXPECT_LE(hour.mean_limit, 200);
}

TEST(GradientLimitSimulationTest, ShrinksWhenCapacityFallsAndGrowsBack) {
  GradientLimit limit;
  Simulation sim(limit);
  sim.run(SimServer{50, 0.05, 200}, seconds(180));
  ASSERT_GE(limit.limit(), 50);

  // The server loses four fifths of its capacity and turns away more than 40 in flight.
  sim.run(SimServer{10, 0.05, 40}, seconds(30));
  EXPECT_LE(limit.limit(), 45);
  SimStats degraded = sim.run(SimServer{10, 0.05, 40}, seconds(120));
  EXPECT_LE(degraded.max_limit, 50);
  EXPECT_GE(degraded.min_limit, 5);

  // Capacity comes back: the long RTT decays and the limit climbs past the capacity again.
  sim.run(SimServer{50, 0.05, 200}, seconds(120));
  EXPECT_GE(limit.limit(), 50);
  EXPECT_LE(limit.limit(), 200);
}

TEST(GradientLimitSimulationTest, StaysWithinMinAndMax) {
  GradientLimit::Options o;
  o.initial = 5;
  o.min = 4;
  o.max = 30;
  GradientLimit limit(o);
  Simulation sim(limit);
  SimStats fast = sim.run(SimServer{500, 0.02, 2000}, seconds(300));
  EXPECT_EQ(fast.max_limit, 30);
  EXPECT_EQ(limit.limit(), 30);
  SimStats tiny = sim.run(SimServer{1, 0.02, 2}, seconds(300));
  EXPECT_GE(tiny.min_limit, 4);
  EXPECT_EQ(limit.limit(), 4);
}

TEST(AimdLimitSimulationTest, GrowsWhileFastAndBacksOffOnDrops) {
  AimdLimit limit(aimd_options(10, 2, 500));
  Simulation sim(limit);
  // Plenty of capacity: the limit grows until it reaches the server's turn-away point.
  SimStats open = sim.run(SimServer{1000, 0.05, 100}, seconds(2));
  EXPECT_GT(open.max_limit, 100);
  EXPECT_GT(open.drops, 0);
  // Over a long run it keeps probing the turn-away point but never passes the max, nor the min.
  SimStats run = sim.run(SimServer{1000, 0.05, 100}, seconds(300));
  EXPECT_LE(run.max_limit, 500);
  EXPECT_GE(run.min_limit, 2);
  EXPECT_GT(run.drops, 0);
}

// ---------------------------------------------------------------------------------------------
// make_limit

TEST(MakeLimitTest, BuildsEachKind) {
  auto fixed = make_limit("fixed", 12, 1, 100);
  ASSERT_NE(fixed, nullptr);
  EXPECT_EQ(fixed->name(), "fixed");
  EXPECT_EQ(fixed->limit(), 12);

  auto aimd = make_limit("aimd", 15, 2, 40);
  ASSERT_NE(aimd, nullptr);
  EXPECT_EQ(aimd->name(), "aimd");
  EXPECT_EQ(aimd->limit(), 15);
  TimePoint t{};
  for (int i = 0; i < 100; ++i) aimd->on_sample(t, milliseconds(5), 40, Outcome::kSuccess);
  EXPECT_EQ(aimd->limit(), 40);

  auto gradient = make_limit("gradient", 25, 3, 60);
  ASSERT_NE(gradient, nullptr);
  EXPECT_EQ(gradient->name(), "gradient");
  EXPECT_EQ(gradient->limit(), 25);
  auto* g = dynamic_cast<GradientLimit*>(gradient.get());
  ASSERT_NE(g, nullptr);
  EXPECT_EQ(g->options().min, 3);
  EXPECT_EQ(g->options().max, 60);
}

TEST(MakeLimitTest, ClampsInitialIntoBounds) {
  EXPECT_EQ(make_limit("fixed", 500, 1, 100)->limit(), 100);
  EXPECT_EQ(make_limit("aimd", 0, 5, 100)->limit(), 5);
  EXPECT_EQ(make_limit("gradient", 1000, 1, 50)->limit(), 50);
}

TEST(MakeLimitTest, UnknownKindIsNull) {
  EXPECT_EQ(make_limit("vegas", 10, 1, 100), nullptr);
  EXPECT_EQ(make_limit("", 10, 1, 100), nullptr);
  EXPECT_EQ(make_limit("AIMD", 10, 1, 100), nullptr);
}

}  // namespace
}  // namespace floodgate::core
