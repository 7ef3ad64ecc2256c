#include "core/global_backoff.h"

#include <gtest/gtest.h>

#include <chrono>
#include <string>

#include "core/clock.h"

namespace floodgate::core {
namespace {

using std::chrono::hours;
using std::chrono::milliseconds;
using std::chrono::seconds;
using std::chrono::system_clock;

TEST(GlobalBackoffTest, NeverPausedRunsAtFullSpeed) {
  SimulatedClock clock;
  GlobalBackoff backoff(clock);
  EXPECT_FALSE(backoff.paused());
  EXPECT_EQ(backoff.remaining(), Duration::zero());
  EXPECT_DOUBLE_EQ(backoff.resume_fraction(), 1.0);
  EXPECT_FALSE(backoff.ramping());
  EXPECT_FALSE(backoff.paused_until().has_value());
  EXPECT_EQ(backoff.pause_count(), 0);
  EXPECT_EQ(backoff.ramp(), seconds(5));
}

TEST(GlobalBackoffTest, PausesThenRampsLinearly) {
  SimulatedClock clock;
  GlobalBackoff backoff(clock);
  backoff.pause_until(clock.now() + seconds(30));
  EXPECT_TRUE(backoff.paused());
  EXPECT_EQ(backoff.remaining(), seconds(30));
  EXPECT_DOUBLE_EQ(backoff.resume_fraction(), 0.0);
  clock.advance(seconds(29));
  EXPECT_EQ(backoff.remaining(), seconds(1));
  EXPECT_DOUBLE_EQ(backoff.resume_fraction(), 0.0);
  clock.advance(seconds(1));
  EXPECT_FALSE(backoff.paused());
  EXPECT_EQ(backoff.remaining(), Duration::zero());
  EXPECT_TRUE(backoff.ramping());
  EXPECT_NEAR(backoff.resume_fraction(), 0.1, 1e-12);
  clock.advance(milliseconds(2500));
  EXPECT_NEAR(backoff.resume_fraction(), 0.55, 1e-12);
  clock.advance(milliseconds(2500));
  EXPECT_DOUBLE_EQ(backoff.resume_fraction(), 1.0);
  EXPECT_FALSE(backoff.ramping());
  clock.advance(hours(1));
  EXPECT_DOUBLE_EQ(backoff.resume_fraction(), 1.0);
}

TEST(GlobalBackoffTest, RampIsMonotonic) {
  SimulatedClock clock;
  GlobalBackoff backoff(clock, seconds(3), 0.2);
  backoff.pause_for(seconds(1));
  double last = -1;
  for (int i = 0; i < 600; ++i) {
    double f = backoff.resume_fraction();
    ASSERT_GE(f, last);
    ASSERT_GE(f, 0.0);
    ASSERT_LE(f, 1.0);
    if (!backoff.paused()) {
      ASSERT_GE(f, 0.2);
    }
    last = f;
    clock.advance(milliseconds(10));
  }
  EXPECT_DOUBLE_EQ(last, 1.0);
}

TEST(GlobalBackoffTest, ExtendsButNeverShortens) {
  SimulatedClock clock;
  GlobalBackoff backoff(clock);
  TimePoint t = clock.now();
  backoff.pause_until(t + seconds(60));
  backoff.pause_until(t + seconds(10));
  EXPECT_EQ(backoff.remaining(), seconds(60));
  EXPECT_EQ(backoff.pause_count(), 1);
  backoff.pause_until(t + seconds(90));
  EXPECT_EQ(backoff.remaining(), seconds(90));
  EXPECT_EQ(backoff.pause_count(), 2);
  EXPECT_EQ(backoff.paused_until(), t + seconds(90));
  backoff.pause_for(seconds(5));
  EXPECT_EQ(backoff.remaining(), seconds(90));
}

TEST(GlobalBackoffTest, NewPauseDuringRampStartsOver) {
  SimulatedClock clock;
  GlobalBackoff backoff(clock);
  backoff.pause_for(seconds(10));
  clock.advance(seconds(13));
  EXPECT_GT(backoff.resume_fraction(), 0.5);
  backoff.pause_for(seconds(2));
  EXPECT_TRUE(backoff.paused());
  EXPECT_DOUBLE_EQ(backoff.resume_fraction(), 0.0);
  clock.advance(seconds(2));
  EXPECT_NEAR(backoff.resume_fraction(), 0.1, 1e-12);
}

TEST(GlobalBackoffTest, ZeroPauseStillRampsUp) {
  // A 429 with "Retry-After: 0" pauses nothing but still resumes gently.
  SimulatedClock clock;
  GlobalBackoff backoff(clock);
  backoff.pause_for(Duration::zero());
  EXPECT_FALSE(backoff.paused());
  EXPECT_TRUE(backoff.ramping());
  EXPECT_NEAR(backoff.resume_fraction(), 0.1, 1e-12);
  backoff.pause_for(seconds(-5));  // treated as zero
  EXPECT_EQ(backoff.pause_count(), 1);
}

TEST(GlobalBackoffTest, PauseInThePastOnlyRampsFromThatPoint) {
  SimulatedClock clock;
  GlobalBackoff backoff(clock);
  backoff.pause_until(clock.now() - seconds(1));
  EXPECT_FALSE(backoff.paused());
  EXPECT_NEAR(backoff.resume_fraction(), 0.1 + 0.9 * 0.2, 1e-12);
}

TEST(GlobalBackoffTest, ZeroRampResumesAtOnce) {
  SimulatedClock clock;
  GlobalBackoff backoff(clock, Duration::zero());
  backoff.pause_for(seconds(1));
  EXPECT_DOUBLE_EQ(backoff.resume_fraction(), 0.0);
  clock.advance(seconds(1));
  EXPECT_DOUBLE_EQ(backoff.resume_fraction(), 1.0);
  EXPECT_FALSE(backoff.ramping());
}

class ParseRetryAfterTest : public ::testing::Test {
 protected:
  // Wed, 21 Oct 2015 07:28:00 GMT
  const system_clock::time_point now_ = system_clock::time_point(seconds(1445412480));
};

TEST_F(ParseRetryAfterTest, DeltaSeconds) {
  EXPECT_EQ(parse_retry_after("120", now_), seconds(120));
  EXPECT_EQ(parse_retry_after("0", now_), Duration::zero());
  EXPECT_EQ(parse_retry_after(" 7 ", now_), seconds(7));
  EXPECT_EQ(parse_retry_after("1.5", now_), milliseconds(1500));
  EXPECT_EQ(parse_retry_after("0.25", now_), milliseconds(250));
  EXPECT_EQ(parse_retry_after("007", now_), seconds(7));
}

TEST_F(ParseRetryAfterTest, HugeDeltasAreClamped) {
  EXPECT_EQ(parse_retry_after("86400", now_), hours(24));
  EXPECT_EQ(parse_retry_after("86401", now_), kMaxRetryAfter);
  EXPECT_EQ(parse_retry_after("99999999999999999999999", now_), kMaxRetryAfter);
  EXPECT_EQ(parse_retry_after(std::string(400, '9'), now_), kMaxRetryAfter);
}

TEST_F(ParseRetryAfterTest, ImfFixdate) {
  EXPECT_EQ(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now_), Duration::zero());
  EXPECT_EQ(parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now_), seconds(30));
  EXPECT_EQ(parse_retry_after("Wed, 21 Oct 2015 08:28:00 GMT", now_), hours(1));
  EXPECT_EQ(parse_retry_after("Thu, 22 Oct 2015 07:27:59 GMT", now_), hours(24) - seconds(1));
  EXPECT_EQ(parse_retry_after("thu, 22 oct 2015 07:27:59 gmt", now_), hours(24) - seconds(1));
}

