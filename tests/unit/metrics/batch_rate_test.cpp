#include "metrics/batch_rate.h"

#include <gtest/gtest.h>

namespace floodgate::metrics {
namespace {

BatchSample at(double t, int64_t started, int64_t done, int64_t total = 100) {
  return BatchSample{t, total, started, done};
}

TEST(BatchRate, NoRateOrEtaBeforeASecondOfSamples) {
  BatchRate r;
  EXPECT_EQ(r.launch_rate(), 0);
  EXPECT_FALSE(r.eta_s().has_value());
  r.add(at(0, 0, 0));
  r.add(at(0.5, 5, 0));
  EXPECT_EQ(r.launch_rate(), 0);
}

TEST(BatchRate, RatesOverTheWindowAndEtaFromCompletions) {
  BatchRate r(60);
  for (int t = 0; t <= 10; ++t) r.add(at(t, 4 * t, 2 * t));
  EXPECT_DOUBLE_EQ(r.launch_rate(), 4);
  EXPECT_DOUBLE_EQ(r.completion_rate(), 2);
  ASSERT_TRUE(r.eta_s().has_value());
  EXPECT_DOUBLE_EQ(*r.eta_s(), (100 - 20) / 2.0);
}

TEST(BatchRate, OldSamplesLeaveTheWindow) {
  BatchRate r(10);
  for (int t = 0; t <= 20; ++t) r.add(at(t, t < 10 ? 10 * t : 90, 0));  // launches stop at 10 s
  EXPECT_DOUBLE_EQ(r.launch_rate(), 0);                                 // the last 10 s saw none
  EXPECT_FALSE(r.eta_s().has_value());  // nothing finishes: no ETA rather than "never"
}

TEST(BatchRate, DoneBatchHasZeroEtaAndReloadRestartsTheWindow) {
  BatchRate r;
  r.add(at(0, 0, 0, 10));
  r.add(at(5, 10, 10, 10));
  EXPECT_EQ(r.eta_s(), 0.0);
  r.add(at(6, 3, 3, 10));  // counts went down: a reload, not a negative rate
  r.add(at(8, 7, 5, 10));
  EXPECT_DOUBLE_EQ(r.launch_rate(), 2);
}

}  // namespace
}  // namespace floodgate::metrics
