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
// GradientLimit

// Feeds `n` successes of `rtt`, each sent `rtt` before it ends, one every `gap` from `t`.
TimePoint feed(GradientLimit& limit, TimePoint t, int n, Duration rtt, int in_flight,
               Duration gap = milliseconds(1), int sample_class = 0) {
  for (int i = 0; i < n; ++i) {
    t += gap;
    limit.on_sample(t, rtt, in_flight, Outcome::kSuccess, sample_class);
  }
  return t;
}

// Options with short windows and the floor measured once, for exact arithmetic.
GradientLimit::Options plain(int min = 1, int max = 1000) {
  GradientLimit::Options o;
  o.min = min;
  o.max = max;
  o.probe_samples = 5;
  o.probe_interval = Duration::zero();
  o.window = milliseconds(10);
  o.window_min_samples = 1;
  return o;
}

const TimePoint kStart = TimePoint{} + std::chrono::hours(1);

TEST(GradientLimitTest, Defaults) {
  GradientLimit limit;
  EXPECT_EQ(limit.name(), "gradient");
  EXPECT_EQ(limit.limit(), 3);  // pinned to the probe limit until the floor is measured
  EXPECT_TRUE(limit.probing());
  EXPECT_DOUBLE_EQ(limit.options().tolerance, 1.25);
  EXPECT_DOUBLE_EQ(limit.options().smoothing, 0.2);
  EXPECT_DOUBLE_EQ(limit.options().shrink_smoothing, 0.5);
  EXPECT_DOUBLE_EQ(limit.options().backoff_ratio, 0.9);
  EXPECT_EQ(limit.options().probe_samples, 20);
  EXPECT_EQ(limit.options().probe_interval, seconds(60));
  EXPECT_EQ(limit.options().window, milliseconds(50));
  EXPECT_EQ(limit.rtt_noload_seconds(), 0);
  EXPECT_EQ(limit.short_rtt_seconds(), 0);
  EXPECT_EQ(limit.updates(), 0);
  EXPECT_EQ(limit.probes(), 0);
}

TEST(GradientLimitTest, FirstProbeMeasuresTheMedianRtt) {
  GradientLimit::Options o = plain();
  o.probe_samples = 5;
  GradientLimit limit(o);
  TimePoint t = kStart;
  const int rtts_ms[] = {90, 10, 50, 30, 70};
  for (int i = 0; i < 4; ++i) {
    t += milliseconds(rtts_ms[i]);
    limit.on_sample(t, milliseconds(rtts_ms[i]), 3, Outcome::kSuccess);
    ASSERT_TRUE(limit.probing());
    ASSERT_EQ(limit.limit(), 3);
  }
  t += milliseconds(70);
  limit.on_sample(t, milliseconds(70), 3, Outcome::kSuccess);
  EXPECT_FALSE(limit.probing());
  EXPECT_EQ(limit.probes(), 1);
  EXPECT_NEAR(limit.floor_seconds(0), 0.05, 1e-12);
  // Slow start begins at the probe limit.
  EXPECT_TRUE(limit.slow_start());
  EXPECT_EQ(limit.limit(), 3);
}

// A limit that measures its floor (3 answers of 20 ms) and then every 10 s.
GradientLimit::Options reprobing() {
  GradientLimit::Options o = plain();
  o.probe_samples = 3;
  o.probe_interval = seconds(10);
  return o;
}

// Where a reprobing() limit stands when its second probe starts.
struct AtSecondProbe {
  TimePoint t;
  double before;    // the limit before that probe
  bool slow_start;  // and whether it was in slow start
};

// Measures the first floor, grows the limit over 40 windows, then closes a window 10 s later,
// which starts the second probe.
AtSecondProbe grow_to_the_second_probe(GradientLimit& limit) {
  TimePoint t = feed(limit, kStart, 3, milliseconds(20), 3);
  EXPECT_FALSE(limit.probing());
  t = feed(limit, t + milliseconds(20), 40, milliseconds(20), 100, milliseconds(20));
  AtSecondProbe at{t, limit.estimated_limit(), limit.slow_start()};
  at.t += seconds(10);
  at.t = feed(limit, at.t, 1, milliseconds(20), 100);  // closes a window: the probe starts
  EXPECT_TRUE(limit.probing());
  return at;
}

