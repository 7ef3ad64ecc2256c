#include "core/contention_pause.h"

#include <gtest/gtest.h>

#include <chrono>

#include "core/clock.h"

namespace floodgate::core {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

TEST(ContentionPauseTest, FirstSignalPausesBriefly) {
  SimulatedClock clock;
  ContentionPause pause;
  EXPECT_EQ(pause.on_signal(clock.now()), milliseconds(100));
  EXPECT_EQ(pause.signals(), 1);
  EXPECT_EQ(pause.pauses(), 1);
}

TEST(ContentionPauseTest, SignalsDuringAPauseOrRightAfterAskForNothingMore) {
  // Answers to requests sent before the pause began arrive during it or just after: they say
  // nothing new, and the adaptive limit takes them.
  SimulatedClock clock;
  ContentionPause pause(milliseconds(250), seconds(4), seconds(2), seconds(10));
  ASSERT_EQ(pause.on_signal(clock.now()), milliseconds(250));
  clock.advance(milliseconds(100));
  EXPECT_EQ(pause.on_signal(clock.now()), Duration(0));
  clock.advance(milliseconds(150) + seconds(2) - milliseconds(1));  // 1 ms short of the spacing
  EXPECT_EQ(pause.on_signal(clock.now()), Duration(0));
  clock.advance(milliseconds(1));
  EXPECT_EQ(pause.on_signal(clock.now()), milliseconds(500));
  EXPECT_EQ(pause.signals(), 4);
  EXPECT_EQ(pause.pauses(), 2);
}

TEST(ContentionPauseTest, DoublesWhileContentionLastsUpToTheCap) {
  SimulatedClock clock;
  ContentionPause pause(milliseconds(250), seconds(2), seconds(1), seconds(10));
  Duration expected[] = {milliseconds(250), milliseconds(500), seconds(1), seconds(2), seconds(2)};
  for (Duration want : expected) {
    Duration got = pause.on_signal(clock.now());
    EXPECT_EQ(got, want);
    clock.advance(got + seconds(1));  // the next signal comes as soon as it may
  }
}

TEST(ContentionPauseTest, AQuietSpellStartsShortAgain) {
  SimulatedClock clock;
  ContentionPause pause(milliseconds(250), seconds(8), seconds(1), seconds(10));
  Duration d = pause.on_signal(clock.now());
  clock.advance(d + seconds(1));
  d = pause.on_signal(clock.now());
  EXPECT_EQ(d, milliseconds(500));
  clock.advance(d + seconds(11));
  EXPECT_EQ(pause.on_signal(clock.now()), milliseconds(250));
}

TEST(ContentionPauseTest, AMaxBelowTheBaseIsTheBase) {
  SimulatedClock clock;
  ContentionPause pause(seconds(1), milliseconds(10), seconds(1), seconds(10));
  EXPECT_EQ(pause.on_signal(clock.now()), seconds(1));
}

}  // namespace
}  // namespace floodgate::core
