#include "core/time_format.h"

#include <gtest/gtest.h>

#include <chrono>
#include <string_view>

namespace floodgate::core {
namespace {

TEST(TimeFormatTest, UnixEpoch) { EXPECT_EQ(format_time_ms(0), "1970-01-01T00:00:00.000Z"); }

TEST(TimeFormatTest, MillisecondsArePaddedToThreeDigits) {
  EXPECT_EQ(format_time_ms(1'800'000'000'007), "2027-01-15T08:00:00.007Z");
  EXPECT_EQ(format_time_ms(1'800'000'000'070), "2027-01-15T08:00:00.070Z");
  EXPECT_EQ(format_time_ms(1'800'000'000'999), "2027-01-15T08:00:00.999Z");
}

TEST(TimeFormatTest, LeapDayAndYearEnd) {
  EXPECT_EQ(format_time_ms(1'709'164'800'000), "2024-02-29T00:00:00.000Z");
  EXPECT_EQ(format_time_ms(1'735'689'599'123), "2024-12-31T23:59:59.123Z");
}

// Unix microseconds of a parsed time, or -1 when it does not parse.
int64_t parsed_us(std::string_view text) {
  auto t = parse_time(text);
  if (!t) return -1;
  return std::chrono::duration_cast<std::chrono::microseconds>(t->time_since_epoch()).count();
}

TEST(TimeFormatTest, ParsesWhatPrefectWrites) {
  // Prefect 3 (pydantic): microseconds and Z; Prefect 2 (pendulum): +00:00.
  EXPECT_EQ(parsed_us("2027-01-15T08:00:00.123456Z"), 1'800'000'000'123'456);
  EXPECT_EQ(parsed_us("2027-01-15T08:00:00.123456+00:00"), 1'800'000'000'123'456);
  EXPECT_EQ(parsed_us("2027-01-15T08:00:00Z"), 1'800'000'000'000'000);
  EXPECT_EQ(parsed_us("2027-01-15T08:00:00"), 1'800'000'000'000'000);  // no zone: UTC
  EXPECT_EQ(parsed_us("2027-01-15 08:00:00.5Z"), 1'800'000'000'500'000);
  EXPECT_EQ(parsed_us("1970-01-01T00:00:00.000Z"), 0);
  EXPECT_EQ(parsed_us("2024-02-29T00:00:00.000Z"), 1'709'164'800'000'000);
  EXPECT_EQ(parsed_us("2024-12-31T23:59:59.123Z"), 1'735'689'599'123'000);
  // Nanoseconds are cut to microseconds.
  EXPECT_EQ(parsed_us("2027-01-15T08:00:00.123456789Z"), 1'800'000'000'123'456);
}

TEST(TimeFormatTest, AZoneOffsetMovesTheTimeToUtc) {
  EXPECT_EQ(parsed_us("2027-01-15T10:00:00+02:00"), 1'800'000'000'000'000);
  EXPECT_EQ(parsed_us("2027-01-15T02:30:00-0530"), 1'800'000'000'000'000);
}

TEST(TimeFormatTest, RoundTripsFormatTimeMs) {
  for (int64_t ms : {int64_t{0}, int64_t{1'709'164'800'000}, int64_t{1'800'000'000'007}}) {
    EXPECT_EQ(parsed_us(format_time_ms(ms)), ms * 1000) << ms;
  }
}

TEST(TimeFormatTest, RejectsWhatIsNotADateAndTime) {
  for (const char* bad :
       {"", "null", "2027-01-15", "2027-01-15T08:00", "2027-13-01T00:00:00Z",
        "2027-01-15T24:00:00Z", "2027-01-15T08:00:00.Z", "2027-01-15T08:00:00X",
        "2027-01-15T08:00:00+2", "2027-01-15T08:00:00Zjunk", "27-01-15T08:00:00Z"}) {
    EXPECT_EQ(parsed_us(bad), -1) << bad;
  }
}

}  // namespace
}  // namespace floodgate::core