TEST(GradientLimitTest, ProbeIgnoresRequestsSentBeforeItAndDropsLowerThePin) {
  GradientLimit limit(reprobing());
  auto [t, before, slow_start] = grow_to_the_second_probe(limit);
  ASSERT_GT(before, 3);
  ASSERT_TRUE(limit.probing());
  EXPECT_EQ(limit.limit(), 3);
  // Answers to requests sent before the probe began do not count, nor do drops; a drop of a
  // request sent under the pin lowers the pin by one.
  limit.on_sample(t + milliseconds(5), milliseconds(500), 50, Outcome::kSuccess);
  limit.on_sample(t + milliseconds(6), milliseconds(500), 50, Outcome::kDropped);
  EXPECT_EQ(limit.limit(), 3);
  limit.on_sample(t + milliseconds(6), milliseconds(1), 50, Outcome::kDropped);
  EXPECT_EQ(limit.limit(), 2);
  limit.on_sample(t + milliseconds(7), milliseconds(1), 50, Outcome::kIgnore);
  EXPECT_TRUE(limit.probing());
  t = feed(limit, t + milliseconds(10), 3, milliseconds(8), 3, milliseconds(8));
  EXPECT_FALSE(limit.probing());
  EXPECT_EQ(limit.probes(), 2);
  EXPECT_NEAR(limit.floor_seconds(0), 0.008, 1e-12);  // the server got faster
  // The limit in force before the probe is restored, not slow-started again.
  EXPECT_DOUBLE_EQ(limit.estimated_limit(), before);
  EXPECT_EQ(limit.slow_start(), slow_start);
}

// A server that refuses even the probe limit (SQLite: one write at a time, the rest 503): each
// drop in the first probe lowers the pin, and the limit starts from there without slow start.
TEST(GradientLimitTest, DropsInTheFirstProbeStartTheLimitLowWithoutSlowStart) {
  GradientLimit::Options o = plain();
  o.probe_samples = 5;
  GradientLimit limit(o);
  TimePoint t = feed(limit, kStart, 1, milliseconds(20), 3);
  for (int expected : {2, 1, 1}) {
    t += milliseconds(1);
    limit.on_sample(t, milliseconds(1), 3, Outcome::kDropped);
    ASSERT_EQ(limit.limit(), expected);
    ASSERT_EQ(limit.probe_pin(), expected);
  }
  t = feed(limit, t, 4, milliseconds(20), 1, milliseconds(20));
  ASSERT_FALSE(limit.probing());
  EXPECT_EQ(limit.limit(), 1);
  EXPECT_FALSE(limit.slow_start());
  // Answers at the floor grow it by the gradient, a fifth of the way: 1 -> 1.05, not 2.
  t = feed(limit, t + milliseconds(20), 1, milliseconds(20), 1);
  EXPECT_NEAR(limit.estimated_limit(), 1.05, 1e-9);
  EXPECT_EQ(limit.limit(), 1);
}

TEST(GradientLimitTest, DropsInALaterProbeRestoreTheLimitBeforeIt) {
  GradientLimit limit(reprobing());
  const AtSecondProbe at = grow_to_the_second_probe(limit);
  TimePoint t = at.t;
  ASSERT_TRUE(limit.probing());
  t += milliseconds(1);
  limit.on_sample(t, milliseconds(1), 3, Outcome::kDropped);
  EXPECT_EQ(limit.limit(), 2);
  t = feed(limit, t, 3, milliseconds(20), 2, milliseconds(20));
  ASSERT_FALSE(limit.probing());
  // The windows between probes judge drops (x0.9 each); the probe only measures the floor.
  EXPECT_DOUBLE_EQ(limit.estimated_limit(), at.before);
  // The next probe pins at the probe limit again.
  t += seconds(10);
  t = feed(limit, t, 1, milliseconds(20), 100);
  ASSERT_TRUE(limit.probing());
  EXPECT_EQ(limit.limit(), 3);
}

TEST(GradientLimitTest, ProbeEndsAfterProbeMaxWithWhatItHas) {
  GradientLimit::Options o = plain();
  o.probe_samples = 20;
  o.probe_max = seconds(5);
  GradientLimit limit(o);
  TimePoint t = feed(limit, kStart, 2, milliseconds(100), 3, seconds(1));
  EXPECT_TRUE(limit.probing());
  t = feed(limit, t, 1, milliseconds(300), 3, seconds(4));  // 5 s after the first was sent
  EXPECT_FALSE(limit.probing());
  EXPECT_NEAR(limit.floor_seconds(0), 0.1, 1e-12);  // median of 100, 100, 300 ms
}

