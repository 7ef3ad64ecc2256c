#include "core/circuit_breaker.h"

#include <gtest/gtest.h>

#include <vector>

#include "core/clock.h"
#include "core/random.h"

namespace floodgate::core {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using State = CircuitBreaker::State;

CircuitBreaker::Options options() {
  CircuitBreaker::Options o;
  o.failure_threshold = 5;
  o.failure_ratio = 0.5;
  o.min_requests = 10;
  o.window = seconds(10);
  o.open_base = seconds(1);
  o.open_max = seconds(30);
  o.half_open_trials = 4;  // reopens at 2 failures, closes at 3 successes
  return o;
}

TEST(CircuitBreakerTest, StartsClosed) {
  SimulatedClock clock;
  FixedRandom random(0.5);
  CircuitBreaker breaker(clock, random);
  EXPECT_EQ(breaker.state(), State::kClosed);
  EXPECT_EQ(breaker.state_name(), "closed");
  EXPECT_TRUE(breaker.allow_request());
  EXPECT_FALSE(breaker.probe_due());
  EXPECT_FALSE(breaker.is_half_open());
  EXPECT_EQ(breaker.time_until_probe(), Duration::zero());
  EXPECT_EQ(breaker.open_count(), 0);
  EXPECT_EQ(breaker.options().failure_threshold, 20);
  EXPECT_EQ(breaker.options().half_open_trials, 10);
}

TEST(CircuitBreakerTest, TripsOnConsecutiveFailures) {
  SimulatedClock clock;
  FixedRandom random(0.5);
  CircuitBreaker breaker(clock, random, options());
  for (int i = 0; i < 4; ++i) breaker.on_failure();
  EXPECT_EQ(breaker.state(), State::kClosed);
  EXPECT_EQ(breaker.consecutive_failures(), 4);
  breaker.on_failure();
  EXPECT_EQ(breaker.state(), State::kOpen);
  EXPECT_EQ(breaker.state_name(), "open");
  EXPECT_FALSE(breaker.allow_request());
  EXPECT_EQ(breaker.open_count(), 1);
}

TEST(CircuitBreakerTest, ASuccessResetsTheConsecutiveCount) {
  SimulatedClock clock;
  FixedRandom random(0.5);
  auto o = options();
  o.min_requests = 1000;  // only the consecutive rule
  CircuitBreaker breaker(clock, random, o);
  for (int round = 0; round < 50; ++round) {
    for (int i = 0; i < 4; ++i) breaker.on_failure();
    breaker.on_success();
  }
  EXPECT_EQ(breaker.state(), State::kClosed);
  EXPECT_EQ(breaker.consecutive_failures(), 0);
}

TEST(CircuitBreakerTest, TripsOnFailureRatioInTheWindow) {
  SimulatedClock clock;
  FixedRandom random(0.5);
  auto o = options();
  o.failure_threshold = 0;  // only the ratio rule
  CircuitBreaker breaker(clock, random, o);
  // Alternating outcomes: 50% failures, but only trips once 10 outcomes are in the window.
  for (int i = 0; i < 4; ++i) {
    breaker.on_success();
    breaker.on_failure();
  }
  breaker.on_success();
  EXPECT_EQ(breaker.state(), State::kClosed);  // 4 of 9
  breaker.on_failure();                        // 5 of 10
  EXPECT_EQ(breaker.state(), State::kOpen);
}

TEST(CircuitBreakerTest, RatioBelowThresholdDoesNotTrip) {
  SimulatedClock clock;
  FixedRandom random(0.5);
  auto o = options();
  o.failure_threshold = 0;
  CircuitBreaker breaker(clock, random, o);
  for (int i = 0; i < 1000; ++i) {
    // Two successes per failure: 33% failures.
    breaker.on_success();
    breaker.on_success();
    breaker.on_failure();
    clock.advance(milliseconds(10));
  }
  EXPECT_EQ(breaker.state(), State::kClosed);
}

TEST(CircuitBreakerTest, OldOutcomesLeaveTheWindow) {
  SimulatedClock clock;
  FixedRandom random(0.5);
  auto o = options();
  o.failure_threshold = 0;
  CircuitBreaker breaker(clock, random, o);
  for (int i = 0; i < 9; ++i) breaker.on_failure();  // 9 failures, not yet min_requests
  clock.advance(seconds(11));
  breaker.on_failure();  // the 9 old ones have expired: 1 outcome in the window
  EXPECT_EQ(breaker.state(), State::kClosed);
}

TEST(CircuitBreakerTest, ProbeAfterJitteredBackoff) {
  SimulatedClock clock;
  FixedRandom random(0.5);  // jitter factor 1.0 exactly
  CircuitBreaker breaker(clock, random, options());
  for (int i = 0; i < 5; ++i) breaker.on_failure();
  ASSERT_EQ(breaker.state(), State::kOpen);
  EXPECT_EQ(breaker.time_until_probe(), seconds(1));
  EXPECT_FALSE(breaker.probe_due());
  clock.advance(milliseconds(999));
  EXPECT_FALSE(breaker.probe_due());
  EXPECT_EQ(breaker.time_until_probe(), milliseconds(1));
  clock.advance(milliseconds(1));
  EXPECT_TRUE(breaker.probe_due());
  EXPECT_EQ(breaker.time_until_probe(), Duration::zero());
  EXPECT_FALSE(breaker.allow_request());  // still open until the probe answers
}

TEST(CircuitBreakerTest, FailedProbesDoubleTheWaitUpToTheCap) {
  SimulatedClock clock;
  FixedRandom random(0.5);
  CircuitBreaker breaker(clock, random, options());
  for (int i = 0; i < 5; ++i) breaker.on_failure();
  std::vector<Duration> expected = {seconds(2),  seconds(4),  seconds(8), seconds(16),
                                    seconds(30), seconds(30), seconds(30)};
  for (Duration want : expected) {
    clock.advance(breaker.time_until_probe());
    ASSERT_TRUE(breaker.probe_due());
    breaker.on_probe_result(false);
    EXPECT_EQ(breaker.state(), State::kOpen);
    EXPECT_EQ(breaker.time_until_probe(), want);
  }
  EXPECT_EQ(breaker.open_count(), 1);  // failed probes keep it open; they do not trip it again
}

TEST(CircuitBreakerTest, JitterIsWithinTwentyPercentAndCapped) {
  SimulatedClock clock;
  MtRandom random(17);
  auto o = options();
  o.open_base = seconds(4);
  o.open_max = seconds(10);
  CircuitBreaker breaker(clock, random, o);
  for (int i = 0; i < 5; ++i) breaker.on_failure();
  Duration first = breaker.time_until_probe();
  EXPECT_GE(first, milliseconds(3200));
  EXPECT_LE(first, milliseconds(4800));
  breaker.on_probe_result(false);
  Duration second = breaker.time_until_probe();  // 8 s, jittered, capped
  EXPECT_GE(second, milliseconds(6400));
  EXPECT_LE(second, seconds(10));
  for (int i = 0; i < 2000; ++i) {
    breaker.on_probe_result(false);
    Duration wait = breaker.time_until_probe();
    // 16 s and more: even the lowest jitter (x0.8) stays above the cap.
    ASSERT_EQ(wait, seconds(10)) << i;
  }
}

TEST(CircuitBreakerTest, HealthyProbeThenRampCloses) {
  SimulatedClock clock;
  FixedRandom random(0.5);
  CircuitBreaker breaker(clock, random, options());
  for (int i = 0; i < 5; ++i) breaker.on_failure();
  clock.advance(breaker.time_until_probe());
  breaker.on_probe_result(true);
  EXPECT_EQ(breaker.state(), State::kHalfOpen);
  EXPECT_EQ(breaker.state_name(), "half_open");
  EXPECT_TRUE(breaker.is_half_open());
  EXPECT_TRUE(breaker.allow_request());
  EXPECT_FALSE(breaker.probe_due());
  breaker.on_success();
  breaker.on_success();
  EXPECT_EQ(breaker.state(), State::kHalfOpen);
  breaker.on_success();
  EXPECT_EQ(breaker.state(), State::kClosed);
  EXPECT_TRUE(breaker.allow_request());
  // Closed with a clean slate: it takes a full run of failures to trip again.
  for (int i = 0; i < 4; ++i) breaker.on_failure();
  EXPECT_EQ(breaker.state(), State::kClosed);
}

TEST(CircuitBreakerTest, FailureInHalfOpenReopensWithLongerWait) {
  SimulatedClock clock;
  FixedRandom random(0.5);
  CircuitBreaker breaker(clock, random, options());
  for (int i = 0; i < 5; ++i) breaker.on_failure();
  EXPECT_EQ(breaker.time_until_probe(), seconds(1));
  clock.advance(seconds(1));
  breaker.on_probe_result(true);
  breaker.on_success();
  breaker.on_failure();
  EXPECT_EQ(breaker.state(), State::kHalfOpen);  // one failure in four trials is not enough
  breaker.on_failure();
  EXPECT_EQ(breaker.state(), State::kOpen);
  EXPECT_EQ(breaker.open_count(), 2);
  EXPECT_EQ(breaker.time_until_probe(), seconds(2));
  clock.advance(seconds(2));
  breaker.on_probe_result(true);
  breaker.on_failure();
  breaker.on_failure();
  EXPECT_EQ(breaker.time_until_probe(), seconds(4));
  EXPECT_EQ(breaker.open_count(), 3);
}

TEST(CircuitBreakerTest, ClosingResetsTheBackoff) {
  SimulatedClock clock;
  FixedRandom random(0.5);
  CircuitBreaker breaker(clock, random, options());
  for (int i = 0; i < 5; ++i) breaker.on_failure();
  breaker.on_probe_result(false);
  breaker.on_probe_result(false);
  EXPECT_EQ(breaker.time_until_probe(), seconds(4));
  clock.advance(seconds(4));
  breaker.on_probe_result(true);
  for (int i = 0; i < 3; ++i) breaker.on_success();
  ASSERT_EQ(breaker.state(), State::kClosed);
  for (int i = 0; i < 5; ++i) breaker.on_failure();
  EXPECT_EQ(breaker.time_until_probe(), seconds(1));
}

TEST(CircuitBreakerTest, OutcomesWhileOpenAreIgnored) {
  SimulatedClock clock;
  FixedRandom random(0.5);
  CircuitBreaker breaker(clock, random, options());
  for (int i = 0; i < 5; ++i) breaker.on_failure();
  Duration wait = breaker.time_until_probe();
  for (int i = 0; i < 100; ++i) breaker.on_success();  // stragglers sent before the trip
  for (int i = 0; i < 100; ++i) breaker.on_failure();
  EXPECT_EQ(breaker.state(), State::kOpen);
  EXPECT_EQ(breaker.time_until_probe(), wait);
  EXPECT_EQ(breaker.open_count(), 1);
}

TEST(CircuitBreakerTest, ProbeResultIgnoredUnlessOpen) {
  SimulatedClock clock;
  FixedRandom random(0.5);
  CircuitBreaker breaker(clock, random, options());
  breaker.on_probe_result(false);
  EXPECT_EQ(breaker.state(), State::kClosed);
  breaker.on_probe_result(true);
  EXPECT_EQ(breaker.state(), State::kClosed);
}

// The trials are judged together: a server that loses one request in four to contention (a
// SQLite-backed Prefect answering "database is locked") is let back in; one that fails half of
// them is not. With the defaults: 10 trials, reopen at 5 failures, close at 6 successes.
TEST(CircuitBreakerTest, HalfOpenJudgesTheTrialsByTheirFailureShare) {
  SimulatedClock clock;
  FixedRandom random(0.5);
  CircuitBreaker breaker(clock, random);
  // Trips the breaker, lets a healthy probe in and answers the half-open trials, every
  // `fail_every`-th of them (counting from `first_failure`) a failure, until the breaker
  // decides; returns how many trials it took.
  auto trip_and_ramp = [&](int fail_every, int first_failure) {
    for (int i = 0; i < 20; ++i) breaker.on_failure();
    EXPECT_EQ(breaker.state(), State::kOpen);
    clock.advance(breaker.time_until_probe());
    breaker.on_probe_result(true);
    int sent = 0;
    for (; breaker.is_half_open(); ++sent) {
      if (sent % fail_every == first_failure) {
        breaker.on_failure();
      } else {
        breaker.on_success();
      }
    }
    return sent;
  };
  EXPECT_EQ(trip_and_ramp(4, 3), 7);  // 6 successes and 1 failure
  EXPECT_EQ(breaker.state(), State::kClosed);
  EXPECT_EQ(breaker.open_count(), 1);

  // The 5th failure reopens it, before the 6th success could close it.
  EXPECT_EQ(trip_and_ramp(2, 0), 9);
  EXPECT_EQ(breaker.state(), State::kOpen);
  EXPECT_EQ(breaker.open_count(), 3);
}

TEST(CircuitBreakerTest, ZeroHalfOpenTrialsClosesOnHealthyProbe) {
  SimulatedClock clock;
  FixedRandom random(0.5);
  auto o = options();
  o.half_open_trials = 0;
  CircuitBreaker breaker(clock, random, o);
  for (int i = 0; i < 5; ++i) breaker.on_failure();
  breaker.on_probe_result(true);
  EXPECT_EQ(breaker.state(), State::kClosed);
}

TEST(CircuitBreakerTest, DefaultOptionsTripOnTwentyConsecutiveFailures) {
  SimulatedClock clock;
  FixedRandom random(0.0);
  CircuitBreaker breaker(clock, random);
  for (int i = 0; i < 19; ++i) breaker.on_failure();
  EXPECT_EQ(breaker.state(), State::kClosed);
  breaker.on_failure();
  EXPECT_EQ(breaker.state(), State::kOpen);
  EXPECT_EQ(breaker.time_until_probe(), milliseconds(800));  // 1 s with jitter at its lowest
}

TEST(CircuitBreakerTest, ToString) {
  EXPECT_EQ(CircuitBreaker::to_string(State::kClosed), "closed");
  EXPECT_EQ(CircuitBreaker::to_string(State::kOpen), "open");
  EXPECT_EQ(CircuitBreaker::to_string(State::kHalfOpen), "half_open");
}

// A server that is down for a while and then recovers: the breaker opens, probes with growing
// waits while the server is down, and closes soon after it is back.
TEST(CircuitBreakerTest, OutageAndRecoveryScenario) {
  SimulatedClock clock;
  MtRandom random(1);
  CircuitBreaker breaker(clock, random);
  const TimePoint outage_start = clock.now() + seconds(10);
  const TimePoint outage_end = outage_start + seconds(120);
  auto healthy = [&] { return clock.now() < outage_start || clock.now() >= outage_end; };
  int sent_while_down = 0;
  int probes = 0;
  TimePoint closed_again{};
  while (clock.now() < outage_end + seconds(60)) {
    clock.advance(milliseconds(50));
    if (breaker.probe_due()) {
      ++probes;
      breaker.on_probe_result(healthy());
      continue;
    }
    if (!breaker.allow_request()) continue;
    if (!healthy()) ++sent_while_down;
    State before = breaker.state();
    if (healthy()) {
      breaker.on_success();
    } else {
      breaker.on_failure();
    }
    if (before == State::kHalfOpen && breaker.state() == State::kClosed &&
        closed_again == TimePoint{}) {
      closed_again = clock.now();
    }
  }
  EXPECT_EQ(breaker.state(), State::kClosed);
  EXPECT_EQ(sent_while_down, 20);  // just the consecutive failures that tripped it
  EXPECT_GE(probes, 5);
  EXPECT_LE(probes, 12);  // 1, 2, 4, 8, 16 then 30 s waits over 120 s
  ASSERT_NE(closed_again, TimePoint{});
  EXPECT_GE(closed_again, outage_end);
  EXPECT_LE(closed_again - outage_end, seconds(37));  // at most one capped wait, jittered
}

}  // namespace
}  // namespace floodgate::core
