#include "engine/batch_spec.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace floodgate::engine {
namespace {

using nlohmann::json;

BatchSpec full_spec() {
  BatchSpec s;
  s.deployment = "etl/nightly";
  s.tags = {"team-a", "nightly"};
  s.parent_flow_run_id = "9a8b7c6d-5e4f-4a3b-9c2d-1e0f9a8b7c6d";
  s.limits.max_in_flight = 10;
  s.limits.max_running = 50;
  s.limits.launches_per_second = 2.5;
  s.limits.burst = 12;
  s.retry.max_attempts = 4;
  s.retry.initial_delay_s = 0.25;
  s.retry.max_delay_s = 30;
  s.retry.max_elapsed_s = 900;
  s.track = false;
  s.relaunch_crashed = 3;
  s.tolerated_failure_percentage = 12.5;
  s.tolerated_failure_count = 40;
  s.on_cancel = OnCancel::kCancelChildren;
  s.priority = -2;
  s.labels = {{"team", "data"}, {"env", "prod"}};
  return s;
}

void expect_same(const BatchSpec& a, const BatchSpec& b) {
  EXPECT_EQ(a.deployment, b.deployment);
  EXPECT_EQ(a.tags, b.tags);
  EXPECT_EQ(a.parent_flow_run_id, b.parent_flow_run_id);
  EXPECT_EQ(a.limits.max_in_flight, b.limits.max_in_flight);
  EXPECT_EQ(a.limits.max_running, b.limits.max_running);
  EXPECT_EQ(a.limits.launches_per_second, b.limits.launches_per_second);
  EXPECT_EQ(a.limits.burst, b.limits.burst);
  EXPECT_EQ(a.retry.max_attempts, b.retry.max_attempts);
  EXPECT_EQ(a.retry.initial_delay_s, b.retry.initial_delay_s);
  EXPECT_EQ(a.retry.max_delay_s, b.retry.max_delay_s);
  EXPECT_EQ(a.retry.max_elapsed_s, b.retry.max_elapsed_s);
  EXPECT_EQ(a.track, b.track);
  EXPECT_EQ(a.relaunch_crashed, b.relaunch_crashed);
  EXPECT_EQ(a.tolerated_failure_percentage, b.tolerated_failure_percentage);
  EXPECT_EQ(a.tolerated_failure_count, b.tolerated_failure_count);
  EXPECT_EQ(a.on_cancel, b.on_cancel);
  EXPECT_EQ(a.priority, b.priority);
  EXPECT_EQ(a.labels, b.labels);
}

// ---------------------------------------------------------------------------------------------
// to_json / spec_from_json

TEST(BatchSpecTest, FullSpecRoundTrips) {
  const BatchSpec s = full_spec();
  expect_same(spec_from_json(to_json(s)), s);
}

TEST(BatchSpecTest, RoundTripsThroughText) {
  const BatchSpec s = full_spec();
  expect_same(spec_from_json(json::parse(to_json(s).dump())), s);
}

TEST(BatchSpecTest, DefaultSpecRoundTrips) {
  const BatchSpec s;
  BatchSpec back = spec_from_json(to_json(s));
  expect_same(back, s);
  EXPECT_FALSE(back.limits.max_in_flight.has_value());
  EXPECT_FALSE(back.tolerated_failure_count.has_value());
  EXPECT_TRUE(back.parent_flow_run_id.empty());
}

TEST(BatchSpecTest, JsonShape) {
  json j = to_json(full_spec());
  EXPECT_EQ(j["deployment"], "etl/nightly");
  EXPECT_EQ(j["tags"], json::array({"team-a", "nightly"}));
  EXPECT_EQ(j["parent_flow_run_id"], "9a8b7c6d-5e4f-4a3b-9c2d-1e0f9a8b7c6d");
  EXPECT_EQ(j["limits"]["max_in_flight"], 10);
  EXPECT_EQ(j["limits"]["max_running"], 50);
  EXPECT_EQ(j["limits"]["launches_per_second"], 2.5);
  EXPECT_EQ(j["limits"]["burst"], 12.0);
  EXPECT_EQ(j["retry"]["max_attempts"], 4);
  EXPECT_EQ(j["retry"]["initial_delay_s"], 0.25);
  EXPECT_EQ(j["track"], false);
  EXPECT_EQ(j["relaunch_crashed"], 3);
  EXPECT_EQ(j["tolerated_failure_percentage"], 12.5);
  EXPECT_EQ(j["tolerated_failure_count"], 40);
  EXPECT_EQ(j["on_cancel"], "cancel_children");
  EXPECT_EQ(j["priority"], -2);
  EXPECT_EQ(j["labels"]["team"], "data");
}

TEST(BatchSpecTest, UnsetValuesAreNull) {
  json j = to_json(BatchSpec{});
  EXPECT_TRUE(j["parent_flow_run_id"].is_null());
  EXPECT_TRUE(j["limits"]["max_in_flight"].is_null());
  EXPECT_TRUE(j["limits"]["max_running"].is_null());
  EXPECT_TRUE(j["limits"]["launches_per_second"].is_null());
  EXPECT_TRUE(j["limits"]["burst"].is_null());
  EXPECT_TRUE(j["tolerated_failure_count"].is_null());
  EXPECT_EQ(j["labels"], json::object());
  EXPECT_EQ(j["tags"], json::array());
}

TEST(BatchSpecTest, MissingKeysTakeDefaults) {
  BatchSpec s = spec_from_json(json::object());
  expect_same(s, BatchSpec{});
  EXPECT_EQ(s.retry.max_attempts, 8);
  EXPECT_TRUE(s.track);
  EXPECT_EQ(s.on_cancel, OnCancel::kAbandon);
}

TEST(BatchSpecTest, PartialRetryKeepsOtherDefaults) {
  BatchSpec s =
      spec_from_json(json::parse(R"({"deployment": "f/d", "retry": {"max_attempts": 2}})"));
  EXPECT_EQ(s.deployment, "f/d");
  EXPECT_EQ(s.retry.max_attempts, 2);
  EXPECT_EQ(s.retry.initial_delay_s, RetrySpec{}.initial_delay_s);
  EXPECT_EQ(s.retry.max_delay_s, RetrySpec{}.max_delay_s);
  EXPECT_EQ(s.retry.max_elapsed_s, RetrySpec{}.max_elapsed_s);
}

TEST(BatchSpecTest, LargeFailureCountSurvives) {
  BatchSpec s;
  s.tolerated_failure_count = int64_t{5'000'000'000};
  EXPECT_EQ(spec_from_json(to_json(s)).tolerated_failure_count, int64_t{5'000'000'000});
}

// ---------------------------------------------------------------------------------------------
// failure_allowance

BatchSpec tolerance(double pct, std::optional<int64_t> count) {
  BatchSpec s;
  s.tolerated_failure_percentage = pct;
  s.tolerated_failure_count = count;
  return s;
}

TEST(FailureAllowanceTest, DefaultToleratesNothing) {
  for (int64_t total : {0, 1, 100, 100000}) {
    EXPECT_EQ(failure_allowance(BatchSpec{}, total), 0) << total;
  }
}

TEST(FailureAllowanceTest, PercentageOnlyRoundsDown) {
  EXPECT_EQ(failure_allowance(tolerance(10, std::nullopt), 100), 10);
  EXPECT_EQ(failure_allowance(tolerance(10, std::nullopt), 15), 1);
  EXPECT_EQ(failure_allowance(tolerance(10, std::nullopt), 9), 0);
  EXPECT_EQ(failure_allowance(tolerance(50, std::nullopt), 7), 3);
  EXPECT_EQ(failure_allowance(tolerance(100, std::nullopt), 7), 7);
  EXPECT_EQ(failure_allowance(tolerance(12.5, std::nullopt), 8), 1);
  EXPECT_EQ(failure_allowance(tolerance(10, std::nullopt), 0), 0);
}

TEST(FailureAllowanceTest, PercentageIsExactDespiteFloatingPoint) {
  // 0.29 * 100 is 28.999999999999996 in binary floating point.
  EXPECT_EQ(failure_allowance(tolerance(29, std::nullopt), 100), 29);
  EXPECT_EQ(failure_allowance(tolerance(7, std::nullopt), 100), 7);
  EXPECT_EQ(failure_allowance(tolerance(57, std::nullopt), 100), 57);
  EXPECT_EQ(failure_allowance(tolerance(10, std::nullopt), 30), 3);
  EXPECT_EQ(failure_allowance(tolerance(33, std::nullopt), 300), 99);
}

TEST(FailureAllowanceTest, CountOnly) {
  EXPECT_EQ(failure_allowance(tolerance(0, 3), 100), 3);
  EXPECT_EQ(failure_allowance(tolerance(0, 3), 10000), 3);
  EXPECT_EQ(failure_allowance(tolerance(0, 0), 100), 0);
}

TEST(FailureAllowanceTest, BothGivenTheStricterWins) {
  EXPECT_EQ(failure_allowance(tolerance(10, 3), 100), 3);    // count is stricter
  EXPECT_EQ(failure_allowance(tolerance(10, 50), 100), 10);  // percentage is stricter
  EXPECT_EQ(failure_allowance(tolerance(10, 10), 100), 10);
  EXPECT_EQ(failure_allowance(tolerance(50, 0), 100), 0);
  EXPECT_EQ(failure_allowance(tolerance(50, 5), 4), 2);
}

}  // namespace
}  // namespace floodgate::engine