TEST(GradientLimitTest, SlowStartDoublesWhileNothingQueues) {
  GradientLimit limit(plain());
  TimePoint t = feed(limit, kStart, 5, milliseconds(50), 3);  // floor 50 ms
  ASSERT_TRUE(limit.slow_start());
  for (int expected : {6, 12, 24, 48}) {
    t = feed(limit, t + milliseconds(50), 1, milliseconds(50), limit.limit());
    ASSERT_EQ(limit.limit(), expected);
  }
  // 1.1x the floor is still under (1 + 1.25) / 2: one more doubling.
  t = feed(limit, t + milliseconds(55), 1, milliseconds(55), 48);
  EXPECT_EQ(limit.limit(), 96);
  EXPECT_TRUE(limit.slow_start());
  // 2x the floor: slow start ends and the gradient takes over: 1.25 / 2 = 0.625, taken half.
  t = feed(limit, t + milliseconds(100), 1, milliseconds(100), 96);
  EXPECT_FALSE(limit.slow_start());
  EXPECT_DOUBLE_EQ(limit.gradient(), 0.625);
  EXPECT_NEAR(limit.estimated_limit(), 96 * 0.5 + 96 * 0.625 * 0.5, 1e-9);
  EXPECT_NEAR(limit.ratio(), 2.0, 1e-12);
}

TEST(GradientLimitTest, GradientSettlesWhereLatencyIsToleranceTimesTheFloor) {
  GradientLimit limit(plain());
  TimePoint t = feed(limit, kStart, 5, milliseconds(40), 3);
  t = feed(limit, t + milliseconds(40), 1, milliseconds(40), 3);    // slow start: 3 -> 6
  t = feed(limit, t + milliseconds(200), 1, milliseconds(200), 3);  // ends it: 6 -> 4.5
  ASSERT_FALSE(limit.slow_start());
  ASSERT_NEAR(limit.estimated_limit(), 4.5, 1e-9);
  double l = limit.estimated_limit();
  // At exactly 1.25x the floor the limit holds.
  t = feed(limit, t + milliseconds(50), 1, milliseconds(50), 100);
  EXPECT_DOUBLE_EQ(limit.gradient(), 1.0);
  EXPECT_NEAR(limit.estimated_limit(), l, 1e-9);
  // At the floor it grows by a fifth of the gradient's 1.25x: 5% a window.
  t = feed(limit, t + milliseconds(40), 1, milliseconds(40), 100);
  EXPECT_DOUBLE_EQ(limit.gradient(), 1.25);
  EXPECT_NEAR(limit.estimated_limit(), l * 1.05, 1e-9);
  // Far above it, the gradient bottoms out at 0.5 and half of that step is taken: -25%.
  l = limit.estimated_limit();
  t = feed(limit, t + milliseconds(400), 1, milliseconds(400), 100);
  EXPECT_DOUBLE_EQ(limit.gradient(), 0.5);
  EXPECT_NEAR(limit.estimated_limit(), l * 0.75, 1e-9);
  // Latency alone stops at the probe limit (3): there the floor was measured.
  for (int i = 0; i < 10; ++i) t = feed(limit, t + milliseconds(400), 1, milliseconds(400), 100);
  EXPECT_DOUBLE_EQ(limit.estimated_limit(), 3);
  // Drops still take it lower.
  limit.on_sample(t + milliseconds(1), milliseconds(1), 100, Outcome::kDropped);
  EXPECT_DOUBLE_EQ(limit.estimated_limit(), 3 * 0.9);
  t = feed(limit, t + milliseconds(400), 1, milliseconds(400), 100);
  EXPECT_DOUBLE_EQ(limit.estimated_limit(), 3 * 0.9);  // and latency does not lift it back
}