TEST_F(ParseRetryAfterTest, DateAcrossMonthAndYearEnds) {
  const system_clock::time_point new_years_eve(seconds(1704067170));  // 2023-12-31 23:59:30
  EXPECT_EQ(parse_retry_after("Mon, 01 Jan 2024 00:00:10 GMT", new_years_eve), seconds(40));
  const system_clock::time_point leap_day(seconds(1709164800));  // 2024-02-29 00:00:00
  EXPECT_EQ(parse_retry_after("Fri, 01 Mar 2024 00:00:00 GMT", leap_day), hours(24));
}

TEST_F(ParseRetryAfterTest, SubSecondWallClockIsRespected) {
  auto now = now_ + milliseconds(250);
  EXPECT_EQ(parse_retry_after("Wed, 21 Oct 2015 07:28:01 GMT", now), milliseconds(750));
  EXPECT_EQ(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now), Duration::zero());
}

TEST_F(ParseRetryAfterTest, PastDatesAreZero) {
  EXPECT_EQ(parse_retry_after("Tue, 20 Oct 2015 07:28:00 GMT", now_), Duration::zero());
  EXPECT_EQ(parse_retry_after("Thu, 01 Jan 1970 00:00:00 GMT", now_), Duration::zero());
  EXPECT_EQ(parse_retry_after("Mon, 01 Jan 0001 00:00:00 GMT", now_), Duration::zero());
}

