#include "core/time_format.h"

#include <gtest/gtest.h>

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

}  // namespace
}  // namespace floodgate::core