TEST(GradientLimitTest, WindowCountsOnlyRequestsSentAfterItOpened) {
  GradientLimit::Options o = plain();
  o.window = milliseconds(100);
  o.window_min_samples = 3;
  GradientLimit limit(o);
  TimePoint t = feed(limit, kStart, 5, milliseconds(10), 3);
  const int64_t updates = limit.updates();
  // The window opens with this answer; slow answers to requests sent before it say nothing
  // about the current limit.
  t += milliseconds(1);
  limit.on_sample(t, milliseconds(1), 3, Outcome::kSuccess);
  for (int i = 0; i < 20; ++i) {
    t += milliseconds(10);
    limit.on_sample(t, milliseconds(900), 3, Outcome::kSuccess);
  }
  EXPECT_EQ(limit.updates(), updates);
  // Three fresh answers after the window's minimum length close it.
  t = feed(limit, t, 3, milliseconds(10), 3);
  EXPECT_EQ(limit.updates(), updates + 1);
  EXPECT_NEAR(limit.ratio(), 1.0, 1e-12);
}

TEST(GradientLimitTest, WindowNeedsItsMinimumLengthAndSamples) {
  GradientLimit::Options o = plain();
  o.window = milliseconds(100);
  o.window_min_samples = 10;
  GradientLimit limit(o);
  TimePoint t = feed(limit, kStart, 5, milliseconds(10), 3);
  const int64_t updates = limit.updates();
  // Ten answers within 50 ms: too soon.
  t = feed(limit, t, 10, milliseconds(5), 50, milliseconds(5));
  EXPECT_EQ(limit.updates(), updates);
  // Long enough, but a limit of 3 needs only 3 answers (not 10).
  t = feed(limit, t + milliseconds(60), 1, milliseconds(5), 50);
  EXPECT_EQ(limit.updates(), updates + 1);
}

TEST(GradientLimitTest, DropBacksOffAndClosesTheWindowAtOnce) {
  GradientLimit limit(plain());
  TimePoint t = feed(limit, kStart, 5, milliseconds(10), 3);
  t = feed(limit, t + milliseconds(10), 3, milliseconds(10), 100, milliseconds(10));  // 3 -> 24
  ASSERT_EQ(limit.limit(), 24);
  t += milliseconds(1);
  limit.on_sample(t, seconds(30), 24, Outcome::kDropped);
  EXPECT_NEAR(limit.estimated_limit(), 24 * 0.9, 1e-9);
  EXPECT_FALSE(limit.slow_start());
  limit.on_sample(t + milliseconds(1), seconds(30), 24, Outcome::kDropped);
  EXPECT_NEAR(limit.estimated_limit(), 24 * 0.81, 1e-9);
  EXPECT_NEAR(limit.floor_seconds(0), 0.01, 1e-12);  // a timeout's RTT is not a latency
}

TEST(GradientLimitTest, IgnoredOutcomesChangeNothing) {
  GradientLimit limit(plain());
  TimePoint t = kStart;
  for (int i = 0; i < 10; ++i) {
    t += seconds(1);
    limit.on_sample(t, seconds(9), 30, Outcome::kIgnore);
  }
  EXPECT_TRUE(limit.probing());
  EXPECT_EQ(limit.updates(), 0);
  EXPECT_EQ(limit.floor_seconds(0), 0);
}

TEST(GradientLimitTest, DoesNotGrowWhenAppLimited) {
  GradientLimit limit(plain());
  TimePoint t = feed(limit, kStart, 5, milliseconds(10), 3);
  t = feed(limit, t + milliseconds(10), 2, milliseconds(10), 100, milliseconds(10));  // 12
  ASSERT_EQ(limit.limit(), 12);
  t = feed(limit, t + milliseconds(10), 20, milliseconds(10), 5, milliseconds(10));
  EXPECT_EQ(limit.limit(), 12);
  t = feed(limit, t + milliseconds(10), 1, milliseconds(10), 6, milliseconds(10));  // half used
  EXPECT_EQ(limit.limit(), 24);
}

TEST(GradientLimitTest, EachClassHasItsOwnFloor) {
  GradientLimit::Options o = plain();
  o.probe_samples = 6;
  GradientLimit limit(o);
  // A bulk request takes 20x a single one; both are at their floor.
  TimePoint t = kStart;
  for (int i = 0; i < 3; ++i) {
    t = feed(limit, t, 1, milliseconds(10), 3, milliseconds(10), 0);
    t = feed(limit, t, 1, milliseconds(200), 3, milliseconds(200), 1);
  }
  ASSERT_FALSE(limit.probing());
  EXPECT_NEAR(limit.floor_seconds(0), 0.01, 1e-12);
  EXPECT_NEAR(limit.floor_seconds(1), 0.2, 1e-12);
  t = feed(limit, t + milliseconds(10), 1, milliseconds(10), 3, milliseconds(10), 0);
  t = feed(limit, t + milliseconds(200), 1, milliseconds(200), 3, milliseconds(200), 1);
  EXPECT_NEAR(limit.ratio(), 1.0, 1e-12);
  EXPECT_TRUE(limit.slow_start());
  // Classes out of range share the last one.
  limit.on_sample(t, milliseconds(1), 3, Outcome::kSuccess, 1000);
  EXPECT_EQ(limit.floor_seconds(GradientLimit::kMaxClasses), 0);
}

