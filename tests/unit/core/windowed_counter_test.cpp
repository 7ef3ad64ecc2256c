#include "core/windowed_counter.h"

#include <gtest/gtest.h>

#include "core/clock.h"

namespace floodgate::core {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

TEST(WindowedCounterTest, SumsWithinTheWindow) {
  SimulatedClock clock;
  WindowedCounter counter(seconds(10), 10);
  EXPECT_EQ(counter.window(), seconds(10));
  EXPECT_EQ(counter.slot_width(), seconds(1));
  counter.add(clock.now(), 3);
  counter.add(clock.now(), -1);
  EXPECT_EQ(counter.sum(clock.now()), 2);
  clock.advance(seconds(9));
  counter.add(clock.now(), 5);
  EXPECT_EQ(counter.sum(clock.now()), 7);
  clock.advance(seconds(1));
  EXPECT_EQ(counter.sum(clock.now()), 5);
  clock.advance(seconds(9));
  EXPECT_EQ(counter.sum(clock.now()), 0);
}

TEST(WindowedCounterTest, ValuesLiveBetweenWindowMinusSlotAndWindow) {
  SimulatedClock clock;
  WindowedCounter counter(seconds(10), 10);
  clock.advance(milliseconds(999));  // late in its slot
  counter.add(clock.now(), 1);
  clock.advance(seconds(9));
  EXPECT_EQ(counter.sum(clock.now()), 1);
  clock.advance(milliseconds(1));
  EXPECT_EQ(counter.sum(clock.now()), 0);  // only 9.001 s later, but in the eleventh slot
  SimulatedClock clock2;
  WindowedCounter early(seconds(10), 10);
  early.add(clock2.now(), 1);  // first instant of its slot
  clock2.advance(seconds(10) - Duration(1));
  EXPECT_EQ(early.sum(clock2.now()), 1);
  clock2.advance(Duration(1));
  EXPECT_EQ(early.sum(clock2.now()), 0);
}

TEST(WindowedCounterTest, ReusedSlotsForgetOldValues) {
  SimulatedClock clock;
  WindowedCounter counter(seconds(3), 3);
  counter.add(clock.now(), 100);
  clock.advance(seconds(3));  // the same ring slot, three slots later
  counter.add(clock.now(), 1);
  EXPECT_EQ(counter.sum(clock.now()), 1);
  clock.advance(std::chrono::hours(5));
  EXPECT_EQ(counter.sum(clock.now()), 0);
}

TEST(WindowedCounterTest, ClearForgetsEverything) {
  SimulatedClock clock;
  WindowedCounter counter(seconds(10), 10);
  counter.add(clock.now(), 4);
  counter.clear();
  EXPECT_EQ(counter.sum(clock.now()), 0);
}

TEST(WindowedCounterTest, TimesBeforeTheEpochWork) {
  SimulatedClock clock(TimePoint{} - seconds(5) - milliseconds(500));
  WindowedCounter counter(seconds(2), 2);
  counter.add(clock.now(), 1);
  clock.advance(seconds(1));
  counter.add(clock.now(), 1);
  EXPECT_EQ(counter.sum(clock.now()), 2);
  clock.advance(seconds(1));
  EXPECT_EQ(counter.sum(clock.now()), 1);
}

TEST(WindowedCounterTest, DegenerateArgumentsAreTamed) {
  SimulatedClock clock;
  WindowedCounter counter(Duration::zero(), 0);
  counter.add(clock.now(), 1);
  EXPECT_EQ(counter.sum(clock.now()), 1);
  clock.advance(Duration(1));
  EXPECT_EQ(counter.sum(clock.now()), 0);
}

}  // namespace
}  // namespace floodgate::core
