#include "core/timer_queue.h"

#include <gtest/gtest.h>

#include <chrono>
#include <vector>

namespace floodgate::core {
namespace {

using namespace std::chrono_literals;

TEST(ManualTimerQueueTest, RunsTimersInTimeOrderAsTheClockMoves) {
  SimulatedClock clock;
  ManualTimerQueue q(clock);
  const auto start = clock.now();
  std::vector<int> ran;
  std::vector<Duration> at;
  q.schedule(start + 2s, [&] {
    ran.push_back(2);
    at.push_back(clock.now() - start);
  });
  q.schedule(start + 1s, [&] {
    ran.push_back(1);
    at.push_back(clock.now() - start);
    // A timer set by a timer runs in the same advance when it falls inside it.
    q.schedule(clock.now() + 500ms, [&] {
      ran.push_back(15);
      at.push_back(clock.now() - start);
    });
  });
  q.advance(900ms);
  EXPECT_TRUE(ran.empty());
  q.advance(2s);
  EXPECT_EQ(ran, (std::vector<int>{1, 15, 2}));
  EXPECT_EQ(at, (std::vector<Duration>{1s, 1500ms, 2s}));
  EXPECT_EQ(clock.now() - start, 2900ms);
}

TEST(ManualTimerQueueTest, CancelledTimersDoNotRunAndPostedWorkRunsFirst) {
  SimulatedClock clock;
  ManualTimerQueue q(clock);
  std::vector<int> ran;
  auto id = q.schedule(clock.now() + 1s, [&] { ran.push_back(1); });
  q.schedule(clock.now(), [&] { ran.push_back(2); });
  q.post([&] { ran.push_back(3); });
  q.cancel(id);
  q.cancel(999);  // unknown: ignored
  EXPECT_EQ(q.run_ready(), 2);
  q.advance(5s);
  EXPECT_EQ(ran, (std::vector<int>{3, 2}));
  EXPECT_EQ(q.scheduled(), 0u);
}

}  // namespace
}  // namespace floodgate::core