TEST(GradientLimitTest, UnprobedClassTakesTheLeastOfItsFirstAnswers) {
  GradientLimit limit(plain());
  TimePoint t = feed(limit, kStart, 5, milliseconds(10), 3, milliseconds(10), 0);
  for (int ms : {300, 100, 200}) {
    t += milliseconds(ms);
    limit.on_sample(t, milliseconds(ms), 3, Outcome::kSuccess, 2);
  }
  EXPECT_NEAR(limit.floor_seconds(2), 0.1, 1e-12);
}

TEST(GradientLimitTest, AWindowUnderTheFloorLowersIt) {
  GradientLimit limit(plain());
  TimePoint t = feed(limit, kStart, 5, milliseconds(100), 3);
  ASSERT_NEAR(limit.floor_seconds(0), 0.1, 1e-12);
  t = feed(limit, t + milliseconds(60), 1, milliseconds(60), 3);
  EXPECT_NEAR(limit.floor_seconds(0), 0.06, 1e-12);
  EXPECT_NEAR(limit.rtt_noload_seconds(), 0.06, 1e-12);
  EXPECT_NEAR(limit.short_rtt_seconds(), 0.06, 1e-12);
}

TEST(GradientLimitTest, RespectsMinAndMax) {
  GradientLimit limit(plain(5, 30));
  EXPECT_EQ(limit.limit(), 5);  // the probe limit, raised to the minimum
  TimePoint t = feed(limit, kStart, 5, milliseconds(10), 5);
  t = feed(limit, t + milliseconds(10), 50, milliseconds(10), 30, milliseconds(10));
  EXPECT_EQ(limit.limit(), 30);
  for (int i = 0; i < 100; ++i) {
    t += milliseconds(10);
    limit.on_sample(t, milliseconds(10), 30, Outcome::kDropped);
  }
  EXPECT_EQ(limit.limit(), 5);
  t = feed(limit, t + seconds(10), 50, seconds(10), 30, seconds(1));
  EXPECT_EQ(limit.limit(), 5);
}

TEST(GradientLimitTest, OddOptionsAreTamed) {
  GradientLimit::Options o;
  o.min = -4;
  o.max = -9;
  o.tolerance = 0.2;
  o.smoothing = 7;
  o.backoff_ratio = 0;
  o.probe_limit = 50;
  o.probe_samples = 0;
  o.window = -seconds(1);
  o.window_min_samples = 0;
  GradientLimit limit(o);
  EXPECT_EQ(limit.limit(), 1);
  EXPECT_EQ(limit.options().min, 1);
  EXPECT_EQ(limit.options().max, 1);
  EXPECT_EQ(limit.options().probe_limit, 1);
  EXPECT_DOUBLE_EQ(limit.options().tolerance, 1.0);
  EXPECT_DOUBLE_EQ(limit.options().smoothing, 1.0);
  EXPECT_DOUBLE_EQ(limit.options().backoff_ratio, 0.9);
  EXPECT_EQ(limit.options().probe_samples, 1);
  EXPECT_EQ(limit.options().window, Duration::zero());
  TimePoint t = kStart;
  for (int i = 0; i < 5; ++i) {
    limit.on_sample(t, Duration::zero(), 1, Outcome::kSuccess);  // zero RTT: no division by 0
  }
  EXPECT_EQ(limit.limit(), 1);
  EXPECT_TRUE(std::isfinite(limit.gradient()));
  EXPECT_TRUE(std::isfinite(limit.ratio()));
}

// ---------------------------------------------------------------------------------------------
// Event-driven simulation against a queueing server, as the overload benchmark's fake: at most
// `slots` requests served at once, each for `service_s` + `per_queued_s` x (queue length when
// it starts), +-10% noise; at most `queue_limit` waiting, more turned away at once (503). The
// client always has work and keeps limit() requests in flight. With client stalls the client
// is starved of CPU: it runs for random spells and is descheduled between them; an answer that
// comes while it is off is seen when it runs again (and holds no server slot meanwhile).