TEST_F(ParseRetryAfterTest, FarFutureDatesAreClampedWithoutOverflow) {
  EXPECT_EQ(parse_retry_after("Fri, 31 Dec 9999 23:59:59 GMT", now_), kMaxRetryAfter);
  EXPECT_EQ(parse_retry_after("Sat, 21 Nov 2015 07:28:00 GMT", now_), kMaxRetryAfter);
}

TEST_F(ParseRetryAfterTest, ObsoleteDateForms) {
  EXPECT_EQ(parse_retry_after("Wednesday, 21-Oct-15 07:29:00 GMT", now_), seconds(60));
  EXPECT_EQ(parse_retry_after("Wed Oct 21 07:28:05 2015", now_), seconds(5));
  const system_clock::time_point nov_1994(seconds(784111777 - 10));  // Sun Nov 6 08:49:27 1994
  EXPECT_EQ(parse_retry_after("Sun Nov  6 08:49:37 1994", nov_1994), seconds(10));
  EXPECT_EQ(parse_retry_after("Sunday, 06-Nov-94 08:49:37 GMT", nov_1994), seconds(10));
  EXPECT_EQ(parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", nov_1994), seconds(10));
}

TEST_F(ParseRetryAfterTest, RejectsJunk) {
  for (const char* junk : {"",
                           "   ",
                           "soon",
                           "-5",
                           "+5",
                           "5s",
                           "1e3",
                           "1.",
                           ".5",
                           "1.2.3",
                           "12 34",
                           "0x10",
                           "inf",
                           "nan",
                           "Wed, 21 Oct 2015 07:28:00",
                           "Wed, 21 Oct 2015 07:28:00 PST",
                           "Wed, 21 Oct 2015 07:28 GMT",
                           "Wed, 21 Foo 2015 07:28:00 GMT",
                           "Xyz, 21 Oct 2015 07:28:00 GMT",
                           "Wed 21 Oct 2015 07:28:00 GMT",
                           "Wed, 32 Oct 2015 07:28:00 GMT",
                           "Wed, 30 Feb 2015 07:28:00 GMT",
                           "Wed, 21 Oct 2015 24:00:00 GMT",
                           "Wed, 21 Oct 2015 07:60:00 GMT",
                           "Wed, 21 Oct 15 07:28:00 GMT",
                           "Wed, 21 Oct 2015 07:28:00 GMT trailing",
                           "Wednesday, 21-Oct-2015 07:28:00 GMT",
                           "Wed Oct 21 07:28:05 15",
                           "2015-10-21T07:28:00Z"}) {
    EXPECT_FALSE(parse_retry_after(junk, now_).has_value()) << '"' << junk << '"';
  }
}

}  // namespace
}  // namespace floodgate::core