struct QueueServer {
  int slots;
  double service_s;
  double per_queued_s;
  int queue_limit;
};

struct QueueStats {
  int64_t done = 0;
  int64_t drops = 0;
  double mean_limit = 0;
  int max_limit = 0;
  int min_limit = 1 << 30;
  double seconds = 0;
  double throughput() const { return static_cast<double>(done) / seconds; }
};

class QueueSimulation {
 public:
  explicit QueueSimulation(ConcurrencyLimit& limit) : limit_(limit) {}

  void set_server(const QueueServer& server) { server_ = server; }
  // Spells on and off, each exponentially distributed with these means; 0: never off.
  void set_client_stalls(double on_mean_s, double off_mean_s) {
    on_mean_s_ = on_mean_s;
    off_mean_s_ = off_mean_s;
  }

  // Runs until `length` has passed or `requests` have been answered (0: no count).
  QueueStats run(Duration length, int64_t requests = 0) {
    QueueStats stats;
    const TimePoint start = now_;
    const TimePoint end = now_ + length;
    double limit_time = 0;
    while (now_ < end && (requests == 0 || stats.done < requests)) {
      // Top up to the limit.
      while (in_flight_ < limit_.limit()) send();
      // Next event: the earliest request the server finishes, or the earliest answer seen.
      auto it = std::min_element(busy_.begin(), busy_.end(),
                                 [](const Job& a, const Job& b) { return a.end < b.end; });
      auto seen = std::min_element(late_.begin(), late_.end(),
                                   [](const Job& a, const Job& b) { return a.seen < b.seen; });
      if (it == busy_.end() && seen == late_.end()) break;
      const bool served = it != busy_.end() && (seen == late_.end() || it->end <= seen->seen);
      Job job = served ? *it : *seen;
      const TimePoint at = served ? job.end : job.seen;
      limit_time += to_seconds(at - now_) * limit_.limit();
      now_ = at;
      if (served) {
        busy_.erase(it);
        job.seen = seen_at(now_);
        if (job.seen > now_) {
          late_.push_back(job);
          start_queued();
          continue;
        }
      } else {
        late_.erase(seen);
      }
      --in_flight_;
      limit_.on_sample(now_, now_ - job.sent, in_flight_ + 1, Outcome::kSuccess);
      ++stats.done;
      if (served) start_queued();
      stats.max_limit = std::max(stats.max_limit, limit_.limit());
      stats.min_limit = std::min(stats.min_limit, limit_.limit());
      stats.drops = drops_;
    }
    stats.seconds = to_seconds(now_ - start);
    stats.mean_limit = stats.seconds > 0 ? limit_time / stats.seconds : 0;
    return stats;
  }

  TimePoint now() const { return now_; }

 private:
  struct Job {
    TimePoint sent;
    TimePoint end;
    TimePoint seen{};
  };

  // When the client, off or on, sees an answer that came at `t` (t never decreases).
  TimePoint seen_at(TimePoint t) {
    if (off_mean_s_ <= 0) return t;
    auto spell = [this](double mean) {
      return from_seconds(-mean * std::log(1 - stall_random_.uniform01()));
    };
    while (t >= off_end_) {
      off_start_ = off_end_ + spell(on_mean_s_);
      off_end_ = off_start_ + spell(off_mean_s_);
    }
    return t >= off_start_ ? off_end_ : t;
  }

  void start_queued() {
    if (queue_.empty()) return;
    TimePoint sent = queue_.front();
    queue_.erase(queue_.begin());
    start_job(sent);
  }

  void send() {
    ++in_flight_;
    if (static_cast<int>(busy_.size()) < server_.slots) {
      start_job(now_);
    } else if (static_cast<int>(queue_.size()) < server_.queue_limit) {
      queue_.push_back(now_);
    } else {
      --in_flight_;
      ++drops_;
      now_ += milliseconds(1);
      limit_.on_sample(now_, milliseconds(1), in_flight_ + 1, Outcome::kDropped);
    }
  }

  void start_job(TimePoint sent) {
    const double noise = 0.9 + 0.2 * random_.uniform01();
    const double s =
        (server_.service_s + server_.per_queued_s * static_cast<double>(queue_.size())) * noise;
    busy_.push_back(Job{sent, now_ + from_seconds(s)});
  }

  ConcurrencyLimit& limit_;
  QueueServer server_{8, 0.02, 0.002, 64};
  std::vector<Job> busy_;
  std::vector<Job> late_;  // served, not yet seen by the client
  std::vector<TimePoint> queue_;
  double on_mean_s_ = 0;
  double off_mean_s_ = 0;
  TimePoint off_start_ = kStart;
  TimePoint off_end_ = kStart;
  MtRandom stall_random_{7};
  int in_flight_ = 0;
  int64_t drops_ = 0;
  MtRandom random_{2024};
  TimePoint now_ = kStart;
};

// The best a fixed limit does on `server`, over limits 1..4x its slots.
double best_fixed_throughput(const QueueServer& server, double on_s = 0, double off_s = 0) {
  double best = 0;
  for (int l = 1; l <= 4 * server.slots; ++l) {
    FixedLimit fixed(l);
    QueueSimulation sim(fixed);
    sim.set_server(server);
    sim.set_client_stalls(on_s, off_s);
    best = std::max(best, sim.run(seconds(20)).throughput());
  }
  return best;
}

TEST(GradientLimitSimulationTest, HoldsTheOverloadBenchmarksServerNearItsBest) {
  const QueueServer server{8, 0.02, 0.002, 64};
  const double best = best_fixed_throughput(server);
  GradientLimit limit;
  QueueSimulation sim(limit);
  sim.set_server(server);
  // 1,000 requests from a cold start take at most 1.15x what the best fixed limit needs.
  QueueStats cold = sim.run(std::chrono::minutes(1), 1000);
  EXPECT_LE(cold.seconds, 1.15 * 1000 / best) << "best " << best << "/s";
  // Then it holds a short queue: at least 90% of the best throughput, with no drop.
  QueueStats settled = sim.run(std::chrono::minutes(5));
  EXPECT_GE(settled.throughput(), 0.9 * best);
  EXPECT_GE(settled.min_limit, 3);  // the probes pin it to 3 for a moment
  EXPECT_LE(settled.max_limit, 16);
  EXPECT_GE(settled.mean_limit, 8);
  EXPECT_LE(settled.mean_limit, 13);
  EXPECT_EQ(settled.drops, 0);
  EXPECT_GE(limit.probes(), 5);
}

// A client starved of CPU (the overload benchmark at load 20 on 2 cores) sees answers tens to
// hundreds of milliseconds late whatever it has in flight. That latency is not the server's
// queue: it must not drive the limit down to 1. Here, off and on for 100 ms spells on average,
// the limit used to sit at 1 (1,000 requests 3.0x what the best fixed limit needs, then 0.29x
// its throughput); with latency unable to push it under the probe pin, 1.67x and 0.68x.
TEST(GradientLimitSimulationTest, AStarvedClientDoesNotCollapseTheLimit) {
  const QueueServer server{8, 0.02, 0.002, 64};
  const double best = best_fixed_throughput(server, 0.1, 0.1);
  GradientLimit limit;
  QueueSimulation sim(limit);
  sim.set_server(server);
  sim.set_client_stalls(0.1, 0.1);
  QueueStats cold = sim.run(std::chrono::minutes(2), 1000);
  EXPECT_LE(cold.seconds, 2.0 * 1000 / best) << "best " << best << "/s";
  QueueStats s = sim.run(std::chrono::minutes(2));
  EXPECT_GE(s.min_limit, 3);
  EXPECT_GE(s.throughput(), 0.5 * best) << "best " << best << "/s";
  EXPECT_EQ(s.drops, 0);
}

TEST(GradientLimitSimulationTest, DoesNotCreepUpwardUnderSustainedLoad) {
  const QueueServer server{50, 0.05, 0.0, 1000};  // no queue cost: latency grows only by waiting
  GradientLimit limit;
  QueueSimulation sim(limit);
  sim.set_server(server);
  sim.run(seconds(30));
  QueueStats first = sim.run(std::chrono::minutes(2));
  QueueStats later = sim.run(std::chrono::minutes(20));
  // Latency 1.25x the floor means about 62 in flight; it stays there.
  EXPECT_GE(first.mean_limit, 52);
  EXPECT_LE(first.mean_limit, 75);
  EXPECT_GE(later.mean_limit, 52);
  EXPECT_LE(later.mean_limit, 75);
  EXPECT_LE(later.max_limit, 85);
  EXPECT_NEAR(limit.floor_seconds(0), 0.05, 0.005);
  EXPECT_GE(later.throughput(), 0.95 * 50 / 0.05);
}

TEST(GradientLimitSimulationTest, FollowsCapacityDownAndBackUp) {
  GradientLimit limit;
  QueueSimulation sim(limit);
  sim.set_server(QueueServer{50, 0.05, 0.0, 1000});
  sim.run(std::chrono::minutes(1));
  ASSERT_GE(limit.limit(), 50);
  // The server loses four fifths of its capacity and turns away more than 40 waiting.
  sim.set_server(QueueServer{10, 0.05, 0.0, 40});
  sim.run(seconds(20));
  QueueStats degraded = sim.run(std::chrono::minutes(2));
  EXPECT_LE(degraded.mean_limit, 25);
  EXPECT_GE(degraded.mean_limit, 8);
  EXPECT_GE(degraded.throughput(), 0.9 * 10 / 0.05);
  // Capacity comes back; within two minutes the limit has found it again.
  sim.set_server(QueueServer{50, 0.05, 0.0, 1000});
  sim.run(std::chrono::minutes(2));
  QueueStats back = sim.run(std::chrono::minutes(1));
  EXPECT_GE(back.mean_limit, 50);
  EXPECT_LE(back.mean_limit, 75);
}

TEST(GradientLimitSimulationTest, ASlowerServerIsNoticedAtTheNextProbe) {
  GradientLimit limit;
  QueueSimulation sim(limit);
  sim.set_server(QueueServer{20, 0.02, 0.0, 1000});
  sim.run(std::chrono::minutes(1));
  const double fast_floor = limit.floor_seconds(0);
  ASSERT_NEAR(fast_floor, 0.02, 0.003);
  // Every request now takes 5x longer (a bigger database, say), capacity the same in flight.
  sim.set_server(QueueServer{20, 0.1, 0.0, 1000});
  // The limit falls to the probe limit, and the floor is measured again within seconds.
  sim.run(std::chrono::seconds(15));
  EXPECT_NEAR(limit.floor_seconds(0), 0.1, 0.015);
  QueueStats s = sim.run(std::chrono::minutes(2));
  EXPECT_GE(s.mean_limit, 20);
  EXPECT_LE(s.mean_limit, 30);
}

TEST(GradientLimitSimulationTest, StaysWithinMinAndMax) {
  GradientLimit::Options o;
  o.min = 4;
  o.max = 30;
  GradientLimit limit(o);
  QueueSimulation sim(limit);
  sim.set_server(QueueServer{500, 0.02, 0.0, 2000});
  QueueStats fast = sim.run(std::chrono::minutes(2));
  EXPECT_EQ(fast.max_limit, 30);
  EXPECT_EQ(limit.limit(), 30);
  sim.set_server(QueueServer{1, 0.02, 0.0, 2});
  QueueStats tiny = sim.run(std::chrono::minutes(2));
  EXPECT_GE(tiny.min_limit, 4);
  EXPECT_LE(tiny.mean_limit, 6);
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
  EXPECT_EQ(gradient->limit(), 3);  // measures its floor first, at the probe limit
  auto* g = dynamic_cast<GradientLimit*>(gradient.get());
  ASSERT_NE(g, nullptr);
  EXPECT_EQ(g->options().min, 3);
  EXPECT_EQ(g->options().max, 60);
}

TEST(MakeLimitTest, ClampsInitialIntoBounds) {
  EXPECT_EQ(make_limit("fixed", 500, 1, 100)->limit(), 100);
  EXPECT_EQ(make_limit("aimd", 0, 5, 100)->limit(), 5);
  EXPECT_EQ(make_limit("gradient", 1000, 5, 50)->limit(), 5);  // the probe limit, within bounds
}

TEST(MakeLimitTest, UnknownKindIsNull) {
  EXPECT_EQ(make_limit("vegas", 10, 1, 100), nullptr);
  EXPECT_EQ(make_limit("", 10, 1, 100), nullptr);
  EXPECT_EQ(make_limit("AIMD", 10, 1, 100), nullptr);
}

}  // namespace
}  // namespace floodgate::core
